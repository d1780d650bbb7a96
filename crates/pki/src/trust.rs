//! Trusted roots, revocation by thumbprint, and chain validation per IKE role.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use crate::{Certificate, PkiError, Thumbprint};

/// The shortest RSA key accepted in an end-entity certificate.
pub const MIN_RSA_BITS: u32 = 2048;

/// At most this many trusted roots, like an Azure P2S gateway.
pub const MAX_TRUSTED_ROOTS: usize = 20;

/// What the validated certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// A VPN client (machine or user certificate): EKU clientAuth required.
    Client,
    /// The VPN gateway, as seen by a client that dialled `server_name` (a DNS name or an IP
    /// literal): EKU serverAuth or IKE-intermediate required, and the name must be in a
    /// dNSName (or, for IP literals, an iPAddress or dNSName) subjectAltName.
    Gateway {
        /// The name or address from the profile's server list.
        server_name: &'a str,
    },
}

/// The outcome of a successful validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Index into [`TrustStore::roots`] of the root the chain ends at.
    pub root_index: usize,
    /// The intermediates used, end-entity side first.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// What a long-lived session keeps to be re-checked later.
    pub record: ChainRecord,
}

/// What a validation leaves behind so that a session can be re-checked later (a new
/// revocation list, a root removed, expiry) without keeping the certificates: about 20 bytes
/// per certificate on the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRecord {
    /// SHA-1 thumbprints along the path: end entity first, the trusted root last.
    pub thumbprints: Vec<Thumbprint>,
    /// The earliest notAfter on the path: the session's credentials end then.
    pub not_after: SystemTime,
}

/// Trusted root CAs (at most [`MAX_TRUSTED_ROOTS`]) plus revoked thumbprints.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    roots: Vec<Certificate>,
    /// The roots' thumbprints, in root order (re-checks compare against them).
    root_thumbprints: Vec<Thumbprint>,
    anchors: Vec<TrustAnchor<'static>>,
    revoked: BTreeSet<Thumbprint>,
}

impl TrustStore {
    /// An empty store: nothing validates until a root is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with these roots; more than [`MAX_TRUSTED_ROOTS`] is refused.
    pub fn with_roots(roots: impl IntoIterator<Item = Certificate>) -> Result<Self, PkiError> {
        let roots: Vec<Certificate> = roots.into_iter().collect();
        if roots.len() > MAX_TRUSTED_ROOTS {
            return Err(PkiError::TooManyRoots {
                count: roots.len(),
                max: MAX_TRUSTED_ROOTS,
            });
        }
        let mut store = Self::new();
        for r in roots {
            store.add_root(r)?;
        }
        Ok(store)
    }

    /// Adds a trusted root CA (a duplicate is ignored). Refuses non-CA certificates and a 21st
    /// root.
    pub fn add_root(&mut self, root: Certificate) -> Result<(), PkiError> {
        if self.roots.iter().any(|r| r.der() == root.der()) {
            return Ok(());
        }
        if self.roots.len() >= MAX_TRUSTED_ROOTS {
            return Err(PkiError::TooManyRoots {
                count: self.roots.len() + 1,
                max: MAX_TRUSTED_ROOTS,
            });
        }
        if !root.is_ca() {
            return Err(PkiError::NotCa(root.subject().to_owned()));
        }
        let anchor = webpki::anchor_from_trusted_cert(root.der())?.to_owned();
        self.anchors.push(anchor);
        self.root_thumbprints.push(root.thumbprint());
        self.roots.push(root);
        Ok(())
    }

    /// This store with only the roots whose thumbprint is in `thumbprints` (the revoked list
    /// kept); `None` when none of them is a root here.
    pub fn only_roots(&self, thumbprints: &[Thumbprint]) -> Option<Self> {
        let mut store = self.clone();
        let keep: Vec<bool> = self
            .root_thumbprints
            .iter()
            .map(|t| thumbprints.contains(t))
            .collect();
        let mut i = 0;
        store.roots.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        store.anchors.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        store.root_thumbprints.retain(|t| thumbprints.contains(t));
        (!store.roots.is_empty()).then_some(store)
    }

    /// The trusted roots, in insertion order.
    pub fn roots(&self) -> &[Certificate] {
        &self.roots
    }

    /// Marks a certificate thumbprint as revoked.
    pub fn revoke(&mut self, thumbprint: Thumbprint) {
        self.revoked.insert(thumbprint);
    }

    /// Replaces the revoked list.
    pub fn set_revoked(&mut self, thumbprints: impl IntoIterator<Item = Thumbprint>) {
        self.revoked = thumbprints.into_iter().collect();
    }

    /// True if this thumbprint is revoked.
    pub fn is_revoked(&self, thumbprint: &Thumbprint) -> bool {
        self.revoked.contains(thumbprint)
    }

    /// Whether a path validated earlier is still good at `at` under this store: nothing on it
    /// revoked, its root still trusted, nothing on it expired. Signatures, names and key
    /// usages cannot have changed since.
    pub fn recheck(&self, record: &ChainRecord, at: SystemTime) -> Result<(), PkiError> {
        if at > record.not_after {
            return Err(PkiError::Expired);
        }
        if let Some(tp) = record
            .thumbprints
            .iter()
            .find(|tp| self.revoked.contains(tp))
        {
            return Err(PkiError::Revoked(*tp));
        }
        let root_trusted = record
            .thumbprints
            .last()
            .is_some_and(|root| self.root_thumbprints.contains(root));
        if !root_trusted {
            return Err(PkiError::UnknownIssuer);
        }
        Ok(())
    }

    /// SHA-1 hashes of each root's SubjectPublicKeyInfo, in root order: the content of an IKE
    /// CERTREQ payload (RFC 7296 section 3.7).
    pub fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.roots.iter().map(Certificate::spki_sha1).collect()
    }

    /// The root whose SubjectPublicKeyInfo SHA-1 is `hash` (from a peer's CERTREQ).
    pub fn root_by_key_hash(&self, hash: &[u8]) -> Option<&Certificate> {
        self.roots.iter().find(|r| r.spki_sha1().as_slice() == hash)
    }

    /// Validates `end_entity` for `role` at time `at`: a chain through `intermediates` (as
    /// received in IKE CERT payloads, any order) to a trusted root, signatures, validity
    /// periods, EKU for the role, keyUsage digitalSignature when keyUsage is present, the
    /// revoked list, and for gateways the dialled name.
    pub fn verify(
        &self,
        end_entity: &Certificate,
        intermediates: &[Certificate],
        role: Role<'_>,
        at: SystemTime,
    ) -> Result<VerifiedChain, PkiError> {
        let time = at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| PkiError::BadTime)?;
        let time = UnixTime::since_unix_epoch(time);
        let ee = EndEntityCert::try_from(end_entity.der())?;
        let inter_ders: Vec<CertificateDer<'_>> =
            intermediates.iter().map(|c| c.der().clone()).collect();
        let eku_policy = EkuPolicy {
            role: RoleKind::from(role),
        };
        let path = ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &inter_ders,
            time,
            &eku_policy,
            None,
            None,
        )?;
        let anchor = path.anchor();
        let root_index = self
            .anchors
            .iter()
            .position(|a| a == anchor)
            .ok_or(PkiError::UnknownIssuer)?;
        let used: Vec<CertificateDer<'static>> = path
            .intermediate_certificates()
            .map(|c| c.der().into_owned())
            .collect();

        // webpki lets a leaf without EKU through ("required if present"); Windows and Azure
        // require the extension on the end entity.
        if !eku_policy.role.leaf_ok(end_entity.eku()) {
            return Err(PkiError::WrongEku);
        }
        if end_entity.key_usage_digital_signature() == Some(false) {
            return Err(PkiError::WrongKeyUsage);
        }
        if let Some(crate::KeyType::Rsa(bits)) = end_entity.key_type()
            && bits < MIN_RSA_BITS
        {
            return Err(PkiError::WeakKey(bits));
        }
        let root = &self.roots[root_index];
        let mut thumbprints = vec![end_entity.thumbprint()];
        thumbprints.extend(used.iter().map(|der| Thumbprint::of_der(der.as_ref())));
        thumbprints.push(root.thumbprint());
        // Revoking a root by thumbprint works too, though removing it is the usual way.
        if let Some(tp) = thumbprints.iter().find(|tp| self.revoked.contains(tp)) {
            return Err(PkiError::Revoked(*tp));
        }
        let mut not_after = end_entity.not_after().min(root.not_after());
        for der in &used {
            if let Ok(c) = Certificate::from_der(der.as_ref()) {
                not_after = not_after.min(c.not_after());
            }
        }
        // webpki takes a trust anchor as a name and a key, without dates; a root certificate
        // that has expired ends every chain through it, as Windows and strongSwan hold (and
        // as `recheck` holds for established tunnels).
        if at > root.not_after() {
            return Err(PkiError::Expired);
        }
        if let Role::Gateway { server_name } = role
            && !cert_matches_server_name(end_entity, server_name)
        {
            return Err(PkiError::NameMismatch(server_name.to_owned()));
        }
        Ok(VerifiedChain {
            root_index,
            intermediates: used,
            record: ChainRecord {
                thumbprints,
                not_after,
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RoleKind {
    Client,
    Gateway,
}

impl From<Role<'_>> for RoleKind {
    fn from(r: Role<'_>) -> Self {
        match r {
            Role::Client => Self::Client,
            Role::Gateway { .. } => Self::Gateway,
        }
    }
}

impl RoleKind {
    /// The end-entity rule: the EKU extension must be present and name the role.
    fn leaf_ok(self, eku: Option<crate::Eku>) -> bool {
        match (self, eku) {
            (_, None) => false,
            (Self::Client, Some(e)) => e.client_auth,
            (Self::Gateway, Some(e)) => e.server_auth || e.ike_intermediate,
        }
    }
}

const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const OID_IKE_INTERMEDIATE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x08, 0x02, 0x02];
const OID_ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Applied by webpki to every certificate of the path: an EKU extension, where present, must
/// allow the role (or be anyExtendedKeyUsage, common on enterprise intermediates).
#[derive(Debug)]
struct EkuPolicy {
    role: RoleKind,
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let accepted: &[&[u8]] = match self.role {
            RoleKind::Client => &[OID_CLIENT_AUTH, OID_ANY_EKU],
            RoleKind::Gateway => &[OID_SERVER_AUTH, OID_IKE_INTERMEDIATE, OID_ANY_EKU],
        };
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if accepted
                .iter()
                .any(|oid| id == webpki::KeyPurposeId::new(oid))
            {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        let required = match self.role {
            RoleKind::Client => webpki::KeyUsage::client_auth(),
            RoleKind::Gateway => webpki::KeyUsage::server_auth(),
        };
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext { required, present },
        ))
    }
}

/// Gateway name check as Windows does it, SAN only: a DNS name must equal a dNSName
/// (case-insensitive, trailing dot ignored; a leading `*.` label matches exactly one label);
/// an IP literal must equal an iPAddress SAN or appear verbatim as a dNSName (Windows wants
/// IPs in dNSName SANs).
pub fn cert_matches_server_name(cert: &Certificate, server_name: &str) -> bool {
    let want = server_name.trim_end_matches('.');
    if want.is_empty() {
        return false;
    }
    if let Ok(ip) = want
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return cert.ip_addrs().contains(&ip)
            || cert
                .dns_names()
                .iter()
                .any(|d| d.parse::<IpAddr>().ok() == Some(ip));
    }
    cert.dns_names().iter().any(|d| dns_name_matches(d, want))
}

fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match name.split_once('.') {
            Some((first, rest)) => {
                !first.is_empty() && suffix.contains('.') && rest.eq_ignore_ascii_case(suffix)
            }
            None => false,
        };
    }
    pattern.eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::dns_name_matches;

    #[test]
    fn dns_names_and_wildcards() {
        assert!(dns_name_matches("vpn.example.com", "VPN.example.COM"));
        assert!(dns_name_matches("vpn.example.com.", "vpn.example.com"));
        assert!(!dns_name_matches("vpn.example.com", "vpn.example.co"));
        assert!(dns_name_matches("*.example.com", "vpn.example.com"));
        // One label only, never the bare domain, never a wildcard over a TLD.
        assert!(!dns_name_matches("*.example.com", "a.vpn.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.com", "example.com"));
        assert!(!dns_name_matches("*.example.com", ".example.com"));
    }
}
