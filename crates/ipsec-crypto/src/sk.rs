//! Encrypted payload (SK) protection, RFC 7296 3.14 (CBC + HMAC) and RFC 5282 / RFC 7634 (AEAD).
//!
//! Body layout (everything after the 4-byte SK generic payload header):
//! `IV ‖ Encrypt(plaintext ‖ padding ‖ pad-length) ‖ ICV`.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::SecretBytes;
use crate::transforms::{EncrAlg, IntegAlg};
use crate::{CryptoError, Provider};

/// One direction of SK payload protection, built from the negotiated transforms and keys
/// (e.g. SK_ei/SK_ai for initiator → responder). Immutable, `Send + Sync`.
pub struct SkCipher {
    encr: EncrAlg,
    engine: Engine,
}

enum Engine {
    Cbc(Box<CbcEngine>),
    Aead {
        key: LessSafeKey,
        salt: Zeroizing<[u8; 4]>,
    },
}

struct CbcEngine {
    enc: EncryptingKey,
    dec: DecryptingKey,
    integ: IntegAlg,
    mac: hmac::Key,
}

impl CbcEngine {
    /// HMAC over the concatenated parts, truncated to the transform's ICV length.
    fn icv(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.mac);
        for part in parts {
            ctx.update(part);
        }
        let tag = ctx.sign();
        tag.as_ref()
            .get(..self.integ.icv_len())
            .unwrap_or_default()
            .to_vec()
    }
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let integ = match &self.engine {
            Engine::Cbc(cbc) => Some(cbc.integ),
            Engine::Aead { .. } => None,
        };
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &integ)
            .finish()
    }
}

impl SkCipher {
    /// Builds a cipher. `encr_key` is the whole SK_e (AEAD: key ‖ 4-byte salt); `integ_key`
    /// is SK_a (empty for AEAD, where `integ` must be `None`).
    pub fn new(
        encr: EncrAlg,
        integ: Option<IntegAlg>,
        encr_key: &SecretBytes,
        integ_key: &SecretBytes,
    ) -> Result<Self, CryptoError> {
        let encr_key = encr_key.as_bytes();
        let expected = encr.key_material_len();
        if encr_key.len() != expected {
            return Err(CryptoError::KeyLength {
                what: "encryption",
                expected,
                got: encr_key.len(),
            });
        }
        let engine = match (encr.is_aead(), integ) {
            (true, Some(_)) => {
                return Err(CryptoError::TransformCombination("AEAD cipher with INTEG"));
            }
            (false, None) => {
                return Err(CryptoError::TransformCombination(
                    "CBC cipher without INTEG",
                ));
            }
            (true, None) => {
                let (key, salt) = encr_key.split_at(encr.cipher_key_len());
                let alg = match encr {
                    EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
                    EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
                    _ => &aead::CHACHA20_POLY1305,
                };
                let unbound = UnboundKey::new(alg, key)
                    .map_err(|_| CryptoError::KeyRejected("encryption"))?;
                let mut salt_arr = Zeroizing::new([0u8; 4]);
                salt_arr.copy_from_slice(salt);
                Engine::Aead {
                    key: LessSafeKey::new(unbound),
                    salt: salt_arr,
                }
            }
            (false, Some(integ)) => {
                let integ_key = integ_key.as_bytes();
                if integ_key.len() != integ.key_len() {
                    return Err(CryptoError::KeyLength {
                        what: "integrity",
                        expected: integ.key_len(),
                        got: integ_key.len(),
                    });
                }
                let alg = cbc_algorithm(encr);
                let make = || {
                    UnboundCipherKey::new(alg, encr_key)
                        .map_err(|_| CryptoError::KeyRejected("encryption"))
                };
                let enc = EncryptingKey::cbc(make()?)
                    .map_err(|_| CryptoError::KeyRejected("encryption"))?;
                let dec = DecryptingKey::cbc(make()?)
                    .map_err(|_| CryptoError::KeyRejected("encryption"))?;
                let mac = hmac::Key::new(integ.hmac_algorithm(), integ_key);
                Engine::Cbc(Box::new(CbcEngine {
                    enc,
                    dec,
                    integ,
                    mac,
                }))
            }
        };
        Ok(SkCipher { encr, engine })
    }

    /// The ENCR transform.
    pub fn encr(&self) -> EncrAlg {
        self.encr
    }

    fn icv_len(&self) -> usize {
        match &self.engine {
            Engine::Cbc(cbc) => cbc.integ.icv_len(),
            Engine::Aead { .. } => self.encr.aead_tag_len(),
        }
    }

    /// Length of `plaintext ‖ padding ‖ pad-length` for a plaintext of `plaintext_len` bytes.
    fn padded_len(&self, plaintext_len: usize) -> usize {
        let block = self.encr.block_len();
        plaintext_len
            .saturating_add(1)
            .div_ceil(block)
            .saturating_mul(block)
    }

    /// Length of the SK body (IV ‖ ciphertext ‖ ICV) that [`SkCipher::seal`] produces for
    /// `plaintext_len` bytes of inner payloads. Use it to fill in the SK payload length and
    /// the IKE header length before building the AAD.
    pub fn body_len(&self, plaintext_len: usize) -> usize {
        (self.encr.iv_len() + self.icv_len()).saturating_add(self.padded_len(plaintext_len))
    }

    /// `body_len(plaintext_len) - plaintext_len`.
    pub fn overhead(&self, plaintext_len: usize) -> usize {
        self.body_len(plaintext_len).saturating_sub(plaintext_len)
    }

    /// Largest plaintext whose body fits in `body_budget` bytes (for IKE fragmentation),
    /// or `None` if not even an empty plaintext fits.
    pub fn max_plaintext_len(&self, body_budget: usize) -> Option<usize> {
        let fixed = self.encr.iv_len() + self.icv_len();
        let room = body_budget.checked_sub(fixed)?;
        let block = self.encr.block_len();
        let padded = room / block * block;
        padded.checked_sub(1)
    }

    /// Encrypts and authenticates `plaintext` (the inner payloads). `aad` is everything that
    /// precedes the SK body in the message: IKE header ‖ unencrypted payloads ‖ SK generic
    /// payload header, with lengths already final (see [`SkCipher::body_len`]). The IV comes
    /// from `provider`. Returns the SK body.
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        provider: &Provider,
    ) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.encr.iv_len();
        let padded_len = self.padded_len(plaintext.len());
        let mut body = Vec::with_capacity(self.body_len(plaintext.len()));
        body.resize(iv_len, 0);
        provider.fill_random(&mut body)?;
        body.extend_from_slice(plaintext);
        // Padding bytes are zero; the pad-length byte counts them (RFC 7296 3.14).
        let pad = padded_len - plaintext.len() - 1;
        body.resize(iv_len + padded_len - 1, 0);
        body.push(u8::try_from(pad).map_err(|_| CryptoError::BadPadding)?);
        let (iv, data) = body.split_at_mut(iv_len);
        match &self.engine {
            Engine::Cbc(cbc) => {
                let context = cbc_context(self.encr, iv)?;
                cbc.enc
                    .less_safe_encrypt(data, context)
                    .map_err(|_| CryptoError::Backend("CBC"))?;
                let icv = cbc.icv(&[aad, &body]);
                body.extend_from_slice(&icv);
            }
            Engine::Aead { key, salt } => {
                let nonce = aead_nonce(salt, iv)?;
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), data)
                    .map_err(|_| CryptoError::Backend("AEAD"))?;
                body.extend_from_slice(tag.as_ref());
            }
        }
        Ok(body)
    }

    /// Verifies and decrypts an SK body; `aad` as for [`SkCipher::seal`] (taken from the
    /// received message). The ICV is checked in constant time before any decryption; the
    /// padding length is checked after. Returns the inner payloads.
    pub fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.encr.iv_len();
        let icv_len = self.icv_len();
        let block = self.encr.block_len();
        let data_len = body
            .len()
            .checked_sub(iv_len + icv_len)
            .filter(|&n| n >= block.max(1) && n % block == 0)
            .ok_or(CryptoError::SkBodyLength(body.len()))?;
        let (iv, rest) = body.split_at(iv_len);
        let (ciphertext, icv) = rest.split_at(data_len);
        let mut plain = Zeroizing::new(ciphertext.to_vec());
        let plain_len = match &self.engine {
            Engine::Cbc(cbc) => {
                let expected = cbc.icv(&[aad, iv, ciphertext]);
                if !bool::from(expected.ct_eq(icv)) {
                    return Err(CryptoError::IntegrityCheckFailed);
                }
                let context = DecryptionContext::from(cbc_context(self.encr, iv)?);
                cbc.dec
                    .decrypt(&mut plain, context)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
                plain.len()
            }
            Engine::Aead { key, salt } => {
                let nonce = aead_nonce(salt, iv)?;
                plain.extend_from_slice(icv);
                key.open_in_place(nonce, Aad::from(aad), &mut plain)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?
                    .len()
            }
        };
        let pad_len = usize::from(
            *plain
                .get(plain_len.wrapping_sub(1))
                .ok_or(CryptoError::BadPadding)?,
        );
        let inner_len = plain_len
            .checked_sub(pad_len + 1)
            .ok_or(CryptoError::BadPadding)?;
        Ok(plain
            .get(..inner_len)
            .ok_or(CryptoError::BadPadding)?
            .to_vec())
    }
}

#[allow(deprecated)]
fn cbc_algorithm(encr: EncrAlg) -> &'static cipher::Algorithm {
    match encr {
        EncrAlg::TripleDesCbc => &cipher::DES_EDE3_FOR_LEGACY_USE_ONLY,
        EncrAlg::AesCbc128 => &cipher::AES_128,
        EncrAlg::AesCbc192 => &cipher::AES_192,
        _ => &cipher::AES_256,
    }
}

fn cbc_context(encr: EncrAlg, iv: &[u8]) -> Result<EncryptionContext, CryptoError> {
    let bad = || CryptoError::SkBodyLength(iv.len());
    if encr == EncrAlg::TripleDesCbc {
        let iv: [u8; 8] = iv.try_into().map_err(|_| bad())?;
        Ok(EncryptionContext::Iv64(iv.into()))
    } else {
        let iv: [u8; 16] = iv.try_into().map_err(|_| bad())?;
        Ok(EncryptionContext::Iv128(iv.into()))
    }
}

/// Nonce = 4-byte salt ‖ 8-byte explicit IV (RFC 5282 4, RFC 7634 2).
fn aead_nonce(salt: &[u8; 4], iv: &[u8]) -> Result<Nonce, CryptoError> {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    let iv: [u8; 8] = iv
        .try_into()
        .map_err(|_| CryptoError::SkBodyLength(iv.len()))?;
    nonce[4..].copy_from_slice(&iv);
    Ok(Nonce::assume_unique_for_key(nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SUITES: [(EncrAlg, Option<IntegAlg>); 10] = [
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96)),
        (EncrAlg::AesCbc192, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha384_192)),
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha512_256)),
        (EncrAlg::TripleDesCbc, Some(IntegAlg::HmacSha1_96)),
        (EncrAlg::TripleDesCbc, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesGcm16_128, None),
        (EncrAlg::AesGcm16_256, None),
        (EncrAlg::ChaCha20Poly1305, None),
    ];

    pub(crate) fn cipher_pair(encr: EncrAlg, integ: Option<IntegAlg>) -> (SkCipher, SkCipher) {
        let p = Provider::deterministic(b"keys");
        let ek = SecretBytes::new(p.random_vec(encr.key_material_len()).unwrap());
        let ik = SecretBytes::new(p.random_vec(integ.map_or(0, IntegAlg::key_len)).unwrap());
        (
            SkCipher::new(encr, integ, &ek, &ik).unwrap(),
            SkCipher::new(encr, integ, &ek, &ik).unwrap(),
        )
    }

    #[test]
    fn round_trip_every_transform_and_length() {
        let p = Provider::deterministic(b"iv");
        for (encr, integ) in SUITES {
            let (tx, rx) = cipher_pair(encr, integ);
            for len in [0usize, 1, 7, 8, 15, 16, 17, 100, 1000] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let body = tx.seal(b"aad-header", &pt, &p).unwrap();
                assert_eq!(body.len(), tx.body_len(len), "{encr:?} {len}");
                assert_eq!(body.len() - len, tx.overhead(len));
                assert_eq!(rx.open(b"aad-header", &body).unwrap(), pt, "{encr:?} {len}");
            }
        }
    }

    #[test]
    fn tampering_anywhere_is_detected_before_decryption() {
        let p = Provider::deterministic(b"iv");
        for (encr, integ) in SUITES {
            let (tx, rx) = cipher_pair(encr, integ);
            let body = tx.seal(b"aad", b"inner payloads", &p).unwrap();
            for i in 0..body.len() {
                let mut bad = body.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    rx.open(b"aad", &bad).unwrap_err(),
                    CryptoError::IntegrityCheckFailed,
                    "{encr:?} byte {i}"
                );
            }
            assert_eq!(
                rx.open(b"aaD", &body).unwrap_err(),
                CryptoError::IntegrityCheckFailed
            );
            assert!(rx.open(b"aad", &body[..body.len() - 1]).is_err());
            assert!(matches!(
                rx.open(b"aad", &[]),
                Err(CryptoError::SkBodyLength(0))
            ));
        }
    }

    #[test]
    fn bad_pad_length_is_rejected_after_a_valid_icv() {
        // Encrypt a block whose pad-length byte claims more padding than there is, with a
        // correct ICV, by building the body by hand with the same keys.
        let p = Provider::deterministic(b"pad");
        let ek = SecretBytes::new(vec![7; 16]);
        let ik = SecretBytes::new(vec![9; 32]);
        let c =
            SkCipher::new(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), &ek, &ik).unwrap();
        let iv = [3u8; 16];
        let mut block = [0u8; 16];
        block[15] = 200;
        let Engine::Cbc(cbc) = &c.engine else {
            panic!()
        };
        cbc.enc
            .less_safe_encrypt(&mut block, cbc_context(EncrAlg::AesCbc128, &iv).unwrap())
            .unwrap();
        let mut body = iv.to_vec();
        body.extend_from_slice(&block);
        let icv = cbc.icv(&[b"aad", &body]);
        body.extend_from_slice(&icv);
        assert_eq!(c.open(b"aad", &body).unwrap_err(), CryptoError::BadPadding);
        // A normal message still opens with the same cipher.
        let good = c.seal(b"aad", b"x", &p).unwrap();
        assert_eq!(c.open(b"aad", &good).unwrap(), b"x");
    }

    /// RFC 4868 2.7.2.1-2.7.2.3 test case 1 (key 0x0b repeated to the key length, data
    /// "Hi There") and RFC 2202 3 test case 5 for HMAC-SHA1-96 (RFC 2404), truncated.
    #[test]
    fn icv_matches_rfc4868_and_rfc2202_truncated_vectors() {
        let cases: [(IntegAlg, &[u8], &[u8], &str); 4] = [
            (
                IntegAlg::HmacSha256_128,
                &[0x0b; 32],
                b"Hi There",
                "198a607eb44bfbc69903a0f1cf2bbdc5",
            ),
            (
                IntegAlg::HmacSha384_192,
                &[0x0b; 48],
                b"Hi There",
                "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
            ),
            (
                IntegAlg::HmacSha512_256,
                &[0x0b; 64],
                b"Hi There",
                "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
            ),
            (
                IntegAlg::HmacSha1_96,
                &[0x0c; 20],
                b"Test With Truncation",
                "4c1a03424b55e07fe7f27be1",
            ),
        ];
        for (integ, key, data, expected) in cases {
            let ek = SecretBytes::new(vec![1; 16]);
            let ik = SecretBytes::new(key.to_vec());
            let c = SkCipher::new(EncrAlg::AesCbc128, Some(integ), &ek, &ik).unwrap();
            let Engine::Cbc(cbc) = &c.engine else {
                panic!()
            };
            let (a, b) = data.split_at(3);
            assert_eq!(hex::encode(cbc.icv(&[a, b])), expected, "{integ:?}");
        }
    }

    #[test]
    fn wrong_key_lengths_and_combinations_are_rejected() {
        let k16 = SecretBytes::new(vec![0; 16]);
        let k20 = SecretBytes::new(vec![0; 20]);
        let empty = SecretBytes::new(vec![]);
        assert!(matches!(
            SkCipher::new(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha1_96), &k16, &k20),
            Err(CryptoError::KeyLength { .. })
        ));
        assert!(matches!(
            SkCipher::new(
                EncrAlg::AesCbc128,
                Some(IntegAlg::HmacSha256_128),
                &k16,
                &k20
            ),
            Err(CryptoError::KeyLength { .. })
        ));
        assert!(matches!(
            SkCipher::new(
                EncrAlg::AesGcm16_128,
                Some(IntegAlg::HmacSha1_96),
                &k20,
                &k20
            ),
            Err(CryptoError::TransformCombination(_))
        ));
        assert!(matches!(
            SkCipher::new(EncrAlg::AesCbc128, None, &k16, &empty),
            Err(CryptoError::TransformCombination(_))
        ));
    }

    #[test]
    fn max_plaintext_len_fits_body_budget() {
        for (encr, integ) in SUITES {
            let (c, _) = cipher_pair(encr, integ);
            for budget in [0usize, 20, 64, 100, 1200] {
                match c.max_plaintext_len(budget) {
                    Some(n) => {
                        assert!(c.body_len(n) <= budget);
                        assert!(c.body_len(n + 1) > budget);
                    }
                    None => assert!(c.body_len(0) > budget),
                }
            }
        }
    }

    #[test]
    fn sk_cipher_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SkCipher>();
    }
}
