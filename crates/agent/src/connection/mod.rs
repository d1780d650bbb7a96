//! One client tunnel to one server, from nothing to connected and back: resolve the server,
//! authenticate with a certificate, bring up a TUN device with the address the gateway
//! assigned, install routes and DNS, move packets, follow the machine across networks (MOBIKE),
//! and on the way out say goodbye (IKE Delete) and remove everything it installed.
//! `aovpn connect` runs one in the foreground; the agent runs one per profile it keeps up.
//!
//! Here: the errors and the state of a running tunnel. Beside it: `options` (what one tunnel
//! is told, and the engine's configuration built from it), `credentials` (our certificate and
//! key, the roots), `path` (the gateway's address, the physical path to it, the MTU that path
//! carries), `lifecycle` (start, the event loop, path changes, finish), `install` (addresses,
//! routes, DNS and traffic filters on the host), `registration` (RegisterDNS), `status` (what
//! the tunnel reports and is told).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikev2::IkeSaId;
use netio::netlink::{Netlink, RouteLookup};
use tokio::sync::mpsc;
use tunnel::Driver;

use crate::dns::SharedDns;
use crate::register_dns::Registrar;

mod credentials;
mod install;
mod lifecycle;
mod options;
mod path;
mod registration;
mod status;

pub use credentials::{Credentials, identity_of, load_credentials, load_trust, remote_credentials};
pub use install::InstallRecord;
pub use lifecycle::run;
pub use options::{ConnectionOptions, EapTlsOptions, RoutePolicy, initiator_config};
pub(crate) use path::{IPV6_MIN_MTU, offered_framing, physical_route_to, tunnel_mtu};
pub use path::{resolve, split_server};
pub use status::{Command, ConnectionStatus, Outcome, Report};

use install::Up;

/// Inner MTU of the tunnel interface (1500 minus the worst ESP-in-UDP overhead, rounded).
pub const TUNNEL_MTU: u16 = 1400;
/// The smallest tunnel MTU the agent takes (IPv4's minimum reassembly size).
pub const MIN_TUNNEL_MTU: u16 = 576;

/// Dead peer detection: a quiet gateway is asked after this long whether it is still there.
pub const DEFAULT_DPD_INTERVAL: Duration = Duration::from_secs(30);

/// The error behind a failed step, from whichever library or system call it came (shared, so
/// that a [`ConnectionError`] can be kept and cloned into status reports).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a tunnel could not be brought up, or went down.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    /// A local step (a file, a key, the TUN device, routes, netlink) failed.
    #[error("{what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: Cause,
    },
    /// No path to the gateway, or its name does not resolve.
    #[error("cannot reach {what}: {source}")]
    Unreachable {
        what: String,
        #[source]
        source: Cause,
    },
    #[error("IKE: {0}")]
    Ike(#[from] IkeFailure),
    #[error("the gateway closed the tunnel")]
    ClosedByPeer,
    #[error("no network for {0} s (NetworkOutageTime)")]
    Outage(u64),
    #[error("the local address changed and the gateway does not do MOBIKE")]
    AddressChanged,
}

/// Why the IKE side of a tunnel could not start, or ended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IkeFailure {
    /// The engine could not start (no proposals, the crypto backend).
    #[error(transparent)]
    Start(#[from] ikev2::ConnectError),
    /// An exchange failed and took the IKE SA with it: the engine's reason and advice.
    #[error("{} (what to do: {})", .0.reason, .0.advice(true))]
    Failed(Box<ikev2::Failure>),
    /// The IKE SA closed without a failure of its own.
    #[error("IKE SA closed ({0:?})")]
    Closed(ikev2::CloseReason),
    /// Deleted by the gateway or expired without a rekey: the IKE SA alone carries nothing.
    #[error("no Child SA left")]
    NoChildSa,
    #[error("the data plane stopped")]
    DatapathStopped,
}

/// A step named `what` failed because of `cause`.
fn setup<E>(what: impl Into<String>) -> impl FnOnce(E) -> ConnectionError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let what = what.into();
    move |cause| ConnectionError::Setup {
        what,
        source: Cause::from(cause.into()),
    }
}

/// `what` cannot be reached because of `cause`.
fn unreachable<E>(what: impl std::fmt::Display) -> impl FnOnce(E) -> ConnectionError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let what = what.to_string();
    move |cause| ConnectionError::Unreachable {
        what,
        source: Cause::from(cause.into()),
    }
}

/// A tunnel being brought up or running.
struct Connection {
    options: ConnectionOptions,
    dns: Arc<SharedDns>,
    dns_key: String,
    server_name: String,
    server: SocketAddr,
    driver: Driver,
    sa: IkeSaId,
    netlink: Netlink,
    tun_index: u32,
    physical: RouteLookup,
    /// The TUN's MTU now, and the ESP transform it is sized for (the first offered until
    /// the gateway chooses).
    mtu: u16,
    transform: esp::Transform,
    up: Option<Up>,
    status: ConnectionStatus,
    path_lost_since: Option<Instant>,
    reports: mpsc::UnboundedSender<Report>,
    /// RegisterDNS, once the tunnel is up.
    registrar: Option<Registrar>,
}
