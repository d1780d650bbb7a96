//! The IKEv2 key schedule: prf, prf+, SKEYSEED and the SK_* split (RFC 7296 2.13, 2.14, 2.17,
//! 2.18).

use aws_lc_rs::{digest, hmac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::sk::SkCipher;
use crate::transforms::{EncrAlg, HashAlg, IntegAlg, PrfAlg};

/// Key material (or any secret byte string): zeroized on drop, `Debug` shows only the length,
/// `==` compares in constant time (only the lengths may leak).
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for SecretBytes {}

impl SecretBytes {
    /// Wraps bytes that are secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty (e.g. SK_a for an AEAD suite).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// hash(data_1 | data_2 | ...), e.g. SHA-1 for NAT_DETECTION_*_IP (RFC 7296 2.23) and for
/// CERTREQ/CERT "Hash and URL" SubjectPublicKeyInfo hashes.
pub fn hash(alg: HashAlg, data: &[&[u8]]) -> Vec<u8> {
    let mut ctx = digest::Context::new(alg.digest_algorithm());
    for part in data {
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

/// prf(key, data_1 | data_2 | ...).
pub fn prf(alg: PrfAlg, key: &[u8], data: &[&[u8]]) -> SecretBytes {
    let key = hmac::Key::new(alg.hmac_algorithm(), key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in data {
        ctx.update(part);
    }
    SecretBytes::new(ctx.sign().as_ref().to_vec())
}

/// prf+(key, seed) truncated to `len` bytes (RFC 7296 2.13):
/// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). At most 255 blocks.
pub fn prf_plus(
    alg: PrfAlg,
    key: &[u8],
    seed: &[&[u8]],
    len: usize,
) -> Result<SecretBytes, CryptoError> {
    let block = alg.output_len();
    if len > 255 * block {
        return Err(CryptoError::PrfPlusTooLong(len));
    }
    let hkey = hmac::Key::new(alg.hmac_algorithm(), key);
    let mut out = Zeroizing::new(Vec::with_capacity(len + block));
    let mut previous = Zeroizing::new(Vec::new());
    let mut counter: u8 = 1;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&hkey);
        ctx.update(&previous);
        for part in seed {
            ctx.update(part);
        }
        ctx.update(&[counter]);
        let tag = ctx.sign();
        previous.clear();
        previous.extend_from_slice(tag.as_ref());
        out.extend_from_slice(tag.as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(SecretBytes(out))
}

/// The transforms negotiated for an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeSuite {
    /// ENCR transform.
    pub encr: EncrAlg,
    /// INTEG transform; must be `None` for AEAD ciphers and `Some` for CBC ciphers.
    pub integ: Option<IntegAlg>,
    /// PRF transform.
    pub prf: PrfAlg,
}

impl IkeSuite {
    /// Checks the ENCR/INTEG combination (RFC 5282 8: AEAD is negotiated without INTEG).
    pub fn validate(&self) -> Result<(), CryptoError> {
        match (self.encr.is_aead(), self.integ) {
            (true, Some(_)) => Err(CryptoError::TransformCombination("AEAD cipher with INTEG")),
            (false, None) => Err(CryptoError::TransformCombination(
                "CBC cipher without INTEG",
            )),
            _ => Ok(()),
        }
    }

    fn integ_key_len(&self) -> usize {
        self.integ.map_or(0, IntegAlg::key_len)
    }
}

/// The seven IKE SA keys of RFC 7296 2.14, each zeroized on drop.
#[derive(Debug, Clone)]
pub struct IkeSaKeys {
    /// SK_d: derives Child SA keys and the next SKEYSEED.
    pub sk_d: SecretBytes,
    /// SK_ai: integrity key, initiator → responder (empty for AEAD).
    pub sk_ai: SecretBytes,
    /// SK_ar: integrity key, responder → initiator (empty for AEAD).
    pub sk_ar: SecretBytes,
    /// SK_ei: encryption key (with AEAD salt), initiator → responder.
    pub sk_ei: SecretBytes,
    /// SK_er: encryption key (with AEAD salt), responder → initiator.
    pub sk_er: SecretBytes,
    /// SK_pi: key for the initiator's AUTH payload computation.
    pub sk_pi: SecretBytes,
    /// SK_pr: key for the responder's AUTH payload computation.
    pub sk_pr: SecretBytes,
}

impl IkeSaKeys {
    /// Keys for a new IKE SA from IKE_SA_INIT: SKEYSEED = prf(Ni | Nr, g^ir), then
    /// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr). Nonces are the Nonce payload data, SPIs the
    /// 8-byte IKE SPIs.
    pub fn derive(
        suite: &IkeSuite,
        shared_secret: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<Self, CryptoError> {
        let skeyseed = skeyseed(suite.prf, ni, nr, shared_secret);
        Self::from_skeyseed(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// Keys for an IKE SA created by rekeying (CREATE_CHILD_SA, RFC 7296 2.18):
    /// SKEYSEED = prf_old(SK_d(old), g^ir(new) | Ni | Nr), then the new suite's prf+ with the
    /// new nonces and SPIs. `old_prf` is the PRF of the IKE SA being rekeyed.
    #[allow(clippy::too_many_arguments)]
    pub fn derive_rekey(
        old_prf: PrfAlg,
        old_sk_d: &[u8],
        suite: &IkeSuite,
        shared_secret: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<Self, CryptoError> {
        let skeyseed = rekey_skeyseed(old_prf, old_sk_d, shared_secret, ni, nr);
        Self::from_skeyseed(suite, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// Splits prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into the seven keys.
    pub fn from_skeyseed(
        suite: &IkeSuite,
        skeyseed: &SecretBytes,
        ni: &[u8],
        nr: &[u8],
        spi_i: &[u8; 8],
        spi_r: &[u8; 8],
    ) -> Result<Self, CryptoError> {
        suite.validate()?;
        let prf_len = suite.prf.key_len();
        let integ_len = suite.integ_key_len();
        let encr_len = suite.encr.key_material_len();
        let total = 3 * prf_len + 2 * integ_len + 2 * encr_len;
        let stream = prf_plus(
            suite.prf,
            skeyseed.as_bytes(),
            &[ni, nr, spi_i, spi_r],
            total,
        )?;
        let mut split = Splitter::new(stream.as_bytes());
        Ok(IkeSaKeys {
            sk_d: split.take(prf_len),
            sk_ai: split.take(integ_len),
            sk_ar: split.take(integ_len),
            sk_ei: split.take(encr_len),
            sk_er: split.take(encr_len),
            sk_pi: split.take(prf_len),
            sk_pr: split.take(prf_len),
        })
    }

    /// The SK payload ciphers of this SA as `(outbound, inbound)` for our role.
    pub fn sk_ciphers(
        &self,
        suite: &IkeSuite,
        we_are_initiator: bool,
    ) -> Result<(SkCipher, SkCipher), CryptoError> {
        let i_to_r = SkCipher::new(suite.encr, suite.integ, &self.sk_ei, &self.sk_ai)?;
        let r_to_i = SkCipher::new(suite.encr, suite.integ, &self.sk_er, &self.sk_ar)?;
        Ok(if we_are_initiator {
            (i_to_r, r_to_i)
        } else {
            (r_to_i, i_to_r)
        })
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 2.14; HMAC PRFs take the whole Ni | Nr as key).
pub fn skeyseed(prf_alg: PrfAlg, ni: &[u8], nr: &[u8], shared_secret: &[u8]) -> SecretBytes {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf(prf_alg, &key, &[shared_secret])
}

/// Rekey SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr) (RFC 7296 2.18).
pub fn rekey_skeyseed(
    old_prf: PrfAlg,
    old_sk_d: &[u8],
    shared_secret: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> SecretBytes {
    prf(old_prf, old_sk_d, &[shared_secret, ni, nr])
}

/// Child SA keys (RFC 7296 2.17), split from KEYMAT in the RFC's order: initiator→responder
/// encryption then integrity key, then responder→initiator encryption then integrity key.
#[derive(Debug, Clone)]
pub struct ChildSaKeys {
    /// Encryption key (with AEAD salt), initiator → responder.
    pub encr_i: SecretBytes,
    /// Integrity key, initiator → responder (empty for AEAD).
    pub integ_i: SecretBytes,
    /// Encryption key (with AEAD salt), responder → initiator.
    pub encr_r: SecretBytes,
    /// Integrity key, responder → initiator (empty for AEAD).
    pub integ_r: SecretBytes,
}

impl ChildSaKeys {
    /// KEYMAT = prf+(SK_d, [g^ir(new)] | Ni | Nr), split into keys of the given lengths.
    /// `shared_secret` is the CREATE_CHILD_SA KE result when PFS is used, else `None`; the
    /// nonces are those of the exchange that created the Child SA (IKE_SA_INIT's for the
    /// first one). Lengths are the ESP transform's: e.g. `EncrAlg::key_material_len()` (ESP
    /// AES-GCM also carries a 4-byte salt, RFC 4106 8.1) and `IntegAlg::key_len()` or 0.
    pub fn derive(
        prf_alg: PrfAlg,
        sk_d: &[u8],
        shared_secret: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        encr_key_len: usize,
        integ_key_len: usize,
    ) -> Result<Self, CryptoError> {
        let total = 2 * (encr_key_len + integ_key_len);
        let dh = shared_secret.unwrap_or_default();
        let stream = prf_plus(prf_alg, sk_d, &[dh, ni, nr], total)?;
        let mut split = Splitter::new(stream.as_bytes());
        Ok(ChildSaKeys {
            encr_i: split.take(encr_key_len),
            integ_i: split.take(integ_key_len),
            encr_r: split.take(encr_key_len),
            integ_r: split.take(integ_key_len),
        })
    }
}

/// Cuts consecutive keys from a prf+ stream that is known to be long enough.
struct Splitter<'a> {
    rest: &'a [u8],
}

impl<'a> Splitter<'a> {
    fn new(stream: &'a [u8]) -> Self {
        Splitter { rest: stream }
    }

    fn take(&mut self, n: usize) -> SecretBytes {
        let n = n.min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        SecretBytes::new(head.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_plus_is_a_prefix_stream_and_limits_length() {
        let long = prf_plus(PrfAlg::HmacSha256, b"k", &[b"seed"], 100).unwrap();
        let short = prf_plus(PrfAlg::HmacSha256, b"k", &[b"se", b"ed"], 33).unwrap();
        assert_eq!(&long.as_bytes()[..33], short.as_bytes());
        // T1 = prf(K, S | 0x01).
        let t1 = prf(PrfAlg::HmacSha256, b"k", &[b"seed", &[1]]);
        assert_eq!(&long.as_bytes()[..32], t1.as_bytes());
        // T2 = prf(K, T1 | S | 0x02).
        let t2 = prf(PrfAlg::HmacSha256, b"k", &[t1.as_bytes(), b"seed", &[2]]);
        assert_eq!(&long.as_bytes()[32..64], t2.as_bytes());
        assert!(prf_plus(PrfAlg::HmacSha1, b"k", &[], 255 * 20).is_ok());
        assert_eq!(
            prf_plus(PrfAlg::HmacSha1, b"k", &[], 255 * 20 + 1).unwrap_err(),
            CryptoError::PrfPlusTooLong(255 * 20 + 1)
        );
    }

    #[test]
    fn ike_keys_have_rfc_lengths_and_follow_the_split_order() {
        let suite = IkeSuite {
            encr: EncrAlg::AesCbc256,
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha384,
        };
        let keys = IkeSaKeys::derive(&suite, b"g^ir", b"Ni", b"Nr", &[1; 8], &[2; 8]).unwrap();
        let lens = [
            keys.sk_d.len(),
            keys.sk_ai.len(),
            keys.sk_ar.len(),
            keys.sk_ei.len(),
            keys.sk_er.len(),
            keys.sk_pi.len(),
            keys.sk_pr.len(),
        ];
        assert_eq!(lens, [48, 32, 32, 32, 32, 48, 48]);
        let seed = skeyseed(PrfAlg::HmacSha384, b"Ni", b"Nr", b"g^ir");
        let stream = prf_plus(
            PrfAlg::HmacSha384,
            seed.as_bytes(),
            &[b"Ni", b"Nr", &[1; 8], &[2; 8]],
            272,
        )
        .unwrap();
        let joined: Vec<u8> = [
            &keys.sk_d,
            &keys.sk_ai,
            &keys.sk_ar,
            &keys.sk_ei,
            &keys.sk_er,
            &keys.sk_pi,
            &keys.sk_pr,
        ]
        .iter()
        .flat_map(|k| k.as_bytes().to_vec())
        .collect();
        assert_eq!(joined, stream.as_bytes());
    }

    #[test]
    fn aead_suite_has_no_integ_keys_and_salted_encr_keys() {
        let suite = IkeSuite {
            encr: EncrAlg::AesGcm16_256,
            integ: None,
            prf: PrfAlg::HmacSha256,
        };
        let keys = IkeSaKeys::derive(&suite, b"z", b"n1", b"n2", &[0; 8], &[0; 8]).unwrap();
        assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
        assert_eq!(keys.sk_ei.len(), 36);
    }

    #[test]
    fn invalid_suites_are_rejected() {
        let aead_with_integ = IkeSuite {
            encr: EncrAlg::ChaCha20Poly1305,
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha256,
        };
        let cbc_without = IkeSuite {
            encr: EncrAlg::AesCbc128,
            integ: None,
            prf: PrfAlg::HmacSha1,
        };
        for s in [aead_with_integ, cbc_without] {
            assert!(matches!(
                IkeSaKeys::derive(&s, b"z", b"n", b"n", &[0; 8], &[0; 8]),
                Err(CryptoError::TransformCombination(_))
            ));
        }
    }

    #[test]
    fn child_keys_split_in_rfc_order() {
        let k = ChildSaKeys::derive(PrfAlg::HmacSha256, b"skd", None, b"ni", b"nr", 20, 0).unwrap();
        let stream = prf_plus(PrfAlg::HmacSha256, b"skd", &[b"ni", b"nr"], 40).unwrap();
        assert_eq!(k.encr_i.as_bytes(), &stream.as_bytes()[..20]);
        assert_eq!(k.encr_r.as_bytes(), &stream.as_bytes()[20..]);
        assert!(k.integ_i.is_empty());
        let pfs = ChildSaKeys::derive(
            PrfAlg::HmacSha256,
            b"skd",
            Some(b"dh"),
            b"ni",
            b"nr",
            16,
            32,
        )
        .unwrap();
        let stream = prf_plus(PrfAlg::HmacSha256, b"skd", &[b"dh", b"ni", b"nr"], 96).unwrap();
        let joined: Vec<u8> = [&pfs.encr_i, &pfs.integ_i, &pfs.encr_r, &pfs.integ_r]
            .iter()
            .flat_map(|k| k.as_bytes().to_vec())
            .collect();
        assert_eq!(joined, stream.as_bytes());
    }

    /// FIPS 180-2 appendix A/B one-block examples ("abc").
    #[test]
    fn hash_matches_fips180_examples() {
        assert_eq!(
            hex::encode(hash(HashAlg::Sha1, &[b"a", b"bc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(hash(HashAlg::Sha256, &[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash(HashAlg::Sha384, &[]).len(), 48);
        assert_eq!(hash(HashAlg::Sha512, &[]).len(), 64);
    }

    #[test]
    fn secret_equality_compares_contents() {
        assert_eq!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1, 2]));
        assert_ne!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1, 3]));
        assert_ne!(SecretBytes::new(vec![1, 2]), SecretBytes::new(vec![1]));
    }

    #[test]
    fn key_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<IkeSaKeys>();
        check::<ChildSaKeys>();
        check::<crate::SigningKey>();
        check::<crate::DhPrivateKey>();
        check::<crate::SharedSecret>();
    }

    #[test]
    fn secret_debug_does_not_leak() {
        let s = SecretBytes::new(vec![0xAB; 4]);
        assert_eq!(format!("{s:?}"), "SecretBytes(4 bytes)");
    }
}
