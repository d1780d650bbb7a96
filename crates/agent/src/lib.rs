//! The client side of aovpn: [`connection`] runs one tunnel (what `aovpn connect` does), and
//! the always-on agent ([`service`]) keeps every profile's tunnel up by the rules of
//! [`supervisor`], controlled over [`control`], with user keys kept by [`helper`] and profiles
//! kept on disk by [`profile_store`].
//!
//! May depend on: `tunnel` and everything below it, `profile`; never `gateway`.
//! Start reading: `service/mod.rs` (the daemon), `supervisor.rs` (Always On, sans-IO), `connection/lifecycle.rs` (one tunnel).

pub mod config;
pub mod connection;
pub mod control;
pub mod dns;
pub mod doctor;
pub mod helper;
pub mod ledger;
pub mod logind;
pub mod plan;
pub mod profile_store;
pub mod register_dns;
pub mod service;
pub mod split_dns;
pub mod supervisor;
pub mod trusted;
