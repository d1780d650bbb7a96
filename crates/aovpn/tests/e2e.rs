//! End-to-end tests of the `aovpn` binary, ours on both ends, in the routed lab with NAT:
//!
//! ```text
//! [client] 198.51.100.2 -- [internet, masquerade] 203.0.113.254 -- 203.0.113.1 [gateway]
//!                                                          10.1.0.1 -- 10.1.0.10 [vnet]
//! ```
//!
//! Every test builds its own namespaces (removed on drop, also when it fails) and stops every
//! process it started by pid. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::aovpn::{ClientOpts, ClientProcess, GatewayOpts, GatewayProcess, Pki, PkiOptions};
use testkit::netns::{Netns, Topology, lab};

const GATEWAY_NAME: &str = "vpn.e2e.example";
const TRANSFER_BYTES: u64 = 100 * 1024 * 1024;

mod common;

use common::{Lab, bin, report};

impl Lab {
    fn new(prefix: &str) -> Lab {
        Lab::routed(prefix, PkiOptions::new(GATEWAY_NAME), true, GATEWAY_NAME)
    }

    fn gateway_opts(&self) -> GatewayOpts {
        let mut opts = GatewayOpts::new(&self.pki, self.topo.gateway_wan().into());
        opts.state_dir = Some(self.dir("gw-state"));
        opts
    }

    fn start_gateway(&self, opts: &GatewayOpts) -> GatewayProcess {
        GatewayProcess::start(bin(), &self.topo.gateway, &self.dir("gw"), opts).unwrap()
    }

    fn connect(&self, cert: &Path, key: &Path, name: &str) -> ClientProcess {
        ClientProcess::start(
            bin(),
            &self.topo.client,
            &self.dir("cl"),
            &ClientOpts::new(GATEWAY_NAME, cert, key, &self.pki.ca_cert).name(name),
        )
        .unwrap()
    }

    fn connect_machine(&self, name: &str) -> ClientProcess {
        self.connect(&self.pki.machine_cert, &self.pki.machine_key, name)
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad status JSON ({e}): {text}"))
}

fn gateway_clients(gw: &GatewayProcess) -> Vec<Value> {
    json(&gw.status_text())["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn assert_connected(client: &ClientProcess, gw: &GatewayProcess) -> Ipv4Addr {
    assert_eq!(
        client.state().as_deref(),
        Some("connected"),
        "client status:\n{}\n--- client log\n{}\n--- gateway log\n{}",
        client.status_text(),
        client.log(),
        gw.log()
    );
    match client.virtual_ip() {
        Some(IpAddr::V4(vip)) => {
            assert_eq!(vip.octets()[..3], [172, 16, 201], "{vip} not from the pool");
            vip
        }
        other => panic!("no IPv4 virtual IP: {other:?}\n{}", client.status_text()),
    }
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

/// Links, IPv4 addresses and IPv4 routes (all tables) of a namespace, to compare before/after.
/// IPv6 is left out: the kernel's own link-local DAD changes it in between (`tentative`), and
/// the tunnels here are IPv4 only (a leftover TUN would still show in the link list).
fn net_state(ns: &Netns) -> String {
    let addr = ns.ip(["-4", "addr"]).unwrap();
    let routes = ns.ip(["-4", "route", "show", "table", "all"]).unwrap();
    let links = ns.ip(["-o", "link"]).unwrap();
    format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&links.stdout),
        String::from_utf8_lossy(&addr.stdout),
        String::from_utf8_lossy(&routes.stdout)
    )
}

/// Pings both ways, 100 MB each way checksummed, the NAT seen by the gateway, and a clean
/// teardown of client and gateway.
#[test]
fn tunnel_carries_traffic_through_nat_and_tears_down_cleanly() {
    let lab = Lab::new("e2etr");
    let topo = &lab.topo;
    let gw_before = net_state(&topo.gateway);
    let mut gw = lab.start_gateway(&lab.gateway_opts());
    let cl_before = net_state(&topo.client);

    let mut client = lab.connect_machine("machine");
    let vip = assert_connected(&client, &gw);

    // The gateway saw the client from the NAT's public address.
    let clients = gw
        .wait_status(Duration::from_secs(5), |t| t.contains(&vip.to_string()))
        .map(|t| json(&t)["clients"].as_array().cloned().unwrap_or_default())
        .unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let remote: SocketAddr = clients[0]["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip(), IpAddr::V4(lab::INTERNET_GATEWAY_SIDE));
    assert_eq!(remote.ip(), IpAddr::V4(topo.client_as_seen_by_gateway()));
    assert_eq!(
        clients[0]["virtual_ip"].as_str(),
        Some(vip.to_string().as_str())
    );

    // The pushed DNS server arrived.
    let dns = json(&client.status_text())["dns"].clone();
    assert_eq!(
        dns,
        serde_json::json!(["10.1.0.53"]),
        "{}",
        client.status_text()
    );

    // Through the tunnel and back out to the client (manage out).
    ping(&topo.client, lab::VNET_HOST).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    });
    ping(&topo.vnet, vip).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    });
    // The client has no route to 10.1.0.0/16 other than the tunnel.
    let route = topo.client.ip(["route", "get", "10.1.0.10"]).unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(route.contains("dev aovpn0"), "{route}");

    let up = common::checked_transfer(
        TRANSFER_BYTES,
        &topo.vnet,
        SocketAddr::new(lab::VNET_HOST.into(), 5201),
        &topo.client,
        false,
        1,
    );
    let down = common::checked_transfer(
        TRANSFER_BYTES,
        &topo.vnet,
        SocketAddr::new(lab::VNET_HOST.into(), 5202),
        &topo.client,
        true,
        2,
    );
    eprintln!("100 MB checksummed: client->vnet {up:.0} Mbit/s, vnet->client {down:.0} Mbit/s");

    // Client teardown: goodbye to the gateway, TUN, addresses and routes gone.
    let status = client.stop().unwrap();
    assert!(status.success(), "client exit {status}\n{}", client.log());
    assert_eq!(client.state().as_deref(), Some("disconnected"));
    let cl_after = net_state(&topo.client);
    assert_eq!(
        cl_before, cl_after,
        "client namespace changed after disconnect"
    );
    gw.wait_status(Duration::from_secs(5), |t| {
        serde_json::from_str::<Value>(t)
            .ok()
            .and_then(|v| v["clients"].as_array().map(Vec::is_empty))
            .unwrap_or(false)
    })
    .unwrap();

    // Gateway teardown: TUN and its routes gone.
    let status = gw.stop().unwrap();
    assert!(status.success(), "gateway exit {status}\n{}", gw.log());
    let gw_after = net_state(&topo.gateway);
    assert_eq!(gw_before, gw_after, "gateway namespace changed after stop");
    assert!(!gw_after.contains("aovpn-gw"), "{gw_after}");
    assert!(topo.gateway.pids().unwrap().is_empty());
    assert!(topo.client.pids().unwrap().is_empty());
}

/// The same identity gets the same address after a reconnect and after a gateway restart.
#[test]
fn lease_survives_reconnect_and_gateway_restart() {
    let lab = Lab::new("e2els");
    let opts = lab.gateway_opts();
    let mut gw = lab.start_gateway(&opts);

    // Two identities, alternating, so that a plain "first free address" pool would not pass.
    // (One at a time: both would install the same 10.1.0.0/16 route in the client namespace.)
    let connected = |cert: &Path, key: &Path, name: &str| {
        let mut c = lab.connect(cert, key, name);
        let vip = assert_connected(&c, &gw);
        let status = c.stop().unwrap();
        assert!(status.success(), "{}", c.log());
        gw.wait_status(Duration::from_secs(5), |t| {
            serde_json::from_str::<Value>(t)
                .ok()
                .and_then(|v| v["clients"].as_array().map(Vec::is_empty))
                .unwrap_or(false)
        })
        .unwrap();
        vip
    };
    let (ucert, ukey) = (&lab.pki.user_cert, &lab.pki.user_key);
    let (mcert, mkey) = (&lab.pki.machine_cert, &lab.pki.machine_key);
    let user_vip = connected(ucert, ukey, "user1");
    let vip = connected(mcert, mkey, "machine1");
    assert_ne!(vip, user_vip);
    assert_eq!(
        connected(ucert, ukey, "user2"),
        user_vip,
        "user's address changed"
    );
    assert_eq!(
        connected(mcert, mkey, "machine2"),
        vip,
        "new address after reconnect"
    );

    let status = gw.stop().unwrap();
    assert!(status.success(), "{}", gw.log());
    let leases = std::fs::read_to_string(lab.dir("gw-state").join("leases.json")).unwrap();
    assert!(leases.contains(&vip.to_string()), "{leases}");
    drop(gw);

    let gw = lab.start_gateway(&opts);
    let mut user_after = lab.connect(ucert, ukey, "user3");
    assert_eq!(assert_connected(&user_after, &gw), user_vip);
    user_after.stop().unwrap();
    let mut after_restart = lab.connect_machine("machine3");
    assert_eq!(
        assert_connected(&after_restart, &gw),
        vip,
        "new address after a gateway restart; leases.json:\n{leases}"
    );
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
    after_restart.stop().unwrap();
}

fn assert_refused(client: &mut ClientProcess, gw: &GatewayProcess, what: &str) {
    assert_eq!(
        client.state().as_deref(),
        Some("failed"),
        "{what} was not refused:\n{}\n--- client log\n{}\n--- gateway log\n{}",
        client.status_text(),
        client.log(),
        gw.log()
    );
    let status = json(&client.status_text());
    let error = status["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("authentication"),
        "{what}: error does not mention authentication: {error:?}\n{}",
        client.log()
    );
    let exit = client.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "{what}: client did not exit with an error: {exit:?}"
    );
    assert!(gateway_clients(gw).is_empty(), "{}", gw.status_text());
}

/// A revoked certificate and a certificate from another CA are refused; a good one is not.
#[test]
fn revoked_and_foreign_client_certificates_are_refused() {
    let lab = Lab::new("e2erv");
    let (revoked_cert, revoked_key) = lab
        .pki
        .issue_end_entity("machine", "stolen.corp.example")
        .unwrap();
    let mut opts = lab.gateway_opts();
    opts.revoked = vec![lab.pki.thumbprint(&revoked_cert).unwrap()];
    let gw = lab.start_gateway(&opts);

    let mut revoked = lab.connect(&revoked_cert, &revoked_key, "revoked");
    assert_refused(&mut revoked, &gw, "revoked certificate");
    // Refused for the right reason: the gateway names the revoked thumbprint.
    let log = gw.log();
    assert!(
        log.contains(&opts.revoked[0]) && log.contains("revoked"),
        "gateway log does not tell the revocation:\n{log}"
    );

    let other = Pki::issue(bin(), &lab.dir("other-pki"), &PkiOptions::new(GATEWAY_NAME)).unwrap();
    let mut foreign = lab.connect(&other.machine_cert, &other.machine_key, "foreign");
    assert_refused(&mut foreign, &gw, "certificate of another CA");

    // The same gateway still accepts a good client.
    let mut good = lab.connect_machine("good");
    assert_connected(&good, &gw);
    good.stop().unwrap();
}

/// Rewrites the gateway's configuration and sends it SIGHUP.
fn reload(gw: &GatewayProcess, opts: &GatewayOpts) {
    std::fs::write(gw.config_path(), opts.render(gw.workdir())).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

/// Waits for the gateway to report no client and the client to exit; the gateway's log says
/// why, with `reason`.
fn assert_cut_off(client: &mut ClientProcess, gw: &GatewayProcess, reason: &str) {
    gw.wait_status(Duration::from_secs(10), |t| {
        json(t)["clients"].as_array().is_some_and(Vec::is_empty)
    })
    .unwrap();
    let exit = client.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(exit.is_some(), "client still running:\n{}", client.log());
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains(reason) && l.contains("disconnecting")),
        "gateway log does not say {reason:?}:\n{log}"
    );
}

/// Revocation reaches sessions that authenticated before it, through the whole path: revoking
/// the issuing intermediate on SIGHUP disconnects its clients, and so does removing the root
/// they chain to. What only a restart can change is named, not silently ignored.
#[test]
fn reload_cuts_off_clients_whose_path_no_longer_validates() {
    let lab = Lab::routed(
        "e2eri",
        PkiOptions::new(GATEWAY_NAME).intermediate(true),
        true,
        GATEWAY_NAME,
    );
    let mut opts = lab.gateway_opts();
    let gw = lab.start_gateway(&opts);
    let mut client = lab.connect_machine("machine");
    assert_connected(&client, &gw);

    let intermediate = lab.pki.intermediate_cert.clone().unwrap();
    opts.revoked = vec![lab.pki.thumbprint(&intermediate).unwrap()];
    reload(&gw, &opts);
    assert_cut_off(&mut client, &gw, "revoked");

    opts.revoked.clear();
    reload(&gw, &opts);
    let mut client = lab.connect_machine("machine-again");
    assert_connected(&client, &gw);
    let other = Pki::issue(bin(), &lab.dir("other-pki"), &PkiOptions::new(GATEWAY_NAME)).unwrap();
    opts.root_cas = vec![other.ca_cert.clone()];
    opts.pool = "172.16.202.0/24".to_owned();
    reload(&gw, &opts);
    assert_cut_off(&mut client, &gw, "not trusted");
    let log = gw.log();
    assert!(
        log.contains("clients.pool_v4 changed; that takes a restart"),
        "{log}"
    );
}

/// A session ends when its certificate does, as Azure's do: the client authenticated with a
/// certificate valid for a few more seconds is disconnected once it expires.
#[test]
fn a_session_ends_when_its_certificate_expires() {
    use std::time::SystemTime;
    let lab = Lab::new("e2eex");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let root = lab.pki.ca_cert.parent().unwrap().to_owned();
    let ca = pki::CertificateAuthority::from_parts(
        pki::load_certificates(&std::fs::read(root.join("ca.crt")).unwrap()).unwrap(),
        pki::PrivateKey::load(&std::fs::read(root.join("ca.key")).unwrap()).unwrap(),
    )
    .unwrap();
    const LEFT: Duration = Duration::from_secs(6);
    let day = Duration::from_secs(86_400);
    let short = ca
        .issue(
            pki::CertKind::Machine,
            "brief.corp.example",
            pki::KeyAlgorithm::P256,
            pki::Validity::days_from(SystemTime::now() + LEFT - day, 1),
        )
        .unwrap();
    let (cert, key) = (lab.dir("brief.crt"), lab.dir("brief.key"));
    std::fs::write(&cert, short.chain[0].to_pem()).unwrap();
    std::fs::write(&key, short.key.to_pem().as_bytes()).unwrap();
    let issued = Instant::now();
    let mut client = lab.connect(&cert, &key, "brief");
    assert_connected(&client, &gw);
    assert_cut_off(&mut client, &gw, "certificate expired");
    let after = issued.elapsed();
    assert!(after >= LEFT, "cut off after {after:?}, before expiry");
    common::report(&format!(
        "certificate valid for {} s more: session closed {} ms after connecting (checked every 5 s)",
        LEFT.as_secs(),
        after.as_millis()
    ));
}

/// The `Cap*:` and `NoNewPrivs:` lines of /proc/PID/status.
fn proc_status(pid: u32) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// CAP_NET_ADMIN (12) and CAP_NET_BIND_SERVICE (10).
const GATEWAY_CAPS: u64 = (1 << 12) | (1 << 10);

fn caps_of(status: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    u64::from_str_radix(&status[key], 16).unwrap()
}

/// What the README says: started as root, the running gateway holds CAP_NET_ADMIN and
/// CAP_NET_BIND_SERVICE and nothing else, in every set that matters, on every thread, with
/// no_new_privs; and it still serves clients (routes and teardown need no more).
#[test]
fn the_gateway_runs_with_two_capabilities_only() {
    let lab = Lab::new("e2ecap");
    let mut gw = lab.start_gateway(&lab.gateway_opts());
    let mut client = lab.connect_machine("machine");
    assert_connected(&client, &gw);
    for task in std::fs::read_dir(format!("/proc/{}/task", gw.pid())).unwrap() {
        let tid = task.unwrap().file_name().into_string().unwrap();
        let st: std::collections::HashMap<String, String> =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", gw.pid()))
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect();
        assert_eq!(caps_of(&st, "CapEff"), GATEWAY_CAPS, "thread {tid}: {st:?}");
        assert_eq!(caps_of(&st, "CapPrm"), GATEWAY_CAPS, "thread {tid}");
        assert_eq!(caps_of(&st, "CapBnd"), GATEWAY_CAPS, "thread {tid}");
        assert_eq!(caps_of(&st, "CapInh"), 0, "thread {tid}");
        assert_eq!(caps_of(&st, "CapAmb"), 0, "thread {tid}");
        assert_eq!(st["NoNewPrivs"], "1", "thread {tid}");
    }
    client.stop().unwrap();
    let status = gw.stop().unwrap();
    assert!(status.success(), "{}", gw.log());
    assert!(
        !net_state(&lab.topo.gateway).contains("172.16.201.0/24"),
        "routes removed without more privilege"
    );
}

/// As its systemd unit runs it: an unprivileged user with the two capabilities as ambient
/// ones. The gateway serves clients, writes its status and leases, and holds nothing more.
#[test]
fn the_gateway_runs_as_an_unprivileged_user_like_its_unit() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new("e2eusr");
    // nobody must read the configuration and keys and write its state (the package gives
    // the aovpn group read access to the gateway's files).
    let nobody = (65_534, 65_534);
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(lab.tmp.path())
        .status()
        .unwrap();
    let workdir = lab.dir("gw-nobody");
    std::fs::create_dir_all(workdir.join("state")).unwrap();
    for dir in [workdir.clone(), workdir.join("state")] {
        std::os::unix::fs::chown(&dir, Some(nobody.0), Some(nobody.1)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut opts = lab.gateway_opts();
    opts.state_dir = Some(workdir.join("state"));
    opts.run_as = Some(nobody);
    let mut gw = GatewayProcess::start(bin(), &lab.topo.gateway, &workdir, &opts).unwrap();
    let st = proc_status(gw.pid());
    assert!(st["Uid"].starts_with("65534"), "{st:?}");
    assert_eq!(caps_of(&st, "CapEff"), GATEWAY_CAPS, "{st:?}");
    assert_eq!(st["NoNewPrivs"], "1");
    let mut client = lab.connect_machine("machine");
    assert_connected(&client, &gw);
    // The new binding went to the lease journal (the snapshot is written at flush and stop).
    let leases = std::fs::read_to_string(workdir.join("state/leases.journal")).unwrap();
    assert!(leases.contains("client1.corp.example"), "{leases}");
    client.stop().unwrap();
    assert!(gw.stop().unwrap().success(), "{}", gw.log());
}

/// The lab's root CA, for certificates the CLI does not make (odd validity periods, a second
/// intermediate).
fn lab_ca(lab: &Lab) -> pki::CertificateAuthority {
    let root = lab.pki.ca_cert.parent().unwrap().to_owned();
    pki::CertificateAuthority::from_parts(
        pki::load_certificates(&std::fs::read(root.join("ca.crt")).unwrap()).unwrap(),
        pki::PrivateKey::load(&std::fs::read(root.join("ca.key")).unwrap()).unwrap(),
    )
    .unwrap()
}

/// Writes an issued identity as CERT (leaf, then `with` intermediates) and KEY files.
fn write_identity(
    lab: &Lab,
    name: &str,
    id: &pki::Identity,
    with: &[&pki::Certificate],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        lab.dir(&format!("{name}.crt")),
        lab.dir(&format!("{name}.key")),
    );
    let mut pem = id.chain[0].to_pem();
    for c in with {
        pem.push_str(&c.to_pem());
    }
    std::fs::write(&cert, pem).unwrap();
    std::fs::write(&key, id.key.to_pem().as_bytes()).unwrap();
    (cert, key)
}

/// An EC certificate from the lab's root, made by openssl with the extensions given (the CLI
/// always adds an EKU).
fn openssl_identity(
    lab: &Lab,
    name: &str,
    extensions: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = lab.pki.ca_cert.parent().unwrap().to_owned();
    let (cert, key, csr, ext) = (
        lab.dir(&format!("{name}.crt")),
        lab.dir(&format!("{name}.key")),
        lab.dir(&format!("{name}.csr")),
        lab.dir(&format!("{name}.ext")),
    );
    std::fs::write(&ext, extensions).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-out",
        csr.to_str().unwrap(),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        root.join("ca.crt").to_str().unwrap(),
        "-CAkey",
        root.join("ca.key").to_str().unwrap(),
        "-set_serial",
        "4242",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

/// Every way a client certificate can be unacceptable is refused with AUTHENTICATION_FAILED,
/// and the gateway's log says who was refused, from where, and why, in words an
/// administrator can act on. (RSA keys under 2048 bits and SHA-1 signatures: `pki` and
/// `ikev2` tests, since our own client refuses to use either.)
#[test]
fn the_refusal_matrix() {
    use std::time::SystemTime;
    let lab = Lab::routed(
        "e2erm",
        PkiOptions::new(GATEWAY_NAME).intermediate(true),
        false,
        GATEWAY_NAME,
    );
    let ca = lab_ca(&lab);
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let issue = |kind, name: &str, validity| {
        ca.issue(kind, name, pki::KeyAlgorithm::P256, validity)
            .unwrap()
    };
    let good = pki::Validity::days_from(now - day, 30);
    let other_intermediate = ca
        .issue_intermediate("second issuing CA", pki::KeyAlgorithm::P256, good)
        .unwrap();

    let mut cases: Vec<(&str, (std::path::PathBuf, std::path::PathBuf), &str)> = Vec::new();
    let revoked = lab
        .pki
        .issue_end_entity("machine", "revoked.corp.example")
        .unwrap();
    cases.push(("revoked leaf", revoked.clone(), "revoked"));
    let under_revoked = other_intermediate
        .issue(
            pki::CertKind::Machine,
            "sub.corp.example",
            pki::KeyAlgorithm::P256,
            good,
        )
        .unwrap();
    cases.push((
        "revoked intermediate",
        write_identity(&lab, "sub", &under_revoked, &[other_intermediate.cert()]),
        "revoked",
    ));
    let expired = issue(
        pki::CertKind::Machine,
        "expired.corp.example",
        pki::Validity::days_from(now - 10 * day, 2),
    );
    cases.push((
        "expired",
        write_identity(&lab, "expired", &expired, &[]),
        "expired",
    ));
    let early = issue(
        pki::CertKind::Machine,
        "early.corp.example",
        pki::Validity::days_from(now + 2 * day, 30),
    );
    cases.push((
        "not yet valid",
        write_identity(&lab, "early", &early, &[]),
        "not valid yet",
    ));
    let other = Pki::issue(bin(), &lab.dir("other-pki"), &PkiOptions::new(GATEWAY_NAME)).unwrap();
    cases.push((
        "unknown CA",
        (other.machine_cert.clone(), other.machine_key.clone()),
        // Its root has the name of ours (both made by testkit), not its key.
        "trusted CA",
    ));
    let server_only = issue(pki::CertKind::Gateway, "eku.corp.example", good);
    cases.push((
        "wrong EKU (serverAuth)",
        write_identity(&lab, "eku", &server_only, &[]),
        "extended key usage",
    ));
    cases.push((
        "no EKU",
        openssl_identity(
            &lab,
            "noeku.corp.example",
            "subjectAltName=DNS:noeku.corp.example\nkeyUsage=digitalSignature\n",
        ),
        "extended key usage",
    ));
    let user = issue(pki::CertKind::User, "bob@corp.example", good);
    cases.push((
        "user certificate, gateway for machines only",
        write_identity(&lab, "bob", &user, &[]),
        "does not accept those (clients.accept)",
    ));

    let mut opts = lab.gateway_opts();
    opts.revoked = vec![
        lab.pki.thumbprint(&revoked.0).unwrap(),
        other_intermediate.cert().thumbprint().to_string(),
    ];
    opts.accept = Some(vec!["machine".into()]);
    let gw = lab.start_gateway(&opts);
    for (i, (what, (cert, key), reason)) in cases.iter().enumerate() {
        let mut client = lab.connect(cert, key, &format!("case{i}"));
        assert_refused(&mut client, &gw, what);
        let log = gw.log();
        let line = log
            .lines()
            .filter(|l| l.contains("IKE SA failed") && l.contains("AUTHENTICATION_FAILED"))
            .nth(i)
            .unwrap_or_else(|| panic!("{what}: no refusal line\n{log}"))
            .to_owned();
        assert!(line.contains(reason), "{what}: {reason:?} not in\n{line}");
        assert!(
            line.contains(&format!("from={}", lab::CLIENT_WAN)),
            "{what}: {line}"
        );
        common::report(&format!(
            "refused {what}: {}",
            &line[line.find("IKE SA failed").unwrap()..]
        ));
    }
    // The gateway still accepts a good client after all that.
    let mut fine = lab.connect_machine("fine");
    assert_connected(&fine, &gw);
    fine.stop().unwrap();
}

/// Our client dials the gateway by IP address; the gateway's certificate was issued for that
/// address (`aovpn pki issue --name 203.0.113.1`: dNSName + iPAddress SAN).
#[test]
fn client_dials_the_gateway_by_ip_address() {
    testkit::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let topo = Topology::routed("e2eip", true).unwrap();
    let gw_ip = topo.gateway_wan().to_string();
    let pki = Pki::issue(bin(), &tmp.path().join("pki"), &PkiOptions::new(&gw_ip)).unwrap();
    let gw = GatewayProcess::start(
        bin(),
        &topo.gateway,
        &tmp.path().join("gw"),
        &GatewayOpts::new(&pki, topo.gateway_wan().into()),
    )
    .unwrap();
    let client = ClientProcess::start(
        bin(),
        &topo.client,
        &tmp.path().join("cl"),
        &ClientOpts::new(&gw_ip, &pki.machine_cert, &pki.machine_key, &pki.ca_cert),
    )
    .unwrap();
    assert_connected(&client, &gw);
    ping(&topo.client, lab::VNET_HOST).unwrap();

    // A certificate for another address is refused by the client.
    let (other_cert, other_key) = pki.issue_end_entity("gateway", "203.0.113.7").unwrap();
    drop(client);
    drop(gw);
    let mut opts = GatewayOpts::new(&pki, topo.gateway_wan().into());
    opts.cert = other_cert;
    opts.key = other_key;
    let gw = GatewayProcess::start(bin(), &topo.gateway, &tmp.path().join("gw2"), &opts).unwrap();
    let client = ClientProcess::start(
        bin(),
        &topo.client,
        &tmp.path().join("cl2"),
        &ClientOpts::new(&gw_ip, &pki.machine_cert, &pki.machine_key, &pki.ca_cert),
    )
    .unwrap();
    assert_eq!(
        client.state().as_deref(),
        Some("failed"),
        "client accepted a gateway certificate for 203.0.113.7 when dialling {gw_ip}:\n{}\n{}",
        client.status_text(),
        gw.log()
    );
    // For the right reason: the name dialled is not the certificate's.
    let error = json(&client.status_text())["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("not valid for name") && error.contains(&gw_ip),
        "{error}"
    );
}

/// A bad gateway.toml: non-zero exit, the field named on stderr.
#[test]
fn config_error_names_the_field() {
    testkit::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::issue(
        bin(),
        &tmp.path().join("pki"),
        &PkiOptions::new(GATEWAY_NAME),
    )
    .unwrap();
    let ns = Netns::new(testkit::netns::unique_name("e2ecf")).unwrap();
    type Breakage = fn(&mut GatewayOpts);
    let cases: [(&str, Breakage); 3] = [
        ("clients.pool_v4", |o| o.pool = "172.16.201.1/24".into()),
        ("network.routes", |o| o.routes.clear()),
        ("clients.revoked_thumbprints", |o| {
            o.revoked = vec!["not-a-thumbprint".into()]
        }),
    ];
    for (field, break_it) in cases {
        let mut opts = GatewayOpts::new(&pki, Ipv4Addr::new(203, 0, 113, 1).into());
        break_it(&mut opts);
        let conf = tmp.path().join(format!("{field}.toml"));
        std::fs::write(&conf, opts.render(tmp.path())).unwrap();
        let out = ns
            .exec([
                bin().as_os_str(),
                "gateway".as_ref(),
                "--config".as_ref(),
                conf.as_os_str(),
            ])
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: gateway started: {stderr}");
        assert!(stderr.contains(field), "{field} not named: {stderr}");
        assert!(
            ns.pids().unwrap().is_empty(),
            "a gateway process is left over"
        );
    }
    // Unknown keys are refused too, naming the key.
    let good = GatewayOpts::new(&pki, Ipv4Addr::new(203, 0, 113, 1).into()).render(tmp.path());
    let conf = tmp.path().join("unknown.toml");
    std::fs::write(
        &conf,
        good.replace("[tunnel]", "[tunnel]\nmtu_bytes = 1400"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["gateway", "--check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("mtu_bytes"), "{stderr}");
}

/// Packets at the tunnel MTU and larger (fragmented before encryption) cross both ways.
#[test]
fn full_size_and_fragmented_packets_cross_the_tunnel() {
    let lab = Lab::new("e2emt");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let client = lab.connect_machine("machine");
    let vip = assert_connected(&client, &gw);
    // 1372 + 28 = 1400, the TUN MTU, with DF set; 4000 is fragmented by the sender's stack.
    for (ns, dest) in [
        (&lab.topo.client, lab::VNET_HOST.to_string()),
        (&lab.topo.vnet, vip.to_string()),
    ] {
        for args in [["-s", "1372", "-M", "do"], ["-s", "4000", "-M", "dont"]] {
            let mut argv = vec!["ping", "-c", "3", "-i", "0.2", "-W", "2"];
            argv.extend(args);
            argv.push(&dest);
            let out = ns.exec(&argv).unwrap();
            assert!(
                out.status.success(),
                "{argv:?} from {}: {}{}\n--- client log\n{}\n--- gateway log\n{}",
                ns.name(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                client.log(),
                gw.log()
            );
        }
    }
}

/// A gateway that shuts down tells its clients: the client reports the tunnel closed by the
/// gateway, exits, and leaves the client namespace as it found it.
#[test]
fn gateway_shutdown_closes_the_client_cleanly() {
    let lab = Lab::new("e2egs");
    let mut gw = lab.start_gateway(&lab.gateway_opts());
    let before = net_state(&lab.topo.client);
    let mut client = lab.connect_machine("machine");
    assert_connected(&client, &gw);
    let status = gw.stop().unwrap();
    assert!(status.success(), "{}", gw.log());
    let exit = client.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        exit.is_some(),
        "client still running after the gateway left:\n{}\n--- client log\n{}\n--- gateway log\n{}",
        client.status_text(),
        client.log(),
        gw.log()
    );
    let state = json(&client.status_text());
    assert_eq!(state["state"], "failed", "{state}");
    assert!(
        state["error"]
            .as_str()
            .unwrap_or_default()
            .contains("closed"),
        "{state}"
    );
    assert_eq!(net_state(&lab.topo.client), before, "{}", client.log());
}

/// A device-tunnel profile: machine certificate, host routes to the management hosts.
fn device_profile_xml() -> String {
    split_machine_profile(
        "<Route><Address>10.1.0.10</Address><PrefixSize>32</PrefixSize></Route>\
         <Route><Address>10.1.0.11</Address><PrefixSize>32</PrefixSize></Route>\
         <AlwaysOn>true</AlwaysOn><DeviceTunnel>true</DeviceTunnel><RegisterDNS>true</RegisterDNS>",
    )
}

/// A ProfileXML for the lab's gateway with the machine certificate: `native` goes inside
/// NativeProfile (after the authentication), `rest` after it.
fn machine_profile(native: &str, rest: &str) -> String {
    format!(
        "<VPNProfile><NativeProfile><Servers>{GATEWAY_NAME}</Servers>\
         <NativeProtocolType>IKEv2</NativeProtocolType>\
         <Authentication><MachineMethod>Certificate</MachineMethod></Authentication>\
         {native}</NativeProfile>{rest}</VPNProfile>"
    )
}

/// [`machine_profile`] for a split tunnel without the class-based route.
fn split_machine_profile(rest: &str) -> String {
    machine_profile(
        "<RoutingPolicyType>SplitTunnel</RoutingPolicyType>\
         <DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>",
        rest,
    )
}

/// A user-tunnel profile: EAP-TLS with the user certificate (as Windows does), 10.1.0.0/16.
fn user_profile_xml() -> String {
    format!(
        r#"<VPNProfile><AlwaysOn>true</AlwaysOn><NativeProfile>
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
<Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize></Route></VPNProfile>"#
    )
}

fn route_dev(ns: &Netns, dest: &str) -> String {
    let out = ns.ip(["route", "get", dest]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("?")
        .to_owned()
}

/// Always On's two tunnels side by side, each from its ProfileXML: the device tunnel
/// (machine certificate) carries the management hosts, the user tunnel (EAP-TLS, user
/// certificate) the rest of 10.1.0.0/16; each on its own interface and address. When the
/// device tunnel goes, the user tunnel keeps working and takes over its destinations.
#[test]
fn device_and_user_tunnels_side_by_side_from_profiles() {
    let lab = Lab::new("e2edu");
    for host in ["10.1.0.11/24", "10.1.0.20/24"] {
        lab.topo
            .vnet
            .ip(["addr", "add", host, "dev", lab::VNET_IF])
            .unwrap();
    }
    let gw = lab.start_gateway(&lab.gateway_opts());
    let device_xml = lab.dir("device.xml");
    let user_xml = lab.dir("user.xml");
    std::fs::write(&device_xml, device_profile_xml()).unwrap();
    std::fs::write(&user_xml, user_profile_xml()).unwrap();
    let start = |xml: &Path, cert: &Path, key: &Path, ifname: &str, name: &str| {
        let mut opts = ClientOpts::new(GATEWAY_NAME, cert, key, &lab.pki.ca_cert)
            .profile(xml)
            .name(name);
        opts.interface = ifname.to_owned();
        ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &opts).unwrap()
    };
    let mut device = start(
        &device_xml,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        "aovpn-dev",
        "device",
    );
    let device_vip = assert_connected(&device, &gw);
    let user = start(
        &user_xml,
        &lab.pki.user_cert,
        &lab.pki.user_key,
        "aovpn-usr",
        "user",
    );
    let user_vip = assert_connected(&user, &gw);
    assert_ne!(device_vip, user_vip);

    let clients = gw
        .wait_status(Duration::from_secs(5), |t| {
            serde_json::from_str::<Value>(t)
                .ok()
                .and_then(|v| v["clients"].as_array().map(|c| c.len() == 2))
                .unwrap_or(false)
        })
        .map(|t| json(&t)["clients"].as_array().cloned().unwrap_or_default())
        .unwrap();
    let mut identities: Vec<String> = clients
        .iter()
        .map(|c| c["identity"].as_str().unwrap_or_default().to_owned())
        .collect();
    identities.sort();
    assert_eq!(
        identities,
        vec![
            format!("fqdn:{}", lab.pki.options.machine_name),
            format!("rfc822:{}", lab.pki.options.user_name),
        ]
    );

    let context = || {
        format!(
            "\n--- device log\n{}\n--- user log\n{}\n--- gateway log\n{}",
            device.log(),
            user.log(),
            gw.log()
        )
    };
    for (dest, dev) in [
        ("10.1.0.10", "aovpn-dev"),
        ("10.1.0.11", "aovpn-dev"),
        ("10.1.0.20", "aovpn-usr"),
    ] {
        assert_eq!(
            route_dev(&lab.topo.client, dest),
            dev,
            "{dest}{}",
            context()
        );
        ping(&lab.topo.client, dest).unwrap_or_else(|e| panic!("{e}{}", context()));
    }
    // Manage out: a management host reaches the device tunnel's address, the application
    // host the user tunnel's (replies follow the client's routes, so the source matters).
    for (source, vip) in [("10.1.0.11", device_vip), ("10.1.0.20", user_vip)] {
        let out = lab
            .topo
            .vnet
            .exec([
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                "-I",
                source,
                &vip.to_string(),
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "ping {vip} from {source}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            context()
        );
    }

    let status = device.stop().unwrap();
    assert!(status.success(), "{}", device.log());
    let context = || {
        format!(
            "\n--- user log\n{}\n--- gateway log\n{}",
            user.log(),
            gw.log()
        )
    };
    assert_eq!(route_dev(&lab.topo.client, "10.1.0.10"), "aovpn-usr");
    ping(&lab.topo.client, "10.1.0.10").unwrap_or_else(|e| panic!("{e}{}", context()));
    assert_eq!(user.state().as_deref(), Some("connected"));
}

/// A client that crashes (SIGKILL: no Delete) and comes back replaces its stale session at
/// once (INITIAL_CONTACT): same address, one session, traffic flows.
#[test]
fn crashed_client_reconnects_and_replaces_its_stale_session() {
    let lab = Lab::new("e2ecr");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let mut first = lab.connect_machine("first");
    let vip = assert_connected(&first, &gw);
    first.kill().unwrap();
    // The TUN device died with the process; its routes went with it.
    let links = lab.topo.client.ip(["-o", "link"]).unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("aovpn0"));
    assert_eq!(gateway_clients(&gw).len(), 1, "the gateway cannot know yet");

    let again = lab.connect_machine("again");
    assert_eq!(
        assert_connected(&again, &gw),
        vip,
        "address changed after a crash"
    );
    let clients = gw
        .wait_status(Duration::from_secs(5), |t| {
            serde_json::from_str::<Value>(t)
                .ok()
                .and_then(|v| v["clients"].as_array().map(|c| c.len() == 1))
                .unwrap_or(false)
        })
        .map(|t| json(&t)["clients"].as_array().cloned().unwrap_or_default());
    let clients = clients.unwrap_or_else(|e| panic!("stale session kept: {e}"));
    assert_eq!(
        clients[0]["virtual_ip"].as_str(),
        Some(vip.to_string().as_str())
    );
    ping(&lab.topo.client, lab::VNET_HOST)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", again.log(), gw.log()));
    ping(&lab.topo.vnet, vip).unwrap_or_else(|e| panic!("{e}\n{}\n{}", again.log(), gw.log()));
}

/// A client that vanishes (SIGKILL, no Delete) is found dead by the gateway's liveness checks
/// (DPD every second here) and removed; its address stays reserved for it.
#[test]
fn gateway_removes_a_dead_client_after_liveness_checks() {
    let lab = Lab::new("e2edp");
    let mut opts = lab.gateway_opts();
    opts.dpd_interval_secs = Some(1);
    let gw = lab.start_gateway(&opts);
    let mut client = lab.connect_machine("first");
    let vip = assert_connected(&client, &gw);
    client.kill().unwrap();
    let started = Instant::now();
    gw.wait_status(Duration::from_secs(45), |t| {
        serde_json::from_str::<Value>(t)
            .ok()
            .and_then(|v| v["clients"].as_array().map(Vec::is_empty))
            .unwrap_or(false)
    })
    .unwrap();
    eprintln!("dead client removed after {:?}", started.elapsed());
    let again = lab.connect_machine("again");
    assert_eq!(assert_connected(&again, &gw), vip);
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
}

// ---- Regressions: defects found when the product was tried as a new user and as an attacker. ----

/// A second tunnel asking for an interface name that another tunnel already uses must be
/// refused (naming the interface) and must not disturb the running one. Its profile routes
/// only 10.1.0.20/32, so nothing but the interface collides.
#[test]
fn second_client_cannot_take_over_a_busy_interface() {
    let lab = Lab::new("e2eif");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let first = lab.connect_machine("first");
    assert_connected(&first, &gw);
    let profile = lab.dir("second.xml");
    std::fs::write(
        &profile,
        split_machine_profile(
            "<Route><Address>10.1.0.20</Address><PrefixSize>32</PrefixSize></Route>\
             <DeviceTunnel>true</DeviceTunnel><AlwaysOn>true</AlwaysOn>",
        ),
    )
    .unwrap();
    let mut second = ClientProcess::start(
        bin(),
        &lab.topo.client,
        &lab.dir("cl"),
        &ClientOpts::new(
            GATEWAY_NAME,
            &lab.pki.user_cert,
            &lab.pki.user_key,
            &lab.pki.ca_cert,
        )
        .profile(&profile)
        .name("second"),
    )
    .unwrap();
    let second_status = second.status_text();
    let second_log = second.log();
    let exit = second.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(
        json_state_of(&second_status).as_deref(),
        Some("failed"),
        "a second `aovpn connect --interface aovpn0` was let onto the running tunnel's TUN \
         device:\n{second_status}\n--- second log\n{second_log}\n--- first log\n{}",
        first.log()
    );
    assert!(
        exit.is_some_and(|s| !s.success()),
        "second client did not exit with an error"
    );
    let error = json(&second_status)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("aovpn0"),
        "error does not name the interface: {error}"
    );
    // The first tunnel still works.
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- first log\n{}\n--- second log\n{second_log}",
            first.log()
        )
    });
}

fn json_state_of(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
}

/// Pings per round across the rekeys (one per millisecond: about 10 s a round).
const REKEY_PINGS: u32 = 10_000;
/// Rounds at most: the rekeys come at their times, a busy machine only sends fewer pings a
/// second, so the test waits for the rekeys rather than for a fixed count.
const REKEY_ROUNDS: u32 = 6;

/// The gateway rekeys the Child SA and the IKE SA (short lifetimes) while a fast ping stream
/// runs through the tunnel: no packet is lost across the rekeys in either direction. The
/// gateway initiates the Child SA rekeys and switches to the new SA at once; the client, the
/// responder, keeps sending on the old SA until the gateway's Delete of it (RFC 7296 2.8), so
/// no echo request arrives at the gateway before it can decrypt it. Both sides log the rekeys.
#[test]
fn rekeys_under_traffic_lose_no_packets() {
    let lab = Lab::new("e2erk");
    let mut opts = lab.gateway_opts();
    // Child SA rekeyed every ~8-9 s, IKE SA every ~10-11 s (80-90 % of the lifetime).
    opts.lifetimes_secs = Some((12, 10));
    let gw = lab.start_gateway(&opts);
    let client = lab.connect_machine("rekey");
    assert_connected(&client, &gw);

    // Rounds of 1000 pings/s, each without a single loss, until the gateway has rekeyed the
    // Child SA twice and the IKE SA once while they ran (rekeys before the first round do not
    // count): a packet every millisecond around each switch.
    let count = REKEY_PINGS.to_string();
    let rekeys = |log: &str| {
        (
            log.matches("Child SA rekeyed").count(),
            log.matches("IKE SA rekeyed").count(),
        )
    };
    let before = rekeys(&gw.log());
    let during = || {
        let (child, ike) = rekeys(&gw.log());
        (child - before.0, ike - before.1)
    };
    let mut rounds = 0;
    loop {
        rounds += 1;
        let out = lab
            .topo
            .client
            .exec([
                "ping",
                "-q",
                "-c",
                count.as_str(),
                "-i",
                "0.001",
                "-W",
                "2",
                "10.1.0.10",
            ])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains(&format!(
                "{REKEY_PINGS} packets transmitted, {REKEY_PINGS} received"
            )),
            "packets lost during rekeys (round {rounds}):\n{text}\n--- gateway log\n{}\n--- client log\n{}",
            gw.log(),
            client.log()
        );
        let (child, ike) = during();
        if (child >= 2 && ike >= 1) || rounds == REKEY_ROUNDS {
            break;
        }
    }
    let (child_rekeys, ike_rekeys) = during();
    assert!(
        child_rekeys >= 2 && ike_rekeys >= 1,
        "expected >= 2 Child and >= 1 IKE rekeys during {rounds} rounds of pings, saw {child_rekeys} and {ike_rekeys}\n{}",
        gw.log()
    );
    assert!(
        client.log().contains("Child SA rekeyed"),
        "client did not follow the rekey:\n{}",
        client.log()
    );
    // Still the same tunnel, same address, after the rekeys.
    assert_connected(&client, &gw);
    ping(&lab.topo.client, "10.1.0.10").unwrap();
}

/// A profile lists a dead server first: the client gives up on it after IKE's retransmissions
/// and connects to the next one, as Windows walks a profile's server list.
#[test]
fn the_next_server_is_tried_when_the_first_does_not_answer() {
    let lab = Lab::new("e2efb");
    let gw = lab.start_gateway(&lab.gateway_opts());
    // 203.0.113.99 is on the gateway's link but nobody has it: IKE_SA_INIT goes unanswered.
    let xml = device_profile_xml().replace(
        &format!("<Servers>{GATEWAY_NAME}</Servers>"),
        &format!("<Servers>203.0.113.99;dead,{GATEWAY_NAME};live</Servers>"),
    );
    let file = lab.dir("fallback.xml");
    std::fs::create_dir_all(lab.dir("")).unwrap();
    std::fs::write(&file, xml).unwrap();
    let opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        &lab.pki.ca_cert,
    )
    .profile(&file)
    .name("fallback");
    let client = ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &opts).unwrap();
    assert_connected(&client, &gw);
    assert!(
        client.log().contains("trying the next server"),
        "{}",
        client.log()
    );
    ping(&lab.topo.client, "10.1.0.10").unwrap();
}

/// A profile's Route Metric and IPv4InterfaceMetric become the tunnel route's metric (added, as
/// Windows adds them); its DNSSuffix is applied although the gateway pushes no DNS server, names
/// still going to the network's own server; everything is put back at disconnect.
#[test]
fn profile_metrics_and_a_suffix_without_pushed_dns_are_applied() {
    let lab = Lab::new("e2emt");
    let mut opts = lab.gateway_opts();
    opts.dns.clear();
    let gw = lab.start_gateway(&opts);
    let xml = lab.dir("metric.xml");
    std::fs::write(
        &xml,
        split_machine_profile(
            "<DNSSuffix>corp.example</DNSSuffix><IPv4InterfaceMetric>10</IPv4InterfaceMetric>\
             <Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize><Metric>5</Metric></Route>",
        ),
    )
    .unwrap();
    let workdir = lab.dir("cl");
    std::fs::create_dir_all(&workdir).unwrap();
    let resolv = workdir.join("metric.resolv.conf");
    let network = "nameserver 192.0.2.53\nsearch home.example\n";
    std::fs::write(&resolv, network).unwrap();
    let client_opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        &lab.pki.ca_cert,
    )
    .profile(&xml)
    .name("metric");
    let client = ClientProcess::start(bin(), &lab.topo.client, &workdir, &client_opts).unwrap();
    assert_connected(&client, &gw);

    let out = lab
        .topo
        .client
        .ip(["-4", "route", "show", "10.1.0.0/16"])
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        routes.contains("dev aovpn0") && routes.contains("metric 15"),
        "route 10.1.0.0/16 with metric 5 + 10: {routes}\n{}",
        client.log()
    );
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}\n{}", client.log()));

    let conf = std::fs::read_to_string(&resolv).unwrap();
    assert!(
        conf.contains("search corp.example") && conf.contains("nameserver 192.0.2.53"),
        "{conf}"
    );
    let status = json(&client.status_text());
    assert_eq!(
        status["dns_suffixes"],
        serde_json::json!(["corp.example"]),
        "{status}"
    );
    drop(client);
    assert_eq!(std::fs::read_to_string(&resolv).unwrap(), network);
}

/// `addr/64` on `dev` in `ns`, usable at once (no duplicate address detection).
fn add_ipv6(ns: &Netns, addr: &str, dev: &str) {
    ns.ip([
        "-6",
        "addr",
        "add",
        &format!("{addr}/64"),
        "dev",
        dev,
        "nodad",
    ])
    .unwrap();
}

/// IPv6 on the network behind the gateway (fd00:10:1::/64, the gateway forwarding, the host
/// routing back through it); returns the host's address.
fn ipv6_behind_the_gateway(lab: &Lab) -> &'static str {
    let (gw_lan, vnet_host) = ("fd00:10:1::1", "fd00:10:1::10");
    for (ns, addr, dev) in [
        (&lab.topo.gateway, gw_lan, lab::GATEWAY_LAN_IF),
        (&lab.topo.vnet, vnet_host, lab::VNET_IF),
    ] {
        add_ipv6(ns, addr, dev);
    }
    lab.topo
        .vnet
        .ip(["-6", "route", "add", "default", "via", gw_lan])
        .unwrap();
    lab.topo
        .gateway
        .exec_ok(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        .unwrap();
    vnet_host
}

/// IPv6 inside the tunnel: the client asks for both families, the gateway's `pool_v6` gives it
/// an IPv6 address beside the IPv4 one, and ping and a checksummed TCP transfer reach an IPv6
/// host behind the gateway; that host reaches the client's IPv6 address back (manage out).
#[test]
fn ipv6_inside_the_tunnel() {
    let lab = Lab::new("e2e6i");
    let vnet_host = ipv6_behind_the_gateway(&lab);
    let mut opts = lab.gateway_opts();
    opts.pool_v6 = Some("fd00:172:16:201::/112".into());
    opts.routes.push("fd00:10:1::/64".into());
    let gw = lab.start_gateway(&opts);
    let client = lab.connect_machine("v6");
    assert_connected(&client, &gw);
    let status = json(&client.status_text());
    let v6: Ipv6Addr = status["virtual_ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no IPv6 address assigned: {status}\n{}", client.log()));
    assert_eq!(v6.segments()[..4], [0xfd00, 0x172, 0x16, 0x201], "{v6}");
    let context = || {
        format!(
            "\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    };

    ping(&lab.topo.client, vnet_host).unwrap_or_else(|e| panic!("{e}{}", context()));
    ping(&lab.topo.vnet, v6).unwrap_or_else(|e| panic!("{e}{}", context()));
    let listen = SocketAddr::new(IpAddr::V6(v6), 5201);
    let mbits =
        common::checked_transfer(20 << 20, &lab.topo.client, listen, &lab.topo.vnet, false, 6);
    // And the client's IPv6 traffic leaves through the tunnel only.
    let route = lab
        .topo
        .client
        .ip(["-6", "route", "get", vnet_host])
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    assert!(route.contains("dev aovpn0"), "{route}");
    common::report(&format!(
        "IPv6 inside the tunnel: 20 MB checksummed from the vnet host to the client at {mbits:.0} Mbit/s"
    ));
}

/// The IPv6 routes of a namespace (`ip -6 route show table all`), without the kernel's own
/// link-local and multicast entries, which come and go with interfaces.
fn ipv6_routes(ns: &Netns) -> String {
    let out = ns.ip(["-6", "route", "show", "table", "all"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("fe80") && !l.starts_with("multicast") && !l.contains(" fe80"))
        .filter(|l| !l.starts_with("local fe80") && !l.starts_with("ff00"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// ForceTunnel from a profile: every destination of both families goes through the tunnel,
/// except the gateway's own address and the client's local subnet; DNS is the gateway's; at
/// disconnect the client's routes and resolv.conf are exactly what they were.
#[test]
fn force_tunnel_takes_both_families_and_gives_everything_back() {
    let lab = Lab::new("e2eft");
    let vnet_host = ipv6_behind_the_gateway(&lab);
    let mut opts = lab.gateway_opts();
    opts.pool_v6 = Some("fd00:172:16:201::/112".into());
    opts.routes = vec!["0.0.0.0/0".into(), "::/0".into()];
    let gw = lab.start_gateway(&opts);

    let xml = lab.dir("force.xml");
    std::fs::write(
        &xml,
        machine_profile(
            "<RoutingPolicyType>ForceTunnel</RoutingPolicyType>",
            "<ByPassForLocal>true</ByPassForLocal>",
        ),
    )
    .unwrap();
    let workdir = lab.dir("cl");
    std::fs::create_dir_all(&workdir).unwrap();
    let resolv = workdir.join("force.resolv.conf");
    let network = "nameserver 198.51.100.53\n";
    std::fs::write(&resolv, network).unwrap();
    let before = (net_state(&lab.topo.client), ipv6_routes(&lab.topo.client));

    let client_opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        &lab.pki.ca_cert,
    )
    .profile(&xml)
    .name("force");
    let mut client = ClientProcess::start(bin(), &lab.topo.client, &workdir, &client_opts).unwrap();
    assert_connected(&client, &gw);
    let context = || {
        format!(
            "\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    };

    // Anything, of either family, through the tunnel; the gateway and the local subnet not.
    for (dest, dev) in [
        ("192.0.2.77", "aovpn0"),
        ("10.1.0.10", "aovpn0"),
        ("2001:db8:77::1", "aovpn0"),
        (vnet_host, "aovpn0"),
        ("203.0.113.1", lab::CLIENT_IF),
        ("198.51.100.1", lab::CLIENT_IF),
    ] {
        assert_eq!(
            route_dev(&lab.topo.client, dest),
            dev,
            "{dest}{}",
            context()
        );
    }
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
    ping(&lab.topo.client, vnet_host).unwrap_or_else(|e| panic!("{e}{}", context()));
    let conf = std::fs::read_to_string(&resolv).unwrap();
    assert!(
        conf.contains("nameserver 10.1.0.53") && !conf.contains("198.51.100.53"),
        "DNS through the tunnel: {conf}"
    );

    let status = client.stop().unwrap();
    assert!(status.success(), "client exit {status}\n{}", client.log());
    assert_eq!(
        (net_state(&lab.topo.client), ipv6_routes(&lab.topo.client)),
        before,
        "routes after disconnect"
    );
    assert_eq!(std::fs::read_to_string(&resolv).unwrap(), network);
}

/// TCP from `ns` to `dest` within 2 s: did a connection open?
fn tcp_opens(ns: &Netns, dest: SocketAddr) -> bool {
    ns.run(move || std::net::TcpStream::connect_timeout(&dest, Duration::from_secs(2)).is_ok())
}

/// A profile's TrafficFilter, enforced: through the tunnel only TCP to 10.1.0.10 port 5201
/// (and its replies); ICMP, another port and connections from the network behind the gateway
/// are dropped on the tunnel interface. The filter table goes with the tunnel.
#[test]
fn traffic_filters_let_only_what_they_allow_through_the_tunnel() {
    let lab = Lab::new("e2etf");
    let gw = lab.start_gateway(&lab.gateway_opts());
    let xml = lab.dir("filter.xml");
    std::fs::write(
        &xml,
        split_machine_profile(
            "<Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize></Route>\
             <TrafficFilter><Protocol>6</Protocol><RemotePortRanges>5201</RemotePortRanges>\
             <RemoteAddressRanges>10.1.0.10</RemoteAddressRanges></TrafficFilter>",
        ),
    )
    .unwrap();
    let client_opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.machine_cert,
        &lab.pki.machine_key,
        &lab.pki.ca_cert,
    )
    .profile(&xml)
    .name("filter");
    let mut client =
        ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &client_opts).unwrap();
    let vip = assert_connected(&client, &gw);
    let context = || {
        format!(
            "\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    };

    // Allowed: TCP to 10.1.0.10:5201, both directions of the stream.
    let to_vnet = SocketAddr::new(lab::VNET_HOST.into(), 5201);
    common::checked_transfer(2 << 20, &lab.topo.vnet, to_vnet, &lab.topo.client, true, 3);
    common::checked_transfer(2 << 20, &lab.topo.vnet, to_vnet, &lab.topo.client, false, 4);
    // Dropped: ICMP, another port, and anything the network behind the gateway opens.
    assert!(
        ping(&lab.topo.client, lab::VNET_HOST).is_err(),
        "ICMP passed{}",
        context()
    );
    let listener = lab
        .topo
        .vnet
        .run(|| std::net::TcpListener::bind((lab::VNET_HOST, 5202)))
        .unwrap();
    assert!(
        !tcp_opens(
            &lab.topo.client,
            SocketAddr::new(lab::VNET_HOST.into(), 5202)
        ),
        "TCP to port 5202 passed{}",
        context()
    );
    drop(listener);
    assert!(
        ping(&lab.topo.vnet, vip).is_err(),
        "inbound ICMP passed{}",
        context()
    );
    let drops = lab
        .topo
        .client
        .exec_ok(["nft", "list", "table", "inet", "aovpn-filter-aovpn0"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&drops.stdout).contains("drop"),
        "{}",
        String::from_utf8_lossy(&drops.stdout)
    );

    let status = client.stop().unwrap();
    assert!(status.success(), "client exit {status}\n{}", client.log());
    let tables = lab.topo.client.exec_ok(["nft", "list", "tables"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("aovpn"),
        "{}",
        String::from_utf8_lossy(&tables.stdout)
    );
}

/// The outer path over IPv6: the gateway listens on an IPv6 address, the client reaches it
/// through an IPv6-only router path, and IKE and ESP-in-UDP run over it (inside: IPv4).
#[test]
fn the_tunnel_runs_over_an_ipv6_path() {
    let lab = Lab::new("e2e6o");
    let inet = lab.topo.internet.as_ref().unwrap();
    let (client_wan, router_cl) = ("2001:db8:51::2", "2001:db8:51::1");
    let (gateway_wan, router_gw) = ("2001:db8:113::1", "2001:db8:113::254");
    for (ns, addr, dev) in [
        (&lab.topo.client, client_wan, lab::CLIENT_IF),
        (inet, router_cl, lab::INTERNET_CLIENT_IF),
        (inet, router_gw, lab::INTERNET_GATEWAY_IF),
        (&lab.topo.gateway, gateway_wan, lab::GATEWAY_WAN_IF),
    ] {
        add_ipv6(ns, addr, dev);
    }
    inet.exec_ok(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        .unwrap();
    lab.topo
        .client
        .ip(["-6", "route", "add", "default", "via", router_cl])
        .unwrap();
    lab.topo
        .gateway
        .ip(["-6", "route", "add", "default", "via", router_gw])
        .unwrap();
    // The client finds the gateway's name at its IPv6 address only.
    std::fs::write(
        Path::new("/etc/netns")
            .join(lab.topo.client.name())
            .join("hosts"),
        format!("127.0.0.1 localhost\n{gateway_wan} {GATEWAY_NAME}\n"),
    )
    .unwrap();
    let mut opts = lab.gateway_opts();
    opts.listen = gateway_wan.parse().unwrap();
    let gw = lab.start_gateway(&opts);
    let client = lab.connect_machine("outer6");
    assert_connected(&client, &gw);
    let status = json(&client.status_text());
    let remote: SocketAddr = status["remote"].as_str().unwrap().parse().unwrap();
    assert!(remote.is_ipv6(), "{status}");
    let context = || {
        format!(
            "\n--- client log\n{}\n--- gateway log\n{}",
            client.log(),
            gw.log()
        )
    };
    ping(&lab.topo.client, lab::VNET_HOST).unwrap_or_else(|e| panic!("{e}{}", context()));
    let mbits = common::checked_transfer(
        20 << 20,
        &lab.topo.vnet,
        SocketAddr::new(lab::VNET_HOST.into(), 5201),
        &lab.topo.client,
        false,
        7,
    );
    common::report(&format!(
        "IPv6 outer path: 20 MB checksummed through the tunnel at {mbits:.0} Mbit/s"
    ));
}

/// The gateway's internal domains (RFC 8598, `network.dns_domains`) reach the client with the
/// DNS servers: shown in its status and put in its resolver settings beside the servers.
#[test]
fn internal_dns_domains_from_the_gateway_are_applied() {
    let lab = Lab::new("e2edd");
    let mut opts = lab.gateway_opts();
    opts.dns_domains = vec!["corp.e2e.example".into()];
    let gw = lab.start_gateway(&opts);
    let client = lab.connect_machine("domains");
    assert_connected(&client, &gw);
    let status = json(&client.status_text());
    assert_eq!(
        status["dns_domains"],
        serde_json::json!(["corp.e2e.example"]),
        "{status}"
    );
    let conf = std::fs::read_to_string(lab.dir("cl").join("domains.resolv.conf")).unwrap();
    assert!(
        conf.contains("nameserver 10.1.0.53") && conf.contains("corp.e2e.example"),
        "{conf}"
    );
}

/// `aovpn gateway sessions|disconnect|revoke` over the admin socket: the connected clients
/// with their certificate, addresses and traffic; one disconnected by its address (and given
/// the same address when it comes back); another revoked by thumbprint (kicked at once, the
/// revocation kept in the file); the socket closed to a user outside the admin group and
/// open to one in it.
#[test]
fn the_admin_socket_lists_disconnects_and_revokes() {
    let lab = Lab::new("e2eadm");
    let mut opts = lab.gateway_opts();
    opts.admin_group = Some("4242".into());
    let gw = lab.start_gateway(&opts);
    let socket = gw.admin_socket();
    let admin = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("gateway")
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sessions = || {
        let (code, out, err) = admin(&["sessions", "--json"]);
        assert_eq!(code, Some(0), "{out}{err}");
        json(&out).as_array().cloned().unwrap_or_default()
    };
    let machine = lab.connect_machine("machine");
    let vip = assert_connected(&machine, &gw);
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();

    let list = sessions();
    assert_eq!(list.len(), 1, "{list:?}");
    let m = list
        .iter()
        .find(|s| s["identity"] == "fqdn:client1.corp.example")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(
        m["thumbprint"].as_str(),
        Some(lab.pki.thumbprint(&lab.pki.machine_cert).unwrap().as_str()),
        "{m}"
    );
    assert_eq!(m["virtual_ip"].as_str(), Some(vip.to_string().as_str()));
    assert_eq!(m["subject"], "CN=client1.corp.example");
    let remote: SocketAddr = m["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip(), IpAddr::V4(lab::INTERNET_GATEWAY_SIDE));
    assert!(m["traffic"]["packets_in"].as_u64() >= Some(3), "{m}");
    assert!(m["traffic"]["bytes_out"].as_u64() > Some(0), "{m}");
    assert!(m["connected_since"].as_u64() > Some(0), "{m}");
    assert!(m["esp"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
    let (_, text, _) = admin(&["sessions"]);
    assert!(
        text.contains("fqdn:client1.corp.example") && text.contains("traffic"),
        "{text}"
    );

    // Disconnected by its address: gone from the list, the client told at once.
    let (code, out, err) = admin(&["disconnect", &vip.to_string()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("1 session(s) of fqdn:client1.corp.example"),
        "{out}"
    );
    let mut machine = machine;
    assert!(
        machine
            .wait_exit(Duration::from_secs(10))
            .unwrap()
            .is_some(),
        "the client did not learn of the disconnect:\n{}",
        machine.log()
    );
    assert!(sessions().is_empty());
    // It comes back with the address it had.
    let mut machine = lab.connect_machine("machine2");
    assert_eq!(assert_connected(&machine, &gw), vip);
    machine.stop().unwrap();

    // (One client at a time: two one-shot clients in one namespace would fight over the
    // route to 10.1.0.0/16.)
    let mut user = lab.connect(&lab.pki.user_cert, &lab.pki.user_key, "user");
    assert_connected(&user, &gw);
    assert_eq!(sessions().len(), 1);

    // Revoked by thumbprint: kicked, written to the revocation file, refused from then on.
    let thumbprint = lab.pki.thumbprint(&lab.pki.user_cert).unwrap();
    let (code, out, err) = admin(&["revoke", &thumbprint]);
    assert_eq!(code, Some(0), "{out}{err}\n{}", gw.log());
    assert!(out.contains("1 session(s) disconnected"), "{out}");
    assert!(
        user.wait_exit(Duration::from_secs(10)).unwrap().is_some(),
        "{}",
        user.log()
    );
    assert!(sessions().is_empty());
    let file = std::fs::read_to_string(lab.dir("gw-state").join("revoked.txt")).unwrap();
    assert!(file.contains(&thumbprint), "{file}");
    let out = Command::new(bin())
        .args(["gateway", "--check", "--config"])
        .arg(gw.config_path())
        .arg("--client-cert")
        .arg(&lab.pki.user_cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is revoked"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, _, err) = admin(&["disconnect", "nobody.corp.example"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no session of"), "{err}");

    // Only root and the admin group.
    let as_user = |groups: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534"]);
        if groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            cmd.arg(format!("--groups={groups}"));
        }
        let out = cmd
            .arg(bin())
            .args(["gateway", "sessions", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, said) = as_user("");
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("ermission denied"), "{said}");
    let (code, said) = as_user("4242");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("no client connected"), "{said}");
}

/// Policy groups (Azure's "user groups and address pools"): a user whose UPN is under
/// eng.corp.example gets an address from the eng pool and only the eng network, with its DNS
/// server; a user of no group gets the defaults; both at once, each told apart in the
/// gateway's session list, and the eng user's packets to the rest of the network go nowhere.
#[test]
fn policy_groups_give_their_users_their_own_pool_routes_and_dns() {
    let lab = Lab::new("e2egrp");
    let mut opts = lab.gateway_opts();
    opts.extra = "[[groups]]\nname = \"eng\"\nmatch = { upn_suffix = \"eng.corp.example\" }\n\
                  pool_v4 = \"172.16.202.0/24\"\nroutes = [\"10.1.2.0/24\"]\ndns = [\"10.1.2.53\"]\n"
        .into();
    let gw = lab.start_gateway(&opts);
    let (carol_cert, carol_key) = lab
        .pki
        .issue_end_entity("user", "carol@eng.corp.example")
        .unwrap();

    let alice = lab.connect(&lab.pki.user_cert, &lab.pki.user_key, "alice");
    let alice_vip = assert_connected(&alice, &gw);
    let mut carol_opts =
        ClientOpts::new(GATEWAY_NAME, &carol_cert, &carol_key, &lab.pki.ca_cert).name("carol");
    carol_opts.interface = "aovpn1".into();
    let carol = ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &carol_opts).unwrap();
    assert_eq!(
        carol.state().as_deref(),
        Some("connected"),
        "{}\n{}",
        carol.log(),
        gw.log()
    );
    let Some(IpAddr::V4(carol_vip)) = carol.virtual_ip() else {
        panic!("no IPv4 address: {}", carol.status_text());
    };

    assert_eq!(alice_vip.octets()[..3], [172, 16, 201], "{alice_vip}");
    assert_eq!(carol_vip.octets()[..3], [172, 16, 202], "{carol_vip}");
    let status = json(&carol.status_text());
    assert_eq!(
        status["routes"],
        serde_json::json!(["10.1.2.0/24 dev aovpn1"]),
        "{status}"
    );
    assert_eq!(status["dns"], serde_json::json!(["10.1.2.53"]), "{status}");
    let status = json(&alice.status_text());
    assert_eq!(
        status["routes"],
        serde_json::json!(["10.1.0.0/16 dev aovpn0"]),
        "{status}"
    );

    // Alice reaches the vnet host; Carol's tunnel does not carry anything there.
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
    let out = lab
        .topo
        .client
        .exec([
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "aovpn1",
            &lab::VNET_HOST.to_string(),
        ])
        .unwrap();
    assert!(!out.status.success(), "carol reached the vnet host");

    let out = Command::new(bin())
        .args(["gateway", "sessions", "--json", "--socket"])
        .arg(gw.admin_socket())
        .output()
        .unwrap();
    let sessions = json(&String::from_utf8_lossy(&out.stdout));
    let group_of = |vip: Ipv4Addr| {
        sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["virtual_ip"] == vip.to_string())
            .map(|s| s["group"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        group_of(alice_vip).as_deref(),
        Some("default"),
        "{sessions}"
    );
    assert_eq!(group_of(carol_vip).as_deref(), Some("eng"), "{sessions}");
    // The binding is in the group's lease journal until the next flush writes the snapshot.
    let leases = ["leases-eng.json", "leases-eng.journal"]
        .iter()
        .map(|f| std::fs::read_to_string(lab.dir("gw-state").join(f)).unwrap_or_default())
        .collect::<String>();
    assert!(leases.contains("carol@eng.corp.example"), "{leases}");
}

/// RADIUS, as Azure offers it for IKEv2: the gateway relays EAP-TLS to a real FreeRADIUS 3
/// (Debian's, in the vnet namespace, with the lab's CA) listed second after a server that
/// does not answer: the first user is accepted after the failover, a user with a Class gets
/// that group's pool, a user FreeRADIUS refuses gets AUTHENTICATION_FAILED, and with every
/// server down the next user is refused quickly with a log line that says so. Certificate
/// clients (device tunnels) are still served by the gateway itself.
#[test]
fn eap_is_relayed_to_freeradius_which_accepts_classifies_refuses_and_fails_over() {
    use testkit::freeradius::{FreeRadius, FreeRadiusConfig};
    let lab = Lab::new("e2erad");
    for host in ["10.1.0.5/24", "10.1.0.6/24"] {
        lab.topo
            .vnet
            .ip(["addr", "add", host, "dev", lab::VNET_IF])
            .unwrap();
    }
    let secret = "a-secret-for-the-test";
    let secret_file = lab.dir("radius.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (server_cert, server_key) = lab
        .pki
        .issue_end_entity("gateway", "radius.e2e.example")
        .unwrap();
    let mut users = std::collections::BTreeMap::new();
    for name in [
        "carol@corp.example",
        "mallory@corp.example",
        "dave@corp.example",
    ] {
        users.insert(name, lab.pki.issue_end_entity("user", name).unwrap());
    }
    let mut radius = FreeRadius::start(
        &lab.topo.vnet,
        FreeRadiusConfig {
            dir: lab.dir("freeradius"),
            listen: "10.1.0.5".parse().unwrap(),
            client: lab::GATEWAY_LAN.into(),
            secret: secret.into(),
            ca: lab.pki.ca_cert.clone(),
            server_cert,
            server_key,
            rejected: vec!["mallory@corp.example".into()],
            classes: vec![("carol@corp.example".into(), "eng".into())],
        },
    )
    .unwrap();
    let mut opts = lab.gateway_opts();
    let s = secret_file.display();
    opts.extra = format!(
        "[radius]\nservers = [{{ address = \"10.1.0.6:1812\", secret_file = \"{s}\" }}, \
         {{ address = \"10.1.0.5:1812\", secret_file = \"{s}\" }}]\ntimeout_ms = 300\ntries = 2\n\n\
         [[groups]]\nname = \"eng\"\nmatch = {{ upn_suffix = \"eng.corp.example\" }}\n\
         pool_v4 = \"172.16.202.0/24\"\nroutes = [\"10.1.2.0/24\"]\n"
    );
    // Short lifetimes: the gateway rekeys the IKE SAs within the test, and a relayed session
    // (no certificate path to re-check) must survive that.
    opts.lifetimes_secs = Some((12, 10));
    let gw = lab.start_gateway(&opts);
    // `--check` (the unit's ExecStartPre) reads the secrets too: one every user can read is
    // refused with the field named.
    let check = || {
        Command::new(bin())
            .args(["gateway", "--check", "--config"])
            .arg(gw.config_path())
            .output()
            .unwrap()
    };
    assert!(check().status.success(), "{:?}", check());
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let refused = check();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("radius.servers.secret_file"),
        "{refused:?}"
    );
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // The EAP server is FreeRADIUS now: the profile names it. Each user's profile routes
    // its own prefix (one-shot clients in one namespace cannot share a route).
    let start = |cert: &Path, key: &Path, name: &str, ifname: &str, route: &str| {
        let xml = lab.dir(&format!("radius-{name}.xml"));
        std::fs::write(
            &xml,
            user_profile_xml()
                .replace(
                    "<ServerNames></ServerNames>",
                    "<ServerNames>radius.e2e.example</ServerNames>",
                )
                .replace(
                    "<Address>10.1.0.0</Address><PrefixSize>16</PrefixSize>",
                    route,
                ),
        )
        .unwrap();
        let mut opts = ClientOpts::new(GATEWAY_NAME, cert, key, &lab.pki.ca_cert)
            .profile(&xml)
            .name(name);
        opts.interface = ifname.to_owned();
        ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &opts).unwrap()
    };
    let whole = "<Address>10.1.0.0</Address><PrefixSize>16</PrefixSize>";

    let t0 = Instant::now();
    let alice = start(
        &lab.pki.user_cert,
        &lab.pki.user_key,
        "alice",
        "aovpn0",
        whole,
    );
    report(&format!(
        "EAP-TLS through the gateway to FreeRADIUS (after a failover): {} ms",
        t0.elapsed().as_millis()
    ));
    let alice_vip = assert_connected(&alice, &gw);
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("RADIUS accepted") && l.contains("10.1.0.5:1812")),
        "{log}"
    );
    assert!(
        radius.log().contains("Sent Access-Accept"),
        "{}",
        radius.log()
    );

    let (carol_cert, carol_key) = &users["carol@corp.example"];
    let carol = start(
        carol_cert,
        carol_key,
        "carol",
        "aovpn1",
        "<Address>10.1.2.0</Address><PrefixSize>24</PrefixSize>",
    );
    assert_eq!(
        carol.state().as_deref(),
        Some("connected"),
        "{}\n{}",
        carol.log(),
        gw.log()
    );
    let Some(IpAddr::V4(carol_vip)) = carol.virtual_ip() else {
        panic!("no address: {}", carol.status_text());
    };
    assert_eq!(
        carol_vip.octets()[..3],
        [172, 16, 202],
        "Class eng: {carol_vip}"
    );
    let out = Command::new(bin())
        .args(["gateway", "sessions", "--json", "--socket"])
        .arg(gw.admin_socket())
        .output()
        .unwrap();
    let sessions = json(&String::from_utf8_lossy(&out.stdout));
    let of = |vip: Ipv4Addr| {
        sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["virtual_ip"] == vip.to_string())
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(of(carol_vip)["group"], "eng", "{sessions}");
    assert_eq!(of(alice_vip)["group"], "default", "{sessions}");

    let (mallory_cert, mallory_key) = &users["mallory@corp.example"];
    let mut mallory = start(
        mallory_cert,
        mallory_key,
        "mallory",
        "aovpn2",
        "<Address>10.1.3.0</Address><PrefixSize>24</PrefixSize>",
    );
    assert_eq!(
        mallory.state().as_deref(),
        Some("failed"),
        "{}",
        mallory.log()
    );
    let error = json(&mallory.status_text())["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("AUTHENTICATION_FAILED"), "{error}");
    assert!(
        mallory
            .wait_exit(Duration::from_secs(10))
            .unwrap()
            .is_some()
    );
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("RADIUS refused") && l.contains("mallory@corp.example")),
        "{log}\n--- freeradius\n{}",
        radius.log()
    );

    // Every server down: refused at once, and the log says why.
    radius.stop();
    let (dave_cert, dave_key) = &users["dave@corp.example"];
    let t0 = Instant::now();
    let mut dave = start(
        dave_cert,
        dave_key,
        "dave",
        "aovpn3",
        "<Address>10.1.4.0</Address><PrefixSize>24</PrefixSize>",
    );
    report(&format!(
        "refused with no RADIUS server up (2 servers x 2 tries x 300 ms) after {} ms",
        t0.elapsed().as_millis()
    ));
    assert_eq!(dave.state().as_deref(), Some("failed"), "{}", dave.log());
    assert!(dave.wait_exit(Duration::from_secs(10)).unwrap().is_some());
    let log = gw.log();
    assert!(
        log.lines().any(|l| l.contains("no RADIUS server answered")
            && l.contains("10.1.0.5:1812")
            && l.contains("10.1.0.6:1812")),
        "{log}"
    );
    let rekeyed = |gw: &GatewayProcess| {
        gw.log()
            .lines()
            .any(|l| l.contains("IKE SA rekeyed") && l.contains("alice@corp.example"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rekeyed(&gw) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(rekeyed(&gw), "{}", gw.log());
    assert!(!gw.log().contains("disconnecting"), "{}", gw.log());
    assert_eq!(alice.state().as_deref(), Some("connected"));
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
    // The device tunnel authenticates with its certificate at the gateway itself (in
    // alice's place: they would share a route).
    let mut alice = alice;
    alice.stop().unwrap();
    let mut device = lab.connect_machine("device");
    assert_connected(&device, &gw);
    device.stop().unwrap();
}

/// The admin page in a real browser (Debian's headless Chromium in the gateway's namespace,
/// driven over the DevTools protocol): the login form with the token, the two sessions (a
/// device and a user tunnel), the pools, a refused client among the failures, the chart; a
/// disconnect not confirmed does nothing, a confirmed one ends that session. Without the
/// token nothing but the login form answers.
#[test]
fn the_admin_page_shows_the_sessions_and_a_confirmed_disconnect_ends_one() {
    use std::os::unix::fs::PermissionsExt;
    use testkit::browser::Browser;
    let lab = Lab::new("e2eweb");
    let token = "an-admin-token-for-the-test-0123";
    let token_file = lab.dir("web.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (revoked_cert, revoked_key) = lab
        .pki
        .issue_end_entity("machine", "stolen.corp.example")
        .unwrap();
    let mut opts = lab.gateway_opts();
    opts.revoked = vec![lab.pki.thumbprint(&revoked_cert).unwrap()];
    opts.extra = format!(
        "[web]\nlisten = \"127.0.0.1:9478\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let gw = lab.start_gateway(&opts);
    let device = lab.connect_machine("device");
    assert_connected(&device, &gw);
    let user_xml = lab.dir("user.xml");
    std::fs::write(
        &user_xml,
        user_profile_xml().replace(
            "<Address>10.1.0.0</Address><PrefixSize>16</PrefixSize>",
            "<Address>10.1.2.0</Address><PrefixSize>24</PrefixSize>",
        ),
    )
    .unwrap();
    let mut user_opts = ClientOpts::new(
        GATEWAY_NAME,
        &lab.pki.user_cert,
        &lab.pki.user_key,
        &lab.pki.ca_cert,
    )
    .profile(&user_xml)
    .name("user");
    user_opts.interface = "aovpn1".into();
    let user = ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &user_opts).unwrap();
    assert_connected(&user, &gw);
    // A client the gateway refuses: its certificate is revoked.
    let mut refused_opts =
        ClientOpts::new(GATEWAY_NAME, &revoked_cert, &revoked_key, &lab.pki.ca_cert)
            .name("refused");
    refused_opts.interface = "aovpn2".into();
    let mut refused =
        ClientProcess::start(bin(), &lab.topo.client, &lab.dir("cl"), &refused_opts).unwrap();
    assert_eq!(
        refused.state().as_deref(),
        Some("failed"),
        "{}",
        refused.log()
    );
    let _ = refused.wait_exit(Duration::from_secs(10));

    let status_of = |path: &str| {
        let out = lab
            .topo
            .gateway
            .exec([
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:9478{path}"),
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status_of("/api/state"), "401");
    assert_eq!(status_of("/admin.js"), "401");
    assert_eq!(status_of("/login"), "200");

    let mut browser = Browser::start(&lab.topo.gateway, &lab.dir("chromium")).unwrap();
    browser.open("http://127.0.0.1:9478/").unwrap();
    let wait = Duration::from_secs(15);
    browser
        // The path changes before the login page's form exists: wait for the form itself.
        .wait_for(
            "location.pathname === '/login' && document.getElementById('token') !== null",
            wait,
        )
        .unwrap();
    browser
        .eval(&format!(
            "document.getElementById('token').value = '{token}'; document.querySelector('form').submit(); true"
        ))
        .unwrap();
    browser
        .wait_for("document.querySelectorAll('tr.session').length === 2", wait)
        .unwrap();
    let identities = browser
        .eval("[...document.querySelectorAll('tr.session')].map(r => r.dataset.identity).join(' ')")
        .unwrap();
    let identities = identities.as_str().unwrap_or_default().to_owned();
    assert!(
        identities.contains("client1.corp.example") && identities.contains("alice@corp.example"),
        "{identities}"
    );
    browser
        .wait_for("document.querySelectorAll('tr.pool').length === 1", wait)
        .unwrap();
    browser
        .wait_for(
            "[...document.querySelectorAll('tr.failure')].some(r => r.innerText.includes('stolen.corp.example') && r.innerText.includes('revoked'))",
            wait,
        )
        .unwrap();
    browser
        .wait_for(
            "document.querySelectorAll('#chart polyline').length === 2",
            wait,
        )
        .unwrap();

    let click = |confirm: bool| {
        format!(
            "window.confirm = () => {confirm}; document.querySelector('tr.session[data-identity*=\"alice\"] button.disconnect').click(); true"
        )
    };
    browser.eval(&click(false)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gateway_clients(&gw).len(), 2, "{}", gw.status_text());
    browser.eval(&click(true)).unwrap();
    browser
        .wait_for("document.querySelectorAll('tr.session').length === 1", wait)
        .unwrap();
    let left = browser
        .eval("document.querySelector('tr.session').dataset.identity")
        .unwrap();
    assert!(
        left.as_str()
            .unwrap_or_default()
            .contains("client1.corp.example"),
        "{left}"
    );
    assert!(gw.log().contains("admin page: disconnect"), "{}", gw.log());
    drop(browser);
    drop(user);
    drop(device);
}

/// Prometheus metrics on the gateway's local address: a tunnel by its group, a setup, a
/// refused client by reason, the data plane's totals growing with a ping, the pool's use;
/// anything but `GET /metrics` refused.
#[test]
fn the_gateway_serves_prometheus_metrics() {
    let lab = Lab::new("e2emet");
    let mut opts = lab.gateway_opts();
    opts.extra = "[metrics]\nlisten = \"127.0.0.1:9477\"\n".into();
    let gw = lab.start_gateway(&opts);
    let get = |request: &str| -> String {
        let request = request.to_owned();
        lab.topo.gateway.run(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9477").unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        })
    };
    let scrape = || get("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let value = |text: &str, series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };

    let mut client = lab.connect_machine("machine");
    assert_connected(&client, &gw);
    let before = scrape();
    assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
    assert_eq!(
        value(&before, "aovpn_gateway_tunnels{group=\"default\"}"),
        1
    );
    assert_eq!(value(&before, "aovpn_gateway_ike_setups_total"), 1);
    // Its handshake, within 10 s and counted once.
    assert_eq!(
        value(&before, "aovpn_gateway_ike_handshake_seconds_count"),
        1
    );
    assert_eq!(
        value(
            &before,
            "aovpn_gateway_ike_handshake_seconds_bucket{le=\"10.0\"}"
        ),
        1
    );
    assert_eq!(
        value(&before, "aovpn_gateway_pool_leased{group=\"default\"}"),
        1
    );
    assert_eq!(
        value(&before, "aovpn_gateway_pool_addresses{group=\"default\"}"),
        254
    );
    assert_eq!(value(&before, "aovpn_gateway_half_open_sas"), 0);
    ping(&lab.topo.client, lab::VNET_HOST).unwrap();
    let after = scrape();
    let decapsulated = "aovpn_gateway_datapath_total{counter=\"decapsulated\"}";
    assert!(
        value(&after, decapsulated) >= value(&before, decapsulated) + 3,
        "{before}\n{after}"
    );

    // A client of another CA: refused, counted by reason.
    client.stop().unwrap();
    let other = Pki::issue(bin(), &lab.dir("other-pki"), &PkiOptions::new(GATEWAY_NAME)).unwrap();
    let mut foreign = lab.connect(&other.machine_cert, &other.machine_key, "foreign");
    assert_refused(&mut foreign, &gw, "certificate of another CA");
    let text = scrape();
    assert_eq!(
        value(
            &text,
            "aovpn_gateway_ike_failures_total{reason=\"peer_rejected\"}"
        ),
        1,
        "{text}"
    );
    assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get("GET /admin HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
}

/// `AOVPN_LOG_FORMAT=json`: every log line is one JSON object with the level, target and the
/// event's fields (for a log shipper); without it, text.
#[test]
fn logs_are_json_lines_when_asked() {
    let run = |json: bool| {
        let mut cmd = Command::new(bin());
        cmd.args([
            "doctor",
            "--server",
            "127.0.0.1",
            "--cert",
            "/nonexistent/c.pem",
            "--key",
            "/nonexistent/k.pem",
        ]);
        if json {
            cmd.env("AOVPN_LOG_FORMAT", "json");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stderr).into_owned()
    };
    let logs = run(true);
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "{logs}");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"]["message"].is_string()),
        "{logs}"
    );
    assert!(!run(false).lines().any(|l| l.starts_with('{')));
}
