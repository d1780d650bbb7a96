//! Dev-only helpers for aovpn's tests (never a dependency of shipped code).
//!
//! * [`netns`]: throw-away Linux network namespaces with veth links and the standard lab
//!   topology (client, "internet" router with optional NAT, gateway, and a host behind it).
//! * [`bind`]: a real BIND 9 serving a zone that takes TSIG-signed dynamic updates.
//! * [`strongswan`]: a real strongSwan charon (kernel-libipsec) in a namespace, its swanctl
//!   configuration, SA listing, and a `pki`-made test PKI.
//!
//! Everything here needs root. Tests that use it call [`require_root`] first, so that a
//! non-root run fails loudly instead of skipping silently.

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
