//! Per-SA precomputed cipher state and the ESP packet layout.
//!
//! Layout of an ESP packet (RFC 4303 section 2), as carried in a UDP/4500 datagram:
//! `SPI(4) ‖ Seq(4) ‖ IV ‖ E(payload ‖ padding ‖ pad length(1) ‖ next header(1)) ‖ ICV`.

use core::ops::Range;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
    UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::framing::{ESP_HEADER_LEN, ESP_TRAILER_LEN};
use crate::transform::{AEAD_SALT_LEN, AesKeyLen, DirectionKeys, Integrity, Transform};

const AEAD_IV_LEN: usize = 8;
const CBC_IV_LEN: usize = 16;
const AEAD_TAG_LEN: usize = 16;

/// Why `open` refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    Malformed,
    Auth,
}

pub(crate) struct CipherState {
    transform: Transform,
    kind: Kind,
}

enum Kind {
    Aead {
        key: LessSafeKey,
        salt: Zeroizing<[u8; AEAD_SALT_LEN]>,
    },
    /// Boxed: the expanded AES and HMAC keys are much larger than the AEAD variant.
    Cbc(Box<CbcState>),
}

struct CbcState {
    enc: EncryptingKey,
    dec: DecryptingKey,
    /// Same AES key in ECB mode, used to derive CBC IVs (see `cbc_iv`).
    iv_key: EncryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

impl core::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CipherState")
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

fn aes_alg(k: AesKeyLen) -> &'static aws_lc_rs::cipher::Algorithm {
    match k {
        AesKeyLen::Aes128 => &AES_128,
        AesKeyLen::Aes192 => &AES_192,
        AesKeyLen::Aes256 => &AES_256,
    }
}

fn hmac_alg(i: Integrity) -> hmac::Algorithm {
    match i {
        Integrity::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Integrity::HmacSha256_128 => hmac::HMAC_SHA256,
        Integrity::HmacSha384_192 => hmac::HMAC_SHA384,
        Integrity::HmacSha512_256 => hmac::HMAC_SHA512,
    }
}

impl CipherState {
    pub(crate) fn new(keys: &DirectionKeys) -> Result<Self, KeyError> {
        let transform = keys.transform();
        let kind = match transform {
            Transform::AesGcm16(_) | Transform::ChaCha20Poly1305 => {
                let alg = match transform {
                    Transform::AesGcm16(AesKeyLen::Aes128) => &aead::AES_128_GCM,
                    Transform::AesGcm16(AesKeyLen::Aes192) => &aead::AES_192_GCM,
                    Transform::AesGcm16(AesKeyLen::Aes256) => &aead::AES_256_GCM,
                    _ => &aead::CHACHA20_POLY1305,
                };
                let encr = keys.encr();
                let (key, salt) = encr.split_at(encr.len() - AEAD_SALT_LEN);
                let key = UnboundKey::new(alg, key).map_err(|_| KeyError::Rejected)?;
                let mut salt_arr = Zeroizing::new([0u8; AEAD_SALT_LEN]);
                salt_arr.copy_from_slice(salt);
                Kind::Aead {
                    key: LessSafeKey::new(key),
                    salt: salt_arr,
                }
            }
            Transform::AesCbc(k, integ) => {
                let alg = aes_alg(k);
                let unbound =
                    || UnboundCipherKey::new(alg, keys.encr()).map_err(|_| KeyError::Rejected);
                Kind::Cbc(Box::new(CbcState {
                    enc: EncryptingKey::cbc(unbound()?).map_err(|_| KeyError::Rejected)?,
                    dec: DecryptingKey::cbc(unbound()?).map_err(|_| KeyError::Rejected)?,
                    iv_key: EncryptingKey::ecb(unbound()?).map_err(|_| KeyError::Rejected)?,
                    mac: hmac::Key::new(hmac_alg(integ), keys.integ()),
                    icv_len: integ.icv_len(),
                }))
            }
        };
        Ok(Self { transform, kind })
    }

    pub(crate) fn transform(&self) -> Transform {
        self.transform
    }

    /// Length of the encrypted part for an inner packet of `inner_len` bytes, and the padding
    /// in it (RFC 4303 section 2.4: align to the cipher block, at least 4).
    pub(crate) fn payload_len(&self, inner_len: usize) -> (usize, usize) {
        let align = self.transform.payload_align();
        let unpadded = inner_len + ESP_TRAILER_LEN;
        let padded = unpadded.div_ceil(align) * align;
        (padded, padded - unpadded)
    }

    /// Total ESP packet length for an inner packet of `inner_len` bytes.
    pub(crate) fn packet_len(&self, inner_len: usize) -> usize {
        ESP_HEADER_LEN
            + self.transform.iv_len()
            + self.payload_len(inner_len).0
            + self.transform.icv_len()
    }

    /// Encrypt and authenticate `packet` in place. On entry `packet` is exactly one ESP packet
    /// with the header and the plaintext payload (trailer included) written; IV and ICV space is
    /// filled here. `seq` is the full sequence number (its low 32 bits are in the header); with
    /// `esn` its high 32 bits are authenticated too (RFC 4303 section 2.2.1).
    pub(crate) fn seal(&self, packet: &mut [u8], seq: u64, esn: bool) -> Result<(), ()> {
        let seq_hi = esn.then_some((seq >> 32) as u32);
        match &self.kind {
            // RFC 4106 section 3.1 / RFC 7634 section 2: the IV must be unique per key; the
            // sequence number is, because it never wraps.
            Kind::Aead { .. } => self.seal_aead(packet, seq.to_be_bytes(), seq_hi),
            Kind::Cbc(cbc) => {
                let CbcState {
                    enc,
                    iv_key,
                    mac,
                    icv_len,
                    ..
                } = &**cbc;
                let iv = cbc_iv(iv_key, packet, seq)?;
                let icv_start = packet.len().checked_sub(*icv_len).ok_or(())?;
                let (covered, icv) = packet.split_at_mut(icv_start);
                let (head, payload) = covered
                    .split_at_mut_checked(ESP_HEADER_LEN + CBC_IV_LEN)
                    .ok_or(())?;
                head[ESP_HEADER_LEN..].copy_from_slice(&iv);
                enc.less_safe_encrypt(payload, EncryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| ())?;
                let tag = cbc_icv(mac, covered, seq_hi);
                let tag = tag.as_ref().get(..*icv_len).ok_or(())?;
                icv.copy_from_slice(tag);
                Ok(())
            }
        }
    }

    /// AEAD seal with an explicit IV (`seal` uses the sequence number).
    pub(crate) fn seal_aead(
        &self,
        packet: &mut [u8],
        iv: [u8; AEAD_IV_LEN],
        seq_hi: Option<u32>,
    ) -> Result<(), ()> {
        let Kind::Aead { key, salt } = &self.kind else {
            return Err(());
        };
        let icv_start = packet.len().checked_sub(AEAD_TAG_LEN).ok_or(())?;
        let (covered, icv) = packet.split_at_mut(icv_start);
        let (head, payload) = covered
            .split_at_mut_checked(ESP_HEADER_LEN + AEAD_IV_LEN)
            .ok_or(())?;
        let (hdr, iv_field) = head.split_at_mut(ESP_HEADER_LEN);
        iv_field.copy_from_slice(&iv);
        let (aad, aad_len) = aead_aad(hdr, seq_hi);
        let tag = key
            .seal_in_place_separate_tag(aead_nonce(salt, &iv), Aad::from(&aad[..aad_len]), payload)
            .map_err(|_| ())?;
        icv.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticate, then decrypt a whole ESP packet in place. Returns the range of the
    /// decrypted payload (inner packet, padding, pad length, next header) within `packet`.
    /// On `OpenError::Auth` nothing was decrypted (CBC) or released (AEAD). `seq_hi` is the
    /// inferred high half of the sequence number when ESN is in use.
    pub(crate) fn open(
        &self,
        packet: &mut [u8],
        seq_hi: Option<u32>,
    ) -> Result<Range<usize>, OpenError> {
        match &self.kind {
            Kind::Aead { key, salt } => {
                let min = ESP_HEADER_LEN + AEAD_IV_LEN + ESP_TRAILER_LEN + AEAD_TAG_LEN;
                if packet.len() < min {
                    return Err(OpenError::Malformed);
                }
                let (hdr, rest) = packet.split_at_mut(ESP_HEADER_LEN);
                let (iv, ct_and_tag) = rest.split_at_mut(AEAD_IV_LEN);
                let mut iv_arr = [0u8; AEAD_IV_LEN];
                iv_arr.copy_from_slice(iv);
                let (aad, aad_len) = aead_aad(hdr, seq_hi);
                let plain = key
                    .open_in_place(
                        aead_nonce(salt, &iv_arr),
                        Aad::from(&aad[..aad_len]),
                        ct_and_tag,
                    )
                    .map_err(|_| OpenError::Auth)?;
                let start = ESP_HEADER_LEN + AEAD_IV_LEN;
                Ok(start..start + plain.len())
            }
            Kind::Cbc(cbc) => {
                let CbcState {
                    dec, mac, icv_len, ..
                } = &**cbc;
                let start = ESP_HEADER_LEN + CBC_IV_LEN;
                let ct_len = packet
                    .len()
                    .checked_sub(start + *icv_len)
                    .ok_or(OpenError::Malformed)?;
                if ct_len == 0 || ct_len % 16 != 0 {
                    return Err(OpenError::Malformed);
                }
                let (covered, icv) = packet.split_at_mut(start + ct_len);
                let tag = cbc_icv(mac, covered, seq_hi);
                let expected = tag.as_ref().get(..*icv_len).ok_or(OpenError::Auth)?;
                if !bool::from(expected.ct_eq(icv)) {
                    return Err(OpenError::Auth);
                }
                let (head, ct) = covered.split_at_mut(start);
                let mut iv = [0u8; CBC_IV_LEN];
                iv.copy_from_slice(&head[ESP_HEADER_LEN..]);
                dec.decrypt(ct, DecryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| OpenError::Malformed)?;
                Ok(start..start + ct_len)
            }
        }
    }
}

/// RFC 4106 section 5 / RFC 7634 section 2.1: AAD is SPI ‖ 32-bit sequence number, or with ESN
/// SPI ‖ high 32 bits ‖ low 32 bits.
fn aead_aad(hdr: &[u8], seq_hi: Option<u32>) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    match (hdr, seq_hi) {
        ([a, b, c, d, e, f, g, h], Some(hi)) => {
            aad[..4].copy_from_slice(&[*a, *b, *c, *d]);
            aad[4..8].copy_from_slice(&hi.to_be_bytes());
            aad[8..].copy_from_slice(&[*e, *f, *g, *h]);
            (aad, 12)
        }
        _ => {
            let n = hdr.len().min(8);
            aad[..n].copy_from_slice(&hdr[..n]);
            (aad, n)
        }
    }
}

/// RFC 4303 section 2.2.1: with ESN the high 32 bits are appended to the ICV input, not sent.
fn cbc_icv(mac: &hmac::Key, covered: &[u8], seq_hi: Option<u32>) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(mac);
    ctx.update(covered);
    if let Some(hi) = seq_hi {
        ctx.update(&hi.to_be_bytes());
    }
    ctx.sign()
}

fn aead_nonce(salt: &[u8; AEAD_SALT_LEN], iv: &[u8; AEAD_IV_LEN]) -> Nonce {
    // RFC 4106 section 4 / RFC 7634 section 2: nonce = salt ‖ IV.
    let mut n = [0u8; 12];
    n[..AEAD_SALT_LEN].copy_from_slice(salt);
    n[AEAD_SALT_LEN..].copy_from_slice(iv);
    Nonce::assume_unique_for_key(n)
}

/// CBC IVs must be unpredictable (RFC 3602 section 2.1). Without an RNG in this sans-IO crate we
/// use NIST SP 800-38A appendix C's first method: encrypt a nonce under the same key. The nonce
/// block is SPI ‖ 0 ‖ 64-bit sequence number, unique for the SA's life because the sequence
/// number never wraps.
fn cbc_iv(iv_key: &EncryptingKey, packet: &[u8], seq: u64) -> Result<[u8; CBC_IV_LEN], ()> {
    let mut block = [0u8; CBC_IV_LEN];
    block[..4].copy_from_slice(packet.get(..4).ok_or(())?);
    block[8..].copy_from_slice(&seq.to_be_bytes());
    iv_key
        .less_safe_encrypt(&mut block, EncryptionContext::None)
        .map_err(|_| ())?;
    Ok(block)
}
