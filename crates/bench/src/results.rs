//! What each benchmark measured, as data: the JSON report is these types serialised, the text
//! report and the charts are drawn from them. Raw runs are kept (not only medians) so that a
//! reader of the JSON can recompute every figure.

use serde::Serialize;

/// One benchmark's outcome: its text section and its figures.
#[derive(Debug)]
pub struct Section {
    pub text: String,
    pub figures: Figures,
}

/// The figures of one benchmark (in the JSON report under the part's name, so untagged).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Figures {
    Throughput(Throughput),
    Ike(Ike),
    Memory(Memory),
    Flood(Vec<FloodPhase>),
    Scale(Scale),
}

/// `bench throughput`: iperf3 TCP and UDP, and ping, per path and direction.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub secs: u32,
    pub runs: u32,
    /// Parallel TCP streams in the several-streams runs.
    pub streams: u32,
    pub paths: Vec<PathFigures>,
    /// Peers that could not be measured here, and why (`boringtun (userspace): not installed`).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    /// `plain routed (no tunnel)`, `strongSwan 5.9 libipsec`, `aovpn`...
    pub path: String,
    /// What the tunnel negotiated, as its daemons report it (empty for the plain path).
    pub negotiated: String,
    /// TCP, one stream.
    pub up: DirectionRuns,
    pub down: DirectionRuns,
    /// TCP, several parallel streams (`Throughput::streams`).
    pub streams_up: DirectionRuns,
    pub streams_down: DirectionRuns,
    /// UDP as fast as iperf3 sends, per IP packet size.
    pub udp: Vec<UdpFigures>,
    pub latency: LatencyRuns,
}

/// UDP of one IP packet size, both directions.
#[derive(Debug, Clone, Serialize)]
pub struct UdpFigures {
    /// Size of each IP packet inside the tunnel (IP and UDP headers included).
    pub packet_bytes: u32,
    pub up: UdpRuns,
    pub down: UdpRuns,
}

/// One direction's UDP runs: thousands of packets per second delivered to the receiver, and the
/// share of the packets sent that were lost (the sender does not slow down, so loss shows how
/// far it outran the path).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UdpRuns {
    pub kpps: Vec<f64>,
    pub loss_percent: Vec<f64>,
}

/// Ping round trips to the host behind the gateway, each run's median and 99th percentile: the
/// path idle, and while a single TCP stream goes up through it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyRuns {
    pub idle_ms: Vec<f64>,
    pub loaded_ms: Vec<f64>,
    pub loaded_p99_ms: Vec<f64>,
    /// Pings without an answer under load, all runs.
    pub loaded_lost: u64,
}

/// One direction's runs: Mbit/s each run, and the daemons' CPU seconds per GB received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirectionRuns {
    pub mbit: Vec<f64>,
    pub cpu_s_per_gb: Vec<f64>,
}

/// `bench ike`: handshakes per second per cell.
#[derive(Debug, Clone, Serialize)]
pub struct Ike {
    pub secs: u32,
    pub repeats: u32,
    /// File system of the gateway's state directory (the "aovpn" runs).
    pub state_dir_fs: String,
    pub cells: Vec<IkeCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IkeCell {
    pub certificates: String,
    pub suite: String,
    pub concurrency: usize,
    pub aovpn: HandshakeRuns,
    /// The same gateway with its state directory on a tmpfs.
    pub aovpn_tmpfs: HandshakeRuns,
    pub strongswan: HandshakeRuns,
}

/// One responder's runs in one cell.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandshakeRuns {
    /// Establish+delete cycles per second, each run.
    pub rates: Vec<f64>,
    /// Responder CPU ms per cycle, each run that completed one.
    pub cpu_ms: Vec<f64>,
    /// Each run's median IKE_SA_INIT -> Child SA up, ms.
    pub setup_ms: Vec<f64>,
    pub failures: u64,
    pub first_error: Option<String>,
}

/// `bench memory`: responder RSS as idle clients come up.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub suite: String,
    pub responders: Vec<MemorySeries>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemorySeries {
    pub responder: String,
    /// VmRSS after the warm-up handshake, before any client is held.
    pub rss_before: u64,
    /// VmRSS each time a checkpoint's clients were all up (or had failed).
    pub points: Vec<MemoryPoint>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryPoint {
    /// Clients up (IKE and Child SA established, as the initiator saw it).
    pub clients: usize,
    /// Clients the responder itself listed.
    pub seen_by_responder: Option<usize>,
    pub rss: u64,
}

impl MemorySeries {
    /// Bytes of RSS per client at `point`, over the warm-up baseline.
    pub fn per_client(&self, point: &MemoryPoint) -> Option<f64> {
        (point.clients > 0)
            .then(|| (point.rss as f64 - self.rss_before as f64) / point.clients as f64)
    }
}

/// `bench flood`: one phase on both responders.
#[derive(Debug, Clone, Serialize)]
pub struct FloodPhase {
    pub phase: String,
    pub aovpn: FloodRun,
    pub strongswan: FloodRun,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FloodRun {
    /// The legitimate client's connect times, ms.
    pub setup_ms: Vec<f64>,
    pub failures: Vec<String>,
    pub spoofed_sent: u64,
    pub echo_half_open: u64,
    pub echo_cookies: u64,
    pub echo_unanswered: u64,
    pub elapsed_s: f64,
    pub cpu_percent: f64,
}

/// `bench scale`: many concurrent tunnels per responder.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub tunnels: usize,
    /// Handshakes in flight while bringing them up.
    pub parallel: usize,
    pub idle_secs: u32,
    pub suite: String,
    pub responders: Vec<ScaleRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    /// RSS after each quarter of the tunnels.
    pub memory: MemorySeries,
    /// Tunnels that came up.
    pub up: usize,
    /// Seconds spent bringing them up (RSS readings not counted).
    pub bring_up_s: f64,
    /// Responder CPU in percent of one core while all were up and idle.
    pub idle_cpu_percent: Option<f64>,
    /// Setup times (ms) of one more client, establish+delete, while all were up.
    pub probe_setup_ms: Vec<f64>,
    pub probe_errors: Vec<String>,
    pub storm: Option<StormResult>,
    /// First few failures of the held tunnels.
    pub errors: Vec<String>,
    /// Why the responder could not be measured at all.
    pub error: Option<String>,
}

/// A rekey storm with all tunnels up.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    /// The window every held tunnel rekeyed its Child SA in.
    pub secs: u32,
    /// Held tunnels whose Child SA rekey completed.
    pub rekeyed: usize,
    /// Pings through the stream's tunnel, and answers.
    pub stream_sent: u64,
    pub stream_received: u64,
    /// Rekeys of the stream tunnel's Child SA that swanctl reported done.
    pub stream_rekeys: u32,
    /// Responder CPU over the storm, percent of one core.
    pub cpu_percent: f64,
}
