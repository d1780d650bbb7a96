use super::*;
use crate::netns::{Topology, lab, unique_name};
use crate::require_root;

const SAMPLE_PRETTY: &str = "\
list-sa event {
  ao {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.2
    local-port = 4500
    local-id = C=XX, O=AO Lab, CN=client1
    remote-host = 198.51.100.1
    remote-port = 4500
    remote-id = vpn.aolab.example
    initiator = yes
    encr-alg = AES_GCM_16
    encr-keysize = 256
    prf-alg = PRF_HMAC_SHA2_384
    dh-group = ECP_384
    local-vips = [
      172.16.201.1
    ]
    child-sas {
      ao-1 {
        name = ao
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        encr-alg = AES_CBC
        encr-keysize = 128
        integ-alg = HMAC_SHA2_256_128
        local-ts = [
          172.16.201.1/32
        ]
        remote-ts = [
          10.1.0.0/16
        ]
      }
    }
  }
}
";

#[test]
fn parses_pretty_list_sas() {
    let sas = parse_list_sas(SAMPLE_PRETTY).unwrap();
    assert_eq!(sas.len(), 1);
    let sa = &sas[0];
    assert_eq!(sa.name, "ao");
    assert_eq!(sa.state, "ESTABLISHED");
    assert_eq!(sa.local_id, "C=XX, O=AO Lab, CN=client1");
    assert_eq!(sa.remote_id, "vpn.aolab.example");
    assert_eq!(
        sa.ike_algorithms,
        "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
    );
    assert_eq!(sa.local_vips, vec!["172.16.201.1"]);
    assert!(sa.remote_vips.is_empty());
    let child = &sa.children[0];
    assert_eq!(child.name, "ao");
    assert_eq!(child.state, "INSTALLED");
    assert!(child.encap);
    assert_eq!(child.algorithms, "ESP:AES_CBC-128/HMAC_SHA2_256_128");
    assert_eq!(child.remote_ts, vec!["10.1.0.0/16"]);
    assert!(parse_list_sas("").unwrap().is_empty());
    assert!(parse_list_sas("a {\n").is_err());
    assert!(parse_list_sas("}\n").is_err());
    assert!(parse_list_sas("garbage\n").is_err());
}

#[test]
fn extra_plugins_follow_the_standard_list() {
    let plain = strongswan_conf(Path::new("/w"), "", "");
    assert!(
        plain.contains(&format!("load = {CHARON_PLUGINS}\n")),
        "{plain}"
    );
    let eap = strongswan_conf(
        Path::new("/w"),
        "eap-identity eap-tls",
        "libtls {\n    version_max = 1.3\n}\n",
    );
    assert!(
        eap.contains(&format!("load = {CHARON_PLUGINS} eap-identity eap-tls\n")),
        "{eap}"
    );
    // Settings go at the top level, after the charon section.
    assert!(
        eap.ends_with("}\nlibtls {\n    version_max = 1.3\n}\n"),
        "{eap}"
    );
}

#[test]
fn renders_quoted_swanctl_conf() {
    let conf = SwanctlConf::new()
        .connection(
            Connection::initiator("ao")
                .remote_addrs("203.0.113.1")
                .local_cert(Path::new("/x/client.crt"))
                .remote_id("vpn \"q\"")
                .child(ChildConfig::new("ao").remote_ts("10.1.0.0/16")),
        )
        .pool("p", "172.16.201.0/24");
    let text = conf.render().unwrap();
    assert!(text.contains("vips = \"0.0.0.0\""), "{text}");
    assert!(text.contains("certs = \"client.crt\""), "{text}");
    assert!(text.contains("id = \"vpn \\\"q\\\"\""), "{text}");
    assert!(text.contains("remote_ts = \"10.1.0.0/16\""), "{text}");
    assert_eq!(text.matches('{').count(), text.matches('}').count());
}

/// Gateway and client charon in a lab topology, proposals as given.
fn strongswan_to_strongswan(topo: Topology, kind: KeyKind, ike: &str, esp: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&tmp.path().join("pki"), kind).unwrap();
    let gw_addr = topo.gateway_wan().to_string();

    let gw = Charon::start(&topo.gateway, &tmp.path().join("gw")).unwrap();
    let cl = Charon::start(&topo.client, &tmp.path().join("cl")).unwrap();
    let (gw_pid, cl_pid) = (gw.pid(), cl.pid());
    assert_ne!(gw_pid, cl_pid);

    gw.configure(
        &SwanctlConf::new()
            .connection(
                Connection::responder("p2s")
                    .local_addrs(&gw_addr)
                    .pools("p2s-pool")
                    .proposals(ike)
                    .local_id(TestPki::GATEWAY_ID)
                    .local_cert(&pki.gateway_cert)
                    .remote_cacert(&pki.ca_cert)
                    .child(
                        ChildConfig::new("p2s")
                            .local_ts(lab::VNET_TS)
                            .esp_proposals(esp),
                    ),
            )
            .pool("p2s-pool", lab::CLIENT_POOL)
            .private_key(&pki.gateway_key),
    )
    .unwrap();
    cl.configure(
        &SwanctlConf::new()
            .connection(
                Connection::initiator("ao")
                    .remote_addrs(&gw_addr)
                    .proposals(ike)
                    .local_cert(&pki.client_cert)
                    .remote_id(TestPki::GATEWAY_ID)
                    .remote_cacert(&pki.ca_cert)
                    .child(
                        ChildConfig::new("ao")
                            .remote_ts(lab::VNET_TS)
                            .esp_proposals(esp)
                            .set("start_action", "none"),
                    ),
            )
            .private_key(&pki.client_key),
    )
    .unwrap();
    let gw_load = gw.load_all().unwrap();
    let cl_load = cl.load_all().unwrap();
    assert!(gw_load.contains("loaded connection 'p2s'"), "{gw_load}");
    assert!(cl_load.contains("loaded connection 'ao'"), "{cl_load}");
    for load in [&gw_load, &cl_load] {
        assert!(load.contains(" key from '"), "{load}");
    }

    if let Err(e) = cl.initiate("ao", "ao", Duration::from_secs(30)) {
        panic!(
            "initiate failed: {e}\n--- client log\n{}\n--- gateway log\n{}",
            cl.log(),
            gw.log()
        );
    }

    let cl_sas = cl.list_sas().unwrap();
    let gw_sa = gw.wait_for_sa("p2s", Duration::from_secs(5)).unwrap();
    let gw_sas = gw.list_sas().unwrap();
    assert_eq!(gw_sas, vec![gw_sa]);
    assert_eq!(cl_sas.len(), 1, "{cl_sas:?}");
    assert_eq!(gw_sas.len(), 1, "{gw_sas:?}");
    let (c, g) = (&cl_sas[0], &gw_sas[0]);
    assert_eq!((c.name.as_str(), c.state.as_str()), ("ao", "ESTABLISHED"));
    assert_eq!((g.name.as_str(), g.state.as_str()), ("p2s", "ESTABLISHED"));
    assert_eq!(c.remote_id, TestPki::GATEWAY_ID);
    assert_eq!(g.local_id, TestPki::GATEWAY_ID);
    assert_eq!(c.local_id, TestPki::CLIENT_DN);
    assert_eq!(g.remote_id, TestPki::CLIENT_DN);
    assert_eq!(c.ike_algorithms, g.ike_algorithms);
    assert_eq!(c.remote_host, gw_addr);
    assert_eq!(g.remote_host, topo.client_as_seen_by_gateway().to_string());
    let vip = c.local_vips.first().expect("client got no virtual IP");
    assert!(vip.starts_with("172.16.201."), "{vip}");
    assert_eq!(g.remote_vips, c.local_vips);
    for sa in [c, g] {
        assert_eq!(sa.children.len(), 1, "{sa:?}");
        let child = &sa.children[0];
        assert_eq!(child.state, "INSTALLED");
        assert_eq!(child.mode, "TUNNEL");
        assert!(child.encap, "{child:?}");
    }
    assert_eq!(c.children[0].algorithms, g.children[0].algorithms);
    assert_eq!(c.children[0].remote_ts, vec![lab::VNET_TS.to_string()]);
    assert_eq!(c.children[0].local_ts, vec![format!("{vip}/32")]);

    // Traffic to the host behind the gateway goes through the tunnel (the client has no
    // other route to 10.1.0.0/16: in the direct layout none, in the routed one the
    // internet router has none).
    topo.client
        .exec_ok([
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &lab::VNET_HOST.to_string(),
        ])
        .unwrap();
    let after = cl.list_sas().unwrap();
    let child = &after[0].children[0];
    assert!(child.packets_out >= 2 && child.packets_in >= 2, "{child:?}");

    let algorithms = format!("{} | {}", c.ike_algorithms, c.children[0].algorithms);
    cl.terminate("ao").unwrap();
    assert!(cl.list_sas().unwrap().is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.list_sas().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "gateway kept its SA after the delete"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        topo.client
            .exec(["ping", "-c", "1", "-W", "1", "10.1.0.10"])
            .unwrap()
            .status
            .code()
            != Some(0),
        "10.1.0.10 still reachable after terminate"
    );

    let workdirs = [gw.workdir().to_owned(), cl.workdir().to_owned()];
    drop(gw);
    drop(cl);
    for pid in [gw_pid, cl_pid] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "charon {pid} still runs"
        );
    }
    assert!(topo.gateway.pids().unwrap().is_empty());
    assert!(topo.client.pids().unwrap().is_empty());
    for d in workdirs {
        assert!(d.join("charon.log").exists());
    }
    algorithms
}

#[test]
fn strongswan_pair_ecp384_rsa_direct() {
    require_root();
    let topo = Topology::direct("tkss").unwrap();
    let algs = strongswan_to_strongswan(
        topo,
        KeyKind::Rsa2048,
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16",
    );
    assert_eq!(
        algs,
        "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384 | ESP:AES_GCM_16-256"
    );
}

#[test]
fn strongswan_pair_x25519_ecdsa_pkcs8_behind_nat() {
    require_root();
    let topo = Topology::routed("tksn", true).unwrap();
    let algs = strongswan_to_strongswan(
        topo,
        KeyKind::EcdsaP256Pkcs8,
        "aes128-sha256-x25519",
        "aes128-sha256",
    );
    assert_eq!(
        algs,
        "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519 | \
             ESP:AES_CBC-128/HMAC_SHA2_256_128"
    );
}

#[test]
fn charon_start_rejects_run_and_stops_on_drop() {
    require_root();
    let ns = crate::netns::Netns::new(unique_name("tkch")).unwrap();
    assert!(Charon::start(&ns, Path::new("/run/testkit-x")).is_err());
    let tmp = tempfile::tempdir().unwrap();
    let charon = Charon::start(&ns, tmp.path()).unwrap();
    let pid = charon.pid();
    assert_eq!(ns.pids().unwrap(), vec![i32::try_from(pid).unwrap()]);
    assert!(charon.list_sas().unwrap().is_empty());
    let err = charon
        .wait_for_sa("none", Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(charon.log().contains("charon"), "{}", charon.log());
    drop(charon);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(ns.pids().unwrap().is_empty());
}

/// Which key encodings swanctl accepts from which directory (the reason for
/// [`PRIVATE_KEY_DIR`]).
#[test]
fn key_formats_load_from_private_dir() {
    require_root();
    let ns = crate::netns::Netns::new(unique_name("tkkf")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec-pkcs8.pem",
    ]);
    openssl(&[
        "pkey",
        "-in",
        "ec-pkcs8.pem",
        "-outform",
        "DER",
        "-out",
        "ec-pkcs8.der",
    ]);
    openssl(&["ec", "-in", "ec-pkcs8.pem", "-out", "ec-sec1.pem"]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa-pkcs8.pem",
    ]);
    openssl(&[
        "rsa",
        "-in",
        "rsa-pkcs8.pem",
        "-traditional",
        "-out",
        "rsa-pkcs1.pem",
    ]);
    assert!(
        fs::read_to_string(keys.join("ec-sec1.pem"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    assert!(
        fs::read_to_string(keys.join("rsa-pkcs1.pem"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );

    let charon = Charon::start(&ns, &tmp.path().join("charon")).unwrap();
    let cases = [
        (PRIVATE_KEY_DIR, "ec-pkcs8.pem", "ECDSA"),
        (PRIVATE_KEY_DIR, "ec-pkcs8.der", "ECDSA"),
        (PRIVATE_KEY_DIR, "ec-sec1.pem", "ECDSA"),
        (PRIVATE_KEY_DIR, "rsa-pkcs8.pem", "RSA"),
        (PRIVATE_KEY_DIR, "rsa-pkcs1.pem", "RSA"),
        ("ecdsa", "ec-pkcs8.pem", "ECDSA"),
    ];
    for (dir, file, kind) in cases {
        for sub in ["private", "ecdsa"] {
            let d = charon.swanctl_dir().join(sub);
            fs::remove_dir_all(&d).unwrap();
            fs::create_dir_all(&d).unwrap();
        }
        fs::copy(keys.join(file), charon.swanctl_dir().join(dir).join(file)).unwrap();
        let out = charon.swanctl("--load-creds", &[]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("loaded {kind} key from")) && out.status.success(),
            "{dir}/{file}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn ike_sa_total_from_swanctl_stats() {
    let stats = "uptime: 2 minutes, since Dec 04 21:50:01 2026\n\
                 worker threads: 16 total, 11 idle, working: 4/0/1/0\n\
                 job queues: 0/0/0/0\n\
                 jobs scheduled: 10042\n\
                 IKE_SAs: 10000 total, 3 half-open\n\
                 mallinfo: sbrk 2424832, mmap 0, used 544000, free 1880832\n";
    assert_eq!(parse_ike_sa_total(stats), Some(10000));
    assert_eq!(parse_ike_sa_total("uptime: 1 second\n"), None);
    assert_eq!(parse_ike_sa_total("IKE_SAs: many total\n"), None);
}
