//! Throughput of our tunnel against the plain veth, with iperf3 (root; builds its own lab).
//!
//! ```text
//! cargo run --release -p datapath --example tunnel-bench -- [--secs 10] [--cipher gcm|cbc]
//!     [--queues 1] [--threads 1] [--tun-offload] [--no-udp-offload] [--runs 1]
//! ```
//!
//! Prints Mbit/s for TCP upload (client -> 10.1.0.10) and download (-R) through the tunnel
//! (static keys), for TCP over the plain client-gateway veth, and the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool may unwrap

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{CLIENT_VIP, Lab, LabOptions, cbc256_sha256, gcm256};
use testkit::netns::{Netns, lab};

struct Args {
    secs: u32,
    runs: u32,
    opts: LabOptions,
}

fn parse_args() -> Args {
    let mut args = Args {
        secs: 10,
        runs: 1,
        opts: LabOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("option needs a value");
        match a.as_str() {
            "--secs" => args.secs = value().parse().expect("--secs N"),
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--queues" => args.opts.queues = value().parse().expect("--queues N"),
            "--threads" => args.opts.threads = value().parse().expect("--threads N"),
            "--cipher" => {
                args.opts.transform = match value().as_str() {
                    "gcm" => gcm256(),
                    "cbc" => cbc256_sha256(),
                    other => panic!("unknown cipher {other} (gcm|cbc)"),
                }
            }
            "--tun-offload" => args.opts.tun_offload = true,
            "--no-udp-offload" => args.opts.udp_offload = false,
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// CPU time this process (both data planes, not iperf3) has used, from /proc/self/stat
/// (utime + stime in USER_HZ = 100 ticks per second, fixed by the Linux ABI).
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Runs `f` (an iperf3 test returning Mbit/s) and reports it with the data planes' CPU use.
fn measured(label: &str, secs: u32, sender: &Netns, f: impl FnOnce() -> f64) -> f64 {
    let retrans0 = tcp_retransmits(sender);
    let cpu0 = own_cpu();
    let start = Instant::now();
    let mbps = f();
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let cpu = (own_cpu() - cpu0).as_secs_f64();
    // Below a few clock ticks the ratio is noise (the plain veth test runs no data plane).
    let per_core = if cpu > 0.05 {
        mbps * f64::from(secs) / cpu
    } else {
        0.0
    };
    let retrans = tcp_retransmits(sender).saturating_sub(retrans0);
    println!(
        "  {label:<14} {mbps:>7.0} Mbit/s   data planes {:>5.0}% of a core, {per_core:>6.0} Mbit \
         per data-plane CPU-second, {retrans} TCP retransmits",
        100.0 * cpu / wall
    );
    mbps
}

/// The sender namespace's TCP retransmitted segments so far.
fn tcp_retransmits(ns: &Netns) -> u64 {
    let out = ns
        .exec(["nstat", "-az", "TcpRetransSegs"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .find_map(|l| l.strip_prefix("TcpRetransSegs"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits for `child` up to `limit`, then kills it by its pid.
fn reap(mut child: Child, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One iperf3 TCP test from `client_ns` (bound to `from`) to a one-off server in `server_ns`
/// at `to`; returns the received Mbit/s.
fn iperf(
    server_ns: &Netns,
    client_ns: &Netns,
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    secs: u32,
    reverse: bool,
) -> f64 {
    let server = server_ns
        .command([
            "iperf3",
            "-s",
            "-1",
            "-B",
            &to.to_string(),
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let mut argv = vec![
        "iperf3".to_owned(),
        "-c".into(),
        to.to_string(),
        "-B".into(),
        from.to_string(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        secs.to_string(),
        "-J".into(),
    ];
    if reverse {
        argv.push("-R".into());
    }
    let out = client_ns.exec(&argv).expect("run iperf3 client");
    reap(server, Duration::from_secs(5));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e6)
        .unwrap_or_else(|| {
            eprintln!(
                "iperf3 failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            0.0
        })
}

fn main() {
    let args = parse_args();
    let lab = Lab::new("aodpbench", args.opts);
    let o = &args.opts;
    println!(
        "tunnel-bench: {:?}, queues {}, threads {}, tun offload {}, udp offload {}, {} s x {} run(s)",
        o.transform, o.queues, o.threads, o.tun_offload, o.udp_offload, args.secs, args.runs
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before: {}", load.trim());
    }
    let gw_wan = lab.topo.gateway_wan();
    let secs = args.secs;
    for run in 1..=args.runs {
        let (vnet, client) = (&lab.topo.vnet, &lab.topo.client);
        let up = measured("tunnel up", secs, client, || {
            iperf(vnet, client, CLIENT_VIP, lab::VNET_HOST, 5201, secs, false)
        });
        let down = measured("tunnel down", secs, vnet, || {
            iperf(vnet, client, CLIENT_VIP, lab::VNET_HOST, 5202, secs, true)
        });
        let gateway = &lab.topo.gateway;
        let plain = measured("plain veth", secs, client, || {
            iperf(gateway, client, lab::CLIENT_WAN, gw_wan, 5203, secs, false)
        });
        println!(
            "run {run}: tunnel up {up:.0} Mbit/s, down {down:.0} Mbit/s; plain veth {plain:.0} \
             Mbit/s; tunnel/veth {:.3} / {:.3}",
            up / plain.max(1e-9),
            down / plain.max(1e-9)
        );
    }
    let c = lab.client.dp.counters();
    let g = lab.gateway.dp.counters();
    println!(
        "client: encapsulated {} in {} UDP sends' datagrams, decapsulated {}, decap failures {}",
        c.encapsulated, c.udp_tx_datagrams, c.decapsulated, c.decap_failed
    );
    println!(
        "gateway: encapsulated {}, decapsulated {}, decap failures {}, tun write errors {}",
        g.encapsulated, g.decapsulated, g.decap_failed, g.tun_tx_errors
    );
    for (name, ns) in [
        ("client", &lab.topo.client),
        ("gateway", &lab.topo.gateway),
        ("vnet", &lab.topo.vnet),
    ] {
        // Drops that cost throughput: socket buffer overflows, TUN queue drops, retransmits.
        let nstat = ns
            .exec([
                "nstat",
                "-az",
                "UdpRcvbufErrors",
                "UdpSndbufErrors",
                "TcpRetransSegs",
                "TcpExtTCPSACKReorder",
                "TcpExtTCPOFOQueue",
                "IpExtInCsumErrors",
                "TcpInCsumErrors",
            ])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let stats: Vec<String> = nstat
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (k, v) = (f.next()?, f.next()?);
                v.parse::<u64>().ok().map(|v| format!("{k} {v}"))
            })
            .collect();
        let link = ns
            .ip(["-s", "-o", "link", "show", common::TUN])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // "RX: bytes packets errors dropped ... TX: bytes packets errors dropped ...".
        let nums: Vec<&str> = link
            .split_whitespace()
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        let tun = match nums.as_slice() {
            [.., rb, rp, _, rd, _, _, tb, tp, _, td, _, _] => format!(
                "TUN written by us {rp} pkts/{rb} B (dropped {rd}), read by us {tp} pkts/{tb} B \
                 (dropped {td})"
            ),
            _ => "no TUN".to_owned(),
        };
        println!("{name}: {}; {tun}", stats.join(", "));
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average after: {}", load.trim());
    }
}
