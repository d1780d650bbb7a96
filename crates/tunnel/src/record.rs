//! What the driver keeps for the daemons per IKE SA: its Child SAs as negotiated (without
//! keys), the data-plane SA that runs each, and their traffic.

use std::net::IpAddr;

use datapath::EspSaId;
use ike_wire::TrafficSelector;
use ikev2::{EspAlgorithms, Failure, IkeSaInfo};
use ipnet::IpNet;

/// A Child SA as the daemons see it: what was negotiated, without its keys (those live in the
/// data plane only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// SPI the peer sends to.
    pub spi_in: u32,
    /// SPI we send to.
    pub spi_out: u32,
    /// Negotiated ESP algorithms.
    pub algorithms: EspAlgorithms,
    /// Our traffic selectors, narrowed.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Virtual IPs: assigned to us (client) or to the peer (gateway).
    pub virtual_ips: Vec<IpAddr>,
    /// DNS servers from the configuration payload.
    pub dns_servers: Vec<IpAddr>,
    /// INTERNAL_DNS_DOMAIN attributes (RFC 8598).
    pub dns_domains: Vec<String>,
    /// INTERNAL_IP4/6_SUBNET attributes.
    pub subnets: Vec<IpNet>,
}

impl ChildInfo {
    pub(crate) fn of(child: &ikev2::ChildSa) -> Self {
        Self {
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            algorithms: child.algorithms,
            ts_local: child.ts_local.clone(),
            ts_remote: child.ts_remote.clone(),
            virtual_ips: child.virtual_ips.clone(),
            dns_servers: child.dns_servers.clone(),
            dns_domains: child.dns_domains.clone(),
            subnets: child.subnets.clone(),
        }
    }
}

/// One Child SA of an IKE SA and the data-plane SA that runs it.
#[derive(Debug, Clone)]
pub struct ChildRecord {
    /// What was negotiated.
    pub info: ChildInfo,
    /// The data-plane SA.
    pub esp_id: EspSaId,
    /// When it was installed (seconds since the Unix epoch).
    pub installed_unix: u64,
}

/// Bytes and packets through an IKE SA's Child SAs since it was established.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    /// Inbound ESP packets the SAs refused (replay, integrity, outside the selectors).
    pub dropped_in: u64,
    /// Packets for the peer that its selectors do not cover, not sent.
    pub dropped_out: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, c: &datapath::SaCounters) {
        self.bytes_in += c.inbound.bytes;
        self.packets_in += c.inbound.packets;
        self.bytes_out += c.outbound.bytes;
        self.packets_out += c.outbound.packets;
        self.dropped_in +=
            c.inbound.replayed + c.inbound.auth_failed + c.spoofed + c.inbound_destination_refused;
        self.dropped_out += c.outbound_refused;
    }
}

/// An IKE SA, its Child SAs and their data-plane SAs.
#[derive(Debug, Clone)]
pub struct IkeSaRecord {
    /// Set once the IKE SA is authenticated.
    pub info: Option<IkeSaInfo>,
    /// Installed Child SAs (during a rekey, the old one and its replacement).
    pub children: Vec<ChildRecord>,
    /// When it was authenticated (seconds since the Unix epoch).
    pub established_unix: Option<u64>,
    /// When it or one of its Child SAs was last rekeyed.
    pub last_rekey_unix: Option<u64>,
    /// Traffic of Child SAs already removed (rekeyed away).
    pub(crate) retired_traffic: Traffic,
    /// The last failure the engine reported, carried into [`crate::DriverEvent::Closed`].
    pub(crate) failure: Option<Failure>,
    /// ESP packet counts at the last liveness tick, and the ticks in a row that saw ESP go
    /// out and none come in.
    pub(crate) inbound_seen: u64,
    pub(crate) outbound_seen: u64,
    pub(crate) one_way_ticks: u32,
}

impl IkeSaRecord {
    pub(crate) fn new() -> Self {
        Self {
            info: None,
            children: Vec::new(),
            established_unix: None,
            last_rekey_unix: None,
            retired_traffic: Traffic::default(),
            failure: None,
            inbound_seen: 0,
            outbound_seen: 0,
            one_way_ticks: 0,
        }
    }

    /// The newest Child SA (the one that carries traffic after a rekey).
    pub fn current_child(&self) -> Option<&ChildRecord> {
        self.children.last()
    }

    pub(crate) fn child_by_spi(&self, spi_in: u32) -> Option<&ChildRecord> {
        self.children.iter().find(|c| c.info.spi_in == spi_in)
    }
}
