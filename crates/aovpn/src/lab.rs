//! `aovpn lab up | status | down`: the whole product on one machine, in network namespaces.
//!
//! ```text
//! [aolab-cl] 198.51.100.2 -- [aolab-in, NAT] -- 203.0.113.1 [aolab-gw] 10.1.0.1 -- [aolab-vn]
//!  device tunnel (machine cert): 10.1.0.10/32, 10.1.0.11/32       management hosts 10.1.0.10, .11
//!  user tunnel   (user cert):    10.1.0.0/16                      application host 10.1.0.20
//! ```
//!
//! `up` builds the namespaces, issues a PKI with `aovpn pki`, starts `aovpn gateway` in the
//! gateway namespace and two `aovpn connect` processes (one per tunnel, each on its own TUN
//! interface, each driven by a VPNv2 ProfileXML profile) in the client namespace, then shows who
//! is connected, addresses, routes, which tunnel carries which destination, and a ping and a
//! throughput figure through each tunnel. `down` stops exactly the processes it started (by
//! pid) and removes everything it made. Both are safe to repeat.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use testkit::netns::{Netns, Topology, lab as addr};

const PREFIX: &str = "aolab";
const STATE_DIR: &str = "/run/aovpn-lab";
const GATEWAY_NAME: &str = "vpn.aolab.example";
const MACHINE_NAME: &str = "client1.corp.aolab.example";
const USER_NAME: &str = "alice@corp.aolab.example";
const MGMT_HOSTS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 11)];
const APP_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);
const DEVICE_IF: &str = "aovpn-dev";
const USER_IF: &str = "aovpn-usr";

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
    /// Stop the lab's processes and remove its namespaces and files.
    Down,
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
        LabCommand::Down => down().map(|_| 0),
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
    for host in [MGMT_HOSTS[1], APP_HOST] {
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
    fs::write(
        &gw_conf,
        format!(
            r#"# aovpn lab gateway
state_dir = "{state}/gateway"
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
"#,
            state = dir.display(),
            pool = addr::CLIENT_POOL,
            vnet = addr::VNET_TS,
        ),
    )?;
    spawn_daemon(
        "gw",
        "gateway",
        &[
            "gateway",
            "--config",
            &gw_conf.display().to_string(),
            "--status-file",
            &dir.join("gateway.status.json").display().to_string(),
        ],
    )?;
    wait_for_status(
        &dir.join("gateway.status.json"),
        "running",
        Duration::from_secs(15),
    )
    .context("the gateway did not start; see /run/aovpn-lab/gateway.log")?;

    println!(
        "== connecting the device tunnel and the user tunnel in {}",
        ns_name("cl")
    );
    let device_xml = dir.join("device-tunnel.xml");
    fs::write(&device_xml, device_profile())?;
    let user_xml = dir.join("user-tunnel.xml");
    fs::write(&user_xml, user_profile())?;
    for file in [&device_xml, &user_xml] {
        aovpn(&["profile", "validate", &file.display().to_string()])?;
    }
    let tunnels = [
        (
            "device",
            &device_xml,
            cert("machine", MACHINE_NAME),
            DEVICE_IF,
        ),
        ("user", &user_xml, cert("user", USER_NAME), USER_IF),
    ];
    for (which, xml, (crt, key), ifname) in &tunnels {
        spawn_daemon(
            "cl",
            which,
            &[
                "connect",
                "--profile-file",
                &xml.display().to_string(),
                "--cert",
                crt,
                "--key",
                key,
                "--ca",
                &ca_crt,
                "--interface",
                ifname,
                // The lab's processes share the host's /etc: keep DNS changes in the lab.
                "--resolv-conf",
                &dir.join(format!("{which}.resolv.conf"))
                    .display()
                    .to_string(),
                "--status-file",
                &dir.join(format!("{which}.status.json"))
                    .display()
                    .to_string(),
            ],
        )?;
    }
    for (which, ..) in &tunnels {
        wait_for_status(
            &dir.join(format!("{which}.status.json")),
            "connected",
            Duration::from_secs(20),
        )
        .with_context(|| {
            format!("the {which} tunnel did not connect; see {STATE_DIR}/{which}.log")
        })?;
    }
    let ok = status(Some(iperf_secs))?;
    println!();
    println!("lab is up. `aovpn lab status` shows it again, `aovpn lab down` removes it.");
    Ok(if ok { 0 } else { 1 })
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
    use std::os::unix::process::CommandExt;
    let dir = state();
    let log = fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &ns_name(ns_role)])
        .arg(self_exe()?)
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
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "aovpn").then_some(pid)
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
    for name in ["device", "user", "gateway"] {
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
    for name in ["gateway", "device", "user"] {
        match live_pid(name) {
            Some(pid) => println!("  {name:<8} pid {pid}"),
            None => {
                ok = false;
                println!("  {name:<8} NOT RUNNING (log: {STATE_DIR}/{name}.log)")
            }
        }
    }

    println!();
    println!("== gateway {GATEWAY_NAME}: connected clients");
    let gw = read_status(&dir.join("gateway.status.json"));
    let clients = gw
        .as_ref()
        .and_then(|v| v.get("clients"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    if clients.is_empty() {
        ok = false;
        println!("  (none)");
    }
    for c in &clients {
        let f = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        println!(
            "  {:<34} vip {:<15} from {:<21} {}",
            f("identity"),
            f("virtual_ip"),
            f("remote"),
            f("esp")
        );
    }

    println!();
    println!("== client tunnels");
    for (which, ifname) in [("device", DEVICE_IF), ("user", USER_IF)] {
        let st = read_status(&dir.join(format!("{which}.status.json")));
        let f = |k: &str| {
            st.as_ref()
                .and_then(|v| v.get(k))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "  {which:<6} tunnel  {ifname:<10} state {:<10} vip {:<15} ike {}",
            f("state"),
            f("virtual_ip"),
            f("ike")
        );
        println!("                               routes {}", f("routes"));
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
        (APP_HOST, USER_IF),
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
