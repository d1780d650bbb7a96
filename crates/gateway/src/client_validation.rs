//! Which client certificates the gateway accepts, and into which policy group each falls:
//! the engine's [`PeerValidator`] over a trust store, accepted certificate kinds and groups
//! that a reload replaces in place.

use std::sync::{Arc, RwLock};

use ikev2::{
    IkeId, PeerPolicy, PeerRejection, PeerRole, PeerValidator, PkiValidator, ValidatedPeer,
};

use crate::config::{CertClass, GroupMatch};

/// Client certificate validation against a trust store that SIGHUP can replace in place.
/// It records nothing: an SA's validated path travels with the SA (`IkeSaInfo::peer_chain`)
/// once AUTH has verified, and is re-checked from there.
#[derive(Debug)]
pub struct ClientValidator {
    trust: RwLock<pki::TrustStore>,
    accept: RwLock<Vec<CertClass>>,
    groups: RwLock<Vec<(GroupMatch, Arc<PeerPolicy>)>>,
}

impl ClientValidator {
    /// Accepts machine and user certificates until told otherwise.
    pub fn new(trust: pki::TrustStore) -> Self {
        Self {
            trust: RwLock::new(trust),
            accept: RwLock::new(vec![CertClass::Machine, CertClass::User]),
            groups: RwLock::new(Vec::new()),
        }
    }

    /// The policy groups, first match first, from now on.
    pub fn set_groups(&self, groups: Vec<(GroupMatch, Arc<PeerPolicy>)>) {
        if let Ok(mut g) = self.groups.write() {
            *g = groups;
        }
    }

    /// The group a client certificate validated through the CAs `path` falls in, if any.
    pub fn group_of(
        &self,
        leaf: &pki::Certificate,
        path: &[pki::Thumbprint],
    ) -> Option<Arc<PeerPolicy>> {
        self.groups
            .read()
            .ok()?
            .iter()
            .find(|(m, _)| m.matches(leaf, path))
            .map(|(_, p)| p.clone())
    }

    /// New roots and revocation list for every authentication from now on.
    pub fn replace_trust(&self, trust: pki::TrustStore) {
        if let Ok(mut t) = self.trust.write() {
            *t = trust;
        }
    }

    /// Which kinds of certificate are accepted from now on (`clients.accept`).
    pub fn set_accepted(&self, accept: &[CertClass]) {
        if let Ok(mut a) = self.accept.write() {
            *a = accept.to_vec();
        }
    }

    /// Whether an authenticated session's certificate path is still good now: nothing on it
    /// revoked, its root still trusted, nothing on it expired.
    pub fn recheck(&self, chain: &pki::ChainRecord) -> Result<(), pki::PkiError> {
        let trust = self
            .trust
            .read()
            .map_err(|_| pki::PkiError::InvalidChain("trust store unavailable".into()))?;
        trust.recheck(chain, std::time::SystemTime::now())
    }
}

impl PeerValidator for ClientValidator {
    fn validate(
        &self,
        peer_id: &IkeId,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_time: u64,
    ) -> Result<ValidatedPeer, PeerRejection> {
        let trust = self
            .trust
            .read()
            .map_err(|_| {
                PeerRejection::Certificate(pki::PkiError::InvalidChain(
                    "trust store unavailable".into(),
                ))
            })?
            .clone();
        let validator = PkiValidator {
            trust,
            role: PeerRole::Client,
            expected_id: None,
        };
        let mut accepted = validator.validate(peer_id, end_entity, intermediates, unix_time)?;
        let leaf = pki::Certificate::from_der(end_entity).map_err(PeerRejection::Certificate)?;
        let class = CertClass::of(&leaf);
        let allowed = self
            .accept
            .read()
            .map(|a| a.contains(&class))
            .unwrap_or(false);
        if !allowed {
            return Err(PeerRejection::KindNotAccepted(class.name()));
        }
        let cas = accepted.chain.thumbprints.get(1..).unwrap_or_default();
        accepted.policy = self.group_of(&leaf, cas);
        Ok(accepted)
    }

    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.trust
            .read()
            .map(|t| t.ca_key_hashes())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::{Duration, SystemTime};

    use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

    #[test]
    fn a_session_is_rechecked_from_its_path_when_trust_changes() {
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Root", KeyAlgorithm::P256, validity).unwrap();
        let sub = ca
            .issue_intermediate("Issuing", KeyAlgorithm::P256, validity)
            .unwrap();
        let pc = sub
            .issue(
                CertKind::Machine,
                "pc.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let trust = pki::TrustStore::with_roots([ca.cert().clone()]).unwrap();
        let v = ClientValidator::new(trust.clone());
        let id = IkeId::Fqdn("pc.test.example".into());
        let now = tunnel::host::unix_now();
        let inter = [sub.cert().der().as_ref()];
        let chain = v
            .validate(&id, pc.chain[0].der(), &inter, now)
            .unwrap()
            .chain;
        assert_eq!(v.recheck(&chain), Ok(()));

        // Revoking the intermediate takes the session down, and new attempts are refused.
        let mut revoked = trust.clone();
        revoked.revoke(sub.cert().thumbprint());
        v.replace_trust(revoked);
        assert_eq!(
            v.recheck(&chain),
            Err(pki::PkiError::Revoked(sub.cert().thumbprint()))
        );
        assert!(matches!(
            v.validate(&id, pc.chain[0].der(), &inter, now),
            Err(PeerRejection::Certificate(_))
        ));
        // So does removing the root.
        let other = CertificateAuthority::new_root("Other", KeyAlgorithm::P256, validity).unwrap();
        v.replace_trust(pki::TrustStore::with_roots([other.cert().clone()]).unwrap());
        assert_eq!(v.recheck(&chain), Err(pki::PkiError::UnknownIssuer));
        v.replace_trust(trust);
        assert_eq!(v.recheck(&chain), Ok(()));
    }
}
