//! Sans-IO IKEv2 engine (RFC 7296, RFC 7383 fragmentation, RFC 3947/7296 NAT-T, RFC 7427
//! signatures): initiator ([`IkeSa::connect`]) and responder ([`Endpoint`]).
//!
//! No sockets, clocks or randomness: time comes in as `Instant` (plus
//! [`IkeSa::set_unix_time`] / [`Endpoint::set_unix_time`] for certificate validity),
//! randomness and crypto through [`ipsec_crypto::Provider`].
//!
//! # Driving it over UDP
//! Bind UDP 500 and 4500 (`IkeConfig::ike_port` / `natt_port`). On 4500 a datagram whose
//! first four bytes are zero is IKE: strip the marker and pass the rest; otherwise it is ESP
//! (or a 1-byte NAT keepalive `0xff`). Feed IKE bytes with
//! `handle_datagram(now, local, remote, bytes)`, then send every [`Transmit`] from
//! `poll_transmit()` from the socket bound to `transmit.local.port()`, prepending four zero
//! bytes when `transmit.non_esp_marker`. Handle every [`Event`] from `poll_event()`, and call
//! `handle_timeout(now)` at `poll_timeout()`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod endpoint;
mod event;
mod identity;
mod natd;
mod proposal;
mod sa;
pub mod ts;

pub use config::{
    AddressFamily, AddressPool, AuthMethodPolicy, IkeConfig, InitiatorConfig, LocalCredentials,
    ResponderConfig, RetransmitConfig,
};
pub use endpoint::{Endpoint, SaId, local_spi_of};
pub use event::{ChildSa, CloseReason, Event, Failure, FailureReason, IkeSaInfo, Transmit};
pub use identity::{IkeId, PeerRejection, PeerRole, PeerValidator, PkiValidator, ValidatedPeer};
pub use natd::{COOKIE_LEN, natd_hash};
pub use proposal::{EspAlgorithms, EspProposal, IkeAlgorithms, IkeProposal, ProposalError};
pub use sa::{ConnectError, IkeSa, Role, SaState};

pub use ike_wire;
pub use ipsec_crypto;
