//! Property tests: SK seal/open round trips and tamper detection, prf+ lengths.
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use ipsec_crypto::{
    CryptoError, EncrAlg, IntegAlg, PrfAlg, Provider, SecretBytes, SkCipher, prf_plus,
};
use proptest::prelude::*;

const SUITES: [(EncrAlg, Option<IntegAlg>); 10] = [
    (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96)),
    (EncrAlg::AesCbc192, Some(IntegAlg::HmacSha256_128)),
    (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha384_192)),
    (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
    (EncrAlg::TripleDesCbc, Some(IntegAlg::HmacSha1_96)),
    (EncrAlg::TripleDesCbc, Some(IntegAlg::HmacSha256_128)),
    (EncrAlg::AesGcm16_128, None),
    (EncrAlg::AesGcm16_256, None),
    (EncrAlg::ChaCha20Poly1305, None),
    (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)),
];

fn cipher(suite: usize, seed: u64) -> SkCipher {
    let (encr, integ) = SUITES[suite];
    let p = Provider::deterministic(&seed.to_be_bytes());
    let ek = SecretBytes::new(p.random_vec(encr.key_material_len()).unwrap());
    let ik = SecretBytes::new(p.random_vec(integ.map_or(0, IntegAlg::key_len)).unwrap());
    SkCipher::new(encr, integ, &ek, &ik).unwrap()
}

proptest! {
    #[test]
    fn seal_open_round_trip(
        suite in 0..SUITES.len(),
        seed in any::<u64>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let c = cipher(suite, seed);
        let p = Provider::deterministic(b"iv");
        let body = c.seal(&aad, &plaintext, &p).unwrap();
        prop_assert_eq!(body.len(), c.body_len(plaintext.len()));
        prop_assert_eq!(c.open(&aad, &body).unwrap(), plaintext);
    }

    #[test]
    fn any_single_bit_flip_fails_integrity(
        suite in 0..SUITES.len(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..100),
        position in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let c = cipher(suite, 1);
        let p = Provider::deterministic(b"iv");
        let mut body = c.seal(b"hdr", &plaintext, &p).unwrap();
        let i = position.index(body.len());
        body[i] ^= 1 << bit;
        prop_assert_eq!(c.open(b"hdr", &body), Err(CryptoError::IntegrityCheckFailed));
    }

    #[test]
    fn open_never_panics_on_garbage(
        suite in 0..SUITES.len(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let c = cipher(suite, 2);
        prop_assert!(c.open(b"", &body).is_err());
    }

    #[test]
    fn prf_plus_has_requested_length_and_prefix_property(
        alg in prop_oneof![
            Just(PrfAlg::HmacSha1),
            Just(PrfAlg::HmacSha256),
            Just(PrfAlg::HmacSha384),
            Just(PrfAlg::HmacSha512),
        ],
        key in proptest::collection::vec(any::<u8>(), 0..80),
        seed in proptest::collection::vec(any::<u8>(), 0..80),
        len in 0usize..2000,
        shorter in 0usize..2000,
    ) {
        let out = prf_plus(alg, &key, &[&seed], len).unwrap();
        prop_assert_eq!(out.len(), len);
        let short = prf_plus(alg, &key, &[&seed], shorter.min(len)).unwrap();
        prop_assert_eq!(short.as_bytes(), &out.as_bytes()[..shorter.min(len)]);
    }
}

proptest! {
    /// Untrusted inputs to the parsers and verifiers give errors, never panics.
    #[test]
    fn untrusted_inputs_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        group in 0usize..5,
    ) {
        use ipsec_crypto::{
            DhGroup, HashAlg, SignatureScheme, split_rfc7427_auth_data, verify,
        };
        let _ = SignatureScheme::from_rfc7427_algorithm_identifier(&data);
        let _ = split_rfc7427_auth_data(&data);
        let _ = ipsec_crypto::SigningKey::from_pkcs8_der(&data);
        let _ = ipsec_crypto::SigningKey::from_der(&data);
        for scheme in [
            SignatureScheme::RsaPkcs1(HashAlg::Sha1),
            SignatureScheme::RsaPss(HashAlg::Sha256),
            SignatureScheme::EcdsaP256Sha256Fixed,
            SignatureScheme::EcdsaDer(HashAlg::Sha384),
        ] {
            prop_assert!(verify(scheme, &data, b"msg", &data).is_err());
        }
        let g = DhGroup::ALL[group];
        let key = Provider::deterministic(b"k").generate_dh(g).unwrap();
        let mut peer = data.clone();
        peer.resize(g.public_len(), 0x5c);
        let _ = key.agree(&peer);
        let _ = key.agree(&data);
    }
}
