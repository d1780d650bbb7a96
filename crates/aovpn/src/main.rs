//! `aovpn`: one binary for the gateway, the agent, profiles, PKI and the lab.
//! Only glue lives here; every subcommand calls into a library crate.

mod agent_cmd;
mod client_package_cmd;
mod connect_cmd;
mod control_cmd;
mod doctor_cmd;
mod gateway_cmd;
mod pki_cmd;
mod profile_cmd;
mod runtime;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aovpn", version, about = "Always On IKEv2/IPsec VPN for Linux")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The always-on service (root): keeps the device tunnel and users' tunnels up.
    Agent(agent_cmd::AgentArgs),
    /// A user's key helper for the agent (run by the user's service manager at login).
    UserHelper(agent_cmd::UserHelperArgs),
    /// Every profile the agent runs that you may see, with its state.
    List(control_cmd::ListArgs),
    /// A profile's tunnel in detail: addresses, routes, DNS, algorithms, traffic, last error.
    Status(control_cmd::StatusArgs),
    /// Connect a profile through the agent (ends a disconnect hold).
    Up(control_cmd::UpDownArgs),
    /// Disconnect a profile through the agent; an always-on one stays down until `aovpn up`.
    Down(control_cmd::UpDownArgs),
    /// Benchmarks, each reported as a ratio against a peer measured in the same run.
    Bench(bench::BenchArgs),
    /// Bring one tunnel up in the foreground, without the agent (Ctrl-C disconnects).
    Connect(connect_cmd::ConnectArgs),
    /// Why a tunnel does not come up: profile, certificate, names, a handshake with the gateway.
    Doctor(doctor_cmd::DoctorArgs),
    /// The IKEv2 gateway: authenticates clients, hands out addresses, forwards their traffic.
    Gateway(gateway_cmd::GatewayArgs),
    /// A complete lab in network namespaces: gateway, device tunnel and user tunnel.
    Lab(lab::LabArgs),
    /// Certificates: root CA, gateway, machine and user certificates, thumbprints.
    Pki(pki_cmd::PkiArgs),
    /// VPNv2 ProfileXML profiles: validate, add, list, show, remove, export.
    Profile(profile_cmd::ProfileArgs),
    /// Write the manual pages (aovpn.1 and one per command) into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// Where the pages go.
        dir: std::path::PathBuf,
    },
}

/// Libraries whose debug and trace output is wire dumps (netlink messages, D-Bus traffic,
/// UDP and TUN plumbing): a bare level in AOVPN_LOG (`debug`, `trace`) is for our code, and
/// these stay at info unless named explicitly (`AOVPN_LOG=trace,zbus=trace`).
const NOISY_LIBRARIES: [&str; 7] = [
    "hickory_proto",
    "netlink_proto",
    "netlink_sys",
    "rtnetlink",
    "zbus",
    "quinn_udp",
    "tun_rs",
];

fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let mut directives = vec![spec.to_owned()];
    for lib in NOISY_LIBRARIES {
        if !spec.contains(lib) {
            directives.push(format!("{lib}=info"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn main() -> ExitCode {
    let filter = log_filter(std::env::var("AOVPN_LOG").ok().as_deref());
    // AOVPN_LOG_FORMAT=json: one JSON object per line (for a log shipper), the same events
    // and fields as the text lines.
    if std::env::var("AOVPN_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => agent_cmd::run_agent(args),
        Command::UserHelper(args) => agent_cmd::run_user_helper_cmd(args),
        Command::List(args) => control_cmd::list(args),
        Command::Status(args) => control_cmd::status(args),
        Command::Up(args) => control_cmd::up_down(args, true),
        Command::Down(args) => control_cmd::up_down(args, false),
        Command::Bench(args) => bench::run(args),
        Command::Connect(args) => connect_cmd::run(args),
        Command::Doctor(args) => doctor_cmd::run(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Pki(args) => pki_cmd::run(args),
        Command::Profile(args) => profile_cmd::run(args),
        Command::Man { dir } => {
            use clap::CommandFactory;
            match clap_mangen::generate_to(Cli::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("aovpn man: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
