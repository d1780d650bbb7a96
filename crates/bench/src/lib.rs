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

use std::process::ExitCode;

mod common;
mod flood;
mod ike;
mod initiator;
mod memory;
mod report;
mod throughput;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
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

fn header() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let strongswan = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "strongswan-charon"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!(
        "# aovpn bench {} | kernel {} | {cpus} CPUs | strongSwan {} | load average at start {}\n",
        env!("CARGO_PKG_VERSION"),
        kernel.trim(),
        if strongswan.is_empty() {
            "?"
        } else {
            &strongswan
        },
        common::load_average()
    )
}

type Part = (&'static str, Box<dyn FnOnce() -> anyhow::Result<String>>);

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
        BenchCommand::All {
            throughput: t,
            ike_secs,
            concurrency,
            repeats,
            clients,
            flood: f,
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
        ],
    };
    print!("{}", header());
    let mut failed = false;
    for (name, part) in parts {
        match part() {
            Ok(section) => {
                println!();
                print!("{section}");
                println!("   (load average after {name}: {})", common::load_average());
            }
            Err(e) => {
                failed = true;
                println!();
                println!("== {name}: FAILED: {e:#}");
                eprintln!("aovpn bench {name}: {e:#}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
