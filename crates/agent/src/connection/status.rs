//! What a running tunnel reports to its owner and what it can be told.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use tokio::sync::oneshot;
use tunnel::Traffic;

use super::{Connection, ConnectionError, InstallRecord};
use crate::register_dns::RegistrationStatus;

/// What the tunnel reports (`aovpn status`, the lab, `aovpn connect --status-file`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ConnectionStatus {
    pub state: String,
    pub server: String,
    pub interface: String,
    pub virtual_ip: Option<IpAddr>,
    pub virtual_ips: Vec<IpAddr>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub routes: Vec<String>,
    pub dns: Vec<IpAddr>,
    pub dns_suffixes: Vec<String>,
    /// The gateway's internal domains (RFC 8598), resolved by `dns`.
    #[serde(default)]
    pub dns_domains: Vec<String>,
    pub ike: String,
    pub esp: String,
    pub mobike: bool,
    /// When the IKE SA was established and last rekeyed (seconds since the epoch).
    pub ike_since: Option<u64>,
    pub last_rekey: Option<u64>,
    pub traffic: Traffic,
    pub error: Option<String>,
    pub since: u64,
    /// RegisterDNS: the name and whether it is registered.
    #[serde(default)]
    pub dns_registration: Option<RegistrationStatus>,
    /// With EAP-TLS: the TLS version and suite it used.
    #[serde(default)]
    pub eap_tls: Option<String>,
}

/// What a running tunnel is told.
#[derive(Debug)]
pub enum Command {
    /// Say goodbye and remove everything.
    Stop,
    /// A fresh status, with traffic counters read now.
    Status(oneshot::Sender<ConnectionStatus>),
}

/// What a running tunnel tells its owner, in this order: `Installed` (possibly several times),
/// `Connected`, and last `Ended`.
#[derive(Debug, Clone)]
pub enum Report {
    /// What it added to the system (for crash recovery): interface, routes, addresses, DNS.
    Installed(InstallRecord),
    /// The tunnel carries traffic.
    Connected(Box<ConnectionStatus>),
    /// The tunnel is gone and everything it installed removed.
    Ended(Outcome),
}

/// How a tunnel ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stopped as asked.
    Stopped,
    /// Failed; `connected` says whether it had carried traffic before.
    Failed {
        error: ConnectionError,
        connected: bool,
    },
}

impl Connection {
    /// The status with what the engine knows now: traffic counters, SA times, addresses,
    /// MOBIKE, and how the DNS registration stands.
    pub(super) fn fresh_status(&self) -> ConnectionStatus {
        let mut status = self.status.clone();
        status.traffic = self.driver.traffic(self.sa);
        if let Some(record) = self.driver.sa(self.sa) {
            status.ike_since = record.established_unix;
            status.last_rekey = record.last_rekey_unix;
            if let Some(info) = &record.info {
                status.local = Some(info.local);
                status.remote = Some(info.remote);
            }
        }
        status.mobike = self
            .driver
            .endpoint()
            .sa(self.sa)
            .is_some_and(|sa| sa.mobike());
        if let Some(registrar) = &self.registrar {
            status.dns_registration = Some(registrar.status());
        }
        status
    }
}
