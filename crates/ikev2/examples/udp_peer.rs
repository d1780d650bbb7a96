//! Minimal blocking UDP driver for manual interop runs (e.g. against strongSwan in a network
//! namespace). Not a product: the real driver lives in the daemons.
//!
//! ```text
//! udp_peer initiator LOCAL_IP REMOTE_IP CERT.pem KEY.pem CA.pem SERVER_NAME [dn|fqdn:NAME]
//! udp_peer responder LOCAL_IP -         CERT.pem KEY.pem CA.pem OWN_FQDN
//! ```
//! Binds LOCAL_IP:500 and LOCAL_IP:4500, prints every event (including Child SA keys, so a run
//! can be compared with the peer's debug log) and exits after the first Child SA (initiator)
//! or after 60 s. Environment: `RUN_SECS=N` runs N seconds and does not stop at the first
//! Child SA (to watch rekeys); `IKE_LIFETIME` / `CHILD_LIFETIME` (seconds) set our lifetimes,
//! so that we rekey too; `IKE_PROPOSALS` / `ESP_PROPOSALS` (initiator) replace the defaults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ikev2::ike_wire::{TrafficSelector, TsRange};
use ikev2::ipsec_crypto::{Provider, SigningKey};
use ikev2::{
    AddressFamily, AddressPool, Endpoint, Event, IkeConfig, IkeId, IkeSa, InitiatorConfig,
    LocalCredentials, Now, Path, PeerRole, PkiValidator, ResponderConfig, Transmit,
};

struct Pool(Vec<IpAddr>);

impl AddressPool for Pool {
    fn allocate(
        &mut self,
        _peer: &IkeId,
        _group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        let i = self
            .0
            .iter()
            .position(|a| a.is_ipv4() == (family == AddressFamily::V4))?;
        Some(self.0.remove(i))
    }
    fn release(&mut self, _peer: &IkeId, addr: IpAddr) {
        self.0.push(addr);
    }
}

enum Engine {
    Initiator(Box<IkeSa>),
    Responder(Box<Endpoint>),
}

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn env_secs(name: &str) -> Option<Duration> {
    let v = std::env::var(name).ok()?;
    Some(Duration::from_secs(v.parse().expect("seconds")))
}

fn set_lifetimes(ike: &mut IkeConfig) {
    // Long by default: the peer's rekeys are what a lab run usually watches.
    ike.ike_lifetime = Some(env_secs("IKE_LIFETIME").unwrap_or(Duration::from_secs(86_400)));
    ike.child_lifetime = Some(env_secs("CHILD_LIFETIME").unwrap_or(Duration::from_secs(86_400)));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].as_str();
    let local_ip: IpAddr = args[2].parse().unwrap();
    let cert_chain = pki::load_certificates(&std::fs::read(&args[4]).unwrap()).unwrap();
    let key = pki::PrivateKey::load(&std::fs::read(&args[5]).unwrap()).unwrap();
    let ca = pki::load_certificates(&std::fs::read(&args[6]).unwrap()).unwrap();
    let name = args[7].clone();
    let trust = pki::TrustStore::with_roots(ca).unwrap();
    let id = match args.get(8).map(String::as_str) {
        Some("dn") => IkeId::DerDn(cert_chain[0].subject_der().to_vec()),
        Some(s) if s.starts_with("fqdn:") => IkeId::Fqdn(s[5..].into()),
        _ => IkeId::Fqdn(name.clone()),
    };
    let local = LocalCredentials {
        id,
        key: Arc::new(SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap()),
        chain: cert_chain
            .iter()
            .map(|c| c.der().as_ref().to_vec())
            .collect(),
    };
    let provider = Arc::new(Provider::system());
    let sock500 = UdpSocket::bind(SocketAddr::new(local_ip, 500)).unwrap();
    let sock4500 = UdpSocket::bind(SocketAddr::new(local_ip, 4500)).unwrap();
    for s in [&sock500, &sock4500] {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    let start = Instant::now();
    let mut engine = if mode == "initiator" {
        let remote: IpAddr = args[3].parse().unwrap();
        let mut ike = IkeConfig::new(
            local,
            Arc::new(PkiValidator {
                trust,
                role: PeerRole::Gateway { server_name: name },
                expected_id: None,
            }),
        );
        if let Ok(v) = std::env::var("IKE_PROPOSALS") {
            ike.ike_proposals = ikev2::IkeProposal::parse_list(&v, true).unwrap();
        }
        if let Ok(v) = std::env::var("ESP_PROPOSALS") {
            ike.esp_proposals = ikev2::EspProposal::parse_list(&v, true).unwrap();
        }
        if std::env::var("AUTH_CLASSIC").is_ok_and(|v| v == "1") {
            ike.auth_method = ikev2::AuthMethodPolicy::Classic;
        }
        set_lifetimes(&mut ike);
        let mut cfg = InitiatorConfig::new(ike);
        cfg.ts_remote = vec![TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: [10, 1, 0, 0].into(),
            end: [10, 1, 255, 255].into(),
        })];
        let sa = IkeSa::connect(
            Arc::new(cfg),
            provider,
            start,
            SocketAddr::new(local_ip, 500),
            SocketAddr::new(remote, 500),
        )
        .unwrap();
        Engine::Initiator(Box::new(sa))
    } else {
        let mut ike = IkeConfig::new(
            local,
            Arc::new(PkiValidator {
                trust,
                role: PeerRole::Client,
                expected_id: None,
            }),
        );
        set_lifetimes(&mut ike);
        let mut cfg = ResponderConfig::new(ike);
        cfg.local_ts = vec![TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: [10, 1, 0, 0].into(),
            end: [10, 1, 255, 255].into(),
        })];
        cfg.dns_servers = vec!["10.1.0.53".parse().unwrap()];
        let pool = Pool(vec!["172.16.201.10".parse().unwrap()]);
        let ep = Endpoint::new(Arc::new(cfg), provider, Box::new(pool)).unwrap();
        Engine::Responder(Box::new(ep))
    };
    let mut buf = vec![0u8; 65536];
    let mut done = false;
    let run_secs = env_secs("RUN_SECS");
    let limit = run_secs.unwrap_or(Duration::from_secs(60));
    while start.elapsed() < limit && !done {
        let now = Instant::now();
        let mut out: Vec<Transmit> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        match &mut engine {
            Engine::Initiator(sa) => {
                if sa.poll_timeout().is_some_and(|t| t <= now) {
                    sa.handle_timeout(now);
                }
                out.extend(std::iter::from_fn(|| sa.poll_transmit()));
                events.extend(std::iter::from_fn(|| sa.poll_event()));
            }
            Engine::Responder(ep) => {
                if ep.poll_timeout().is_some_and(|t| t <= now) {
                    ep.handle_timeout(now);
                }
                out.extend(std::iter::from_fn(|| ep.poll_transmit()));
                events.extend(std::iter::from_fn(|| ep.poll_event().map(|(_, e)| e)));
            }
        }
        for t in out {
            let (sock, mut bytes) = if t.natt {
                (&sock4500, vec![0u8; 4])
            } else {
                (&sock500, Vec::new())
            };
            bytes.extend_from_slice(&t.bytes);
            println!("-> {} bytes {} -> {}", bytes.len(), t.local, t.remote);
            sock.send_to(&bytes, t.remote).unwrap();
        }
        for e in events {
            match &e {
                Event::ChildSaEstablished(c) | Event::ChildSaRekeyed { new: c, .. } => {
                    if let Event::ChildSaRekeyed {
                        old_spi_in,
                        old_spi_out,
                        ..
                    } = &e
                    {
                        println!("REKEYED old spi_in={old_spi_in:08x} spi_out={old_spi_out:08x}");
                    }
                    println!(
                        "CHILD spi_in={:08x} spi_out={:08x} {:?} vips={:?} dns={:?} ts_local={:?} ts_remote={:?}",
                        c.spi_in,
                        c.spi_out,
                        c.algorithms,
                        c.virtual_ips,
                        c.dns_servers,
                        c.ts_local,
                        c.ts_remote
                    );
                    println!("  encr_in  {}", hex::encode(c.encr_key_in.as_bytes()));
                    println!("  encr_out {}", hex::encode(c.encr_key_out.as_bytes()));
                    println!("  integ_in  {}", hex::encode(c.integ_key_in.as_bytes()));
                    println!("  integ_out {}", hex::encode(c.integ_key_out.as_bytes()));
                    if mode == "initiator" && run_secs.is_none() {
                        done = true;
                    }
                }
                other => println!("EVENT {other:?}"),
            }
        }
        for (sock, marker) in [(&sock500, false), (&sock4500, true)] {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let local = sock.local_addr().unwrap();
            let data = &buf[..n];
            let ike = if marker {
                match data.split_first_chunk::<4>() {
                    Some(([0, 0, 0, 0], rest)) => rest,
                    _ => {
                        println!("<- non-IKE {n} bytes on 4500 (ESP or keepalive)");
                        continue;
                    }
                }
            } else {
                data
            };
            println!("<- {n} bytes {from} -> {local}");
            let path = Path {
                local,
                remote: from,
                natt: marker,
            };
            let now = Now::new(Instant::now(), unix());
            match &mut engine {
                Engine::Initiator(sa) => sa.handle_datagram(now, path, ike),
                Engine::Responder(ep) => ep.handle_datagram(now, path, ike),
            }
        }
    }
}
