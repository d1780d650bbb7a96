//! `aovpn bench ...`: benchmarks against a peer measured in the same run.
//!
//! Every figure is printed next to the same figure for a peer measured in the same run on the
//! same machine (strongSwan 5.9's charon with kernel-libipsec, and the plain routed path), and
//! as a ratio; nothing here asserts a number. Each subcommand builds its own network
//! namespaces (routed lab, no NAT), and removes them and every process it started (by pid),
//! also on error.
//!
//! May depend on: `labnet` (namespaces, strongSwan), `ikev2` and `pki` (the in-process load
//! generator). The gateway under test runs as the `aovpn` binary.
//! Start reading: [`run`], then `throughput.rs` or `ike.rs`.
//!
//! Every run writes its report to a directory (`--out`): the text printed on stdout
//! (`report.txt`), the figures as JSON with every run's raw values (`report.json`,
//! [`results`]) and a PNG chart per part that has one (`chart.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

mod chart;
mod common;
mod flood;
mod ike;
mod initiator;
mod memory;
mod report;
mod results;
mod scale;
mod throughput;
mod wireguard;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
    /// Directory for the report (report.txt, report.json, a PNG chart per part); created if
    /// missing. Default: aovpn-bench-<UTC date and time> in the current directory.
    #[arg(long, global = true, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
struct ThroughputArgs {
    /// Seconds per iperf3 run.
    #[arg(long = "secs", default_value_t = 10)]
    secs: u32,
    /// Interleaved runs per path and direction; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

#[derive(Debug, Clone, clap::Args)]
struct IkeArgs {
    /// Seconds per measured run (certificates x suite x concurrency x responder).
    #[arg(long = "secs", default_value_t = 10)]
    secs: u32,
    /// Handshakes in flight; repeat or comma-separate for several (default 1, 8 and 64).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64])]
    concurrency: Vec<usize>,
    /// Runs per cell, the responders' order alternating; the median is reported with the
    /// runs' range.
    #[arg(long, default_value_t = 3)]
    repeats: u32,
}

#[derive(Debug, Clone, clap::Args)]
struct MemoryArgs {
    /// Idle clients to connect (distinct certificates), at most 250.
    #[arg(long, default_value_t = 200)]
    clients: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct ScaleArgs {
    /// Concurrent tunnels (IKE SA + Child SA, distinct certificates).
    #[arg(long, default_value_t = 10_000)]
    tunnels: usize,
    /// Handshakes in flight while bringing them up.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Seconds the responder's CPU is measured with all tunnels up and idle (two rounds of
    /// 30 s liveness checks by default).
    #[arg(long, default_value_t = 60)]
    idle_secs: u32,
    /// Establish+delete cycles of one more client while all are up.
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// Window in which every tunnel rekeys its Child SA once while a stream runs through one
    /// more (0: no rekey storm).
    #[arg(long, default_value_t = 60)]
    storm_secs: u32,
}

impl ScaleArgs {
    fn options(&self) -> scale::ScaleOptions {
        scale::ScaleOptions {
            tunnels: self.tunnels,
            parallel: self.parallel,
            idle_secs: self.idle_secs,
            probes: self.probes,
            storm_secs: self.storm_secs,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
struct FloodArgs {
    /// Spoofed IKE_SA_INIT requests per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Handshakes the COOKIE-echoing host keeps in flight.
    #[arg(long, default_value_t = 32)]
    echoers: usize,
    /// Legitimate connection attempts per phase and responder.
    #[arg(long, default_value_t = 10)]
    attempts: usize,
}

impl FloodArgs {
    fn options(&self) -> flood::FloodOptions {
        flood::FloodOptions {
            rate: self.rate,
            echoers: self.echoers,
            attempts: self.attempts,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// TCP throughput: plain routed path vs strongSwan vs aovpn tunnel.
    Throughput(ThroughputArgs),
    /// IKE handshakes per second: aovpn gateway vs strongSwan charon as responder.
    Ike(IkeArgs),
    /// Responder memory per connected idle client: aovpn gateway vs strongSwan charon.
    Memory(MemoryArgs),
    /// A legitimate client's connect time during IKE_SA_INIT floods (spoofed sources, a
    /// COOKIE-echoing host): aovpn gateway vs strongSwan charon, default DoS settings.
    Flood(FloodArgs),
    /// Many concurrent tunnels (10,000 by default) on each responder: time to bring them up,
    /// RSS per tunnel, idle CPU with liveness checks on, setup time of one more client.
    Scale(ScaleArgs),
    /// All of them with their defaults (options apply to their part), one report.
    All {
        #[command(flatten)]
        throughput: ThroughputArgs,
        /// Seconds per IKE run.
        #[arg(long, default_value_t = 10)]
        ike_secs: u32,
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64])]
        concurrency: Vec<usize>,
        /// Runs per IKE cell.
        #[arg(long, default_value_t = 3)]
        repeats: u32,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[command(flatten)]
        flood: FloodArgs,
        #[command(flatten)]
        scale: ScaleArgs,
    },
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The machine and peer a report was measured on.
#[derive(Debug, serde::Serialize)]
struct Machine {
    aovpn: &'static str,
    kernel: String,
    cpus: usize,
    strongswan: String,
    /// UTC, RFC 3339.
    started: String,
    load_average_at_start: String,
    log_levels: &'static str,
}

impl Machine {
    fn read(started: time::OffsetDateTime) -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let strongswan = std::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", "strongswan-charon"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "?".to_owned());
        Machine {
            aovpn: env!("CARGO_PKG_VERSION"),
            kernel: kernel.trim().to_owned(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            strongswan,
            started: started
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            load_average_at_start: common::load_average(),
            log_levels: common::LOG_LEVELS,
        }
    }

    fn header(&self) -> String {
        format!(
            "# aovpn bench {} | kernel {} | {} CPUs | strongSwan {} | started {} | load average at start {}\n# log levels: {}\n",
            self.aovpn,
            self.kernel,
            self.cpus,
            self.strongswan,
            self.started,
            self.load_average_at_start,
            self.log_levels
        )
    }
}

/// `aovpn-bench-2026-12-04T213005Z`: the default report directory's name.
fn default_out(started: time::OffsetDateTime) -> PathBuf {
    let d = started.date();
    PathBuf::from(format!(
        "aovpn-bench-{}-{:02}-{:02}T{:02}{:02}{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        started.hour(),
        started.minute(),
        started.second()
    ))
}

/// Writes report.txt, report.json and the charts; returns the files written.
fn write_report(
    dir: &Path,
    text: &str,
    machine: &Machine,
    parts: &[(&str, Result<results::Figures, String>)],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let txt = dir.join("report.txt");
    std::fs::write(&txt, text).with_context(|| format!("writing {}", txt.display()))?;
    written.push(txt);
    let mut figures = serde_json::Map::new();
    let mut failed = serde_json::Map::new();
    for (name, part) in parts {
        match part {
            Ok(f) => {
                figures.insert((*name).to_owned(), serde_json::to_value(f)?);
            }
            Err(e) => {
                failed.insert((*name).to_owned(), e.clone().into());
            }
        }
    }
    let json = serde_json::json!({
        "machine": machine,
        "figures": figures,
        "failed": failed,
    });
    let file = dir.join("report.json");
    std::fs::write(&file, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", file.display()))?;
    written.push(file);
    for (name, part) in parts {
        if let Ok(f) = part {
            written.extend(chart::draw(f, dir, name).with_context(|| format!("{name} chart"))?);
        }
    }
    Ok(written)
}

type Part = (
    &'static str,
    Box<dyn FnOnce() -> anyhow::Result<results::Section>>,
);

pub fn run(args: BenchArgs) -> ExitCode {
    if !is_root() {
        eprintln!("aovpn bench: must run as root (network namespaces, TUN devices, daemons)");
        return ExitCode::from(2);
    }
    let parts: Vec<Part> = match args.command {
        BenchCommand::Throughput(a) => vec![(
            "throughput",
            Box::new(move || throughput::run(a.secs, a.runs)),
        )],
        BenchCommand::Ike(a) => vec![(
            "ike",
            Box::new(move || ike::run(a.secs, &a.concurrency, a.repeats)),
        )],
        BenchCommand::Memory(a) => vec![("memory", Box::new(move || memory::run(a.clients)))],
        BenchCommand::Flood(a) => vec![("flood", Box::new(move || flood::run(a.options())))],
        BenchCommand::Scale(a) => vec![("scale", Box::new(move || scale::run(a.options())))],
        BenchCommand::All {
            throughput: t,
            ike_secs,
            concurrency,
            repeats,
            clients,
            flood: f,
            scale: sc,
        } => vec![
            (
                "throughput",
                Box::new(move || throughput::run(t.secs, t.runs)),
            ),
            (
                "ike",
                Box::new(move || ike::run(ike_secs, &concurrency, repeats)),
            ),
            ("memory", Box::new(move || memory::run(clients))),
            ("flood", Box::new(move || flood::run(f.options()))),
            ("scale", Box::new(move || scale::run(sc.options()))),
        ],
    };
    let started = time::OffsetDateTime::now_utc();
    let machine = Machine::read(started);
    let out_dir = args.out.unwrap_or_else(|| default_out(started));
    // Before hours of measuring: the report must have somewhere to go.
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("aovpn bench: cannot create {}: {e}", out_dir.display());
        return ExitCode::from(2);
    }
    let mut text = machine.header();
    print!("{text}");
    let mut failed = false;
    let mut figures = Vec::new();
    for (name, part) in parts {
        let mut section = String::from("\n");
        match part() {
            Ok(done) => {
                section.push_str(&done.text);
                let _ = writeln!(
                    section,
                    "   (load average after {name}: {})",
                    common::load_average()
                );
                figures.push((name, Ok(done.figures)));
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(section, "== {name}: FAILED: {e:#}");
                eprintln!("aovpn bench {name}: {e:#}");
                figures.push((name, Err(format!("{e:#}"))));
            }
        }
        print!("{section}");
        text.push_str(&section);
    }
    match write_report(&out_dir, &text, &machine, &figures) {
        Ok(files) => {
            for f in files {
                eprintln!("aovpn bench: wrote {}", f.display());
            }
        }
        Err(e) => {
            failed = true;
            eprintln!("aovpn bench: report in {}: {e:#}", out_dir.display());
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
