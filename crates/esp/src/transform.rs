//! Negotiated ESP transforms and their key material (RFC 7296 section 2.17).

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::KeyError;

/// AES key size, as carried in the IKEv2 Key Length attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AesKeyLen {
    /// 128-bit key.
    Aes128,
    /// 192-bit key.
    Aes192,
    /// 256-bit key.
    Aes256,
}

impl AesKeyLen {
    /// Key length in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }
}

/// Integrity algorithm paired with AES-CBC (IKEv2 transform type 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// AUTH_HMAC_SHA1_96 (2), RFC 2404.
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12), RFC 4868.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13), RFC 4868.
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14), RFC 4868.
    HmacSha512_256,
}

impl Integrity {
    /// Key length in bytes (the hash output length, RFC 2404 / RFC 4868).
    pub const fn key_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 20,
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length in bytes.
    pub const fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }
}

/// Length of the salt appended to AEAD keys in KEYMAT (RFC 4106 section 8.1, RFC 7634 section 2).
pub const AEAD_SALT_LEN: usize = 4;

/// An ESP transform: cipher plus (for non-AEAD ciphers) integrity algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// ENCR_AES_GCM_16 (20), RFC 4106: 8-byte IV, 16-byte ICV.
    AesGcm16(AesKeyLen),
    /// ENCR_CHACHA20_POLY1305 (28), RFC 7634: 8-byte IV, 16-byte ICV.
    ChaCha20Poly1305,
    /// ENCR_AES_CBC (12), RFC 3602, with an HMAC integrity transform.
    AesCbc(AesKeyLen, Integrity),
}

impl Transform {
    /// Bytes of KEYMAT taken for the encryption key of one direction (salt included for AEADs).
    pub const fn encr_key_len(self) -> usize {
        match self {
            Self::AesGcm16(k) => k.bytes() + AEAD_SALT_LEN,
            Self::ChaCha20Poly1305 => 32 + AEAD_SALT_LEN,
            Self::AesCbc(k, _) => k.bytes(),
        }
    }

    /// Bytes of KEYMAT taken for the integrity key of one direction (0 for AEADs).
    pub const fn integ_key_len(self) -> usize {
        match self {
            Self::AesGcm16(_) | Self::ChaCha20Poly1305 => 0,
            Self::AesCbc(_, i) => i.key_len(),
        }
    }

    /// Bytes of KEYMAT for one direction.
    pub const fn keymat_len(self) -> usize {
        self.encr_key_len() + self.integ_key_len()
    }

    /// Length of the IV carried in every packet.
    pub const fn iv_len(self) -> usize {
        match self {
            Self::AesGcm16(_) | Self::ChaCha20Poly1305 => 8,
            Self::AesCbc(..) => 16,
        }
    }

    /// Length of the ICV at the end of every packet.
    pub const fn icv_len(self) -> usize {
        match self {
            Self::AesGcm16(_) | Self::ChaCha20Poly1305 => 16,
            Self::AesCbc(_, i) => i.icv_len(),
        }
    }

    /// Alignment of the encrypted part (payload, padding, pad length, next header).
    /// RFC 4303 section 2.4: the cipher block size, and at least 4 bytes.
    pub const fn payload_align(self) -> usize {
        match self {
            Self::AesGcm16(_) | Self::ChaCha20Poly1305 => 4,
            Self::AesCbc(..) => 16,
        }
    }

    /// Whether the cipher is an AEAD (no separate integrity transform).
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::AesGcm16(_) | Self::ChaCha20Poly1305)
    }
}

const MAX_ENCR_KEY: usize = 32 + AEAD_SALT_LEN;
const MAX_INTEG_KEY: usize = 64;

/// Keys for one direction of a Child SA. Zeroized on drop; `Debug` never prints key bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirectionKeys {
    #[zeroize(skip)]
    transform: Transform,
    encr: [u8; MAX_ENCR_KEY],
    integ: [u8; MAX_INTEG_KEY],
}

impl core::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

impl DirectionKeys {
    /// Keys from separate encryption (salt appended for AEADs) and integrity key bytes.
    pub fn new(transform: Transform, encr: &[u8], integ: &[u8]) -> Result<Self, KeyError> {
        if encr.len() != transform.encr_key_len() || integ.len() != transform.integ_key_len() {
            return Err(KeyError::WrongLength {
                expected: transform.keymat_len(),
                got: encr.len() + integ.len(),
            });
        }
        let mut keys = Self {
            transform,
            encr: [0; MAX_ENCR_KEY],
            integ: [0; MAX_INTEG_KEY],
        };
        keys.encr[..encr.len()].copy_from_slice(encr);
        keys.integ[..integ.len()].copy_from_slice(integ);
        Ok(keys)
    }

    /// Keys from one direction's slice of KEYMAT: encryption key first, then integrity key
    /// (RFC 7296 section 2.17).
    pub fn from_keymat(transform: Transform, keymat: &[u8]) -> Result<Self, KeyError> {
        if keymat.len() != transform.keymat_len() {
            return Err(KeyError::WrongLength {
                expected: transform.keymat_len(),
                got: keymat.len(),
            });
        }
        let (encr, integ) = keymat.split_at(transform.encr_key_len());
        Self::new(transform, encr, integ)
    }

    /// The transform these keys belong to.
    pub fn transform(&self) -> Transform {
        self.transform
    }

    pub(crate) fn encr(&self) -> &[u8] {
        &self.encr[..self.transform.encr_key_len()]
    }

    pub(crate) fn integ(&self) -> &[u8] {
        &self.integ[..self.transform.integ_key_len()]
    }
}

/// Split a Child SA's KEYMAT (RFC 7296 section 2.17) into the initiator-to-responder and
/// responder-to-initiator keys. `keymat` must be exactly `2 * transform.keymat_len()` bytes.
pub fn split_keymat(
    transform: Transform,
    keymat: &[u8],
) -> Result<(DirectionKeys, DirectionKeys), KeyError> {
    let one = transform.keymat_len();
    if keymat.len() != 2 * one {
        return Err(KeyError::WrongLength {
            expected: 2 * one,
            got: keymat.len(),
        });
    }
    let (i2r, r2i) = keymat.split_at(one);
    Ok((
        DirectionKeys::from_keymat(transform, i2r)?,
        DirectionKeys::from_keymat(transform, r2i)?,
    ))
}
