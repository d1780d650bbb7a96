//! `aovpn bench flood`: how long a legitimate client takes to connect while the responder is
//! flooded, for our gateway and strongSwan's charon, each with its default DoS settings and in
//! a lab of its own. Phases, one after the other on the same responder:
//!
//! - quiet: nothing else;
//! - spoofed: IKE_SA_INIT requests (a real MODP-2048 request with a fresh SPI each time) from
//!   127 spoofed addresses in 198.51.100.128/25, sent with a raw socket at a fixed rate; the
//!   router drops the answers (blackhole route);
//! - echoer: one host with many handshakes in flight that echoes every COOKIE, offers MODP-2048
//!   only (the most expensive group both accept) and never sends IKE_AUTH, so each answered
//!   request leaves a half-open SA behind;
//! - both at once.
//!
//! The legitimate client (198.51.100.2, X25519, ECDSA P-256 certificate) establishes IKE and
//! Child SA and deletes them, `attempts` times per phase; the time from its first IKE_SA_INIT
//! to the Child SA is reported, with the responder's CPU use and what the attackers achieved.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ikev2::ike_wire::{Message, NotifyType, Payloads as _};
use ikev2::ipsec_crypto::Provider;
use ikev2::{IkeSa, InitiatorConfig, Now, Path};
use labnet::netns::{Topology, lab};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::common::{
    BenchPki, CpuMeter, IKE_SUITES, Limits, Scratch, ike_server, start_charon_gateway,
    start_our_gateway,
};
use super::ike::in_client;
use super::initiator::{initiator_config, one_handshake, unix_now};
use super::report::{Table, median, num, ratio};
use super::results::{Figures, FloodPhase, FloodRun, Section};

/// The group an attacker picks to cost the responder most; both responders accept it, as
/// Azure does for stock Windows clients.
const MODP_SUITE: &str = "aes256gcm16-prfsha256-modp2048";
/// The legitimate client's suite.
const CLIENT_SUITE: &str = "aes256gcm16-prfsha256-x25519";
/// Spoofed sources: 198.51.100.128/25 (the router blackholes the answers).
const SPOOFED_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 128), 25);
/// The COOKIE-echoing host.
const ECHOER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// How long the floods run before the legitimate client starts.
const WARMUP: Duration = Duration::from_secs(1);
/// Pause between the legitimate client's attempts.
const GAP: Duration = Duration::from_millis(200);
/// How long an echoer handshake waits for an answer before starting over.
const ECHO_PATIENCE: Duration = Duration::from_secs(1);
/// IKE_SA_INIT's exchange type (RFC 7296 3.1).
const IKE_SA_INIT: u8 = 34;
/// IPPROTO_RAW: a raw socket that sends whole IPv4 packets, header included (raw(7)).
const IPPROTO_RAW: i32 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Quiet,
    Spoofed,
    Echoer,
    Both,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Quiet, Phase::Spoofed, Phase::Echoer, Phase::Both];

    fn name(self) -> &'static str {
        match self {
            Phase::Quiet => "quiet",
            Phase::Spoofed => "spoofed flood",
            Phase::Echoer => "COOKIE echoer",
            Phase::Both => "both",
        }
    }

    fn spoofs(self) -> bool {
        matches!(self, Phase::Spoofed | Phase::Both)
    }

    fn echoes(self) -> bool {
        matches!(self, Phase::Echoer | Phase::Both)
    }
}

/// The bench's knobs.
#[derive(Debug, Clone, Copy)]
pub struct FloodOptions {
    /// Spoofed IKE_SA_INIT requests per second.
    pub rate: u32,
    /// Echoer handshakes in flight.
    pub echoers: usize,
    /// Legitimate connection attempts per phase.
    pub attempts: usize,
}

/// What one phase measured on one responder.
#[derive(Debug, Default)]
struct PhaseResult {
    setup_ms: Vec<f64>,
    failures: Vec<String>,
    spoofed_sent: u64,
    echo: EchoStats,
    elapsed: Duration,
    cpu_percent: f64,
}

impl PhaseResult {
    fn connected(&self) -> String {
        format!(
            "{}/{}",
            self.setup_ms.len(),
            self.setup_ms.len() + self.failures.len()
        )
    }

    fn within_one_second(&self) -> usize {
        self.setup_ms.iter().filter(|ms| **ms <= 1000.0).count()
    }

    fn max_ms(&self) -> Option<f64> {
        self.setup_ms.iter().copied().reduce(f64::max)
    }

    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    fn figures(&self) -> FloodRun {
        FloodRun {
            setup_ms: self.setup_ms.clone(),
            failures: self.failures.clone(),
            spoofed_sent: self.spoofed_sent,
            echo_half_open: self.echo.half_open_made,
            echo_cookies: self.echo.cookies,
            echo_unanswered: self.echo.unanswered,
            elapsed_s: self.elapsed.as_secs_f64(),
            cpu_percent: self.cpu_percent,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct EchoStats {
    /// Requests the responder answered with an IKE_SA_INIT response (a half-open SA each).
    half_open_made: u64,
    /// COOKIE answers received (each is echoed).
    cookies: u64,
    /// Handshakes abandoned after [`ECHO_PATIENCE`] without an answer.
    unanswered: u64,
}

/// One responder under test.
struct Responder<'a> {
    name: &'static str,
    topo: &'a Topology,
    pid: u32,
}

/// Runs the benchmark and returns the report section.
pub fn run(options: FloodOptions) -> Result<Section> {
    if options.attempts == 0 || options.echoers == 0 {
        bail!("--attempts and --echoers must be at least 1");
    }
    let scratch = Scratch::new("flood")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    let trust = pki.trust()?;
    let client = initiator_config(
        &pki.client("legit.bench.example")?,
        "legit.bench.example",
        trust.clone(),
        CLIENT_SUITE,
    )?;
    let attacker = initiator_config(
        &pki.client("attacker.bench.example")?,
        "attacker.bench.example",
        trust,
        MODP_SUITE,
    )?;
    let proposals: Vec<&str> = IKE_SUITES
        .iter()
        .copied()
        .chain([CLIENT_SUITE, MODP_SUITE])
        .collect();

    eprintln!("bench flood: starting the responders, each in a lab of its own");
    let ours_topo = Topology::builder("aobfo").routed(false).build()?;
    let swan_topo = Topology::builder("aobfs").routed(false).build()?;
    for topo in [&ours_topo, &swan_topo] {
        prepare(topo)?;
    }
    let (mut ours, _) = start_our_gateway(
        &ours_topo,
        &scratch.path().join("aovpn"),
        &pki,
        &proposals,
        false,
        Limits::Defaults,
    )?;
    let charon = start_charon_gateway(
        &swan_topo,
        &scratch.path().join("charon"),
        &pki,
        &proposals,
        Limits::Defaults,
    )?;
    let responders = [
        Responder {
            name: "aovpn",
            topo: &ours_topo,
            pid: ours.pid(),
        },
        Responder {
            name: "strongSwan",
            topo: &swan_topo,
            pid: charon.pid(),
        },
    ];
    // Check both paths (and warm up) before measuring.
    for r in &responders {
        legit_attempt(r.topo, &client)
            .with_context(|| format!("first handshake with {}", r.name))?;
    }

    let mut results: Vec<[PhaseResult; 2]> = Vec::new();
    for phase in Phase::ALL {
        let mut pair: [PhaseResult; 2] = Default::default();
        for (i, r) in responders.iter().enumerate() {
            ours.check_alive()?;
            pair[i] = run_phase(phase, r, &client, &attacker, options)
                .with_context(|| format!("{} against {}", phase.name(), r.name))?;
            eprintln!(
                "  {} {}: {} connected, median {} ms, max {} ms",
                phase.name(),
                r.name,
                pair[i].connected(),
                num(median(&pair[i].setup_ms), 1),
                num(pair[i].max_ms(), 1),
            );
        }
        results.push(pair);
    }

    let mut t = Table::new(&[
        "phase",
        "connected aovpn",
        "<=1 s",
        "strongSwan",
        "<=1 s",
        "median ms aovpn",
        "strongSwan",
        "ratio",
        "max ms aovpn",
        "strongSwan",
        "spoofed/s",
        "echo half-open/s aovpn",
        "strongSwan",
        "CPU % aovpn",
        "strongSwan",
    ]);
    let mut notes = String::new();
    for (phase, [a, b]) in Phase::ALL.iter().zip(&results) {
        let or_dash = |yes: bool, v: String| if yes { v } else { "-".to_owned() };
        t.row(vec![
            phase.name().to_owned(),
            a.connected(),
            a.within_one_second().to_string(),
            b.connected(),
            b.within_one_second().to_string(),
            num(median(&a.setup_ms), 1),
            num(median(&b.setup_ms), 1),
            ratio(median(&a.setup_ms), median(&b.setup_ms)),
            num(a.max_ms(), 1),
            num(b.max_ms(), 1),
            or_dash(
                phase.spoofs(),
                format!("{:.0}", a.per_second(a.spoofed_sent)),
            ),
            or_dash(
                phase.echoes(),
                format!("{:.1}", a.per_second(a.echo.half_open_made)),
            ),
            or_dash(
                phase.echoes(),
                format!("{:.1}", b.per_second(b.echo.half_open_made)),
            ),
            format!("{:.0}", a.cpu_percent),
            format!("{:.0}", b.cpu_percent),
        ]);
        for (who, r) in [("aovpn", a), ("strongSwan", b)] {
            if let Some(e) = r.failures.first() {
                let _ = writeln!(
                    notes,
                    "   {} {who}: {} attempts failed, e.g. {e}",
                    phase.name(),
                    r.failures.len()
                );
            }
            if phase.echoes() {
                let _ = writeln!(
                    notes,
                    "   {} {who}: the echoer got {} half-open SAs, echoed {} COOKIEs, {} requests unanswered",
                    phase.name(),
                    r.echo.half_open_made,
                    r.echo.cookies,
                    r.echo.unanswered
                );
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== flood: a legitimate client ({CLIENT_SUITE}, ECDSA P-256) connects {} times per phase while the responder is flooded; each responder with its default DoS settings",
        options.attempts
    );
    let _ = writeln!(
        out,
        "   spoofed: {} IKE_SA_INIT/s ({MODP_SUITE}) from 127 spoofed addresses; echoer: one host, {} handshakes in flight, echoes COOKIEs, never sends IKE_AUTH",
        options.rate, options.echoers
    );
    let _ = writeln!(
        out,
        "   time = first IKE_SA_INIT to Child SA up; CPU % = responder process over the phase"
    );
    out.push_str(&t.render());
    out.push_str(&notes);
    drop(charon);
    drop(ours);
    drop(swan_topo);
    drop(ours_topo);
    let figures = Phase::ALL
        .iter()
        .zip(&results)
        .map(|(phase, [a, b])| FloodPhase {
            phase: phase.name().to_owned(),
            aovpn: a.figures(),
            strongswan: b.figures(),
        })
        .collect();
    Ok(Section {
        text: out,
        figures: Figures::Flood(figures),
    })
}

/// The router drops answers to the spoofed sources and does not check source addresses; the
/// client gets the echoer's address.
fn prepare(topo: &Topology) -> Result<()> {
    let router = topo
        .internet
        .as_ref()
        .ok_or_else(|| anyhow!("the flood bench needs the routed layout"))?;
    router.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    router.sysctl(
        &format!("net.ipv4.conf.{}.rp_filter", lab::INTERNET_CLIENT_IF),
        "0",
    )?;
    let (net, len) = SPOOFED_NET;
    router
        .ip(["route", "add", "blackhole", &format!("{net}/{len}")])
        .context("blackhole route for the spoofed sources")?;
    topo.client
        .ip([
            "addr",
            "add",
            &format!("{ECHOER}/24"),
            "dev",
            lab::CLIENT_IF,
        ])
        .context("adding the echoer's address")?;
    Ok(())
}

fn legit_attempt(topo: &Topology, cfg: &Arc<InitiatorConfig>) -> Result<Duration> {
    let cfg = cfg.clone();
    let server = ike_server(topo);
    in_client(topo, move || {
        Box::pin(async move { one_handshake(&cfg, lab::CLIENT_WAN, server).await })
    })
}

fn run_phase(
    phase: Phase,
    r: &Responder<'_>,
    client: &Arc<InitiatorConfig>,
    attacker: &Arc<InitiatorConfig>,
    options: FloodOptions,
) -> Result<PhaseResult> {
    let server = ike_server(r.topo);
    let SocketAddr::V4(server_v4) = server else {
        bail!("the flood bench is IPv4");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let meter = CpuMeter::start(&[r.pid])?;
    let started = Instant::now();
    // Sockets belong to the namespace they were made in, whichever thread uses them later.
    let spoofer = if phase.spoofs() {
        let socket = r
            .topo
            .client
            .try_run(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW))))?
            .context("raw socket (needs root)")?;
        let template = init_request(attacker, server)?;
        let stop = stop.clone();
        let rate = options.rate;
        Some(thread::spawn(move || {
            spoof(&socket, &template, server_v4, rate, &stop)
        }))
    } else {
        None
    };
    let echoer = if phase.echoes() {
        let sockets = r.topo.client.try_run(|| {
            (0..options.echoers)
                .map(|_| std::net::UdpSocket::bind((ECHOER, 0)))
                .collect::<std::io::Result<Vec<_>>>()
        })??;
        let stop = stop.clone();
        let cfg = attacker.clone();
        Some(thread::spawn(move || echo(sockets, cfg, server, stop)))
    } else {
        None
    };
    if spoofer.is_some() || echoer.is_some() {
        thread::sleep(WARMUP);
    }
    let mut result = PhaseResult::default();
    for _ in 0..options.attempts {
        match legit_attempt(r.topo, client) {
            Ok(d) => result.setup_ms.push(d.as_secs_f64() * 1000.0),
            Err(e) => result.failures.push(format!("{e:#}")),
        }
        thread::sleep(GAP);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = spoofer {
        result.spoofed_sent = h.join().map_err(|_| anyhow!("spoofer panicked"))??;
    }
    if let Some(h) = echoer {
        result.echo = h.join().map_err(|_| anyhow!("echoer panicked"))??;
    }
    result.elapsed = started.elapsed();
    let cpu = meter.seconds()?.first().copied().unwrap_or(0.0);
    result.cpu_percent = 100.0 * cpu / result.elapsed.as_secs_f64().max(0.001);
    Ok(result)
}

/// A real IKE_SA_INIT request from `cfg` (first datagram of a fresh initiator).
fn init_request(cfg: &Arc<InitiatorConfig>, server: SocketAddr) -> Result<Vec<u8>> {
    let local = SocketAddr::from((lab::CLIENT_WAN, 500));
    let mut sa = IkeSa::connect(
        cfg.clone(),
        Arc::new(Provider::system()),
        Instant::now(),
        local,
        server,
    )
    .map_err(|e| anyhow!("building the flood request: {e}"))?;
    sa.poll_transmit()
        .map(|t| t.bytes)
        .ok_or_else(|| anyhow!("the initiator sent nothing"))
}

/// A small, fast generator for addresses, ports and SPIs (nothing secret here).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The IPv4 header checksum (RFC 791) over `header`.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `template` with a fresh SPI from a random spoofed address and port, `rate` times a
/// second, until `stop`. Returns how many went out.
fn spoof(
    socket: &Socket,
    template: &[u8],
    server: SocketAddrV4,
    rate: u32,
    stop: &AtomicBool,
) -> Result<u64> {
    let udp_len = 8 + template.len();
    let total = 20 + udp_len;
    let (Ok(total16), Ok(udp16)) = (u16::try_from(total), u16::try_from(udp_len)) else {
        bail!("flood request too large");
    };
    let mut packet = vec![0u8; total];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&total16.to_be_bytes());
    packet[6] = 0x40; // DF
    packet[8] = 64;
    packet[9] = 17; // UDP
    packet[16..20].copy_from_slice(&server.ip().octets());
    packet[22..24].copy_from_slice(&server.port().to_be_bytes());
    packet[24..26].copy_from_slice(&udp16.to_be_bytes());
    packet[28..].copy_from_slice(template);
    let dest = SockAddr::from(server);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (net, len) = SPOOFED_NET;
    let hosts = (1u32 << (32 - len)) - 1;
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if sent >= due {
            thread::sleep(Duration::from_micros(500));
            continue;
        }
        let batch = due.min(sent + 256) - sent;
        for _ in 0..batch {
            let r = rng.next();
            // Host part 1..hosts of the spoofed /25 (never the network or broadcast address).
            let host = 1 + (r as u32) % (hosts - 1);
            let src = Ipv4Addr::from(u32::from(net) + host);
            packet[12..16].copy_from_slice(&src.octets());
            packet[10..12].fill(0);
            let checksum = ipv4_checksum(&packet[..20]);
            packet[10..12].copy_from_slice(&checksum.to_be_bytes());
            let port = 1024 + ((r >> 32) as u16 % 60_000);
            packet[20..22].copy_from_slice(&port.to_be_bytes());
            let spi = rng.next() | 1;
            packet[28..36].copy_from_slice(&spi.to_be_bytes());
            // A full socket buffer loses a packet, which is what a flood does anyway.
            let _ = socket.send_to(&packet, &dest);
            sent += 1;
        }
    }
    Ok(sent)
}

/// The COOKIE-echoing host: one handshake per socket in flight until `stop`.
fn echo(
    sockets: Vec<std::net::UdpSocket>,
    cfg: Arc<InitiatorConfig>,
    server: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<EchoStats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let provider = Arc::new(Provider::system());
        let mut tasks = tokio::task::JoinSet::new();
        for socket in sockets {
            socket.set_nonblocking(true)?;
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            tasks.spawn(echo_loop(
                socket,
                cfg.clone(),
                provider.clone(),
                server,
                stop.clone(),
            ));
        }
        let mut total = EchoStats::default();
        while let Some(done) = tasks.join_next().await {
            let s = done.map_err(|e| anyhow!("echoer task: {e}"))??;
            total.half_open_made += s.half_open_made;
            total.cookies += s.cookies;
            total.unanswered += s.unanswered;
        }
        Ok(total)
    })
}

async fn echo_loop(
    socket: tokio::net::UdpSocket,
    cfg: Arc<InitiatorConfig>,
    provider: Arc<Provider>,
    server: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<EchoStats> {
    let local = socket.local_addr()?;
    let mut buf = vec![0u8; 65_536];
    let mut stats = EchoStats::default();
    while !stop.load(Ordering::Relaxed) {
        let mut sa = IkeSa::connect(cfg.clone(), provider.clone(), Instant::now(), local, server)
            .map_err(|e| anyhow!("echoer: {e}"))?;
        let deadline = tokio::time::Instant::now() + ECHO_PATIENCE;
        'handshake: loop {
            while let Some(t) = sa.poll_transmit() {
                if t.bytes.get(18) != Some(&IKE_SA_INIT) {
                    // The responder answered: it holds a half-open SA for us now.
                    stats.half_open_made += 1;
                    break 'handshake;
                }
                let _ = socket.send_to(&t.bytes, t.remote).await;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    stats.unanswered += 1;
                    break 'handshake;
                }
                received = socket.recv_from(&mut buf) => {
                    let (len, from) = received?;
                    if let Some(d) = buf.get(..len) {
                        let cookie = Message::decode(d)
                            .is_ok_and(|m| m.payloads.notify(NotifyType::COOKIE).is_some());
                        stats.cookies += u64::from(cookie);
                        sa.handle_datagram(Now::new(Instant::now(), unix_now()), Path::ike(local, from), d);
                    }
                }
            }
        }
    }
    Ok(stats)
}
