//! The aovpn gateway daemon as a library: its configuration, credentials and client
//! validation, the engine's responder configuration, client address leases, and the IKE/ESP
//! loop. `aovpn gateway --config FILE` is a thin wrapper around it.
//!
//! May depend on: `tunnel` and everything below it, `radius`; never `agent`.
//! Start reading: `daemon/mod.rs` (the loop; `daemon/operator.rs`: admin requests, the page,
//! reload), then `responder.rs` (what the engine is told from the config),
//! `client_validation.rs` (which clients it accepts, in which group),
//! `pool_adapter.rs` (the leases behind the engine's address pool), and `config/mod.rs`
//! (`gateway.toml`, a module per section).

pub mod admin;
pub mod client_validation;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod doctor;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod pool_adapter;
pub mod radius_relay;
pub mod responder;
pub mod web;
