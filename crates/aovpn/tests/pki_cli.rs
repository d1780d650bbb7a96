//! `aovpn pki init / issue / thumbprint`, checked with our loader and the OpenSSL CLI.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn aovpn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aovpn"))
        .arg("pki")
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = aovpn(args);
    assert!(
        out.status.success(),
        "aovpn pki {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is required (scripts/install-deps.sh installs it)")
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_issue_thumbprint_and_openssl_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = d.join("ca");
    let out = d.join("out");
    let stdout = ok(&[
        "init",
        "--out",
        s(&ca),
        "--name",
        "Test Root",
        "--key",
        "p384",
    ]);
    assert!(stdout.contains("CN=Test Root"), "{stdout}");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    let key_pem = std::fs::read_to_string(ca.join("ca.key")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let text = openssl_ok(d, &["x509", "-in", "ca/ca.crt", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(
        text.contains("secp384r1") || text.contains("P-384"),
        "{text}"
    );
    // Refuses to overwrite an existing CA.
    assert!(!aovpn(&["init", "--out", s(&ca)]).status.success());

    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(d.join("pw"), "Passw0rd!\n").unwrap();
    ok(&[
        "issue",
        "--ca",
        s(&ca),
        "--kind",
        "gateway",
        "--name",
        "vpn.example.com",
        "--out",
        s(&out),
    ]);
    ok(&[
        "issue",
        "--ca",
        s(&ca),
        "--kind",
        "machine",
        "--name",
        "pc1.corp.example.com",
        "--out",
        s(&out),
        "--key",
        "rsa2048",
        "--p12",
        "--password-file",
        s(&d.join("pw")),
    ]);
    ok(&[
        "issue",
        "--ca",
        s(&ca),
        "--kind",
        "user",
        "--name",
        "alice@corp.example.com",
        "--out",
        s(&out),
        "--days",
        "30",
    ]);
    for f in [
        "vpn.example.com.key",
        "pc1.corp.example.com.key",
        "alice@corp.example.com.key",
    ] {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&out.join("pc1.corp.example.com.p12")), 0o600);
    // Issuing the same name again would overwrite: refused.
    assert!(
        !aovpn(&[
            "issue",
            "--ca",
            s(&ca),
            "--kind",
            "gateway",
            "--name",
            "vpn.example.com",
            "--out",
            s(&out)
        ])
        .status
        .success()
    );

    openssl_ok(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.crt",
            "-purpose",
            "sslserver",
            "out/vpn.example.com.crt",
        ],
    );
    openssl_ok(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.crt",
            "-purpose",
            "sslclient",
            "out/pc1.corp.example.com.crt",
        ],
    );
    openssl_ok(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.crt",
            "-purpose",
            "sslclient",
            "out/alice@corp.example.com.crt",
        ],
    );
    let bad = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.crt",
            "-purpose",
            "sslserver",
            "out/pc1.corp.example.com.crt",
        ],
    );
    assert!(!bad.status.success());

    // OpenSSL opens the PKCS#12 with the password file and finds the certificate and chain.
    let p12 = openssl_ok(
        d,
        &[
            "pkcs12",
            "-in",
            "out/pc1.corp.example.com.p12",
            "-passin",
            "file:pw",
            "-nokeys",
        ],
    );
    assert!(p12.contains("CN=pc1.corp.example.com") || p12.contains("CN = pc1.corp.example.com"));
    assert_eq!(p12.matches("BEGIN CERTIFICATE").count(), 2, "{p12}");
    let key = openssl_ok(
        d,
        &[
            "pkcs12",
            "-in",
            "out/pc1.corp.example.com.p12",
            "-passin",
            "file:pw",
            "-nocerts",
            "-nodes",
        ],
    );
    assert!(key.contains("BEGIN PRIVATE KEY"));

    // Thumbprint equals OpenSSL's SHA-1 fingerprint without colons.
    for cert in [
        "ca/ca.crt",
        "out/vpn.example.com.crt",
        "out/alice@corp.example.com.crt",
    ] {
        let ours = ok(&["thumbprint", s(&d.join(cert))]);
        let fp = openssl_ok(d, &["x509", "-in", cert, "-noout", "-fingerprint", "-sha1"]);
        let theirs = fp.trim().rsplit('=').next().unwrap().replace(':', "");
        assert_eq!(ours.trim(), theirs, "{cert}");
        assert_eq!(ours.trim().len(), 40);
    }
    // Also from DER.
    openssl_ok(
        d,
        &[
            "x509",
            "-in",
            "ca/ca.crt",
            "-outform",
            "DER",
            "-out",
            "ca.der",
        ],
    );
    assert_eq!(
        ok(&["thumbprint", s(&d.join("ca.der"))]),
        ok(&["thumbprint", s(&ca.join("ca.crt"))])
    );
}

#[test]
fn rsa4096_intermediate_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (root, sub, out) = (d.join("root"), d.join("sub"), d.join("out"));
    ok(&["init", "--out", s(&root), "--key", "rsa4096"]);
    ok(&[
        "issue",
        "--ca",
        s(&root),
        "--kind",
        "intermediate",
        "--name",
        "Issuing CA",
        "--out",
        s(&sub),
        "--key",
        "rsa4096",
    ]);
    assert_eq!(mode(&sub.join("ca.key")), 0o600);
    let sub_crt = std::fs::read_to_string(sub.join("ca.crt")).unwrap();
    assert_eq!(
        sub_crt.matches("BEGIN CERTIFICATE").count(),
        2,
        "intermediate + root"
    );
    ok(&[
        "issue",
        "--ca",
        s(&sub),
        "--kind",
        "gateway",
        "--name",
        "vpn.example.com",
        "--out",
        s(&out),
        "--key",
        "rsa4096",
    ]);
    // NAME.crt carries the leaf and the intermediate, so OpenSSL needs only the root.
    let leaf = std::fs::read_to_string(out.join("vpn.example.com.crt")).unwrap();
    assert_eq!(leaf.matches("BEGIN CERTIFICATE").count(), 2);
    let certs = pki::load_certificates(leaf.as_bytes()).unwrap();
    std::fs::write(d.join("leaf.pem"), certs[0].to_pem()).unwrap();
    std::fs::write(d.join("inter.pem"), certs[1].to_pem()).unwrap();
    openssl_ok(
        d,
        &[
            "verify",
            "-CAfile",
            "root/ca.crt",
            "-untrusted",
            "inter.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
    );
    let text = openssl_ok(d, &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
    assert!(text.contains("Key Encipherment"), "{text}");
}

#[test]
fn errors_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // No CA.
    let out = aovpn(&[
        "issue",
        "--ca",
        s(&d.join("nope")),
        "--kind",
        "user",
        "--name",
        "a@b.c",
        "--out",
        s(d),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.crt"));
    // Garbage certificate.
    std::fs::write(
        d.join("junk.crt"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = aovpn(&["thumbprint", s(&d.join("junk.crt"))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad encoding"));
    // --p12 without a password file is a usage error.
    ok(&["init", "--out", s(&d.join("ca"))]);
    let out = aovpn(&[
        "issue",
        "--ca",
        s(&d.join("ca")),
        "--kind",
        "user",
        "--name",
        "a@b.c",
        "--out",
        s(d),
        "--p12",
    ]);
    assert!(!out.status.success());
    // A user name must be user@domain.
    let out = aovpn(&[
        "issue",
        "--ca",
        s(&d.join("ca")),
        "--kind",
        "user",
        "--name",
        "alice",
        "--out",
        s(d),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user@domain"));
}
