//! A test PKI made with strongSwan's own `pki` tool (so that strongSwan's view of the
//! certificates is strongSwan's).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{TOOL_PLUGINS, command_error};

/// Key algorithm for [`TestPki`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048 made by `pki --gen` (PKCS#1 PEM), like Azure's documented certificates.
    Rsa2048,
    /// ECDSA P-256 made by `openssl genpkey` (PKCS#8 PEM, the form rcgen and most tools write).
    EcdsaP256Pkcs8,
}

/// A CA, a gateway certificate and a client certificate made with strongSwan's `pki` tool.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Gateway certificate (SAN = [`TestPki::GATEWAY_ID`], EKU serverAuth + ikeIntermediate).
    pub gateway_cert: PathBuf,
    /// Gateway private key.
    pub gateway_key: PathBuf,
    /// Client certificate (subject [`TestPki::CLIENT_DN`], EKU clientAuth).
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// The gateway's IKE identity (its certificate's DNS SAN).
    pub const GATEWAY_ID: &'static str = "vpn.testkit.example";
    /// The client's IKE identity (its certificate's subject).
    pub const CLIENT_DN: &'static str = "C=XX, O=aovpn testkit, CN=client1";
    /// The CA's subject.
    pub const CA_DN: &'static str = "C=XX, O=aovpn testkit, CN=testkit Root CA";

    /// Generates the CA and both end-entity certificates under `dir`.
    pub fn generate(dir: &Path, kind: KeyKind) -> io::Result<TestPki> {
        fs::create_dir_all(dir)?;
        let conf = dir.join("pki.conf");
        fs::write(&conf, format!("pki {{\n    load = {TOOL_PLUGINS}\n}}\n"))?;
        // `fixed` is a space-separated flag list; `args` are appended as given (may hold spaces).
        let run = |program: &str, fixed: &str, args: &[&OsStr], out_file: &Path| {
            let out = Command::new(program)
                .args(fixed.split(' '))
                .args(args)
                .env("STRONGSWAN_CONF", &conf)
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(command_error(&format!("{program} {fixed} {args:?}"), &out));
            }
            fs::write(out_file, &out.stdout)
        };
        let gen_key = |path: &Path| match kind {
            KeyKind::Rsa2048 => run(
                "pki",
                "--gen --type rsa --size 2048 --outform pem",
                &[],
                path,
            ),
            KeyKind::EcdsaP256Pkcs8 => run(
                "openssl",
                "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
                &[],
                path,
            ),
        };
        let pki = TestPki {
            ca_cert: dir.join("ca.crt"),
            gateway_cert: dir.join("gateway.crt"),
            gateway_key: dir.join("gateway.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        let ca_key = dir.join("ca.key");
        let os = OsStr::new;
        gen_key(&ca_key)?;
        run(
            "pki",
            "--self --ca --lifetime 3650 --type priv --outform pem",
            &[os("--in"), ca_key.as_os_str(), os("--dn"), os(Self::CA_DN)],
            &pki.ca_cert,
        )?;
        let issue = "--issue --type priv --lifetime 730 --outform pem";
        let ca = [
            os("--cacert"),
            pki.ca_cert.as_os_str(),
            os("--cakey"),
            ca_key.as_os_str(),
        ];
        gen_key(&pki.gateway_key)?;
        let gw_dn = format!("C=XX, O=aovpn testkit, CN={}", Self::GATEWAY_ID);
        let gw_args = [
            os("--in"),
            pki.gateway_key.as_os_str(),
            os("--dn"),
            os(&gw_dn),
        ];
        let gw_flags = [
            os("--san"),
            os(Self::GATEWAY_ID),
            os("--flag"),
            os("serverAuth"),
            os("--flag"),
            os("ikeIntermediate"),
        ];
        run(
            "pki",
            issue,
            &[&gw_args[..], &ca, &gw_flags].concat(),
            &pki.gateway_cert,
        )?;
        gen_key(&pki.client_key)?;
        let cl_args = [
            os("--in"),
            pki.client_key.as_os_str(),
            os("--dn"),
            os(Self::CLIENT_DN),
        ];
        let cl_flags = [os("--flag"), os("clientAuth")];
        run(
            "pki",
            issue,
            &[&cl_args[..], &ca, &cl_flags].concat(),
            &pki.client_cert,
        )?;
        Ok(pki)
    }
}
