//! `aovpn bench throughput`: iperf3 TCP from the client namespace to the host behind the
//! gateway (10.1.0.10) and back (-R) over three paths, each in a routed lab of its own so
//! that all three stay up and the runs can be interleaved:
//!
//! * plain: no tunnel, the internet router routes 10.1.0.0/16 to the gateway;
//! * strongSwan: charon (kernel-libipsec) on gateway and client;
//! * ours: `aovpn gateway` and `aovpn connect`.
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
use super::results::{DirectionRuns, Figures, PathFigures, Section, Throughput};
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

/// One iperf3 run: (Mbit/s received, bytes received, daemon CPU seconds).
fn iperf_once(env: &Env, secs: u32, reverse: bool) -> Result<(f64, u64, f64)> {
    let meter = CpuMeter::start(&env.daemons.pids())?;
    let target = lab::VNET_HOST.to_string();
    let secs_s = secs.to_string();
    let port = IPERF_PORT.to_string();
    let mut argv = vec!["iperf3", "-c", &target, "-p", &port, "-t", &secs_s, "-J"];
    if reverse {
        argv.push("-R");
    }
    let out = env.topo.client.exec(&argv)?;
    let cpu: f64 = meter.seconds()?.iter().sum();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&out.stderr)))?;
    if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let bps = json
        .pointer("/end/sum_received/bits_per_second")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| anyhow!("iperf3 reported no result"))?;
    let bytes = json
        .pointer("/end/sum_received/bytes")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    Ok((bps / 1e6, bytes, cpu))
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
        })
        .collect();
    for run in 1..=runs.max(1) {
        for reverse in [false, true] {
            for (p, (path, env)) in envs.iter().enumerate() {
                let (mbit, bytes, cpu) = iperf_once(env, secs, reverse)
                    .with_context(|| format!("iperf3 through {} (run {run})", path.label()))?;
                eprintln!(
                    "  run {run} {} {:<26} {mbit:>9.1} Mbit/s",
                    if reverse { "down" } else { "up  " },
                    path.label()
                );
                let f = &mut figures[p];
                let runs = if reverse { &mut f.down } else { &mut f.up };
                runs.mbit.push(mbit);
                if *path != Path::Plain && bytes > 0 {
                    runs.cpu_s_per_gb.push(cpu / (bytes as f64 / 1e9));
                }
            }
        }
    }
    let figures = Throughput {
        secs,
        runs: runs.max(1),
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
