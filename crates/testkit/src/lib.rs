//! Dev-only helpers for aovpn's tests (never a dependency of shipped code).
//!
//! * [`netns`]: throw-away Linux network namespaces with veth links and the standard lab
//!   topology (client, "internet" router with optional NAT, gateway, and a host behind it).
//! * [`bind`]: a real BIND 9 serving a zone that takes TSIG-signed dynamic updates.
//! * [`freeradius`]: a real FreeRADIUS 3 with EAP-TLS, users refused or given a Class.
//! * [`browser`]: headless Chromium driven over the DevTools protocol through a pipe.
//! * [`strongswan`]: a real strongSwan charon (kernel-libipsec) in a namespace, its swanctl
//!   configuration, SA listing, and a `pki`-made test PKI.
//!
//! Everything here needs root. Tests that use it call [`require_root`] first, so that a
//! non-root run fails loudly instead of skipping silently.
//!
//! May depend on: nothing of ours; only tests use it (and, until issue 13 moves them out, `aovpn lab` and `aovpn bench`).
//! Start reading: `netns.rs`, then the server you need.

pub mod aovpn;
pub mod bind;
pub mod browser;
pub mod freeradius;
pub mod netns;
pub mod strongswan;

/// Panics with a clear message unless the process runs as root (euid 0).
///
/// The project's test command runs as root; a test that needs root must not pass vacuously.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, veth, TUN); run the test suite as root"
    );
}

/// Stops a server a test started, by its pid: SIGTERM, `grace` to exit, then SIGKILL; reaped
/// either way.
pub fn terminate(child: &mut std::process::Child, grace: std::time::Duration) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
