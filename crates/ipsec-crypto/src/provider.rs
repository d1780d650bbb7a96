//! The crypto provider: the only source of randomness for the protocol engine.

use std::sync::{Mutex, PoisonError};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::dh::{DhGroup, DhPrivateKey};

/// Source of randomness (nonces, SPIs, IVs, DH private keys) for everything in this crate.
///
/// [`Provider::system`] draws from the OS RNG (via aws-lc). [`Provider::deterministic`] is an
/// HMAC-DRBG (NIST SP 800-90A, HMAC-SHA-256) seeded by the caller, so a fixed seed yields fixed
/// nonces, SPIs, IVs and DH private keys: use it in tests, one provider per simulated party.
/// Signatures made by aws-lc (ECDSA, RSA-PSS) and RSA blinding still use the OS RNG internally;
/// they are verified, never compared byte-for-byte.
///
/// `Provider` is `Send + Sync`; share it by reference or in an `Arc`.
#[derive(Debug)]
pub struct Provider {
    source: Source,
}

enum Source {
    System(SystemRandom),
    Deterministic(Mutex<HmacDrbg>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::System(_) => f.write_str("System"),
            Source::Deterministic(_) => f.write_str("Deterministic"),
        }
    }
}

impl Provider {
    /// The production provider: OS randomness.
    pub fn system() -> Self {
        Provider {
            source: Source::System(SystemRandom::new()),
        }
    }

    /// A deterministic provider for tests: the same seed always produces the same byte stream.
    pub fn deterministic(seed: &[u8]) -> Self {
        Provider {
            source: Source::Deterministic(Mutex::new(HmacDrbg::new(seed))),
        }
    }

    /// True for a provider made by [`Provider::deterministic`].
    pub fn is_deterministic(&self) -> bool {
        matches!(self.source, Source::Deterministic(_))
    }

    /// Fills `out` with random bytes.
    pub fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        match &self.source {
            Source::System(rng) => rng.fill(out).map_err(|_| CryptoError::Rng),
            Source::Deterministic(drbg) => {
                drbg.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .generate(out);
                Ok(())
            }
        }
    }

    /// `N` random bytes, e.g. an 8-byte IKE SPI or a 4-byte ESP SPI.
    pub fn random_array<const N: usize>(&self) -> Result<[u8; N], CryptoError> {
        let mut out = [0u8; N];
        self.fill_random(&mut out)?;
        Ok(out)
    }

    /// `len` random bytes, e.g. an IKE nonce (RFC 7296 2.10: at least half the PRF key size and
    /// at least 16 bytes; 32 is a good choice).
    pub fn random_vec(&self, len: usize) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; len];
        self.fill_random(&mut out)?;
        Ok(out)
    }

    /// Generates an ephemeral DH private key for `group` from this provider's randomness.
    pub fn generate_dh(&self, group: DhGroup) -> Result<DhPrivateKey, CryptoError> {
        DhPrivateKey::generate(group, self)
    }
}

/// HMAC_DRBG from NIST SP 800-90A section 10.1.2 with HMAC-SHA-256, without reseeding
/// (a test RNG: the seed is the only entropy input).
struct HmacDrbg {
    key: Zeroizing<[u8; 32]>,
    value: Zeroizing<[u8; 32]>,
}

impl HmacDrbg {
    fn new(seed: &[u8]) -> Self {
        let mut drbg = HmacDrbg {
            key: Zeroizing::new([0; 32]),
            value: Zeroizing::new([1; 32]),
        };
        drbg.update(seed);
        drbg
    }

    fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn update(&mut self, provided: &[u8]) {
        for (round, separator) in [0u8, 1u8].into_iter().enumerate() {
            if round == 1 && provided.is_empty() {
                break;
            }
            let mut k = Self::hmac(&self.key, &[&self.value[..], &[separator], provided]);
            self.key.copy_from_slice(&k);
            k.zeroize();
            let mut v = Self::hmac(&self.key, &[&self.value[..]]);
            self.value.copy_from_slice(&v);
            v.zeroize();
        }
    }

    fn generate(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let mut v = Self::hmac(&self.key, &[&self.value[..]]);
            self.value.copy_from_slice(&v);
            v.zeroize();
            chunk.copy_from_slice(&self.value[..chunk.len()]);
        }
        self.update(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_provider_repeats_for_same_seed_and_differs_otherwise() {
        let a = Provider::deterministic(b"seed-a");
        let a2 = Provider::deterministic(b"seed-a");
        let b = Provider::deterministic(b"seed-b");
        let x: [u8; 40] = a.random_array().unwrap();
        assert_eq!(x, a2.random_array::<40>().unwrap());
        assert_ne!(x, b.random_array::<40>().unwrap());
        // The stream moves on.
        assert_ne!(x, a.random_array::<40>().unwrap());
        assert!(a.is_deterministic());
        assert!(!Provider::system().is_deterministic());
    }

    #[test]
    fn system_provider_gives_distinct_outputs() {
        let p = Provider::system();
        assert_ne!(p.random_vec(32).unwrap(), p.random_vec(32).unwrap());
    }

    #[test]
    fn provider_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Provider>();
    }

    /// NIST CAVP HMAC_DRBG test vector, `HMAC_DRBG.rsp` (drbgvectors_no_reseed.zip),
    /// [SHA-256] [PredictionResistance = False] [EntropyInputLen = 256] [NonceLen = 128]
    /// [PersonalizationStringLen = 0] [AdditionalInputLen = 0] [ReturnedBitsLen = 1024],
    /// COUNT = 0. Instantiation seed material is EntropyInput || Nonce; two generate calls,
    /// the second's output is the expected ReturnedBits.
    #[test]
    fn hmac_drbg_matches_nist_cavp_vector() {
        let entropy =
            hex::decode("ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488")
                .unwrap();
        let nonce = hex::decode("659ba96c601dc69fc902940805ec0ca8").unwrap();
        let expected = hex::decode(concat!(
            "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89",
            "d54fbb978a15b5c443c9ec21036d2460b6f73ebad0dc2aba6e624abf07745bc1",
            "07694bb7547bb0995f70de25d6b29e2d3011bb19d27676c07162c8b5ccde0668",
            "961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb8"
        ))
        .unwrap();
        let mut seed = entropy;
        seed.extend_from_slice(&nonce);
        let mut drbg = HmacDrbg::new(&seed);
        let mut out = [0u8; 128];
        drbg.generate(&mut out);
        drbg.generate(&mut out);
        assert_eq!(out.to_vec(), expected);
    }
}
