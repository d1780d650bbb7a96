//! `aovpn pki ...`: a small CA for gateways, machines and users.
//!
//! A CA directory holds `ca.crt` (PEM: this CA first, then the CAs above it up to the root)
//! and `ca.key` (PEM PKCS#8, mode 0600). `init` creates a root CA directory;
//! `issue --kind intermediate` creates a subordinate CA directory; other kinds write
//! `NAME.crt` (the certificate, then any intermediates), `NAME.key` and optionally `NAME.p12`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use pki::{
    CertKind, CertificateAuthority, KeyAlgorithm, Pkcs12Encryption, PrivateKey, Validity,
    Zeroizing, certificates_to_pem, load_certificate, load_certificates,
};

/// Backdating of notBefore, so peers with slightly slow clocks accept a fresh certificate.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PkiCommand {
    /// Create a self-signed root CA: DIR/ca.crt and DIR/ca.key.
    Init(InitArgs),
    /// Issue a gateway, machine, user or intermediate CA certificate from a CA directory.
    Issue(IssueArgs),
    /// Print a certificate's SHA-1 thumbprint (uppercase hex, the Azure revoked-cert form).
    Thumbprint {
        /// Certificate file: PEM (first certificate is used), DER or one-line base64.
        cert: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// Directory to create the CA in (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Subject common name of the root CA.
    #[arg(long, default_value = "aovpn Root CA")]
    name: String,
    /// Key algorithm.
    #[arg(long, value_enum, default_value_t = KeyArg::P256)]
    key: KeyArg,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// CA directory (ca.crt, ca.key) to sign with.
    #[arg(long)]
    ca: PathBuf,
    /// What to issue.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Gateway: its DNS name (or IP); machine: its FQDN; user: user@domain (UPN);
    /// intermediate: the CA's common name.
    #[arg(long)]
    name: String,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Key algorithm.
    #[arg(long, value_enum, default_value_t = KeyArg::P256)]
    key: KeyArg,
    /// Also write NAME.p12 (key, certificate and chain), for Windows import.
    #[arg(long, requires = "password_file")]
    p12: bool,
    /// File whose first line is the PKCS#12 password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Encrypt the PKCS#12 with 3DES/SHA-1 (pre-2018 Windows) instead of AES-256/SHA-256.
    #[arg(long, requires = "p12")]
    p12_legacy: bool,
    /// Validity in days (default: 365, intermediate CAs 1825).
    #[arg(long)]
    days: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyArg {
    P256,
    P384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl From<KeyArg> for KeyAlgorithm {
    fn from(k: KeyArg) -> Self {
        match k {
            KeyArg::P256 => Self::P256,
            KeyArg::P384 => Self::P384,
            KeyArg::Rsa2048 => Self::Rsa2048,
            KeyArg::Rsa3072 => Self::Rsa3072,
            KeyArg::Rsa4096 => Self::Rsa4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KindArg {
    Gateway,
    Machine,
    User,
    Intermediate,
}

pub fn run(args: PkiArgs) -> ExitCode {
    let result = match args.command {
        PkiCommand::Init(a) => init(&a),
        PkiCommand::Issue(a) => issue(&a),
        PkiCommand::Thumbprint { cert } => thumbprint(&cert),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "aovpn pki: error: {}",
                crate::runtime::with_causes(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn validity(days: u32) -> Result<Validity> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let start = SystemTime::now() - CLOCK_SKEW;
    Ok(Validity {
        not_before: start,
        not_after: start + CLOCK_SKEW + days_to_duration(days),
    })
}

fn days_to_duration(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

fn init(a: &InitArgs) -> Result<()> {
    let ca = CertificateAuthority::new_root(&a.name, a.key.into(), validity(a.days)?)
        .context("creating root CA")?;
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let crt = a.out.join("ca.crt");
    let key = a.out.join("ca.key");
    ensure_absent(&[&crt, &key])?;
    write_new(&key, ca.key().to_pem().as_bytes(), 0o600)?;
    write_new(&crt, ca.cert().to_pem().as_bytes(), 0o644)?;
    println!("root CA:    {}", ca.cert().subject());
    println!("certificate {}", crt.display());
    println!("key         {}", key.display());
    println!("thumbprint  {}", ca.cert().thumbprint());
    println!("Azure public cert data (one line, for the gateway's trusted roots):");
    println!("{}", ca.cert().to_base64_line());
    Ok(())
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority> {
    let crt = dir.join("ca.crt");
    let key = dir.join("ca.key");
    let chain = load_certificates(&read(&crt)?).with_context(|| format!("{}", crt.display()))?;
    let key_pem = Zeroizing::new(read(&key)?);
    let key = PrivateKey::load(&key_pem).with_context(|| format!("{}", key.display()))?;
    CertificateAuthority::from_parts(chain, key).with_context(|| format!("CA in {}", dir.display()))
}

fn issue(a: &IssueArgs) -> Result<()> {
    let ca = load_ca(&a.ca)?;
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let kind = match a.kind {
        KindArg::Gateway => CertKind::Gateway,
        KindArg::Machine => CertKind::Machine,
        KindArg::User => CertKind::User,
        KindArg::Intermediate => {
            if a.p12 {
                bail!("--p12 is for end-entity certificates, not intermediate CAs");
            }
            let days = a.days.unwrap_or(1825);
            let sub = ca
                .issue_intermediate(&a.name, a.key.into(), validity(days)?)
                .context("issuing intermediate CA")?;
            let crt = a.out.join("ca.crt");
            let key = a.out.join("ca.key");
            ensure_absent(&[&crt, &key])?;
            write_new(&key, sub.key().to_pem().as_bytes(), 0o600)?;
            write_new(&crt, certificates_to_pem(sub.chain()).as_bytes(), 0o644)?;
            println!("intermediate CA: {}", sub.cert().subject());
            println!("certificate {} (with its issuers)", crt.display());
            println!("key         {}", key.display());
            println!("thumbprint  {}", sub.cert().thumbprint());
            return Ok(());
        }
    };
    let days = a.days.unwrap_or(365);
    let id = ca
        .issue(kind, &a.name, a.key.into(), validity(days)?)
        .with_context(|| format!("issuing {:?} certificate for {:?}", a.kind, a.name))?;
    let stem = file_stem(&a.name)?;
    let crt = a.out.join(format!("{stem}.crt"));
    let key = a.out.join(format!("{stem}.key"));
    let p12 = a.out.join(format!("{stem}.p12"));
    ensure_absent(&[&crt, &key, &p12])?;
    // The certificate file carries the intermediates a peer needs (not the root it trusts).
    let mut sent: Vec<_> = id.chain.iter().take(1).cloned().collect();
    sent.extend(
        id.chain
            .iter()
            .skip(1)
            .filter(|c| !c.is_self_issued())
            .cloned(),
    );
    let p12_bytes = match (a.p12, &a.password_file) {
        (true, Some(pw_file)) => {
            let password = read_password(pw_file)?;
            let enc = if a.p12_legacy {
                Pkcs12Encryption::Legacy3DesSha1
            } else {
                Pkcs12Encryption::Aes256Sha256
            };
            Some(id.to_pkcs12(&password, enc).context("writing PKCS#12")?)
        }
        (true, None) => bail!("--p12 needs --password-file"),
        (false, _) => None,
    };
    write_new(&key, id.key.to_pem().as_bytes(), 0o600)?;
    write_new(&crt, certificates_to_pem(&sent).as_bytes(), 0o644)?;
    if let Some(bytes) = p12_bytes {
        write_new(&p12, &bytes, 0o600)?;
    }
    let leaf = sent.first().context("issued chain is empty")?;
    println!("{:?} certificate: {}", a.kind, leaf.subject());
    println!("certificate {}", crt.display());
    println!("key         {}", key.display());
    if a.p12 {
        println!("pkcs12      {}", p12.display());
    }
    println!("thumbprint  {}", leaf.thumbprint());
    Ok(())
}

fn thumbprint(path: &Path) -> Result<()> {
    let cert = load_certificate(&read(path)?).with_context(|| format!("{}", path.display()))?;
    println!("{}", cert.thumbprint());
    Ok(())
}

/// A file name from a certificate name: keeps `[A-Za-z0-9._@-]`, maps the rest to `_`.
fn file_stem(name: &str) -> Result<String> {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        bail!("--name {name:?} does not make a usable file name");
    }
    Ok(stem)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The first line of the file, like OpenSSL's `-passin file:`.
fn read_password(path: &Path) -> Result<Zeroizing<String>> {
    let raw = Zeroizing::new(read(path)?);
    let text = std::str::from_utf8(&raw)
        .with_context(|| format!("{}: password is not UTF-8", path.display()))?;
    let line = text
        .split('\n')
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    Ok(Zeroizing::new(line.to_owned()))
}

/// Fails before anything is written if any output exists, so a run never half-overwrites.
fn ensure_absent(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if p.symlink_metadata().is_ok() {
            bail!("{} already exists; refusing to overwrite", p.display());
        }
    }
    Ok(())
}

/// Writes a file that must not exist yet, with `mode` from the start (keys are never
/// readable by others, not even briefly).
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite)", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}
