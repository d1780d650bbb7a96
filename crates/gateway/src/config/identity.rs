//! `[identity]`: who the gateway is to its clients.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// PEM file with the gateway certificate first, then any intermediates.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// IKE identity (FQDN); defaults to the certificate's first dNSName.
    #[serde(default)]
    pub id: Option<String>,
}

impl Identity {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err((
                "identity.id",
                "must not be empty (omit it to use the SAN)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_each_names_its_field;

    #[test]
    fn an_empty_identity_names_its_field() {
        assert_each_names_its_field(&[(
            "key = \"/etc/aovpn/gw.key\"",
            "key = \"k\"\nid = \" \"",
            "identity.id",
        )]);
    }
}
