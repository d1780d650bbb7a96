//! Issue certificates of every kind and key type, validate them, and hit every failure path.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pki::{
    CertKind, Certificate, CertificateAuthority, Identity, KeyAlgorithm, KeyType, Pkcs12Encryption,
    PkiError, PrivateKey, Role, Thumbprint, TrustStore, Validity, cert_matches_id, id_type,
    load_certificates,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Validation time used throughout: 2027-01-15T08:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Valid from a day before `now()` for 30 days.
fn validity() -> Validity {
    Validity::days_from(now() - DAY, 30)
}

fn root(alg: KeyAlgorithm) -> CertificateAuthority {
    CertificateAuthority::new_root(
        "aovpn Test Root",
        alg,
        Validity::days_from(now() - DAY, 3650),
    )
    .unwrap()
}

fn store(ca: &CertificateAuthority) -> TrustStore {
    TrustStore::with_roots([ca.cert().clone()]).unwrap()
}

fn gw(name: &str) -> Role<'_> {
    Role::Gateway { server_name: name }
}

fn expected_key_type(alg: KeyAlgorithm) -> KeyType {
    match alg {
        KeyAlgorithm::P256 => KeyType::EcdsaP256,
        KeyAlgorithm::P384 => KeyType::EcdsaP384,
        KeyAlgorithm::Rsa2048 => KeyType::Rsa(2048),
        KeyAlgorithm::Rsa3072 => KeyType::Rsa(3072),
        KeyAlgorithm::Rsa4096 => KeyType::Rsa(4096),
    }
}

#[test]
fn every_kind_with_every_key_type_validates() {
    for alg in KeyAlgorithm::ALL {
        let ca = root(alg);
        assert!(ca.cert().is_ca());
        assert_eq!(ca.key().key_type(), expected_key_type(alg));
        let trust = store(&ca);

        let g = ca
            .issue(CertKind::Gateway, "vpn.example.com", alg, validity())
            .unwrap();
        assert_eq!(g.key.key_type(), expected_key_type(alg));
        let eku = g.chain[0].eku().unwrap();
        assert!(eku.server_auth && eku.ike_intermediate && !eku.client_auth);
        assert_eq!(g.chain[0].dns_names(), ["vpn.example.com"]);
        assert_eq!(g.chain[0].key_usage_digital_signature(), Some(true));
        assert!(!g.chain[0].is_ca());
        let v = trust
            .verify(&g.chain[0], &[], gw("VPN.Example.com."), now())
            .unwrap();
        assert_eq!(v.root_index, 0);
        assert!(v.intermediates.is_empty());

        let m = ca
            .issue(CertKind::Machine, "pc1.corp.example.com", alg, validity())
            .unwrap();
        let eku = m.chain[0].eku().unwrap();
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(m.chain[0].dns_names(), ["pc1.corp.example.com"]);
        trust.verify(&m.chain[0], &[], Role::Client, now()).unwrap();

        let u = ca
            .issue(CertKind::User, "alice@corp.example.com", alg, validity())
            .unwrap();
        assert_eq!(u.chain[0].rfc822_names(), ["alice@corp.example.com"]);
        assert_eq!(u.chain[0].upns(), ["alice@corp.example.com"]);
        assert!(u.chain[0].subject().contains("CN=alice@corp.example.com"));
        trust.verify(&u.chain[0], &[], Role::Client, now()).unwrap();
    }
}

#[test]
fn rsa4096_chain_through_intermediate() {
    let ca = root(KeyAlgorithm::Rsa4096);
    let sub = ca
        .issue_intermediate("aovpn Issuing CA", KeyAlgorithm::Rsa4096, validity())
        .unwrap();
    assert_eq!(sub.chain().len(), 2);
    let trust = store(&ca);
    let g = sub
        .issue(
            CertKind::Gateway,
            "vpn.example.com",
            KeyAlgorithm::Rsa4096,
            validity(),
        )
        .unwrap();
    let m = sub
        .issue(
            CertKind::Machine,
            "pc1.corp.example.com",
            KeyAlgorithm::Rsa4096,
            validity(),
        )
        .unwrap();
    assert_eq!(g.chain.len(), 3, "leaf, intermediate, root");
    let inter = [sub.cert().clone()];
    let v = trust
        .verify(&g.chain[0], &inter, gw("vpn.example.com"), now())
        .unwrap();
    assert_eq!(v.intermediates.len(), 1);
    assert_eq!(v.intermediates[0], *sub.cert().der());
    trust
        .verify(&m.chain[0], &inter, Role::Client, now())
        .unwrap();
    // Without the intermediate the chain cannot be built.
    assert_eq!(
        trust.verify(&m.chain[0], &[], Role::Client, now()),
        Err(PkiError::UnknownIssuer)
    );
    // A revoked intermediate takes its leaves down.
    let mut revoking = trust.clone();
    revoking.revoke(sub.cert().thumbprint());
    assert_eq!(
        revoking.verify(&m.chain[0], &inter, Role::Client, now()),
        Err(PkiError::Revoked(sub.cert().thumbprint()))
    );
}

#[test]
fn wrong_root_is_unknown_issuer() {
    let ca = root(KeyAlgorithm::P256);
    let other =
        CertificateAuthority::new_root("Other Root", KeyAlgorithm::P256, validity()).unwrap();
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    assert_eq!(
        store(&other).verify(&m.chain[0], &[], Role::Client, now()),
        Err(PkiError::UnknownIssuer)
    );
    // An impostor root with the same name but another key: the signature does not verify.
    let impostor = root(KeyAlgorithm::P256);
    assert_eq!(
        store(&impostor).verify(&m.chain[0], &[], Role::Client, now()),
        Err(PkiError::BadSignature)
    );
    assert_eq!(
        TrustStore::new().verify(&m.chain[0], &[], Role::Client, now()),
        Err(PkiError::UnknownIssuer)
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let ca = root(KeyAlgorithm::P256);
    let trust = store(&ca);
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    trust
        .verify(&m.chain[0], &[], Role::Client, now() + 28 * DAY)
        .unwrap();
    assert_eq!(
        trust.verify(&m.chain[0], &[], Role::Client, now() + 30 * DAY),
        Err(PkiError::Expired)
    );
    assert_eq!(
        trust.verify(&m.chain[0], &[], Role::Client, now() - 2 * DAY),
        Err(PkiError::NotYetValid)
    );
}

/// A root that has expired ends every chain through it, even for a leaf within its own
/// dates (webpki's trust anchors carry no dates; Windows and strongSwan refuse).
#[test]
fn an_expired_root_ends_its_chains() {
    let ca = CertificateAuthority::new_root(
        "aovpn Short Root",
        KeyAlgorithm::P256,
        Validity::days_from(now() - DAY, 10),
    )
    .unwrap();
    let trust = store(&ca);
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    trust
        .verify(&m.chain[0], &[], Role::Client, now() + 8 * DAY)
        .unwrap();
    assert_eq!(
        trust.verify(&m.chain[0], &[], Role::Client, now() + 10 * DAY),
        Err(PkiError::Expired)
    );
}

#[test]
fn eku_per_role() {
    let ca = root(KeyAlgorithm::P256);
    let trust = store(&ca);
    let m = ca
        .issue(
            CertKind::Machine,
            "vpn.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let u = ca
        .issue(
            CertKind::User,
            "bob@example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let g = ca
        .issue(
            CertKind::Gateway,
            "vpn.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    // Client certificates presented by a gateway.
    assert_eq!(
        trust.verify(&m.chain[0], &[], gw("vpn.example.com"), now()),
        Err(PkiError::WrongEku)
    );
    assert_eq!(
        trust.verify(&u.chain[0], &[], gw("vpn.example.com"), now()),
        Err(PkiError::WrongEku)
    );
    // A gateway certificate presented by a client.
    assert_eq!(
        trust.verify(&g.chain[0], &[], Role::Client, now()),
        Err(PkiError::WrongEku)
    );
}

#[test]
fn ca_certificate_is_not_an_end_entity() {
    let ca = root(KeyAlgorithm::P256);
    let sub = ca
        .issue_intermediate("Sub", KeyAlgorithm::P256, validity())
        .unwrap();
    assert_eq!(
        store(&ca).verify(sub.cert(), &[], Role::Client, now()),
        Err(PkiError::CaUsedAsEndEntity)
    );
}

/// A session keeps the path's thumbprints and earliest expiry; a later revocation of any
/// certificate on it (intermediate and root too), a removed root or the end of the earliest
/// validity fails the re-check.
#[test]
fn a_validated_path_is_rechecked_without_its_certificates() {
    let ca = root(KeyAlgorithm::P256);
    let sub = ca
        .issue_intermediate(
            "aovpn Issuing CA",
            KeyAlgorithm::P256,
            Validity::days_from(now() - DAY, 10),
        )
        .unwrap();
    let m = sub
        .issue(
            CertKind::Machine,
            "pc1.corp.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let trust = store(&ca);
    let inter = [sub.cert().clone()];
    let record = trust
        .verify(&m.chain[0], &inter, Role::Client, now())
        .unwrap()
        .record;
    assert_eq!(
        record.thumbprints,
        [
            m.chain[0].thumbprint(),
            sub.cert().thumbprint(),
            ca.cert().thumbprint()
        ]
    );
    // The intermediate (10 days) ends before the leaf (30 days).
    assert_eq!(record.not_after, sub.cert().not_after());
    assert_eq!(trust.recheck(&record, now()), Ok(()));
    assert_eq!(
        trust.recheck(&record, sub.cert().not_after() + Duration::from_secs(1)),
        Err(PkiError::Expired)
    );
    for revoked in [&m.chain[0], sub.cert(), ca.cert()] {
        let mut t = trust.clone();
        t.revoke(revoked.thumbprint());
        assert_eq!(
            t.recheck(&record, now()),
            Err(PkiError::Revoked(revoked.thumbprint()))
        );
    }
    let other = root(KeyAlgorithm::P256);
    assert_eq!(
        store(&other).recheck(&record, now()),
        Err(PkiError::UnknownIssuer),
        "root removed"
    );
    // A revoked root also fails a fresh validation.
    let mut t = trust.clone();
    t.revoke(ca.cert().thumbprint());
    assert_eq!(
        t.verify(&m.chain[0], &inter, Role::Client, now()),
        Err(PkiError::Revoked(ca.cert().thumbprint()))
    );
}

#[test]
fn revoked_thumbprint_is_refused() {
    let ca = root(KeyAlgorithm::P256);
    let mut trust = store(&ca);
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let m2 = ca
        .issue(
            CertKind::Machine,
            "pc2.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    // The Azure portal form: uppercase, no separators; we also take lowercase with colons.
    let shown = m.chain[0].thumbprint().to_string();
    let colon_lower: String = shown
        .to_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    trust.set_revoked([colon_lower.parse::<Thumbprint>().unwrap()]);
    assert_eq!(
        trust.verify(&m.chain[0], &[], Role::Client, now()),
        Err(PkiError::Revoked(m.chain[0].thumbprint()))
    );
    trust
        .verify(&m2.chain[0], &[], Role::Client, now())
        .unwrap();
}

#[test]
fn gateway_name_must_match() {
    let ca = root(KeyAlgorithm::P256);
    let trust = store(&ca);
    let g = ca
        .issue(
            CertKind::Gateway,
            "vpn.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    assert_eq!(
        trust.verify(&g.chain[0], &[], gw("vpn2.example.com"), now()),
        Err(PkiError::NameMismatch("vpn2.example.com".into()))
    );
    assert_eq!(
        trust.verify(&g.chain[0], &[], gw("198.51.100.1"), now()),
        Err(PkiError::NameMismatch("198.51.100.1".into()))
    );
    // A gateway dialled by IP: the IP is both a dNSName (Windows) and an iPAddress SAN.
    let by_ip = ca
        .issue(
            CertKind::Gateway,
            "198.51.100.1",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    assert_eq!(
        by_ip.chain[0].ip_addrs(),
        ["198.51.100.1".parse::<std::net::IpAddr>().unwrap()]
    );
    trust
        .verify(&by_ip.chain[0], &[], gw("198.51.100.1"), now())
        .unwrap();
}

#[test]
fn twenty_roots_allowed_twenty_one_refused() {
    let roots: Vec<Certificate> = (0..21)
        .map(|i| {
            CertificateAuthority::new_root(&format!("Root {i}"), KeyAlgorithm::P256, validity())
                .unwrap()
                .cert()
                .clone()
        })
        .collect();
    let mut trust = TrustStore::with_roots(roots[..20].iter().cloned()).unwrap();
    assert_eq!(trust.roots().len(), 20);
    assert_eq!(
        trust.add_root(roots[20].clone()),
        Err(PkiError::TooManyRoots { count: 21, max: 20 })
    );
    assert_eq!(
        TrustStore::with_roots(roots.iter().cloned()).err(),
        Some(PkiError::TooManyRoots { count: 21, max: 20 })
    );
    // Re-adding a known root is not a 21st.
    trust.add_root(roots[3].clone()).unwrap();
}

#[test]
fn leaf_is_refused_as_root() {
    let ca = root(KeyAlgorithm::P256);
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    assert!(matches!(
        TrustStore::new().add_root(m.chain[0].clone()),
        Err(PkiError::NotCa(_))
    ));
}

#[test]
fn certreq_hashes_find_roots() {
    let a = root(KeyAlgorithm::P256);
    let b = root(KeyAlgorithm::Rsa2048);
    let trust = TrustStore::with_roots([a.cert().clone(), b.cert().clone()]).unwrap();
    let hashes = trust.ca_key_hashes();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(trust.root_by_key_hash(&hashes[1]).unwrap(), b.cert());
    assert!(trust.root_by_key_hash(&[0u8; 20]).is_none());
    assert!(trust.root_by_key_hash(&hashes[0][..19]).is_none());
}

#[test]
fn ike_identities() {
    let ca = root(KeyAlgorithm::P256);
    let m = ca
        .issue(
            CertKind::Machine,
            "pc1.corp.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let u = ca
        .issue(
            CertKind::User,
            "alice@corp.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let g = ca
        .issue(
            CertKind::Gateway,
            "2001:db8::1",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let g4 = ca
        .issue(
            CertKind::Gateway,
            "203.0.113.7",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let (m, u, g, g4) = (&m.chain[0], &u.chain[0], &g.chain[0], &g4.chain[0]);

    assert!(cert_matches_id(m, id_type::FQDN, b"PC1.corp.example.COM"));
    assert!(!cert_matches_id(m, id_type::FQDN, b"pc2.corp.example.com"));
    assert!(!cert_matches_id(m, id_type::FQDN, b""));
    // The root label's dot, once; more dots are another (invalid) name, not a new spelling
    // that would get a lease and an SA budget of its own.
    assert!(cert_matches_id(m, id_type::FQDN, b"pc1.corp.example.com."));
    assert!(!cert_matches_id(
        m,
        id_type::FQDN,
        b"pc1.corp.example.com.."
    ));
    assert!(!cert_matches_id(m, id_type::FQDN, b"."));
    assert!(!cert_matches_id(m, id_type::FQDN, &[0xff, 0xfe]));
    assert!(cert_matches_id(m, id_type::DER_ASN1_DN, m.subject_der()));
    assert!(!cert_matches_id(m, id_type::DER_ASN1_DN, u.subject_der()));
    // The same name in other string types and case (what strongSwan sends for a configured
    // `id = "CN=..."`) is the same name (RFC 5280 7.1).
    // rcgen wrote CN as UTF8String: 30 1f 31 1d 30 1b 06 03 55 04 03 0c 14 "pc1...".
    let mut printable = m.subject_der().to_vec();
    assert_eq!(printable[11], 0x0c, "{printable:02x?}");
    printable[11] = 0x13;
    printable[13..].make_ascii_uppercase();
    assert!(cert_matches_id(m, id_type::DER_ASN1_DN, &printable));
    printable[13] = b'X';
    assert!(!cert_matches_id(m, id_type::DER_ASN1_DN, &printable));
    assert!(!cert_matches_id(
        m,
        id_type::RFC822_ADDR,
        b"pc1.corp.example.com"
    ));

    assert!(cert_matches_id(
        u,
        id_type::RFC822_ADDR,
        b"Alice@corp.example.com"
    ));
    assert!(!cert_matches_id(
        u,
        id_type::RFC822_ADDR,
        b"bob@corp.example.com"
    ));
    assert!(!cert_matches_id(
        u,
        id_type::FQDN,
        b"alice@corp.example.com"
    ));

    let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert!(cert_matches_id(g, id_type::IPV6_ADDR, &v6.octets()));
    assert!(!cert_matches_id(g, id_type::IPV6_ADDR, &v6.octets()[..15]));
    assert!(cert_matches_id(g4, id_type::IPV4_ADDR, &[203, 0, 113, 7]));
    assert!(!cert_matches_id(g4, id_type::IPV4_ADDR, &[203, 0, 113, 8]));
    assert!(!cert_matches_id(g4, id_type::IPV6_ADDR, &[203, 0, 113, 7]));
    // Unknown ID types (ID_KEY_ID = 11) never match.
    assert!(!cert_matches_id(m, 11, m.subject_der()));
}

#[test]
fn loading_forms() {
    let ca = root(KeyAlgorithm::P256);
    let g = ca
        .issue(
            CertKind::Gateway,
            "vpn.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let bundle = pki::certificates_to_pem(&g.chain);
    let loaded = load_certificates(bundle.as_bytes()).unwrap();
    assert_eq!(loaded, g.chain);
    // DER.
    assert_eq!(
        load_certificates(g.chain[0].der().as_ref()).unwrap(),
        &g.chain[..1]
    );
    // Azure public-cert data: one line of base64, and the same wrapped over lines.
    let line = ca.cert().to_base64_line();
    assert!(!line.contains('\n'));
    assert_eq!(load_certificates(line.as_bytes()).unwrap()[0], *ca.cert());
    let wrapped: String = line
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert_eq!(
        load_certificates(wrapped.as_bytes()).unwrap()[0],
        *ca.cert()
    );
}

#[test]
fn garbage_is_refused_with_typed_errors() {
    let garbage_pem =
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_certificates(garbage_pem),
        Err(PkiError::BadEncoding(_))
    ));
    // Valid base64, but not a certificate.
    let not_cert = b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_certificates(not_cert),
        Err(PkiError::BadEncoding(_))
    ));
    let key_only = b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n";
    assert_eq!(load_certificates(key_only), Err(PkiError::NoCertificate));
    assert_eq!(load_certificates(b"  \n"), Err(PkiError::NoCertificate));
    assert!(matches!(
        load_certificates(b"\x30\x03\x02\x01\x01"),
        Err(PkiError::BadEncoding(_))
    ));
    assert!(matches!(
        PrivateKey::load(b"hello"),
        Err(PkiError::BadEncoding(_))
    ));
    assert!(matches!(
        PrivateKey::load(b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n"),
        Err(PkiError::NoPrivateKey)
    ));
    assert!(matches!(
        "abcd".parse::<Thumbprint>(),
        Err(PkiError::BadThumbprint(_))
    ));
}

#[test]
fn private_key_pem_round_trip() {
    for alg in [KeyAlgorithm::P384, KeyAlgorithm::Rsa2048] {
        let key = PrivateKey::generate(alg).unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = PrivateKey::load(pem.as_bytes()).unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        assert_eq!(back.key_type(), key.key_type());
        // Debug output never shows key bytes.
        assert!(!format!("{key:?}").contains(&format!("{:?}", &key.pkcs8_der()[..8])));
    }
}

#[test]
fn pkcs12_round_trip_and_wrong_password() {
    let ca = root(KeyAlgorithm::P256);
    let sub = ca
        .issue_intermediate("Sub", KeyAlgorithm::P256, validity())
        .unwrap();
    let u = sub
        .issue(
            CertKind::User,
            "carol@example.com",
            KeyAlgorithm::Rsa2048,
            validity(),
        )
        .unwrap();
    for enc in [
        Pkcs12Encryption::Aes256Sha256,
        Pkcs12Encryption::Legacy3DesSha1,
    ] {
        let p12 = u.to_pkcs12("s3cret pw", enc).unwrap();
        let back = Identity::from_pkcs12(&p12, "s3cret pw").unwrap();
        assert_eq!(back.key.pkcs8_der(), u.key.pkcs8_der());
        assert_eq!(back.key.key_type(), KeyType::Rsa(2048));
        assert_eq!(back.chain, u.chain, "leaf, intermediate, root in order");
        assert_eq!(
            Identity::from_pkcs12(&p12, "wrong").err(),
            Some(PkiError::WrongPassword)
        );
    }
    assert!(matches!(
        Identity::from_pkcs12(b"\x30\x00", "x"),
        Err(PkiError::BadEncoding(_))
    ));
    // A key with somebody else's certificate is refused.
    let other = ca
        .issue(
            CertKind::User,
            "dave@example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    let mixed = Identity {
        key: other.key.clone(),
        chain: u.chain.clone(),
    };
    assert_eq!(
        mixed.to_pkcs12("x", Pkcs12Encryption::default()).err(),
        Some(PkiError::KeyMismatch)
    );
}

#[test]
fn ca_from_parts_checks_key() {
    let a = root(KeyAlgorithm::P256);
    let b = root(KeyAlgorithm::P256);
    assert_eq!(
        CertificateAuthority::from_parts(a.chain().to_vec(), b.key().clone()).err(),
        Some(PkiError::KeyMismatch)
    );
    let again = CertificateAuthority::from_parts(a.chain().to_vec(), a.key().clone()).unwrap();
    let m = again
        .issue(
            CertKind::Machine,
            "pc.example.com",
            KeyAlgorithm::P256,
            validity(),
        )
        .unwrap();
    store(&a)
        .verify(&m.chain[0], &[], Role::Client, now())
        .unwrap();
    assert_eq!(
        CertificateAuthority::issue(
            &a,
            CertKind::User,
            "no-at-sign",
            KeyAlgorithm::P256,
            validity()
        )
        .err()
        .map(|e| matches!(e, PkiError::Issue(_))),
        Some(true)
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn loaders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = load_certificates(&data);
            let _ = PrivateKey::load(&data);
            let _ = Identity::from_pkcs12(&data, "pw");
            let _ = Certificate::from_der(&data);
        }

        #[test]
        fn pem_wrapped_garbage_never_panics(body in "[A-Za-z0-9+/=\n]{0,300}") {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            prop_assert!(load_certificates(pem.as_bytes()).is_err());
        }

        #[test]
        fn thumbprint_text_round_trip(bytes in any::<[u8; 20]>()) {
            let t = Thumbprint(bytes);
            let shown = t.to_string();
            prop_assert_eq!(shown.len(), 40);
            prop_assert!(shown.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
            prop_assert_eq!(shown.parse::<Thumbprint>().unwrap(), t);
            let windows = format!("\u{200e}{}", shown.to_lowercase());
            prop_assert_eq!(windows.parse::<Thumbprint>().unwrap(), t);
        }
    }
}

#[test]
fn a_certificate_tells_the_type_of_its_key() {
    for (alg, expected) in [
        (KeyAlgorithm::P256, KeyType::EcdsaP256),
        (KeyAlgorithm::P384, KeyType::EcdsaP384),
        (KeyAlgorithm::Rsa2048, KeyType::Rsa(2048)),
    ] {
        let ca = root(alg);
        assert_eq!(ca.cert().key_type(), Some(expected), "{alg:?}");
    }
}
