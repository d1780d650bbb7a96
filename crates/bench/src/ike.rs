//! `aovpn bench ike`: IKE_SA_INIT + IKE_AUTH (with Child SA) completions per second against
//! our responder (`aovpn gateway`) and strongSwan's (charon), both driven by the same
//! in-process initiator ([`super::initiator`]) that establishes and deletes SAs in a loop with
//! C handshakes in flight. Each responder has a routed lab of its own; they are measured one
//! after the other for every (certificates, suite, C), the order alternating between runs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ikev2::InitiatorConfig;
use labnet::netns::Topology;

use pki::KeyAlgorithm;

use super::common::{
    BenchPki, ClientAuth, CpuMeter, Limits, ResponderSetup, Scratch, add_client_sources,
    ike_server, start_charon_gateway_with, start_our_gateway,
};
use super::initiator::{RateResult, handshake_loop, initiator_config_with, one_handshake};
use super::report::{Table, median, num, ratio};
use super::results::{Figures, HandshakeRuns, Ike, IkeCell, Section};

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

/// The IKE suites measured: the groups real deployments use (MODP-2048 is Windows' choice
/// with a strong profile, the elliptic curves what current clients offer), each with the
/// same encryption so that the group is what differs.
pub const HANDSHAKE_SUITES: [&str; 4] = [
    "aes256gcm16-prfsha256-modp2048",
    "aes256gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha384-ecp384",
    "aes256gcm16-prfsha256-x25519",
];

/// The certificate key types measured: Windows' default enrolment (RSA-2048) and ECDSA P-256,
/// for the gateway and its clients alike, with IKEv2 certificate authentication (device
/// tunnels); and EAP-TLS with ECDSA P-256 certificates (user tunnels).
const CERTIFICATES: [(KeyAlgorithm, ClientAuth, &str); 3] = [
    (KeyAlgorithm::Rsa2048, ClientAuth::Certificate, "RSA-2048"),
    (KeyAlgorithm::P256, ClientAuth::Certificate, "ECDSA P-256"),
    (KeyAlgorithm::P256, ClientAuth::EapTls, "EAP-TLS P-256"),
];

impl HandshakeRuns {
    fn add(&mut self, m: &Measured) {
        self.rates.push(m.rate);
        self.cpu_ms.extend(m.cpu_ms);
        self.setup_ms.extend(setup_ms(&m.result));
        self.failures += m.result.failures;
        if self.first_error.is_none() {
            self.first_error = m.result.errors.first().cloned();
        }
    }

    pub fn rate(&self) -> Option<f64> {
        median(&self.rates)
    }

    /// `median (min-max)` of the runs' rates.
    fn rate_cell(&self) -> String {
        let min = self.rates.iter().copied().reduce(f64::min);
        let max = self.rates.iter().copied().reduce(f64::max);
        match (self.rate(), min, max) {
            (Some(m), Some(lo), Some(hi)) if self.rates.len() > 1 => {
                format!("{m:.1} ({lo:.0}-{hi:.0})")
            }
            (m, _, _) => num(m, 1),
        }
    }
}

/// Runs the benchmark and returns the report section: every certificate type, suite and
/// concurrency, `repeats` runs per cell with the responders' order alternating between runs
/// (so that neither always runs on a machine the other has just warmed or heated).
pub fn run(secs: u32, concurrencies: &[usize], repeats: u32) -> Result<Section> {
    if concurrencies.is_empty() || concurrencies.contains(&0) {
        bail!("--concurrency must be at least 1");
    }
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let mut cells = Vec::new();
    let mut state_dir_fs = String::from("?");
    for (keys, auth, label) in CERTIFICATES {
        state_dir_fs =
            run_certificates(keys, auth, label, secs, concurrencies, repeats, &mut cells)?;
    }
    let figures = Ike {
        secs,
        repeats,
        state_dir_fs,
        cells,
    };
    Ok(Section {
        text: render(&figures),
        figures: Figures::Ike(figures),
    })
}

/// The text section: one row per cell, then the failures.
fn render(figures: &Ike) -> String {
    let Ike {
        secs,
        repeats,
        state_dir_fs,
        cells,
    } = figures;
    let mut t = Table::new(&[
        "certificates",
        "suite",
        "C",
        "aovpn/s (min-max)",
        "strongSwan/s (min-max)",
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
    for cell in cells {
        let (a, m, b) = (&cell.aovpn, &cell.aovpn_tmpfs, &cell.strongswan);
        t.row(vec![
            cell.certificates.clone(),
            cell.suite.clone(),
            cell.concurrency.to_string(),
            a.rate_cell(),
            b.rate_cell(),
            ratio(a.rate(), b.rate()),
            num(m.rate(), 1),
            ratio(m.rate(), b.rate()),
            num(median(&a.cpu_ms), 2),
            num(median(&b.cpu_ms), 2),
            ratio(median(&a.cpu_ms), median(&b.cpu_ms)),
            num(median(&a.setup_ms), 1),
            num(median(&b.setup_ms), 1),
            format!("{}/{}/{}", a.failures, m.failures, b.failures),
        ]);
        for (who, r) in [("aovpn", a), ("aovpn tmpfs", m), ("strongSwan", b)] {
            if let Some(e) = &r.first_error {
                let _ = writeln!(
                    notes,
                    "   {} {} C={} {who}: {} failed, e.g. {e}",
                    cell.certificates, cell.suite, cell.concurrency, r.failures
                );
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== ike: establish (IKE_SA_INIT + IKE_AUTH + Child SA) then delete, {secs} s per run, {repeats} runs per cell (median, min-max of the runs), responders' order alternating; ESP aes256gcm16"
    );
    let _ = writeln!(
        out,
        "   one in-process initiator (our engine) for both responders; C handshakes in flight from as many source addresses (up to 64, then shared); gateway and client certificates of the kind named"
    );
    let _ = writeln!(
        out,
        "   CPU ms/hs = responder process CPU time per establish+delete cycle; setup ms = median over the runs of each run's median IKE_SA_INIT -> Child SA up; failed = aovpn/aovpn tmpfs/strongSwan, all runs"
    );
    let _ = writeln!(
        out,
        "   the same COOKIE policy for both: thresholds out of the way (ours cookie_threshold, half_open_limit, half_open_per_source; charon's cookie_threshold, cookie_threshold_ip, block_threshold), so neither asks for COOKIEs at any C"
    );
    let _ = writeln!(
        out,
        "   aovpn gateway state_dir on {state_dir_fs} (a new lease binding is appended to the lease journal before the reply, synced at most once a second; \"aovpn tmpfs\" = same gateway with state_dir on {TMPFS}); charon logs to a file at level 1"
    );
    out.push_str(&t.render());
    out.push_str(&notes);
    out
}

/// Measures one certificate type: its own PKI, responders and labs. Returns the file system
/// the gateway's state directory is on.
#[allow(clippy::too_many_arguments)]
fn run_certificates(
    keys: KeyAlgorithm,
    auth: ClientAuth,
    label: &str,
    secs: u32,
    concurrencies: &[usize],
    repeats: u32,
    cells: &mut Vec<IkeCell>,
) -> Result<String> {
    let max_c = concurrencies.iter().copied().max().unwrap_or(1);
    let scratch = Scratch::new("ike")?;
    eprintln!("bench ike: {label} certificates for the gateway and {max_c} clients");
    let pki = BenchPki::issue_with(&scratch.path().join("pki"), keys)?;
    let trust = pki.trust()?;
    // One client identity per slot: several SAs of one identity would look like reconnects.
    let mut configs: Vec<Vec<Arc<InitiatorConfig>>> = vec![Vec::new(); HANDSHAKE_SUITES.len()];
    for i in 0..max_c {
        let name = format!("ike-{i}.bench.example");
        let id = pki.client(&name)?;
        for (s, suite) in HANDSHAKE_SUITES.iter().enumerate() {
            configs[s].push(initiator_config_with(
                &id,
                &name,
                trust.clone(),
                suite,
                auth,
            )?);
        }
    }

    eprintln!("bench ike: starting the responders, each in a lab of its own");
    let ours_topo = Topology::builder("aobio").routed(false).build()?;
    let shm_topo = Topology::builder("aobit").routed(false).build()?;
    let swan_topo = Topology::builder("aobis").routed(false).build()?;
    let ours_sources = add_client_sources(&ours_topo, max_c)?;
    let shm_sources = add_client_sources(&shm_topo, max_c)?;
    let swan_sources = add_client_sources(&swan_topo, max_c)?;
    // The same gateway once more with its state directory (the lease journal it appends to
    // on every new binding) on a tmpfs: the difference is what durable leases cost on this disk.
    let shm_scratch = Scratch::new_in(std::path::Path::new(TMPFS), "ike")?;
    let (mut ours, _) = start_our_gateway(
        &ours_topo,
        &scratch.path().join("aovpn"),
        &pki,
        &HANDSHAKE_SUITES,
        false,
        Limits::OutOfTheWay,
    )?;
    let (mut ours_shm, _) = start_our_gateway(
        &shm_topo,
        &shm_scratch.path().join("aovpn"),
        &pki,
        &HANDSHAKE_SUITES,
        false,
        Limits::OutOfTheWay,
    )?;
    let charon = start_charon_gateway_with(
        &swan_topo,
        &scratch.path().join("charon"),
        &pki,
        ResponderSetup {
            ike_proposals: &HANDSHAKE_SUITES,
            limits: Limits::OutOfTheWay,
            pool: labnet::netns::lab::CLIENT_POOL,
            auth,
        },
    )?;

    // Check every path and warm the responders up with one handshake per suite.
    for (s, suite) in HANDSHAKE_SUITES.iter().enumerate() {
        for (who, topo, src) in [
            ("aovpn gateway", &ours_topo, ours_sources[0]),
            ("aovpn gateway (tmpfs)", &shm_topo, shm_sources[0]),
            ("strongSwan", &swan_topo, swan_sources[0]),
        ] {
            let cfg = configs[s][0].clone();
            let server = ike_server(topo);
            in_client(topo, move || {
                Box::pin(async move { one_handshake(&cfg, src, server).await })
            })
            .with_context(|| format!("first handshake with {who} ({label}, {suite})"))?;
        }
    }

    for (s, suite) in HANDSHAKE_SUITES.iter().enumerate() {
        for &c in concurrencies {
            let (mut a, mut m, mut b) = (
                HandshakeRuns::default(),
                HandshakeRuns::default(),
                HandshakeRuns::default(),
            );
            for run in 0..repeats {
                ours.check_alive()?;
                ours_shm.check_alive()?;
                let cell = &configs[s][..c];
                let measure_ours = |a: &mut HandshakeRuns| -> Result<()> {
                    a.add(&measure(&ours_topo, ours.pid(), cell, &ours_sources, secs)?);
                    Ok(())
                };
                let measure_shm = |m: &mut HandshakeRuns| -> Result<()> {
                    m.add(&measure(
                        &shm_topo,
                        ours_shm.pid(),
                        cell,
                        &shm_sources,
                        secs,
                    )?);
                    Ok(())
                };
                let measure_swan = |b: &mut HandshakeRuns| -> Result<()> {
                    b.add(&measure(
                        &swan_topo,
                        charon.pid(),
                        cell,
                        &swan_sources,
                        secs,
                    )?);
                    Ok(())
                };
                if run % 2 == 0 {
                    measure_ours(&mut a)?;
                    measure_shm(&mut m)?;
                    measure_swan(&mut b)?;
                } else {
                    measure_swan(&mut b)?;
                    measure_shm(&mut m)?;
                    measure_ours(&mut a)?;
                }
            }
            eprintln!(
                "  {label} {suite} C={c}: aovpn {} /s (state on tmpfs {}), strongSwan {} /s",
                a.rate_cell(),
                m.rate_cell(),
                b.rate_cell()
            );
            cells.push(IkeCell {
                certificates: label.to_owned(),
                suite: (*suite).to_owned(),
                concurrency: c,
                aovpn: a,
                aovpn_tmpfs: m,
                strongswan: b,
            });
        }
    }
    let filesystem = filesystem_type(scratch.path());
    drop(charon);
    drop(ours_shm);
    drop(ours);
    drop(swan_topo);
    drop(shm_topo);
    drop(ours_topo);
    drop(shm_scratch);
    Ok(filesystem)
}
