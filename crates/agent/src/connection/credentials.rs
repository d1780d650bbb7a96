//! Our certificate chain and key (from files, or a key held by the per-user helper), the
//! identity they give us, and the roots the gateway's certificate must chain to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ikev2::{IkeId, LocalCredentials};
use ipsec_crypto::{Signer, SigningKey};

use super::{ConnectionError, setup};

/// Our identity and key, and the roots the gateway's certificate must chain to.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub local: LocalCredentials,
    pub trust: pki::TrustStore,
}

/// The identity Windows uses for a certificate: a machine's FQDN, a user's UPN or e-mail,
/// otherwise the subject DN.
pub fn identity_of(leaf: &pki::Certificate) -> IkeId {
    if let Some(dns) = leaf.dns_names().first() {
        IkeId::Fqdn(dns.clone())
    } else if let Some(mail) = leaf.rfc822_names().first() {
        IkeId::Rfc822(mail.clone())
    } else {
        IkeId::DerDn(leaf.subject_der().to_vec())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConnectionError> {
    std::fs::read(path).map_err(setup(path.display().to_string()))
}

/// Roots from PEM files, every certificate in each file.
pub fn load_trust(ca: &[PathBuf]) -> Result<pki::TrustStore, ConnectionError> {
    let mut trust = pki::TrustStore::new();
    for file in ca {
        for cert in
            pki::load_certificates(&read(file)?).map_err(setup(format!("CA {}", file.display())))?
        {
            trust
                .add_root(cert)
                .map_err(setup(format!("CA {}", file.display())))?;
        }
    }
    Ok(trust)
}

/// Credentials from files: our chain (leaf first), its key, and the roots for the gateway.
pub fn load_credentials(
    cert: &Path,
    key: &Path,
    ca: &[PathBuf],
) -> Result<Credentials, ConnectionError> {
    let chain = pki::load_certificates(&read(cert)?)
        .map_err(setup(format!("certificate {}", cert.display())))?;
    let leaf = chain
        .first()
        .ok_or_else(|| setup(cert.display().to_string())("no certificate"))?;
    let private =
        pki::PrivateKey::load(&read(key)?).map_err(setup(format!("key {}", key.display())))?;
    let key_spki = private
        .public_key_spki()
        .map_err(setup(format!("key {}", key.display())))?;
    if key_spki != leaf.spki_der() {
        return Err(setup(format!("key {}", key.display()))(
            "does not belong to the certificate",
        ));
    }
    let signing = SigningKey::from_pkcs8_der(private.pkcs8_der())
        .map_err(setup(format!("key {}", key.display())))?;
    Ok(Credentials {
        local: LocalCredentials {
            id: identity_of(leaf),
            key: Arc::new(signing),
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust: load_trust(ca)?,
    })
}

/// Credentials whose key is used through `signer` (the per-user helper's key).
pub fn remote_credentials(
    chain_pem: &[u8],
    signer: Arc<dyn Signer>,
    trust: pki::TrustStore,
) -> Result<Credentials, ConnectionError> {
    let chain = pki::load_certificates(chain_pem).map_err(setup("user certificate"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| setup("user certificate")("no certificate"))?;
    Ok(Credentials {
        local: LocalCredentials {
            id: identity_of(leaf),
            key: signer,
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust,
    })
}
