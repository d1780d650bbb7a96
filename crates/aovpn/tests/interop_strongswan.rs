//! Interoperability with a real strongSwan (Debian 5.9.8 charon, kernel-libipsec), both ways:
//! strongSwan client -> our gateway, our client (`aovpn connect`) -> strongSwan gateway. The
//! certificates come from `aovpn pki`. Routed lab with NAT:
//!
//! ```text
//! [client] 198.51.100.2 -- [internet, masquerade] -- 203.0.113.1 [gateway] 10.1.0.1 -- [vnet] 10.1.0.10
//! ```
//!
//! Each test builds its own namespaces (removed on drop, also on failure) and stops every
//! process it started by pid. A failing assertion prints our logs and the tail of charon.log.
//! Needs root and strongSwan (`scripts/install-deps.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::aovpn::{
    ClientOpts, ClientProcess, GatewayOpts, GatewayProcess, Pki, PkiKey, PkiOptions,
};
use testkit::netns::{Netns, lab};
use testkit::strongswan::{Charon, ChildConfig, Connection, SaInfo, SwanctlConf};

const GATEWAY_NAME: &str = "vpn.interop.example";

mod common;

use common::{Lab, bin, report};

/// One proposal set: strongSwan notation and how swanctl reports the result.
struct Suite {
    ike: &'static str,
    esp: &'static str,
    ike_listed: &'static str,
    esp_listed: &'static str,
}

const GCM_ECP384: Suite = Suite {
    ike: "aes256gcm16-prfsha384-ecp384",
    esp: "aes256gcm16",
    ike_listed: "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384",
    esp_listed: "ESP:AES_GCM_16-256",
};
const CBC_MODP2048: Suite = Suite {
    ike: "aes256-sha256-modp2048",
    esp: "aes256-sha256",
    ike_listed: "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
    esp_listed: "ESP:AES_CBC-256/HMAC_SHA2_256_128",
};
const CBC_X25519: Suite = Suite {
    ike: "aes128-sha256-x25519",
    esp: "aes128-sha256",
    ike_listed: "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
    esp_listed: "ESP:AES_CBC-128/HMAC_SHA2_256_128",
};
/// The stock Windows set.
const LEGACY: Suite = Suite {
    ike: "aes256-sha1-modp1024",
    esp: "aes256-sha1",
    ike_listed: "AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
    esp_listed: "ESP:AES_CBC-256/HMAC_SHA1_96",
};

impl Lab {
    fn new(prefix: &str, pki: PkiOptions) -> Lab {
        Lab::routed(prefix, pki, true, GATEWAY_NAME)
    }

    /// `aovpn connect` in the client namespace with the machine certificate, dialling the
    /// gateway by name; returns once it is connected or has failed.
    fn our_machine_client(&self) -> ClientProcess {
        ClientProcess::start(
            bin(),
            &self.topo.client,
            &self.dir("cl"),
            &ClientOpts::new(
                GATEWAY_NAME,
                &self.pki.machine_cert,
                &self.pki.machine_key,
                &self.pki.ca_cert,
            ),
        )
        .unwrap()
    }

    fn gateway_wan(&self) -> String {
        self.topo.gateway_wan().to_string()
    }

    /// A strongSwan client connection to our gateway with the machine certificate.
    fn strongswan_client_conf(&self, suite: &Suite) -> SwanctlConf {
        self.strongswan_client_conf_as(suite, None)
    }

    /// The same with `local.id` set (strongSwan's default is the certificate's subject DN).
    fn strongswan_client_conf_as(&self, suite: &Suite, local_id: Option<&str>) -> SwanctlConf {
        let certs = Pki::split_chain(&self.pki.machine_cert).unwrap();
        let mut connection = Connection::initiator("ao")
            .remote_addrs(&self.gateway_wan())
            .proposals(suite.ike)
            .local_cert(&certs[0])
            .remote_id(GATEWAY_NAME)
            .remote_cacert(&self.pki.ca_cert)
            .child(
                ChildConfig::new("ao")
                    .remote_ts(lab::VNET_TS)
                    .esp_proposals(suite.esp)
                    .set("start_action", "none"),
            );
        if let Some(id) = local_id {
            connection = connection.local_id(id);
        }
        let mut conf = SwanctlConf::new()
            .connection(connection)
            .private_key(&self.pki.machine_key);
        for intermediate in &certs[1..] {
            conf = conf.cacert(intermediate);
        }
        conf
    }

    /// A strongSwan gateway with the pool and 10.1.0.0/16 behind it.
    fn strongswan_gateway_conf(&self, suite: &Suite) -> SwanctlConf {
        self.strongswan_gateway_conf_auth(suite, None)
    }

    /// The same, with the clients' authentication `remote.auth` (e.g. `eap-tls`, which then
    /// asks for the EAP identity).
    fn strongswan_gateway_conf_auth(
        &self,
        suite: &Suite,
        remote_auth: Option<&str>,
    ) -> SwanctlConf {
        let certs = Pki::split_chain(&self.pki.gateway_cert).unwrap();
        let mut responder = Connection::responder("p2s")
            .local_addrs(&self.gateway_wan())
            .pools("p2s-pool")
            .proposals(suite.ike)
            .local_id(GATEWAY_NAME)
            .local_cert(&certs[0])
            .remote_cacert(&self.pki.ca_cert)
            .child(
                ChildConfig::new("p2s")
                    .local_ts(lab::VNET_TS)
                    .esp_proposals(suite.esp),
            );
        if let Some(auth) = remote_auth {
            responder = responder
                .set_remote("auth", auth)
                .set_remote("eap_id", "%any");
        }
        let mut conf = SwanctlConf::new()
            .connection(responder)
            .pool("p2s-pool", lab::CLIENT_POOL)
            .private_key(&self.pki.gateway_key);
        for intermediate in &certs[1..] {
            conf = conf.cacert(intermediate);
        }
        conf
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Our logs and the end of charon.log, for assertion messages.
fn diag(charon: &Charon, ours: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, log) in ours {
        out.push_str(&format!("\n--- {name} log\n{log}"));
    }
    out.push_str(&format!(
        "\n--- charon.log (last 80 lines)\n{}",
        tail(&charon.log(), 80)
    ));
    out
}

fn ping(ns: &Netns, dest: impl std::fmt::Display) -> Result<(), String> {
    let out = ns
        .exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", &dest.to_string()])
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ping {dest} from {} failed:\n{}{}",
            ns.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn gateway_clients(gw: &GatewayProcess) -> Vec<Value> {
    serde_json::from_str::<Value>(&gw.status_text())
        .ok()
        .and_then(|v| v["clients"].as_array().cloned())
        .unwrap_or_default()
}

fn wait_until(timeout: Duration, mut what: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if what() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_in_pool(vip: &str) {
    assert!(vip.starts_with("172.16.201."), "{vip} not from the pool");
}

/// The checks on a strongSwan-listed SA of either side.
fn assert_sa(sa: &SaInfo, suite: &Suite, context: &dyn Fn() -> String) {
    assert_eq!(sa.state, "ESTABLISHED", "{sa:?}{}", context());
    assert_eq!(sa.ike_algorithms, suite.ike_listed, "{sa:?}{}", context());
    assert_eq!(sa.children.len(), 1, "{sa:?}{}", context());
    let child = &sa.children[0];
    assert_eq!(child.state, "INSTALLED", "{child:?}{}", context());
    assert_eq!(child.mode, "TUNNEL", "{child:?}");
    assert!(child.encap, "ESP not UDP-encapsulated: {child:?}");
    assert_eq!(child.algorithms, suite.esp_listed, "{child:?}{}", context());
}

/// strongSwan client -> our gateway with `suite`: SA listed as expected, virtual IP from our
/// pool, ping through, clean terminate. Returns the virtual IP.
fn strongswan_client_round(lab: &Lab, gw: &GatewayProcess, charon: &Charon, suite: &Suite) {
    charon
        .configure(&lab.strongswan_client_conf(suite))
        .unwrap();
    let loaded = charon.load_all().unwrap();
    assert!(loaded.contains("loaded connection 'ao'"), "{loaded}");
    let context = || diag(charon, &[("aovpn gateway", gw.log())]);
    if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
        panic!("{}: initiate failed: {e}{}", suite.ike, context());
    }
    let sas = charon.list_sas().unwrap();
    assert_eq!(sas.len(), 1, "{sas:?}");
    let sa = &sas[0];
    assert_sa(sa, suite, &context);
    assert_eq!(sa.remote_id, GATEWAY_NAME);
    assert_eq!(sa.remote_host, lab.gateway_wan());
    let vip = sa.local_vips.first().expect("no virtual IP").clone();
    assert_in_pool(&vip);
    assert_eq!(sa.children[0].remote_ts, vec![lab::VNET_TS.to_string()]);
    assert_eq!(sa.children[0].local_ts, vec![format!("{vip}/32")]);

    // Our gateway agrees: the client, its address, seen from behind the NAT.
    assert!(
        wait_until(Duration::from_secs(5), || gateway_clients(gw).len() == 1),
        "{}",
        gw.status_text()
    );
    let client = &gateway_clients(gw)[0];
    assert_eq!(client["virtual_ip"].as_str(), Some(vip.as_str()));
    // Our gateway's account of the ESP algorithms matches strongSwan's.
    assert_eq!(
        format!("ESP:{}", client["esp"].as_str().unwrap_or_default()),
        suite.esp_listed,
        "{client}"
    );
    let remote = client["remote"].as_str().unwrap_or_default();
    assert!(
        remote.starts_with(&format!("{}:", lab::INTERNET_GATEWAY_SIDE)),
        "{remote}"
    );

    // Data plane: strongSwan's libipsec ESP <-> our ESP.
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
    ping(&lab.topo.vnet, &vip).unwrap_or_else(|e| panic!("{e}{}", context()));
    let after = charon.list_sas().unwrap();
    let child = &after[0].children[0];
    assert!(child.packets_in >= 6 && child.packets_out >= 6, "{child:?}");

    charon.terminate("ao").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || gateway_clients(gw).is_empty()),
        "our gateway kept the client after strongSwan's Delete:\n{}{}",
        gw.status_text(),
        context()
    );
}

/// strongSwan client -> our gateway, with each proposal set (the legacy Windows one with
/// `allow_legacy = true`).
#[test]
fn strongswan_client_to_our_gateway_with_each_proposal_set() {
    let lab = Lab::new("isgw", PkiOptions::new(GATEWAY_NAME));
    let mut opts = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    let suites = [&GCM_ECP384, &CBC_MODP2048, &CBC_X25519, &LEGACY];
    opts.ike_proposals = suites.iter().map(|s| s.ike.to_owned()).collect();
    opts.esp_proposals = suites.iter().map(|s| s.esp.to_owned()).collect();
    opts.allow_legacy = true;
    let gw = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw"), &opts).unwrap();
    let charon = Charon::start(&lab.topo.client, &lab.dir("cl")).unwrap();
    for suite in suites {
        strongswan_client_round(&lab, &gw, &charon, suite);
    }
}

/// Without `allow_legacy`, our gateway refuses the legacy Windows set (and still takes a
/// modern one from the same strongSwan).
#[test]
fn our_gateway_refuses_the_legacy_set_unless_allowed() {
    let lab = Lab::new("islg", PkiOptions::new(GATEWAY_NAME));
    let opts = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    assert!(!opts.allow_legacy);
    let gw = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw"), &opts).unwrap();
    let charon = Charon::start(&lab.topo.client, &lab.dir("cl")).unwrap();
    charon
        .configure(&lab.strongswan_client_conf(&LEGACY))
        .unwrap();
    charon.load_all().unwrap();
    let result = charon.initiate("ao", "ao", Duration::from_secs(10));
    assert!(
        result.is_err(),
        "legacy set accepted without allow_legacy{}",
        diag(&charon, &[("aovpn gateway", gw.log())])
    );
    let log = charon.log();
    assert!(
        log.contains("NO_PROPOSAL_CHOSEN"),
        "strongSwan did not get NO_PROPOSAL_CHOSEN{}",
        diag(&charon, &[("aovpn gateway", gw.log())])
    );
    assert!(charon.list_sas().unwrap().is_empty());
    assert!(gateway_clients(&gw).is_empty());
    strongswan_client_round(&lab, &gw, &charon, &GCM_ECP384);
}

/// A device-tunnel profile for `GATEWAY_NAME` with 10.1.0.0/16, optionally with a
/// CryptographySuite (auth transform, cipher transform, encryption, integrity, DH group).
fn profile_xml(suite: Option<[&str; 5]>) -> String {
    let crypto = suite
        .map(|[auth, cipher, encr, integ, dh]| {
            format!(
                "<CryptographySuite>\
                 <AuthenticationTransformConstants>{auth}</AuthenticationTransformConstants>\
                 <CipherTransformConstants>{cipher}</CipherTransformConstants>\
                 <EncryptionMethod>{encr}</EncryptionMethod>\
                 <IntegrityCheckMethod>{integ}</IntegrityCheckMethod>\
                 <DHGroup>{dh}</DHGroup>\
                 <PfsGroup>None</PfsGroup>\
                 </CryptographySuite>"
            )
        })
        .unwrap_or_default();
    format!(
        "<VPNProfile><NativeProfile>\
         <Servers>{GATEWAY_NAME}</Servers>\
         <NativeProtocolType>IKEv2</NativeProtocolType>\
         <Authentication><MachineMethod>Certificate</MachineMethod></Authentication>\
         <RoutingPolicyType>SplitTunnel</RoutingPolicyType>\
         <DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>\
         {crypto}\
         </NativeProfile>\
         <Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize></Route>\
         <DeviceTunnel>true</DeviceTunnel><AlwaysOn>true</AlwaysOn></VPNProfile>"
    )
}

/// Our client -> the strongSwan gateway configured for `suite`; `profile` = CryptographySuite
/// in a ProfileXML, None = `--server` with our default proposals.
fn our_client_round(
    lab: &Lab,
    charon: &Charon,
    suite: &Suite,
    profile: Option<[&str; 5]>,
    name: &str,
) {
    charon
        .configure(&lab.strongswan_gateway_conf(suite))
        .unwrap();
    let loaded = charon.load_all().unwrap();
    assert!(loaded.contains("loaded connection 'p2s'"), "{loaded}");
    let mut opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        &lab.pki.ca_cert,
    )
    .name(name);
    if profile.is_some() {
        let file = lab.dir(&format!("{name}.xml"));
        std::fs::write(&file, profile_xml(profile)).unwrap();
        opts = opts.profile(&file);
    }
    let mut client = ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &opts).unwrap();
    let context = || {
        diag(
            charon,
            &[(&format!("aovpn connect ({name})"), client.log())],
        )
    };
    assert_eq!(
        client.state().as_deref(),
        Some("connected"),
        "{name}: {}{}",
        client.status_text(),
        context()
    );
    let vip = client.virtual_ip().expect("no virtual IP").to_string();
    assert_in_pool(&vip);
    let sa = charon
        .wait_for_sa("p2s", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}{}", context()));
    assert_sa(&sa, suite, &context);
    assert_eq!(sa.local_id, GATEWAY_NAME);
    assert_eq!(sa.remote_id, lab.pki.options.machine_name, "{sa:?}");
    // Our client's own account of the ESP algorithms matches strongSwan's.
    let ours: Value = serde_json::from_str(&client.status_text()).unwrap();
    assert_eq!(
        format!("ESP:{}", ours["esp"].as_str().unwrap_or_default()),
        suite.esp_listed,
        "{ours}"
    );
    assert_eq!(sa.remote_vips, vec![vip.clone()], "{sa:?}");
    assert_eq!(
        sa.remote_host,
        lab::INTERNET_GATEWAY_SIDE.to_string(),
        "{sa:?}"
    );
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{name}: {e}{}", context()));
    ping(&lab.topo.vnet, &vip).unwrap_or_else(|e| panic!("{name}: {e}{}", context()));

    let status = client.stop().unwrap();
    let context = || {
        diag(
            charon,
            &[(&format!("aovpn connect ({name})"), client.log())],
        )
    };
    assert!(status.success(), "{name}: exit {status}{}", context());
    assert!(
        wait_until(Duration::from_secs(5), || charon
            .list_sas()
            .is_ok_and(|s| s.is_empty())),
        "{name}: strongSwan kept the SA after our Delete{}",
        context()
    );
}

/// Our client -> strongSwan gateway: our default proposals against each set strongSwan is
/// limited to, and a ProfileXML CryptographySuite for the sets Windows can express.
#[test]
fn our_client_to_strongswan_gateway() {
    let lab = Lab::new("iscl", PkiOptions::new(GATEWAY_NAME));
    let charon = Charon::start(&lab.topo.gateway, &lab.dir("gw")).unwrap();
    // Default proposals (no profile): strongSwan picks what it is limited to.
    our_client_round(&lab, &charon, &GCM_ECP384, None, "default-gcm");
    our_client_round(&lab, &charon, &CBC_MODP2048, None, "default-modp2048");
    // CryptographySuite in a ProfileXML (Windows names; it has no Curve25519).
    our_client_round(
        &lab,
        &charon,
        &GCM_ECP384,
        Some(["GCMAES256", "GCMAES256", "AES_GCM_256", "SHA384", "ECP384"]),
        "profile-gcm",
    );
    our_client_round(
        &lab,
        &charon,
        &CBC_MODP2048,
        Some(["SHA256128", "AES256", "AES256", "SHA256", "Group14"]),
        "profile-modp2048",
    );
    our_client_round(
        &lab,
        &charon,
        &LEGACY,
        Some(["SHA196", "AES256", "AES256", "SHA196", "Group2"]),
        "profile-legacy",
    );
}

/// aes128-sha256-x25519 with ESP aes128-sha256. `aovpn connect` has no proposal flag: our
/// client's defaults include the IKE set but not ESP aes128-sha256, and a ProfileXML cannot
/// name Curve25519. So: IKE x25519 from the defaults (ESP falls back to the default AES-GCM
/// that strongSwan also accepts), and ESP aes128-sha256 from a CryptographySuite with ECP-256.
#[test]
fn our_client_to_strongswan_gateway_x25519_and_aes128_sha256() {
    let lab = Lab::new("isx2", PkiOptions::new(GATEWAY_NAME));
    let charon = Charon::start(&lab.topo.gateway, &lab.dir("gw")).unwrap();
    let x25519 = Suite {
        esp: "aes128-sha256,aes256gcm16",
        esp_listed: "ESP:AES_GCM_16-256",
        ..CBC_X25519
    };
    our_client_round(&lab, &charon, &x25519, None, "default-x25519");
    let aes128 = Suite {
        ike: "aes128-sha256-ecp256",
        ike_listed: "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256",
        ..CBC_X25519
    };
    our_client_round(
        &lab,
        &charon,
        &aes128,
        Some(["SHA256128", "AES128", "AES128", "SHA256", "ECP256"]),
        "profile-aes128",
    );

    // Our defaults never offer the legacy set: a legacy-only strongSwan gateway refuses us
    // and our client reports it.
    charon
        .configure(&lab.strongswan_gateway_conf(&LEGACY))
        .unwrap();
    charon.load_all().unwrap();
    let mut client = ClientProcess::start(
        bin(),
        &lab.topo.client,
        &lab.dir("cl"),
        &ClientOpts::new(
            GATEWAY_NAME,
            &lab.pki.machine_cert,
            &lab.pki.machine_key,
            &lab.pki.ca_cert,
        )
        .name("default-vs-legacy"),
    )
    .unwrap();
    let context = || diag(&charon, &[("aovpn connect", client.log())]);
    assert_eq!(
        client.state().as_deref(),
        Some("failed"),
        "{}{}",
        client.status_text(),
        context()
    );
    let error = client.status_text().to_lowercase();
    assert!(
        error.contains("no_proposal_chosen") || error.contains("no acceptable proposal"),
        "{}{}",
        client.status_text(),
        context()
    );
    let log = charon.log();
    assert!(
        log.contains("received proposals unacceptable") && log.contains("N(NO_PROP)"),
        "{}",
        context()
    );
    assert!(charon.list_sas().unwrap().is_empty());
    let exit = client.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
}

/// strongSwan dials our gateway by IP address with `remote.id = 203.0.113.1` (strongSwan
/// parses that as an ID_IPV4_ADDR identity and requires the same type in IDr, as Apple's
/// native client does with a Remote ID). Certificate from `aovpn pki issue --name
/// 203.0.113.1` (dNSName + iPAddress SAN); `identity_id` is the gateway's `identity.id`.
fn strongswan_dials_our_gateway_by_ip(prefix: &str, identity_id: Option<&str>) {
    let gw_ip = lab::GATEWAY_WAN_ROUTED.to_string();
    let lab = Lab::new(prefix, PkiOptions::new(&gw_ip));
    let mut opts = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    opts.id = identity_id.map(str::to_owned);
    let gw = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw"), &opts).unwrap();
    let charon = Charon::start(&lab.topo.client, &lab.dir("cl")).unwrap();
    let conf = SwanctlConf::new()
        .connection(
            Connection::initiator("ao")
                .remote_addrs(&gw_ip)
                .proposals(GCM_ECP384.ike)
                .local_cert(&lab.pki.machine_cert)
                .remote_id(&gw_ip)
                .remote_cacert(&lab.pki.ca_cert)
                .child(
                    ChildConfig::new("ao")
                        .remote_ts(lab::VNET_TS)
                        .esp_proposals(GCM_ECP384.esp)
                        .set("start_action", "none"),
                ),
        )
        .private_key(&lab.pki.machine_key);
    charon.configure(&conf).unwrap();
    charon.load_all().unwrap();
    if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
        panic!(
            "strongSwan with remote.id = {gw_ip} could not connect (gateway identity.id = \
             {identity_id:?}): {e}{}",
            diag(&charon, &[("aovpn gateway", gw.log())])
        );
    }
    let sas = charon.list_sas().unwrap();
    assert_eq!(sas[0].remote_id, gw_ip, "{sas:?}");
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
}

#[test]
fn strongswan_client_dials_our_gateway_by_ip_with_explicit_identity() {
    strongswan_dials_our_gateway_by_ip("isip", Some("203.0.113.1"));
}

fn fragment_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("fragment") || l.contains("sending issuer cert"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// RSA-4096 certificates below an intermediate CA make IKE_AUTH larger than 1280 bytes: both
/// directions must use RFC 7383 fragments, and strongSwan's log must show them.
#[test]
fn ike_fragmentation_with_rsa4096_and_intermediate_both_ways() {
    let lab = Lab::new(
        "isfr",
        PkiOptions::new(GATEWAY_NAME)
            .key(PkiKey::Rsa4096)
            .intermediate(true),
    );
    assert!(lab.pki.intermediate_cert.is_some());
    assert_eq!(Pki::split_chain(&lab.pki.machine_cert).unwrap().len(), 2);

    // strongSwan client -> our gateway.
    {
        let gw = GatewayProcess::start(
            bin(),
            &lab.topo.gateway,
            &lab.dir("gw"),
            &GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into()),
        )
        .unwrap();
        let charon = Charon::start(&lab.topo.client, &lab.dir("sw-cl")).unwrap();
        strongswan_client_round(&lab, &gw, &charon, &GCM_ECP384);
        let log = charon.log();
        eprintln!("strongSwan client:\n{}", fragment_lines(&log));
        assert!(
            log.contains("splitting IKE message") && log.contains("received fragment"),
            "strongSwan client log shows no fragments both ways{}",
            diag(&charon, &[("aovpn gateway", gw.log())])
        );
    }
    // Our client -> strongSwan gateway.
    {
        let charon = Charon::start(&lab.topo.gateway, &lab.dir("sw-gw")).unwrap();
        our_client_round(&lab, &charon, &GCM_ECP384, None, "frag");
        let log = charon.log();
        eprintln!("strongSwan gateway:\n{}", fragment_lines(&log));
        assert!(
            log.contains("splitting IKE message") && log.contains("received fragment"),
            "strongSwan gateway log shows no fragments both ways{}",
            diag(&charon, &[])
        );
    }
}

/// Rekeying initiated by strongSwan (Child SA after 4 s, IKE SA after 7 s, no jitter): the
/// tunnel keeps carrying traffic on the new SAs. `strongswan_is_client` picks the direction.
fn strongswan_rekeys(prefix: &str, strongswan_is_client: bool) {
    let lab = Lab::new(prefix, PkiOptions::new(GATEWAY_NAME));
    // Hard lifetimes well beyond the test, so that only rekeying (never expiry) happens.
    let rekey = |c: Connection| {
        c.set("rekey_time", "7s")
            .set("over_time", "60s")
            .set("rand_time", "0s")
    };
    let child_rekey = |c: ChildConfig| {
        c.set("rekey_time", "4s")
            .set("life_time", "60s")
            .set("rand_time", "0s")
    };
    let (charon, ours, ike_name) = if strongswan_is_client {
        let gw = GatewayProcess::start(
            bin(),
            &lab.topo.gateway,
            &lab.dir("gw"),
            &GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into()),
        )
        .unwrap();
        let charon = Charon::start(&lab.topo.client, &lab.dir("sw")).unwrap();
        let conf = SwanctlConf::new()
            .connection(rekey(
                Connection::initiator("ao")
                    .remote_addrs(&lab.gateway_wan())
                    .proposals(GCM_ECP384.ike)
                    .local_cert(&lab.pki.machine_cert)
                    .remote_id(GATEWAY_NAME)
                    .remote_cacert(&lab.pki.ca_cert)
                    .child(child_rekey(
                        ChildConfig::new("ao")
                            .remote_ts(lab::VNET_TS)
                            .esp_proposals(GCM_ECP384.esp)
                            .set("start_action", "none"),
                    )),
            ))
            .private_key(&lab.pki.machine_key);
        charon.configure(&conf).unwrap();
        charon.load_all().unwrap();
        if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
            panic!(
                "initiate: {e}{}",
                diag(&charon, &[("aovpn gateway", gw.log())])
            );
        }
        (charon, Ours::Gateway(gw), "ao")
    } else {
        let charon = Charon::start(&lab.topo.gateway, &lab.dir("sw")).unwrap();
        let certs = Pki::split_chain(&lab.pki.gateway_cert).unwrap();
        let conf = SwanctlConf::new()
            .connection(rekey(
                Connection::responder("p2s")
                    .local_addrs(&lab.gateway_wan())
                    .pools("p2s-pool")
                    .proposals(GCM_ECP384.ike)
                    .local_id(GATEWAY_NAME)
                    .local_cert(&certs[0])
                    .remote_cacert(&lab.pki.ca_cert)
                    .child(child_rekey(
                        ChildConfig::new("p2s")
                            .local_ts(lab::VNET_TS)
                            .esp_proposals(GCM_ECP384.esp),
                    )),
            ))
            .pool("p2s-pool", lab::CLIENT_POOL)
            .private_key(&lab.pki.gateway_key);
        charon.configure(&conf).unwrap();
        charon.load_all().unwrap();
        let client = lab.our_machine_client();
        assert_eq!(
            client.state().as_deref(),
            Some("connected"),
            "{}",
            diag(&charon, &[("aovpn connect", client.log())])
        );
        (charon, Ours::Client(client), "p2s")
    };
    let context = || diag(&charon, &[("ours", ours.log())]);
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));

    // Until both rekeys (due at 4 s and 7 s) are done, with traffic flowing during them: the
    // wait ends on strongSwan's own log lines, not on a window a busy machine may overrun.
    let child_rekeyed = format!("CHILD_SA {ike_name}{{2}} established");
    let ike_rekeyed = format!("IKE_SA {ike_name}[2] rekeyed");
    let rekeyed = wait_until(Duration::from_secs(60), || {
        let _ = lab
            .topo
            .client
            .exec(["ping", "-c", "1", "-W", "1", &lab::VNET_HOST.to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        let log = charon.log();
        log.contains(&child_rekeyed) && log.contains(&ike_rekeyed)
    });
    let log = charon.log();
    assert!(
        rekeyed,
        "Child SA rekey: {}, IKE SA rekey: {}{}",
        log.contains(&child_rekeyed),
        log.contains(&ike_rekeyed),
        context()
    );
    ping(&lab.topo.client, lab::VNET_HOST)
        .unwrap_or_else(|e| panic!("after rekey: {e}{}", context()));
    ping(&lab.topo.vnet, "172.16.201.1")
        .unwrap_or_else(|e| panic!("after rekey: {e}{}", context()));
    // The short lifetimes keep rekeying: a Child SA installed a moment ago has carried
    // nothing yet, so traffic goes on until the installed one has.
    let mut sas = Vec::new();
    let carried = wait_until(Duration::from_secs(10), || {
        let _ = lab
            .topo
            .client
            .exec(["ping", "-c", "1", "-W", "1", &lab::VNET_HOST.to_string()]);
        sas = charon.list_sas().unwrap_or_default();
        sas.len() == 1
            && sas[0]
                .children
                .iter()
                .any(|c| c.state == "INSTALLED" && c.packets_in > 0)
    });
    assert!(carried, "{sas:?}{}", context());
    assert_eq!(sas[0].state, "ESTABLISHED", "{sas:?}");
    let installed: Vec<_> = sas[0]
        .children
        .iter()
        .filter(|c| c.state == "INSTALLED")
        .collect();
    assert_eq!(installed.len(), 1, "{sas:?}{}", context());
    if let Ours::Client(c) = &ours {
        assert_eq!(c.state().as_deref(), Some("connected"), "{}", context());
    }
    if let Ours::Gateway(gw) = &ours {
        assert_eq!(gateway_clients(gw).len(), 1, "{}", gw.status_text());
    }
}

enum Ours {
    Gateway(GatewayProcess),
    Client(ClientProcess),
}

impl Ours {
    fn log(&self) -> String {
        match self {
            Ours::Gateway(g) => g.log(),
            Ours::Client(c) => c.log(),
        }
    }
}

#[test]
fn strongswan_client_rekeys_with_our_gateway() {
    strongswan_rekeys("isrg", true);
}

#[test]
fn strongswan_gateway_rekeys_with_our_client() {
    strongswan_rekeys("isrc", false);
}

// ---- Regressions: defects found when the product was tried as a new user and as an attacker. ----

/// Without `identity.id` the gateway takes its IKE identity from the certificate's first
/// dNSName. For a certificate issued for an IP address that must be an ID_IPV4_ADDR identity
/// (the certificate also carries the iPAddress SAN), not ID_FQDN "203.0.113.1".
#[test]
fn strongswan_client_dials_our_gateway_by_ip_with_default_identity() {
    strongswan_dials_our_gateway_by_ip("isid", None);
}

/// A strongSwan client authenticates with its certificate's subject DN as ID (its default).
/// The gateway's status (and log) must show that identity readably, as it does for FQDN and
/// RFC822 identities; today it shows "dn:33 bytes".
#[test]
fn our_gateway_shows_a_distinguished_name_identity_readably() {
    strongswan_client_with_dn_identity("isdn", None);
}

/// The same DN written in swanctl.conf (`id = "CN=..."`): strongSwan encodes it with string
/// types of its own choosing, not the certificate's bytes; the gateway compares names as
/// RFC 5280 7.1 says and accepts it (byte comparison refused it with AUTHENTICATION_FAILED).
#[test]
fn strongswan_client_with_a_configured_dn_identity_is_accepted() {
    strongswan_client_with_dn_identity("isdc", Some("CN=client1.corp.example"));
}

fn strongswan_client_with_dn_identity(prefix: &str, local_id: Option<&str>) {
    let lab = Lab::new(prefix, PkiOptions::new(GATEWAY_NAME));
    let gw = GatewayProcess::start(
        bin(),
        &lab.topo.gateway,
        &lab.dir("gw"),
        &GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into()),
    )
    .unwrap();
    let charon = Charon::start(&lab.topo.client, &lab.dir("cl")).unwrap();
    charon
        .configure(&lab.strongswan_client_conf_as(&GCM_ECP384, local_id))
        .unwrap();
    charon.load_all().unwrap();
    charon
        .initiate("ao", "ao", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}{}", diag(&charon, &[("aovpn gateway", gw.log())])));
    assert!(wait_until(Duration::from_secs(5), || gateway_clients(&gw)
        .len()
        == 1));
    let identity = gateway_clients(&gw)[0]["identity"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        identity.contains("CN=client1.corp.example"),
        "gateway status identity of a DN peer: {identity:?}\n{}",
        gw.status_text()
    );
}

/// A Windows user tunnel (ProfileXML UserMethod Eap, type 13) authenticates with EAP-TLS inside
/// IKE_AUTH (no AUTH payload in the first IKE_AUTH request). strongSwan's eap-tls client does
/// the same; our gateway must run EAP-TLS with it, as Azure's gateway does for Windows.
#[test]
fn strongswan_eap_tls_client_to_our_gateway() {
    let lab = Lab::new("iseap", PkiOptions::new(GATEWAY_NAME));
    let gw = GatewayProcess::start(
        bin(),
        &lab.topo.gateway,
        &lab.dir("gw"),
        &GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into()),
    )
    .unwrap();
    // strongSwan 5.9 offers TLS 1.2 unless told otherwise (libtls.version_max). Its TLS 1.3
    // EAP-TLS predates RFC 9190 (no commitment message, another key derivation); as a client
    // against an RFC 9190 server (ours) charon 5.9.8 dies with a critical signal in libtls, so
    // only its default is run here (our client handles its 1.3 gateway side: below).
    #[allow(clippy::single_element_loop)] // the TLS versions strongSwan 5.9 does correctly
    for (version, settings) in [("TLS 1.2", "")] {
        let dir = lab.dir(&format!("cl-{}", &version[4..]));
        let charon =
            Charon::start_with_settings(&lab.topo.client, &dir, "eap-identity eap-tls", settings)
                .unwrap();
        let user = &lab.pki.options.user_name;
        let conf = SwanctlConf::new()
            .connection(
                Connection::initiator("ao")
                    .remote_addrs(&lab.gateway_wan())
                    .proposals(GCM_ECP384.ike)
                    .local_cert(&lab.pki.user_cert)
                    .set_local("auth", "eap-tls")
                    .set_local("id", user)
                    .set_local("eap_id", user)
                    .remote_id(GATEWAY_NAME)
                    .remote_cacert(&lab.pki.ca_cert)
                    .child(
                        ChildConfig::new("ao")
                            .remote_ts(lab::VNET_TS)
                            .esp_proposals(GCM_ECP384.esp)
                            .set("start_action", "none"),
                    ),
            )
            .private_key(&lab.pki.user_key);
        charon.configure(&conf).unwrap();
        let loaded = charon.load_all().unwrap();
        assert!(loaded.contains("loaded connection 'ao'"), "{loaded}");
        if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
            panic!(
                "strongSwan EAP-TLS client ({version}) refused: {e}{}",
                diag(&charon, &[("aovpn gateway", gw.log())])
            );
        }
        ping(&lab.topo.client, lab::VNET_HOST).unwrap();
        let clients = gateway_clients(&gw);
        let auth = clients
            .iter()
            .find(|c| {
                c["identity"]
                    .as_str()
                    .is_some_and(|i| i.contains(user.as_str()))
            })
            .map(|c| c["auth"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        assert!(
            auth.starts_with(&format!("EAP-TLS ({version}")),
            "{version}: {auth}\n{clients:?}"
        );
        drop(charon);
        assert!(
            wait_until(Duration::from_secs(30), || gateway_clients(&gw).is_empty()),
            "{version}: the gateway kept the session"
        );
    }
}

/// strongSwan 5.9 negotiates TLS 1.3 in EAP-TLS only when allowed to.
const TLS13: &str = "libtls {\n    version_max = 1.3\n}\n";

/// A user tunnel profile as Windows has it: UserMethod Eap with EAP-TLS, the server checked
/// by name.
fn eap_profile_xml(server_name: &str) -> String {
    format!(
        r#"<VPNProfile><NativeProfile><Servers>{GATEWAY_NAME}</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
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
<ServerValidation><DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation>
<ServerNames>{server_name}</ServerNames></ServerValidation>
<DifferentUsername>false</DifferentUsername></EapType></Eap></Config></EapHostConfig>
</Configuration></Eap></Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType></NativeProfile>
<Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize></Route>
<AlwaysOn>true</AlwaysOn></VPNProfile>"#
    )
}

/// Our client with a UserMethod Eap profile -> a strongSwan gateway that requires EAP-TLS
/// (`remote.auth = eap-tls`), with TLS 1.2 and 1.3; a ServerNames the gateway's certificate
/// does not carry is refused by our client.
#[test]
fn our_eap_tls_client_to_strongswan_gateway() {
    let lab = Lab::new("iseapc", PkiOptions::new(GATEWAY_NAME));
    for (version, settings) in [("TLS 1.2", ""), ("TLS 1.3", TLS13)] {
        let dir = lab.dir(&format!("gw-{}", &version[4..]));
        let charon =
            Charon::start_with_settings(&lab.topo.gateway, &dir, "eap-identity eap-tls", settings)
                .unwrap();
        let conf = lab.strongswan_gateway_conf_auth(&GCM_ECP384, Some("eap-tls"));
        charon.configure(&conf).unwrap();
        let loaded = charon.load_all().unwrap();
        assert!(loaded.contains("loaded connection 'p2s'"), "{loaded}");
        for (server_name, accepted) in [("nps.corp.example", false), (GATEWAY_NAME, true)] {
            let name = format!("eap-{}-{}", &version[4..], accepted);
            let file = lab.dir(&format!("{name}.xml"));
            std::fs::write(&file, eap_profile_xml(server_name)).unwrap();
            let opts = ClientOpts::new(
                GATEWAY_NAME,
                &lab.pki.user_cert,
                &lab.pki.user_key,
                &lab.pki.ca_cert,
            )
            .name(&name)
            .profile(&file);
            let mut client =
                ClientProcess::start(bin(), &lab.topo.client, &lab.dir(&name), &opts).unwrap();
            let context = || {
                diag(
                    &charon,
                    &[(&format!("aovpn connect ({name})"), client.log())],
                )
            };
            if !accepted {
                assert_ne!(
                    client.state().as_deref(),
                    Some("connected"),
                    "{}",
                    context()
                );
                assert!(
                    client.log().contains("nps.corp.example"),
                    "the refusal names the expected server{}",
                    context()
                );
                let _ = client.stop();
                continue;
            }
            assert_eq!(
                client.state().as_deref(),
                Some("connected"),
                "{version}: {}{}",
                client.status_text(),
                context()
            );
            let ours: Value = serde_json::from_str(&client.status_text()).unwrap();
            assert!(
                ours["eap_tls"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(version)),
                "{version}: {ours}"
            );
            // strongSwan 5.9's TLS 1.3 is the pre-RFC 9190 variant our client recognises.
            let compat = ours["eap_tls"]
                .as_str()
                .is_some_and(|t| t.contains("no RFC 9190 commitment"));
            assert_eq!(compat, version == "TLS 1.3", "{ours}");
            let sa = charon
                .wait_for_sa("p2s", Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{e}{}", context()));
            assert_sa(&sa, &GCM_ECP384, &context);
            ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
            let status = client.stop().unwrap();
            assert!(status.success(), "{name}: exit {status}\n{}", client.log());
        }
    }
}

/// A ping stream in the background: `ping -i 0.2 -c COUNT`; returns (sent, received) when done.
fn ping_stream(ns: &Netns, dest: &str, count: u32) -> std::thread::JoinHandle<(u32, u32)> {
    let child = ns
        .command([
            "ping",
            "-n",
            "-i",
            "0.2",
            "-W",
            "1",
            "-c",
            &count.to_string(),
            dest,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "60 packets transmitted, 57 received, ..."
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default()
            .to_owned();
        let num = |word: &str| -> u32 {
            line.split(',')
                .find(|p| p.contains(word))
                .and_then(|p| p.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (num("transmitted"), num("received"))
    })
}

/// A strongSwan client with MOBIKE (its default) changes its address under a ping stream: it
/// sends UPDATE_SA_ADDRESSES, our gateway moves the IKE SA and the Child SA, echoes COOKIE2 and
/// answers NAT detection, and the tunnel keeps carrying pings on the same SAs.
#[test]
fn strongswan_client_roams_with_mobike_and_keeps_its_tunnel() {
    let lab = Lab::routed("ismob", PkiOptions::new(GATEWAY_NAME), false, GATEWAY_NAME);
    let opts = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    let gw = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw"), &opts).unwrap();
    let client = &lab.topo.client;
    // Deleting the primary address keeps the second one (and the default route).
    client
        .sysctl("net.ipv4.conf.all.promote_secondaries", "1")
        .unwrap();
    client
        .sysctl(
            &format!("net.ipv4.conf.{}.promote_secondaries", lab::CLIENT_IF),
            "1",
        )
        .unwrap();
    let charon = Charon::start(client, &lab.dir("cl")).unwrap();
    charon
        .configure(&lab.strongswan_client_conf(&GCM_ECP384))
        .unwrap();
    charon.load_all().unwrap();
    let context = || diag(&charon, &[("aovpn gateway", gw.log())]);
    if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
        panic!("initiate failed: {e}{}", context());
    }
    ping(client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
    let before = charon.list_sas().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || gateway_clients(&gw).len() == 1),
        "{}",
        gw.status_text()
    );
    let first_remote = gateway_clients(&gw)[0]["remote"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(first_remote.starts_with("198.51.100.2:"), "{first_remote}");

    let stream = ping_stream(client, &lab::VNET_HOST.to_string(), 75);
    std::thread::sleep(Duration::from_secs(3));
    client
        .ip(["addr", "add", "198.51.100.3/24", "dev", lab::CLIENT_IF])
        .unwrap();
    client
        .ip(["addr", "del", "198.51.100.2/24", "dev", lab::CLIENT_IF])
        .unwrap();
    let moved = wait_until(Duration::from_secs(10), || {
        gateway_clients(&gw)
            .first()
            .and_then(|c| c["remote"].as_str().map(|r| r.starts_with("198.51.100.3:")))
            .unwrap_or(false)
    });
    assert!(
        moved,
        "our gateway did not follow:\n{}{}",
        gw.status_text(),
        context()
    );
    let (sent, received) = stream.join().unwrap();
    report(&format!(
        "MOBIKE roam of a strongSwan client: {received}/{sent} pings answered across the address change ({} lost)",
        sent - received
    ));
    // The pings of the last seconds all crossed the tunnel on the new address.
    ping(client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
    assert!(
        sent - received <= 10,
        "{received}/{sent} answered{}",
        context()
    );
    // The same IKE SA, moved (not re-established: same virtual IP), and charon says it used
    // MOBIKE. (strongSwan with kernel-libipsec then rekeys the Child SA: its userspace SAs
    // cannot change addresses in place.)
    let after = charon.list_sas().unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].local_host, "198.51.100.3", "{after:?}");
    assert_eq!(after[0].local_vips, before[0].local_vips, "{after:?}");
    let log = charon.log();
    assert!(
        !log.contains("COOKIE2 mismatch"),
        "strongSwan refused our answer:{}",
        context()
    );
    assert!(
        log.contains("N(UPD_SA_ADDR)")
            && log.contains("parsed INFORMATIONAL response")
            && log.contains("N(COOKIE2) ]"),
        "no UPDATE_SA_ADDRESSES exchange with a COOKIE2 echo:{}",
        context()
    );
    assert!(
        !log.contains("establishing IKE_SA") && log.matches("initiating IKE_SA").count() == 1,
        "strongSwan re-established instead of moving:{}",
        context()
    );
}

/// `aovpn doctor` against a strongSwan gateway: a good setup passes every check (handshake,
/// UDP 4500, the path); with strongSwan limited to a suite we do not offer, the doctor's
/// stateless probes find which of the common suites it takes; and charon keeps no IKE SA
/// from any of the probes.
#[test]
fn doctor_against_a_strongswan_gateway() {
    let lab = Lab::new("isdoc", PkiOptions::new(GATEWAY_NAME));
    let charon = Charon::start(&lab.topo.gateway, &lab.dir("gw")).unwrap();
    let doctor = || {
        let out = lab
            .topo
            .client
            .exec([
                bin().to_str().unwrap(),
                "doctor",
                "--server",
                GATEWAY_NAME,
                "--cert",
                lab.pki.machine_cert.to_str().unwrap(),
                "--key",
                lab.pki.machine_key.to_str().unwrap(),
                "--ca",
                lab.pki.ca_cert.to_str().unwrap(),
            ])
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let line = |report: &str, check: &str| {
        report
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {check} line in\n{report}"))
    };
    charon
        .configure(&lab.strongswan_gateway_conf(&GCM_ECP384))
        .unwrap();
    charon.load_all().unwrap();
    let (code, report) = doctor();
    assert_eq!(code, Some(0), "{report}{}", diag(&charon, &[]));
    let ike = line(&report, "ike");
    assert!(ike.starts_with("ok") && ike.contains(", ESP "), "{report}");
    assert!(line(&report, "udp").starts_with("ok"), "{report}");
    assert!(
        line(&report, "path").contains("1500 bytes or more cross"),
        "{report}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || charon
            .list_sas()
            .is_ok_and(|s| s.is_empty())),
        "strongSwan kept an SA of the doctor's{}",
        diag(&charon, &[])
    );

    // strongSwan limited to `ike` and `esp`: the doctor finds a problem; its ike line.
    let limited_to = |ike: &'static str, esp: &'static str| {
        let suite = Suite {
            ike,
            esp,
            ike_listed: "",
            esp_listed: "",
        };
        charon
            .configure(&lab.strongswan_gateway_conf(&suite))
            .unwrap();
        charon.load_all().unwrap();
        let (code, report) = doctor();
        assert_eq!(code, Some(1), "{report}");
        (line(&report, "ike"), report)
    };
    let (ike, report) = limited_to("aes256-sha384-ecp384", "aes256gcm16");
    assert!(
        ike.contains("NO_PROPOSAL_CHOSEN")
            && ike.contains("the gateway's, of 13 common suites asked: aes256-sha384-ecp384"),
        "{report}{}",
        diag(&charon, &[])
    );
    assert!(
        charon.list_sas().is_ok_and(|s| s.is_empty()),
        "{}",
        diag(&charon, &[])
    );

    // Our IKE proposals taken, none of our ESP ones: the Child SA's refusal is named.
    let (ike, report) = limited_to(GCM_ECP384.ike, "aes192-sha384");
    assert!(
        ike.contains("the Child SA was refused")
            && ike.contains("takes our IKE proposals but none of our ESP proposals"),
        "{report}{}",
        diag(&charon, &[])
    );
}

/// A second gateway of the same service in the gateway namespace: its own address on the WAN
/// link, pool, TUN device and state.
const SECOND_GATEWAY: &str = "203.0.113.3";
const SECOND_POOL: &str = "172.16.202.0/24";

/// `aovpn gateway drain --to` on one gateway (RFC 5685 IKE redirect): strongSwan's client and
/// ours, dialling it, end up on the other gateway without anyone touching them, and the
/// draining gateway keeps no state for them. `drain --stop` serves new clients again.
#[test]
fn both_clients_follow_a_draining_gateways_redirect() {
    let lab = Lab::new("isrd", PkiOptions::new(GATEWAY_NAME));
    lab.topo
        .gateway
        .ip([
            "addr",
            "add",
            &format!("{SECOND_GATEWAY}/24"),
            "dev",
            lab::GATEWAY_WAN_IF,
        ])
        .unwrap();
    let mut first = GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into());
    first.state_dir = Some(lab.dir("gw1-state"));
    let gw1 = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw1"), &first).unwrap();
    let mut second = GatewayOpts::new(&lab.pki, SECOND_GATEWAY.parse().unwrap());
    second.state_dir = Some(lab.dir("gw2-state"));
    second.pool = SECOND_POOL.into();
    second.interface = "aovpn-gw2".into();
    let gw2 = GatewayProcess::start(bin(), &lab.topo.gateway, &lab.dir("gw2"), &second).unwrap();

    let drain = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(["gateway", "drain"])
            .args(args)
            .arg("--socket")
            .arg(gw1.admin_socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = drain(&["--to", SECOND_GATEWAY]);
    assert!(said.contains(SECOND_GATEWAY), "{said}");

    // strongSwan's charon follows redirects by default (charon.follow_redirects).
    let charon = Charon::start(&lab.topo.client, &lab.dir("sw")).unwrap();
    charon
        .configure(&lab.strongswan_client_conf(&GCM_ECP384))
        .unwrap();
    charon.load_all().unwrap();
    let context = || {
        diag(
            &charon,
            &[("gateway 1", gw1.log()), ("gateway 2", gw2.log())],
        )
    };
    if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
        panic!("initiate failed: {e}{}", context());
    }
    let sa = charon.wait_for_sa("ao", Duration::from_secs(10)).unwrap();
    assert_eq!(sa.remote_host, SECOND_GATEWAY, "{sa:?}{}", context());
    assert_eq!(sa.remote_id, GATEWAY_NAME);
    let vip = sa.local_vips.first().expect("no virtual IP").clone();
    assert!(vip.starts_with("172.16.202."), "{vip}{}", context());

    // Ours, dialling the same name, follows too and keeps checking the name it dialled.
    let client = lab.our_machine_client();
    assert_eq!(
        client.state().as_deref(),
        Some("connected"),
        "{}\n{}",
        client.log(),
        context()
    );
    let ours = client.virtual_ip().unwrap().to_string();
    assert!(ours.starts_with("172.16.202."), "{ours}");
    assert!(client.log().contains("redirected"), "{}", client.log());
    let ping = lab
        .topo
        .client
        .exec(["ping", "-c", "2", "-W", "2", &lab::VNET_HOST.to_string()])
        .unwrap();
    assert!(ping.status.success(), "{}", client.log());

    // The second gateway holds both; the first, none.
    let deadline = Instant::now() + Duration::from_secs(5);
    let held = || {
        let status: Value = serde_json::from_str(&gw2.status_text()).unwrap_or_default();
        status["clients"].as_array().map_or(0, Vec::len)
    };
    while held() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(held(), 2, "{}", gw2.status_text());
    let status1: Value = serde_json::from_str(&gw1.status_text()).unwrap();
    assert_eq!(
        status1["clients"].as_array().map(Vec::len),
        Some(0),
        "{status1}"
    );
    assert!(gw1.log().contains("draining"), "{}", gw1.log());

    // Drain over: a new client is served by the first gateway again.
    drain(&["--stop"]);
    charon.terminate("ao").unwrap();
    if let Err(e) = charon.initiate("ao", "ao", Duration::from_secs(20)) {
        panic!("initiate after the drain failed: {e}{}", context());
    }
    let sa = charon.wait_for_sa("ao", Duration::from_secs(10)).unwrap();
    assert_eq!(sa.remote_host, lab.gateway_wan(), "{sa:?}");
}
