//! Two parties in one process, each with its own seeded provider, run the IKE_SA_INIT key
#![allow(clippy::unwrap_used)] // tests panic on failure by design
//! schedule and exchange SK payloads both ways — the path the IKEv2 engine follows.

use ipsec_crypto::{
    ChildSaKeys, DhGroup, EncrAlg, IkeSaKeys, IkeSuite, IntegAlg, PrfAlg, Provider,
};

fn run(suite: IkeSuite, group: DhGroup) -> Vec<u8> {
    let pi = Provider::deterministic(b"initiator");
    let pr = Provider::deterministic(b"responder");
    let spi_i: [u8; 8] = pi.random_array().unwrap();
    let spi_r: [u8; 8] = pr.random_array().unwrap();
    let ni = pi.random_vec(32).unwrap();
    let nr = pr.random_vec(32).unwrap();
    let dh_i = pi.generate_dh(group).unwrap();
    let dh_r = pr.generate_dh(group).unwrap();
    let z_i = dh_i.agree(dh_r.public_value()).unwrap();
    let z_r = dh_r.agree(dh_i.public_value()).unwrap();

    let keys_i = IkeSaKeys::derive(&suite, z_i.as_bytes(), &ni, &nr, &spi_i, &spi_r).unwrap();
    let keys_r = IkeSaKeys::derive(&suite, z_r.as_bytes(), &ni, &nr, &spi_i, &spi_r).unwrap();
    let (out_i, in_i) = keys_i.sk_ciphers(&suite, true).unwrap();
    let (out_r, in_r) = keys_r.sk_ciphers(&suite, false).unwrap();

    let request = out_i
        .seal(b"IKE hdr|SK hdr", b"IDi|CERT|AUTH|SA|TSi|TSr", &pi)
        .unwrap();
    assert_eq!(
        in_r.open(b"IKE hdr|SK hdr", &request).unwrap(),
        b"IDi|CERT|AUTH|SA|TSi|TSr"
    );
    let response = out_r
        .seal(b"IKE hdr 2|SK hdr", b"IDr|AUTH|SA", &pr)
        .unwrap();
    assert_eq!(
        in_i.open(b"IKE hdr 2|SK hdr", &response).unwrap(),
        b"IDr|AUTH|SA"
    );
    // Directions use different keys: our own outbound traffic does not open inbound.
    assert!(in_i.open(b"IKE hdr|SK hdr", &request).is_err());

    let child_i =
        ChildSaKeys::derive(suite.prf, keys_i.sk_d.as_bytes(), None, &ni, &nr, 36, 0).unwrap();
    let child_r =
        ChildSaKeys::derive(suite.prf, keys_r.sk_d.as_bytes(), None, &ni, &nr, 36, 0).unwrap();
    assert_eq!(child_i.encr_i, child_r.encr_i);
    assert_ne!(child_i.encr_i, child_i.encr_r);
    request
}

#[test]
fn both_parties_derive_the_same_keys_for_typical_windows_and_modern_suites() {
    let windows = IkeSuite {
        encr: EncrAlg::AesCbc256,
        integ: Some(IntegAlg::HmacSha1_96),
        prf: PrfAlg::HmacSha1,
    };
    let modern = IkeSuite {
        encr: EncrAlg::AesGcm16_256,
        integ: None,
        prf: PrfAlg::HmacSha384,
    };
    let legacy = IkeSuite {
        encr: EncrAlg::TripleDesCbc,
        integ: Some(IntegAlg::HmacSha256_128),
        prf: PrfAlg::HmacSha256,
    };
    let a = run(windows, DhGroup::Modp1024);
    run(modern, DhGroup::Curve25519);
    run(modern, DhGroup::EcpP384);
    run(legacy, DhGroup::Modp2048);
    // Fixed seeds give byte-identical messages.
    assert_eq!(a, run(windows, DhGroup::Modp1024));
}
