//! `aovpn doctor`: why a tunnel does not come up, one check per line (ok / warning / problem,
//! with what to do), from the profile to a real handshake with the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::doctor::{self, Check, Files, Verdict};

use crate::runtime::block_on_daemon;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// A profile by name: a device profile in the system store (with the machine certificate),
    /// or the caller's own user profile (with the user's certificate); roots from the system
    /// store.
    #[arg(conflicts_with_all = ["profile_file", "server"])]
    name: Option<String>,
    /// A VPNv2 ProfileXML file (with --cert, --key, --ca).
    #[arg(long)]
    profile_file: Option<PathBuf>,
    /// A gateway to check without a profile (with --cert, --key, --ca).
    #[arg(long)]
    server: Vec<String>,
    /// Our certificate (PEM, intermediates may follow).
    #[arg(long, required_unless_present = "name")]
    cert: Option<PathBuf>,
    /// Our private key.
    #[arg(long, required_unless_present = "name")]
    key: Option<PathBuf>,
    /// Root CA(s) the gateway's certificate must chain to.
    #[arg(long)]
    ca: Vec<PathBuf>,
    /// The system store (for NAME).
    #[arg(
        long,
        value_name = "DIR",
        env = "AOVPN_SYSTEM_DIR",
        default_value = "/etc/aovpn"
    )]
    system_dir: PathBuf,
    /// The agent's control socket (for NAME: what the agent says about the tunnel).
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = agent::control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The tunnel MTU to check the path against (default: tunnel_mtu in the system store's
    /// agent.toml, else 1400).
    #[arg(long, value_name = "BYTES")]
    mtu: Option<u16>,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    // Sockets only (the handshake); nothing is installed.
    block_on_daemon("doctor", &[], async move {
        let checks = checks(&args).await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        } else {
            print!("{}", tunnel::check::render(&checks));
        }
        if doctor::has_problem(&checks) {
            anyhow::bail!("problems found");
        }
        Ok(())
    })
}

async fn checks(args: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let (profile_bytes, profile_name, files) = match &args.name {
        Some(name) => {
            // The device store, and the caller's own (a user tunnel is checked as its user,
            // with the user's certificate).
            let store = agent::profile_store::Store::system_at(&args.system_dir);
            let found = store
                .list()
                .ok()
                .and_then(|l| l.into_iter().find(|p| &p.name == name));
            let Some(p) = found else {
                out.push(Check {
                    check: "profile".into(),
                    verdict: Verdict::Problem,
                    detail: format!(
                        "no profile {name:?} in {} or {}",
                        args.system_dir.join("profiles").display(),
                        agent::profile_store::user_config_dir()
                            .join("profiles")
                            .display()
                    ),
                    fix: Some("aovpn profile list shows the profiles".into()),
                });
                return out;
            };
            let mut files = doctor::system_files(&args.system_dir);
            if p.scope == profile::Scope::User {
                let dir = agent::profile_store::user_config_dir().join("user");
                files.cert = dir.join("certificate.pem");
                files.key = dir.join("key.pem");
            }
            (Some(p.parsed.profile_xml.into_bytes()), name.clone(), files)
        }
        None => {
            let bytes = match &args.profile_file {
                Some(f) => match std::fs::read(f) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        out.push(Check {
                            check: "profile".into(),
                            verdict: Verdict::Problem,
                            detail: format!("{}: {e}", f.display()),
                            fix: None,
                        });
                        return out;
                    }
                },
                None => None,
            };
            let name = args
                .profile_file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            let files = Files {
                cert: args.cert.clone().unwrap_or_default(),
                key: args.key.clone().unwrap_or_default(),
                ca: args.ca.clone(),
            };
            (bytes, name, files)
        }
    };

    // The profile: valid, and what it will not apply.
    let mut plan = None;
    if let Some(bytes) = &profile_bytes {
        match profile::ParsedProfile::parse(&profile_name, bytes) {
            Err(e) => out.push(Check {
                check: "profile".into(),
                verdict: Verdict::Problem,
                detail: e.to_string(),
                fix: Some("fix the element named (aovpn profile validate FILE)".into()),
            }),
            Ok(parsed) => {
                let scope = parsed.uri.as_ref().and_then(|u| u.scope);
                match parsed.validate(scope) {
                    Err(e) => out.push(Check {
                        check: "profile".into(),
                        verdict: Verdict::Problem,
                        detail: e.to_string(),
                        fix: Some("fix the element named (aovpn profile validate FILE)".into()),
                    }),
                    Ok(warnings) => {
                        let not_done: Vec<String> =
                            warnings.iter().map(|w| w.element.clone()).collect();
                        out.push(Check {
                            check: "profile".into(),
                            verdict: if not_done.is_empty() {
                                Verdict::Ok
                            } else {
                                Verdict::Warning
                            },
                            detail: if not_done.is_empty() {
                                "valid; every element applied".into()
                            } else {
                                format!("valid; not applied or ignored: {}", not_done.join(", "))
                            },
                            fix: (!not_done.is_empty())
                                .then(|| "aovpn profile validate FILE says why for each".into()),
                        });
                        let pname = parsed
                            .profile
                            .profile_name
                            .clone()
                            .unwrap_or_else(|| profile_name.clone());
                        plan = profile::plan::plan(&pname, scope, &parsed.profile);
                    }
                }
            }
        }
    }

    // Our certificate and key.
    let creds = doctor::check_credentials(&files, tunnel::host::unix_now());
    out.extend(creds);
    if let Some(plan) = &plan {
        out.extend(doctor::check_kind(&files.cert, plan.device_tunnel));
    }
    // A handshake even when a check above found a problem, as long as the files load: what
    // the gateway says to them confirms the diagnosis.
    let credentials = agent::connection::load_credentials(&files.cert, &files.key, &files.ca).ok();

    // The servers, and a handshake with the first that resolves.
    let (options, servers) = match (&plan, credentials) {
        (_, None) => (None, Vec::new()),
        (Some(plan), Some(c)) => {
            match agent::plan::profile_tunnel(plan, c, "aovpn-doctor".into()) {
                Ok(t) => (Some(t.options), t.servers),
                Err(e) => {
                    out.push(Check {
                        check: "profile".into(),
                        verdict: Verdict::Problem,
                        detail: e.to_string(),
                        fix: None,
                    });
                    (None, Vec::new())
                }
            }
        }
        (None, Some(c)) if profile_bytes.is_none() => (
            Some(crate::connect_cmd::plain_options(
                &args.server,
                c,
                "aovpn-doctor",
            )),
            args.server.clone(),
        ),
        (None, Some(_)) => (None, Vec::new()),
    };
    let (dns, found) = doctor::check_servers(&servers).await;
    out.extend(dns);
    if let (Some(mut options), Some((name, addr))) = (options, found.first()) {
        if let Some(mtu) = args.mtu {
            options.mtu = mtu;
        } else if let Ok(config) = agent::config::AgentConfig::load(&args.system_dir) {
            options.mtu = config.tunnel_mtu;
        }
        let tunnel_up = tunnel_running(&args.socket, args.name.as_deref(), &servers);
        out.push(doctor::check_handshake(&options, name, *addr, !tunnel_up).await);
        out.extend(doctor::check_path(&options, name, *addr).await);
    }
    if let Some(name) = &args.name {
        let view = agent_view(&args.socket, name);
        let up = view.verdict == Verdict::Ok;
        out.push(view);
        // Split DNS servers, asked through the tunnel while it is up.
        if up && let Some(plan) = &plan {
            let rules: Vec<profile::plan::SplitDns> = plan
                .dns
                .split
                .iter()
                .filter(|d| !d.servers.is_empty())
                .cloned()
                .collect();
            out.extend(doctor::check_split_dns(&rules).await);
        }
    }
    out
}

/// Whether the agent runs a tunnel of this profile (NAME), or to one of these servers: the
/// probe must not ask for addresses then.
fn tunnel_running(socket: &std::path::Path, name: Option<&str>, servers: &[String]) -> bool {
    let Ok(reply) = agent::control::call(socket, &agent::control::Request::List) else {
        return false;
    };
    reply.profiles.iter().any(|p| match &p.state {
        agent::supervisor::State::Connected { server, .. }
        | agent::supervisor::State::Connecting { server } => {
            name == Some(p.name.as_str()) || servers.iter().any(|s| s == server)
        }
        _ => false,
    })
}

/// What the agent says about the profile's tunnel: its state, and the last failure.
fn agent_view(socket: &std::path::Path, name: &str) -> Check {
    let request = agent::control::Request::Status {
        name: Some(name.to_owned()),
        user: None,
    };
    let check = |verdict, detail: String, fix: Option<&str>| Check {
        check: "agent".into(),
        verdict,
        detail,
        fix: fix.map(str::to_owned),
    };
    match agent::control::call(socket, &request) {
        Err(e) => check(
            Verdict::Warning,
            format!("no answer on {}: {e}", socket.display()),
            Some("systemctl status aovpn-agent (the agent keeps the tunnel up)"),
        ),
        Ok(r) => match r.profiles.first() {
            None => check(
                Verdict::Warning,
                r.error
                    .unwrap_or_else(|| "the agent does not know this profile".into()),
                Some("aovpn list shows what the agent runs"),
            ),
            Some(p) => {
                let connected = matches!(p.state, agent::supervisor::State::Connected { .. });
                let trusted = p.history.as_ref().and_then(|h| h.trusted_network.clone());
                let mut detail = p.state.to_string();
                if let Some(h) = &p.history {
                    let summary = crate::control_cmd::history_summary(h);
                    if !connected && !summary.is_empty() {
                        detail = format!("{detail}; {summary}");
                    }
                }
                match (&p.state, trusted) {
                    (_, _) if connected => check(Verdict::Ok, detail, None),
                    (agent::supervisor::State::TrustedNetwork, Some(suffix)) => check(
                        Verdict::Ok,
                        format!(
                            "down by design: this network's DNS suffix {suffix} is in the profile's TrustedNetworkDetection"
                        ),
                        None,
                    ),
                    _ => check(
                        Verdict::Warning,
                        detail,
                        Some("the checks above say why; aovpn status NAME has the details"),
                    ),
                }
            }
        },
    }
}
