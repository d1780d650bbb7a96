//! The always-on agent (`aovpn agent`) end to end, in the routed lab with NAT:
//!
//! ```text
//! [client: agent, helpers] 198.51.100.2 -- [internet, masquerade] -- 203.0.113.1 [gateway]
//!                                                        10.1.0.1 -- 10.1.0.10/.11/.20 [vnet]
//! ```
//!
//! The device tunnel comes from the agent's system store with nobody logged in; a user's
//! tunnel comes with that user's key helper (the agent runs with `sessions = "helpers"`: the
//! namespaces have no logind). Every test builds its own namespaces and stops what it started
//! by pid. Figures each test measures are printed (`cargo test -- --nocapture` shows them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::aovpn::{
    AgentOpts, AgentProcess, GatewayOpts, GatewayProcess, PkiOptions, UserHelperProcess,
};
use testkit::netns::{Netns, lab};

const GATEWAY_NAME: &str = "vpn.agent.example";
const DEVICE: &str = "DeviceTunnel";
const USER: &str = "CorpUser";
const ALICE: u32 = 61001;
const BOB: u32 = 61002;
const MGMT_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const APP_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);

mod common;

use common::{Lab, bin, report};

impl Lab {
    fn new(prefix: &str) -> Lab {
        let lab = Lab::routed(prefix, PkiOptions::new(GATEWAY_NAME), true, GATEWAY_NAME);
        lab.topo
            .vnet
            .ip([
                "addr",
                "add",
                &format!("{APP_HOST}/24"),
                "dev",
                lab::VNET_IF,
            ])
            .unwrap();
        lab
    }

    fn gateway_opts(&self) -> GatewayOpts {
        let mut opts = GatewayOpts::new(&self.pki, self.topo.gateway_wan().into());
        opts.state_dir = Some(self.dir("gw-state"));
        // Liveness checks of quiet clients every few seconds keep the tests short.
        opts.dpd_interval_secs = Some(5);
        opts
    }

    fn start_gateway(&self, opts: &GatewayOpts) -> GatewayProcess {
        GatewayProcess::start(bin(), &self.topo.gateway, &self.dir("gw"), opts).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The agent with the device tunnel profile and the machine certificate.
    fn agent_opts(&self) -> AgentOpts {
        let mut opts = AgentOpts::new(&self.pki.ca_cert);
        opts.profiles = vec![(
            DEVICE.into(),
            self.write("device.xml", &device_profile_xml()),
        )];
        opts.machine = Some((self.pki.machine_cert.clone(), self.pki.machine_key.clone()));
        opts.backoff_cap_secs = Some(8);
        opts
    }

    fn start_agent(&self, opts: &AgentOpts) -> AgentProcess {
        AgentProcess::start(bin(), &self.topo.client, &self.dir("agent"), opts).unwrap()
    }

    /// Alice's key helper with her user tunnel profile.
    fn start_alice(&self, agent: &AgentProcess) -> UserHelperProcess {
        let profile = self.write("user.xml", &user_profile_xml());
        self.start_alice_with(agent, &[(USER, &profile)])
    }

    /// Alice's key helper with these user profiles.
    fn start_alice_with(
        &self,
        agent: &AgentProcess,
        profiles: &[(&str, &Path)],
    ) -> UserHelperProcess {
        UserHelperProcess::start(
            bin(),
            &self.topo.client,
            ALICE,
            &self.dir("home-alice"),
            (&self.pki.user_cert, &self.pki.user_key),
            profiles,
            &agent.socket(),
        )
        .unwrap()
    }
}

/// The seed document's device tunnel with the lab's gateway and a management host.
fn device_profile_xml() -> String {
    format!(
        "<VPNProfile><NativeProfile><Servers>{GATEWAY_NAME}</Servers>\
         <NativeProtocolType>IKEv2</NativeProtocolType>\
         <Authentication><MachineMethod>Certificate</MachineMethod></Authentication>\
         <RoutingPolicyType>SplitTunnel</RoutingPolicyType>\
         <DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute></NativeProfile>\
         <Route><Address>{MGMT_HOST}</Address><PrefixSize>32</PrefixSize></Route>\
         <AlwaysOn>true</AlwaysOn><DeviceTunnel>true</DeviceTunnel><RegisterDNS>true</RegisterDNS>\
         </VPNProfile>"
    )
}

/// An AlwaysOn user tunnel (EAP-TLS profile, as Windows user tunnels are) to the app host.
fn user_profile_xml() -> String {
    format!(
        r#"<VPNProfile><AlwaysOn>true</AlwaysOn><DnsSuffix>corp.agent.example</DnsSuffix>
<TrustedNetworkDetection>corp.agent.example</TrustedNetworkDetection><NativeProfile>
<Servers>{GATEWAY_NAME}</Servers><NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication><UserMethod>Eap</UserMethod><Eap><Configuration>
<EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
<EapMethod><Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type>
<VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId>
<VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType>
<AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId></EapMethod>
<Config xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
<Eap xmlns="http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1"><Type>13</Type>
<EapType xmlns="http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1">
<CredentialsSource><CertificateStore><SimpleCertSelection>true</SimpleCertSelection></CertificateStore></CredentialsSource>
<ServerValidation><DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation><ServerNames></ServerNames></ServerValidation>
<DifferentUsername>false</DifferentUsername></EapType></Eap></Config></EapHostConfig>
</Configuration></Eap></Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType>
<DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute></NativeProfile>
<Route><Address>{APP_HOST}</Address><PrefixSize>32</PrefixSize></Route></VPNProfile>"#
    )
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `aovpn status --json` (as root) of one profile.
fn status(agent: &AgentProcess, name: &str) -> Value {
    let v = json(&agent.control(&["status", name, "--json"]).unwrap());
    v[0].clone()
}

/// `aovpn doctor DeviceTunnel` as root in the client namespace, with the agent's store and
/// socket.
fn doctor_device(lab: &Lab, agent: &AgentProcess) -> std::process::Output {
    std::process::Command::new("ip")
        .args(["netns", "exec", lab.topo.client.name()])
        .arg(bin())
        .args(["doctor", DEVICE, "--system-dir"])
        .arg(agent.config_dir())
        .arg("--socket")
        .arg(agent.socket())
        .output()
        .unwrap()
}

fn state_of(agent: &AgentProcess, name: &str) -> String {
    let v = json(&agent.control(&["list", "--json"]).unwrap());
    v.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"]["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn wait_until(timeout: Duration, mut what: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if what() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_connected(agent: &AgentProcess, name: &str, timeout: Duration) -> Duration {
    wait_until(timeout, || state_of(agent, name) == "connected").unwrap_or_else(|| {
        panic!(
            "{name} not connected after {timeout:?}:\n{}\n--- agent log\n{}",
            String::from_utf8_lossy(&agent.control(&["status"]).unwrap().stdout),
            agent.log()
        )
    })
}

fn ping_once(ns: &Netns, dest: impl std::fmt::Display) -> bool {
    ns.exec(["ping", "-c", "1", "-W", "1", &dest.to_string()])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ping(ns: &Netns, dest: impl std::fmt::Display) {
    let out = ns
        .exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", &dest.to_string()])
        .unwrap();
    assert!(
        out.status.success(),
        "ping {dest} from {} failed:\n{}",
        ns.name(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn virtual_ip(agent: &AgentProcess, name: &str) -> String {
    status(agent, name)["tunnel"]["virtual_ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn interface(agent: &AgentProcess, name: &str) -> String {
    status(agent, name)["tunnel"]["interface"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn route_dev(ns: &Netns, dest: impl std::fmt::Display) -> String {
    let out = ns.ip(["route", "get", &dest.to_string()]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("?")
        .to_owned()
}

/// The device tunnel comes up from the agent's system store with nobody logged in, and the
/// host behind the gateway reaches the device through it (manage out).
#[test]
fn the_device_tunnel_comes_up_without_a_login_and_carries_manage_out() {
    let lab = Lab::new("agdev");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    let took = wait_connected(&agent, DEVICE, Duration::from_secs(30));
    report(&format!(
        "device tunnel up {} ms after the agent's socket opened",
        took.as_millis()
    ));
    let vip = virtual_ip(&agent, DEVICE);
    assert!(vip.starts_with("172.16.201."), "{vip}");
    assert_eq!(route_dev(&lab.topo.client, MGMT_HOST), "aovpn-dev");
    // Least privilege: the agent holds CAP_NET_ADMIN (bit 12) and nothing else, for good.
    let proc_status =
        std::fs::read_to_string(format!("/proc/{}/status", agent.pid().unwrap())).unwrap();
    for (key, want) in [
        ("CapEff", "0000000000001000"),
        ("CapBnd", "0000000000001000"),
    ] {
        assert!(
            proc_status.contains(&format!("{key}:\t{want}")),
            "{key} not {want}:\n{proc_status}"
        );
    }
    assert!(proc_status.contains("NoNewPrivs:\t1"), "{proc_status}");
    // Manage out: the vnet host reaches the device's tunnel address.
    ping(&lab.topo.vnet, &vip);
    ping(&lab.topo.client, MGMT_HOST);
    let clients = gw.status_text();
    assert!(clients.contains("client1.corp.example"), "{clients}");
    // The status names what the issue asks for.
    let s = status(&agent, DEVICE);
    let t = &s["tunnel"];
    assert_eq!(t["interface"], "aovpn-dev");
    assert!(t["ike"].as_str().unwrap().contains("aes"), "{t}");
    assert!(t["esp"].as_str().unwrap().contains("AES"), "{t}");
    assert!(t["traffic"]["packets_in"].as_u64().unwrap() >= 3, "{t}");
    assert_eq!(t["mobike"], true, "{t}");
    // The human form too.
    let text =
        String::from_utf8_lossy(&agent.control(&["status", DEVICE]).unwrap().stdout).into_owned();
    for needle in [
        "device tunnel",
        "interface",
        "aovpn-dev",
        "routes",
        "traffic",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // `aovpn doctor NAME` on the machine: the profile from the system store, the machine
    // certificate, the gateway by a real handshake, and the agent's view, all good.
    let ike_since = status(&agent, DEVICE)["tunnel"]["ike_since"].clone();
    let out = doctor_device(&lab, &agent);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in ["profile", "certificate", "key", "chain", "ike", "agent"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(check)),
            "{check} not ok:\n{report}"
        );
    }
    assert!(report.contains("connected to"), "{report}");
    // The probe's handshake left the tunnel alone (no INITIAL_CONTACT from it).
    assert_eq!(status(&agent, DEVICE)["tunnel"]["ike_since"], ike_since);
    ping(&lab.topo.vnet, &vip);
}

/// The MTU of `dev` in `ns`.
fn link_mtu(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(["link", "show", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU in {text}"))
}

/// The tunnel's MTU is what the path to the gateway carries (a full-size inner packet's ESP
/// packet fits the link unfragmented), and follows the link when its MTU changes, without a
/// reconnect.
#[test]
fn the_tunnel_mtu_follows_the_path_to_the_gateway() {
    let lab = Lab::new("agmtu");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let client = &lab.topo.client;
    client
        .ip(["link", "set", lab::CLIENT_IF, "mtu", "1400"])
        .unwrap();
    let agent = lab.start_agent(&lab.agent_opts());
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    // 1400 - 60 (IPv4, UDP, ESP header, GCM IV and ICV) = 1340, aligned to 4, less the
    // 2-byte trailer.
    assert_eq!(link_mtu(client, "aovpn-dev"), 1338);
    // A full-size packet crosses, DF set: its ESP packet fits the 1400-byte link.
    let mgmt = MGMT_HOST.to_string();
    let full = client
        .exec([
            "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "1310", &mgmt,
        ])
        .unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stdout)
    );
    let since = status(&agent, DEVICE)["tunnel"]["ike_since"].clone();

    // The link widens: back to the configured 1400; it narrows: 1450 - 60 = 1390, aligned
    // to 1388, less 2.
    for (link, tunnel) in [("1500", 1400), ("1450", 1386)] {
        client
            .ip(["link", "set", lab::CLIENT_IF, "mtu", link])
            .unwrap();
        let followed = wait_until(Duration::from_secs(15), || {
            link_mtu(client, "aovpn-dev") == tunnel
        });
        assert!(
            followed.is_some(),
            "link {link}: tunnel MTU {} not {tunnel}\n{}",
            link_mtu(client, "aovpn-dev"),
            agent.log()
        );
        // A full-size packet at the new MTU crosses (the data plane's buffers hold it).
        let size = (tunnel - 28).to_string();
        let full = client
            .exec(["ping", "-c", "1", "-W", "3", "-M", "do", "-s", &size, &mgmt])
            .unwrap();
        assert!(
            full.status.success(),
            "link {link}: {}",
            String::from_utf8_lossy(&full.stdout)
        );
    }
    assert_eq!(status(&agent, DEVICE)["tunnel"]["ike_since"], since);
    ping(client, MGMT_HOST);
}

/// Both tunnels up: the device tunnel, then Alice's helper (her login) and her user tunnel.
fn both_tunnels(lab: &Lab, agent: &AgentProcess) -> UserHelperProcess {
    wait_connected(agent, DEVICE, Duration::from_secs(30));
    let alice = lab.start_alice(agent);
    wait_connected(agent, USER, Duration::from_secs(30));
    alice
}

/// A user session starts (her key helper, the fallback without logind): her user tunnel comes
/// up beside the device tunnel on its own interface; the session ends: the user tunnel goes,
/// the device tunnel is untouched.
#[test]
fn a_user_tunnel_follows_the_session_and_leaves_the_device_tunnel_alone() {
    let lab = Lab::new("agusr");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    assert_eq!(
        state_of(&agent, USER),
        "",
        "no user profile before the login"
    );
    let device_since = status(&agent, DEVICE)["tunnel"]["ike_since"].clone();

    let started = Instant::now();
    let mut alice = lab.start_alice(&agent);
    wait_connected(&agent, USER, Duration::from_secs(30));
    report(&format!(
        "user tunnel up {} ms after the helper started",
        started.elapsed().as_millis()
    ));
    let user_if = interface(&agent, USER);
    assert!(user_if.starts_with("aovpn-u"), "{user_if}");
    assert_eq!(route_dev(&lab.topo.client, APP_HOST), user_if);
    assert_eq!(route_dev(&lab.topo.client, MGMT_HOST), "aovpn-dev");
    ping(&lab.topo.client, APP_HOST);
    ping(&lab.topo.client, MGMT_HOST);
    let user_vip = virtual_ip(&agent, USER);
    assert_ne!(user_vip, virtual_ip(&agent, DEVICE));
    // Her key signed the authentication, not a copy held by root: inside EAP-TLS, as the
    // profile's UserMethod Eap says (TLS 1.3 with our gateway), where the device tunnel uses
    // an IKE certificate signature.
    assert!(
        alice.log().contains("signed for the agent"),
        "{}",
        alice.log()
    );
    let eap = status(&agent, USER)["tunnel"]["eap_tls"].clone();
    assert!(
        eap.as_str().is_some_and(|e| e.starts_with("TLS 1.3")),
        "{eap}"
    );
    assert_eq!(status(&agent, DEVICE)["tunnel"]["eap_tls"], Value::Null);
    // `aovpn doctor` as alice, by her profile's name: her store, her certificate and key, an
    // EAP-TLS handshake with the gateway, the agent's view of her tunnel; JSON for machines.
    let home = lab.dir("home-alice");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", lab.topo.client.name(), "setpriv"])
        .arg(format!("--reuid={ALICE}"))
        .arg(format!("--regid={ALICE}"))
        .arg("--clear-groups")
        .arg("env")
        .arg(format!("XDG_CONFIG_HOME={}", home.display()))
        .arg(format!("HOME={}", home.display()))
        .arg(bin())
        .args(["doctor", USER, "--json", "--system-dir"])
        .arg(agent.config_dir())
        .arg("--socket")
        .arg(agent.socket())
        .output()
        .unwrap();
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let find = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"].as_str().is_some_and(|n| n.starts_with(name)))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for name in ["certificate", "key", "ike", "agent"] {
        assert_eq!(find(name)["verdict"], "ok", "{name}: {checks:#}");
    }
    assert!(
        find("ike")["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("EAP-TLS"),
        "{checks:#}"
    );
    assert!(out.status.success(), "{checks:#}");
    // Both tunnels' DNS sit side by side in the one resolv.conf.
    let resolv = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    assert!(resolv.contains("corp.agent.example"), "{resolv}");

    // Logout.
    alice.stop().unwrap();
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, USER) == "waiting_for_user"
    })
    .unwrap_or_else(|| panic!("user tunnel still up:\n{}", agent.log()));
    assert!(
        lab.topo.client.ip(["link", "show", &user_if]).is_err(),
        "the user tunnel's interface is still there"
    );
    assert!(!ping_once(&lab.topo.client, APP_HOST));
    // The device tunnel was never touched: same IKE SA, still carrying traffic.
    assert_eq!(status(&agent, DEVICE)["tunnel"]["ike_since"], device_since);
    ping(&lab.topo.client, MGMT_HOST);
    let resolv = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    assert!(!resolv.contains("corp.agent.example"), "{resolv}");
}

/// Runs `ping -c1` until it answers; how long that took.
fn time_to_ping(ns: &Netns, dest: Ipv4Addr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ping_once(ns, dest) {
            return Some(start.elapsed());
        }
    }
    None
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// The client's outer link goes down for 5 s and comes back (and its DHCP-style default route
/// with it), 20 times: both tunnels are back each time without any command. Reports the time
/// from link up to a ping through each tunnel, median and max.
#[test]
fn both_tunnels_come_back_after_the_link_goes_down_and_up() {
    let tries: usize = std::env::var("AOVPN_LINK_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let lab = Lab::new("aglink");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    let _alice = both_tunnels(&lab, &agent);
    let client = &lab.topo.client;
    let ike_since = |name: &str| status(&agent, name)["tunnel"]["ike_since"].clone();
    let (device_sa, user_sa) = (ike_since(DEVICE), ike_since(USER));
    let (mut device, mut user) = (Vec::new(), Vec::new());
    for i in 0..tries {
        client.ip(["link", "set", lab::CLIENT_IF, "down"]).unwrap();
        std::thread::sleep(Duration::from_secs(5));
        client.ip(["link", "set", lab::CLIENT_IF, "up"]).unwrap();
        // What a DHCP client or NetworkManager does when the link is back.
        client
            .ip([
                "route",
                "replace",
                "default",
                "via",
                &lab::CLIENT_LINK_PEER.to_string(),
            ])
            .unwrap();
        let up = Instant::now();
        let d = time_to_ping(client, MGMT_HOST, Duration::from_secs(60));
        let d_at = up.elapsed();
        let u = time_to_ping(client, APP_HOST, Duration::from_secs(60));
        let u_at = up.elapsed();
        if d.is_none() || u.is_none() {
            panic!(
                "try {i}: tunnels not back (device {d:?}, user {u:?}):\n{}\n{}",
                String::from_utf8_lossy(&agent.control(&["status"]).unwrap().stdout),
                agent.log()
            );
        }
        device.push(d_at);
        user.push(u_at);
    }
    // The tunnels waited for the network instead of being torn down (NetworkOutageTime, MOBIKE
    // once the path was back): the same IKE SAs as before.
    assert_eq!(ike_since(DEVICE), device_sa, "{}", agent.log());
    assert_eq!(ike_since(USER), user_sa, "{}", agent.log());
    assert!(
        agent.log().contains("no path to the gateway"),
        "{}",
        agent.log()
    );
    assert_eq!(state_of(&agent, DEVICE), "connected");
    assert_eq!(state_of(&agent, USER), "connected");
    let (dm, dx) = median_max(device);
    let (um, ux) = median_max(user);
    report(&format!(
        "link down 5 s and up, {tries} tries: ping through the device tunnel after {} ms median / {} ms max, \
         through the user tunnel after {} ms median / {} ms max",
        dm.as_millis(),
        dx.as_millis(),
        um.as_millis(),
        ux.as_millis()
    ));
}

/// A paced, checksummed TCP stream from the client to `dest`; returns (bytes, hash) as the
/// receiver saw them and the hash of what was sent.
fn paced_transfer(
    client: &Netns,
    vnet: &Netns,
    dest: SocketAddr,
    bytes: usize,
    during: impl FnOnce(),
) -> (usize, u64, u64) {
    fn fnv(hash: &mut u64, data: &[u8]) {
        for b in data {
            *hash = (*hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || {
            vnet.run(move || {
                let listener = TcpListener::bind(dest).unwrap();
                ready_tx.send(()).unwrap();
                let (mut sock, _) = listener.accept().unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut hash = 0xcbf2_9ce4_8422_2325u64;
                let mut total = 0;
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = sock.read(&mut buf).unwrap();
                    if n == 0 {
                        return (total, hash);
                    }
                    fnv(&mut hash, &buf[..n]);
                    total += n;
                }
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let sender = scope.spawn(move || {
            client.run(move || {
                let mut sock = TcpStream::connect_timeout(&dest, Duration::from_secs(10)).unwrap();
                let mut hash = 0xcbf2_9ce4_8422_2325u64;
                let mut chunk = vec![0u8; 32 * 1024];
                let mut sent = 0;
                let mut x = 0x1234_5678u32;
                while sent < bytes {
                    for b in chunk.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        *b = x as u8;
                    }
                    fnv(&mut hash, &chunk);
                    sock.write_all(&chunk).unwrap();
                    sent += chunk.len();
                    // About 2 MB/s: the transfer spans the address change.
                    std::thread::sleep(Duration::from_millis(15));
                }
                sock.shutdown(std::net::Shutdown::Write).unwrap();
                hash
            })
        });
        during();
        let sent_hash = sender.join().unwrap();
        let (received, received_hash) = receiver.join().unwrap();
        (received, received_hash, sent_hash)
    })
}

fn tcp_retransmissions(ns: &Netns) -> u64 {
    let out = ns.exec(["cat", "/proc/net/snmp"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tcp: Vec<&str> = text.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RetransSegs").unwrap();
    values[i].parse().unwrap()
}

/// The client's outer address changes (a new address, the old one removed) under an open TCP
/// transfer through the device tunnel: with MOBIKE the tunnel moves, the transfer goes on and
/// arrives whole. Reports the TCP segments retransmitted across the change.
#[test]
fn an_open_tcp_connection_survives_a_change_of_the_clients_address() {
    let lab = Lab::new("agmob");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let client = &lab.topo.client;
    client
        .sysctl("net.ipv4.conf.all.promote_secondaries", "1")
        .unwrap();
    client
        .sysctl(
            &format!("net.ipv4.conf.{}.promote_secondaries", lab::CLIENT_IF),
            "1",
        )
        .unwrap();
    let ike_since = status(&agent, DEVICE)["tunnel"]["ike_since"].clone();
    let retrans_before = tcp_retransmissions(client);
    let dest = SocketAddr::from((MGMT_HOST, 5001));
    let (received, received_hash, sent_hash) =
        paced_transfer(client, &lab.topo.vnet, dest, 12 << 20, || {
            std::thread::sleep(Duration::from_secs(2));
            client
                .ip(["addr", "add", "198.51.100.3/24", "dev", lab::CLIENT_IF])
                .unwrap();
            client
                .ip(["addr", "del", "198.51.100.2/24", "dev", lab::CLIENT_IF])
                .unwrap();
        });
    let retransmitted = tcp_retransmissions(client) - retrans_before;
    assert_eq!(received, 12 << 20, "{}", agent.log());
    assert_eq!(received_hash, sent_hash, "the data arrived changed");
    let t = status(&agent, DEVICE)["tunnel"].clone();
    assert!(
        t["local"]
            .as_str()
            .unwrap_or_default()
            .starts_with("198.51.100.3:"),
        "{t}"
    );
    // The same IKE SA carried on (moved, not re-established).
    assert_eq!(t["ike_since"], ike_since, "{t}");
    assert!(agent.log().contains("MOBIKE update"), "{}", agent.log());
    assert!(gw.log().contains("client moved"), "{}", gw.log());
    report(&format!(
        "MOBIKE address change under a 12 MB TCP transfer: arrived whole, {retransmitted} TCP segments retransmitted"
    ));
}

/// A steady ping through each tunnel, so that a dead gateway is noticed from one-way ESP.
fn background_pings(ns: &Netns, dests: &[Ipv4Addr], secs: u32) -> Vec<std::process::Child> {
    dests
        .iter()
        .map(|d| {
            ns.command([
                "ping",
                "-q",
                "-i",
                "0.5",
                "-W",
                "1",
                "-w",
                &secs.to_string(),
                &d.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect()
}

/// The gateway is killed (SIGKILL) and restarted: both tunnels come back without any command.
/// Reports the time from the restart to both tunnels carrying pings again.
#[test]
fn both_tunnels_come_back_after_the_gateway_is_killed_and_restarted() {
    let lab = Lab::new("aggwk");
    let opts = lab.gateway_opts();
    let mut gw = lab.start_gateway(&opts);
    let agent = lab.start_agent(&lab.agent_opts());
    let _alice = both_tunnels(&lab, &agent);
    let mut pings = background_pings(&lab.topo.client, &[MGMT_HOST, APP_HOST], 90);
    gw.kill().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let gw2 = lab.start_gateway(&opts);
    let back = wait_until(Duration::from_secs(60), || {
        state_of(&agent, DEVICE) == "connected"
            && state_of(&agent, USER) == "connected"
            && gw2.status_text().matches("\"identity\"").count() == 2
    });
    let took = back.unwrap_or_else(|| {
        panic!(
            "tunnels not back:\n{}\n{}\n{}",
            String::from_utf8_lossy(&agent.control(&["status"]).unwrap().stdout),
            agent.log(),
            gw2.log()
        )
    });
    let d = time_to_ping(&lab.topo.client, MGMT_HOST, Duration::from_secs(10)).unwrap();
    let u = time_to_ping(&lab.topo.client, APP_HOST, Duration::from_secs(10)).unwrap();
    for p in &mut pings {
        let _ = p.kill();
        let _ = p.wait();
    }
    report(&format!(
        "gateway SIGKILLed and restarted: both tunnels connected {} ms after the restart, pings through them {} ms later",
        took.as_millis(),
        (d + u).as_millis()
    ));
}

/// A revoked machine certificate: the agent keeps trying with backoff and says why; once the
/// revocation is lifted (gateway SIGHUP) the device tunnel comes up by itself.
#[test]
fn a_revoked_machine_certificate_is_retried_until_the_revocation_is_lifted() {
    let lab = Lab::new("agrev");
    let mut opts = lab.gateway_opts();
    opts.revoked = vec![lab.pki.thumbprint(&lab.pki.machine_cert).unwrap()];
    let gw = lab.start_gateway(&opts);
    let agent = lab.start_agent(&lab.agent_opts());
    // Several attempts, further and further apart, each refused.
    let attempts = || {
        agent
            .log()
            .matches("connecting profile=DeviceTunnel")
            .count()
    };
    wait_until(Duration::from_secs(40), || attempts() >= 5)
        .unwrap_or_else(|| panic!("no retries:\n{}", agent.log()));
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, DEVICE) == "waiting"
    })
    .unwrap();
    let s = status(&agent, DEVICE);
    let why = s["state"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("AUTHENTICATION_FAILED"), "{s}");
    // With what to do about it, in the words `aovpn doctor` uses.
    assert!(
        why.contains("what to do: the gateway does not accept our certificate"),
        "{s}"
    );
    let text =
        String::from_utf8_lossy(&agent.control(&["status", DEVICE]).unwrap().stdout).into_owned();
    assert!(text.contains("AUTHENTICATION_FAILED"), "{text}");
    // The history: the latest attempts, each refused, and the rounds that failed.
    let history = &s["history"];
    let attempts = history["attempts"].as_array().cloned().unwrap_or_default();
    assert!(attempts.len() >= 4, "{s}");
    assert!(
        attempts.iter().all(|a| a["error"]
            .as_str()
            .is_some_and(|e| e.contains("AUTHENTICATION_FAILED"))),
        "{s}"
    );
    // (A network change at start resets the rounds, so fewer than the attempts.)
    assert!(history["failed_rounds"].as_u64() >= Some(1), "{s}");
    assert!(
        text.contains("backoff") && text.contains("attempts"),
        "{text}"
    );
    // `aovpn doctor NAME` shows the same: the handshake refused, the agent backing off.
    let out = doctor_device(&lab, &agent);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    let line = |check: &str| {
        said.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("ike").contains("AUTHENTICATION_FAILED"), "{said}");
    let agent_line = line("agent");
    assert!(
        agent_line.starts_with("warning")
            && agent_line.contains("failed round(s) since the last success")
            && agent_line.contains("AUTHENTICATION_FAILED"),
        "{said}"
    );
    let times: Vec<String> = agent
        .log()
        .lines()
        .filter(|l| l.contains("connecting profile=DeviceTunnel"))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    report(&format!("attempts while revoked at {times:?}: {why}"));
    // Backing off: the waits between rounds grow (1 s, 2 s, 4 s ... with jitter). Not the
    // first wait on its own: a network change (the agent's own routes coming and going in
    // the namespace) retries at once and resets the backoff, as it should.
    let gaps = attempt_gaps(&times);
    let longest = gaps.iter().copied().fold(0.0, f64::max);
    assert!(
        gaps.len() >= 4 && gaps[gaps.len() - 1] > gaps[0] && longest >= 1.0,
        "no backoff: {gaps:?}"
    );

    opts.revoked.clear();
    std::fs::write(gw.config_path(), opts.render(gw.workdir())).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let lifted = Instant::now();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    report(&format!(
        "revocation lifted: device tunnel up {} ms later (backoff cap 8 s)",
        lifted.elapsed().as_millis()
    ));
    ping(&lab.topo.client, MGMT_HOST);
}

/// Seconds between consecutive RFC 3339 log timestamps of the same minute or hour.
fn attempt_gaps(times: &[String]) -> Vec<f64> {
    let secs = |t: &str| -> f64 {
        // 2026-12-03T10:25:52.569619Z
        let clock = t
            .split('T')
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches('Z');
        let mut parts = clock.split(':');
        let h: f64 = parts.next().unwrap_or("0").parse().unwrap_or(0.0);
        let m: f64 = parts.next().unwrap_or("0").parse().unwrap_or(0.0);
        let s: f64 = parts.next().unwrap_or("0").parse().unwrap_or(0.0);
        h * 3600.0 + m * 60.0 + s
    };
    times
        .windows(2)
        .map(|w| secs(&w[1]) - secs(&w[0]))
        .collect()
}

fn client_routes(ns: &Netns) -> Vec<String> {
    let out = ns.ip(["-4", "route", "show", "table", "all"]).unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("local ") && !l.starts_with("broadcast "))
        .map(|l| l.trim().to_owned())
        .collect();
    lines.sort();
    lines
}

fn client_links(ns: &Netns) -> Vec<String> {
    let out = ns.ip(["-o", "link", "show"]).unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        })
        .collect();
    names.sort();
    names
}

/// The agent is SIGKILLed with both tunnels up (one of them with a route outside the tunnel,
/// which outlives the agent) and restarted: it removes what it left, the tunnels come back,
/// and routes, interfaces and resolv.conf are exactly as before, nothing twice.
#[test]
fn a_killed_agent_cleans_up_after_itself_and_brings_the_tunnels_back() {
    let lab = Lab::new("agkil");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let mut opts = lab.agent_opts();
    // An exclusion route: installed on the physical interface, so it outlives the agent.
    let device = device_profile_xml().replace(
        "<AlwaysOn>",
        "<Route><Address>10.1.0.99</Address><PrefixSize>32</PrefixSize><ExclusionRoute>true</ExclusionRoute></Route><AlwaysOn>",
    );
    opts.profiles = vec![(DEVICE.into(), lab.write("device-excl.xml", &device))];
    let mut agent = lab.start_agent(&opts);
    let _alice = both_tunnels(&lab, &agent);
    let client = &lab.topo.client;
    let routes = client_routes(client);
    let links = client_links(client);
    let resolv = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    assert!(
        routes.iter().any(|r| r.starts_with("10.1.0.99 via")),
        "{routes:?}"
    );

    agent.kill().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        client_routes(client)
            .iter()
            .any(|r| r.starts_with("10.1.0.99 via")),
        "the exclusion route should outlive the killed agent"
    );
    agent.restart(client).unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    wait_connected(&agent, USER, Duration::from_secs(30));
    assert!(
        agent
            .log()
            .contains("removed what a previous agent left behind"),
        "{}",
        agent.log()
    );
    assert_eq!(client_routes(client), routes, "{}", agent.log());
    assert_eq!(client_links(client), links);
    assert_eq!(
        std::fs::read_to_string(agent.resolv_conf()).unwrap(),
        resolv
    );
    ping(client, MGMT_HOST);
    ping(client, APP_HOST);
}

/// The control socket checks who asks: a user sees their own tunnels and the device tunnel,
/// not another user's, cannot stop the device tunnel, and can disconnect their own AlwaysOn
/// tunnel, which then stays down until they connect it again.
#[test]
fn users_see_and_control_only_their_own_tunnels() {
    let lab = Lab::new("agacl");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    let _alice = both_tunnels(&lab, &agent);

    let names = |out: &std::process::Output| -> Vec<String> {
        json(out)
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Bob sees the device tunnel, not Alice's.
    let bob_list = agent.control_as(BOB, &["list", "--json"]).unwrap();
    assert_eq!(names(&bob_list), vec![DEVICE.to_owned()]);
    let out = agent
        .control_as(BOB, &["status", USER, "--user", &ALICE.to_string()])
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no profile named"));
    let out = agent
        .control_as(BOB, &["down", USER, "--user", &ALICE.to_string()])
        .unwrap();
    assert!(!out.status.success());
    // Nobody but an administrator stops the device tunnel.
    for uid in [ALICE, BOB] {
        let out = agent.control_as(uid, &["down", DEVICE]).unwrap();
        assert!(!out.status.success(), "uid {uid} stopped the device tunnel");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only root or the agent's admin group"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(state_of(&agent, DEVICE), "connected");
    // Alice sees both and controls hers.
    let alice_list = agent.control_as(ALICE, &["list", "--json"]).unwrap();
    assert_eq!(names(&alice_list), vec![DEVICE.to_owned(), USER.to_owned()]);
    let out = agent.control_as(ALICE, &["down", USER]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, USER) == "disconnected_by_user"
    })
    .unwrap();
    // It holds: a network change does not bring it back.
    lab.topo
        .client
        .ip([
            "route",
            "replace",
            "default",
            "via",
            &lab::CLIENT_LINK_PEER.to_string(),
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state_of(&agent, USER), "disconnected_by_user");
    let out = agent.control_as(ALICE, &["up", USER]).unwrap();
    assert!(out.status.success());
    wait_connected(&agent, USER, Duration::from_secs(30));
    // Root sees everything.
    let root_list = agent.control(&["list", "--json"]).unwrap();
    assert_eq!(names(&root_list), vec![DEVICE.to_owned(), USER.to_owned()]);
}

/// Profiles added and removed with `aovpn profile` take effect in the running agent.
#[test]
fn profile_changes_take_effect_without_a_restart() {
    let lab = Lab::new("agprf");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let mut opts = lab.agent_opts();
    opts.profiles.clear();
    let agent = lab.start_agent(&opts);
    assert!(
        json(&agent.control(&["list", "--json"]).unwrap())
            .as_array()
            .unwrap()
            .is_empty()
    );
    let out = agent
        .add_profile(DEVICE, &lab.write("device.xml", &device_profile_xml()))
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("running agent"));
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    agent.remove_profile(DEVICE).unwrap();
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, DEVICE).is_empty()
    })
    .unwrap();
    assert!(lab.topo.client.ip(["link", "show", "aovpn-dev"]).is_err());
}

/// `aovpn profile` as the AOVPN user runs it, with `--system-dir` and `--socket` of this agent.
fn aovpn_profile(agent: &AgentProcess, as_uid: Option<u32>, home: &Path, args: &[&str]) -> String {
    let mut cmd = match as_uid {
        Some(uid) => {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(bin());
            c
        }
        None => std::process::Command::new(bin()),
    };
    let out = cmd
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .arg("profile")
        .arg("--system-dir")
        .arg(agent.config_dir())
        .arg("--socket")
        .arg(agent.socket())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "aovpn profile {args:?}: {text}");
    text
}

/// Azure's "Download VPN client" zip, in the shape the research found: backslash names, the
/// Generic folder with VpnSettings.xml and VpnServerRoot.cer_0 (DER), installers and OpenVPN
/// files beside it (see crates/profile/tests/data/azure-vpnclient/).
fn azure_shaped_package(root_pem: &Path, routes: &str) -> Vec<u8> {
    let root = pki::load_certificate(&std::fs::read(root_pem).unwrap()).unwrap();
    let settings = format!(
        "<?xml version=\"1.0\"?>\r\n<VpnProfile xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\r\n  <VpnServer>{GATEWAY_NAME}</VpnServer>\r\n  <VpnType>IkeV2,OpenVPN</VpnType>\r\n  <Routes>{routes}</Routes>\r\n  <ServerCertRootCn>{0}</ServerCertRootCn>\r\n  <ServerCertIssuerCn>{0}</ServerCertIssuerCn>\r\n</VpnProfile>\r\n",
        root.subject()
    );
    profile::client_package::write_zip(&[
        ("Generic\\VpnSettings.xml".into(), settings.into_bytes()),
        (
            "Generic\\VpnServerRoot.cer_0".into(),
            root.der().as_ref().to_vec(),
        ),
        ("OpenVPN\\vpnconfig.ovpn".into(), b"client\n".to_vec()),
        (
            "WindowsAmd64\\VpnClientSetupAmd64.exe".into(),
            b"MZ".to_vec(),
        ),
    ])
    .unwrap()
}

/// Issue 10's client packages, both ways: the gateway writes its package, `aovpn profile
/// import` makes a device tunnel from it (installing the root and the machine certificate),
/// and a user imports a package shaped like Azure's for her user tunnel; both connect.
#[test]
fn client_packages_from_our_gateway_and_azures_shape_make_tunnels_that_connect() {
    let lab = Lab::new("agpkg");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let zip = lab.dir("package.zip");
    let out = std::process::Command::new(bin())
        .args(["gateway", "client-package", "--config"])
        .arg(gw.config_path())
        .arg("--out")
        .arg(&zip)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in [
        "Generic/VpnSettings.xml",
        "Generic/VpnServerRoot.cer",
        "aovpn/DeviceTunnel.xml",
        "aovpn/DeviceTunnel.escaped.txt",
        "aovpn/UserTunnel.syncml.xml",
        "aovpn/README.txt",
    ] {
        assert!(printed.contains(entry), "{entry} missing:\n{printed}");
    }
    let package =
        profile::client_package::ClientPackage::read(&std::fs::read(&zip).unwrap()).unwrap();
    assert_eq!(package.settings.vpn_server, GATEWAY_NAME);
    assert!(
        package
            .settings
            .routes
            .iter()
            .any(|r| r.to_string() == "10.1.0.0/16"),
        "{:?}",
        package.settings.routes
    );
    let ca = pki::load_certificate(&std::fs::read(&lab.pki.ca_cert).unwrap()).unwrap();
    assert_eq!(package.roots, [ca.der().as_ref().to_vec()]);

    // A machine with the agent and nothing else: no profile, no machine certificate, no root.
    let mut opts = AgentOpts::new(&lab.pki.ca_cert);
    opts.backoff_cap_secs = Some(4);
    let agent = lab.start_agent(&opts);
    std::fs::remove_file(agent.config_dir().join("ca").join("root.pem")).unwrap();
    let root_home = lab.dir("home-root");
    let zip_arg = zip.to_str().unwrap();
    let cert = lab.pki.machine_cert.to_str().unwrap();
    let key = lab.pki.machine_key.to_str().unwrap();
    // A root not trusted yet is installed only when asked: refused, and nothing written.
    let out = std::process::Command::new(bin())
        .arg("profile")
        .arg("--system-dir")
        .arg(agent.config_dir())
        .args([
            "import", zip_arg, "--scope", "device", "--cert", cert, "--key", key,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("--trust-root") && said.contains(&ca.thumbprint().to_string()),
        "{said}"
    );
    assert!(!agent.config_dir().join("machine").join("key.pem").exists());
    assert_eq!(
        std::fs::read_dir(agent.config_dir().join("ca"))
            .unwrap()
            .count(),
        0
    );
    let text = aovpn_profile(
        &agent,
        None,
        &root_home,
        &[
            "import",
            zip_arg,
            "--scope",
            "device",
            "--cert",
            cert,
            "--key",
            key,
            "--trust-root",
        ],
    );
    for needle in [
        "installed in",
        "machine certificate installed",
        "added device profile \"vpn-device\"",
        "the package's ready profile",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    let key_mode = std::fs::metadata(agent.config_dir().join("machine").join("key.pem"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777,
        0o600
    );
    let took = wait_connected(&agent, "vpn-device", Duration::from_secs(30));
    report(&format!(
        "device tunnel from the imported package up {} ms after the import",
        took.as_millis()
    ));
    ping(&lab.topo.client, MGMT_HOST);
    ping(&lab.topo.vnet, virtual_ip(&agent, "vpn-device"));
    // A second import does not replace the machine certificate with another one silently.
    let user_cert = lab.pki.user_cert.to_str().unwrap();
    let user_key = lab.pki.user_key.to_str().unwrap();
    let out = std::process::Command::new(bin())
        .arg("profile")
        .arg("--system-dir")
        .arg(agent.config_dir())
        .args([
            "import", zip_arg, "--scope", "device", "--name", "again", "--cert", user_cert,
            "--key", user_key,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Alice logs in (her helper has her certificate) and imports Azure's package herself.
    let alice = lab.start_alice_with(&agent, &[]);
    let azure = lab.dir("home-alice/VpnClient.zip");
    std::fs::write(
        &azure,
        azure_shaped_package(&lab.pki.ca_cert, &format!("{APP_HOST}/32")),
    )
    .unwrap();
    std::process::Command::new("chown")
        .arg(format!("{ALICE}:{ALICE}"))
        .arg(&azure)
        .status()
        .unwrap();
    let text = aovpn_profile(
        &agent,
        Some(ALICE),
        &lab.dir("home-alice"),
        &["import", azure.to_str().unwrap(), "--scope", "user"],
    );
    for needle in [
        "already trusted",
        "added user profile \"vpn-user\"",
        "made from VpnSettings.xml",
        "names no DNS servers",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    wait_connected(&agent, "vpn-user", Duration::from_secs(30));
    assert_eq!(
        route_dev(&lab.topo.client, APP_HOST),
        interface(&agent, "vpn-user")
    );
    ping(&lab.topo.client, APP_HOST);
    drop(alice);
}

/// TrustedNetworkDetection: on the corporate network (its DNS suffix from DHCP) the AlwaysOn
/// user tunnel goes down and stays down; the device tunnel ignores it; off it, the user tunnel
/// comes back.
#[test]
fn a_trusted_network_holds_the_user_tunnel_but_not_the_device_tunnel() {
    let lab = Lab::new("agtru");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    let _alice = both_tunnels(&lab, &agent);
    // A DHCP client on the corporate network writes its domain into resolv.conf.
    std::fs::write(
        agent.resolv_conf(),
        "search corp.agent.example\nnameserver 192.0.2.53\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(15), || {
        state_of(&agent, USER) == "trusted_network"
    })
    .unwrap_or_else(|| panic!("user tunnel not held:\n{}", agent.log()));
    assert_eq!(state_of(&agent, DEVICE), "connected");
    // Status says which suffix matched (for alice, who asks about her tunnel).
    let s = status(&agent, USER);
    assert_eq!(
        s["history"]["trusted_network"].as_str(),
        Some("corp.agent.example"),
        "{s}"
    );
    ping(&lab.topo.client, MGMT_HOST);
    // Leaving it.
    std::fs::write(agent.resolv_conf(), "nameserver 192.0.2.53\n").unwrap();
    wait_connected(&agent, USER, Duration::from_secs(30));
}

/// A stand-in for systemd-logind on a private D-Bus (dbus-daemon, started and stopped by pid by
/// the test): `ListSessions`, and the `SessionNew`, `SessionRemoved` and `PrepareForSleep`
/// signals the agent follows.
mod fake_logind {
    use std::sync::{Arc, Mutex};

    use zbus::{ObjectPath, OwnedObjectPath};

    pub type Session = (String, u32, String, String, OwnedObjectPath);

    pub struct Manager {
        pub sessions: Arc<Mutex<Vec<Session>>>,
    }

    #[zbus::interface(name = "org.freedesktop.login1.Manager")]
    impl Manager {
        fn list_sessions(&self) -> Vec<Session> {
            self.sessions.lock().unwrap().clone()
        }
    }

    pub const PATH: &str = "/org/freedesktop/login1";
    const IFACE: &str = "org.freedesktop.login1.Manager";

    pub fn session(id: &str, uid: u32) -> Session {
        let path = ObjectPath::try_from(format!("{PATH}/session/{id}")).unwrap();
        (
            id.into(),
            uid,
            format!("uid{uid}"),
            "seat0".into(),
            path.into(),
        )
    }

    pub async fn session_signal(conn: &zbus::Connection, name: &str, id: &str) {
        let path = ObjectPath::try_from(format!("{PATH}/session/{id}")).unwrap();
        conn.emit_signal(None::<()>, PATH, IFACE, name, &(id, path))
            .await
            .unwrap();
    }

    pub async fn resumed(conn: &zbus::Connection) {
        conn.emit_signal(None::<()>, PATH, IFACE, "PrepareForSleep", &(false,))
            .await
            .unwrap();
    }
}

/// A stand-in for systemd-resolved on a private D-Bus: the Manager methods the agent calls,
/// each recorded as a line (`dns IFINDEX ADDR...`, `domains IFINDEX NAME[~]...`,
/// `default-route IFINDEX BOOL`, `revert IFINDEX`).
mod fake_resolved {
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};

    pub struct Manager {
        pub calls: Arc<Mutex<Vec<String>>>,
    }

    #[zbus::interface(name = "org.freedesktop.resolve1.Manager")]
    impl Manager {
        #[zbus(name = "SetLinkDNS")]
        fn set_link_dns(&self, index: i32, addresses: Vec<(i32, Vec<u8>)>) {
            let shown: Vec<String> = addresses
                .iter()
                .filter_map(|(family, bytes)| match (*family, bytes.len()) {
                    (libc::AF_INET, 4) => <[u8; 4]>::try_from(bytes.as_slice())
                        .ok()
                        .map(|b| IpAddr::from(b).to_string()),
                    (libc::AF_INET6, 16) => <[u8; 16]>::try_from(bytes.as_slice())
                        .ok()
                        .map(|b| IpAddr::from(b).to_string()),
                    _ => Some("?".into()),
                })
                .collect();
            self.record(format!("dns {index} {}", shown.join(" ")));
        }

        fn set_link_domains(&self, index: i32, domains: Vec<(String, bool)>) {
            let shown: Vec<String> = domains
                .iter()
                .map(|(d, routing)| if *routing { format!("~{d}") } else { d.clone() })
                .collect();
            self.record(format!("domains {index} {}", shown.join(" ")));
        }

        fn set_link_default_route(&self, index: i32, enable: bool) {
            self.record(format!("default-route {index} {enable}"));
        }

        fn revert_link(&self, index: i32) {
            self.record(format!("revert {index}"));
        }
    }

    impl Manager {
        fn record(&self, line: String) {
            self.calls.lock().unwrap().push(line);
        }
    }

    pub const PATH: &str = "/org/freedesktop/resolve1";
}

/// The private bus: a dbus-daemon of our own, stopped by pid on drop.
struct PrivateBus {
    child: std::process::Child,
    address: String,
}

impl PrivateBus {
    fn start(dir: &Path) -> PrivateBus {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("system_bus_socket");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(10), || socket.exists()).expect("dbus-daemon did not start");
        PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With logind (emulated on a private bus): the user tunnel comes up when a session of its
/// user appears (her key helper alone is not a login), goes when the session is removed, and a
/// resume (PrepareForSleep false) makes the agent check every tunnel's path.
#[test]
fn logind_sessions_bring_user_tunnels_up_and_down() {
    let lab = Lab::new("aglgn");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let bus = PrivateBus::start(&lab.dir("bus"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sessions = std::sync::Arc::new(std::sync::Mutex::new(vec![fake_logind::session("c1", 0)]));
    let conn = runtime.block_on(async {
        zbus::connection::Builder::address(bus.address.as_str())
            .name("org.freedesktop.login1")
            .serve_at(
                fake_logind::PATH,
                fake_logind::Manager {
                    sessions: sessions.clone(),
                },
            )
            .build()
            .await
            .unwrap()
    });
    let mut opts = lab.agent_opts();
    opts.sessions = "logind".into();
    opts.env = vec![("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone())];
    let agent = lab.start_agent(&opts);
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    assert!(
        agent.log().contains("sessions=\"logind\""),
        "{}",
        agent.log()
    );
    let _alice = lab.start_alice(&agent);
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, USER) == "waiting_for_user"
    })
    .unwrap_or_else(|| panic!("{}", agent.log()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        state_of(&agent, USER),
        "waiting_for_user",
        "the helper alone is no login"
    );

    // alice logs in.
    sessions
        .lock()
        .unwrap()
        .push(fake_logind::session("c2", ALICE));
    runtime.block_on(fake_logind::session_signal(&conn, "SessionNew", "c2"));
    wait_connected(&agent, USER, Duration::from_secs(30));
    ping(&lab.topo.client, APP_HOST);

    // The machine wakes up.
    runtime.block_on(fake_logind::resumed(&conn));
    wait_until(Duration::from_secs(5), || {
        agent.log().contains("resumed from suspend")
    })
    .unwrap_or_else(|| panic!("resume not seen:\n{}", agent.log()));

    // alice logs out: her tunnel goes, the device tunnel stays.
    sessions.lock().unwrap().retain(|s| s.1 != ALICE);
    runtime.block_on(fake_logind::session_signal(&conn, "SessionRemoved", "c2"));
    wait_until(Duration::from_secs(10), || {
        state_of(&agent, USER) == "waiting_for_user"
    })
    .unwrap_or_else(|| panic!("user tunnel still up:\n{}", agent.log()));
    assert_eq!(state_of(&agent, DEVICE), "connected");
    ping(&lab.topo.client, MGMT_HOST);
    drop(conn);
}

/// NetworkOutageTime bounds how long a tunnel without a path is kept: after that it is torn
/// down, and dialled again when the network is back.
#[test]
fn network_outage_time_bounds_how_long_a_tunnel_waits_for_the_network() {
    let lab = Lab::new("agout");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let mut opts = lab.agent_opts();
    let device = device_profile_xml().replace(
        "<AlwaysOn>",
        "<NetworkOutageTime>2</NetworkOutageTime><AlwaysOn>",
    );
    opts.profiles = vec![(DEVICE.into(), lab.write("device-outage.xml", &device))];
    let agent = lab.start_agent(&opts);
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let before = status(&agent, DEVICE)["tunnel"]["ike_since"].clone();
    let client = &lab.topo.client;
    client.ip(["link", "set", lab::CLIENT_IF, "down"]).unwrap();
    wait_until(Duration::from_secs(10), || {
        agent
            .log()
            .contains("no network for 2 s (NetworkOutageTime)")
    })
    .unwrap_or_else(|| panic!("the outage was not bounded:\n{}", agent.log()));
    assert_ne!(state_of(&agent, DEVICE), "connected");
    client.ip(["link", "set", lab::CLIENT_IF, "up"]).unwrap();
    client
        .ip([
            "route",
            "replace",
            "default",
            "via",
            &lab::CLIENT_LINK_PEER.to_string(),
        ])
        .unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    // Dialled again: a new IKE SA (at least the outage time younger).
    assert_ne!(status(&agent, DEVICE)["tunnel"]["ike_since"], before);
    ping(client, MGMT_HOST);
}

/// Run as another user by `one_user_cannot_take_every_control_connection`: opens
/// AOVPN_HOLD_COUNT connections to AOVPN_HOLD_SOCKET, says so, and idles.
#[test]
#[ignore = "a helper process of another test, not a test"]
fn hold_control_connections() {
    let (Ok(socket), Ok(count)) = (
        std::env::var("AOVPN_HOLD_SOCKET"),
        std::env::var("AOVPN_HOLD_COUNT"),
    ) else {
        return;
    };
    let count: usize = count.parse().unwrap();
    let held: Vec<std::os::unix::net::UnixStream> = (0..count)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    println!("held {}", held.len());
    std::thread::sleep(Duration::from_secs(30));
}

/// One user holding idle connections cannot lock others (or root) out of the control socket,
/// and an idle connection is closed after the request timeout.
#[test]
fn one_user_cannot_take_every_control_connection() {
    let lab = Lab::new("agcon");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let agent = lab.start_agent(&lab.agent_opts());
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let mut holder = std::process::Command::new("setpriv")
        .arg(format!("--reuid={BOB}"))
        .arg(format!("--regid={BOB}"))
        .arg("--clear-groups")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "hold_control_connections",
            "--nocapture",
        ])
        .env("AOVPN_HOLD_SOCKET", agent.socket())
        .env("AOVPN_HOLD_COUNT", "20")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = holder.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("held") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the holder ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Bob's own further requests are refused while he holds his share...
    let bob = agent.control_as(BOB, &["list"]).unwrap();
    assert!(!bob.status.success(), "bob got a ninth connection");
    // ...others are not affected.
    let alice = agent.control_as(ALICE, &["list", "--json"]).unwrap();
    assert!(
        alice.status.success(),
        "{}",
        String::from_utf8_lossy(&alice.stderr)
    );
    assert!(agent.control(&["list"]).unwrap().status.success());
    // Idle connections are closed after the request timeout (10 s): Bob gets in again.
    let back = wait_until(Duration::from_secs(20), || {
        agent
            .control_as(BOB, &["list"])
            .is_ok_and(|o| o.status.success())
    });
    assert!(back.is_some(), "idle connections were kept");
    let _ = holder.kill();
    let _ = holder.wait();
}

/// LockDown (a device profile's `<LockDown>true</LockDown>`): nothing leaves the client outside
/// the tunnel, while it is up and while it is down (gateway gone), yet the agent's own IKE still
/// reaches the gateway and brings it back; removing the profile lifts the lock.
#[test]
fn lockdown_allows_nothing_outside_the_tunnel_until_its_profile_is_removed() {
    let lab = Lab::new("aglk");
    let outside = lab::CLIENT_LINK_PEER;
    assert!(ping_once(&lab.topo.client, outside), "no path to check");
    let gw_opts = lab.gateway_opts();
    let mut gw = lab.start_gateway(&gw_opts);
    let mut opts = lab.agent_opts();
    let locked = device_profile_xml().replace(
        "<AlwaysOn>true</AlwaysOn>",
        "<LockDown>true</LockDown><AlwaysOn>true</AlwaysOn>",
    );
    opts.profiles = vec![(DEVICE.into(), lab.write("locked.xml", &locked))];
    let mut agent = lab.start_agent(&opts);
    wait_connected(&agent, DEVICE, Duration::from_secs(20));
    ping(&lab.topo.client, MGMT_HOST);
    assert!(
        !ping_once(&lab.topo.client, outside),
        "ping outside the tunnel passed\n{}",
        agent.log()
    );

    // Tunnel down: still locked.
    gw.kill().unwrap();
    // Traffic into the silent tunnel makes the agent find it dead at once.
    let down = wait_until(Duration::from_secs(40), || {
        let _ = ping_once(&lab.topo.client, MGMT_HOST);
        state_of(&agent, DEVICE) != "connected"
    });
    assert!(down.is_some(), "the tunnel never noticed\n{}", agent.log());
    assert!(!ping_once(&lab.topo.client, outside), "unlocked while down");
    // The agent's IKE still gets out: the gateway comes back, so does the tunnel.
    let _gw = lab.start_gateway(&gw_opts);
    let back = wait_connected(&agent, DEVICE, Duration::from_secs(60));
    ping(&lab.topo.client, MGMT_HOST);

    // A reboot takes the nftables table; aovpn-lockdown.service puts the saved lock back
    // before the network and the agent (here: by hand, with the agent stopped).
    let saved = agent.state_dir().join("lockdown.json");
    assert!(saved.exists(), "LockDown not saved for the next boot");
    agent.kill().unwrap();
    lab.topo
        .client
        .exec_ok(["nft", "delete", "table", "inet", "aovpn-lockdown"])
        .unwrap();
    assert!(ping_once(&lab.topo.client, outside), "the table did not go");
    let restored = restore_lockdown(&lab, &agent);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        !ping_once(&lab.topo.client, outside),
        "open after the boot restore"
    );
    // A saved lock that cannot be read still locks (with the defaults), and says so.
    let good = std::fs::read(&saved).unwrap();
    std::fs::write(&saved, b"{ not json").unwrap();
    lab.topo
        .client
        .exec_ok(["nft", "delete", "table", "inet", "aovpn-lockdown"])
        .unwrap();
    let restored = restore_lockdown(&lab, &agent);
    assert!(!restored.status.success());
    assert!(
        String::from_utf8_lossy(&restored.stderr).contains("locked with the defaults"),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        !ping_once(&lab.topo.client, outside),
        "open after an unreadable saved lock"
    );
    std::fs::write(&saved, good).unwrap();
    agent.restart(&lab.topo.client).unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    ping(&lab.topo.client, MGMT_HOST);

    // The profile goes: so does the lock.
    let out = agent.remove_profile(DEVICE).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lifted = wait_until(Duration::from_secs(15), || {
        ping_once(&lab.topo.client, outside)
    });
    assert!(lifted.is_some(), "still locked\n{}", agent.log());
    let tables = lab.topo.client.exec_ok(["nft", "list", "tables"]).unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("aovpn-lockdown"));
    // (Saved after the table went: a moment later.)
    assert!(
        wait_until(Duration::from_secs(5), || !saved.exists()).is_some(),
        "a lifted LockDown is not restored at the next boot\n{}",
        agent.log()
    );
    report(&format!(
        "LockDown: tunnel back {} ms after the gateway restarted (IKE allowed out under the lock), lock lifted {} ms after the profile was removed",
        back.as_millis(),
        lifted.unwrap_or_default().as_millis()
    ));
}

/// `aovpn agent --restore-lockdown` (what aovpn-lockdown.service runs at boot) in the client
/// namespace, from the agent's state directory.
fn restore_lockdown(lab: &Lab, agent: &AgentProcess) -> std::process::Output {
    lab.topo
        .client
        .exec([
            bin().to_str().unwrap(),
            "agent",
            "--restore-lockdown",
            "--state-dir",
            agent.state_dir().to_str().unwrap(),
        ])
        .unwrap()
}

/// A dnsmasq answering `names` (name, address) on `listen` in `ns`; stopped by pid on drop.
struct Dnsmasq(std::process::Child);

impl Dnsmasq {
    fn start(ns: &Netns, listen: &str, names: &[(&str, &str)]) -> Dnsmasq {
        let mut argv: Vec<String> = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--port=53",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(format!("--listen-address={listen}"));
        for (name, address) in names {
            argv.push(format!("--address=/{name}/{address}"));
        }
        let child = ns
            .command(argv)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Dnsmasq(child);
        let (name, _) = names[0];
        let up = wait_until(Duration::from_secs(10), || {
            !dig(ns, listen, name).is_empty()
        });
        assert!(up.is_some(), "dnsmasq on {listen} did not answer");
        server
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dig +short @server name` in `ns`: the addresses answered (empty on failure).
fn dig(ns: &Netns, server: &str, name: &str) -> String {
    ns.exec([
        "dig",
        "+short",
        "+time=2",
        "+tries=1",
        &format!("@{server}"),
        name,
    ])
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    .unwrap_or_default()
}

/// Split DNS (a profile's DomainNameInformation) without systemd-resolved: the agent points
/// resolv.conf at its stub, which sends names under `.corp.example` to the corporate server
/// through the tunnel and everything else to the network's server; when the tunnel goes, the
/// network's resolv.conf comes back.
#[test]
fn split_dns_sends_corporate_names_through_the_tunnel_and_the_rest_outside() {
    let lab = Lab::new("agdns");
    let inet = lab.topo.internet.as_ref().unwrap();
    // The network's resolver (the agent's resolv.conf names 192.0.2.53) answers a decoy for
    // the corporate name; the corporate resolver behind the gateway the real address.
    inet.ip(["addr", "add", "192.0.2.53/32", "dev", "lo"])
        .unwrap();
    lab.topo
        .vnet
        .ip(["addr", "add", "10.1.0.53/24", "dev", lab::VNET_IF])
        .unwrap();
    let _public = Dnsmasq::start(
        inet,
        "192.0.2.53",
        &[
            ("www.public.example", "198.51.100.80"),
            ("intranet.corp.example", "192.0.2.66"),
        ],
    );
    let _corp = Dnsmasq::start(
        &lab.topo.vnet,
        "10.1.0.53",
        &[("intranet.corp.example", "10.1.0.10")],
    );
    let mut gw_opts = lab.gateway_opts();
    gw_opts.dns.clear();
    let _gw = lab.start_gateway(&gw_opts);
    let profile = device_profile_xml().replace(
        "<AlwaysOn>true</AlwaysOn>",
        "<Route><Address>10.1.0.53</Address><PrefixSize>32</PrefixSize></Route>\
         <DomainNameInformation><DomainName>.corp.example</DomainName>\
         <DnsServers>10.1.0.53</DnsServers></DomainNameInformation><AlwaysOn>true</AlwaysOn>",
    );
    let mut opts = lab.agent_opts();
    opts.profiles = vec![(DEVICE.into(), lab.write("split.xml", &profile))];
    let agent = lab.start_agent(&opts);
    let original = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(20));

    let stub = agent::split_dns::STUB_ADDRESS.to_string();
    let conf = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    assert!(conf.contains(&format!("nameserver {stub}")), "{conf}");
    let client = &lab.topo.client;
    assert_eq!(
        dig(client, &stub, "intranet.corp.example"),
        "10.1.0.10",
        "{}",
        agent.log()
    );
    assert_eq!(dig(client, &stub, "www.public.example"), "198.51.100.80");
    // `aovpn doctor` asks the rule's server through the tunnel.
    let out = doctor_device(&lab, &agent);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("dns .corp.example @10.1.0.53")),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tunnel goes: resolv.conf is the network's again, whose server gives the decoy.
    let out = agent.remove_profile(DEVICE).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(agent.resolv_conf()).is_ok_and(|c| c == original)
    });
    assert!(
        restored.is_some(),
        "resolv.conf not restored\n{}",
        agent.log()
    );
    assert_eq!(
        dig(client, "192.0.2.53", "intranet.corp.example"),
        "192.0.2.66"
    );
}

/// RegisterDNS against a real BIND 9 behind the gateway: the device's name is claimed only
/// when nobody else holds it, points at the tunnel address while the device tunnel is up (a
/// host behind the gateway reaches the device by it), goes with a clean disconnect, and a
/// key BIND does not accept is refused and reported.
#[test]
fn register_dns_names_the_device_in_bind_while_its_tunnel_is_up() {
    let lab = Lab::new("agreg");
    let vnet = &lab.topo.vnet;
    vnet.ip(["addr", "add", "10.1.0.53/24", "dev", lab::VNET_IF])
        .unwrap();
    let key = testkit::bind::tsig_keygen().unwrap();
    let bind = testkit::bind::Bind::start(
        vnet,
        testkit::bind::BindConfig {
            dir: lab.dir("bind"),
            listen: "10.1.0.53".parse().unwrap(),
            zone: "corp.example".into(),
            records: Vec::new(),
            key: key.clone(),
        },
    )
    .unwrap();
    // Another host holds the name first.
    bind.nsupdate(vnet, "update add dev1.corp.example 300 A 10.1.0.99")
        .unwrap();
    let _gw = lab.start_gateway(&lab.gateway_opts()); // pushes 10.1.0.53 as DNS server
    let mut opts = lab.agent_opts();
    // (And a tunnel MTU from agent.toml, as `aovpn doctor` suggests for a narrow path.)
    opts.extra_toml =
        "tunnel_mtu = 1300\n[register_dns]\nhost_name = \"dev1\"\nzone = \"corp.example\"\n".into();
    opts.files = vec![("dns-update.key".into(), key.clone())];
    let mut agent = lab.start_agent(&opts);
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let link = lab.topo.client.ip(["link", "show", "aovpn-dev"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains("mtu 1300 "), "{link}");
    let vip = virtual_ip(&agent, DEVICE);
    let registration =
        |agent: &AgentProcess| status(agent, DEVICE)["tunnel"]["dns_registration"].clone();
    let taken = wait_until(Duration::from_secs(15), || {
        registration(&agent)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("held by another host"))
    });
    assert!(
        taken.is_some(),
        "{}\n{}\n{}",
        registration(&agent),
        agent.log(),
        bind.log()
    );
    assert_eq!(bind.dig(vnet, "dev1.corp.example", "A"), "10.1.0.99");

    // The other host lets the name go: the agent's next try claims it.
    bind.nsupdate(vnet, "update delete dev1.corp.example A")
        .unwrap();
    let registered = wait_until(Duration::from_secs(30), || {
        bind.dig(vnet, "dev1.corp.example", "A") == vip
    });
    assert!(
        registered.is_some(),
        "{}\n{}\n{}",
        registration(&agent),
        agent.log(),
        bind.log()
    );
    assert!(
        bind.dig(vnet, "dev1.corp.example", "TXT")
            .contains("aovpn-owner="),
        "the owner mark"
    );
    let r = registration(&agent);
    assert_eq!(r["state"], "registered", "{r}");
    assert_eq!(r["name"], "dev1.corp.example", "{r}");
    let text =
        String::from_utf8_lossy(&agent.control(&["status", DEVICE]).unwrap().stdout).into_owned();
    assert!(
        text.contains("dns name     dev1.corp.example registered at 10.1.0.53"),
        "{text}"
    );

    // Manage out by name: the vnet host resolves the device and connects to a listener on it,
    // through the device tunnel.
    let resolved: Ipv4Addr = bind.dig(vnet, "dev1.corp.example", "A").parse().unwrap();
    let vip_addr: Ipv4Addr = vip.parse().unwrap();
    let listener = lab
        .topo
        .client
        .run(|| TcpListener::bind((vip_addr, 0)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"device").unwrap();
        (peer, buf)
    });
    let answer = vnet.run(|| {
        let mut c =
            TcpStream::connect_timeout(&SocketAddr::from((resolved, port)), Duration::from_secs(5))
                .unwrap();
        c.write_all(b"hello").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    });
    let (peer, got) = server.join().unwrap();
    assert_eq!(&got, b"hello");
    assert_eq!(answer, "device");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::from(MGMT_HOST),
        "from the vnet host"
    );

    // The agent dies without a goodbye: the name stays, and the agent started again takes
    // it back by its owner mark (the replace update) instead of finding it held.
    agent.kill().unwrap();
    agent.restart(&lab.topo.client).unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let vip = virtual_ip(&agent, DEVICE);
    let again = wait_until(Duration::from_secs(15), || {
        registration(&agent)["state"] == "registered"
    });
    assert!(again.is_some(), "{}\n{}", registration(&agent), agent.log());
    assert_eq!(bind.dig(vnet, "dev1.corp.example", "A"), vip);
    // A record an administrator keeps at the name is not ours to remove.
    bind.nsupdate(
        vnet,
        "update add dev1.corp.example 300 HINFO \"x86\" \"linux\"",
    )
    .unwrap();

    // A clean disconnect removes the records (ours: the owner mark goes too).
    let out = agent.remove_profile(DEVICE).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = wait_until(Duration::from_secs(15), || {
        bind.dig(vnet, "dev1.corp.example", "A").is_empty()
            && bind.dig(vnet, "dev1.corp.example", "TXT").is_empty()
    });
    assert!(removed.is_some(), "{}\n{}", agent.log(), bind.log());
    assert!(
        bind.dig(vnet, "dev1.corp.example", "HINFO")
            .contains("linux"),
        "the administrator's record stays"
    );

    // A key BIND does not know the secret of: refused, reported, nothing registered.
    let wrong = testkit::bind::tsig_keygen().unwrap();
    let key_file = agent.config_dir().join("dns-update.key");
    std::fs::write(&key_file, &wrong).unwrap();
    let out = agent
        .add_profile(
            DEVICE,
            &lab.write("device-again.xml", &device_profile_xml()),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let refused = wait_until(Duration::from_secs(15), || {
        registration(&agent)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("BADSIG"))
    });
    assert!(
        refused.is_some(),
        "{}\n{}\n{}",
        registration(&agent),
        agent.log(),
        bind.log()
    );
    assert_eq!(registration(&agent)["state"], "failed");
    assert_eq!(bind.dig(vnet, "dev1.corp.example", "A"), "");
    report(&format!(
        "RegisterDNS: name resolvable in BIND {} ms after the other host released it (agent retry); removed {} ms after the profile was removed",
        registered.unwrap_or_default().as_millis(),
        removed.unwrap_or_default().as_millis()
    ));
}

/// With systemd-resolved (emulated on a private bus) split DNS goes over D-Bus, not into
/// resolv.conf and not through the stub: the tunnel's link gets the pushed server, the
/// profile's namespace as a routing-only domain and no default route; RevertLink when the
/// tunnel goes.
#[test]
fn with_systemd_resolved_split_dns_is_set_on_the_tunnel_link_over_dbus() {
    let lab = Lab::new("agres");
    let _gw = lab.start_gateway(&lab.gateway_opts()); // pushes 10.1.0.53
    let bus = PrivateBus::start(&lab.dir("bus"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let conn = runtime.block_on(async {
        zbus::connection::Builder::address(bus.address.as_str())
            .name("org.freedesktop.resolve1")
            .serve_at(
                fake_resolved::PATH,
                fake_resolved::Manager {
                    calls: calls.clone(),
                },
            )
            .build()
            .await
            .unwrap()
    });
    let profile = device_profile_xml().replace(
        "<AlwaysOn>true</AlwaysOn>",
        "<DomainNameInformation><DomainName>.corp.example</DomainName>\
         <DnsServers>10.1.0.53</DnsServers></DomainNameInformation><AlwaysOn>true</AlwaysOn>",
    );
    let mut opts = lab.agent_opts();
    opts.profiles = vec![(DEVICE.into(), lab.write("resolved.xml", &profile))];
    opts.env = vec![("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone())];
    let agent = lab.start_agent(&opts);
    let original = std::fs::read_to_string(agent.resolv_conf()).unwrap();
    wait_connected(&agent, DEVICE, Duration::from_secs(30));
    let index = lab
        .topo
        .client
        .run(|| nix::net::if_::if_nametoindex("aovpn-dev"))
        .unwrap();
    let expected = [
        format!("dns {index} 10.1.0.53"),
        format!("domains {index} ~corp.example"),
        format!("default-route {index} false"),
    ];
    let seen = wait_until(Duration::from_secs(10), || {
        let c = calls.lock().unwrap();
        expected.iter().all(|e| c.contains(e))
    });
    assert!(
        seen.is_some(),
        "{:?}\n{}",
        calls.lock().unwrap(),
        agent.log()
    );
    assert_eq!(
        std::fs::read_to_string(agent.resolv_conf()).unwrap(),
        original,
        "resolv.conf is not touched when resolved runs"
    );
    let out = agent.remove_profile(DEVICE).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reverted = wait_until(Duration::from_secs(15), || {
        calls.lock().unwrap().contains(&format!("revert {index}"))
    });
    assert!(
        reverted.is_some(),
        "{:?}\n{}",
        calls.lock().unwrap(),
        agent.log()
    );
    drop(conn);
}

/// A Persistent DomainNameInformation rule holds while its tunnel is down (here: no gateway
/// at all): the corporate name never goes to the network's resolver, other names do; the rule
/// goes with the profile.
#[test]
fn a_persistent_split_dns_rule_holds_while_the_tunnel_is_down() {
    let lab = Lab::new("agper");
    let inet = lab.topo.internet.as_ref().unwrap();
    inet.ip(["addr", "add", "192.0.2.53/32", "dev", "lo"])
        .unwrap();
    let _public = Dnsmasq::start(
        inet,
        "192.0.2.53",
        &[
            ("www.public.example", "198.51.100.80"),
            ("intranet.corp.example", "192.0.2.66"),
        ],
    );
    // No gateway: the tunnel stays down.
    let profile = device_profile_xml().replace(
        "<AlwaysOn>true</AlwaysOn>",
        "<DomainNameInformation><DomainName>.corp.example</DomainName>\
         <DnsServers>10.1.0.53</DnsServers><Persistent>true</Persistent>\
         </DomainNameInformation><AlwaysOn>true</AlwaysOn>",
    );
    let mut opts = lab.agent_opts();
    opts.profiles = vec![(DEVICE.into(), lab.write("persistent.xml", &profile))];
    let agent = lab.start_agent(&opts);
    // (What testkit writes; the agent may have replaced it by now.)
    let original = "nameserver 192.0.2.53\n";
    let stub = agent::split_dns::STUB_ADDRESS.to_string();
    let pointed = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(agent.resolv_conf())
            .is_ok_and(|c| c.contains(&format!("nameserver {stub}")))
    });
    assert!(pointed.is_some(), "{}", agent.log());
    assert_ne!(state_of(&agent, DEVICE), "connected");
    // Only the stub: a resolver that tries the next server on SERVFAIL finds none.
    let servers: Vec<String> = std::fs::read_to_string(agent.resolv_conf())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .map(str::to_owned)
        .collect();
    assert_eq!(servers, [format!("nameserver {stub}")]);
    let client = &lab.topo.client;
    assert_eq!(dig(client, &stub, "www.public.example"), "198.51.100.80");
    // Asked of 10.1.0.53, which cannot be reached: no answer, and never the decoy.
    let corp = dig(client, &stub, "intranet.corp.example");
    assert!(
        corp.parse::<std::net::IpAddr>().is_err() && !corp.contains("192.0.2.66"),
        "the corporate name leaked to the network's resolver: {corp}"
    );
    let out = agent.remove_profile(DEVICE).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(agent.resolv_conf()).is_ok_and(|c| c == original)
    });
    assert!(restored.is_some(), "{}", agent.log());
}

/// A ForceTunnel profile's Proxy/Manual/Server is exported while its tunnel is up (an
/// environment file under the run directory, read by /etc/profile.d/aovpn-proxy.sh) and goes
/// with the tunnel.
#[test]
fn a_force_tunnel_proxy_is_exported_while_the_tunnel_is_up() {
    let lab = Lab::new("agpx");
    let _gw = lab.start_gateway(&lab.gateway_opts());
    let profile = format!(
        "<VPNProfile><NativeProfile><Servers>{GATEWAY_NAME}</Servers>\
         <NativeProtocolType>IKEv2</NativeProtocolType>\
         <Authentication><MachineMethod>Certificate</MachineMethod></Authentication>\
         <RoutingPolicyType>ForceTunnel</RoutingPolicyType></NativeProfile>\
         <ByPassForLocal>true</ByPassForLocal>\
         <Proxy><Manual><Server>proxy.corp.example:3128</Server></Manual></Proxy>\
         <AlwaysOn>true</AlwaysOn></VPNProfile>"
    );
    let mut opts = lab.agent_opts();
    opts.profiles = vec![("CorpProxy".into(), lab.write("proxy.xml", &profile))];
    let agent = lab.start_agent(&opts);
    wait_connected(&agent, "CorpProxy", Duration::from_secs(20));
    let file = agent.run_dir().join("proxy").join("0-CorpProxy.env");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), agent.log()));
    assert!(
        text.contains("http_proxy=http://proxy.corp.example:3128\n")
            && text.contains("https_proxy=http://proxy.corp.example:3128\n"),
        "{text}"
    );
    let out = agent.remove_profile("CorpProxy").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = wait_until(Duration::from_secs(15), || !file.exists());
    assert!(gone.is_some(), "proxy file left\n{}", agent.log());
}
