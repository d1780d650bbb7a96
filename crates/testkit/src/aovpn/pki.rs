//! A PKI made with `aovpn pki`: a root, the gateway's certificate, machine and user
//! certificates, in the forms each test needs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{path_str, run_aovpn};

/// Key algorithm for [`Pki::issue`] (the `--key` values of `aovpn pki`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiKey {
    /// ECDSA P-256 (aovpn's default).
    P256,
    /// RSA 2048.
    Rsa2048,
    /// RSA 4096 (certificates large enough to force IKE fragmentation).
    Rsa4096,
}

impl PkiKey {
    fn arg(self) -> &'static str {
        match self {
            PkiKey::P256 => "p256",
            PkiKey::Rsa2048 => "rsa2048",
            PkiKey::Rsa4096 => "rsa4096",
        }
    }
}

/// What [`Pki::issue`] makes.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// The gateway certificate's name (DNS name or IP literal; an IP gets dNSName + iPAddress).
    pub gateway_name: String,
    /// Machine certificate name (FQDN).
    pub machine_name: String,
    /// User certificate name (UPN).
    pub user_name: String,
    /// Key algorithm for every key, CAs included.
    pub key: PkiKey,
    /// Issue the end-entity certificates from an intermediate CA below the root.
    pub intermediate: bool,
}

impl PkiOptions {
    /// P-256 keys, no intermediate, machine `client1.corp.example`, user `alice@corp.example`.
    pub fn new(gateway_name: &str) -> Self {
        PkiOptions {
            gateway_name: gateway_name.to_owned(),
            machine_name: "client1.corp.example".to_owned(),
            user_name: "alice@corp.example".to_owned(),
            key: PkiKey::P256,
            intermediate: false,
        }
    }
    /// Sets the key algorithm.
    pub fn key(mut self, key: PkiKey) -> Self {
        self.key = key;
        self
    }
    /// Issues end-entity certificates from an intermediate CA.
    pub fn intermediate(mut self, yes: bool) -> Self {
        self.intermediate = yes;
        self
    }
}

/// A root CA (optionally an intermediate) and gateway, machine and user certificates, made by
/// `aovpn pki`. Certificate files hold the leaf first, then any intermediate.
#[derive(Debug, Clone)]
pub struct Pki {
    bin: PathBuf,
    dir: PathBuf,
    key: PkiKey,
    /// The directory of the CA that issues end entities (root or intermediate).
    issuer_dir: PathBuf,
    /// Root CA certificate (what peers trust).
    pub ca_cert: PathBuf,
    /// Intermediate CA certificate alone, when there is one.
    pub intermediate_cert: Option<PathBuf>,
    /// Gateway certificate (+ intermediate) and key.
    pub gateway_cert: PathBuf,
    /// Gateway private key (PKCS#8 PEM).
    pub gateway_key: PathBuf,
    /// Machine (device tunnel) certificate and key.
    pub machine_cert: PathBuf,
    /// Machine private key.
    pub machine_key: PathBuf,
    /// User certificate and key.
    pub user_cert: PathBuf,
    /// User private key.
    pub user_key: PathBuf,
    /// The options it was made with.
    pub options: PkiOptions,
}

impl Pki {
    /// Creates `dir` and issues everything with `bin pki init/issue`.
    pub fn issue(bin: &Path, dir: &Path, options: &PkiOptions) -> io::Result<Pki> {
        fs::create_dir_all(dir)?;
        let root = dir.join("root");
        let key = options.key.arg();
        run_aovpn(
            bin,
            &[
                "pki",
                "init",
                "--out",
                path_str(&root)?,
                "--name",
                "testkit Root CA",
                "--key",
                key,
            ],
        )?;
        let (issuer_dir, intermediate_cert) = if options.intermediate {
            let sub = dir.join("intermediate");
            run_aovpn(
                bin,
                &[
                    "pki",
                    "issue",
                    "--ca",
                    path_str(&root)?,
                    "--kind",
                    "intermediate",
                    "--name",
                    "testkit Issuing CA",
                    "--out",
                    path_str(&sub)?,
                    "--key",
                    key,
                ],
            )?;
            // ca.crt holds the intermediate, then the root: keep the first block alone.
            let chain = fs::read_to_string(sub.join("ca.crt"))?;
            let end = "-----END CERTIFICATE-----";
            let first = chain
                .find(end)
                .map(|i| &chain[..i + end.len()])
                .ok_or_else(|| io::Error::other("intermediate ca.crt has no certificate"))?;
            let only = dir.join("intermediate.crt");
            fs::write(&only, format!("{first}\n"))?;
            (sub, Some(only))
        } else {
            (root.clone(), None)
        };
        let mut pki = Pki {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            key: options.key,
            issuer_dir,
            ca_cert: root.join("ca.crt"),
            intermediate_cert,
            gateway_cert: PathBuf::new(),
            gateway_key: PathBuf::new(),
            machine_cert: PathBuf::new(),
            machine_key: PathBuf::new(),
            user_cert: PathBuf::new(),
            user_key: PathBuf::new(),
            options: options.clone(),
        };
        (pki.gateway_cert, pki.gateway_key) =
            pki.issue_end_entity("gateway", &options.gateway_name)?;
        (pki.machine_cert, pki.machine_key) =
            pki.issue_end_entity("machine", &options.machine_name)?;
        (pki.user_cert, pki.user_key) = pki.issue_end_entity("user", &options.user_name)?;
        Ok(pki)
    }

    /// Issues one more certificate (`kind` = gateway, machine or user) from the same CA;
    /// returns (certificate, key).
    pub fn issue_end_entity(&self, kind: &str, name: &str) -> io::Result<(PathBuf, PathBuf)> {
        let out = self.dir.join(format!("{kind}-{name}"));
        run_aovpn(
            &self.bin,
            &[
                "pki",
                "issue",
                "--ca",
                path_str(&self.issuer_dir)?,
                "--kind",
                kind,
                "--name",
                name,
                "--out",
                path_str(&out)?,
                "--key",
                self.key.arg(),
            ],
        )?;
        // `out` is this certificate's own directory: its one .crt and .key are the ones just
        // written, whatever file name `aovpn pki issue` made of `name`.
        let issued = |extension: &str| -> io::Result<PathBuf> {
            std::fs::read_dir(&out)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == extension))
                .ok_or_else(|| io::Error::other(format!("no .{extension} in {}", out.display())))
        };
        Ok((issued("crt")?, issued("key")?))
    }

    /// The certificate's SHA-1 thumbprint as `aovpn pki thumbprint` prints it.
    pub fn thumbprint(&self, cert: &Path) -> io::Result<String> {
        let out = run_aovpn(&self.bin, &["pki", "thumbprint", path_str(cert)?])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Splits a PEM chain file into one file per certificate (`STEM-0.crt`, `STEM-1.crt`, …
    /// next to it), for peers such as swanctl that load one certificate per file.
    pub fn split_chain(cert: &Path) -> io::Result<Vec<PathBuf>> {
        let text = fs::read_to_string(cert)?;
        let end = "-----END CERTIFICATE-----";
        let stem = cert
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| io::Error::other("certificate path has no file name"))?;
        let dir = cert.parent().unwrap_or(Path::new("."));
        let mut files = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(end) {
            let block = rest[..i + end.len()].trim();
            let file = dir.join(format!("{stem}-{}.crt", files.len()));
            fs::write(&file, format!("{block}\n"))?;
            files.push(file);
            rest = &rest[i + end.len()..];
        }
        Ok(files)
    }
}
