//! `aovpn profile ...`: validate, add, list, show, remove and export VPNv2 ProfileXML profiles.
//!
//! Exit codes: 0 success, 2 the profile was refused (one `FILE:LINE:COL: message` line per error
//! on stderr) or the command line was wrong, 1 anything else (missing profile, I/O).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent::profile_store::{Store, StoreError, StoredProfile};
use profile::plan::{self, ConnectionPlan, Credential, RouteVia};
use profile::{ParsedProfile, ProfileErrors, ProfileWarning, Scope, WarningKind, serialize};

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Use the profile store in DIR (DIR/device and DIR/user) instead of the system directory's
    /// profiles/ and the user's config directory.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The system directory the agent reads (device profiles in DIR/profiles).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "AOVPN_SYSTEM_DIR",
        default_value = "/etc/aovpn"
    )]
    system_dir: PathBuf,
    /// The agent's control socket, told to re-read the system store after a change.
    #[arg(long, global = true, value_name = "PATH", env = "AOVPN_SOCKET", default_value = agent::control::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: ProfileCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ScopeArg {
    Device,
    User,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Device => Scope::Device,
            ScopeArg::User => Scope::User,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum ProfileCommand {
    /// Check a profile (plain ProfileXML, escaped, or SyncML) without storing it.
    Validate {
        file: PathBuf,
        /// Check the rules for this scope too (a SyncML URI sets it by itself).
        #[arg(long, value_enum)]
        scope: Option<ScopeArg>,
    },
    /// Validate a profile and store it.
    Add {
        file: PathBuf,
        /// Profile name; defaults to the SyncML URI's name, then to <ProfileName>.
        #[arg(long)]
        name: Option<String>,
        /// Defaults to the SyncML URI's scope, then device for a device tunnel, else user.
        #[arg(long, value_enum, conflicts_with = "system")]
        scope: Option<ScopeArg>,
        /// Store it in the system (device) scope: the same as --scope device.
        #[arg(long)]
        system: bool,
    },
    /// List stored profiles.
    List,
    /// Show a stored profile, or with --plan what the agent will do with it.
    Show {
        name: String,
        #[arg(long)]
        plan: bool,
    },
    /// Remove a stored profile.
    Remove { name: String },
    /// Make a profile from a VPN client configuration package (Azure's "Download VPN client"
    /// zip, or one from `aovpn gateway client-package`), installing the gateway's root CA and
    /// with --cert/--key the certificate to connect with.
    Import(crate::client_package_cmd::ImportArgs),
    /// Print a stored profile's ProfileXML, or an MDM SyncML message carrying it.
    Export {
        name: String,
        #[arg(long)]
        syncml: bool,
    },
}

/// A failed command: what to print and which exit code.
pub(crate) enum Failure {
    Refused(ProfileErrors),
    Other(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::Invalid(errors) => Failure::Refused(errors),
            other => Failure::Other(other.to_string()),
        }
    }
}

pub fn run(args: ProfileArgs) -> ExitCode {
    let store = match &args.store {
        Some(dir) => Store::at(dir),
        None => Store::system_at(&args.system_dir),
    };
    let result = match args.command {
        ProfileCommand::Validate { file, scope } => validate(&file, scope.map(Scope::from)),
        ProfileCommand::Add {
            file,
            name,
            scope,
            system,
        } => {
            let scope = if system {
                Some(Scope::Device)
            } else {
                scope.map(Scope::from)
            };
            add(&store, &file, name, scope).inspect(|()| tell_agent(&args.socket))
        }
        ProfileCommand::List => list(&store),
        ProfileCommand::Show { name, plan } => show(&store, &name, plan),
        ProfileCommand::Remove { name } => {
            remove(&store, &name).inspect(|()| tell_agent(&args.socket))
        }
        ProfileCommand::Export { name, syncml } => export(&store, &name, syncml),
        ProfileCommand::Import(import) => {
            crate::client_package_cmd::import(&store, &args.system_dir, &import)
                .map(|done| done.lines.iter().for_each(|l| println!("{l}")))
                .inspect(|()| tell_agent(&args.socket))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(errors)) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("aovpn profile: {message}");
            ExitCode::from(1)
        }
    }
}

/// A running agent re-reads the system store now (it also does every few seconds, and user
/// profiles reach it through the user's key helper). Nothing to do if no agent runs.
fn tell_agent(socket: &Path) {
    if socket.exists()
        && let Ok(reply) = agent::control::call(socket, &agent::control::Request::Reload)
        && reply.ok
    {
        println!("the running agent re-read the system profiles");
    }
}

fn read(file: &Path) -> Result<(ParsedProfile, Vec<u8>), Failure> {
    let bytes =
        std::fs::read(file).map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
    let parsed =
        ParsedProfile::parse(&file.display().to_string(), &bytes).map_err(Failure::Refused)?;
    Ok((parsed, bytes))
}

fn print_warnings(warnings: &[ProfileWarning]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

fn validate(file: &Path, scope: Option<Scope>) -> Result<(), Failure> {
    let (parsed, _) = read(file)?;
    let warnings = parsed.validate(scope).map_err(Failure::Refused)?;
    print_warnings(&warnings);
    println!("{}: valid", file.display());
    Ok(())
}

fn add(
    store: &Store,
    file: &Path,
    name: Option<String>,
    scope: Option<Scope>,
) -> Result<(), Failure> {
    let (parsed, bytes) = read(file)?;
    let scope = parsed
        .effective_scope(scope)
        .map_err(Failure::Refused)?
        .unwrap_or(if parsed.profile.is_device_tunnel() {
            Scope::Device
        } else {
            Scope::User
        });
    let name = name
        .or_else(|| parsed.uri.as_ref().map(|u| u.name.clone()))
        .or_else(|| parsed.profile.profile_name.clone())
        .ok_or_else(|| {
            Failure::Other(format!(
                "{}: the profile has no <ProfileName> and no SyncML URI; pass --name",
                file.display()
            ))
        })?;
    let (stored, warnings) = store.add(&name, scope, &parsed, &bytes)?;
    print_warnings(&warnings);
    println!(
        "added {} profile \"{}\" ({}) in {}",
        stored.scope,
        stored.name,
        tunnel_kind(&stored),
        stored.dir.display()
    );
    Ok(())
}

fn tunnel_kind(p: &StoredProfile) -> &'static str {
    if p.parsed.profile.is_device_tunnel() {
        "device tunnel"
    } else {
        "user tunnel"
    }
}

/// A stored profile's servers, comma-separated.
pub(crate) fn servers(p: &StoredProfile) -> String {
    let hosts: Vec<&str> = p
        .parsed
        .profile
        .servers()
        .iter()
        .map(|s| s.host.as_str())
        .collect();
    hosts.join(",")
}

fn list(store: &Store) -> Result<(), Failure> {
    let profiles = store.list()?;
    let rows: Vec<[String; 5]> = profiles
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.scope.to_string(),
                tunnel_kind(p).to_owned(),
                if p.parsed.profile.is_always_on() {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
                servers(p),
            ]
        })
        .collect();
    let header = ["NAME", "SCOPE", "TUNNEL", "ALWAYSON", "SERVERS"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:w$}  ");
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(())
}

fn show(store: &Store, name: &str, with_plan: bool) -> Result<(), Failure> {
    let p = store.get(name)?;
    if with_plan {
        // Checked again: a profile stored by an older aovpn may hold what this one refuses.
        let warnings = p.parsed.validate(Some(p.scope)).map_err(Failure::Refused)?;
        let plan = plan::plan(&p.name, Some(p.scope), &p.parsed.profile)
            .ok_or_else(|| Failure::Other(format!("{name}: the profile has no NativeProfile")))?;
        print!("{}", render_plan(&plan, &warnings));
        return Ok(());
    }
    println!("name: {}", p.name);
    println!("scope: {}", p.scope);
    println!("tunnel: {}", tunnel_kind(&p));
    println!("always-on: {}", yes_no(p.parsed.profile.is_always_on()));
    println!("servers: {}", servers(&p));
    println!("added from: {} ({})", p.source_file, p.form.as_str());
    println!("stored in: {}", p.dir.display());
    println!();
    print!("{}", p.parsed.profile_xml);
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan as `key: value` lines (stable, so scripts and tests can read it): what the client
/// does, then each element it does not apply (`not applied`) or ignores (`ignored`), with why.
fn render_plan(p: &ConnectionPlan, warnings: &[ProfileWarning]) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "{k}: {v}");
    };
    line("name", p.name.clone());
    line("scope", p.scope.map_or("-", Scope::as_str).to_owned());
    line(
        "tunnel",
        if p.device_tunnel { "device" } else { "user" }.to_owned(),
    );
    let servers: Vec<String> = p
        .servers
        .iter()
        .map(|s| match &s.friendly_name {
            Some(f) => format!("{} ({f})", s.host),
            None => s.host.clone(),
        })
        .collect();
    line("servers", join(&servers));
    line(
        "certificate",
        match p.certificate_store {
            plan::CertificateStore::Machine => "machine store, machine certificate",
            plan::CertificateStore::User => "user store, user certificate",
        }
        .to_owned(),
    );
    line(
        "authentication",
        match &p.credential {
            Credential::MachineCertificate => "IKEv2 certificate".to_owned(),
            Credential::Eap {
                method_type: Some(13),
                config,
            } => {
                let v = plan::eap_server_validation(&config.0);
                let names = if v.server_names.is_empty() {
                    "the name dialled".to_owned()
                } else {
                    v.server_names.join(", ")
                };
                let roots = if v.trusted_roots.is_empty() {
                    "any configured root".to_owned()
                } else {
                    format!("roots {}", v.trusted_roots.join(", "))
                };
                format!(
                    "EAP-TLS (TLS 1.3 or 1.2) with the user certificate; server certificate for {names}, {roots}"
                )
            }
            Credential::Eap {
                method_type: Some(t),
                ..
            } => format!("EAP type {t}"),
            Credential::Eap {
                method_type: None, ..
            } => "EAP".to_owned(),
        },
    );
    let source = if p.proposals_from_profile {
        "CryptographySuite"
    } else {
        "aovpn defaults"
    };
    line(
        "ike proposals",
        format!("{} ({source})", join(&p.ike_proposals)),
    );
    line(
        "esp proposals",
        format!("{} ({source})", join(&p.esp_proposals)),
    );
    line("routing", p.routes.policy.to_string());
    for r in &p.routes.configured {
        let via = match r.via {
            RouteVia::Tunnel => "tunnel",
            RouteVia::Physical => "physical interface (exclusion)",
        };
        let metric = r.metric.map(|m| format!(" metric {m}")).unwrap_or_default();
        line("route", format!("{} via {via}{metric}", r.prefix));
    }
    if p.routes.policy == profile::RoutingPolicy::ForceTunnel {
        line(
            "default route",
            "via tunnel, gateway address via physical interface".to_owned(),
        );
    }
    line(
        "class-based route",
        yes_no(p.routes.class_based_route).to_owned(),
    );
    line(
        "traffic selectors as routes",
        yes_no(p.routes.traffic_selectors_as_routes).to_owned(),
    );
    for (family, metric) in [
        ("ipv4", p.routes.ipv4_interface_metric),
        ("ipv6", p.routes.ipv6_interface_metric),
    ] {
        if let Some(m) = metric {
            line(
                &format!("{family} interface metric"),
                format!("{m} (added to the metric of every tunnel route)"),
            );
        }
    }
    line("dns suffixes", join(&p.dns.suffixes));
    for d in &p.dns.split {
        let servers = if d.servers.is_empty() {
            "the tunnel's DNS servers".to_owned()
        } else {
            join(&d.servers)
        };
        let persistent = if d.persistent {
            "; persistent: also while the tunnel is down, through the stub"
        } else {
            ""
        };
        line(
            "split dns",
            format!(
                "{} -> {servers} (agent: resolved routing domain or its stub{persistent})",
                d.domain
            ),
        );
    }
    if p.dns.register {
        line(
            "register dns",
            "yes (the agent: RFC 2136 update signed with its TSIG key, /etc/aovpn/dns-update.key)"
                .to_owned(),
        );
    }
    if let Some(server) = &p.proxy_server {
        line(
            "proxy",
            format!("{server} (the agent exports it while the tunnel is up)"),
        );
    }
    line("trusted networks", join(&p.trusted_networks));
    line("always-on", yes_no(p.always_on).to_owned());
    if p.lockdown {
        line(
            "lockdown",
            "yes (the agent: nothing outside this tunnel, also while it is down)".to_owned(),
        );
    }
    line(
        "network outage time",
        p.network_outage_time
            .map_or("default".to_owned(), |t| format!("{t}s")),
    );
    line(
        "ike fragmentation",
        yes_no(!p.disable_ike_fragmentation).to_owned(),
    );
    for f in &p.traffic_filters {
        line(
            "traffic filter",
            format!(
                "{} (nftables; other traffic on the interface dropped)",
                filter_text(f)
            ),
        );
    }
    for w in warnings {
        let (key, why) = match &w.kind {
            WarningKind::NotApplied(why) => ("not applied", why.to_string()),
            other => ("ignored", other.to_string()),
        };
        line(key, format!("{} ({why})", w.element));
    }
    s
}

/// `outbound tcp remote 10.1.0.0/16 remote ports 443`: the parts a filter sets.
fn filter_text(f: &profile::TrafficFilter) -> String {
    let direction = match f.direction {
        Some(profile::Direction::Inbound) => "inbound",
        _ => "outbound",
    };
    let mut parts = vec![direction.to_owned()];
    parts.push(match f.protocol {
        Some(6) => "tcp".to_owned(),
        Some(17) => "udp".to_owned(),
        Some(p) => format!("protocol {p}"),
        None => "any protocol".to_owned(),
    });
    let range = |r: &profile::AddressRange| match r {
        profile::AddressRange::Prefix(p) => p.to_string(),
        profile::AddressRange::Range(a, b) => format!("{a}-{b}"),
    };
    let port = |r: &profile::PortRange| {
        if r.first == r.last {
            r.first.to_string()
        } else {
            format!("{}-{}", r.first, r.last)
        }
    };
    for (label, list) in [
        ("local", &f.local_address_ranges),
        ("remote", &f.remote_address_ranges),
    ] {
        if !list.is_empty() {
            parts.push(format!(
                "{label} {}",
                join(&list.iter().map(range).collect::<Vec<_>>())
            ));
        }
    }
    for (label, list) in [
        ("local ports", &f.local_port_ranges),
        ("remote ports", &f.remote_port_ranges),
    ] {
        if !list.is_empty() {
            parts.push(format!(
                "{label} {}",
                join(&list.iter().map(port).collect::<Vec<_>>())
            ));
        }
    }
    parts.join(" ")
}

fn remove(store: &Store, name: &str) -> Result<(), Failure> {
    let scope = store.remove(name)?;
    println!("removed {scope} profile \"{name}\"");
    Ok(())
}

fn export(store: &Store, name: &str, syncml: bool) -> Result<(), Failure> {
    let p = store.get(name)?;
    if syncml {
        print!(
            "{}",
            serialize::to_syncml(&p.name, Some(p.scope), &p.parsed.profile_xml)
        );
    } else {
        print!("{}", p.parsed.profile_xml);
    }
    Ok(())
}
