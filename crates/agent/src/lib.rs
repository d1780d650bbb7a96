//! The client side of aovpn: [`session`] runs one tunnel (what `aovpn connect` does); the
//! always-on agent builds on it.

pub mod plan;
pub mod session;
