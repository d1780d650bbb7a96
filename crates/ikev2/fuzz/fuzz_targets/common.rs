#![allow(dead_code)] // each target uses part of the fixture
//! An established IKE SA pair in memory (client `IkeSa`, gateway `Endpoint`), made once per
//! process and rebuilt when an input closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ikev2::ike_wire::{TrafficSelector, TsRange};
use ikev2::ipsec_crypto::{Provider, SigningKey};
use ikev2::{
    AddressFamily, AddressPool, Endpoint, IkeConfig, IkeId, IkeSa, InitiatorConfig,
    LocalCredentials, Now, PeerRole, PkiValidator, ResponderConfig,
};
use pki::{CertKind, CertificateAuthority, Identity, KeyAlgorithm, Validity};

pub const UNIX_NOW: u64 = 1_767_225_600 + 30 * 86_400;

pub fn client_addr() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 10], 500))
}

pub fn server_addr() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 1], 500))
}

pub struct Fixture {
    pub gateway: Identity,
    pub client: InitiatorConfig,
    pub server: ResponderConfig,
}

struct OnePool;

impl AddressPool for OnePool {
    fn allocate(
        &mut self,
        _: &IkeId,
        _: Option<&str>,
        family: AddressFamily,
    ) -> Option<std::net::IpAddr> {
        (family == AddressFamily::V4).then(|| std::net::IpAddr::from([172, 16, 201, 10]))
    }
    fn release(&mut self, _: &IkeId, _: std::net::IpAddr) {}
}

fn credentials(identity: &Identity, id: IkeId) -> LocalCredentials {
    let key = SigningKey::from_pkcs8_der(identity.key.pkcs8_der()).expect("issued key");
    LocalCredentials {
        id,
        key: Arc::new(key),
        chain: vec![identity.chain[0].der().as_ref().to_vec()],
    }
}

impl Fixture {
    pub fn new() -> Self {
        let validity =
            Validity::days_from(UNIX_EPOCH + Duration::from_secs(UNIX_NOW - 86_400), 3650);
        let ca = CertificateAuthority::new_root("fuzz root", KeyAlgorithm::P256, validity)
            .expect("root");
        let gw = ca
            .issue(
                CertKind::Gateway,
                "gw.fuzz.test",
                KeyAlgorithm::P256,
                validity,
            )
            .expect("gateway");
        let cl = ca
            .issue(
                CertKind::Machine,
                "client.fuzz.test",
                KeyAlgorithm::P256,
                validity,
            )
            .expect("client");
        let trust = pki::TrustStore::with_roots([ca.cert().clone()]).expect("trust");
        let client = InitiatorConfig::new(IkeConfig::new(
            credentials(&cl, IkeId::Fqdn("client.fuzz.test".into())),
            Arc::new(PkiValidator {
                trust: trust.clone(),
                role: PeerRole::Gateway {
                    server_name: "gw.fuzz.test".into(),
                },
                expected_id: None,
            }),
        ));
        let mut server = ResponderConfig::new(IkeConfig::new(
            credentials(&gw, IkeId::Fqdn("gw.fuzz.test".into())),
            Arc::new(PkiValidator {
                trust,
                role: PeerRole::Client,
                expected_id: None,
            }),
        ));
        server.local_ts = vec![TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: [10, 1, 0, 0].into(),
            end: [10, 1, 255, 255].into(),
        })];
        server.mobike = true;
        Fixture {
            gateway: gw,
            client,
            server,
        }
    }

    /// A client SA and the gateway with one established IKE SA between them.
    pub fn establish(&self) -> Option<Pair> {
        let now = Instant::now();
        let server = Endpoint::new(
            Arc::new(self.server.clone()),
            Arc::new(Provider::deterministic(b"fuzz gateway")),
            Box::new(OnePool),
        )
        .ok()?;
        let client = IkeSa::connect(
            Arc::new(self.client.clone()),
            Arc::new(Provider::deterministic(b"fuzz client")),
            now,
            client_addr(),
            server_addr(),
        )
        .ok()?;
        let mut pair = Pair {
            client,
            server,
            now,
        };
        pair.exchange();
        (pair.client.state() == ikev2::IkeSaState::Established).then_some(pair)
    }
}

pub struct Pair {
    pub client: IkeSa,
    pub server: Endpoint,
    pub now: Instant,
}

impl Pair {
    /// The pair's clock, with the wall clock at which the fixture's certificates are valid.
    pub fn at(&self) -> Now {
        Now::new(self.now, UNIX_NOW)
    }

    /// Delivers datagrams both ways until both sides are quiet.
    pub fn exchange(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                self.server.handle_datagram(self.at(), t.arrival(), &t.bytes);
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                self.client.handle_datagram(self.at(), t.arrival(), &t.bytes);
            }
            while self.client.poll_event().is_some() {}
            while self.server.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }
}
