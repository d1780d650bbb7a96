//! Runtime glue shared by `aovpn gateway` and `aovpn connect`: the IKEv2 engine's datagrams
//! over UDP 500 and 4500 ([`ike_io`]), and its Child SAs turned into data-plane SAs
//! ([`child`]). The protocol stays in the sans-IO crates; this is where it meets sockets.

pub mod child;
pub mod host;
pub mod ike_io;
