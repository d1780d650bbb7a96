//! Diffie-Hellman groups (transform type 4) with the RFC 6989 public-value checks.
//!
//! Wire formats (the Key Exchange payload data): MODP = g^x left-padded to the prime length
//! (RFC 7296 3.4); ECP groups 19/20 = x ‖ y without the SEC1 `04` prefix (RFC 5903 7);
//! Curve25519 = the 32-byte u-coordinate (RFC 8031). Shared secrets: MODP = g^xy left-padded
//! to the prime length; ECP = the x-coordinate (RFC 5903 9); X25519 = 32 bytes.

use aws_lc_rs::agreement;
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U384, U1024, U2048, Uint};
use zeroize::Zeroizing;

use crate::{CryptoError, Provider};

/// A DH group (IANA "Transform Type 4 - Key Exchange Method").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2: 1024-bit MODP (RFC 2409 6.2). Windows' default; weak, accept only for interop.
    Modp1024,
    /// 14: 2048-bit MODP (RFC 3526 3).
    Modp2048,
    /// 19: 256-bit random ECP (NIST P-256, RFC 5903).
    EcpP256,
    /// 20: 384-bit random ECP (NIST P-384, RFC 5903).
    EcpP384,
    /// 31: Curve25519 (RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// Every supported group, preferred first (ECP/X25519 are ~20-100x cheaper than MODP).
    pub const ALL: [DhGroup; 5] = [
        Self::Curve25519,
        Self::EcpP256,
        Self::EcpP384,
        Self::Modp2048,
        Self::Modp1024,
    ];
    /// Maps an IANA group number.
    /// True for the MODP groups: a computation costs 20-100x an elliptic-curve one.
    pub fn is_modp(self) -> bool {
        matches!(self, Self::Modp1024 | Self::Modp2048)
    }

    pub fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::Modp1024),
            14 => Some(Self::Modp2048),
            19 => Some(Self::EcpP256),
            20 => Some(Self::EcpP384),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// IANA group number.
    pub fn iana(self) -> u16 {
        match self {
            Self::Modp1024 => 2,
            Self::Modp2048 => 14,
            Self::EcpP256 => 19,
            Self::EcpP384 => 20,
            Self::Curve25519 => 31,
        }
    }

    /// Length of the public value in the Key Exchange payload.
    pub fn public_len(self) -> usize {
        match self {
            Self::Modp1024 => 128,
            Self::Modp2048 => 256,
            Self::EcpP256 => 64,
            Self::EcpP384 => 96,
            Self::Curve25519 => 32,
        }
    }

    /// Length of the shared secret g^ir.
    pub fn shared_secret_len(self) -> usize {
        match self {
            Self::Modp1024 => 128,
            Self::Modp2048 => 256,
            Self::EcpP256 => 32,
            Self::EcpP384 => 48,
            Self::Curve25519 => 32,
        }
    }

    fn ecdh_algorithm(self) -> Option<&'static agreement::Algorithm> {
        match self {
            Self::EcpP256 => Some(&agreement::ECDH_P256),
            Self::EcpP384 => Some(&agreement::ECDH_P384),
            Self::Curve25519 => Some(&agreement::X25519),
            Self::Modp1024 | Self::Modp2048 => None,
        }
    }
}

/// RFC 2409 6.2, the Second Oakley Group, generator 2.
const MODP_1024_PRIME: Odd<U1024> = Odd::<U1024>::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
));

/// RFC 3526 3, 2048-bit MODP Group, generator 2.
const MODP_2048_PRIME: Odd<U2048> = Odd::<U2048>::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// An ephemeral DH private key with its public value; the secret part is zeroized on drop.
///
/// MODP exponents are short (RFC 3526 section 8 strength table): group 2 uses 256-bit
/// exponents (the group itself gives only ~80 bits of strength, so 160 would suffice; 256
/// costs little and leaves margin), group 14 uses 320-bit exponents (the upper end of the
/// 220-320-bit range RFC 3526 lists for 2048-bit MODP, i.e. 2 × its ~160-bit strength
/// estimate). Full-length exponents would make group 14 about 5× slower for no gain.
pub struct DhPrivateKey {
    group: DhGroup,
    public: Vec<u8>,
    secret: Secret,
}

enum Secret {
    /// Exponent (zero-extended to 384 bits) and its public bit length.
    Modp {
        exponent: Zeroizing<U384>,
        bits: u32,
    },
    Ecdh(agreement::PrivateKey),
}

impl std::fmt::Debug for DhPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivateKey")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhPrivateKey {
    /// Generates a key pair from the provider's randomness (also via [`Provider::generate_dh`]).
    pub fn generate(group: DhGroup, provider: &Provider) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; generated_private_len(group)]);
        // A random P-256/P-384 scalar is >= n with probability ~2^-32 or 2^-190, a MODP
        // exponent < 2 with ~2^-255: retry then.
        for _ in 0..64 {
            provider.fill_random(&mut bytes)?;
            match Self::from_private_bytes(group, &bytes) {
                Err(CryptoError::KeyRejected(_)) => continue,
                other => return other,
            }
        }
        Err(CryptoError::Rng)
    }

    /// Builds a key from fixed private bytes (test vectors, deterministic tests).
    /// MODP groups: a big-endian exponent of 20 to 48 bytes, value >= 2 (generated keys use
    /// 32 bytes for group 2 and 40 for group 14). Group 19: 32 bytes, 20: 48 bytes (big-endian
    /// scalars in [1, n-1]). Group 31: 32 bytes (RFC 7748 scalar).
    pub fn from_private_bytes(group: DhGroup, bytes: &[u8]) -> Result<Self, CryptoError> {
        match group {
            DhGroup::Modp1024 | DhGroup::Modp2048 => {
                if !(MODP_MIN_EXPONENT_BYTES..=U384::BYTES).contains(&bytes.len()) {
                    return Err(CryptoError::KeyLength {
                        what: "DH private",
                        expected: generated_private_len(group),
                        got: bytes.len(),
                    });
                }
                let mut padded = Zeroizing::new([0u8; U384::BYTES]);
                padded[U384::BYTES - bytes.len()..].copy_from_slice(bytes);
                let exponent = Zeroizing::new(U384::from_be_slice(&padded[..]));
                if *exponent <= U384::ONE {
                    return Err(CryptoError::KeyRejected("DH private"));
                }
                let bits = u32::try_from(bytes.len() * 8).map_err(|_| CryptoError::Rng)?;
                let public = match group {
                    DhGroup::Modp1024 => {
                        modp_pow(&MODP_1024_PRIME, &U1024::from(2u8), &exponent, bits)
                            .to_be_bytes()
                            .as_ref()
                            .to_vec()
                    }
                    _ => modp_pow(&MODP_2048_PRIME, &U2048::from(2u8), &exponent, bits)
                        .to_be_bytes()
                        .as_ref()
                        .to_vec(),
                };
                Ok(DhPrivateKey {
                    group,
                    public,
                    secret: Secret::Modp { exponent, bits },
                })
            }
            DhGroup::EcpP256 | DhGroup::EcpP384 | DhGroup::Curve25519 => {
                let expected = generated_private_len(group);
                if bytes.len() != expected {
                    return Err(CryptoError::KeyLength {
                        what: "DH private",
                        expected,
                        got: bytes.len(),
                    });
                }
                let alg = group.ecdh_algorithm().ok_or(CryptoError::DhGroupMismatch)?;
                let key = agreement::PrivateKey::from_private_key(alg, bytes)
                    .map_err(|_| CryptoError::KeyRejected("DH private"))?;
                let public = key
                    .compute_public_key()
                    .map_err(|_| CryptoError::KeyRejected("DH"))?;
                let public = match group {
                    // Drop the SEC1 uncompressed-point prefix 0x04 (RFC 5903 7).
                    DhGroup::EcpP256 | DhGroup::EcpP384 => {
                        public.as_ref().get(1..).unwrap_or_default().to_vec()
                    }
                    _ => public.as_ref().to_vec(),
                };
                Ok(DhPrivateKey {
                    group,
                    public,
                    secret: Secret::Ecdh(key),
                })
            }
        }
    }

    /// The group of this key.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value in Key Exchange payload format.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// Computes the shared secret g^ir with the peer's Key Exchange data, after the RFC 6989
    /// checks (exact length; MODP: 1 < y < p-1; ECP: point on the curve; X25519: result not
    /// all-zero).
    pub fn agree(&self, peer_public: &[u8]) -> Result<SharedSecret, CryptoError> {
        let expected = self.group.public_len();
        if peer_public.len() != expected {
            return Err(CryptoError::DhPublicLength {
                expected,
                got: peer_public.len(),
            });
        }
        match &self.secret {
            Secret::Modp { exponent, bits } => match self.group {
                DhGroup::Modp1024 => modp_agree(&MODP_1024_PRIME, peer_public, exponent, *bits),
                _ => modp_agree(&MODP_2048_PRIME, peer_public, exponent, *bits),
            },
            Secret::Ecdh(key) => {
                let alg = self
                    .group
                    .ecdh_algorithm()
                    .ok_or(CryptoError::DhGroupMismatch)?;
                let encoded: Vec<u8> = if self.group == DhGroup::Curve25519 {
                    peer_public.to_vec()
                } else {
                    let mut v = Vec::with_capacity(peer_public.len() + 1);
                    v.push(0x04);
                    v.extend_from_slice(peer_public);
                    v
                };
                let peer = agreement::UnparsedPublicKey::new(alg, &encoded);
                let secret = agreement::agree(key, peer, (), |z| {
                    Ok(SharedSecret(Zeroizing::new(z.to_vec())))
                });
                match secret {
                    Ok(secret) if secret.0.iter().all(|&b| b == 0) => {
                        Err(CryptoError::DhSharedSecretInvalid)
                    }
                    Ok(secret) => Ok(secret),
                    // For X25519 every 32-byte string parses; aws-lc fails only on the all-zero
                    // result of a low-order point. For ECP a failure means "not on the curve".
                    Err(()) if self.group == DhGroup::Curve25519 => {
                        Err(CryptoError::DhSharedSecretInvalid)
                    }
                    Err(()) => Err(CryptoError::DhPublicInvalid),
                }
            }
        }
    }
}

/// The DH shared secret g^ir, zeroized on drop.
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// The secret bytes (feed them to the key schedule, never log them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSecret({} bytes)", self.0.len())
    }
}

/// Shortest accepted MODP exponent (160 bits, the floor of RFC 3526's strength table).
const MODP_MIN_EXPONENT_BYTES: usize = 20;

/// Private key length drawn from the RNG (MODP: the short-exponent sizes explained on
/// [`DhPrivateKey`]).
fn generated_private_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp1024 => 32,
        DhGroup::Modp2048 => 40,
        DhGroup::EcpP256 | DhGroup::Curve25519 => 32,
        DhGroup::EcpP384 => 48,
    }
}

/// base^exponent mod prime; constant time in the exponent's value (its bit length `bits` is
/// public).
fn modp_pow<const L: usize>(
    prime: &Odd<Uint<L>>,
    base: &Uint<L>,
    exponent: &U384,
    bits: u32,
) -> Uint<L> {
    let params = FixedMontyParams::new_vartime(*prime);
    FixedMontyForm::new(base, &params)
        .pow_bounded_exp(exponent, bits)
        .retrieve()
}

fn modp_agree<const L: usize>(
    prime: &Odd<Uint<L>>,
    peer_public: &[u8],
    exponent: &U384,
    bits: u32,
) -> Result<SharedSecret, CryptoError> {
    // The caller checked that the length equals the prime length.
    let y = Uint::<L>::from_be_slice(peer_public);
    let p_minus_1 = prime.as_ref().wrapping_sub(&Uint::ONE);
    if y <= Uint::ONE || y >= p_minus_1 {
        return Err(CryptoError::DhPublicInvalid);
    }
    let z = Zeroizing::new(modp_pow(prime, &y, exponent, bits));
    let bytes = Zeroizing::new(z.to_be_bytes());
    Ok(SharedSecret(Zeroizing::new(bytes.as_ref().to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [DhGroup; 5] = [
        DhGroup::Modp1024,
        DhGroup::Modp2048,
        DhGroup::EcpP256,
        DhGroup::EcpP384,
        DhGroup::Curve25519,
    ];

    #[test]
    fn iana_round_trip() {
        for g in ALL {
            assert_eq!(DhGroup::from_iana(g.iana()), Some(g));
        }
        assert_eq!(DhGroup::from_iana(5), None);
    }

    /// The primes are safe primes with g = 2 generating the order-q subgroup, so
    /// 2^((p-1)/2) = 1 mod p; a single wrong digit would break this.
    #[test]
    fn modp_primes_pass_euler_criterion_for_generator_2() {
        fn pow_half_order<const L: usize>(prime: &Odd<Uint<L>>) -> Uint<L> {
            let q = prime.as_ref().shr_vartime(1);
            let params = FixedMontyParams::new_vartime(*prime);
            FixedMontyForm::new(&Uint::from(2u8), &params)
                .pow(&q)
                .retrieve()
        }
        assert_eq!(pow_half_order(&MODP_1024_PRIME), U1024::ONE);
        assert_eq!(pow_half_order(&MODP_2048_PRIME), U2048::ONE);
        assert_eq!(MODP_1024_PRIME.as_ref().bit_width(), 1024);
        assert_eq!(MODP_2048_PRIME.as_ref().bit_width(), 2048);
    }

    #[test]
    fn every_group_agrees_between_two_generated_keys() {
        let pa = Provider::deterministic(b"alice");
        let pb = Provider::deterministic(b"bob");
        for g in ALL {
            let a = pa.generate_dh(g).unwrap();
            let b = pb.generate_dh(g).unwrap();
            assert_eq!(a.public_value().len(), g.public_len(), "{g:?}");
            let za = a.agree(b.public_value()).unwrap();
            let zb = b.agree(a.public_value()).unwrap();
            assert_eq!(za.as_bytes(), zb.as_bytes(), "{g:?}");
            assert_eq!(za.as_bytes().len(), g.shared_secret_len(), "{g:?}");
        }
    }

    #[test]
    fn deterministic_provider_gives_the_same_dh_key() {
        for g in ALL {
            let a = Provider::deterministic(b"x").generate_dh(g).unwrap();
            let b = Provider::deterministic(b"x").generate_dh(g).unwrap();
            assert_eq!(a.public_value(), b.public_value());
        }
    }

    #[test]
    fn modp_rejects_rfc6989_bad_values_and_wrong_lengths() {
        let p = Provider::deterministic(b"m");
        for (g, prime_bytes) in [
            (
                DhGroup::Modp1024,
                MODP_1024_PRIME.as_ref().to_be_bytes().as_ref().to_vec(),
            ),
            (
                DhGroup::Modp2048,
                MODP_2048_PRIME.as_ref().to_be_bytes().as_ref().to_vec(),
            ),
        ] {
            let key = p.generate_dh(g).unwrap();
            let len = g.public_len();
            let mut one = vec![0u8; len];
            one[len - 1] = 1;
            let mut p_minus_1 = prime_bytes.clone();
            p_minus_1[len - 1] -= 1;
            let too_big = vec![0xffu8; len];
            for bad in [vec![0u8; len], one, p_minus_1, prime_bytes.clone(), too_big] {
                assert_eq!(
                    key.agree(&bad).unwrap_err(),
                    CryptoError::DhPublicInvalid,
                    "{g:?}"
                );
            }
            let mut two = vec![0u8; len];
            two[len - 1] = 2;
            assert!(key.agree(&two).is_ok());
            assert_eq!(
                key.agree(&two[1..]).unwrap_err(),
                CryptoError::DhPublicLength {
                    expected: len,
                    got: len - 1
                }
            );
        }
    }

    #[test]
    fn ecp_rejects_off_curve_points() {
        let p = Provider::deterministic(b"e");
        for g in [DhGroup::EcpP256, DhGroup::EcpP384] {
            let a = p.generate_dh(g).unwrap();
            let b = p.generate_dh(g).unwrap();
            let mut bad = b.public_value().to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(a.agree(&bad).unwrap_err(), CryptoError::DhPublicInvalid);
            assert_eq!(
                a.agree(&vec![0u8; g.public_len()]).unwrap_err(),
                CryptoError::DhPublicInvalid
            );
            // A 0x04-prefixed point is the wrong wire format.
            let mut prefixed = vec![4u8];
            prefixed.extend_from_slice(b.public_value());
            assert!(matches!(
                a.agree(&prefixed),
                Err(CryptoError::DhPublicLength { .. })
            ));
        }
    }

    #[test]
    fn x25519_rejects_low_order_points() {
        let a = Provider::deterministic(b"x")
            .generate_dh(DhGroup::Curve25519)
            .unwrap();
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [zero, one] {
            assert_eq!(
                a.agree(&bad).unwrap_err(),
                CryptoError::DhSharedSecretInvalid
            );
        }
    }

    #[test]
    fn private_key_length_is_checked() {
        assert!(matches!(
            DhPrivateKey::from_private_bytes(DhGroup::EcpP256, &[1; 31]),
            Err(CryptoError::KeyLength { .. })
        ));
        assert!(matches!(
            DhPrivateKey::from_private_bytes(DhGroup::EcpP256, &[0; 32]),
            Err(CryptoError::KeyRejected(_))
        ));
    }
}
