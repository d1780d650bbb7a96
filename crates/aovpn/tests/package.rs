//! The Debian package (`scripts/package-deb.sh`) and its systemd units: what is in the package
//! with which owner and mode, its control data, and `systemd-analyze verify` of every unit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_package(dir: &Path) -> PathBuf {
    let printed = run(Command::new(repo().join("scripts/package-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_aovpn"), "--fast", "--out"])
        .arg(dir));
    PathBuf::from(printed.trim())
}

#[test]
fn the_package_installs_the_binary_units_and_a_root_only_machine_key_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_package(tmp.path());
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for needle in [
        "Package: aovpn",
        "Version: 0.1.0",
        "Depends: libc6",
        "Section: net",
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
    ] {
        assert!(info.contains(needle), "{needle} missing:\n{info}");
    }
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let entry = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(path) || l.ends_with(&format!("{path}/")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .to_owned()
    };
    let expect = |path: &str, mode: &str| {
        let line = entry(path);
        assert!(line.starts_with(mode), "{path}: {line}");
        assert!(line.contains("root/root"), "{path}: {line}");
    };
    expect("./usr/bin/aovpn", "-rwxr-xr-x");
    expect("./usr/lib/systemd/system/aovpn-agent.service", "-rw-r--r--");
    expect(
        "./usr/lib/systemd/system/aovpn-lockdown.service",
        "-rw-r--r--",
    );
    expect(
        "./usr/lib/systemd/system/aovpn-gateway.service",
        "-rw-r--r--",
    );
    expect(
        "./usr/lib/systemd/user/aovpn-user-helper.service",
        "-rw-r--r--",
    );
    expect("./etc/aovpn/agent.toml", "-rw-r--r--");
    expect("./etc/profile.d/aovpn-proxy.sh", "-rw-r--r--");
    expect("./etc/aovpn/machine", "drwx------");
    expect("./etc/aovpn/profiles", "drwxr-xr-x");
    expect("./etc/aovpn/ca", "drwxr-xr-x");
    expect("./usr/share/man/man1/aovpn.1.gz", "-rw-r--r--");
    expect("./usr/share/man/man1/aovpn-agent.1.gz", "-rw-r--r--");
    expect("./usr/share/doc/aovpn/README.md", "-rw-r--r--");
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(
        conffiles.trim(),
        "/etc/aovpn/agent.toml\n/etc/profile.d/aovpn-proxy.sh"
    );

    // What the package installs is what the repository has.
    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let shipped =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/aovpn-agent.service")).unwrap();
    assert_eq!(
        shipped,
        std::fs::read_to_string(repo().join("packaging/systemd/aovpn-agent.service")).unwrap()
    );
}

/// Each unit with /usr/bin/aovpn pointing at the binary under test (systemd-analyze checks
/// that the command exists); a warning counts as a failure, not only an error.
fn verify(unit: &Path, user: bool, dir: &Path) {
    let text = std::fs::read_to_string(unit)
        .unwrap()
        .replace("/usr/bin/aovpn", env!("CARGO_BIN_EXE_aovpn"));
    let copy = dir.join(unit.file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        let runtime = dir.join("xdg-runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    // The man pages are checked by the package test; they are not installed here.
    let out = cmd
        .args(["--man=no", "verify"])
        .arg(&copy)
        .output()
        .unwrap();
    // Only what is said about our units: verify also loads the installed units ours are
    // wanted by, and their warnings (Debian's freeradius.service still uses MemoryLimit=)
    // are not ours to fix.
    let said: String = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .lines()
    .filter(|l| {
        ![
            "/lib/systemd/",
            "/usr/lib/systemd/",
            "/etc/systemd/",
            "/run/systemd/",
        ]
        .iter()
        .any(|system| l.starts_with(system))
    })
    .map(|l| format!("{l}\n"))
    .collect();
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}:\n{said}",
        unit.display()
    );
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let units = repo().join("packaging/systemd");
    verify(&units.join("aovpn-agent.service"), false, tmp.path());
    verify(&units.join("aovpn-lockdown.service"), false, tmp.path());
    verify(&units.join("aovpn-gateway.service"), false, tmp.path());
    verify(
        &units.join("user/aovpn-user-helper.service"),
        true,
        tmp.path(),
    );
}

/// The checker itself: a unit with a mistake is caught.
#[test]
fn systemd_analyze_catches_a_broken_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("src");
    std::fs::create_dir_all(&broken).unwrap();
    let unit = broken.join("broken.service");
    std::fs::write(
        &unit,
        "[Service]\nType=notifyy\nExecStart=/usr/bin/aovpn agent\n",
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| verify(&unit, false, tmp.path()));
    assert!(result.is_err(), "a bad Type= was not reported");
}
