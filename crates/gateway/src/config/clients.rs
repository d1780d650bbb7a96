//! `[clients]`: whom the gateway trusts, which certificates it takes, what it revokes, and
//! the default address pool.

use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use pki::Thumbprint;
use serde::Deserialize;

use super::FileError;

/// Azure accepts at most 20 trusted root certificates per gateway; so do we.
pub const MAX_ROOT_CAS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// PEM or DER files with trusted root CAs.
    #[serde(default)]
    pub root_ca_files: Vec<PathBuf>,
    /// Root CAs as Azure's portal takes them: the base64 body of the certificate on one line.
    #[serde(default)]
    pub root_ca_data: Vec<String>,
    /// SHA-1 thumbprints of revoked client certificates (hex, any case, ':' or spaces allowed).
    #[serde(default)]
    pub revoked_thumbprints: Vec<String>,
    /// A file of revoked thumbprints, one per line (`#` comments), read with the
    /// configuration; `aovpn gateway revoke` appends to it. Default `STATE_DIR/revoked.txt`
    /// (the gateway may write there); a file that does not exist yet is empty.
    #[serde(default)]
    pub revocation_file: Option<PathBuf>,
    /// The thumbprints read from `revocation_file`.
    #[serde(skip)]
    pub revoked_from_file: Vec<Thumbprint>,
    /// Which client certificates are accepted: `machine` (device tunnels: the certificate
    /// names a host) and `user` (it names a user: an rfc822Name or UPN). Both by default; a
    /// gateway for device tunnels only says `["machine"]`.
    #[serde(default = "default_accept")]
    pub accept: Vec<CertClass>,
    /// Virtual addresses handed to clients.
    pub pool_v4: Ipv4Net,
    #[serde(default)]
    pub pool_v6: Option<Ipv6Net>,
}

/// What a client certificate is for, from the names it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertClass {
    /// Names a host (dNSName, an address, or only a subject): a device tunnel.
    Machine,
    /// Names a user (rfc822Name or Microsoft UPN): a user tunnel.
    User,
}

impl CertClass {
    pub fn of(cert: &pki::Certificate) -> Self {
        if cert.rfc822_names().is_empty() && cert.upns().is_empty() {
            Self::Machine
        } else {
            Self::User
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::User => "user",
        }
    }
}

fn default_accept() -> Vec<CertClass> {
    vec![CertClass::Machine, CertClass::User]
}

impl Clients {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let roots = self.root_ca_files.len() + self.root_ca_data.len();
        if roots == 0 {
            return Err((
                "clients.root_ca_files",
                "no trusted root CA: set root_ca_files or root_ca_data".into(),
            ));
        }
        if roots > MAX_ROOT_CAS {
            return Err((
                "clients.root_ca_files",
                format!("{roots} root CAs configured, at most {MAX_ROOT_CAS} are allowed"),
            ));
        }
        for (i, data) in self.root_ca_data.iter().enumerate() {
            let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            let base64ish = !clean.is_empty()
                && clean
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
            if !base64ish {
                return Err((
                    "clients.root_ca_data",
                    format!("entry {} is not base64 certificate data", i + 1),
                ));
            }
        }
        for t in &self.revoked_thumbprints {
            if t.parse::<Thumbprint>().is_err() {
                return Err((
                    "clients.revoked_thumbprints",
                    format!("{t:?} is not a SHA-1 thumbprint (40 hex digits)"),
                ));
            }
        }
        if self.accept.is_empty() {
            return Err((
                "clients.accept",
                "accepts no certificate at all: list \"machine\", \"user\" or both".into(),
            ));
        }
        if self.pool_v4.prefix_len() > 30 {
            return Err((
                "clients.pool_v4",
                format!(
                    "{} leaves no room for clients (use /30 or larger)",
                    self.pool_v4
                ),
            ));
        }
        if self.pool_v4 != self.pool_v4.trunc() {
            return Err((
                "clients.pool_v4",
                format!("host bits set; did you mean {}?", self.pool_v4.trunc()),
            ));
        }
        let bad_v6 = self
            .pool_v6
            .filter(|n| n.prefix_len() > 126 || *n != n.trunc());
        if let Some(v6) = bad_v6 {
            return Err((
                "clients.pool_v6",
                format!("{v6} is not a usable pool prefix"),
            ));
        }
        Ok(())
    }
}

/// The thumbprints in a revocation file, one per line (`#` starts a comment); a file that
/// does not exist yet is empty. A bad line is named with its number.
pub fn read_revocation_file(file: &Path) -> Result<Vec<Thumbprint>, FileError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError::Io {
                path: file.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        out.push(entry.parse().map_err(|_| FileError::Invalid {
            path: file.to_owned(),
            why: format!(
                "line {}: {entry:?} is not a SHA-1 thumbprint (40 hex digits)",
                n + 1
            ),
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::tests::{GOOD, assert_each_names_its_field, field_of, load};

    #[test]
    fn each_clients_error_names_its_field() {
        assert_each_names_its_field(&[
            (
                "root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]",
                "root_ca_data = [\"not base64!\"]",
                "clients.root_ca_data",
            ),
            (
                "revoked_thumbprints = [\"aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd\"]",
                "revoked_thumbprints = [\"abc\"]",
                "clients.revoked_thumbprints",
            ),
            (
                "\"172.16.201.0/24\"",
                "\"172.16.201.0/31\"",
                "clients.pool_v4",
            ),
            (
                "\"172.16.201.0/24\"",
                "\"172.16.201.5/24\"",
                "clients.pool_v4",
            ),
            (
                "pool_v4 = \"172.16.201.0/24\"",
                "accept = []\npool_v4 = \"172.16.201.0/24\"",
                "clients.accept",
            ),
        ]);
    }

    #[test]
    fn no_root_ca_and_too_many_root_cas_are_refused() {
        let none = GOOD
            .replace("root_ca_files = [\"ca.crt\"]\n", "")
            .replace("root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]\n", "");
        assert_eq!(field_of(&none), "clients.root_ca_files");
        let many: Vec<String> = (0..21).map(|i| format!("\"ca{i}.crt\"")).collect();
        let text = GOOD
            .replace(
                "root_ca_files = [\"ca.crt\"]",
                &format!("root_ca_files = [{}]", many.join(",")),
            )
            .replace("root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]\n", "");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field(), Some("clients.root_ca_files"));
        assert!(err.to_string().contains("21 root CAs"), "{err}");
    }

    /// The revocation file: by default in the state directory; its thumbprints join the
    /// list; a bad line is named with its number.
    #[test]
    fn revocation_file() {
        let c = load(GOOD).unwrap();
        assert_eq!(
            c.clients.revocation_file,
            Some(PathBuf::from("/etc/aovpn/state/revoked.txt"))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked.txt");
        std::fs::write(
            &file,
            "# revoked by hand\n0102030405060708090a0b0c0d0e0f1011121314  # laptop 7\n\n",
        )
        .unwrap();
        let text = GOOD.replace(
            "pool_v4 =",
            &format!(
                "revocation_file = {:?}\npool_v4 =",
                file.display().to_string()
            ),
        );
        let c = load(&text).unwrap();
        assert_eq!(c.revoked().len(), 2);
        std::fs::write(&file, "0102030405060708090a0b0c0d0e0f1011121314\nnot-hex\n").unwrap();
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("clients.revocation_file") && err.contains("line 2"),
            "{err}"
        );
    }
}
