//! IKE identities (RFC 7296 3.5) and the peer-certificate validation seam.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike_wire::{IdType, Identification};

/// An IKE identity as carried in IDi / IDr.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IkeId {
    /// ID_FQDN.
    Fqdn(String),
    /// ID_RFC822_ADDR (also used for UPNs).
    Rfc822(String),
    /// ID_DER_ASN1_DN: the DER of an X.500 Name (Windows machine certificates).
    DerDn(Vec<u8>),
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Ip(IpAddr),
    /// Any other type, kept verbatim.
    Other {
        /// ID type.
        id_type: IdType,
        /// Identification data.
        data: Vec<u8>,
    },
}

impl IkeId {
    /// The ID payload content.
    pub fn to_wire(&self) -> Identification {
        let (id_type, data) = match self {
            Self::Fqdn(s) => (IdType::FQDN, s.as_bytes().to_vec()),
            Self::Rfc822(s) => (IdType::RFC822_ADDR, s.as_bytes().to_vec()),
            Self::DerDn(d) => (IdType::DER_ASN1_DN, d.clone()),
            Self::Ip(IpAddr::V4(a)) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Self::Ip(IpAddr::V6(a)) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Self::Other { id_type, data } => (*id_type, data.clone()),
        };
        Identification { id_type, data }
    }

    /// Reads an ID payload; names that are not UTF-8 and malformed addresses stay `Other`.
    pub fn from_wire(id: &Identification) -> Self {
        let other = || Self::Other {
            id_type: id.id_type,
            data: id.data.clone(),
        };
        match id.id_type {
            IdType::FQDN => String::from_utf8(id.data.clone()).map_or_else(|_| other(), Self::Fqdn),
            IdType::RFC822_ADDR => {
                String::from_utf8(id.data.clone()).map_or_else(|_| other(), Self::Rfc822)
            }
            IdType::DER_ASN1_DN => Self::DerDn(id.data.clone()),
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(id.data.as_slice())
                .map_or_else(|_| other(), |a| Self::Ip(IpAddr::V4(Ipv4Addr::from(a)))),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(id.data.as_slice())
                .map_or_else(|_| other(), |a| Self::Ip(IpAddr::V6(Ipv6Addr::from(a)))),
            _ => other(),
        }
    }

    /// The form identities are compared, indexed and stored in: a DNS name in lower case
    /// without its trailing dot, an RFC 822 name in lower case, a DN as [`pki::canonical_dn`]
    /// (string types and case folded per RFC 4518). `WinPC.Corp.Example.` and
    /// `winpc.corp.example` are one client; without this each spelling would be a client of
    /// its own, with its own lease and its own SAs.
    pub fn canonical(&self) -> Self {
        match self {
            Self::Fqdn(s) => Self::Fqdn(s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()),
            Self::Rfc822(s) => Self::Rfc822(s.to_ascii_lowercase()),
            Self::DerDn(der) => Self::DerDn(pki::canonical_dn(der).unwrap_or_else(|| der.clone())),
            other => other.clone(),
        }
    }

    /// "RestOfIDPayload" (RFC 7296 2.15): ID type, three reserved octets, data.
    pub(crate) fn auth_octets(id: &Identification) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + id.data.len());
        out.extend_from_slice(&[id.id_type.0, 0, 0, 0]);
        out.extend_from_slice(&id.data);
        out
    }
}

/// Identities come from unauthenticated peers and end up in logs and status output: control
/// characters (a newline forging a log line, terminal escapes) are shown escaped.
impl fmt::Display for IkeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fqdn(s) => write!(f, "fqdn:{}", s.escape_debug()),
            Self::Rfc822(s) => write!(f, "rfc822:{}", s.escape_debug()),
            Self::DerDn(d) => match pki::distinguished_name_text(d) {
                Some(text) => write!(f, "dn:{}", text.escape_debug()),
                None => write!(f, "dn:{} bytes", d.len()),
            },
            Self::Ip(a) => write!(f, "ip:{a}"),
            Self::Other { id_type, data } => write!(f, "{id_type}:{} bytes", data.len()),
        }
    }
}

/// Why a peer's certificate or identity was not accepted (answered with
/// AUTHENTICATION_FAILED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejection {
    /// No CERT payload with an X.509 certificate.
    #[error("peer sent no certificate")]
    NoCertificate,
    /// The chain did not validate (untrusted issuer, expired, wrong EKU, revoked, ...).
    #[error("certificate rejected: {0}")]
    Certificate(#[source] pki::PkiError),
    /// The chain validated, but its kind of certificate (`user`, `machine`) is not accepted
    /// here.
    #[error(
        "certificate rejected: a {0} certificate, and this gateway does not accept those (clients.accept)"
    )]
    KindNotAccepted(&'static str),
    /// The certificate does not carry the identity the peer claimed (IDi / IDr).
    #[error("identity {0} does not match the certificate")]
    IdentityMismatch(String),
    /// The identity is not the one we expected.
    #[error("unexpected peer identity {0}")]
    UnexpectedIdentity(String),
    /// The authentication server EAP was relayed to refused the peer, or none answered.
    #[error("authentication server: {0}")]
    ServerRefused(String),
}

/// What a validator returns for an accepted peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedPeer {
    /// The end-entity's SubjectPublicKeyInfo DER, used to verify the AUTH signature.
    pub spki_der: Vec<u8>,
    /// Human-readable subject, for logs and events.
    pub subject: String,
    /// The validated path, kept with the SA so that it can be re-checked later.
    pub chain: pki::ChainRecord,
    /// What this peer is given, when the validator puts it in a policy group; `None`: the
    /// responder configuration's routes, DNS and pool.
    pub policy: Option<std::sync::Arc<crate::PeerPolicy>>,
}

/// Validates a peer's certificate chain and its claimed identity. Implemented by
/// [`PkiValidator`] on top of `pki`; tests or the daemons may bring their own.
pub trait PeerValidator: Send + Sync + fmt::Debug {
    /// Validates `end_entity` (DER) through `intermediates` (DER, as received) at `unix_time`
    /// (seconds) and checks that it names `peer_id`.
    fn validate(
        &self,
        peer_id: &IkeId,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_time: u64,
    ) -> Result<ValidatedPeer, PeerRejection>;

    /// SHA-1 hashes of the trusted CAs' SubjectPublicKeyInfo, sent in CERTREQ.
    fn ca_key_hashes(&self) -> Vec<[u8; 20]>;
}

/// Which role the validated peer must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    /// A VPN client (EKU clientAuth); used by the gateway.
    Client,
    /// The VPN gateway as dialled under `server_name`; used by the agent.
    Gateway {
        /// Name or IP literal from the profile.
        server_name: String,
    },
}

/// [`PeerValidator`] backed by a `pki::TrustStore`.
#[derive(Debug, Clone)]
pub struct PkiValidator {
    /// Trusted roots and revoked thumbprints.
    pub trust: pki::TrustStore,
    /// Required role of the peer.
    pub role: PeerRole,
    /// When set, the peer must present exactly this identity.
    pub expected_id: Option<IkeId>,
}

impl PeerValidator for PkiValidator {
    fn validate(
        &self,
        peer_id: &IkeId,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_time: u64,
    ) -> Result<ValidatedPeer, PeerRejection> {
        if let Some(want) = &self.expected_id
            && want.canonical() != peer_id.canonical()
        {
            return Err(PeerRejection::UnexpectedIdentity(peer_id.to_string()));
        }
        let ee = pki::Certificate::from_der(end_entity).map_err(PeerRejection::Certificate)?;
        let inter: Vec<pki::Certificate> = intermediates
            .iter()
            .filter_map(|d| pki::Certificate::from_der(d).ok())
            .collect();
        let role = match &self.role {
            PeerRole::Client => pki::Role::Client,
            PeerRole::Gateway { server_name } => pki::Role::Gateway { server_name },
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_time);
        let verified = self
            .trust
            .verify(&ee, &inter, role, at)
            .map_err(PeerRejection::Certificate)?;
        let wire = peer_id.to_wire();
        if !pki::cert_matches_id(&ee, wire.id_type.0, &wire.data) {
            return Err(PeerRejection::IdentityMismatch(peer_id.to_string()));
        }
        Ok(ValidatedPeer {
            policy: None,
            spki_der: ee.spki_der().to_vec(),
            subject: ee.subject().to_owned(),
            chain: verified.record,
        })
    }

    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.trust.ca_key_hashes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_wire_round_trip_and_auth_octets() {
        for id in [
            IkeId::Fqdn("gw.example".into()),
            IkeId::Rfc822("u@example".into()),
            IkeId::DerDn(vec![0x30, 0]),
            IkeId::Ip("198.51.100.1".parse().unwrap()),
            IkeId::Ip("2001:db8::1".parse().unwrap()),
        ] {
            assert_eq!(IkeId::from_wire(&id.to_wire()), id);
        }
        let bad = Identification {
            id_type: IdType::IPV4_ADDR,
            data: vec![1, 2, 3],
        };
        assert!(matches!(IkeId::from_wire(&bad), IkeId::Other { .. }));
        let w = IkeId::Fqdn("a".into()).to_wire();
        assert_eq!(IkeId::auth_octets(&w), [2, 0, 0, 0, b'a']);
    }

    #[test]
    fn control_characters_in_identities_are_shown_escaped() {
        let forged = IkeId::Fqdn("pc1\nIKE SA established peer=admin\x1b[2J".into());
        let shown = forged.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\x1b'), "{shown}");
        assert!(shown.starts_with("fqdn:pc1\\n"), "{shown}");
        assert_eq!(
            IkeId::Fqdn("Bjørn.example".into()).to_string(),
            "fqdn:Bjørn.example"
        );
    }
}
