//! Files that must never be seen half-written, nor be redirected: state and status files.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `bytes` in one step: readers see the old file or the new one, whole.
/// The new content goes to a fresh file with a random name in the same directory (created
/// exclusively, so a symlink planted there cannot redirect the write), gets `mode`, and is
/// renamed over `path`. `durable`: the data and the rename reach the disk before returning
/// (state that must survive a power loss).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".aovpn-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durable && let Ok(d) = std::fs::File::open(dir) {
        d.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_whole_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.json");
        replace_file(&path, b"[1]", 0o600, true).unwrap();
        replace_file(&path, b"[1,2]", 0o600, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1,2]");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        replace_file(&path, b"{}", 0o644, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        // Nothing else left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A symlink where the old fixed temporary name was cannot redirect the write; the
    /// target file is replaced, not the file the link points to.
    #[test]
    fn a_planted_symlink_redirects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("status.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("status.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        replace_file(&path, b"{}", 0o644, false).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(
            !std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
