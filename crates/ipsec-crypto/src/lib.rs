//! IKEv2/IPsec cryptography for aovpn. Sans-IO: no sockets, files or clocks, and no randomness
//! except through a [`Provider`].
//!
//! How the IKEv2 engine uses it:
//!
//! 1. **Randomness**: one [`Provider`] per party — [`Provider::system`] in production,
//!    [`Provider::deterministic`]`(seed)` in tests. Nonces, SPIs: [`Provider::random_vec`],
//!    [`Provider::random_array`]. IVs are drawn by [`SkCipher::seal`].
//! 2. **Negotiation**: map wire transform IDs with [`EncrAlg::from_iana`] (plus the Key Length
//!    attribute), [`PrfAlg::from_iana`], [`IntegAlg::from_iana`], [`DhGroup::from_iana`];
//!    `iana()` maps back.
//! 3. **IKE_SA_INIT**: `let dh = provider.generate_dh(group)?;` send `dh.public_value()`;
//!    `let z = dh.agree(&peer_ke_data)?;` (RFC 6989 checks included), then
//!    [`IkeSaKeys::derive`]`(&suite, z.as_bytes(), ni, nr, &spi_i, &spi_r)` and
//!    [`IkeSaKeys::sk_ciphers`] for the `(outbound, inbound)` [`SkCipher`]s.
//! 4. **SK payloads**: compute [`SkCipher::body_len`] for the inner payloads, write the IKE
//!    header and SK generic header with final lengths, then
//!    `body = out.seal(aad, inner, &provider)?` where `aad` = IKE header ‖ unencrypted
//!    payloads ‖ SK generic header. Receive: `inner = inb.open(aad, body)?`.
//! 5. **IKE_AUTH**: [`auth_signed_octets`] builds what to sign; [`SigningKey::sign`] /
//!    [`verify`] with a [`SignatureScheme`] (methods 1/9/10 via
//!    [`SignatureScheme::for_auth_method`], method 14 via [`split_rfc7427_auth_data`] /
//!    [`build_rfc7427_auth_data`]); PSK/EAP via [`shared_key_auth`].
//!    Keys load with [`SigningKey::from_pkcs8_der`] or [`SigningKey::from_der`] (also PKCS#1 /
//!    SEC1).
//! 6. **Child SAs and rekeying**: [`ChildSaKeys::derive`] (KEYMAT split in RFC order),
//!    [`IkeSaKeys::derive_rekey`] for a rekeyed IKE SA.
//! 7. **Hashes**: [`hash`] (e.g. SHA-1 for NAT_DETECTION_*_IP and CERTREQ authorities).
//!
//! IKE fragments (RFC 7383 SKF) use the same [`SkCipher`] with the SKF header in the AAD.
//! AEAD IVs are 8 random bytes per message (unique per key with overwhelming probability at
//! IKE message rates). ECDSA and RSA-PSS signatures draw their randomness inside aws-lc, so
//! they differ between runs even with a deterministic provider; verify them, don't compare.
//!
//! Tested against: OpenSSL/NIST ACVP IKEv2 KDF cases, RFC 4868/4231/2202 HMAC, RFC 5903 and
//! RFC 7748 DH, strongSwan's MODP-1024/2048 vectors, RFC 3602 / GCM spec / RFC 8439 cipher
//! vectors wrapped as SK bodies, NIST CAVP HMAC_DRBG, and OpenSSL-made keys and signatures.
//!
//! ```
//! use ipsec_crypto::{DhGroup, EncrAlg, IkeSaKeys, IkeSuite, IntegAlg, PrfAlg, Provider};
//!
//! # fn main() -> Result<(), ipsec_crypto::CryptoError> {
//! let (pi, pr) = (Provider::deterministic(b"i"), Provider::deterministic(b"r"));
//! let suite = IkeSuite {
//!     encr: EncrAlg::from_iana(12, Some(256)).unwrap(),
//!     integ: IntegAlg::from_iana(12),
//!     prf: PrfAlg::from_iana(5).unwrap(),
//! };
//! let (spi_i, spi_r) = (pi.random_array::<8>()?, pr.random_array::<8>()?);
//! let (ni, nr) = (pi.random_vec(32)?, pr.random_vec(32)?);
//! let (ke_i, ke_r) = (pi.generate_dh(DhGroup::EcpP256)?, pr.generate_dh(DhGroup::EcpP256)?);
//!
//! // Each side with its own DH result:
//! let z_i = ke_i.agree(ke_r.public_value())?;
//! let keys_i = IkeSaKeys::derive(&suite, z_i.as_bytes(), &ni, &nr, &spi_i, &spi_r)?;
//! let z_r = ke_r.agree(ke_i.public_value())?;
//! let keys_r = IkeSaKeys::derive(&suite, z_r.as_bytes(), &ni, &nr, &spi_i, &spi_r)?;
//!
//! let (out_i, _) = keys_i.sk_ciphers(&suite, true)?;
//! let (_, in_r) = keys_r.sk_ciphers(&suite, false)?;
//! let aad = b"IKE header | SK generic header";
//! let body = out_i.seal(aad, b"IDi | AUTH | SA | TSi | TSr", &pi)?;
//! assert_eq!(body.len(), out_i.body_len(27));
//! assert_eq!(in_r.open(aad, &body)?, b"IDi | AUTH | SA | TSi | TSr");
//! # Ok(())
//! # }
//! ```
//!
//! All key material is held in zeroizing types ([`SecretBytes`], [`SharedSecret`],
//! [`DhPrivateKey`]) whose `Debug` output never shows the bytes.
//!
//! May depend on: nothing of ours (a leaf; aws-lc-rs and RustCrypto underneath).
//! Start reading: the example above, then `provider.rs`.

mod auth;
mod dh;
mod error;
mod keys;
mod provider;
mod sign;
mod sk;
mod transforms;

pub use auth::{auth_signed_octets, shared_key_auth};
pub use dh::{DhGroup, DhPrivateKey, SharedSecret};
pub use error::CryptoError;
pub use keys::{
    ChildSaKeys, IkeSaKeys, IkeSuite, SecretBytes, hash, prf, prf_plus, rekey_skeyseed, skeyseed,
};
pub use provider::Provider;
pub use sign::{
    KeyType, SignatureScheme, Signer, SigningKey, auth_method, build_rfc7427_auth_data,
    split_rfc7427_auth_data, verify,
};
pub use sk::SkCipher;
pub use transforms::{EncrAlg, HashAlg, IntegAlg, PrfAlg};
