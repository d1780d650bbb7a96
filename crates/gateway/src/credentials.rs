//! The gateway's own credentials and the clients' trust anchors, loaded from the files
//! `gateway.toml` names: certificate chain, private key, IKE identity, trusted roots and the
//! revocation list.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ikev2::{IkeId, LocalCredentials};
use ipsec_crypto::SigningKey;

use crate::config::{ConfigError, GatewayConfig};

/// Everything loaded from the files a configuration names.
#[derive(Debug)]
pub struct LoadedCredentials {
    pub local: LocalCredentials,
    pub trust: pki::TrustStore,
}

fn read(config_path: &Path, field: &'static str, file: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file)
        .map_err(|e| ConfigError::invalid(config_path, field, format!("{}: {e}", file.display())))
}

/// Loads the gateway certificate chain, its key and the trusted roots + revocation list.
pub fn load_credentials(
    config: &GatewayConfig,
    config_path: &Path,
) -> Result<LoadedCredentials, ConfigError> {
    let invalid = |field, message| ConfigError::invalid(config_path, field, message);
    let chain_pem = read(
        config_path,
        "identity.certificate",
        &config.identity.certificate,
    )?;
    let chain = pki::load_certificates(&chain_pem)
        .map_err(|e| invalid("identity.certificate", e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(
            "identity.certificate",
            "no certificate in the file".into(),
        ));
    };
    let key_pem = read(config_path, "identity.key", &config.identity.key)?;
    let key =
        pki::PrivateKey::load(&key_pem).map_err(|e| invalid("identity.key", e.to_string()))?;
    let leaf_spki = leaf.spki_der().to_vec();
    let key_spki = key
        .public_key_spki()
        .map_err(|e| invalid("identity.key", e.to_string()))?;
    if leaf_spki != key_spki {
        return Err(invalid(
            "identity.key",
            "the key does not belong to the certificate in identity.certificate".into(),
        ));
    }
    let signing = SigningKey::from_pkcs8_der(key.pkcs8_der())
        .map_err(|e| invalid("identity.key", e.to_string()))?;
    let id = match &config.identity.id {
        Some(id) => parse_id(id),
        // A certificate issued for an address carries it as dNSName and iPAddress: the peer
        // expects ID_IPV4_ADDR then, not an FQDN that happens to look like one.
        None => match (leaf.dns_names().first(), leaf.ip_addrs().first()) {
            (Some(name), _) => parse_id(name),
            (None, Some(ip)) => IkeId::Ip(*ip),
            (None, None) => IkeId::DerDn(leaf.subject_der().to_vec()),
        },
    };

    let mut trust = pki::TrustStore::new();
    for file in &config.clients.root_ca_files {
        let bytes = read(config_path, "clients.root_ca_files", file)?;
        let certs = pki::load_certificates(&bytes)
            .map_err(|e| invalid("clients.root_ca_files", format!("{}: {e}", file.display())))?;
        for cert in certs {
            trust
                .add_root(cert)
                .map_err(|e| invalid("clients.root_ca_files", e.to_string()))?;
        }
    }
    for (i, data) in config.clients.root_ca_data.iter().enumerate() {
        let cert = pki::load_certificate(data.as_bytes())
            .map_err(|e| invalid("clients.root_ca_data", format!("entry {}: {e}", i + 1)))?;
        trust
            .add_root(cert)
            .map_err(|e| invalid("clients.root_ca_data", e.to_string()))?;
    }
    trust.set_revoked(config.revoked());

    Ok(LoadedCredentials {
        local: LocalCredentials {
            id,
            key: Arc::new(signing),
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust,
    })
}

/// An identity as written in a config: an IP literal, `user@domain`, or a host name.
pub fn parse_id(text: &str) -> IkeId {
    if let Ok(ip) = text.parse::<IpAddr>() {
        IkeId::Ip(ip)
    } else if text.contains('@') {
        IkeId::Rfc822(text.to_owned())
    } else {
        IkeId::Fqdn(text.to_owned())
    }
}

/// A gateway's files in a temporary directory and the configuration naming them, shared with
/// the responder's tests (which need loaded credentials too).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

    pub(crate) struct Files {
        pub(crate) dir: tempfile::TempDir,
        pub(crate) config: GatewayConfig,
    }

    /// A root CA, a gateway certificate and key for `vpn.test.example`, a machine key that
    /// belongs to no configured certificate, and a config naming them with `extra` appended.
    pub(crate) fn setup(extra: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Test Root", KeyAlgorithm::P256, validity).unwrap();
        let gw = ca
            .issue(
                CertKind::Gateway,
                "vpn.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let other = ca
            .issue(
                CertKind::Machine,
                "pc.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.crt"), ca.cert().to_pem()).unwrap();
        std::fs::write(p.join("gw.crt"), gw.chain[0].to_pem()).unwrap();
        std::fs::write(p.join("gw.key"), gw.key.to_pem().as_bytes()).unwrap();
        std::fs::write(p.join("other.key"), other.key.to_pem().as_bytes()).unwrap();
        let text = format!(
            r#"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "gw.key"
[clients]
root_ca_files = ["ca.crt"]
revoked_thumbprints = ["{}"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16", "10.2.0.0/24"]
dns = ["10.1.0.53"]
{extra}
"#,
            other.chain[0].thumbprint()
        );
        let config = GatewayConfig::from_toml(&text, &p.join("gateway.toml"), p).unwrap();
        Files { dir, config }
    }

    pub(crate) fn path(files: &Files) -> PathBuf {
        files.dir.path().join("gateway.toml")
    }

    #[test]
    fn credentials_and_trust_come_from_the_files() {
        let f = setup("");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        assert_eq!(creds.local.id, IkeId::Fqdn("vpn.test.example".into()));
        assert_eq!(creds.local.chain.len(), 1);
        assert_eq!(creds.trust.roots().len(), 1);
        let revoked: Vec<_> = f.config.revoked().into_iter().collect();
        assert!(creds.trust.is_revoked(&revoked[0]));
    }

    #[test]
    fn a_gateway_certificate_for_an_address_gives_an_ip_identity() {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Root", KeyAlgorithm::P256, validity).unwrap();
        let gw = ca
            .issue(
                CertKind::Gateway,
                "203.0.113.1",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.crt"), ca.cert().to_pem()).unwrap();
        std::fs::write(p.join("gw.crt"), gw.chain[0].to_pem()).unwrap();
        std::fs::write(p.join("gw.key"), gw.key.to_pem().as_bytes()).unwrap();
        let text = r#"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "gw.key"
[clients]
root_ca_files = ["ca.crt"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16"]
"#;
        let config = GatewayConfig::from_toml(text, &p.join("g.toml"), p).unwrap();
        let creds = load_credentials(&config, &p.join("g.toml")).unwrap();
        assert_eq!(creds.local.id, IkeId::Ip("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_identity_key() {
        let f = setup("");
        let mut config = f.config.clone();
        config.identity.key = f.dir.path().join("other.key");
        let err = load_credentials(&config, &path(&f)).unwrap_err();
        assert_eq!(err.field(), Some("identity.key"), "{err}");
    }

    #[test]
    fn a_missing_root_ca_file_names_its_field() {
        let f = setup("");
        let mut config = f.config.clone();
        config.clients.root_ca_files = vec![Path::new("/nonexistent/ca.crt").to_owned()];
        let err = load_credentials(&config, &path(&f)).unwrap_err();
        assert_eq!(err.field(), Some("clients.root_ca_files"), "{err}");
    }
}
