//! The AUTH payload with signatures: the octets it signs (RFC 7296 2.15), our signature
//! (classic methods or RFC 7427 as the peer's hashes allow), and checking the peer's
//! certificate, identity and signature.

use ike_wire::{AuthMethod, Authentication, CertEncoding, Identification, Payload, Payloads};
use ipsec_crypto::{
    HashAlg, KeyType, SignatureScheme, auth_signed_octets, build_rfc7427_auth_data,
    split_rfc7427_auth_data, verify,
};

use crate::config::AuthMethodPolicy;
use crate::failure::{AuthFault, ConfigFault, FailureReason};
use crate::identity::{IkeId, PeerRejection};
use crate::sa::error::SaError;
use crate::sa::{IkeSa, Role};

impl IkeSa {
    pub(super) fn sign_auth(&self, signed: &[u8]) -> Result<Authentication, SaError> {
        let ike = self.cfg.ike();
        let key = &ike.local.key;
        let (classic_method, classic_scheme) = match key.key_type() {
            KeyType::Rsa => (
                AuthMethod::RSA_SIG,
                SignatureScheme::RsaPkcs1(HashAlg::Sha1),
            ),
            KeyType::EcdsaP256 => (
                AuthMethod::ECDSA_SHA256_P256,
                SignatureScheme::EcdsaP256Sha256Fixed,
            ),
            KeyType::EcdsaP384 => (
                AuthMethod::ECDSA_SHA384_P384,
                SignatureScheme::EcdsaP384Sha384Fixed,
            ),
        };
        let rfc7427 = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            .into_iter()
            .filter(|h| self.peer_hashes.contains(h))
            .flat_map(|h| [SignatureScheme::RsaPkcs1(h), SignatureScheme::EcdsaDer(h)])
            .find(|s| key.supports(*s));
        let use_7427 = match ike.auth_method {
            AuthMethodPolicy::Classic => None,
            AuthMethodPolicy::Auto => rfc7427,
            AuthMethodPolicy::DigitalSignature => {
                Some(rfc7427.ok_or(ConfigFault::NoSignatureHash)?)
            }
        };
        if use_7427.is_none()
            && matches!(classic_scheme, SignatureScheme::RsaPkcs1(HashAlg::Sha1))
            && !ike.allow_sha1_signatures
        {
            return Err(ConfigFault::Sha1NotAllowed.into());
        }
        match use_7427 {
            Some(scheme) => {
                let sig = key.sign(scheme, signed)?;
                Ok(Authentication {
                    method: AuthMethod::DIGITAL_SIGNATURE,
                    data: build_rfc7427_auth_data(scheme, &sig)?,
                })
            }
            None => Ok(Authentication {
                method: classic_method,
                data: key.sign(classic_scheme, signed)?,
            }),
        }
    }

    pub(super) fn signed_octets(
        &self,
        ours: bool,
        id: &Identification,
    ) -> Result<Vec<u8>, SaError> {
        let sa_keys = self.keys()?;
        let (algs, keys) = (sa_keys.algs, &sa_keys.secrets);
        let hs = self.handshake.as_deref().ok_or(SaError::internal(
            "no IKE_SA_INIT messages after the handshake",
        ))?;
        let initiator_side = (self.role == Role::Initiator) == ours;
        let (message, nonce, sk_p) = if initiator_side {
            (&hs.init_request, &hs.nr, &keys.sk_pi)
        } else {
            (&hs.init_response, &hs.ni, &keys.sk_pr)
        };
        Ok(auth_signed_octets(
            algs.prf,
            message,
            nonce,
            sk_p.as_bytes(),
            &IkeId::auth_octets(id),
        ))
    }

    pub(in crate::sa) fn cert_payloads(&self) -> Vec<Payload> {
        self.cfg
            .ike()
            .local
            .chain
            .iter()
            .map(|der| {
                Payload::Cert(ike_wire::Certificate {
                    encoding: CertEncoding::X509_SIG,
                    data: der.clone(),
                })
            })
            .collect()
    }

    /// Validates the peer's certificate, identity and AUTH payload.
    pub(super) fn authenticate_peer(
        &mut self,
        payloads: &[Payload],
        id: &Identification,
    ) -> Result<String, FailureReason> {
        let ike = self.cfg.ike();
        // The certificate must name what the peer sent; the canonical form (one spelling per
        // identity) is what is recorded once it does.
        let claimed = IkeId::from_wire(id);
        let peer_id = claimed.canonical();
        self.peer.claimed = Some(peer_id.clone());
        let auth = payloads
            .auth()
            .ok_or(AuthFault::Missing("missing AUTH payload"))?;
        let certs: Vec<&[u8]> = payloads
            .certs()
            .filter(|c| c.encoding == CertEncoding::X509_SIG)
            .map(|c| c.data.as_slice())
            .collect();
        let (ee, inter) = certs
            .split_first()
            .ok_or(FailureReason::PeerRejected(PeerRejection::NoCertificate))?;
        let validated = ike
            .validator
            .validate(&claimed, ee, inter, self.unix_time)
            .map_err(FailureReason::PeerRejected)?;
        let signed = self.signed_octets(false, id)?;
        let sha1 = Sha1Policy {
            allowed: ike.allow_sha1_signatures,
            peer_offers_sha2: self
                .peer_hashes
                .iter()
                .any(|h| matches!(h, HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512)),
        };
        verify_auth(auth, &validated.spki_der, &signed, sha1)?;
        self.peer.id = Some(peer_id);
        self.peer.chain = Some(validated.chain);
        self.peer.policy = validated.policy;
        self.peer.auth_method = Some(auth.method);
        Ok(validated.subject)
    }
}

/// When a peer's SHA-1 signature is acceptable.
#[derive(Debug, Clone, Copy)]
struct Sha1Policy {
    /// `allow_sha1_signatures`.
    allowed: bool,
    /// The peer announced a SHA-2 hash for RFC 7427 signatures.
    peer_offers_sha2: bool,
}

fn verify_auth(
    auth: &Authentication,
    spki: &[u8],
    signed: &[u8],
    sha1: Sha1Policy,
) -> Result<(), AuthFault> {
    let (scheme, sig) = match auth.method {
        AuthMethod::RSA_SIG | AuthMethod::ECDSA_SHA256_P256 | AuthMethod::ECDSA_SHA384_P384 => (
            SignatureScheme::for_auth_method(auth.method.0)
                .ok_or(AuthFault::UnsupportedMethod(auth.method))?,
            auth.data.as_slice(),
        ),
        AuthMethod::DIGITAL_SIGNATURE => {
            split_rfc7427_auth_data(&auth.data).map_err(AuthFault::Rfc7427Data)?
        }
        m => return Err(AuthFault::UnsupportedMethod(m)),
    };
    if scheme.hash() == HashAlg::Sha1 {
        if !sha1.allowed {
            return Err(AuthFault::Sha1Signature);
        }
        if auth.method == AuthMethod::DIGITAL_SIGNATURE && sha1.peer_offers_sha2 {
            return Err(AuthFault::Sha1Downgrade);
        }
    }
    verify(scheme, spki, signed, sig).map_err(AuthFault::Signature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod sha1_tests {
    use super::*;
    use ipsec_crypto::SigningKey;

    fn rsa_key() -> (SigningKey, Vec<u8>) {
        let key = pki::PrivateKey::generate(pki::KeyAlgorithm::Rsa2048).unwrap();
        let signing = SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        let spki = signing.public_key_spki_der().unwrap();
        (signing, spki)
    }

    fn policy(allowed: bool, peer_offers_sha2: bool) -> Sha1Policy {
        Sha1Policy {
            allowed,
            peer_offers_sha2,
        }
    }

    /// SHA-1 signatures only with allow_legacy; RFC 7427 with SHA-1 never from a peer that
    /// offers SHA-2 (RFC 8247 3.2); SHA-2 signatures always.
    #[test]
    fn sha1_signatures_follow_the_policy() {
        let (key, spki) = rsa_key();
        let signed = b"octets the AUTH covers";
        let sig = key
            .sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), signed)
            .unwrap();
        let method1 = Authentication {
            method: AuthMethod::RSA_SIG,
            data: sig.clone(),
        };
        let rfc7427_sha1 = Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: build_rfc7427_auth_data(SignatureScheme::RsaPkcs1(HashAlg::Sha1), &sig).unwrap(),
        };
        assert!(verify_auth(&method1, &spki, signed, policy(false, false)).is_err());
        assert!(verify_auth(&method1, &spki, signed, policy(true, false)).is_ok());
        assert!(verify_auth(&rfc7427_sha1, &spki, signed, policy(false, false)).is_err());
        assert!(verify_auth(&rfc7427_sha1, &spki, signed, policy(true, false)).is_ok());
        let e = verify_auth(&rfc7427_sha1, &spki, signed, policy(true, true)).unwrap_err();
        assert_eq!(e, AuthFault::Sha1Downgrade);
        assert!(e.to_string().contains("RFC 8247"), "{e}");

        let sha256 = SignatureScheme::RsaPkcs1(HashAlg::Sha256);
        let good = Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: build_rfc7427_auth_data(sha256, &key.sign(sha256, signed).unwrap()).unwrap(),
        };
        assert!(verify_auth(&good, &spki, signed, policy(false, true)).is_ok());
    }
}
