//! Interop with OpenSSL-made keys and signatures (see tests/data/openssl/README.md).
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use ipsec_crypto::{HashAlg, KeyType, SignatureScheme, SigningKey, verify};

const MSG: &[u8] = include_bytes!("data/openssl/msg.bin");
const RSA_PK8: &[u8] = include_bytes!("data/openssl/rsa2048.pk8.der");
const RSA_SPKI: &[u8] = include_bytes!("data/openssl/rsa2048.spki.der");
const P256_PK8: &[u8] = include_bytes!("data/openssl/p256.pk8.der");
const P256_SPKI: &[u8] = include_bytes!("data/openssl/p256.spki.der");
const P384_PK8: &[u8] = include_bytes!("data/openssl/p384.pk8.der");
const P384_SPKI: &[u8] = include_bytes!("data/openssl/p384.spki.der");

#[test]
fn openssl_pkcs8_keys_load_with_matching_public_keys() {
    for (pk8, spki, key_type) in [
        (RSA_PK8, RSA_SPKI, KeyType::Rsa),
        (P256_PK8, P256_SPKI, KeyType::EcdsaP256),
        (P384_PK8, P384_SPKI, KeyType::EcdsaP384),
    ] {
        let key = SigningKey::from_pkcs8_der(pk8).unwrap();
        assert_eq!(key.key_type(), key_type);
        assert_eq!(key.public_key_spki_der().unwrap(), spki, "{key_type:?}");
    }
}

#[test]
fn openssl_signatures_verify() {
    let cases: [(SignatureScheme, &[u8], &[u8]); 5] = [
        (
            SignatureScheme::RsaPkcs1(HashAlg::Sha1),
            RSA_SPKI,
            include_bytes!("data/openssl/rsa_pkcs1_sha1.sig"),
        ),
        (
            SignatureScheme::RsaPkcs1(HashAlg::Sha256),
            RSA_SPKI,
            include_bytes!("data/openssl/rsa_pkcs1_sha256.sig"),
        ),
        (
            SignatureScheme::RsaPss(HashAlg::Sha256),
            RSA_SPKI,
            include_bytes!("data/openssl/rsa_pss_sha256.sig"),
        ),
        (
            SignatureScheme::EcdsaDer(HashAlg::Sha256),
            P256_SPKI,
            include_bytes!("data/openssl/p256_sha256_der.sig"),
        ),
        (
            SignatureScheme::EcdsaDer(HashAlg::Sha384),
            P384_SPKI,
            include_bytes!("data/openssl/p384_sha384_der.sig"),
        ),
    ];
    for (scheme, spki, sig) in cases {
        verify(scheme, spki, MSG, sig).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert!(verify(scheme, spki, b"another message", sig).is_err());
    }
}

/// RSASSA-PKCS1-v1_5 is deterministic: both our SHA-1 path (rsa crate) and SHA-256 path
/// (aws-lc) must reproduce OpenSSL's signatures exactly.
#[test]
fn rsa_pkcs1_signatures_equal_openssl_byte_for_byte() {
    let key = SigningKey::from_pkcs8_der(RSA_PK8).unwrap();
    assert_eq!(
        key.sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), MSG)
            .unwrap(),
        include_bytes!("data/openssl/rsa_pkcs1_sha1.sig")
    );
    assert_eq!(
        key.sign(SignatureScheme::RsaPkcs1(HashAlg::Sha256), MSG)
            .unwrap(),
        include_bytes!("data/openssl/rsa_pkcs1_sha256.sig")
    );
}

#[test]
fn traditional_key_forms_load_with_from_der_only() {
    for (traditional, pk8) in [
        (
            &include_bytes!("data/openssl/rsa2048.pkcs1.der")[..],
            RSA_PK8,
        ),
        (&include_bytes!("data/openssl/p256.sec1.der")[..], P256_PK8),
    ] {
        assert!(SigningKey::from_pkcs8_der(traditional).is_err());
        let a = SigningKey::from_der(traditional).unwrap();
        let b = SigningKey::from_der(pk8).unwrap();
        assert_eq!(
            a.public_key_spki_der().unwrap(),
            b.public_key_spki_der().unwrap()
        );
        assert_eq!(a.key_type(), b.key_type());
    }
    // PKCS#1 v1.5 from the PKCS#1-loaded key still equals OpenSSL's signature.
    let key = SigningKey::from_der(include_bytes!("data/openssl/rsa2048.pkcs1.der")).unwrap();
    assert_eq!(
        key.sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), MSG)
            .unwrap(),
        include_bytes!("data/openssl/rsa_pkcs1_sha1.sig")
    );
}
