//! `aovpn doctor` in the routed lab: each failure named with what to do (no gateway, a key
//! readable by others, a name that does not resolve, a gateway certificate from another CA),
//! and a good setup passing every check with a real handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Lab, bin};
use testkit::aovpn::{GatewayOpts, GatewayProcess, Pki, PkiOptions};

const GATEWAY_NAME: &str = "vpn.doctor.example";

/// `aovpn doctor ARGS` in the client namespace (through `ip netns exec`, which shows it the
/// lab's hosts file): exit code and report.
fn doctor(lab: &Lab, args: &[&str]) -> (i32, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", lab.topo.client.name()])
        .arg(bin())
        .arg("doctor")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in\n{report}"))
}

#[test]
fn doctor_names_each_failure_and_passes_a_good_setup() {
    let lab = Lab::routed("doc", PkiOptions::new(GATEWAY_NAME), true, GATEWAY_NAME);
    let p = &lab.pki;
    let (cert, key, ca) = (
        p.machine_cert.to_str().unwrap(),
        p.machine_key.to_str().unwrap(),
        p.ca_cert.to_str().unwrap(),
    );
    let base = [
        "--server",
        GATEWAY_NAME,
        "--cert",
        cert,
        "--key",
        key,
        "--ca",
        ca,
    ];

    // No gateway: the handshake gets no answer, and the report says where to look.
    let (code, report) = doctor(&lab, &base);
    assert_eq!(code, 1, "{report}");
    for check in ["certificate", "key", "chain", "expiry"] {
        assert!(line(&report, check).starts_with("ok"), "{report}");
    }
    assert!(line(&report, "dns").starts_with("ok"), "{report}");
    let ike = line(&report, "ike");
    assert!(
        ike.starts_with("problem") && ike.contains("no answer on UDP 500"),
        "{report}"
    );
    assert!(
        report.contains("UDP 500 and 4500 must reach the gateway"),
        "{report}"
    );

    // The gateway runs: every check passes, with a real handshake (deleted again).
    let gw = GatewayProcess::start(
        bin(),
        &lab.topo.gateway,
        &lab.dir("gw"),
        &GatewayOpts::new(&lab.pki, lab.topo.gateway_wan().into()),
    )
    .unwrap();
    let (code, report) = doctor(&lab, &base);
    assert_eq!(code, 0, "{report}\n{}", gw.log());
    let ike = line(&report, "ike");
    assert!(
        ike.starts_with("ok") && ike.contains("chains to our roots"),
        "{report}"
    );
    assert!(!report.contains("problem"), "{report}");

    // A key others can read.
    let loose = lab.dir("loose.key");
    std::fs::copy(key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = base.to_vec();
    args[5] = loose.to_str().unwrap();
    let (code, report) = doctor(&lab, &args);
    assert_eq!(code, 1);
    assert!(line(&report, "key").starts_with("problem"), "{report}");
    assert!(
        report.contains(&format!("chmod 600 {}", loose.display())),
        "{report}"
    );

    // A name that does not resolve.
    let mut args = base.to_vec();
    args[1] = "nowhere.doctor.invalid";
    let (code, report) = doctor(&lab, &args);
    assert_eq!(code, 1);
    assert!(line(&report, "dns").starts_with("problem"), "{report}");

    // Roots that did not issue the gateway's certificate.
    let other = Pki::issue(bin(), &lab.dir("other-pki"), &PkiOptions::new(GATEWAY_NAME)).unwrap();
    let mut args = base.to_vec();
    args[7] = other.ca_cert.to_str().unwrap();
    let (code, report) = doctor(&lab, &args);
    assert_eq!(code, 1);
    let ike = line(&report, "ike");
    assert!(
        ike.starts_with("problem") && ike.contains("the gateway's certificate"),
        "{report}"
    );
    assert!(
        report.contains("must chain to one of our roots"),
        "{report}"
    );
}

/// `aovpn gateway --check --client-cert FILE`: whether this gateway would take a client with
/// that certificate, and if not why (here: revoked by thumbprint), with what to do.
#[test]
fn gateway_check_says_whether_a_client_certificate_would_be_accepted() {
    let lab = Lab::routed("docgw", PkiOptions::new(GATEWAY_NAME), true, GATEWAY_NAME);
    let p = &lab.pki;
    let mut opts = GatewayOpts::new(p, lab.topo.gateway_wan().into());
    opts.revoked = vec![p.thumbprint(&p.user_cert).unwrap()];
    let config = lab.dir("gw.toml");
    std::fs::create_dir_all(lab.dir("gw")).unwrap();
    std::fs::write(&config, opts.render(&lab.dir("gw"))).unwrap();
    let check = |cert: &std::path::Path| {
        let out = Command::new(bin())
            .args(["gateway", "--check", "--config"])
            .arg(&config)
            .arg("--client-cert")
            .arg(cert)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = check(&p.machine_cert);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("pool: 172.16.201.0/24 (254 client addresses)"),
        "{said}"
    );
    assert!(
        said.contains("accepted as fqdn:client1.corp.example"),
        "{said}"
    );
    let (code, said) = check(&p.user_cert);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("is revoked"), "{said}");
    assert!(said.contains("revoked_thumbprints"), "{said}");
}
