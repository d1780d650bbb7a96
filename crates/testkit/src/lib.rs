//! Dev-only helpers for aovpn's tests (never a dependency of shipped code).
//!
//! * [`netns`], [`bind`], [`strongswan`]: namespaces, BIND 9 and strongSwan, from `labnet`
//!   (which the lab and the bench ship), re-exported so tests name one crate.
//! * [`aovpn`]: our own gateway and agent started as processes in namespaces, with their files.
//! * [`freeradius`]: a real FreeRADIUS 3 with EAP-TLS, users refused or given a Class.
//! * [`browser`]: headless Chromium driven over the DevTools protocol through a pipe.
//!
//! Everything here needs root. Tests that use it call [`require_root`] first, so that a
//! non-root run fails loudly instead of skipping silently.
//!
//! May depend on: `labnet`; only tests use it (`cargo tree -p aovpn -e normal` has no testkit).
//! Start reading: `labnet`'s `netns.rs`, then `aovpn/mod.rs` and the daemon you need.

pub use labnet::{bind, netns, require_root, strongswan, terminate};

pub mod aovpn;
pub mod browser;
pub mod freeradius;
