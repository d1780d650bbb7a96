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
    AgentOpts, AgentProcess, GatewayOpts, GatewayProcess, HostsFile, Pki, PkiOptions,
    UserHelperProcess,
};
use testkit::netns::{Netns, Topology, lab};

const GATEWAY_NAME: &str = "vpn.agent.example";
const DEVICE: &str = "DeviceTunnel";
const USER: &str = "CorpUser";
const ALICE: u32 = 61001;
const BOB: u32 = 61002;
const MGMT_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const APP_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_aovpn"))
}

struct Lab {
    _hosts: HostsFile,
    topo: Topology,
    pki: Pki,
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new(prefix: &str) -> Lab {
        testkit::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let topo = Topology::routed(prefix, true).unwrap();
        topo.vnet
            .ip([
                "addr",
                "add",
                &format!("{APP_HOST}/24"),
                "dev",
                lab::VNET_IF,
            ])
            .unwrap();
        let pki = Pki::issue(
            bin(),
            &tmp.path().join("pki"),
            &PkiOptions::new(GATEWAY_NAME),
        )
        .unwrap();
        let hosts =
            HostsFile::write(&topo.client, &[(topo.gateway_wan().into(), GATEWAY_NAME)]).unwrap();
        Lab {
            _hosts: hosts,
            topo,
            pki,
            tmp,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
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
        UserHelperProcess::start(
            bin(),
            &self.topo.client,
            ALICE,
            &self.dir("home-alice"),
            (&self.pki.user_cert, &self.pki.user_key),
            &[(USER, &profile)],
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
    eprintln!(
        "device tunnel up {} ms after the agent's socket opened",
        took.as_millis()
    );
    let vip = virtual_ip(&agent, DEVICE);
    assert!(vip.starts_with("172.16.201."), "{vip}");
    assert_eq!(route_dev(&lab.topo.client, MGMT_HOST), "aovpn-dev");
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
}
