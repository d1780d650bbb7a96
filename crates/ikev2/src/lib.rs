//! Sans-IO IKEv2 engine (RFC 7296, RFC 7383 fragmentation, NAT-T, RFC 7427 signatures):
//! initiator ([`IkeSa::connect`]) and responder ([`Endpoint`]).
//!
//! No sockets, clocks or randomness: time comes in as `Instant` for timers, and with each
//! datagram as a [`Now`] (the same instant and the wall-clock seconds since the epoch that
//! certificates are checked against), randomness and crypto through
//! [`ipsec_crypto::Provider`], peer certificates through a [`PeerValidator`] ([`PkiValidator`]
//! wraps `pki::TrustStore`), virtual addresses through an [`AddressPool`]. Why an exchange
//! failed is a [`FailureReason`], typed by who is to blame (`failure.rs`).
//!
//! # Driving it over UDP
//! 1. Bind UDP 500 and 4500 (`IkeConfig::ike_port` / `natt_port`).
//! 2. Port 500: every datagram is IKE. Port 4500: four zero bytes (non-ESP marker) mean IKE,
//!    strip them; a single `0xff` byte is a NAT keepalive; anything else is ESP for the data
//!    plane (call [`IkeSa::note_peer_alive`] / [`Endpoint::note_peer_alive`] when it
//!    authenticates, so dead peer detection stays quiet).
//! 3. Feed IKE bytes with `handle_datagram(now, path, bytes)`: the [`Path`] says the address
//!    the datagram arrived on (IP_PKTINFO; the bound address is fine when unknown), its
//!    source, and whether it came on the NAT-T socket.
//! 4. Drain `poll_transmit()`: send `bytes` to `transmit.remote` from the NAT-T socket with
//!    four zero bytes in front when `transmit.natt`, else from the port-500 socket.
//! 5. Drain `poll_event()` ([`Event`]; the endpoint tags each with its [`IkeSaId`]): install
//!    [`ChildSa`] keys in the ESP data plane, remove them on `ChildSaDeleted` / `Closed`,
//!    follow `AddressesChanged`. When `IkeSaInfo::nat_detected`, the data plane uses
//!    ESP-in-UDP on 4500 and sends NAT keepalives (RFC 3948), which the engine does not.
//! 6. Call `handle_timeout(now)` when `poll_timeout()` is reached, then drain again.
//!
//! # Rekeying
//! Lifetimes come from [`IkeConfig::ike_lifetime`] / [`IkeConfig::child_lifetime`] (rekey at a
//! random point between 80 % and 90 %, delete when they run out); [`IkeSa::rekey_child_sa`] /
//! [`Endpoint::rekey_child_sa`] rekey on demand (e.g. on ESP sequence soft limits), likewise
//! `rekey_ike_sa`. A Child SA rekey yields `ChildSaRekeyed { old_spi_in, old_spi_out, new }`:
//! install `new` for receiving at once and keep sending on the old SA until either
//! `ChildSaOutboundReady` (we started the rekey, so the peer already has the new SA) or the old
//! SA's `ChildSaDeleted` (the peer started it and has switched) arrives; then retire the old
//! SA after a short linger (make-before-break, no loss in either role). An IKE SA rekey yields
//! `IkeSaRekeyed` with the new SPIs; its Child SAs stay as they are, and an [`Endpoint`] keeps
//! the same [`IkeSaId`]. The event order is chosen so that "the newest SA sends" is right also
//! after a rekey collision (RFC 7296 2.8.1). A rekey that fails emits `Failed` while the IKE
//! SA stays established (check [`IkeSa::state`]).
//!
//! Proposals use strongSwan notation ([`IkeProposal::parse`], [`EspProposal::parse`]).
//!
//! May depend on: `ike-wire`, `ipsec-crypto`, `pki`; never `netio` or anything with I/O.
//! Start reading: `endpoint.rs` (many SAs), then `sa/mod.rs` (one SA's parts), `sa/init.rs`,
//! `sa/auth/`, `sa/rekey/`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod datagram;
pub mod dns_domain;
mod endpoint;
mod event;
mod failure;
mod identity;
mod natd;
pub mod probe;
mod proposal;
mod sa;
pub mod ts;

pub use config::{
    AddressFamily, AddressPool, AuthMethodPolicy, EapTlsClient, IkeConfig, InitiatorConfig,
    LocalCredentials, PeerPolicy, ResponderConfig, RetransmitConfig,
};
pub use datagram::{Now, Path, Transmit};
pub use endpoint::{Endpoint, EndpointStats, IkeSaId};
pub use event::{ChildSa, CloseReason, EapAnswer, Event, IkeSaInfo};
pub use failure::{AuthFault, ConfigFault, Failure, FailureReason, LocalError, SyntaxError};
pub use identity::{IkeId, PeerRejection, PeerRole, PeerValidator, PkiValidator, ValidatedPeer};
pub use ike_wire::GatewayIdentity;
pub use natd::{COOKIE_LEN, natd_hash};
pub use proposal::{
    EspAlgorithms, EspProposal, IkeAlgorithms, IkeProposal, ProposalError, encr_name,
};
pub use sa::{ConnectError, EAP_RELAYED, EapError, IkeSa, IkeSaState, Role};
#[cfg(fuzzing)]
pub use sa::{fuzz_eap_tls, fuzz_eap_tls_client};

pub use ike_wire;
pub use ipsec_crypto;
