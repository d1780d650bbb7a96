//! Negotiable algorithms and their IANA "IKEv2 Transform Type" numbers (RFC 7296 3.3.2).

use aws_lc_rs::{digest, hmac};

/// Encryption algorithm (transform type 1) with its key size fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_3DES (3), CBC, 24-byte key. Legacy (Windows still offers it).
    TripleDesCbc,
    /// ENCR_AES_CBC (12) with Key Length attribute 128.
    AesCbc128,
    /// ENCR_AES_CBC (12) with Key Length attribute 192.
    AesCbc192,
    /// ENCR_AES_CBC (12) with Key Length attribute 256.
    AesCbc256,
    /// ENCR_AES_GCM_16 (20), key length 128 (RFC 5282; keying material = key ‖ 4-byte salt).
    AesGcm16_128,
    /// ENCR_AES_GCM_16 (20), key length 256.
    AesGcm16_256,
    /// ENCR_CHACHA20_POLY1305 (28) (RFC 7634; keying material = 32-byte key ‖ 4-byte salt).
    ChaCha20Poly1305,
}

impl EncrAlg {
    /// Every supported ENCR algorithm, strongest first (for building proposals).
    pub const ALL: [EncrAlg; 7] = [
        Self::AesGcm16_256,
        Self::ChaCha20Poly1305,
        Self::AesGcm16_128,
        Self::AesCbc256,
        Self::AesCbc192,
        Self::AesCbc128,
        Self::TripleDesCbc,
    ];
    /// IANA transform ID of ENCR_3DES.
    pub const IANA_3DES: u16 = 3;
    /// IANA transform ID of ENCR_AES_CBC.
    pub const IANA_AES_CBC: u16 = 12;
    /// IANA transform ID of ENCR_AES_GCM_16.
    pub const IANA_AES_GCM_16: u16 = 20;
    /// IANA transform ID of ENCR_CHACHA20_POLY1305.
    pub const IANA_CHACHA20_POLY1305: u16 = 28;

    /// Maps a transform ID plus its Key Length attribute (in bits; `None` when absent) to an
    /// algorithm. AES requires the attribute; 3DES and ChaCha20-Poly1305 must not carry a
    /// different length than their fixed one.
    pub fn from_iana(id: u16, key_length_bits: Option<u16>) -> Option<Self> {
        match (id, key_length_bits) {
            (Self::IANA_3DES, None | Some(192)) => Some(Self::TripleDesCbc),
            (Self::IANA_AES_CBC, Some(128)) => Some(Self::AesCbc128),
            (Self::IANA_AES_CBC, Some(192)) => Some(Self::AesCbc192),
            (Self::IANA_AES_CBC, Some(256)) => Some(Self::AesCbc256),
            (Self::IANA_AES_GCM_16, Some(128)) => Some(Self::AesGcm16_128),
            (Self::IANA_AES_GCM_16, Some(256)) => Some(Self::AesGcm16_256),
            (Self::IANA_CHACHA20_POLY1305, None | Some(256)) => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// IANA transform ID.
    pub fn iana(self) -> u16 {
        match self {
            Self::TripleDesCbc => Self::IANA_3DES,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => Self::IANA_AES_CBC,
            Self::AesGcm16_128 | Self::AesGcm16_256 => Self::IANA_AES_GCM_16,
            Self::ChaCha20Poly1305 => Self::IANA_CHACHA20_POLY1305,
        }
    }

    /// Value of the Key Length transform attribute to send (`None`: send no attribute).
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            Self::AesCbc128 | Self::AesGcm16_128 => Some(128),
            Self::AesCbc192 => Some(192),
            Self::AesCbc256 | Self::AesGcm16_256 => Some(256),
            Self::TripleDesCbc | Self::ChaCha20Poly1305 => None,
        }
    }

    /// True for combined-mode ciphers, which are negotiated without an INTEG transform.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            Self::AesGcm16_128 | Self::AesGcm16_256 | Self::ChaCha20Poly1305
        )
    }

    /// Bytes of keying material taken from prf+ for this cipher (RFC 7296 2.14), including the
    /// 4-byte salt of the AEAD ciphers (RFC 5282 7.1, RFC 7634 3).
    pub fn key_material_len(self) -> usize {
        self.cipher_key_len() + self.salt_len()
    }

    /// Length of the cipher key proper (without salt).
    pub(crate) fn cipher_key_len(self) -> usize {
        match self {
            Self::AesCbc128 | Self::AesGcm16_128 => 16,
            Self::AesCbc192 | Self::TripleDesCbc => 24,
            Self::AesCbc256 | Self::AesGcm16_256 | Self::ChaCha20Poly1305 => 32,
        }
    }

    /// Length of the implicit salt at the end of the keying material (AEAD only).
    pub(crate) fn salt_len(self) -> usize {
        if self.is_aead() { 4 } else { 0 }
    }

    /// Length of the IV carried in each SK payload.
    pub fn iv_len(self) -> usize {
        match self {
            Self::TripleDesCbc => 8,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => 16,
            Self::AesGcm16_128 | Self::AesGcm16_256 | Self::ChaCha20Poly1305 => 8,
        }
    }

    /// Block size the padded plaintext must be a multiple of (1 for AEAD: no alignment needed).
    pub fn block_len(self) -> usize {
        match self {
            Self::TripleDesCbc => 8,
            Self::AesCbc128 | Self::AesCbc192 | Self::AesCbc256 => 16,
            Self::AesGcm16_128 | Self::AesGcm16_256 | Self::ChaCha20Poly1305 => 1,
        }
    }

    /// Length of the AEAD tag (0 for CBC ciphers, whose ICV comes from the INTEG transform).
    pub fn aead_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 0 }
    }
}

/// Pseudo-random function (transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA1 (2).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    /// Every supported PRF, strongest first.
    pub const ALL: [PrfAlg; 4] = [
        Self::HmacSha512,
        Self::HmacSha384,
        Self::HmacSha256,
        Self::HmacSha1,
    ];
    /// Maps an IANA PRF transform ID.
    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1),
            5 => Some(Self::HmacSha256),
            6 => Some(Self::HmacSha384),
            7 => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// IANA transform ID.
    pub fn iana(self) -> u16 {
        match self {
            Self::HmacSha1 => 2,
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// Output length in bytes, which is also the preferred key length (RFC 7296 2.13, 2.14:
    /// SK_d, SK_pi and SK_pr have this length).
    pub fn output_len(self) -> usize {
        self.hmac_algorithm().digest_algorithm().output_len
    }

    /// Alias of [`PrfAlg::output_len`] that names the RFC 7296 concept.
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    pub(crate) fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

/// Integrity algorithm (transform type 3), used with the CBC ciphers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA1_96 (2).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12) (RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl IntegAlg {
    /// Every supported INTEG algorithm, strongest first.
    pub const ALL: [IntegAlg; 4] = [
        Self::HmacSha512_256,
        Self::HmacSha384_192,
        Self::HmacSha256_128,
        Self::HmacSha1_96,
    ];
    /// Maps an IANA INTEG transform ID.
    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1_96),
            12 => Some(Self::HmacSha256_128),
            13 => Some(Self::HmacSha384_192),
            14 => Some(Self::HmacSha512_256),
            _ => None,
        }
    }

    /// IANA transform ID.
    pub fn iana(self) -> u16 {
        match self {
            Self::HmacSha1_96 => 2,
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Key length in bytes (RFC 2404: 20; RFC 4868: 32/48/64).
    pub fn key_len(self) -> usize {
        self.hmac_algorithm().digest_algorithm().output_len
    }

    /// Truncated ICV length in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }

    pub(crate) fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256_128 => hmac::HMAC_SHA256,
            Self::HmacSha384_192 => hmac::HMAC_SHA384,
            Self::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }
}

/// Hash algorithms of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 4, IANA "IKEv2 Hash
/// Algorithms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA1 (1).
    Sha1,
    /// SHA2-256 (2).
    Sha256,
    /// SHA2-384 (3).
    Sha384,
    /// SHA2-512 (4).
    Sha512,
}

impl HashAlg {
    /// Every supported hash, strongest first.
    pub const ALL: [HashAlg; 4] = [Self::Sha512, Self::Sha384, Self::Sha256, Self::Sha1];
    /// Maps an IANA hash algorithm number.
    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            1 => Some(Self::Sha1),
            2 => Some(Self::Sha256),
            3 => Some(Self::Sha384),
            4 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// IANA number.
    pub fn iana(self) -> u16 {
        match self {
            Self::Sha1 => 1,
            Self::Sha256 => 2,
            Self::Sha384 => 3,
            Self::Sha512 => 4,
        }
    }

    pub(crate) fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ENCR: [EncrAlg; 7] = EncrAlg::ALL;

    #[test]
    fn encr_iana_round_trip() {
        for alg in ALL_ENCR {
            assert_eq!(
                EncrAlg::from_iana(alg.iana(), alg.key_length_attr()),
                Some(alg)
            );
        }
        assert_eq!(EncrAlg::from_iana(12, None), None);
        assert_eq!(EncrAlg::from_iana(12, Some(64)), None);
        assert_eq!(EncrAlg::from_iana(20, Some(192)), None);
        assert_eq!(EncrAlg::from_iana(28, Some(128)), None);
        assert_eq!(EncrAlg::from_iana(1, None), None);
    }

    #[test]
    fn encr_key_material_lengths_follow_rfcs() {
        assert_eq!(EncrAlg::AesCbc128.key_material_len(), 16);
        assert_eq!(EncrAlg::AesCbc192.key_material_len(), 24);
        assert_eq!(EncrAlg::AesCbc256.key_material_len(), 32);
        assert_eq!(EncrAlg::TripleDesCbc.key_material_len(), 24);
        assert_eq!(EncrAlg::AesGcm16_128.key_material_len(), 20);
        assert_eq!(EncrAlg::AesGcm16_256.key_material_len(), 36);
        assert_eq!(EncrAlg::ChaCha20Poly1305.key_material_len(), 36);
    }

    #[test]
    fn prf_integ_hash_iana_round_trip_and_lengths() {
        for id in 0..300 {
            if let Some(p) = PrfAlg::from_iana(id) {
                assert_eq!(p.iana(), id);
            }
            if let Some(i) = IntegAlg::from_iana(id) {
                assert_eq!(i.iana(), id);
            }
            if let Some(h) = HashAlg::from_iana(id) {
                assert_eq!(h.iana(), id);
            }
        }
        assert!(
            PrfAlg::ALL
                .iter()
                .all(|p| PrfAlg::from_iana(p.iana()) == Some(*p))
        );
        assert!(
            IntegAlg::ALL
                .iter()
                .all(|p| IntegAlg::from_iana(p.iana()) == Some(*p))
        );
        assert!(
            HashAlg::ALL
                .iter()
                .all(|p| HashAlg::from_iana(p.iana()) == Some(*p))
        );
        let prf: Vec<usize> = [2, 5, 6, 7]
            .iter()
            .map(|&id| PrfAlg::from_iana(id).unwrap().key_len())
            .collect();
        assert_eq!(prf, [20, 32, 48, 64]);
        let integ: Vec<(usize, usize)> = [2, 12, 13, 14]
            .iter()
            .map(|&id| {
                let a = IntegAlg::from_iana(id).unwrap();
                (a.key_len(), a.icv_len())
            })
            .collect();
        assert_eq!(integ, [(20, 12), (32, 16), (48, 24), (64, 32)]);
        assert_eq!(HashAlg::from_iana(5), None);
    }
}
