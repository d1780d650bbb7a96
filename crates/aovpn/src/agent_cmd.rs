//! `aovpn agent` (the always-on service, as root) and `aovpn user-helper` (each user's key
//! helper, started by the user's service manager).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::config::{AgentConfig, SessionSource};
use agent::helper::{UserHelperOptions, run_user_helper};

use crate::runtime::{Capability, block_on_daemon, shutdown_signal};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Sessions {
    Auto,
    Logind,
    Helpers,
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The system store: agent.toml, profiles/, machine/, ca/.
    #[arg(
        long,
        value_name = "DIR",
        env = "AOVPN_SYSTEM_DIR",
        default_value = "/etc/aovpn"
    )]
    config_dir: PathBuf,
    /// The control socket.
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = agent::control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Runtime state (what the tunnels installed), cleared at boot.
    #[arg(long, value_name = "DIR", default_value = "/run/aovpn")]
    run_dir: PathBuf,
    /// Persistent state (tunnels users disconnected).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/aovpn")]
    state_dir: PathBuf,
    /// resolv.conf to manage when systemd-resolved does not run.
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Who counts as logged in (overrides agent.toml): logind sessions, or users whose key
    /// helper is connected.
    #[arg(long, value_enum)]
    sessions: Option<Sessions>,
    /// Install the LockDown the last agent saved (in --state-dir) and exit: run at boot by
    /// aovpn-lockdown.service before the network comes up.
    #[arg(long)]
    restore_lockdown: bool,
}

pub fn run_agent(args: AgentArgs) -> ExitCode {
    if args.restore_lockdown {
        let state_dir = args.state_dir.clone();
        return block_on_daemon("agent", &[Capability::CAP_NET_ADMIN], async move {
            match agent::service::restore_lockdown(&state_dir).await {
                Ok(true) => eprintln!(
                    "aovpn agent: LockDown restored from {}",
                    state_dir.display()
                ),
                Ok(false) => eprintln!("aovpn agent: no LockDown to restore"),
                Err(e) => anyhow::bail!("restoring LockDown: {e}"),
            }
            Ok(())
        });
    }
    let mut config = match AgentConfig::load(&args.config_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aovpn agent: {e}");
            return ExitCode::from(2);
        }
    };
    config.socket = args.socket;
    config.run_dir = args.run_dir;
    config.state_dir = args.state_dir;
    config.resolv_conf = args.resolv_conf;
    if let Some(s) = args.sessions {
        config.sessions = match s {
            Sessions::Auto => SessionSource::Auto,
            Sessions::Logind => SessionSource::Logind,
            Sessions::Helpers => SessionSource::Helpers,
        };
    }
    // The split DNS stub needs port 53, which the agent may bind only until it limits its
    // capabilities; with systemd-resolved it is not needed.
    // (No bus connection here: it would start a thread before the capabilities are cut; a
    // stub bound on a machine where resolved turns out to run stays unused.)
    let stub = if netio::dns::resolved_socket_exists() {
        None
    } else {
        match agent::split_dns::StubSockets::bind() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "aovpn agent: split DNS stub on {}:53: {e}; DomainNameInformation will not be applied",
                    agent::split_dns::STUB_ADDRESS
                );
                None
            }
        }
    };
    // TUN devices, routes and their removal; files it reads are root's own.
    block_on_daemon("agent", &[Capability::CAP_NET_ADMIN], async move {
        agent::service::run(config, stub, shutdown_signal()).await?;
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct UserHelperArgs {
    /// The user's aovpn directory: profiles/ and user/certificate.pem, user/key.pem
    /// (default: $XDG_CONFIG_HOME/aovpn or ~/.config/aovpn).
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = agent::control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// How often the user's profile store is read again.
    #[arg(long, default_value_t = 2)]
    rescan_secs: u64,
}

pub fn run_user_helper_cmd(args: UserHelperArgs) -> ExitCode {
    let options = UserHelperOptions {
        socket: args.socket,
        config_dir: args
            .config_dir
            .unwrap_or_else(agent::profile_store::user_config_dir),
        rescan: Duration::from_secs(args.rescan_secs.max(1)),
    };
    match run_user_helper(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aovpn user-helper: {e}");
            ExitCode::from(2)
        }
    }
}
