//! `aovpn bench throughput`: iperf3 from the client namespace to the host behind the gateway
//! (10.1.0.10) and back (-R): TCP with one stream and with several, UDP of large and of small
//! packets as fast as iperf3 sends, and ping round trips idle and under a TCP stream. Over
//! each path, each in a routed lab of its own so that all stay up and the runs can be
//! interleaved:
//!
//! * plain: no tunnel, the internet router routes 10.1.0.0/16 to the gateway;
//! * strongSwan: charon (kernel-libipsec) on gateway and client;
//! * ours: `aovpn gateway` and `aovpn connect`;
//! * userspace WireGuard (wireguard-go, boringtun) where installed.
//!
//! Both tunnels use IKE aes256gcm16-prfsha384-ecp384 and ESP AES-256-GCM with ECDSA P-256
//! certificates from one in-process CA.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::{Topology, lab};
use labnet::strongswan::Charon;

use super::common::{
    BenchPki, CpuMeter, GATEWAY_NAME, HostsFile, IKE_SUITES, Limits, Process, Scratch,
    connect_charon_client, ping_vnet, read_status, self_exe, start_charon_gateway,
    start_our_gateway, wait_bound, wait_for_state,
};
use super::report::{Table, median, num, ratio};
use super::results::{
    DirectionRuns, Figures, LatencyRuns, PathFigures, Section, Throughput, UdpFigures, UdpRuns,
};
use super::wireguard::{self, WireGuard};

const IPERF_PORT: u16 = 5201;

/// Which path a measurement went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Plain,
    StrongSwan,
    Ours,
    WireGuard(WireGuard),
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Plain => "plain routed (no tunnel)",
            Path::StrongSwan => "strongSwan 5.9 libipsec",
            Path::Ours => "aovpn",
            Path::WireGuard(w) => w.label(),
        }
    }
}

/// The daemons that make a path's tunnel; their CPU time is charged to the path. Fields drop
/// in order: the client before the gateway, the hosts file last.
enum Daemons {
    /// The plain path has none.
    None,
    Ours {
        client: Process,
        gateway: Process,
        _hosts: HostsFile,
    },
    StrongSwan {
        client: Charon,
        gateway: Charon,
    },
    WireGuard(wireguard::Tunnel),
}

impl Daemons {
    fn pids(&self) -> Vec<u32> {
        match self {
            Daemons::None => Vec::new(),
            Daemons::Ours {
                client, gateway, ..
            } => vec![gateway.pid(), client.pid()],
            Daemons::StrongSwan { client, gateway } => vec![gateway.pid(), client.pid()],
            Daemons::WireGuard(w) => vec![w.gateway.pid(), w.client.pid()],
        }
    }
}

/// A lab with an iperf3 server on the vnet host; fields drop in order: processes first.
struct Env {
    _iperf_server: Process,
    daemons: Daemons,
    topo: Topology,
    /// What was negotiated, as the daemons report it.
    negotiated: String,
}

fn iperf_server(topo: &Topology, log: &std::path::Path) -> Result<Process> {
    let argv: Vec<String> = [
        "iperf3",
        "-s",
        "-B",
        &lab::VNET_HOST.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut p = Process::spawn_in(&topo.vnet, "iperf3 -s", &argv, log)?;
    wait_bound(&mut p, "tcp", IPERF_PORT, Duration::from_secs(10))?;
    Ok(p)
}

fn plain_env(scratch: &Scratch) -> Result<Env> {
    let topo = Topology::builder("aobtp").routed(false).build()?;
    let inet = topo
        .internet
        .as_ref()
        .ok_or_else(|| anyhow!("routed topology without a router"))?;
    inet.add_route(lab::VNET_TS, &topo.gateway_wan().to_string())?;
    let iperf_server = iperf_server(&topo, &scratch.path().join("iperf-plain.log"))?;
    ping_vnet(&topo)?;
    Ok(Env {
        _iperf_server: iperf_server,
        daemons: Daemons::None,
        topo,
        negotiated: String::new(),
    })
}

fn strongswan_env(scratch: &Scratch, pki: &BenchPki) -> Result<Env> {
    let topo = Topology::builder("aobts").routed(false).build()?;
    let dir = scratch.path().join("strongswan");
    let suite = IKE_SUITES[0];
    let gw = start_charon_gateway(&topo, &dir.join("gw"), pki, &[suite], Limits::OutOfTheWay)?;
    let cl = connect_charon_client(
        &topo,
        &dir.join("cl"),
        pki,
        suite,
        "swan-client.bench.example",
    )
    .with_context(|| format!("strongSwan gateway log:\n{}", gw.log()))?;
    let sas = cl.list_sas()?;
    let negotiated = sas
        .first()
        .map(|sa| {
            let esp = sa
                .children
                .first()
                .map(|c| c.algorithms.clone())
                .unwrap_or_default();
            format!("{} | {esp}", sa.ike_algorithms)
        })
        .unwrap_or_default();
    let iperf_server = iperf_server(&topo, &dir.join("iperf.log"))?;
    ping_vnet(&topo)?;
    Ok(Env {
        _iperf_server: iperf_server,
        daemons: Daemons::StrongSwan {
            client: cl,
            gateway: gw,
        },
        topo,
        negotiated,
    })
}

fn our_env(scratch: &Scratch, pki: &BenchPki) -> Result<Env> {
    let topo = Topology::builder("aobto").routed(false).build()?;
    let dir = scratch.path().join("aovpn");
    std::fs::create_dir_all(&dir)?;
    let hosts = HostsFile::new(&topo.client, &[(topo.gateway_wan(), GATEWAY_NAME)])?;
    let (gateway, gw_status) = start_our_gateway(
        &topo,
        &dir.join("gw"),
        pki,
        &[IKE_SUITES[0]],
        true,
        Limits::OutOfTheWay,
    )?;
    let (crt, key) = pki.client_files("ao-client.bench.example")?;
    let status = dir.join("connect.status.json");
    let argv = vec![
        self_exe()?,
        "connect".to_owned(),
        "--server".to_owned(),
        GATEWAY_NAME.to_owned(),
        "--cert".to_owned(),
        crt.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
        "--ca".to_owned(),
        pki.ca_file.display().to_string(),
        "--interface".to_owned(),
        "aovpn0".to_owned(),
        "--resolv-conf".to_owned(),
        dir.join("resolv.conf").display().to_string(),
        "--status-file".to_owned(),
        status.display().to_string(),
    ];
    let client = Process::spawn_in(
        &topo.client,
        "aovpn connect",
        &argv,
        &dir.join("connect.log"),
    )?;
    wait_for_state(&status, "connected", Duration::from_secs(30))
        .with_context(|| format!("aovpn connect did not connect; see {}", dir.display()))?;
    let st = read_status(&status);
    let field = |k: &str| {
        st.as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let mut negotiated = format!("{} | {}", field("ike"), field("esp"));
    if let Some(gw) = gw_status.as_deref().and_then(read_status)
        && let Some(esp) = gw.pointer("/clients/0/esp").and_then(|v| v.as_str())
    {
        let _ = write!(negotiated, " (gateway: {esp})");
    }
    let iperf_server = iperf_server(&topo, &dir.join("iperf.log"))?;
    ping_vnet(&topo)?;
    Ok(Env {
        _iperf_server: iperf_server,
        daemons: Daemons::Ours {
            client,
            gateway,
            _hosts: hosts,
        },
        topo,
        negotiated,
    })
}

fn wireguard_env(scratch: &Scratch, kind: WireGuard) -> Result<Env> {
    let tag = match kind {
        WireGuard::Go => "aobtw",
        WireGuard::BoringTun => "aobtb",
    };
    let topo = Topology::builder(tag).routed(false).build()?;
    let dir = scratch.path().join(tag);
    let tunnel = wireguard::tunnel(kind, &topo, &dir, tag)?;
    let iperf_server = iperf_server(&topo, &dir.join("iperf.log"))?;
    ping_vnet(&topo)?;
    Ok(Env {
        _iperf_server: iperf_server,
        negotiated: tunnel.negotiated.clone(),
        daemons: Daemons::WireGuard(tunnel),
        topo,
    })
}

/// What one iperf3 run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// TCP with this many parallel streams.
    Tcp(u32),
    /// UDP as fast as iperf3 can send, IP packets of this size.
    Udp(u32),
}

/// Parallel streams of the several-streams TCP runs: one per core of a small gateway and more.
const STREAMS: u32 = 4;

/// IP packet sizes of the UDP runs: near a full tunnel MTU, and small (VoIP, games, DNS).
const UDP_PACKETS: [u32; 2] = [1400, 200];

/// IPv4 and UDP headers: what a UDP payload of `n` bytes adds to make an IP packet.
const IP_UDP_HEADERS: u32 = 28;

/// One iperf3 run's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    mbit: f64,
    bytes: u64,
    /// UDP only: packets delivered per second and the share lost.
    delivered_pps: Option<f64>,
    loss_percent: Option<f64>,
}

fn iperf_argv(load: Load, secs: u32, reverse: bool) -> Vec<String> {
    let mut argv: Vec<String> = ["iperf3", "-c", &lab::VNET_HOST.to_string(), "-J"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    argv.extend(["-p".to_owned(), IPERF_PORT.to_string()]);
    argv.extend(["-t".to_owned(), secs.to_string()]);
    match load {
        Load::Tcp(streams) if streams > 1 => argv.extend(["-P".to_owned(), streams.to_string()]),
        Load::Tcp(_) => {}
        Load::Udp(packet) => argv.extend([
            "-u".to_owned(),
            "-b".to_owned(),
            "0".to_owned(),
            "-l".to_owned(),
            (packet - IP_UDP_HEADERS).to_string(),
        ]),
    }
    if reverse {
        argv.push("-R".to_owned());
    }
    argv
}

/// Reads iperf3's JSON report (3.12): the receiver's `end.sum_received` (for an upload the
/// server's figures, which the client fetches). For UDP its `packets` counts what was sent
/// (by sequence number) and `lost_packets` what never arrived.
fn parse_iperf(load: Load, stdout: &[u8], stderr: &[u8]) -> Result<Measured> {
    let json: serde_json::Value = serde_json::from_slice(stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(stderr)))?;
    if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let field = |path: &str| {
        json.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("iperf3 reported no {path}"))
    };
    match load {
        Load::Tcp(_) => Ok(Measured {
            mbit: field("/end/sum_received/bits_per_second")? / 1e6,
            bytes: field("/end/sum_received/bytes")? as u64,
            delivered_pps: None,
            loss_percent: None,
        }),
        Load::Udp(_) => {
            let packets = field("/end/sum_received/packets")?;
            let lost = field("/end/sum_received/lost_packets")?.max(0.0);
            let secs = field("/end/sum_received/seconds")?;
            if secs <= 0.0 {
                bail!("iperf3 reported a UDP run of {secs} s");
            }
            let delivered = (packets - lost).max(0.0);
            Ok(Measured {
                mbit: field("/end/sum_received/bits_per_second")? / 1e6,
                bytes: field("/end/sum_received/bytes")? as u64,
                delivered_pps: Some(delivered / secs),
                loss_percent: Some(if packets > 0.0 {
                    100.0 * lost / packets
                } else {
                    0.0
                }),
            })
        }
    }
}

/// One iperf3 run, and the daemons' CPU seconds meanwhile.
fn iperf_once(env: &Env, load: Load, secs: u32, reverse: bool) -> Result<(Measured, f64)> {
    let meter = CpuMeter::start(&env.daemons.pids())?;
    let out = env.topo.client.exec(iperf_argv(load, secs, reverse))?;
    let cpu: f64 = meter.seconds()?.iter().sum();
    Ok((parse_iperf(load, &out.stdout, &out.stderr)?, cpu))
}

/// Interval between pings: 100 a second, too few to load the path themselves.
const PING_INTERVAL: &str = "0.01";

/// Round trips (ms) of `count` pings to the host behind the gateway, and how many were lost.
fn ping_rtts(env: &Env, count: u32) -> Result<(Vec<f64>, u64)> {
    let target = lab::VNET_HOST.to_string();
    let count_s = count.to_string();
    let out = env.topo.client.exec([
        "ping",
        "-n",
        "-i",
        PING_INTERVAL,
        "-W",
        "1",
        "-c",
        &count_s,
        &target,
    ])?;
    let rtts = parse_ping(&String::from_utf8_lossy(&out.stdout));
    Ok((
        rtts.clone(),
        u64::from(count).saturating_sub(rtts.len() as u64),
    ))
}

/// The `time=0.123 ms` of each reply line of ping's output.
fn parse_ping(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|line| line.split_once("time=")?.1.split_whitespace().next())
        .filter_map(|t| t.parse::<f64>().ok())
        .collect()
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Pings idle, then while one TCP stream goes up for `secs` (from its second second, so that
/// the stream has filled the path's queues).
fn latency_once(env: &Env, secs: u32, log: &std::path::Path) -> Result<(f64, f64, f64, u64)> {
    let (idle, _) = ping_rtts(env, 100)?;
    let secs = secs.max(4);
    let mut stream = Process::spawn_in(
        &env.topo.client,
        "iperf3 under ping",
        &iperf_argv(Load::Tcp(1), secs, false),
        log,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let (loaded, lost) = ping_rtts(env, (secs - 2) * 100)?;
    stream.wait_exit(Duration::from_secs(10))?;
    Ok((
        quantile(&idle, 0.5),
        quantile(&loaded, 0.5),
        quantile(&loaded, 0.99),
        lost,
    ))
}

/// Runs the benchmark and returns the report section.
pub fn run(secs: u32, runs: u32) -> Result<Section> {
    let scratch = Scratch::new("tput")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    eprintln!("bench throughput: building a lab per path (plain, strongSwan, aovpn, WireGuard)");
    let plain = plain_env(&scratch).context("plain lab")?;
    let swan = strongswan_env(&scratch, &pki).context("strongSwan lab")?;
    let ours = our_env(&scratch, &pki).context("aovpn lab")?;
    let mut envs = vec![
        (Path::Plain, plain),
        (Path::StrongSwan, swan),
        (Path::Ours, ours),
    ];
    let mut skipped = Vec::new();
    for kind in [WireGuard::Go, WireGuard::BoringTun] {
        match kind.find() {
            Ok(_) => {
                eprintln!("bench throughput: a lab for {}", kind.label());
                // A peer that does not come up costs its own row, not the others'.
                match wireguard_env(&scratch, kind) {
                    Ok(env) => envs.push((Path::WireGuard(kind), env)),
                    Err(e) => skipped.push(format!("{}: did not come up: {e:#}", kind.label())),
                }
            }
            Err(why) => skipped.push(format!("{}: {why}", kind.label())),
        }
    }

    let mut figures: Vec<PathFigures> = envs
        .iter()
        .map(|(path, env)| PathFigures {
            path: path.label().to_owned(),
            negotiated: env.negotiated.clone(),
            up: DirectionRuns::default(),
            down: DirectionRuns::default(),
            streams_up: DirectionRuns::default(),
            streams_down: DirectionRuns::default(),
            udp: UDP_PACKETS
                .iter()
                .map(|&packet_bytes| UdpFigures {
                    packet_bytes,
                    up: UdpRuns::default(),
                    down: UdpRuns::default(),
                })
                .collect(),
            latency: LatencyRuns::default(),
        })
        .collect();
    let loads = [Load::Tcp(1), Load::Tcp(STREAMS)]
        .into_iter()
        .chain(UDP_PACKETS.map(Load::Udp));
    let loads: Vec<Load> = loads.collect();
    // Interleaved: each run measures every load on every path before the next run starts, so
    // that a slow spell of the machine hits all paths alike.
    for run in 1..=runs.max(1) {
        for &load in &loads {
            for reverse in [false, true] {
                for (p, (path, env)) in envs.iter().enumerate() {
                    let (m, cpu) = iperf_once(env, load, secs, reverse).with_context(|| {
                        format!("iperf3 {load:?} through {} (run {run})", path.label())
                    })?;
                    eprintln!(
                        "  run {run} {:<8} {} {:<26} {:>9.1} Mbit/s{}",
                        format!("{load:?}"),
                        if reverse { "down" } else { "up  " },
                        path.label(),
                        m.mbit,
                        m.delivered_pps
                            .map(|pps| format!(" {:.1} kpps", pps / 1e3))
                            .unwrap_or_default()
                    );
                    record(&mut figures[p], *path, load, reverse, m, cpu);
                }
            }
        }
        for (p, (path, env)) in envs.iter().enumerate() {
            let log = scratch.path().join(format!("latency-{p}.log"));
            let (idle, loaded, p99, lost) = latency_once(env, secs, &log)
                .with_context(|| format!("ping through {} (run {run})", path.label()))?;
            eprintln!(
                "  run {run} ping {:<26} idle {idle:.3} ms, under load {loaded:.3} ms (p99 {p99:.3}, {lost} lost)",
                path.label()
            );
            let l = &mut figures[p].latency;
            l.idle_ms.push(idle);
            l.loaded_ms.push(loaded);
            l.loaded_p99_ms.push(p99);
            l.loaded_lost += lost;
        }
    }
    let figures = Throughput {
        secs,
        runs: runs.max(1),
        streams: STREAMS,
        paths: figures,
        skipped,
    };
    let text = render(&figures);
    drop(envs);
    Ok(Section {
        text,
        figures: Figures::Throughput(figures),
    })
}

/// Files one run's figures under its load and direction.
fn record(f: &mut PathFigures, path: Path, load: Load, reverse: bool, m: Measured, cpu: f64) {
    let tcp = |runs: &mut DirectionRuns| {
        runs.mbit.push(m.mbit);
        if path != Path::Plain && m.bytes > 0 {
            runs.cpu_s_per_gb.push(cpu / (m.bytes as f64 / 1e9));
        }
    };
    match (load, reverse) {
        (Load::Tcp(1), false) => tcp(&mut f.up),
        (Load::Tcp(1), true) => tcp(&mut f.down),
        (Load::Tcp(_), false) => tcp(&mut f.streams_up),
        (Load::Tcp(_), true) => tcp(&mut f.streams_down),
        (Load::Udp(packet), reverse) => {
            if let Some(u) = f.udp.iter_mut().find(|u| u.packet_bytes == packet) {
                let runs = if reverse { &mut u.down } else { &mut u.up };
                runs.kpps.push(m.delivered_pps.unwrap_or(0.0) / 1e3);
                runs.loss_percent.push(m.loss_percent.unwrap_or(0.0));
            }
        }
    }
}

/// The text section: median per path and direction, ratios, every run.
fn render(figures: &Throughput) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== throughput: iperf3 TCP {} s, client -> 10.1.0.10 (up) and -R (down), median of {} interleaved runs",
        figures.secs, figures.runs
    );
    for p in figures.paths.iter().filter(|p| !p.negotiated.is_empty()) {
        let _ = writeln!(out, "   {} negotiated: {}", p.path, p.negotiated);
    }
    let _ = writeln!(
        out,
        "   every tunnel here runs in userspace: strongSwan with kernel-libipsec (its userspace data path), WireGuard as wireguard-go and boringtun; the development VM's kernel has neither XFRM ESP nor a wireguard module"
    );
    for why in &figures.skipped {
        let _ = writeln!(out, "   not measured: {why}");
    }
    let mut t = Table::new(&[
        "path",
        "up Mbit/s",
        "down Mbit/s",
        "daemon CPU s/GB up",
        "down",
    ]);
    for p in &figures.paths {
        t.row(vec![
            p.path.clone(),
            num(median(&p.up.mbit), 0),
            num(median(&p.down.mbit), 0),
            num(median(&p.up.cpu_s_per_gb), 1),
            num(median(&p.down.cpu_s_per_gb), 1),
        ]);
    }
    out.push_str(&t.render());
    let find = |path: Path| figures.paths.iter().find(|p| p.path == path.label());
    let (Some(plain), Some(swan), Some(ours)) =
        (find(Path::Plain), find(Path::StrongSwan), find(Path::Ours))
    else {
        return out;
    };
    let mbit = |r: &DirectionRuns| median(&r.mbit);
    let cpu = |r: &DirectionRuns| median(&r.cpu_s_per_gb);
    let _ = writeln!(
        out,
        "   ratio aovpn/strongSwan: up {}  down {}   (CPU per GB: up {}  down {})",
        ratio(mbit(&ours.up), mbit(&swan.up)),
        ratio(mbit(&ours.down), mbit(&swan.down)),
        ratio(cpu(&ours.up), cpu(&swan.up)),
        ratio(cpu(&ours.down), cpu(&swan.down)),
    );
    let _ = writeln!(
        out,
        "   ratio aovpn/plain:      up {}  down {}",
        ratio(mbit(&ours.up), mbit(&plain.up)),
        ratio(mbit(&ours.down), mbit(&plain.down)),
    );
    for other in figures
        .paths
        .iter()
        .filter(|p| ![plain, swan, ours].iter().any(|q| q.path == p.path))
    {
        let _ = writeln!(
            out,
            "   ratio aovpn/{}: up {}  down {}   (CPU per GB: up {}  down {})",
            other.path,
            ratio(mbit(&ours.up), mbit(&other.up)),
            ratio(mbit(&ours.down), mbit(&other.down)),
            ratio(cpu(&ours.up), cpu(&other.up)),
            ratio(cpu(&ours.down), cpu(&other.down)),
        );
    }
    render_more_loads(&mut out, figures);
    let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "   all samples (Mbit/s): {}",
        figures
            .paths
            .iter()
            .map(|p| format!(
                "{}: up {:?} down {:?}",
                p.path,
                rounded(&p.up.mbit),
                rounded(&p.down.mbit)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    out
}

/// The several-streams, UDP and ping table, with aovpn's ratios to the plain path and strongSwan.
fn render_more_loads(out: &mut String, figures: &Throughput) {
    let _ = writeln!(
        out,
        "   more loads, medians: TCP with {} parallel streams; UDP as fast as iperf3 sends (-b 0), IP packets of {} bytes, thousands of packets per second delivered and the share of those sent that were lost; ping (100/s) to 10.1.0.10 idle and while one TCP stream goes up, median and 99th percentile",
        figures.streams,
        UDP_PACKETS
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let mut headers = vec![
        "path".to_owned(),
        format!("TCPx{} up Mbit/s", figures.streams),
        "down".to_owned(),
    ];
    for packet in UDP_PACKETS {
        headers.push(format!("UDP {packet} B up kpps (loss)"));
        headers.push("down".to_owned());
    }
    headers.extend(
        ["ping idle ms", "loaded ms", "p99", "lost"]
            .iter()
            .map(|h| (*h).to_owned()),
    );
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new(&header_refs);
    let udp_cell = |r: &UdpRuns| {
        format!(
            "{} ({}%)",
            num(median(&r.kpps), 1),
            num(median(&r.loss_percent), 0)
        )
    };
    for p in &figures.paths {
        let mut row = vec![
            p.path.clone(),
            num(median(&p.streams_up.mbit), 0),
            num(median(&p.streams_down.mbit), 0),
        ];
        for u in &p.udp {
            row.push(udp_cell(&u.up));
            row.push(udp_cell(&u.down));
        }
        row.push(num(median(&p.latency.idle_ms), 3));
        row.push(num(median(&p.latency.loaded_ms), 3));
        row.push(num(median(&p.latency.loaded_p99_ms), 3));
        row.push(p.latency.loaded_lost.to_string());
        t.row(row);
    }
    out.push_str(&t.render());
    let find = |path: Path| figures.paths.iter().find(|p| p.path == path.label());
    let Some(ours) = find(Path::Ours) else {
        return;
    };
    for other in [Path::Plain, Path::StrongSwan].into_iter().filter_map(find) {
        let mut parts = vec![format!(
            "TCPx{} up {} down {}",
            figures.streams,
            ratio(
                median(&ours.streams_up.mbit),
                median(&other.streams_up.mbit)
            ),
            ratio(
                median(&ours.streams_down.mbit),
                median(&other.streams_down.mbit)
            ),
        )];
        for (a, b) in ours.udp.iter().zip(&other.udp) {
            parts.push(format!(
                "UDP {} B pps up {} down {}",
                a.packet_bytes,
                ratio(median(&a.up.kpps), median(&b.up.kpps)),
                ratio(median(&a.down.kpps), median(&b.down.kpps)),
            ));
        }
        let _ = writeln!(out, "   ratio aovpn/{}: {}", other.path, parts.join(";  "));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// iperf3 3.12's UDP report of an upload (`-u -b 0 -l 172`), trimmed: `sum` and
    /// `sum_sent` are the sender's, `sum_received` the receiver's.
    const UDP_UP: &str = r#"{"start":{},"intervals":[],"end":{
        "sum":{"seconds":1.000056,"bytes":107897320,"bits_per_second":863158707.3,"lost_packets":44610,"packets":627310,"sender":true},
        "sum_sent":{"seconds":1.000023,"bytes":107897320,"bits_per_second":863158707.3,"lost_packets":0,"packets":627310,"sender":true},
        "sum_received":{"seconds":1.0,"bytes":100223884,"bits_per_second":801746174.2,"lost_packets":44610,"packets":627307,"sender":false}}}"#;

    #[test]
    fn udp_delivered_packets_are_the_receivers_count_minus_the_lost() {
        let m = parse_iperf(Load::Udp(200), UDP_UP.as_bytes(), b"").unwrap();
        assert_eq!(m.delivered_pps, Some(582_697.0));
        assert_eq!(m.bytes, 100_223_884);
        assert_eq!(
            m.bytes,
            582_697 * 172,
            "the bytes received are the packets delivered"
        );
        let loss = m.loss_percent.unwrap();
        assert!((loss - 100.0 * 44610.0 / 627_307.0).abs() < 1e-9, "{loss}");
        assert!((m.mbit - 801.746_174_2).abs() < 1e-6);
    }

    #[test]
    fn tcp_reads_the_receivers_sum_and_errors_are_reported() {
        let tcp = r#"{"end":{"sum_received":{"bits_per_second":2.5e9,"bytes":3125000000}}}"#;
        let m = parse_iperf(Load::Tcp(1), tcp.as_bytes(), b"").unwrap();
        assert_eq!(
            (m.mbit, m.bytes, m.delivered_pps),
            (2500.0, 3_125_000_000, None)
        );
        let failed = r#"{"error":"unable to connect to server"}"#;
        let e = parse_iperf(Load::Tcp(1), failed.as_bytes(), b"").unwrap_err();
        assert!(e.to_string().contains("unable to connect"), "{e}");
        assert!(parse_iperf(Load::Udp(200), b"{}", b"").is_err());
        assert!(parse_iperf(Load::Tcp(1), b"not json", b"boom").is_err());
    }

    #[test]
    fn udp_runs_send_payloads_that_make_the_packet_size() {
        let argv = iperf_argv(Load::Udp(200), 5, true);
        let at = argv.iter().position(|a| a == "-l").unwrap();
        assert_eq!(argv[at + 1], "172");
        assert!(argv.contains(&"-u".to_owned()) && argv.contains(&"-R".to_owned()));
        let tcp = iperf_argv(Load::Tcp(STREAMS), 5, false);
        assert!(tcp.windows(2).any(|w| w == ["-P", "4"]));
        assert!(!iperf_argv(Load::Tcp(1), 5, false).contains(&"-P".to_owned()));
    }

    #[test]
    fn ping_replies_and_quantiles() {
        let out = "PING 10.1.0.10 (10.1.0.10) 56(84) bytes of data.\n\
                   64 bytes from 10.1.0.10: icmp_seq=1 ttl=63 time=0.105 ms\n\
                   64 bytes from 10.1.0.10: icmp_seq=2 ttl=63 time=1.50 ms\n\
                   64 bytes from 10.1.0.10: icmp_seq=4 ttl=63 time=0.200 ms\n\n\
                   --- 10.1.0.10 ping statistics ---\n\
                   4 packets transmitted, 3 received, 25% packet loss, time 30ms\n\
                   rtt min/avg/max/mdev = 0.105/0.601/1.500/0.636 ms\n";
        let rtts = parse_ping(out);
        assert_eq!(rtts, vec![0.105, 1.5, 0.2]);
        assert_eq!(quantile(&rtts, 0.5), 0.2);
        assert_eq!(quantile(&rtts, 0.99), 1.5);
        assert_eq!(quantile(&rtts, 0.0), 0.105);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
