//! The aovpn gateway daemon as a library: configuration, client address leases, and (as the
//! engine lands) the IKE/ESP loop. `aovpn gateway --config FILE` is a thin wrapper around it.
//!
//! May depend on: `tunnel` and everything below it, `radius`; never `agent`.
//! Start reading: `daemon.rs` (the loop), `ike.rs` (validation, responder configuration, leases).

pub mod admin;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod http;
pub mod ike;
pub mod metrics;
pub mod pool;
pub mod radius_relay;
pub mod web;
