//! The tunnel on bad paths. This kernel has no netem, so the impairments are made in the
//! routed lab's middle namespace: loss with nftables (`numgen random`), a 1280-byte path MTU
//! with the router's MTU and ICMP dropped, and delay, reordering and duplication by a small
//! userspace relay: policy routing sends everything the router forwards through a TUN device
//! the test reads, holds, copies or reorders, and writes back (then forwarded as usual). In
//! each case the tunnel comes up (`aovpn gateway`, `aovpn connect`) and a 50 MB TCP transfer
//! through it finishes with the right checksum; the times are reported, not asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Lab, bin, report};
use testkit::aovpn::{ClientOpts, ClientProcess, GatewayOpts, GatewayProcess, PkiOptions};
use testkit::netns::{Netns, lab};

const GATEWAY_NAME: &str = "vpn.faults.example";
const TRANSFER: u64 = 50 * 1024 * 1024;
/// The relay's TUN device in the router namespace.
const RELAY_IF: &str = "flt0";
/// Routing table for everything the router forwards.
const RELAY_TABLE: &str = "100";

/// What the relay does to each packet.
#[derive(Debug, Clone, Copy, Default)]
struct Impairment {
    /// Every packet waits this long.
    delay: Duration,
    /// This share of packets (0..1) waits `late` more, so later ones overtake it.
    late_share: f64,
    late: Duration,
    /// This share of packets goes out twice.
    duplicate_share: f64,
}

struct Relay {
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Routes the router's forwarded traffic through a TUN device and starts relaying.
    fn start(router: &Netns, impairment: Impairment) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let router_path = router.path();
        let (stop2, packets2) = (stop.clone(), packets.clone());
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(router_path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(relay(impairment, stop2, packets2, ready_tx));
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("relay TUN up");
        for args in [
            vec!["link", "set", RELAY_IF, "up"],
            vec![
                "route",
                "add",
                "default",
                "dev",
                RELAY_IF,
                "table",
                RELAY_TABLE,
            ],
            vec![
                "rule",
                "add",
                "iif",
                lab::INTERNET_CLIENT_IF,
                "lookup",
                RELAY_TABLE,
            ],
            vec![
                "rule",
                "add",
                "iif",
                lab::INTERNET_GATEWAY_IF,
                "lookup",
                RELAY_TABLE,
            ],
        ] {
            let out = router.ip(args.clone()).unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        router.sysctl("net.ipv4.conf.all.rp_filter", "0").unwrap();
        router
            .sysctl(&format!("net.ipv4.conf.{RELAY_IF}.rp_filter"), "0")
            .unwrap();
        Relay {
            stop,
            packets,
            thread: Some(thread),
        }
    }

    fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// xorshift: the relay's coin (reproducible runs).
struct Coin(u64);

impl Coin {
    fn flip(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

async fn relay(
    imp: Impairment,
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let mut config = netio::tun::TunConfig::new(RELAY_IF, 1500);
    config.offload = false;
    config.queues = 1;
    let tun = netio::tun::create(&config).unwrap();
    let queue = &tun.queues[0];
    ready.send(()).unwrap();
    let mut coin = Coin(0x2545_f491_4f6c_dd1d);
    // (release time, sequence) -> packet; the sequence keeps equal times in arrival order.
    let mut held: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let next = held.peek().map(|Reverse((t, _, _))| *t);
        let wait = next.map_or(Duration::from_millis(50), |t| {
            t.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            got = queue.recv(&mut buf) => {
                let Ok(n) = got else { continue };
                packets.fetch_add(1, Ordering::Relaxed);
                let mut at = Instant::now() + imp.delay;
                if coin.flip(imp.late_share) {
                    at += imp.late;
                }
                let copies = if coin.flip(imp.duplicate_share) { 2 } else { 1 };
                for _ in 0..copies {
                    seq += 1;
                    held.push(Reverse((at, seq, buf[..n].to_vec())));
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let now = Instant::now();
        while held.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            if let Some(Reverse((_, _, p))) = held.pop() {
                let _ = queue.send(&p).await;
            }
        }
    }
}

/// The routed lab without NAT, the gateway, and `aovpn connect` up through `setup`'s
/// impairment; then 50 MB from the client to the protected host, checksummed.
fn run(prefix: &str, what: &str, setup: impl FnOnce(&Netns) -> Option<Relay>) {
    run_then(prefix, what, setup, |_| {});
}

/// [`run`], then `check` on the router before everything is removed.
fn run_then(
    prefix: &str,
    what: &str,
    setup: impl FnOnce(&Netns) -> Option<Relay>,
    check: impl FnOnce(&Netns),
) {
    let lab = Lab::routed(prefix, PkiOptions::new(GATEWAY_NAME), false, GATEWAY_NAME);
    let router = lab.topo.internet.as_ref().unwrap();
    let relay = setup(router);
    let mut opts = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    opts.state_dir = Some(lab.dir("gw-state"));
    let gw = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw"), &opts).unwrap();
    let started = Instant::now();
    let client = ClientProcess::start(
        bin(),
        &lab.topo.client,
        &lab.dir("cl"),
        &ClientOpts::new(
            GATEWAY_NAME,
            &lab.pki.machine_cert,
            &lab.pki.machine_key,
            &lab.pki.ca_cert,
        )
        .name("faults"),
    )
    .unwrap();
    assert_eq!(
        client.state().as_deref(),
        Some("connected"),
        "{what}: no tunnel\n{}\n--- client\n{}\n--- gateway\n{}",
        client.status_text(),
        client.log(),
        gw.log()
    );
    let up = started.elapsed();
    let listen = SocketAddr::from((lab::VNET_HOST, 5201));
    let begun = Instant::now();
    let mbps =
        common::checked_transfer(TRANSFER, &lab.topo.vnet, listen, &lab.topo.client, false, 7);
    let relayed = relay.as_ref().map(Relay::packets);
    report(&format!(
        "{what}: tunnel up in {} ms; 50 MB checksummed in {:.1} s ({mbps:.0} Mbit/s){}",
        up.as_millis(),
        begun.elapsed().as_secs_f64(),
        relayed.map_or_else(String::new, |n| format!("; {n} packets through the relay"))
    ));
    check(router);
    drop(client);
    drop(gw);
    drop(relay);
}

fn nft(ns: &Netns, rules: &str) {
    let mut child = ns
        .command(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft: {rules}");
}

#[test]
fn five_percent_loss() {
    run("flloss", "5% loss both ways", |router| {
        nft(
            router,
            "table inet faults {\n chain impair_fwd {\n  type filter hook forward priority 0;\n  \
             numgen random mod 100 < 5 drop\n }\n}\n",
        );
        None
    });
}

/// A path whose MTU is 1280 and whose router sends no ICMP: outer packets go without DF
/// (as kernel IPsec sends them), so the router fragments them instead of dropping them. The
/// links stay at 1500; the router's routes carry the 1280 (locked, as a smaller link further
/// along would make it).
#[test]
fn a_1280_byte_path_mtu_with_icmp_blocked() {
    let fragmented = |router: &Netns| {
        // The path really was narrower than the packets: the router fragmented them.
        let snmp = router.exec(["cat", "/proc/net/snmp"]).unwrap();
        let text = String::from_utf8_lossy(&snmp.stdout).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Ip:")).collect();
        let names: Vec<&str> = lines[0].split_whitespace().collect();
        let values: Vec<&str> = lines[1].split_whitespace().collect();
        let at = names.iter().position(|n| *n == "FragCreates").unwrap();
        let created: u64 = values[at].parse().unwrap();
        assert!(
            created > 10_000,
            "the router fragmented only {created} packets"
        );
    };
    run_then(
        "flmtu",
        "1280-byte path MTU, ICMP blocked",
        |router| {
            for (net, dev) in [
                ("198.51.100.0/24", lab::INTERNET_CLIENT_IF),
                ("203.0.113.0/24", lab::INTERNET_GATEWAY_IF),
            ] {
                let out = router
                    .ip(["route", "replace", net, "dev", dev, "mtu", "lock", "1280"])
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
            }
            nft(
                router,
                "table inet faults {\n\
             chain impair_fwd {\n type filter hook forward priority 0;\n meta l4proto icmp drop\n }\n\
             chain impair_out {\n type filter hook output priority 0;\n meta l4proto icmp drop\n }\n}\n",
            );
            None
        },
        fragmented,
    );
}

#[test]
fn three_hundred_ms_delay() {
    run("fldly", "300 ms delay each way", |router| {
        Some(Relay::start(
            router,
            Impairment {
                delay: Duration::from_millis(300),
                ..Impairment::default()
            },
        ))
    });
}

#[test]
fn reordering() {
    run("flreo", "25% of packets 5 ms late (reordered)", |router| {
        Some(Relay::start(
            router,
            Impairment {
                late_share: 0.25,
                late: Duration::from_millis(5),
                ..Impairment::default()
            },
        ))
    });
}

#[test]
fn duplication() {
    run("fldup", "5% of packets duplicated", |router| {
        Some(Relay::start(
            router,
            Impairment {
                duplicate_share: 0.05,
                ..Impairment::default()
            },
        ))
    });
}
