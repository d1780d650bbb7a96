//! Cross-checks against the OpenSSL CLI (installed by scripts/install-deps.sh): OpenSSL must
//! accept what we issue and write, and we must accept what OpenSSL issues and writes.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use pki::{
    CertKind, CertificateAuthority, Identity, KeyAlgorithm, KeyType, Pkcs12Encryption, PrivateKey,
    Role, TrustStore, Validity, certificates_to_pem, load_certificate, load_certificates,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Runs openssl with `args` in `dir`; returns stdout, panicking with stderr on failure.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = openssl_status(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl_status(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is required (scripts/install-deps.sh installs it)")
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Valid around the real clock: OpenSSL verifies at the current time.
fn validity() -> Validity {
    Validity::days_from(SystemTime::now() - DAY, 10)
}

#[test]
fn openssl_verifies_what_we_issue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca =
        CertificateAuthority::new_root("Interop Root", KeyAlgorithm::P256, validity()).unwrap();
    write(d, "ca.crt", ca.cert().to_pem());
    for alg in [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Rsa2048,
    ] {
        let m = ca
            .issue(CertKind::Machine, "pc1.example.com", alg, validity())
            .unwrap();
        let u = ca
            .issue(CertKind::User, "alice@example.com", alg, validity())
            .unwrap();
        let g = ca
            .issue(CertKind::Gateway, "vpn.example.com", alg, validity())
            .unwrap();
        write(d, "m.crt", m.chain[0].to_pem());
        write(d, "u.crt", u.chain[0].to_pem());
        write(d, "g.crt", g.chain[0].to_pem());
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslclient",
                "m.crt",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslclient",
                "u.crt",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslserver",
                "g.crt",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-verify_hostname",
                "vpn.example.com",
                "g.crt",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-verify_email",
                "alice@example.com",
                "u.crt",
            ],
        );
        // OpenSSL agrees on the EKU split.
        let bad = openssl_status(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslserver",
                "m.crt",
            ],
        );
        assert!(
            !bad.status.success(),
            "a machine certificate must not pass as a TLS server"
        );
        let text =
            String::from_utf8(openssl(d, &["x509", "-in", "g.crt", "-noout", "-text"])).unwrap();
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(
            text.contains("1.3.6.1.5.5.8.2.2") || text.contains("IPSec Intermediate"),
            "{text}"
        );
        let text =
            String::from_utf8(openssl(d, &["x509", "-in", "u.crt", "-noout", "-text"])).unwrap();
        assert!(text.contains("email:alice@example.com"), "{text}");
        assert!(text.contains("othername") || text.contains("UPN"), "{text}");
    }
}

#[test]
fn openssl_verifies_rsa4096_chain_with_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca =
        CertificateAuthority::new_root("Root 4096", KeyAlgorithm::Rsa4096, validity()).unwrap();
    let sub = ca
        .issue_intermediate("Sub 4096", KeyAlgorithm::Rsa4096, validity())
        .unwrap();
    let m = sub
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::Rsa4096,
            validity(),
        )
        .unwrap();
    write(d, "ca.crt", ca.cert().to_pem());
    write(d, "sub.crt", sub.cert().to_pem());
    write(d, "m.crt", m.chain[0].to_pem());
    openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "sub.crt",
            "-purpose",
            "sslclient",
            "m.crt",
        ],
    );
    let bad = openssl_status(d, &["verify", "-CAfile", "ca.crt", "m.crt"]);
    assert!(
        !bad.status.success(),
        "without the intermediate there is no chain"
    );
}

#[test]
fn thumbprint_and_certreq_hash_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca =
        CertificateAuthority::new_root("Hash Root", KeyAlgorithm::Rsa2048, validity()).unwrap();
    write(d, "ca.crt", ca.cert().to_pem());
    let fp = String::from_utf8(openssl(
        d,
        &["x509", "-in", "ca.crt", "-noout", "-fingerprint", "-sha1"],
    ))
    .unwrap();
    // "SHA1 Fingerprint=AB:CD:..."
    let theirs = fp.trim().rsplit('=').next().unwrap().replace(':', "");
    assert_eq!(ca.cert().thumbprint().to_string(), theirs);
    assert_eq!(
        fp.trim()
            .rsplit('=')
            .next()
            .unwrap()
            .parse::<pki::Thumbprint>()
            .unwrap(),
        ca.cert().thumbprint()
    );

    openssl(
        d,
        &[
            "x509", "-in", "ca.crt", "-noout", "-pubkey", "-out", "pub.pem",
        ],
    );
    openssl(
        d,
        &[
            "pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "spki.der",
        ],
    );
    let dgst = openssl(d, &["dgst", "-sha1", "-binary", "spki.der"]);
    let store = TrustStore::with_roots([ca.cert().clone()]).unwrap();
    assert_eq!(
        store.ca_key_hashes(),
        vec![<[u8; 20]>::try_from(dgst.as_slice()).unwrap()]
    );
    assert_eq!(
        std::fs::read(d.join("spki.der")).unwrap(),
        ca.cert().spki_der()
    );
}

#[test]
fn openssl_reads_our_pkcs12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = CertificateAuthority::new_root("P12 Root", KeyAlgorithm::P256, validity()).unwrap();
    let u = ca
        .issue(
            CertKind::User,
            "erin@example.com",
            KeyAlgorithm::Rsa2048,
            validity(),
        )
        .unwrap();
    write(d, "pw", "correct horse\n");
    for (enc, name) in [
        (Pkcs12Encryption::Aes256Sha256, "aes.p12"),
        (Pkcs12Encryption::Legacy3DesSha1, "3des.p12"),
    ] {
        write(d, name, u.to_pkcs12("correct horse", enc).unwrap());
        let certs = openssl(d, &["pkcs12", "-in", name, "-passin", "file:pw", "-nokeys"]);
        let certs = load_certificates(&certs).unwrap();
        assert_eq!(certs.len(), 2);
        assert!(certs.contains(&u.chain[0]) && certs.contains(ca.cert()));
        let key = openssl(
            d,
            &[
                "pkcs12", "-in", name, "-passin", "file:pw", "-nocerts", "-nodes",
            ],
        );
        let key = PrivateKey::load(&key).unwrap();
        assert_eq!(key.public_key_spki().unwrap(), u.chain[0].spki_der());
        let wrong = write(d, "wrongpw", "nope\n");
        let bad = openssl_status(
            d,
            &[
                "pkcs12",
                "-in",
                name,
                "-passin",
                &format!("file:{}", wrong.display()),
                "-nokeys",
            ],
        );
        assert!(!bad.status.success());
    }
}

#[test]
fn we_read_openssl_pkcs12_modern_and_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = CertificateAuthority::new_root("Export Root", KeyAlgorithm::P256, validity()).unwrap();
    let sub = ca
        .issue_intermediate("Export Sub", KeyAlgorithm::P256, validity())
        .unwrap();
    let m = sub
        .issue(
            CertKind::Machine,
            "pc7.example.com",
            KeyAlgorithm::P384,
            validity(),
        )
        .unwrap();
    write(d, "leaf.crt", m.chain[0].to_pem());
    write(d, "leaf.key", m.key.to_pem().as_bytes());
    write(d, "chain.crt", certificates_to_pem(&m.chain[1..]));
    write(d, "pw", "pfx-pass\n");
    let base = [
        "pkcs12",
        "-export",
        "-inkey",
        "leaf.key",
        "-in",
        "leaf.crt",
        "-certfile",
        "chain.crt",
        "-passout",
        "file:pw",
    ];
    let variants: [(&str, &[&str]); 3] = [
        ("modern.p12", &[]),
        ("legacy.p12", &["-legacy"]),
        (
            "3des.p12",
            &[
                "-certpbe",
                "PBE-SHA1-3DES",
                "-keypbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ],
        ),
    ];
    for (name, extra) in variants {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-out", name]);
        openssl(d, &args);
        let data = std::fs::read(d.join(name)).unwrap();
        let id = Identity::from_pkcs12(&data, "pfx-pass").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.key.key_type(), KeyType::EcdsaP384, "{name}");
        assert_eq!(
            id.key.public_key_spki().unwrap(),
            m.chain[0].spki_der(),
            "{name}"
        );
        assert_eq!(id.chain, m.chain, "{name}: leaf, intermediate, root");
        assert_eq!(
            Identity::from_pkcs12(&data, "pfx-pas").err(),
            Some(pki::PkiError::WrongPassword),
            "{name}"
        );
    }
}

#[test]
fn we_validate_and_load_what_openssl_issues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=OpenSSL Root",
            "-days",
            "10",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    // A client certificate with an RSA key in PKCS#1 form ("RSA PRIVATE KEY").
    openssl(d, &["genrsa", "-traditional", "-out", "client.key", "2048"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-key",
            "client.key",
            "-out",
            "client.crt",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-subj",
            "/CN=pc9.example.com",
            "-days",
            "5",
            "-addext",
            "subjectAltName=DNS:pc9.example.com,IP:203.0.113.9",
            "-addext",
            "extendedKeyUsage=clientAuth",
            "-addext",
            "keyUsage=digitalSignature,keyEncipherment",
            "-addext",
            "basicConstraints=CA:FALSE",
        ],
    );
    // A gateway certificate with only the IKE-intermediate EKU and an EC key in SEC1 form.
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "gw.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-key",
            "gw.key",
            "-out",
            "gw.crt",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-subj",
            "/CN=vpn.example.com",
            "-days",
            "5",
            "-addext",
            "subjectAltName=DNS:vpn.example.com",
            "-addext",
            "extendedKeyUsage=1.3.6.1.5.5.8.2.2",
            "-addext",
            "basicConstraints=CA:FALSE",
        ],
    );
    let read = |n: &str| std::fs::read(d.join(n)).unwrap();
    assert!(
        String::from_utf8(read("client.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(
        String::from_utf8(read("gw.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );

    let root = load_certificate(&read("ca.crt")).unwrap();
    let client = load_certificate(&read("client.crt")).unwrap();
    let gw = load_certificate(&read("gw.crt")).unwrap();
    let store = TrustStore::with_roots([root]).unwrap();
    let now = SystemTime::now();
    store.verify(&client, &[], Role::Client, now).unwrap();
    store
        .verify(
            &gw,
            &[],
            Role::Gateway {
                server_name: "vpn.example.com",
            },
            now,
        )
        .unwrap();
    assert_eq!(
        client.ip_addrs(),
        ["203.0.113.9".parse::<std::net::IpAddr>().unwrap()]
    );

    // Keys: PKCS#1 and SEC1 become PKCS#8 with the right public key.
    let client_key = PrivateKey::load(&read("client.key")).unwrap();
    assert_eq!(client_key.key_type(), KeyType::Rsa(2048));
    assert_eq!(client_key.public_key_spki().unwrap(), client.spki_der());
    let gw_key = PrivateKey::load(&read("gw.key")).unwrap();
    assert_eq!(gw_key.key_type(), KeyType::EcdsaP256);
    assert_eq!(gw_key.public_key_spki().unwrap(), gw.spki_der());
    // DER forms of the same keys.
    openssl(
        d,
        &[
            "pkey", "-in", "gw.key", "-outform", "DER", "-out", "gw8.der",
        ],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "client.key",
            "-traditional",
            "-outform",
            "DER",
            "-out",
            "c1.der",
        ],
    );
    assert_eq!(
        PrivateKey::load(&read("gw8.der")).unwrap().pkcs8_der(),
        gw_key.pkcs8_der()
    );
    assert_eq!(
        PrivateKey::load(&read("c1.der"))
            .unwrap()
            .public_key_spki()
            .unwrap(),
        client.spki_der()
    );
    // Our CA can be rebuilt from OpenSSL's files and issue under them.
    let ca = CertificateAuthority::from_parts(
        load_certificates(&read("ca.crt")).unwrap(),
        PrivateKey::load(&read("ca.key")).unwrap(),
    )
    .unwrap();
    let u = ca
        .issue(
            CertKind::User,
            "frank@example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    store.verify(&u.chain[0], &[], Role::Client, now).unwrap();
}

/// Certificates our issuer never makes, made with OpenSSL: keyUsage without digitalSignature,
/// and a client certificate without any EKU (webpki alone would let that through).
#[test]
fn key_usage_and_missing_eku_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = CertificateAuthority::new_root("KU Root", KeyAlgorithm::P256, validity()).unwrap();
    write(d, "ca.crt", ca.cert().to_pem());
    write(d, "ca.key", ca.key().to_pem().as_bytes());
    let issue = |name: &str, exts: &[&str]| {
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-days",
            "5",
            "-subj",
            "/CN=pc.example.com",
            "-addext",
            "basicConstraints=CA:FALSE",
            "-addext",
            "subjectAltName=DNS:pc.example.com",
        ];
        for e in exts {
            args.extend_from_slice(&["-addext", e]);
        }
        let key = format!("{name}.key");
        let crt = format!("{name}.crt");
        args.extend_from_slice(&["-keyout", &key, "-out", &crt]);
        openssl(d, &args);
        load_certificate(&std::fs::read(d.join(&crt)).unwrap()).unwrap()
    };
    let no_ds = issue(
        "nods",
        &["keyUsage=keyEncipherment", "extendedKeyUsage=clientAuth"],
    );
    let no_eku = issue("noeku", &["keyUsage=digitalSignature"]);
    let fine = issue(
        "fine",
        &["keyUsage=digitalSignature", "extendedKeyUsage=clientAuth"],
    );
    let store = TrustStore::with_roots([ca.cert().clone()]).unwrap();
    let now = SystemTime::now();
    assert_eq!(no_ds.key_usage_digital_signature(), Some(false));
    assert_eq!(
        store.verify(&no_ds, &[], Role::Client, now),
        Err(pki::PkiError::WrongKeyUsage)
    );
    assert_eq!(no_eku.eku(), None);
    assert_eq!(
        store.verify(&no_eku, &[], Role::Client, now),
        Err(pki::PkiError::WrongEku)
    );
    // A peer that sends its whole chain, root included, still validates.
    let v = store
        .verify(&fine, &[ca.cert().clone()], Role::Client, now)
        .unwrap();
    assert_eq!(v.root_index, 0);
}

/// An RSA key under 2048 bits (which openssl still makes) is refused for what it is, whatever
/// else about the certificate is right; 2048 bits pass.
#[test]
fn an_rsa_key_under_2048_bits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = CertificateAuthority::new_root("RSA Root", KeyAlgorithm::P256, validity()).unwrap();
    write(d, "ca.crt", ca.cert().to_pem());
    write(d, "ca.key", ca.key().to_pem().as_bytes());
    let issue = |bits: u32| {
        let name = format!("rsa{bits}");
        let newkey = format!("rsa:{bits}");
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                &newkey,
                "-nodes",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-days",
                "5",
                "-subj",
                "/CN=pc.example.com",
                "-addext",
                "basicConstraints=CA:FALSE",
                "-addext",
                "subjectAltName=DNS:pc.example.com",
                "-addext",
                "keyUsage=digitalSignature",
                "-addext",
                "extendedKeyUsage=clientAuth",
                "-keyout",
                &key,
                "-out",
                &crt,
            ],
        );
        load_certificate(&std::fs::read(d.join(&crt)).unwrap()).unwrap()
    };
    let store = TrustStore::with_roots([ca.cert().clone()]).unwrap();
    // openssl starts validity at the second it signs, which can be after any `now` taken
    // before (RSA key generation takes a while): check a minute later.
    let now = SystemTime::now() + std::time::Duration::from_secs(60);
    let weak = issue(1024);
    let e = store.verify(&weak, &[], Role::Client, now).unwrap_err();
    assert_eq!(e, pki::PkiError::WeakKey(1024));
    assert!(e.to_string().contains("1024 bits"), "{e}");
    store.verify(&issue(2048), &[], Role::Client, now).unwrap();
}
