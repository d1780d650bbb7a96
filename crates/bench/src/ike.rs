//! `aovpn bench ike`: IKE_SA_INIT + IKE_AUTH (with Child SA) completions per second against
//! our responder (`aovpn gateway`) and strongSwan's (charon), both driven by the same
//! in-process initiator ([`super::initiator`]) that establishes and deletes SAs in a loop with
//! C handshakes in flight. Each responder has a routed lab of its own; they are measured one
//! after the other for every (suite, C), ours first.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ikev2::InitiatorConfig;
use labnet::netns::Topology;

use super::common::{
    BenchPki, CpuMeter, IKE_SUITES, Limits, Scratch, add_client_sources, ike_server,
    start_charon_gateway, start_our_gateway,
};
use super::initiator::{RateResult, handshake_loop, initiator_config, one_handshake};
use super::report::{Table, median, num, ratio};

/// Runs `fut` on a current-thread runtime on a thread inside the client namespace.
pub fn in_client<'a, F, R>(topo: &Topology, make: F) -> Result<R>
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<R>> + 'a>> + Send,
    R: Send,
{
    topo.client.try_run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(make())
    })?
}

/// A tmpfs for the second gateway's state directory.
const TMPFS: &str = "/dev/shm";

struct Measured {
    rate: f64,
    cpu_ms: Option<f64>,
    result: RateResult,
}

fn measure(
    topo: &Topology,
    pid: u32,
    configs: &[Arc<InitiatorConfig>],
    sources: &[std::net::Ipv4Addr],
    secs: u32,
) -> Result<Measured> {
    let server = ike_server(topo);
    let meter = CpuMeter::start(&[pid])?;
    let configs = configs.to_vec();
    let sources = sources.to_vec();
    let result = in_client(topo, move || {
        Box::pin(async move {
            handshake_loop(
                &configs,
                &sources,
                server,
                Duration::from_secs(u64::from(secs)),
            )
            .await
        })
    })?;
    let cpu = meter.seconds()?.first().copied().unwrap_or(0.0);
    let secs_elapsed = result.elapsed.as_secs_f64();
    let rate = if secs_elapsed > 0.0 {
        result.completions as f64 / secs_elapsed
    } else {
        0.0
    };
    let cpu_ms = (result.completions > 0).then(|| 1000.0 * cpu / result.completions as f64);
    Ok(Measured {
        rate,
        cpu_ms,
        result,
    })
}

fn setup_ms(r: &RateResult) -> Option<f64> {
    let ms: Vec<f64> = r
        .setup_times
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    median(&ms)
}

/// `stat -f -c %T PATH` (e.g. `ext2/ext3`, `tmpfs`), or `?`.
fn filesystem_type(path: &std::path::Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_owned())
}

/// Runs the benchmark and returns the report section.
pub fn run(secs: u32, concurrencies: &[usize]) -> Result<String> {
    if concurrencies.is_empty() || concurrencies.contains(&0) {
        bail!("--concurrency must be at least 1");
    }
    let max_c = concurrencies.iter().copied().max().unwrap_or(1);
    let scratch = Scratch::new("ike")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    let trust = pki.trust()?;
    // One client identity per slot: several SAs of one identity would look like reconnects.
    let mut configs: Vec<Vec<Arc<InitiatorConfig>>> = vec![Vec::new(); IKE_SUITES.len()];
    for i in 0..max_c {
        let name = format!("ike-{i}.bench.example");
        let id = pki.client(&name)?;
        for (s, suite) in IKE_SUITES.iter().enumerate() {
            configs[s].push(initiator_config(&id, &name, trust.clone(), suite)?);
        }
    }

    eprintln!("bench ike: starting the responders, each in a lab of its own");
    let ours_topo = Topology::builder("aobio").routed(false).build()?;
    let shm_topo = Topology::builder("aobit").routed(false).build()?;
    let swan_topo = Topology::builder("aobis").routed(false).build()?;
    let ours_sources = add_client_sources(&ours_topo, max_c)?;
    let shm_sources = add_client_sources(&shm_topo, max_c)?;
    let swan_sources = add_client_sources(&swan_topo, max_c)?;
    // The same gateway once more with its state directory (the lease file it fsyncs on every
    // lease change) on a tmpfs: the difference is what durable leases cost on this disk.
    let shm_scratch = Scratch::new_in(std::path::Path::new(TMPFS), "ike")?;
    let (mut ours, _) = start_our_gateway(
        &ours_topo,
        &scratch.path().join("aovpn"),
        &pki,
        &IKE_SUITES,
        false,
        Limits::OutOfTheWay,
    )?;
    let (mut ours_shm, _) = start_our_gateway(
        &shm_topo,
        &shm_scratch.path().join("aovpn"),
        &pki,
        &IKE_SUITES,
        false,
        Limits::OutOfTheWay,
    )?;
    let charon = start_charon_gateway(
        &swan_topo,
        &scratch.path().join("charon"),
        &pki,
        &IKE_SUITES,
    )?;

    // Check every path and warm the responders up with one handshake per suite.
    for (s, suite) in IKE_SUITES.iter().enumerate() {
        for (label, topo, src) in [
            ("aovpn gateway", &ours_topo, ours_sources[0]),
            ("aovpn gateway (tmpfs)", &shm_topo, shm_sources[0]),
            ("strongSwan", &swan_topo, swan_sources[0]),
        ] {
            let cfg = configs[s][0].clone();
            let server = ike_server(topo);
            in_client(topo, move || {
                Box::pin(async move { one_handshake(&cfg, src, server).await })
            })
            .with_context(|| format!("first handshake with {label} ({suite})"))?;
        }
    }

    let mut t = Table::new(&[
        "suite",
        "C",
        "aovpn/s",
        "strongSwan/s",
        "ratio",
        "aovpn tmpfs/s",
        "ratio",
        "CPU ms/hs aovpn",
        "strongSwan",
        "ratio",
        "setup ms aovpn",
        "strongSwan",
        "failed",
    ]);
    let mut notes = String::new();
    for (s, suite) in IKE_SUITES.iter().enumerate() {
        for &c in concurrencies {
            ours.check_alive()?;
            ours_shm.check_alive()?;
            let a = measure(
                &ours_topo,
                ours.pid(),
                &configs[s][..c],
                &ours_sources,
                secs,
            )?;
            let m = measure(
                &shm_topo,
                ours_shm.pid(),
                &configs[s][..c],
                &shm_sources,
                secs,
            )?;
            let b = measure(
                &swan_topo,
                charon.pid(),
                &configs[s][..c],
                &swan_sources,
                secs,
            )?;
            eprintln!(
                "  {suite} C={c}: aovpn {:.1}/s (state on tmpfs {:.1}/s), strongSwan {:.1}/s",
                a.rate, m.rate, b.rate
            );
            t.row(vec![
                (*suite).to_owned(),
                c.to_string(),
                num(Some(a.rate), 1),
                num(Some(b.rate), 1),
                ratio(Some(a.rate), Some(b.rate)),
                num(Some(m.rate), 1),
                ratio(Some(m.rate), Some(b.rate)),
                num(a.cpu_ms, 2),
                num(b.cpu_ms, 2),
                ratio(a.cpu_ms, b.cpu_ms),
                num(setup_ms(&a.result), 1),
                num(setup_ms(&b.result), 1),
                format!(
                    "{}/{}/{}",
                    a.result.failures, m.result.failures, b.result.failures
                ),
            ]);
            for (who, r) in [("aovpn", &a), ("aovpn tmpfs", &m), ("strongSwan", &b)] {
                if let Some(e) = r.result.errors.first() {
                    let _ = writeln!(
                        notes,
                        "   {suite} C={c} {who}: {} failed, e.g. {e}",
                        r.result.failures
                    );
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== ike: establish (IKE_SA_INIT + IKE_AUTH + Child SA) then delete, {secs} s per cell, ECDSA P-256 certificates, ESP aes256gcm16"
    );
    let _ = writeln!(
        out,
        "   one in-process initiator (our engine) for both responders; C handshakes in flight from C source addresses"
    );
    let _ = writeln!(
        out,
        "   CPU ms/hs = responder process CPU time per establish+delete cycle; setup ms = median IKE_SA_INIT -> Child SA up"
    );
    let _ = writeln!(
        out,
        "   aovpn gateway state_dir on {} (a new lease binding is fsynced before the reply; \"aovpn tmpfs\" = same gateway with state_dir on {TMPFS}); charon logs to a file at level 1",
        filesystem_type(scratch.path())
    );
    out.push_str(&t.render());
    out.push_str(&notes);
    drop(charon);
    drop(ours_shm);
    drop(ours);
    drop(swan_topo);
    drop(shm_topo);
    drop(ours_topo);
    drop(shm_scratch);
    Ok(out)
}
