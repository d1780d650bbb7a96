//! Network namespaces and the real servers run in them, for `aovpn lab`, `aovpn bench` and the
//! tests (through `testkit`, which re-exports this crate's modules).
//!
//! * [`netns`]: throw-away Linux network namespaces with veth links and the standard lab
//!   topology (client, "internet" router with optional NAT, gateway, and a host behind it).
//! * [`bind`]: a real BIND 9 serving a zone that takes TSIG-signed dynamic updates.
//! * [`strongswan`]: a real strongSwan charon (kernel-libipsec) in a namespace, its swanctl
//!   configuration, SA listing, and a `pki`-made PKI for it.
//!
//! Everything here needs root. Whatever it starts it stops by pid ([`terminate`]), and the
//! namespaces it makes are removed when their handle drops.
//!
//! May depend on: nothing of ours. Used by `lab`, `bench` and `testkit`.
//! Start reading: `netns.rs`, then the server you need.

pub mod bind;
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

/// Stops a server we started, by its pid: SIGTERM, `grace` to exit, then SIGKILL; reaped
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
