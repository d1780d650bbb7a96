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
//! Start reading: [`run`], then `up`.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::{Netns, Topology, lab as addr};

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

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("locating the aovpn binary")
}

/// Runs `aovpn ARGS` (this binary) and fails with its stderr.
fn aovpn(args: &[&str]) -> Result<String> {
    let out = Command::new(self_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running aovpn {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "aovpn {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn up(iperf_secs: u32) -> Result<u8> {
    down().context("removing the previous lab")?;
    let dir = state();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("== building namespaces");
    let topo = Topology::builder(PREFIX)
        .routed(true)
        .exact_names()
        .build()
        .context("building the lab namespaces")?;
    for host in [MGMT_HOSTS[1], APP_HOST, CORP_DNS] {
        topo.vnet
            .ip(["addr", "add", &format!("{host}/24"), "dev", addr::VNET_IF])
            .context("adding vnet host addresses")?;
    }
    // The client resolves the gateway's name like a real one would: `ip netns exec` binds
    // /etc/netns/NAME/hosts over /etc/hosts.
    let hosts_dir = PathBuf::from("/etc/netns").join(topo.client.name());
    fs::create_dir_all(&hosts_dir)?;
    fs::write(
        hosts_dir.join("hosts"),
        format!(
            "127.0.0.1 localhost\n{} {GATEWAY_NAME}\n",
            topo.gateway_wan()
        ),
    )?;
    let gateway_wan = topo.gateway_wan();
    topo.persist();

    println!("== issuing certificates with aovpn pki");
    let pki = dir.join("pki");
    let p = |s: &str| pki.join(s).display().to_string();
    aovpn(&["pki", "init", "--out", &p("ca"), "--name", "aolab Root CA"])?;
    for (kind, name) in [
        ("gateway", GATEWAY_NAME),
        ("machine", MACHINE_NAME),
        ("user", USER_NAME),
    ] {
        aovpn(&[
            "pki",
            "issue",
            "--ca",
            &p("ca"),
            "--kind",
            kind,
            "--name",
            name,
            "--out",
            &p(kind),
        ])?;
    }
    let ca_crt = p("ca/ca.crt");
    let cert = |kind: &str, name: &str| {
        (
            p(&format!("{kind}/{name}.crt")),
            p(&format!("{kind}/{name}.key")),
        )
    };

    println!("== starting the gateway in {}", ns_name("gw"));
    let (gw_crt, gw_key) = cert("gateway", GATEWAY_NAME);
    let gw_conf = dir.join("gateway.toml");
    // The admin page's token: 16 random bytes, hex, readable by root only.
    let web_token = dir.join("web.token");
    let mut random = [0u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(&web_token, format!("{token}\n"))?;
    set_mode(&web_token, 0o600)?;
    fs::write(
        &gw_conf,
        format!(
            r#"# aovpn lab gateway
state_dir = "{state}/gateway"
[admin]
socket = "{state}/gateway/admin.sock"
[listen]
addresses = ["{gateway_wan}"]
[identity]
certificate = "{gw_crt}"
key = "{gw_key}"
id = "{GATEWAY_NAME}"
[clients]
root_ca_files = ["{ca_crt}"]
pool_v4 = "{pool}"
[network]
routes = ["{vnet}"]
dns = ["10.1.0.53"]
[tunnel]
interface = "aovpn-gw"
[metrics]
listen = "127.0.0.1:9477"
[web]
listen = "127.0.0.1:9478"
token_file = "{token_file}"
"#,
            state = dir.display(),
            token_file = web_token.display(),
            pool = addr::CLIENT_POOL,
            vnet = addr::VNET_TS,
        ),
    )?;
    start_gateway()?;

    println!(
        "== starting the agent and alice's key helper in {}",
        ns_name("cl")
    );
    let device_xml = dir.join("device-tunnel.xml");
    fs::write(&device_xml, device_profile())?;
    let user_xml = dir.join("user-tunnel.xml");
    fs::write(&user_xml, user_profile())?;
    for file in [&device_xml, &user_xml] {
        aovpn(&["profile", "validate", &file.display().to_string()])?;
    }
    // The client machine's system store: the device tunnel profile, the machine certificate,
    // the root it trusts for the gateway.
    let etc = client_etc();
    for sub in ["ca", "machine"] {
        fs::create_dir_all(etc.join(sub))?;
    }
    fs::copy(&ca_crt, etc.join("ca").join("aolab-root.pem"))?;
    let (m_crt, m_key) = cert("machine", MACHINE_NAME);
    fs::copy(&m_crt, etc.join("machine").join("certificate.pem"))?;
    fs::copy(&m_key, etc.join("machine").join("key.pem"))?;
    set_mode(&etc.join("machine").join("key.pem"), 0o600)?;
    // No logind in a namespace: a user counts as logged in while their key helper runs.
    fs::write(
        etc.join("agent.toml"),
        format!(
            "sessions = \"helpers\"\nbackoff_cap_secs = 10\n\n\
             [register_dns]\nhost_name = \"{DEVICE_HOST}\"\nzone = \"{CORP_DOMAIN}\"\n"
        ),
    )?;
    fs::write(dir.join("client-resolv.conf"), "nameserver 192.0.2.53\n")?;
    aovpn(&[
        "profile",
        "--system-dir",
        &etc.display().to_string(),
        "add",
        "--system",
        "--name",
        DEVICE_PROFILE,
        &device_xml.display().to_string(),
    ])?;
    spawn_daemon("cl", "netmgr", &["lab", "netmgr"])?;
    println!("== starting the corporate DNS server (BIND 9) at {CORP_DNS}");
    // The zone takes updates signed with a key the device holds (RegisterDNS).
    let key = labnet::bind::tsig_keygen().context("making the TSIG key (tsig-keygen, bind9)")?;
    let key_file = etc.join(agent::register_dns::KEY_FILE);
    fs::write(&key_file, &key)?;
    set_mode(&key_file, 0o600)?;
    let named_args = corp_dns(key).write()?;
    let named_args: Vec<&str> = named_args.iter().skip(1).map(String::as_str).collect();
    spawn_program("vn", "corp-dns", Path::new("named"), None, &named_args)?;
    start_agent()?;

    // alice: her home (hers alone), her certificate and key, her profile in her own store.
    let home = dir.join("home-alice");
    let user_dir = home.join("aovpn").join("user");
    fs::create_dir_all(&user_dir)?;
    let (u_crt, u_key) = cert("user", USER_NAME);
    fs::copy(&u_crt, user_dir.join("certificate.pem"))?;
    fs::copy(&u_key, user_dir.join("key.pem"))?;
    set_mode(&user_dir.join("key.pem"), 0o600)?;
    fs::copy(&user_xml, home.join("user-tunnel.xml"))?;
    chown_tree(&home, ALICE_UID)?;
    set_mode(&dir, 0o755)?;
    as_alice(&[
        "profile",
        "add",
        "--scope",
        "user",
        "--name",
        USER_PROFILE,
        &home.join("user-tunnel.xml").display().to_string(),
    ])?;
    spawn_daemon_as(
        "cl",
        "helper",
        Some(ALICE_UID),
        &[
            "user-helper",
            "--config-dir",
            &home.join("aovpn").display().to_string(),
            "--socket",
            &socket().display().to_string(),
        ],
    )?;
    for profile in [DEVICE_PROFILE, USER_PROFILE] {
        wait_connected(profile, Duration::from_secs(30)).with_context(|| {
            format!("the {profile} tunnel did not connect; see {STATE_DIR}/agent.log")
        })?;
    }
    // The device registers its name once its tunnel is up (and named has started).
    wait_registered(Duration::from_secs(20));
    let ok = status(Some(iperf_secs))?;
    println!();
    println!("lab is up. Try:");
    println!(
        "  aovpn lab exec client -- ip link set cl-wan down; sleep 5; aovpn lab exec client -- ip link set cl-wan up"
    );
    println!("  aovpn lab restart gateway");
    println!("  aovpn lab status      (the tunnels are back by themselves)");
    println!("  aovpn lab down        (removes everything)");
    Ok(if ok { 0 } else { 1 })
}

fn client_etc() -> PathBuf {
    state().join("client-etc")
}

fn socket() -> PathBuf {
    state().join("agent.sock")
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    let id = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(path, id, gid).with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// `aovpn ARGS` as the lab user alice.
fn as_alice(args: &[&str]) -> Result<String> {
    let home = state().join("home-alice");
    let out = Command::new("setpriv")
        .arg(format!("--reuid={ALICE_UID}"))
        .arg(format!("--regid={ALICE_UID}"))
        .arg("--clear-groups")
        .env("XDG_CONFIG_HOME", &home)
        .env("HOME", &home)
        .arg(self_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running setpriv")?;
    if !out.status.success() {
        bail!(
            "aovpn {} (as alice) failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_agent() -> Result<()> {
    let dir = state();
    spawn_daemon(
        "cl",
        "agent",
        &[
            "agent",
            "--config-dir",
            &client_etc().display().to_string(),
            "--socket",
            &socket().display().to_string(),
            "--run-dir",
            &dir.join("client-run").display().to_string(),
            "--state-dir",
            &dir.join("client-state").display().to_string(),
            "--resolv-conf",
            &dir.join("client-resolv.conf").display().to_string(),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(socket()).is_err() {
        // (Right after the spawn the process may still be `ip netns exec`, not yet aovpn.)
        let gone = fs::read_to_string(dir.join("agent.pid"))
            .map(|pid| !Path::new(&format!("/proc/{}", pid.trim())).exists())
            .unwrap_or(true);
        if Instant::now() >= deadline || gone {
            bail!("the agent did not start; see {STATE_DIR}/agent.log");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_gateway() -> Result<()> {
    let dir = state();
    let status_file = dir.join("gateway.status.json");
    let _ = fs::remove_file(&status_file);
    spawn_daemon(
        "gw",
        "gateway",
        &[
            "gateway",
            "--config",
            &dir.join("gateway.toml").display().to_string(),
            "--status-file",
            &status_file.display().to_string(),
        ],
    )?;
    wait_for_status(&status_file, "running", Duration::from_secs(15))
        .context("the gateway did not start; see /run/aovpn-lab/gateway.log")
}

/// The agent's list as JSON (every profile: the lab asks as root).
fn agent_list() -> Result<Vec<serde_json::Value>> {
    let reply = agent::control::call(&socket(), &agent::control::Request::List)?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_default());
    }
    Ok(reply
        .profiles
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect())
}

/// Until the device tunnel's name is registered, or `timeout` (the status then says why not).
fn wait_registered(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let reply = agent::control::call(
            &socket(),
            &agent::control::Request::Status {
                name: Some(DEVICE_PROFILE.into()),
                user: None,
            },
        );
        let registered = reply.ok().is_some_and(|r| {
            r.profiles.iter().any(|p| {
                p.tunnel
                    .as_ref()
                    .and_then(|t| t.dns_registration.as_ref())
                    .is_some_and(|d| d.state == "registered")
            })
        });
        if registered {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn wait_connected(profile: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = agent_list().unwrap_or_default();
        let state = list
            .iter()
            .find(|p| p["name"] == profile)
            .map(|p| p["state"]["state"].as_str().unwrap_or_default().to_owned());
        if state.as_deref() == Some("connected") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{profile}: {}",
                state.unwrap_or_else(|| "not known to the agent".into())
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn exec(namespace: LabNs, command: &[String]) -> Result<u8> {
    Netns::attach(ns_name(namespace.role()))
        .map(Netns::persist)
        .map_err(|_| anyhow!("no lab is running (`aovpn lab up` builds one)"))?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns_name(namespace.role())])
        .args(command)
        .status()
        .with_context(|| format!("running {}", command.join(" ")))?;
    Ok(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)))
}

fn restart(daemon: LabDaemon) -> Result<()> {
    match daemon {
        LabDaemon::Gateway => {
            terminate("gateway");
            start_gateway()?;
            println!(
                "gateway restarted; the agent brings the tunnels back by itself (`aovpn lab status`)"
            );
        }
        LabDaemon::Agent => {
            terminate("agent");
            start_agent()?;
            println!("agent restarted; it brings the tunnels back (`aovpn lab status`)");
        }
    }
    Ok(())
}

/// The lab's DHCP stand-in: whenever the client's link is up and has no default route, it
/// puts the router's back (a real machine's DHCP client or NetworkManager does this).
fn netmgr() -> Result<()> {
    use netio::netlink::{Netlink, Route};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let nl = Netlink::new().map_err(|e| anyhow!("netlink: {e}"))?;
        loop {
            if let Ok(link) = nl.link_by_name(addr::CLIENT_IF).await
                && link.up
                && link.lower_up
            {
                let routes = nl.routes(false).await.unwrap_or_default();
                if !routes
                    .iter()
                    .any(|r| r.prefix_len == 0 && r.table.is_none())
                {
                    let mut route =
                        Route::via_dev(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, link.index);
                    route.gateway = Some(std::net::IpAddr::V4(addr::CLIENT_LINK_PEER));
                    match nl.add_route(&route).await {
                        Ok(()) => eprintln!(
                            "netmgr: {} is up: default route via {} restored",
                            addr::CLIENT_IF,
                            addr::CLIENT_LINK_PEER
                        ),
                        Err(e) => eprintln!("netmgr: default route: {e}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// The corporate DNS server: the zone with the lab's hosts, updatable with `key`.
fn corp_dns(key: String) -> labnet::bind::BindConfig {
    labnet::bind::BindConfig {
        dir: state().join("corp-dns"),
        listen: CORP_DNS.into(),
        zone: CORP_DOMAIN.into(),
        records: vec![
            ("mgmt".into(), MGMT_HOSTS[0].into()),
            ("app".into(), APP_HOST.into()),
        ],
        key,
    }
}

/// The seed document's device-tunnel profile, with the lab's gateway and management hosts.
fn device_profile() -> String {
    format!(
        r#"<VPNProfile>
  <NativeProfile>
<Servers>{GATEWAY_NAME}</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication>
  <MachineMethod>Certificate</MachineMethod>
</Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType>
 <!-- disable the addition of a class based route for the assigned IP address on the VPN interface -->
<DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>
  </NativeProfile>
  <!-- use host routes(/32) to prevent routing conflicts -->
  <Route>
<Address>{}</Address>
<PrefixSize>32</PrefixSize>
  </Route>
  <Route>
<Address>{}</Address>
<PrefixSize>32</PrefixSize>
  </Route>
<!-- need to specify always on = true -->
  <AlwaysOn>true</AlwaysOn>
<!-- new node to specify that this is a device tunnel -->
 <DeviceTunnel>true</DeviceTunnel>
<!--new node to register client IP address in DNS to enable manage out -->
<RegisterDNS>true</RegisterDNS>
</VPNProfile>
"#,
        MGMT_HOSTS[0], MGMT_HOSTS[1]
    )
}

/// A user-tunnel profile for the whole network behind the gateway.
fn user_profile() -> String {
    format!(
        r#"<VPNProfile>
  <AlwaysOn>true</AlwaysOn>
  <DnsSuffix>corp.aolab.example</DnsSuffix>
  <DomainNameInformation>
    <DomainName>.corp.aolab.example</DomainName>
    <DnsServers>10.1.0.53</DnsServers>
  </DomainNameInformation>
  <NativeProfile>
    <Servers>{GATEWAY_NAME};aolab gateway</Servers>
    <NativeProtocolType>IKEv2</NativeProtocolType>
    <Authentication>
      <UserMethod>Eap</UserMethod>
      <Eap>
        <Configuration>
          <EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
            <EapMethod>
              <Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type>
              <VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId>
              <VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType>
              <AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId>
            </EapMethod>
            <Config xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
              <Eap xmlns="http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1">
                <Type>13</Type>
                <EapType xmlns="http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1">
                  <CredentialsSource><CertificateStore><SimpleCertSelection>true</SimpleCertSelection></CertificateStore></CredentialsSource>
                  <ServerValidation><DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation><ServerNames></ServerNames></ServerValidation>
                  <DifferentUsername>false</DifferentUsername>
                </EapType>
              </Eap>
            </Config>
          </EapHostConfig>
        </Configuration>
      </Eap>
    </Authentication>
    <RoutingPolicyType>SplitTunnel</RoutingPolicyType>
    <DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>
  </NativeProfile>
  <Route>
    <Address>10.1.0.0</Address>
    <PrefixSize>16</PrefixSize>
  </Route>
</VPNProfile>
"#
    )
}

/// Starts `aovpn ARGS` inside the lab namespace `ns_role`, detached, logging to
/// `STATE/NAME.log`, its pid in `STATE/NAME.pid`. `ip netns exec` execs the command, so the
/// recorded pid is the daemon's own.
fn spawn_daemon(ns_role: &str, name: &str, args: &[&str]) -> Result<()> {
    spawn_daemon_as(ns_role, name, None, args)
}

/// Like [`spawn_daemon`], as user `uid` if given (through setpriv, which execs too).
fn spawn_daemon_as(ns_role: &str, name: &str, uid: Option<u32>, args: &[&str]) -> Result<()> {
    spawn_program(ns_role, name, &self_exe()?, uid, args)
}

/// Starts `program` in a lab namespace, its log and pid in the state directory (so that
/// `lab down` stops it by pid).
fn spawn_program(
    ns_role: &str,
    name: &str,
    program: &Path,
    uid: Option<u32>,
    args: &[&str],
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = state();
    let log = fs::File::create(dir.join(format!("{name}.log")))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns_name(ns_role)]);
    if let Some(uid) = uid {
        cmd.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups");
    }
    let child = cmd
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

fn read_status(path: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn wait_for_status(path: &Path, wanted: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_status(path) {
            match v.get("state").and_then(|s| s.as_str()) {
                Some(s) if s == wanted => return Ok(()),
                Some("failed") => bail!(
                    "{}",
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("failed")
                ),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {}s waiting for state {wanted:?}",
                timeout.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The pid in `STATE/NAME.pid` if that process is still an aovpn.
fn live_pid(name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(state().join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid must still be the program started (not a reused pid of something else).
    let program = if name == "corp-dns" { "named" } else { "aovpn" };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == program).then_some(pid)
}

fn terminate(name: &str) {
    let Some(pid) = live_pid(name) else { return };
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        thread::sleep(Duration::from_millis(50));
    }
    if live_pid(name) == Some(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn down() -> Result<()> {
    // Clients first, so that they can say goodbye (IKE Delete) to a gateway that still runs.
    for name in PROCESSES {
        terminate(name);
    }
    for role in ["cl", "in", "gw", "vn"] {
        if let Ok(ns) = Netns::attach(ns_name(role)) {
            drop(ns); // stops anything left inside and deletes the namespace
        }
    }
    let hosts_dir = PathBuf::from("/etc/netns").join(ns_name("cl"));
    if hosts_dir.exists() {
        fs::remove_dir_all(&hosts_dir)?;
    }
    if state().exists() {
        fs::remove_dir_all(state())?;
    }
    Ok(())
}

fn ns_exec(role: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_name(role)])
        .args(argv)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(anyhow!(
            "{} failed: {}{}",
            argv.join(" "),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}

/// Prints the lab's state; with `iperf_secs`, also a throughput figure per tunnel. Returns
/// whether everything that should work works.
fn status(iperf_secs: Option<u32>) -> Result<bool> {
    if Netns::attach(ns_name("cl")).map(Netns::persist).is_err() {
        bail!("no lab is running (`aovpn lab up` builds one)");
    }
    let dir = state();
    let mut ok = true;
    println!();
    println!("== processes");
    for name in PROCESSES {
        match live_pid(name) {
            Some(pid) => println!("  {name:<8} pid {pid}"),
            None => {
                ok = false;
                println!("  {name:<8} NOT RUNNING (log: {STATE_DIR}/{name}.log)")
            }
        }
    }

    println!();
    let admin_socket = dir.join("gateway").join("admin.sock");
    println!(
        "== gateway {GATEWAY_NAME}: connected clients (`aovpn gateway sessions --socket {}`; metrics: `aovpn lab exec gateway -- curl -s 127.0.0.1:9477/metrics`)",
        admin_socket.display()
    );
    println!(
        "   admin page: http://127.0.0.1:9478 in the gateway's namespace, token in {} (e.g. `aovpn lab exec gateway -- sh -c 'curl -s -H \"Authorization: Bearer $(cat {})\" 127.0.0.1:9478/api/state'`)",
        dir.join("web.token").display(),
        dir.join("web.token").display()
    );
    match gateway::admin::call(&admin_socket, &gateway::admin::Request::Sessions) {
        Ok(reply) if reply.ok && !reply.sessions.is_empty() => {
            for s in &reply.sessions {
                println!(
                    "  {:<34} vip {:<15} from {:<21} {}  in {} / out {} packets",
                    s.identity,
                    s.virtual_ip
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.remote,
                    s.esp,
                    s.traffic.packets_in,
                    s.traffic.packets_out
                );
            }
        }
        Ok(reply) => {
            ok = false;
            println!(
                "  (none{})",
                reply.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        Err(e) => {
            ok = false;
            println!("  (the gateway's admin socket: {e})");
        }
    }

    println!();
    println!("== the agent's tunnels (`aovpn list` as root in the client namespace)");
    let reply = agent::control::call(
        &socket(),
        &agent::control::Request::Status {
            name: None,
            user: None,
        },
    );
    let profiles = match reply {
        Ok(r) if r.ok => r.profiles,
        Ok(r) => {
            ok = false;
            println!("  agent: {}", r.error.unwrap_or_default());
            Vec::new()
        }
        Err(e) => {
            ok = false;
            println!("  agent: {e}");
            Vec::new()
        }
    };
    let mut user_if = String::from("?");
    let mut device_vip = None;
    let mut registration = None;
    for p in &profiles {
        let connected = matches!(p.state, agent::supervisor::State::Connected { .. });
        ok &= connected;
        let owner = if p.device_tunnel {
            "device".to_owned()
        } else {
            p.owner.clone()
        };
        println!("  {:<16} {:<10} {}", p.name, owner, p.state);
        if let Some(t) = &p.tunnel {
            println!(
                "  {:<16} {:<10} {} vip {} ike {} esp {}",
                "",
                "",
                t.interface,
                t.virtual_ip
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                t.ike,
                t.esp
            );
            println!("  {:<16} {:<10} routes {}", "", "", t.routes.join(", "));
            if p.name == USER_PROFILE {
                user_if = t.interface.clone();
            }
            if p.device_tunnel {
                device_vip = t.virtual_ip;
                registration = t.dns_registration.clone();
            }
        }
    }
    if profiles.len() < 2 {
        ok = false;
    }

    println!();
    println!("== routes in the client namespace");
    for line in ns_exec("cl", &["ip", "-4", "route", "show", "table", "all"])?.lines() {
        if line.contains("aovpn") || line.starts_with("default") {
            println!("  {line}");
        }
    }

    println!();
    println!("== which tunnel carries which destination");
    let mut report = String::new();
    for (dest, expect_if) in [
        (MGMT_HOSTS[0], DEVICE_IF),
        (MGMT_HOSTS[1], DEVICE_IF),
        (APP_HOST, user_if.as_str()),
    ] {
        let route = ns_exec("cl", &["ip", "route", "get", &dest.to_string()]).unwrap_or_default();
        let dev = route
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("?")
            .to_owned();
        let good = dev == expect_if;
        ok &= good;
        let _ = write!(report, "  {dest:<12} -> {dev:<10}");
        let ping = ns_exec(
            "cl",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", &dest.to_string()],
        );
        match ping {
            Ok(out) => {
                let rtt = out
                    .lines()
                    .find(|l| l.contains("min/avg/max"))
                    .and_then(|l| l.split('=').nth(1))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                let _ = writeln!(report, " ping ok (min/avg/max/mdev {rtt})");
            }
            Err(_) => {
                ok = false;
                let _ = writeln!(report, " ping FAILED");
            }
        }
        if !good {
            let _ = writeln!(report, "    expected via {expect_if}");
        }
    }
    print!("{report}");

    println!();
    println!("== split DNS (the user profile's DomainNameInformation, through the agent's stub)");
    let stub = agent::split_dns::STUB_ADDRESS.to_string();
    for (name, expect) in [
        (format!("app.{CORP_DOMAIN}"), APP_HOST),
        (format!("mgmt.{CORP_DOMAIN}"), MGMT_HOSTS[0]),
    ] {
        let answer = ns_exec(
            "cl",
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{stub}"),
                &name,
            ],
        )
        .unwrap_or_default();
        let answer = answer.trim();
        let good = answer == expect.to_string();
        ok &= good;
        println!(
            "  {name:<26} -> {:<12} {}",
            if answer.is_empty() { "-" } else { answer },
            if good {
                format!("(from {CORP_DNS} through the tunnel)")
            } else {
                format!("expected {expect}")
            }
        );
    }

    println!();
    println!("== the device by name (RegisterDNS), reached from the vnet host (manage out)");
    let name = format!("{DEVICE_HOST}.{CORP_DOMAIN}");
    let answer = ns_exec(
        "vn",
        &[
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            &format!("@{CORP_DNS}"),
            &name,
        ],
    )
    .unwrap_or_default();
    let answer = answer.trim();
    let registered = device_vip.is_some_and(|v| v.to_string() == answer);
    ok &= registered;
    let agent_says = registration
        .map(|r| {
            format!(
                "{}{}",
                r.state,
                r.detail.map(|d| format!(": {d}")).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "  {name:<26} -> {:<12} (in BIND at {CORP_DNS}; the agent: {agent_says})",
        if answer.is_empty() { "-" } else { answer }
    );
    if let (true, Ok(target)) = (registered, answer.parse::<Ipv4Addr>()) {
        match manage_out(target) {
            Ok((peer, took)) => println!(
                "  tcp {peer} -> {name}: connected through the device tunnel, answered in {} ms",
                took.as_millis()
            ),
            Err(e) => {
                ok = false;
                println!("  tcp from the vnet host to {name}: FAILED: {e:#}");
            }
        }
    }

    if let Some(secs) = iperf_secs.filter(|s| *s > 0) {
        println!();
        println!("== throughput (iperf3 TCP, {secs} s, client -> vnet host)");
        for (label, dest) in [("device", MGMT_HOSTS[0]), ("user", APP_HOST)] {
            match iperf(dest, secs) {
                Ok(mbit) => println!("  {label:<6} tunnel to {dest:<12} {mbit:>8.0} Mbit/s"),
                Err(e) => {
                    ok = false;
                    println!("  {label:<6} tunnel to {dest:<12} FAILED: {e:#}");
                }
            }
        }
    }
    Ok(ok)
}

/// A TCP connection from the vnet host to a listener on the device's tunnel address `vip`:
/// who connected, and how long the exchange took.
fn manage_out(vip: Ipv4Addr) -> Result<(std::net::SocketAddr, Duration)> {
    use std::io::{Read, Write};
    let client = Netns::attach(ns_name("cl"))?;
    let vnet = Netns::attach(ns_name("vn"))?;
    let listener = client.try_run(|| std::net::TcpListener::bind((vip, 0)));
    client.persist();
    let listener = listener??;
    let port = listener.local_addr()?.port();
    let server = thread::spawn(move || -> std::io::Result<std::net::SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello)?;
        conn.write_all(b"device")?;
        Ok(peer)
    });
    let started = Instant::now();
    let reply = vnet.try_run(|| -> std::io::Result<String> {
        let target = std::net::SocketAddr::from((vip, port));
        let mut c = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        c.write_all(b"hello")?;
        let mut reply = String::new();
        c.read_to_string(&mut reply)?;
        Ok(reply)
    });
    vnet.persist();
    let reply = reply??;
    let took = started.elapsed();
    if reply != "device" {
        bail!("unexpected answer {reply:?}");
    }
    let peer = server
        .join()
        .map_err(|_| anyhow::anyhow!("the listener panicked"))??;
    Ok((peer, took))
}

/// One iperf3 run from the client namespace to `dest` in the vnet namespace.
fn iperf(dest: Ipv4Addr, secs: u32) -> Result<f64> {
    let vn = Netns::attach(ns_name("vn"))?;
    let mut server = vn
        .command(["iperf3", "-s", "-1", "-B", &dest.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    vn.persist();
    thread::sleep(Duration::from_millis(300));
    let result = ns_exec(
        "cl",
        &[
            "iperf3",
            "-c",
            &dest.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&result?)?;
    json.pointer("/end/sum_received/bits_per_second")
        .and_then(|v| v.as_f64())
        .map(|bps| bps / 1e6)
        .ok_or_else(|| anyhow!("iperf3 reported no result"))
}
