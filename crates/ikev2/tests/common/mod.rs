//! Two-party harness: an initiator `IkeSa` and a responder `Endpoint` wired in memory with a
//! virtual clock, deterministic crypto providers and certificates issued by `pki`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ikev2::ike_wire::{TrafficSelector, TsRange};
use ikev2::ipsec_crypto::{Provider, SigningKey};
use ikev2::{
    AddressFamily, AddressPool, Endpoint, Event, IkeConfig, IkeId, IkeSa, IkeSaId, InitiatorConfig,
    LocalCredentials, PeerRole, PkiValidator, ResponderConfig, Transmit,
};
pub use ikev2::{Now, Path};
use pki::{CertKind, CertificateAuthority, Identity, KeyAlgorithm, TrustStore, Validity};

/// 2026-01-01T00:00:00Z: certificates are valid from here for ten years.
pub const CERT_START: u64 = 1_767_225_600;
/// The wall clock the engines see: a month later.
pub const UNIX_NOW: u64 = CERT_START + 30 * 86_400;

pub const GATEWAY_NAME: &str = "gw.example.test";
pub const CLIENT_NAME: &str = "client1.example.test";

/// `now` with the tests' wall clock, when the certificates are valid.
pub fn at(now: Instant) -> Now {
    Now::new(now, UNIX_NOW)
}

pub fn client_addr() -> SocketAddr {
    "198.51.100.10:500".parse().unwrap()
}

pub fn server_addr() -> SocketAddr {
    "203.0.113.1:500".parse().unwrap()
}

pub fn validity() -> Validity {
    Validity::days_from(UNIX_EPOCH + Duration::from_secs(CERT_START), 3650)
}

pub struct Pki {
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new(alg: KeyAlgorithm) -> Self {
        Self {
            ca: CertificateAuthority::new_root("aovpn test root", alg, validity()).unwrap(),
        }
    }

    pub fn issue(&self, kind: CertKind, name: &str, alg: KeyAlgorithm) -> Identity {
        self.ca.issue(kind, name, alg, validity()).unwrap()
    }

    pub fn trust(&self) -> TrustStore {
        TrustStore::with_roots([self.ca.cert().clone()]).unwrap()
    }
}

pub fn credentials(identity: &Identity, id: IkeId) -> LocalCredentials {
    let key = SigningKey::from_pkcs8_der(identity.key.pkcs8_der()).unwrap();
    // The chain ends with the root, which the peer already has.
    let n = identity.chain.len().saturating_sub(1).max(1);
    LocalCredentials {
        id,
        key: Arc::new(key),
        chain: identity
            .chain
            .iter()
            .take(n)
            .map(|c| c.der().as_ref().to_vec())
            .collect(),
    }
}

pub fn v4_range(a: [u8; 4], b: [u8; 4]) -> TrafficSelector {
    TrafficSelector::Ipv4(TsRange {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: a.into(),
        end: b.into(),
    })
}

/// A pool over a fixed list, shared with the test through an `Arc<Mutex<_>>`.
#[derive(Debug, Default)]
pub struct PoolState {
    pub free: Vec<IpAddr>,
    pub leased: Vec<(IkeId, IpAddr)>,
}

#[derive(Debug, Clone, Default)]
pub struct TestPool(pub Arc<Mutex<PoolState>>);

impl TestPool {
    pub fn with(addrs: &[&str]) -> Self {
        let p = Self::default();
        p.0.lock().unwrap().free = addrs.iter().rev().map(|a| a.parse().unwrap()).collect();
        p
    }

    pub fn leased(&self) -> usize {
        self.0.lock().unwrap().leased.len()
    }
}

impl AddressPool for TestPool {
    fn allocate(&mut self, peer: &IkeId, _: Option<&str>, family: AddressFamily) -> Option<IpAddr> {
        let mut s = self.0.lock().unwrap();
        let i = s
            .free
            .iter()
            .rposition(|a| a.is_ipv4() == (family == AddressFamily::V4))?;
        let a = s.free.remove(i);
        s.leased.push((peer.clone(), a));
        Some(a)
    }

    fn release(&mut self, peer: &IkeId, addr: IpAddr) {
        let mut s = self.0.lock().unwrap();
        s.leased.retain(|(p, a)| !(p == peer && *a == addr));
        s.free.push(addr);
    }
}

/// Everything needed to build both sides; tests tweak fields before `Pair::new`.
pub struct Setup {
    pub client: InitiatorConfig,
    pub server: ResponderConfig,
    pub pool: TestPool,
}

impl Setup {
    pub fn new(alg: KeyAlgorithm) -> Self {
        let pki = Pki::new(alg);
        let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, alg);
        let cl = pki.issue(CertKind::Machine, CLIENT_NAME, alg);
        Self::with_identities(&pki, &gw, &cl, IkeId::Fqdn(CLIENT_NAME.into()))
    }

    pub fn with_identities(pki: &Pki, gw: &Identity, cl: &Identity, client_id: IkeId) -> Self {
        let client_validator = PkiValidator {
            trust: pki.trust(),
            role: PeerRole::Gateway {
                server_name: GATEWAY_NAME.into(),
            },
            expected_id: None,
        };
        let server_validator = PkiValidator {
            trust: pki.trust(),
            role: PeerRole::Client,
            expected_id: None,
        };
        let client = InitiatorConfig::new(IkeConfig::new(
            credentials(cl, client_id),
            Arc::new(client_validator),
        ));
        let mut server = ResponderConfig::new(IkeConfig::new(
            credentials(gw, IkeId::Fqdn(GATEWAY_NAME.into())),
            Arc::new(server_validator),
        ));
        server.local_ts = vec![v4_range([10, 1, 0, 0], [10, 1, 255, 255])];
        server.dns_servers = vec!["10.1.0.53".parse().unwrap()];
        server.pushed_subnets = vec!["10.1.0.0/16".parse().unwrap()];
        Self {
            client,
            server,
            pool: TestPool::with(&["172.16.201.10", "172.16.201.11"]),
        }
    }
}

/// What happens to one datagram in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
}

/// A datagram with its direction.
#[derive(Debug, Clone)]
pub struct Flight {
    pub to_server: bool,
    pub t: Transmit,
}

/// Decides a datagram's fate from its index on the wire and the flight.
pub type FateFn = Box<dyn FnMut(usize, &Flight) -> Fate>;

pub struct Pair {
    pub client: IkeSa,
    pub server: Endpoint,
    pub now: Instant,
    pub start: Instant,
    pub client_events: Vec<Event>,
    pub server_events: Vec<(IkeSaId, Event)>,
    /// Every datagram put on the wire, in order.
    pub wire: Vec<Flight>,
    /// Datagrams waiting for delivery (lets tests reorder).
    pub in_flight: VecDeque<Flight>,
    /// Decides each datagram's fate (index in `wire`, the flight).
    pub fate: FateFn,
    /// When set, the client is behind a NAT that maps its source to this address.
    pub nat: Option<SocketAddr>,
    /// The wall clocks (seconds since the epoch) the client and the server receive with each
    /// datagram.
    pub client_unix: u64,
    pub server_unix: u64,
    pub pool: TestPool,
}

impl Pair {
    pub fn new(setup: Setup) -> Self {
        let start = Instant::now();
        let server = Endpoint::new(
            Arc::new(setup.server),
            Arc::new(Provider::deterministic(b"server seed")),
            Box::new(setup.pool.clone()),
        )
        .unwrap();
        let client = IkeSa::connect(
            Arc::new(setup.client),
            Arc::new(Provider::deterministic(b"client seed")),
            start,
            client_addr(),
            server_addr(),
        )
        .unwrap();
        let mut pair = Self {
            client,
            server,
            now: start,
            start,
            client_events: Vec::new(),
            server_events: Vec::new(),
            wire: Vec::new(),
            in_flight: VecDeque::new(),
            fate: Box::new(|_, _| Fate::Deliver),
            nat: None,
            client_unix: UNIX_NOW,
            server_unix: UNIX_NOW,
            pool: setup.pool,
        };
        pair.collect();
        pair
    }

    /// Moves outputs of both sides into `in_flight` and the event logs.
    pub fn collect(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            let t = match self.nat {
                // The NAT rewrites the source; ports keep their meaning for the marker.
                Some(public) => Transmit {
                    local: SocketAddr::new(
                        public.ip(),
                        if t.natt {
                            public.port() + 1
                        } else {
                            public.port()
                        },
                    ),
                    ..t
                },
                None => t,
            };
            self.push(true, t);
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(t) = self.server.poll_transmit() {
            self.push(false, t);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    fn push(&mut self, to_server: bool, t: Transmit) {
        let f = Flight { to_server, t };
        self.wire.push(f.clone());
        self.in_flight.push_back(f);
    }

    /// Delivers one in-flight datagram (after its fate). Returns false when none is left.
    pub fn deliver_one(&mut self) -> bool {
        let Some(f) = self.in_flight.pop_front() else {
            return false;
        };
        let index = self.wire.len();
        let fate = (self.fate)(index, &f);
        let copies = match fate {
            Fate::Deliver => 1,
            Fate::Drop => 0,
            Fate::Duplicate => 2,
        };
        for _ in 0..copies {
            self.deliver(&f);
        }
        self.collect();
        true
    }

    pub fn deliver(&mut self, f: &Flight) {
        // Receivers see local = the datagram's destination, remote = its source, on the
        // socket it was sent to.
        let path = f.t.arrival();
        if f.to_server {
            self.server
                .handle_datagram(Now::new(self.now, self.server_unix), path, &f.t.bytes);
        } else {
            let path = if self.nat.is_some() {
                // The NAT maps back to the client's private address.
                let port = if path.natt { 4500 } else { 500 };
                Path {
                    local: SocketAddr::new(client_addr().ip(), port),
                    ..path
                }
            } else {
                path
            };
            self.client
                .handle_datagram(Now::new(self.now, self.client_unix), path, &f.t.bytes);
        }
    }

    /// Delivers until nothing is in flight; then, if `advance`, jumps to the next timer and
    /// repeats, up to `limit` virtual seconds.
    pub fn run(&mut self, advance: bool, limit: Duration) {
        loop {
            while self.deliver_one() {}
            if !advance {
                return;
            }
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                return;
            };
            if next > self.start + limit {
                return;
            }
            self.now = self.now.max(next);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.collect();
        }
    }

    /// Runs without timers.
    pub fn settle(&mut self) {
        self.run(false, Duration::ZERO);
    }

    pub fn client_child(&self) -> Option<&ikev2::ChildSa> {
        self.client_events.iter().find_map(|e| match e {
            Event::ChildSaEstablished(c) => Some(&**c),
            _ => None,
        })
    }

    pub fn server_child(&self) -> Option<&ikev2::ChildSa> {
        self.server_events.iter().find_map(|(_, e)| match e {
            Event::ChildSaEstablished(c) => Some(&**c),
            _ => None,
        })
    }

    pub fn client_failure(&self) -> Option<&ikev2::Failure> {
        self.client_events.iter().find_map(|e| match e {
            Event::Failed(f) => Some(f),
            _ => None,
        })
    }

    pub fn server_failure(&self) -> Option<&ikev2::Failure> {
        self.server_events.iter().find_map(|(_, e)| match e {
            Event::Failed(f) => Some(f),
            _ => None,
        })
    }

    pub fn established(&self) -> (Option<&ikev2::IkeSaInfo>, Option<&ikev2::IkeSaInfo>) {
        let c = self.client_events.iter().find_map(|e| match e {
            Event::IkeSaEstablished(i) => Some(i),
            _ => None,
        });
        let s = self.server_events.iter().find_map(|(_, e)| match e {
            Event::IkeSaEstablished(i) => Some(i),
            _ => None,
        });
        (c, s)
    }
}

/// Seconds since the epoch as the tests' wall clock; kept for symmetry with the daemons.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A responder endpoint with `cfg` and one pool address.
pub fn responder(cfg: ikev2::ResponderConfig) -> ikev2::Endpoint {
    ikev2::Endpoint::new(
        Arc::new(cfg),
        Arc::new(Provider::deterministic(b"gw")),
        Box::new(TestPool::with(&["172.16.201.10"])),
    )
    .expect("a responder endpoint")
}
