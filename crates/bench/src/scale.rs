//! `aovpn bench scale`: many concurrent tunnels on one responder, Azure VpnGw5's 10,000 by
//! default. For each responder (ours, then strongSwan's charon, each in a lab of its own and
//! with the same liveness interval, 30 s), the in-process initiator brings N tunnels up (IKE SA
//! and Child SA, distinct certificates, from 64 source addresses, `parallel` handshakes in
//! flight), a quarter at a time, and keeps them up answering the responder's liveness checks.
//! Reported: the time to bring them all up, responder RSS per tunnel after each quarter, the
//! responder's CPU while all are idle, the setup time of one more client while they are all
//! up, and a rekey storm: every held tunnel rekeys its Child SA once within a minute (spread
//! evenly, as clients do) while a ping stream runs through one more tunnel, a strongSwan
//! client's (the same client for both responders), whose Child SA is rekeyed three times
//! during the storm; packets lost in that stream are counted.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use ikev2::InitiatorConfig;
use labnet::netns::{Topology, lab};
use labnet::strongswan::Charon;
use tokio::sync::watch;

use super::common::{
    BenchPki, ClientAuth, CpuMeter, IKE_SUITES, Limits, ResponderSetup, Scratch,
    add_client_sources, connect_charon_client, ike_server, ping_vnet, self_exe,
    start_charon_gateway_with, start_our_gateway_with, vm_rss_bytes,
};
use super::ike::in_client;
use super::initiator::{Storm, distinct_clients, hold_many, initiator_config, one_handshake};
use super::memory::{checkpoints, point};
use super::report::{Table, median, num, ratio};
use super::results::{Figures, MemoryPoint, MemorySeries, Scale, ScaleRun, Section, StormResult};

/// The client address pool of both responders: 16,384 addresses.
const SCALE_POOL: &str = "172.16.0.0/18";
/// Largest N the pool holds (less the warm-up and probe clients' addresses).
pub const MAX_TUNNELS: usize = 16_000;

#[derive(Debug, Clone, Copy)]
pub struct ScaleOptions {
    pub tunnels: usize,
    pub parallel: usize,
    pub idle_secs: u32,
    pub probes: usize,
    /// The rekey storm's window; 0: no storm.
    pub storm_secs: u32,
}

/// Pings per second in the stream through the storm.
const STREAM_PPS: u32 = 100;
/// Rekeys of the stream's own Child SA during the storm.
const STREAM_REKEYS: u32 = 3;

/// Raises RLIMIT_NOFILE's soft limit to the hard one: the initiator holds a socket per tunnel.
fn enough_file_descriptors(tunnels: usize) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let needed = tunnels as u64 + 1024;
    if hard < needed {
        bail!(
            "{tunnels} tunnels need {needed} file descriptors; the hard limit is {hard} (ulimit -Hn)"
        );
    }
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(())
}

/// Which responder a run measures.
#[derive(Debug, Clone, Copy)]
enum Responder {
    Ours,
    StrongSwan,
}

impl Responder {
    fn label(self) -> &'static str {
        match self {
            Responder::Ours => "aovpn gateway",
            Responder::StrongSwan => "strongSwan charon",
        }
    }
}

/// What the last checkpoint measures besides RSS.
struct AllUp {
    point: MemoryPoint,
    idle_cpu_percent: Option<f64>,
    probe_ms: Vec<f64>,
    probe_errors: Vec<String>,
    storm: Option<StormResult>,
}

/// Runs the benchmark and returns the report section.
pub fn run(options: ScaleOptions) -> Result<Section> {
    if options.tunnels == 0 || options.tunnels > MAX_TUNNELS {
        bail!("--tunnels must be 1..={MAX_TUNNELS} (the pool is {SCALE_POOL})");
    }
    if options.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    enough_file_descriptors(options.tunnels)?;
    let suite = IKE_SUITES[0];
    let scratch = Scratch::new("scale")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    let trust = pki.trust()?;
    eprintln!(
        "bench scale: issuing {} client certificates",
        options.tunnels
    );
    let configs = distinct_clients(&pki, &trust, "scale", options.tunnels, suite)?;
    let probe_name = "scale-probe.bench.example";
    let probe = initiator_config(&pki.client(probe_name)?, probe_name, trust, suite)?;

    let mut responders = Vec::new();
    for responder in [Responder::Ours, Responder::StrongSwan] {
        eprintln!(
            "bench scale: {} tunnels on {}",
            options.tunnels,
            responder.label()
        );
        let dir = scratch.path().join(match responder {
            Responder::Ours => "aovpn",
            Responder::StrongSwan => "charon",
        });
        // A responder that cannot cope is reported as such; the other is still measured.
        let run =
            measure(responder, &dir, &pki, suite, &configs, &probe, options).unwrap_or_else(|e| {
                ScaleRun {
                    error: Some(format!("{e:#}")),
                    ..ScaleRun::new(responder.label())
                }
            });
        responders.push(run);
    }
    let figures = Scale {
        tunnels: options.tunnels,
        parallel: options.parallel,
        idle_secs: options.idle_secs,
        suite: suite.to_owned(),
        responders,
    };
    Ok(Section {
        text: render(&figures),
        figures: Figures::Scale(figures),
    })
}

/// Our gateway's session count, from its admin socket.
fn our_sessions(admin: &Path) -> Option<usize> {
    let exe = self_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["gateway", "sessions", "--json", "--socket"])
        .arg(admin)
        .output()
        .ok()?;
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    sessions.as_array().map(Vec::len)
}

fn measure(
    responder: Responder,
    dir: &Path,
    pki: &BenchPki,
    suite: &str,
    configs: &[Arc<InitiatorConfig>],
    probe: &Arc<InitiatorConfig>,
    options: ScaleOptions,
) -> Result<ScaleRun> {
    let topo = Topology::builder(match responder {
        Responder::Ours => "aobso",
        Responder::StrongSwan => "aobss",
    })
    .routed(false)
    .build()?;
    let sources = add_client_sources(&topo, 64)?;
    let server = ike_server(&topo);
    let setup = ResponderSetup {
        ike_proposals: &[suite],
        limits: Limits::OutOfTheWay,
        pool: SCALE_POOL,
        auth: ClientAuth::Certificate,
    };
    // The responder, and how to count its SAs.
    let (pid, _gateway, _charon, count): (u32, _, _, Box<dyn Fn() -> Option<usize> + Send>) =
        match responder {
            Responder::Ours => {
                let (gw, _) = start_our_gateway_with(&topo, dir, pki, setup, false)?;
                let admin = dir.join("state/admin.sock");
                (
                    gw.pid(),
                    Some(gw),
                    None,
                    Box::new(move || our_sessions(&admin)),
                )
            }
            Responder::StrongSwan => {
                let charon = Arc::new(start_charon_gateway_with(&topo, dir, pki, setup)?);
                let counter = charon.clone();
                (
                    charon.pid(),
                    None,
                    Some(charon),
                    Box::new(move || counter.ike_sa_count().ok()),
                )
            }
        };
    // The stream's tunnel: a strongSwan client, up before the baseline RSS is read.
    let stream = if options.storm_secs > 0 {
        let client = connect_charon_client(
            &topo,
            &dir.join("stream-client"),
            pki,
            suite,
            "scale-stream.bench.example",
        )
        .context("the stream's tunnel")?;
        ping_vnet(&topo).context("through the stream's tunnel")?;
        Some(Arc::new(client))
    } else {
        None
    };
    let (storm_tx, storm_rx) = watch::channel(None);
    let storm = Storm {
        start: storm_rx,
        window: Duration::from_secs(u64::from(options.storm_secs)),
        rekeyed: Arc::new(AtomicUsize::new(0)),
    };
    let rekeyed = storm.rekeyed.clone();
    let src = sources[0];
    let warm = probe.clone();
    in_client(&topo, move || {
        Box::pin(async move { one_handshake(&warm, src, server).await })
    })
    .context("warm-up handshake")?;
    std::thread::sleep(Duration::from_secs(1));
    let before = vm_rss_bytes(pid)?;
    let stages = checkpoints(configs.len());
    let configs = configs.to_vec();
    let probe = probe.clone();
    let held = in_client(&topo, move || {
        Box::pin(async move {
            hold_many(
                &configs,
                &sources,
                server,
                options.parallel,
                &stages,
                stream.is_some().then_some(storm),
                async |up, last| -> Result<AllUp> {
                    let point = point(pid, up, &count).await?;
                    eprintln!(
                        "  {up} up, responder RSS {} KiB, responder lists {:?}",
                        point.rss / 1024,
                        point.seen_by_responder
                    );
                    let mut all = AllUp {
                        point,
                        idle_cpu_percent: None,
                        probe_ms: Vec::new(),
                        probe_errors: Vec::new(),
                        storm: None,
                    };
                    if last {
                        all.idle_cpu_percent = Some(idle_cpu(pid, options.idle_secs).await?);
                        (all.probe_ms, all.probe_errors) =
                            probes(&probe, src, server, options.probes).await;
                        if let Some(client) = &stream {
                            eprintln!("  rekey storm: {} s", options.storm_secs);
                            all.storm = Some(
                                rekey_storm(pid, &storm_tx, &rekeyed, client, options.storm_secs)
                                    .await?,
                            );
                        }
                    }
                    Ok(all)
                },
            )
            .await
        })
    })?;
    let mut run = ScaleRun::new(responder.label());
    run.up = held.up;
    run.bring_up_s = held.bring_up.as_secs_f64();
    run.errors = held.errors;
    run.memory.rss_before = before;
    for reading in held.readings {
        let all = reading?;
        run.memory.points.push(all.point);
        if all.idle_cpu_percent.is_some() {
            run.idle_cpu_percent = all.idle_cpu_percent;
            run.probe_setup_ms = all.probe_ms;
            run.probe_errors = all.probe_errors;
            run.storm = all.storm;
        }
    }
    Ok(run)
}

/// The storm: announces its start to every held SA (each rekeys its Child SA at its offset
/// in the window), runs a ping stream through the strongSwan client's tunnel (this thread is
/// in the client namespace, so ping is too) and rekeys that tunnel's Child SA three times.
async fn rekey_storm(
    pid: u32,
    start: &watch::Sender<Option<Instant>>,
    rekeyed: &AtomicUsize,
    client: &Charon,
    secs: u32,
) -> Result<StormResult> {
    let window = Duration::from_secs(u64::from(secs));
    // The stream runs a little past the window, for the last rekeys to complete.
    let stream_secs = secs + 5;
    let meter = CpuMeter::start(&[pid])?;
    let mut ping = std::process::Command::new("ping")
        .args([
            "-q",
            "-n",
            "-i",
            &format!("{:.3}", 1.0 / f64::from(STREAM_PPS)),
            "-w",
            &stream_secs.to_string(),
            &lab::VNET_HOST.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting ping")?;
    let started = Instant::now();
    let _ = start.send(Some(started));
    let mut stream_rekeys = 0;
    for k in 1..=STREAM_REKEYS {
        let at = started + window.mul_f64(f64::from(k) / f64::from(STREAM_REKEYS + 1));
        tokio::time::sleep_until(at.into()).await;
        if client
            .swanctl("--rekey", &["--child", "ao"])
            .is_ok_and(|o| o.status.success())
        {
            stream_rekeys += 1;
        }
    }
    let deadline = started + Duration::from_secs(u64::from(stream_secs) + 10);
    while ping.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = ping.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = ping.wait_with_output()?;
    let summary = String::from_utf8_lossy(&output.stdout);
    let (sent, received) = parse_ping_summary(&summary)
        .ok_or_else(|| anyhow!("ping printed no summary: {summary}"))?;
    let cpu: f64 = meter.seconds()?.iter().sum();
    Ok(StormResult {
        secs,
        rekeyed: rekeyed.load(Ordering::Relaxed),
        stream_sent: sent,
        stream_received: received,
        stream_rekeys,
        cpu_percent: 100.0 * cpu / started.elapsed().as_secs_f64(),
    })
}

/// (transmitted, received) from ping's "N packets transmitted, M received, ..." line.
fn parse_ping_summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// The responder's CPU, in percent of one core, over `secs` while every tunnel is idle.
async fn idle_cpu(pid: u32, secs: u32) -> Result<f64> {
    let meter = CpuMeter::start(&[pid])?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(u64::from(secs.max(1)))).await;
    let cpu: f64 = meter.seconds()?.iter().sum();
    Ok(100.0 * cpu / started.elapsed().as_secs_f64())
}

/// `count` establish+delete cycles of one more client, one after the other: their setup times
/// (ms) and failures.
async fn probes(
    cfg: &Arc<InitiatorConfig>,
    source: std::net::Ipv4Addr,
    server: SocketAddr,
    count: usize,
) -> (Vec<f64>, Vec<String>) {
    let (mut ms, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..count {
        match one_handshake(cfg, source, server).await {
            Ok(d) => ms.push(d.as_secs_f64() * 1000.0),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (ms, errors)
}

impl ScaleRun {
    fn new(responder: &str) -> ScaleRun {
        ScaleRun {
            memory: MemorySeries {
                responder: responder.to_owned(),
                rss_before: 0,
                points: Vec::new(),
            },
            up: 0,
            bring_up_s: 0.0,
            idle_cpu_percent: None,
            probe_setup_ms: Vec::new(),
            probe_errors: Vec::new(),
            storm: None,
            errors: Vec::new(),
            error: None,
        }
    }

    fn per_tunnel(&self) -> Option<f64> {
        self.memory
            .points
            .last()
            .and_then(|p| self.memory.per_client(p))
    }
}

/// The text section.
fn render(f: &Scale) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== scale: {} concurrent tunnels (IKE SA + Child SA, distinct ECDSA P-256 certificates, {}, ESP aes256gcm16) from 64 source addresses, {} handshakes in flight; liveness every 30 s on both responders",
        f.tunnels, f.suite, f.parallel
    );
    let _ = writeln!(
        out,
        "   bring-up = time until all were up (RSS readings not counted); idle CPU = responder over {} s with all up; one more = establish+delete of another client while all are up",
        f.idle_secs
    );
    let mut t = Table::new(&[
        "responder",
        "up",
        "bring-up s",
        "setups/s",
        "RSS per tunnel B",
        "idle CPU %",
        "one more ms median",
        "max",
        "failed",
    ]);
    for r in &f.responders {
        let rate = (r.bring_up_s > 0.0).then(|| r.up as f64 / r.bring_up_s);
        let max = r.probe_setup_ms.iter().copied().reduce(f64::max);
        t.row(vec![
            r.memory.responder.clone(),
            format!("{}/{}", r.up, f.tunnels),
            num(Some(r.bring_up_s), 1),
            num(rate, 0),
            num(r.per_tunnel(), 0),
            num(r.idle_cpu_percent, 1),
            num(median(&r.probe_setup_ms), 1),
            num(max, 1),
            format!("{}", f.tunnels.saturating_sub(r.up) + r.probe_errors.len()),
        ]);
    }
    out.push_str(&t.render());
    let mut rss = Table::new(&[
        "responder",
        "tunnels up",
        "responder saw",
        "RSS KiB",
        "B/tunnel",
    ]);
    for r in &f.responders {
        for p in &r.memory.points {
            rss.row(vec![
                r.memory.responder.clone(),
                p.clients.to_string(),
                p.seen_by_responder
                    .map_or("?".to_owned(), |n| n.to_string()),
                (p.rss / 1024).to_string(),
                num(r.memory.per_client(p), 0),
            ]);
        }
    }
    out.push_str(&rss.render());
    if f.responders.iter().any(|r| r.storm.is_some()) {
        let mut storm = Table::new(&[
            "rekey storm",
            "Child SAs rekeyed",
            "stream sent",
            "lost",
            "stream SA rekeys",
            "responder CPU %",
        ]);
        for r in &f.responders {
            if let Some(s) = &r.storm {
                storm.row(vec![
                    r.memory.responder.clone(),
                    format!("{}/{}", s.rekeyed, r.up),
                    s.stream_sent.to_string(),
                    s.stream_sent.saturating_sub(s.stream_received).to_string(),
                    format!("{}/{STREAM_REKEYS}", s.stream_rekeys),
                    num(Some(s.cpu_percent), 1),
                ]);
            }
        }
        let secs = f
            .responders
            .iter()
            .find_map(|r| r.storm.as_ref().map(|s| s.secs))
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "   rekey storm: every held tunnel rekeys its Child SA once within {secs} s; a ping stream ({STREAM_PPS}/s) through one more tunnel (a strongSwan client, its Child SA rekeyed {STREAM_REKEYS} times meanwhile)"
        );
        out.push_str(&storm.render());
    }
    if let [ours, swan] = f.responders.as_slice() {
        let _ = writeln!(
            out,
            "   ratio aovpn/strongSwan: RSS per tunnel {}, idle CPU {}, one more client {}, bring-up time {}",
            ratio(ours.per_tunnel(), swan.per_tunnel()),
            ratio(ours.idle_cpu_percent, swan.idle_cpu_percent),
            ratio(median(&ours.probe_setup_ms), median(&swan.probe_setup_ms)),
            ratio(Some(ours.bring_up_s), Some(swan.bring_up_s)),
        );
    }
    for r in &f.responders {
        let who = &r.memory.responder;
        if let Some(e) = &r.error {
            let _ = writeln!(out, "   {who}: FAILED: {e}");
        }
        if let Some(e) = r.errors.first().or(r.probe_errors.first()) {
            let _ = writeln!(out, "   {who}: e.g. {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_ping_summary;

    #[test]
    fn ping_summary_counts() {
        let text = "PING 10.1.0.10 (10.1.0.10) 56(84) bytes of data.\n\n--- 10.1.0.10 ping statistics ---\n6500 packets transmitted, 6497 received, 0.0461538% packet loss, time 64993ms\nrtt min/avg/max/mdev = 0.050/0.120/3.100/0.080 ms\n";
        assert_eq!(parse_ping_summary(text), Some((6500, 6497)));
        let errors = "5 packets transmitted, 3 received, +2 errors, 40% packet loss, time 4005ms\n";
        assert_eq!(parse_ping_summary(errors), Some((5, 3)));
        assert_eq!(
            parse_ping_summary("ping: connect: Network is unreachable\n"),
            None
        );
    }
}
