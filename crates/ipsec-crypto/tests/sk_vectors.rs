//! SK payload layout checked against published cipher vectors: each vector's ciphertext is
//! wrapped as an SK body (IV ‖ ciphertext ‖ ICV) and opened; the vector's last plaintext byte
//! acts as the RFC 7296 pad-length byte.
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use ipsec_crypto::{EncrAlg, IntegAlg, PrfAlg, SecretBytes, SkCipher, prf};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 3602 section 4, Case #3 (AES-128-CBC, 48 bytes). The ICV is HMAC-SHA-256-128 over
/// AAD ‖ IV ‖ ciphertext (its truncation is checked against RFC 4868 in the unit tests).
#[test]
fn aes_cbc_body_opens_rfc3602_case3() {
    let key = SecretBytes::new(h("6c3ea0477630ce21a2ce334aa746c2cd"));
    let integ_key = SecretBytes::new(vec![0x5a; 32]);
    let iv = h("c782dc4c098c66cbd9cd27d825682c81");
    let ct = h(concat!(
        "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5",
        "021c19216bad525c8579695d83ba2684"
    ));
    let plaintext = b"This is a 48-byte message (exactly 3 AES blocks)";
    let aad = b"IKE header | SK header";
    let icv = prf(PrfAlg::HmacSha256, integ_key.as_bytes(), &[aad, &iv, &ct]);
    let mut body = iv.clone();
    body.extend_from_slice(&ct);
    body.extend_from_slice(&icv.as_bytes()[..16]);
    let c = SkCipher::new(
        EncrAlg::AesCbc128,
        Some(IntegAlg::HmacSha256_128),
        &key,
        &integ_key,
    )
    .unwrap();
    // Last byte ')' = 41 = pad length: 48 - 1 - 41 = 6 bytes of inner payloads.
    assert_eq!(c.open(aad, &body).unwrap(), &plaintext[..6]);
}

/// McGrew/Viega GCM specification Test Case 4 (AES-128, 60-byte plaintext, 20-byte AAD),
/// split per RFC 5282: keying material = key ‖ salt (first 4 nonce bytes), body IV = last 8.
#[test]
fn aes_gcm_body_opens_gcm_spec_test_case_4() {
    let mut keymat = h("feffe9928665731c6d6a8f9467308308");
    keymat.extend_from_slice(&h("cafebabe"));
    let mut body = h("facedbaddecaf888");
    body.extend_from_slice(&h(concat!(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
    )));
    body.extend_from_slice(&h("5bc94fbc3221a5db94fae95ae7121a47"));
    let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let c = SkCipher::new(
        EncrAlg::AesGcm16_128,
        None,
        &SecretBytes::new(keymat),
        &SecretBytes::new(vec![]),
    )
    .unwrap();
    // Last plaintext byte 0x39 = 57: 60 - 1 - 57 = 2 bytes.
    assert_eq!(c.open(&aad, &body).unwrap(), h("d931"));
    let mut bad = body.clone();
    bad[20] ^= 1;
    assert!(c.open(&aad, &bad).is_err());
}

/// RFC 8439 section 2.8.2 AEAD vector, split per RFC 7634: keying material = key ‖ salt
/// (07000000), body IV = 4041424344454647.
#[test]
fn chacha20_poly1305_body_opens_rfc8439_vector() {
    let mut keymat: Vec<u8> = (0x80..=0x9f).collect();
    keymat.extend_from_slice(&h("07000000"));
    let mut body = h("4041424344454647");
    body.extend_from_slice(&h(concat!(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6",
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36",
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc",
        "3ff4def08e4b7a9de576d26586cec64b6116"
    )));
    body.extend_from_slice(&h("1ae10b594f09e26a7e902ecbd0600691"));
    let aad = h("50515253c0c1c2c3c4c5c6c7");
    let plaintext: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
        only one tip for the future, sunscreen would be it.";
    assert_eq!(plaintext.len(), 114);
    let c = SkCipher::new(
        EncrAlg::ChaCha20Poly1305,
        None,
        &SecretBytes::new(keymat),
        &SecretBytes::new(vec![]),
    )
    .unwrap();
    // Last byte '.' = 46: 114 - 1 - 46 = 67 bytes.
    assert_eq!(c.open(&aad, &body).unwrap(), &plaintext[..67]);
}

/// 3DES-CBC interop fixture made with the OpenSSL 3.0 command line (no published
/// IKE-level vector exists):
/// `printf 'inner payloads 3DES\0\0\0\0\4' | openssl enc -des-ede3-cbc -nopad
///  -K 0123456789abcdeff1e0d3c2b5a49786fedcba9876543210 -iv 1a2b3c4d5e6f7081`
/// (4 zero padding bytes and the pad-length byte 4). ICV: HMAC-SHA1-96 over AAD ‖ IV ‖
/// ciphertext.
#[test]
fn triple_des_body_opens_openssl_ciphertext() {
    let key = SecretBytes::new(h("0123456789abcdeff1e0d3c2b5a49786fedcba9876543210"));
    let integ_key = SecretBytes::new(vec![0x33; 20]);
    let iv = h("1a2b3c4d5e6f7081");
    let ct = h("c485c924f722d2bb8b09b72028f6bbbebc47f3145afefdbc");
    let icv = prf(PrfAlg::HmacSha1, integ_key.as_bytes(), &[b"aad", &iv, &ct]);
    let mut body = iv.clone();
    body.extend_from_slice(&ct);
    body.extend_from_slice(&icv.as_bytes()[..12]);
    let c = SkCipher::new(
        EncrAlg::TripleDesCbc,
        Some(IntegAlg::HmacSha1_96),
        &key,
        &integ_key,
    )
    .unwrap();
    assert_eq!(c.open(b"aad", &body).unwrap(), b"inner payloads 3DES");
    assert_eq!(c.body_len(19), 8 + 24 + 12);
}
