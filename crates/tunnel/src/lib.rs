//! Runtime glue shared by `aovpn gateway` and the client: the one daemon driver ([`driver`])
//! that runs the IKEv2 engine over UDP 500 and 4500 ([`ike_io`]) and turns its Child SAs into
//! data-plane SAs ([`child`]). The protocol stays in the sans-IO crates; this is where it meets
//! sockets, and the daemons keep only their policy.
//!
//! May depend on: `ikev2`, `ike-wire`, `ipsec-crypto`, `esp`, `datapath`, `netio`; never `gateway` or `agent`.
//! Start reading: `driver.rs` (the loop and its events), then `record.rs` (what it keeps per IKE SA).

pub mod check;
pub mod child;
pub mod driver;
pub mod host;
pub mod ike_io;
pub mod record;

pub use child::Side;
pub use driver::{
    ChildInfo, ChildRecord, Driver, DriverConfig, DriverError, DriverEvent, IkeSaRecord, Traffic,
};
