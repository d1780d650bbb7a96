//! Sign/verify round trips for every AUTH signature scheme, with freshly generated keys.
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair,
};
use ipsec_crypto::{
    CryptoError, HashAlg, KeyType, SignatureScheme, SigningKey, build_rfc7427_auth_data,
    split_rfc7427_auth_data, verify,
};

fn rsa_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
            .unwrap()
            .as_ref()
            .to_vec()
    })
}

fn ec_pkcs8(p384: bool) -> Vec<u8> {
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn check_round_trip(key: &SigningKey, other: &SigningKey, scheme: SignatureScheme) {
    let spki = key.public_key_spki_der().unwrap();
    let msg = b"RealMessage1 | NonceRData | MACedIDForI";
    let sig = key.sign(scheme, msg).unwrap();
    verify(scheme, &spki, msg, &sig).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
    assert_eq!(
        verify(scheme, &spki, b"other message", &sig),
        Err(CryptoError::BadSignature)
    );
    let mut bad = sig.clone();
    bad[sig.len() / 2] ^= 0x40;
    assert_eq!(
        verify(scheme, &spki, msg, &bad),
        Err(CryptoError::BadSignature),
        "{scheme:?}"
    );
    let other_spki = other.public_key_spki_der().unwrap();
    assert_eq!(
        verify(scheme, &other_spki, msg, &sig),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        verify(scheme, b"not a key", msg, &sig),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn rsa_schemes_round_trip() {
    let key = SigningKey::from_pkcs8_der(rsa_pkcs8()).unwrap();
    let other = SigningKey::from_pkcs8_der(&ec_pkcs8(false)).unwrap();
    assert_eq!(key.key_type(), KeyType::Rsa);
    for scheme in [
        SignatureScheme::RsaPkcs1(HashAlg::Sha1),
        SignatureScheme::RsaPkcs1(HashAlg::Sha256),
        SignatureScheme::RsaPkcs1(HashAlg::Sha384),
        SignatureScheme::RsaPkcs1(HashAlg::Sha512),
        SignatureScheme::RsaPss(HashAlg::Sha256),
        SignatureScheme::RsaPss(HashAlg::Sha384),
        SignatureScheme::RsaPss(HashAlg::Sha512),
    ] {
        check_round_trip(&key, &other, scheme);
    }
    // PKCS#1 v1.5 is deterministic: two SHA-1 signatures (rsa crate) are equal, and a
    // SHA-1 signature does not verify as SHA-256.
    let spki = key.public_key_spki_der().unwrap();
    let s1 = key
        .sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), b"m")
        .unwrap();
    assert_eq!(
        s1,
        key.sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), b"m")
            .unwrap()
    );
    assert_eq!(s1.len(), 256);
    assert!(verify(SignatureScheme::RsaPkcs1(HashAlg::Sha256), &spki, b"m", &s1).is_err());
    assert_eq!(
        key.sign(SignatureScheme::EcdsaP256Sha256Fixed, b"m"),
        Err(CryptoError::SchemeKeyMismatch)
    );
    assert_eq!(
        key.sign(SignatureScheme::RsaPss(HashAlg::Sha1), b"m"),
        Err(CryptoError::SchemeKeyMismatch)
    );
}

#[test]
fn ecdsa_schemes_round_trip() {
    let rsa = SigningKey::from_pkcs8_der(rsa_pkcs8()).unwrap();
    let p256 = SigningKey::from_pkcs8_der(&ec_pkcs8(false)).unwrap();
    let p384 = SigningKey::from_pkcs8_der(&ec_pkcs8(true)).unwrap();
    assert_eq!(p256.key_type(), KeyType::EcdsaP256);
    assert_eq!(p384.key_type(), KeyType::EcdsaP384);
    check_round_trip(&p256, &rsa, SignatureScheme::EcdsaP256Sha256Fixed);
    check_round_trip(&p256, &p384, SignatureScheme::EcdsaDer(HashAlg::Sha256));
    check_round_trip(&p384, &rsa, SignatureScheme::EcdsaP384Sha384Fixed);
    check_round_trip(&p384, &p256, SignatureScheme::EcdsaDer(HashAlg::Sha384));
    // Fixed form is exactly r ‖ s; the DER form starts with a SEQUENCE.
    assert_eq!(
        p256.sign(SignatureScheme::EcdsaP256Sha256Fixed, b"m")
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        p384.sign(SignatureScheme::EcdsaP384Sha384Fixed, b"m")
            .unwrap()
            .len(),
        96
    );
    assert_eq!(
        p256.sign(SignatureScheme::EcdsaDer(HashAlg::Sha256), b"m")
            .unwrap()[0],
        0x30
    );
    for (key, scheme) in [
        (&p256, SignatureScheme::EcdsaP384Sha384Fixed),
        (&p256, SignatureScheme::EcdsaDer(HashAlg::Sha384)),
        (&p384, SignatureScheme::EcdsaDer(HashAlg::Sha256)),
        (&p256, SignatureScheme::RsaPkcs1(HashAlg::Sha256)),
    ] {
        assert_eq!(key.sign(scheme, b"m"), Err(CryptoError::SchemeKeyMismatch));
    }
    // A fixed-form signature is not a DER signature.
    let spki = p256.public_key_spki_der().unwrap();
    let fixed = p256
        .sign(SignatureScheme::EcdsaP256Sha256Fixed, b"m")
        .unwrap();
    assert!(
        verify(
            SignatureScheme::EcdsaDer(HashAlg::Sha256),
            &spki,
            b"m",
            &fixed
        )
        .is_err()
    );
}

#[test]
fn rfc7427_auth_data_end_to_end() {
    let key = SigningKey::from_pkcs8_der(&ec_pkcs8(false)).unwrap();
    let scheme = SignatureScheme::EcdsaDer(HashAlg::Sha256);
    let sig = key.sign(scheme, b"octets").unwrap();
    let auth_data = build_rfc7427_auth_data(scheme, &sig).unwrap();
    let (parsed, parsed_sig) = split_rfc7427_auth_data(&auth_data).unwrap();
    assert_eq!(parsed, scheme);
    verify(
        parsed,
        &key.public_key_spki_der().unwrap(),
        b"octets",
        parsed_sig,
    )
    .unwrap();
}

#[test]
fn bad_private_keys_are_rejected() {
    assert_eq!(
        SigningKey::from_pkcs8_der(b"").unwrap_err(),
        CryptoError::PrivateKey
    );
    let mut der = ec_pkcs8(false);
    der.truncate(der.len() - 3);
    assert_eq!(
        SigningKey::from_pkcs8_der(&der).unwrap_err(),
        CryptoError::PrivateKey
    );
}
