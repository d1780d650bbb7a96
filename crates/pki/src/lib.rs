//! X.509 for aovpn: load, validate and issue certificates.
//!
//! Used by the gateway and the agent for IKEv2 certificate authentication, and by
//! `aovpn pki` to run a small CA.
//!
//! * **Loading** — [`load_certificates`] reads PEM (bundles too), DER and the Azure
//!   "public certificate data" form (one line of base64, no armour); [`PrivateKey::load`]
//!   reads PEM/DER PKCS#8, PKCS#1 RSA and SEC1 EC keys; [`Identity::from_pkcs12`] reads
//!   .pfx/.p12 (modern AES and legacy 3DES/RC2). Private keys always come out as PKCS#8 DER
//!   ([`PrivateKey::pkcs8_der`]) in a buffer wiped on drop, with their [`KeyType`].
//! * **Validation** — [`TrustStore`] holds up to [`MAX_TRUSTED_ROOTS`] roots and a revoked
//!   [`Thumbprint`] list; [`TrustStore::verify`] checks a peer's chain for a [`Role`] at a
//!   given time (EKU per role, keyUsage, revocation, gateway name) and fails with a distinct
//!   [`PkiError`] variant per reason.
//! * **IKE identities** — [`Certificate`] exposes the subject DN DER (ID_DER_ASN1_DN), SAN
//!   dNSNames, rfc822Names, UPNs and IPs; [`cert_matches_id`] matches an IKE ID against them;
//!   [`TrustStore::ca_key_hashes`] / [`TrustStore::root_by_key_hash`] serve CERTREQ.
//! * **Issuing** — [`CertificateAuthority`] creates roots and intermediates and issues
//!   [`CertKind::Gateway`], [`CertKind::Machine`] and [`CertKind::User`] certificates.
//!
//! Nothing here touches files, sockets or clocks: callers pass bytes and the time in.
//! Issuing draws keys and serials from the system RNG.
//!
//! May depend on: nothing of ours (a leaf).
//! Start reading: `trust.rs` (validation), `load.rs`, `issue.rs`.

mod cert;
mod dn;
mod error;
mod ident;
mod issue;
mod key;
mod load;
mod p12;
mod thumbprint;
mod trust;

pub use cert::{Certificate, Eku, OID_EKU_IKE_INTERMEDIATE, OID_SAN_MS_UPN};
pub use dn::{canonical_dn, dn_equal};
pub use error::PkiError;
pub use ident::{cert_matches_id, distinguished_name_text, id_type};
pub use issue::{CertKind, CertificateAuthority, Validity};
pub use key::{KeyAlgorithm, KeyType, PrivateKey};
pub use load::{certificates_to_pem, load_certificate, load_certificates};
pub use p12::{Identity, Pkcs12Encryption};
pub use rustls_pki_types::CertificateDer;
pub use thumbprint::Thumbprint;
pub use trust::{
    ChainRecord, MAX_TRUSTED_ROOTS, MIN_RSA_BITS, Role, TrustStore, VerifiedChain,
    cert_matches_server_name,
};
/// Re-exported: [`PrivateKey::to_pem`] returns it, and callers hold passwords in it.
pub use zeroize::Zeroizing;
