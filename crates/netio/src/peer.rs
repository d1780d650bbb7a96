//! Who is at the other end of a Unix stream socket, as the kernel recorded it when that process
//! connected (`SO_PEERCRED`, `SO_PEERGROUPS`): a control socket checks each caller against these,
//! never against anything the caller says about itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{getsockopt, sockopt};

/// `SO_PEERGROUPS` (Linux 4.13), the value on x86, ARM and most other architectures.
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Supplementary groups (without `gid` unless it is also supplementary).
    pub groups: Vec<u32>,
}

impl PeerCredentials {
    /// Whether the peer is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The credentials of the process connected to `socket`.
pub fn peer_credentials(socket: &impl AsFd) -> io::Result<PeerCredentials> {
    let cred = getsockopt(socket, sockopt::PeerCredentials).map_err(io::Error::from)?;
    Ok(PeerCredentials {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: peer_groups(socket)?,
    })
}

fn peer_groups(socket: &impl AsFd) -> io::Result<Vec<u32>> {
    let fd = socket.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(|_| io::Error::other("too many groups"))?;
        // SAFETY: `groups` is a writable buffer of `len` bytes; the kernel writes at most `len`
        // bytes and stores the size it needs (or wrote) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = usize::try_from(len).unwrap_or(0) / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() && count <= 65_536 {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_sees_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        assert_eq!(cred.uid, nix::unistd::getuid().as_raw());
        assert_eq!(cred.gid, nix::unistd::getgid().as_raw());
        assert_eq!(cred.pid, std::process::id() as i32);
        let mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        let mut seen = cred.groups.clone();
        seen.sort_unstable();
        let mut expected = mine;
        expected.sort_unstable();
        assert_eq!(seen, expected);
        assert!(cred.in_group(cred.gid));
    }
}
