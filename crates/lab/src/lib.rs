//! `aovpn lab up | status | exec | restart | down`: the whole product on one machine, in
//! network namespaces.
//!
//! ```text
//! [aolab-cl] 198.51.100.2 -- [aolab-in, NAT] -- 203.0.113.1 [aolab-gw] 10.1.0.1 -- [aolab-vn]
//!  device tunnel (machine cert): 10.1.0.10/32, 10.1.0.11/32       management hosts 10.1.0.10, .11
//!  user tunnel   (alice's cert): 10.1.0.0/16                      application host 10.1.0.20
//! ```
//!
//! `up` builds the namespaces, issues a PKI with `aovpn pki`, starts `aovpn gateway` in the
//! gateway namespace and, in the client namespace, the always-on agent (`aovpn agent`) with the
//! seed document's device tunnel profile in its system store, and the lab user alice's key
//! helper (`aovpn user-helper`, run as uid 61000) with her user tunnel profile in her own
//! store. It then shows who is connected, the agent's list, routes, which tunnel carries which
//! destination, and a ping and a throughput figure through each tunnel. A small stand-in for
//! DHCP (`netmgr`) puts the client's default route back when its link comes back, as
//! NetworkManager would. `exec` runs a command in one of the namespaces, `restart gateway`
//! restarts the gateway: the tunnels come back by themselves. `down` stops exactly the
//! processes it started (by pid) and removes everything it made. All are safe to repeat.
//!
//! May depend on: `labnet` (namespaces, BIND), the daemons' client sides (`agent::control`,
//! `gateway::admin`), `netio`. It runs the daemons as the `aovpn` binary, never in-process.
//! Start reading: [`run`], then `up.rs`.
//!
//! Here: the subcommands and the lab's names and paths. Beside it: `up` (building the lab),
//! `status`, `down`, `processes` (starting, stopping and reaching the lab's programs; `exec`,
//! `restart`), `files` (the profiles and DNS zone the lab hands its daemons), `netmgr` (the DHCP
//! stand-in).

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

mod down;
mod files;
mod netmgr;
mod processes;
mod status;
mod up;

use down::down;
use netmgr::netmgr;
use processes::{exec, restart};
use status::status;
use up::up;

const PREFIX: &str = "aolab";
const STATE_DIR: &str = "/run/aovpn-lab";
const GATEWAY_NAME: &str = "vpn.aolab.example";
const MACHINE_NAME: &str = "client1.corp.aolab.example";
const USER_NAME: &str = "alice@corp.aolab.example";
const MGMT_HOSTS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 11)];
const APP_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);
const DEVICE_IF: &str = "aovpn-dev";
const DEVICE_PROFILE: &str = "MachineCertTest";
const USER_PROFILE: &str = "AliceCorp";
/// The lab user: a uid without a passwd entry (the lab adds no user to the host).
const ALICE_UID: u32 = 61000;
/// The lab's processes, in the order `down` stops them (clients first: they say goodbye).
const PROCESSES: [&str; 5] = ["helper", "agent", "netmgr", "gateway", "corp-dns"];
/// The corporate DNS server behind the gateway (the address the gateway pushes).
const CORP_DNS: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 53);
/// The corporate namespace (the user profile's DnsSuffix and split DNS rule).
const CORP_DOMAIN: &str = "corp.aolab.example";
/// The name the device registers in the corporate zone (RegisterDNS).
const DEVICE_HOST: &str = "client1";

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Build the lab (replacing any previous one) and show it working.
    Up {
        /// Seconds of iperf3 per tunnel for the throughput figure (0 skips it).
        #[arg(long, default_value_t = 3)]
        iperf_secs: u32,
    },
    /// Show the running lab: processes, tunnels, routes, a ping through each tunnel.
    Status,
    /// Run a command inside one of the lab's namespaces, e.g.
    /// `aovpn lab exec client -- ip link set cl-wan down`.
    Exec {
        #[arg(value_enum)]
        namespace: LabNs,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Restart one of the lab's daemons; the tunnels come back by themselves.
    Restart {
        #[arg(value_enum)]
        daemon: LabDaemon,
    },
    /// Stop the lab's processes and remove its namespaces and files.
    Down,
    /// The lab's stand-in for DHCP (runs inside the client namespace): puts the default route
    /// back whenever the client's link is up without one.
    #[command(hide = true)]
    Netmgr,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LabNs {
    Client,
    Internet,
    Gateway,
    Vnet,
}

impl LabNs {
    fn role(self) -> &'static str {
        match self {
            LabNs::Client => "cl",
            LabNs::Internet => "in",
            LabNs::Gateway => "gw",
            LabNs::Vnet => "vn",
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LabDaemon {
    Gateway,
    Agent,
}

pub fn run(args: LabArgs) -> ExitCode {
    if !is_root() {
        eprintln!(
            "aovpn lab: must run as root: it creates network namespaces, TUN devices and routes"
        );
        return ExitCode::from(2);
    }
    let result = match args.command {
        LabCommand::Up { iperf_secs } => up(iperf_secs),
        LabCommand::Status => status(None).map(|ok| if ok { 0 } else { 1 }),
        LabCommand::Exec { namespace, command } => exec(namespace, &command),
        LabCommand::Restart { daemon } => restart(daemon).map(|_| 0),
        LabCommand::Down => down().map(|_| 0),
        LabCommand::Netmgr => netmgr().map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aovpn lab: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The effective uid from /proc, so the check needs neither libc nor a child process.
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn state() -> PathBuf {
    PathBuf::from(STATE_DIR)
}

fn ns_name(role: &str) -> String {
    format!("{PREFIX}-{role}")
}

fn client_etc() -> PathBuf {
    state().join("client-etc")
}

fn socket() -> PathBuf {
    state().join("agent.sock")
}
