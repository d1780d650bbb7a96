//! The client side of aovpn: [`connection`] runs one tunnel (what `aovpn connect` does); the
//! always-on agent builds on it.

pub mod connection;
pub mod dns;
pub mod plan;
