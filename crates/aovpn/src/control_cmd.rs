//! `aovpn list`, `aovpn status`, `aovpn up`, `aovpn down`: rasdial and rasphone for the agent,
//! over its control socket. What a caller may see and do is decided by the agent from the
//! caller's credentials.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::connection::ConnectionStatus;
use agent::control::{self, ProfileView, Reply, Request};
use agent::supervisor::{State, human_duration};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the agent's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A profile name; all visible profiles without it.
    name: Option<String>,
    /// Administrators: the user whose profile is meant (uid or name).
    #[arg(long)]
    user: Option<String>,
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the agent's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpDownArgs {
    /// The profile name.
    name: String,
    /// Administrators: the user whose profile is meant (uid or name).
    #[arg(long)]
    user: Option<String>,
    #[arg(long, value_name = "PATH", env = "AOVPN_SOCKET", default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn uid_of(user: Option<&str>) -> Result<Option<u32>, String> {
    let Some(user) = user else {
        return Ok(None);
    };
    if let Ok(uid) = user.parse() {
        return Ok(Some(uid));
    }
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| Some(u.uid.as_raw()))
        .ok_or_else(|| format!("no user named {user:?}"))
}

fn ask(socket: &std::path::Path, request: &Request) -> Result<Reply, ExitCode> {
    match control::call(socket, request) {
        Ok(reply) if reply.ok => Ok(reply),
        Ok(reply) => {
            eprintln!("aovpn: {}", reply.error.unwrap_or_default());
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("aovpn: {e}");
            Err(ExitCode::from(3))
        }
    }
}

fn kind(p: &ProfileView) -> &'static str {
    match (p.device_tunnel, p.uid) {
        (true, _) => "device",
        (false, None) => "machine",
        (false, Some(_)) => "user",
    }
}

pub fn list(args: ListArgs) -> ExitCode {
    let reply = match ask(&args.socket, &Request::List) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply.profiles).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let rows: Vec<[String; 4]> = reply
        .profiles
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.owner.clone(),
                format!(
                    "{}{}",
                    kind(p),
                    if p.always_on { ", always on" } else { "" }
                ),
                p.state.to_string(),
            ]
        })
        .collect();
    print!("{}", table(["NAME", "OWNER", "TUNNEL", "STATE"], &rows));
    ExitCode::SUCCESS
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(str::to_owned);
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n < 10_000 => format!("{n} B"),
        n if n < 10_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        n if n < 10_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n => format!("{:.1} GB", n as f64 / 1e9),
    }
}

pub(crate) fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn tunnel_lines(out: &mut String, t: &ConnectionStatus) {
    let now = tunnel::host::unix_now();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<12} {v}");
    };
    line("interface", t.interface.clone());
    line("addresses", join(&t.virtual_ips));
    line("server", t.server.clone());
    if let Some(local) = t.local {
        line(
            "outer",
            format!(
                "{local} -> {}",
                t.remote.map(|r| r.to_string()).unwrap_or_default()
            ),
        );
    }
    line("routes", join(&t.routes));
    let suffixes = if t.dns_suffixes.is_empty() {
        String::new()
    } else {
        format!(" (suffixes {})", t.dns_suffixes.join(", "))
    };
    let domains = if t.dns_domains.is_empty() {
        String::new()
    } else {
        format!(" (for {})", t.dns_domains.join(", "))
    };
    line("dns", format!("{}{domains}{suffixes}", join(&t.dns)));
    if let Some(r) = &t.dns_registration {
        let name = if r.name.is_empty() { "-" } else { &r.name };
        let server = r.server.map(|s| format!(" at {s}")).unwrap_or_default();
        let detail = r
            .detail
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        line("dns name", format!("{name} {}{server}{detail}", r.state));
    }
    let age = |since: Option<u64>| since.map(|s| human_duration(now.saturating_sub(s)));
    line(
        "ike",
        format!(
            "{} (up {}{})",
            t.ike,
            age(t.ike_since).unwrap_or_else(|| "-".into()),
            t.last_rekey
                .map(|r| format!(", rekeyed {} ago", human_duration(now.saturating_sub(r))))
                .unwrap_or_default()
        ),
    );
    if let Some(tls) = &t.eap_tls {
        line("eap-tls", tls.clone());
    }
    line("esp", t.esp.clone());
    line("mobike", if t.mobike { "yes" } else { "no" }.into());
    let tr = &t.traffic;
    line(
        "traffic",
        format!(
            "in {} / {} packets, out {} / {} packets, {} refused",
            bytes(tr.bytes_in),
            tr.packets_in,
            bytes(tr.bytes_out),
            tr.packets_out,
            tr.dropped_in
        ),
    );
}

fn history_lines(out: &mut String, h: &agent::supervisor::History) {
    if let Some(suffix) = &h.trusted_network {
        let _ = writeln!(
            out,
            "  {:<12} {suffix} (TrustedNetworkDetection: an AlwaysOn user tunnel stays down)",
            "trusted"
        );
    }
    if h.failed_rounds > 0 {
        let _ = writeln!(
            out,
            "  {:<12} {} failed round(s) over the servers since the last success",
            "backoff", h.failed_rounds
        );
    }
    for (i, a) in h.attempts.iter().enumerate() {
        let outcome = a.error.as_deref().unwrap_or("came up");
        let _ = writeln!(
            out,
            "  {:<12} {} ago, {}: {outcome}",
            if i == 0 { "attempts" } else { "" },
            human_duration(a.ago_secs),
            a.server
        );
    }
}

pub fn history_summary(h: &agent::supervisor::History) -> String {
    let mut parts = Vec::new();
    if h.failed_rounds > 0 {
        parts.push(format!(
            "{} failed round(s) since the last success",
            h.failed_rounds
        ));
    }
    if let Some(a) = h.attempts.first() {
        parts.push(format!(
            "last attempt {} ago at {}: {}",
            human_duration(a.ago_secs),
            a.server,
            a.error.as_deref().unwrap_or("came up")
        ));
    }
    parts.join("; ")
}

pub fn status(args: StatusArgs) -> ExitCode {
    let user = match uid_of(args.user.as_deref()) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("aovpn: {e}");
            return ExitCode::from(2);
        }
    };
    let request = Request::Status {
        name: args.name.clone(),
        user,
    };
    let reply = match ask(&args.socket, &request) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply.profiles).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    for p in &reply.profiles {
        let owner = match p.uid {
            Some(_) => format!("user tunnel of {}", p.owner),
            None if p.device_tunnel => "device tunnel".into(),
            None => "machine profile".into(),
        };
        let always = if p.always_on { ", always on" } else { "" };
        let _ = writeln!(out, "{} ({owner}{always})", p.name);
        let _ = writeln!(out, "  {:<12} {}", "state", p.state);
        if let Some(t) = &p.tunnel {
            tunnel_lines(&mut out, t);
        }
        if let Some(h) = &p.history {
            history_lines(&mut out, h);
        }
        if let State::Waiting {
            last_error: Some(e),
            ..
        }
        | State::Disconnected {
            last_error: Some(e),
        } = &p.state
        {
            let _ = writeln!(out, "  {:<12} {e}", "last error");
        }
        out.push('\n');
    }
    print!("{out}");
    ExitCode::SUCCESS
}

pub fn up_down(args: UpDownArgs, connect: bool) -> ExitCode {
    let user = match uid_of(args.user.as_deref()) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("aovpn: {e}");
            return ExitCode::from(2);
        }
    };
    let request = if connect {
        Request::Connect {
            name: args.name.clone(),
            user,
        }
    } else {
        Request::Disconnect {
            name: args.name.clone(),
            user,
        }
    };
    match ask(&args.socket, &request) {
        Ok(_) => {
            println!(
                "{} {}",
                if connect {
                    "connecting"
                } else {
                    "disconnecting"
                },
                args.name
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
