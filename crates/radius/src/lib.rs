//! RADIUS for the gateway's EAP pass-through (RFC 3579): the gateway relays a client's EAP
//! conversation to RADIUS servers and takes the MSK (RFC 2548 MS-MPPE keys) and the user's
//! group (Class, Filter-Id) from the Access-Accept.
//!
//! [`packet`] is the codec with the Message-Authenticator, the Response Authenticator and the
//! MPPE keys; [`client::Client`] is the request/answer state machine with retransmission and
//! failover across servers. No sockets or clocks here: the gateway daemon owns the socket and
//! passes datagrams and the time in.
//!
//! Written here rather than taken from crates.io: the `radius` crate there has had no release
//! for years and has neither MPPE key decryption nor a sans-IO client.
//!
//! May depend on: nothing of ours (a leaf).
//! Start reading: `client.rs`, then `packet.rs`.

pub mod client;
pub mod packet;

pub use client::{Answer, Client, ClientStats, Server};
