//! The VPN client configuration package: `aovpn gateway client-package` writes one for this
//! gateway, `aovpn profile import` makes a stored profile (and installs the gateway's root and
//! the client's certificate) from one of ours or from Azure's "Download VPN client" zip.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use agent::profile_store::Store;
use profile::client_package::{
    ClientPackage, DEVICE_PROFILE_ENTRY, GatewayDescription, SETTINGS_ENTRY, USER_PROFILE_ENTRY,
    write_zip,
};
use profile::vpn_settings::VpnSettings;
use profile::{ParsedProfile, Prefix, Scope, serialize};

#[derive(Debug, clap::Args)]
pub struct ClientPackageArgs {
    /// gateway.toml of the gateway the package describes.
    #[arg(long, short = 'c', default_value = "/etc/aovpn/gateway.toml")]
    config: PathBuf,
    /// Where to write the zip.
    #[arg(long, value_name = "FILE.zip")]
    out: PathBuf,
    /// The name clients dial (default: identity.id, else the certificate's first DNS name).
    /// The gateway's certificate must carry it.
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// The root CA of the gateway's certificate (PEM or DER), when it is neither at the end of
    /// identity.certificate nor among the client roots.
    #[arg(long, value_name = "FILE")]
    root: Option<PathBuf>,
}

/// The gateway's one IKE and ESP suite as a CryptographySuite, when its configuration names
/// its proposals (`None` with the defaults, which the profiles' own defaults meet); an error
/// when they cannot be said in one (the profiles would be refused).
fn gateway_suite(
    crypto: &gateway::config::Crypto,
) -> Result<Option<profile::CryptographySuite>, String> {
    use profile::plan::{DhGroup, Encryption, EspProposal, IkeProposal, Integrity, Prf};
    let (Some(ike), Some(esp)) = (crypto.ike_proposals.first(), crypto.esp_proposals.first())
    else {
        return Ok(None);
    };
    let unsayable = || {
        format!(
            "crypto proposals {ike} / {esp}: a Windows CryptographySuite cannot say them (no ChaCha20, SHA-512 or Curve25519 there); put a suite it can say first"
        )
    };
    let ike_p = ikev2::IkeProposal::parse(ike, crypto.allow_legacy).map_err(|e| e.to_string())?;
    let esp_p = ikev2::EspProposal::parse(esp, crypto.allow_legacy).map_err(|e| e.to_string())?;
    let encryption = |e: Option<&ipsec_crypto::EncrAlg>| {
        e.and_then(|e| Encryption::from_iana(e.iana(), e.key_length_attr()))
    };
    let ike = IkeProposal {
        encryption: encryption(ike_p.encr.first()).ok_or_else(unsayable)?,
        integrity: ike_p
            .integ
            .first()
            .and_then(|i| Integrity::from_iana(i.iana())),
        prf: ike_p
            .prf
            .first()
            .and_then(|p| Prf::from_iana(p.iana()))
            .ok_or_else(unsayable)?,
        dh_group: ike_p
            .dh
            .first()
            .and_then(|g| DhGroup::from_iana(g.iana()))
            .ok_or_else(unsayable)?,
    };
    let esp = EspProposal {
        encryption: encryption(esp_p.encr.first()).ok_or_else(unsayable)?,
        integrity: esp_p
            .integ
            .first()
            .and_then(|i| Integrity::from_iana(i.iana())),
        pfs_group: esp_p.dh.first().and_then(|g| DhGroup::from_iana(g.iana())),
    };
    profile::plan::suite_for(ike, esp)
        .map(Some)
        .ok_or_else(unsayable)
}

fn prefix(net: ipnet::IpNet) -> Prefix {
    Prefix {
        addr: net.network(),
        len: net.prefix_len(),
    }
}

/// `aovpn gateway client-package`.
pub fn write(args: &ClientPackageArgs) -> ExitCode {
    match build(args) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aovpn gateway client-package: {e}");
            ExitCode::from(2)
        }
    }
}

fn build(args: &ClientPackageArgs) -> Result<String, String> {
    let config = gateway::config::GatewayConfig::load(&args.config).map_err(|e| e.to_string())?;
    let credentials =
        gateway::credentials::load_credentials(&config, &args.config).map_err(|e| e.to_string())?;
    let chain = credentials
        .local
        .chain
        .iter()
        .map(|der| pki::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("identity.certificate: {e}"))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or("identity.certificate: no certificate")?;
    let server = match (&args.server, &config.identity.id) {
        (Some(s), _) => s.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => leaf
            .dns_names()
            .first()
            .cloned()
            .or_else(|| leaf.ip_addrs().first().map(ToString::to_string))
            .ok_or("the gateway's certificate names no DNS name or address: pass --server")?,
    };
    // The root clients will check the gateway against: the one its chain really ends at.
    let mut candidates: Vec<pki::Certificate> = match &args.root {
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            pki::load_certificates(&bytes).map_err(|e| format!("{}: {e}", file.display()))?
        }
        None => credentials.trust.roots().to_vec(),
    };
    if args.root.is_none() {
        candidates.extend(chain.iter().filter(|c| c.is_self_issued()).cloned());
    }
    let anchors = pki::TrustStore::with_roots(candidates).map_err(|e| e.to_string())?;
    let verified = anchors
        .verify(
            leaf,
            intermediates,
            pki::Role::Gateway {
                server_name: &server,
            },
            SystemTime::now(),
        )
        .map_err(|e| {
            format!(
                "clients could not check this gateway as \"{server}\" with {}: {e}",
                if args.root.is_some() {
                    "--root"
                } else {
                    "its chain and client roots (pass --root with the CA that issued the gateway's certificate)"
                }
            )
        })?;
    let root = anchors
        .roots()
        .get(verified.root_index)
        .ok_or("no root")?
        .clone();

    let settings = VpnSettings {
        vpn_server: server.clone(),
        vpn_types: vec!["IkeV2".into()],
        routes: config.network.routes.iter().copied().map(prefix).collect(),
        server_cert_root_cn: Some(root.subject().to_owned()),
        server_cert_issuer_cn: Some(leaf.issuer().to_owned()),
        ignored: Vec::new(),
    };
    let description = GatewayDescription {
        suite: gateway_suite(&config.crypto)?,
        dns_servers: config.network.dns.clone(),
        dns_domains: config.network.dns_domains.clone(),
        ..GatewayDescription::from_settings(&settings, vec![root.thumbprint().to_string()])
    };
    let label = server.split('.').next().unwrap_or("aovpn").to_owned();
    let mut entries = vec![
        (SETTINGS_ENTRY.to_owned(), settings.to_xml().into_bytes()),
        (
            "Generic/VpnServerRoot.cer".to_owned(),
            root.der().as_ref().to_vec(),
        ),
        (
            "aovpn/VpnServerRoot.pem".to_owned(),
            root.to_pem().into_bytes(),
        ),
    ];
    for (entry, scope, profile) in [
        (
            DEVICE_PROFILE_ENTRY,
            Scope::Device,
            description.device_profile(),
        ),
        (USER_PROFILE_ENTRY, Scope::User, description.user_profile()),
    ] {
        let xml = serialize::to_profile_xml(&profile);
        let stem = entry.trim_end_matches(".xml");
        let name = format!(
            "{label}-{}",
            if scope == Scope::Device {
                "device"
            } else {
                "user"
            }
        );
        entries.push((
            format!("{stem}.escaped.txt"),
            serialize::to_escaped(&xml).into_bytes(),
        ));
        entries.push((
            format!("{stem}.syncml.xml"),
            serialize::to_syncml(&name, Some(scope), &xml).into_bytes(),
        ));
        entries.push((entry.to_owned(), xml.into_bytes()));
    }
    entries.push(("aovpn/README.txt".to_owned(), readme(&server).into_bytes()));
    let zip = write_zip(&entries).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, zip).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut summary = format!(
        "wrote {}: gateway {server}, root {} ({}), {} route(s)\n",
        args.out.display(),
        root.subject(),
        root.thumbprint(),
        settings.routes.len()
    );
    for (name, _) in &entries {
        let _ = writeln!(summary, "  {name}");
    }
    Ok(summary)
}

fn readme(server: &str) -> String {
    format!(
        "VPN client configuration for {server}\n\
         \n\
         Generic/VpnSettings.xml and Generic/VpnServerRoot.cer are laid out as in Azure's\n\
         client package: any IKEv2 client takes the server name (also the gateway's IKE\n\
         identity), the routes and the root of the gateway's certificate from them.\n\
         \n\
         Linux (aovpn), as root, with the machine's or the user's certificate and key:\n\
         \x20 aovpn profile import THIS.zip --scope device --cert machine.pem --key machine.key --trust-root\n\
         \x20 aovpn profile import THIS.zip --scope user --cert user.pem --key user.key\n\
         \n\
         Windows: aovpn/DeviceTunnel.xml and aovpn/UserTunnel.xml are ProfileXML for the\n\
         MDM_VPNv2_01 WMI class (the .escaped.txt forms for the devicecert.ps1 way), the\n\
         .syncml.xml forms for Intune or another MDM. Install VpnServerRoot.cer in the\n\
         machine's Trusted Root Certification Authorities store first.\n"
    )
}

/// `aovpn profile import` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The package zip: Azure's (portal: Point-to-site configuration, Download VPN client) or
    /// one `aovpn gateway client-package` wrote.
    file: PathBuf,
    /// Which tunnel to make: the machine's device tunnel or the user's tunnel (EAP-TLS).
    #[arg(long, value_enum)]
    scope: crate::profile_cmd::ScopeArg,
    /// Profile name (default: the gateway's first name label and the scope, e.g. gw-device).
    #[arg(long)]
    name: Option<String>,
    /// The certificate to connect with (PEM, intermediates after it): installed as the
    /// machine certificate (device) or the user's certificate (user).
    #[arg(long, requires = "key", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "cert", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Replace a different certificate already installed there.
    #[arg(long)]
    force: bool,
    /// Trust the package's root CA for the gateway's certificate (needed when it is not
    /// trusted yet: every profile on this machine then accepts gateways it vouches for).
    #[arg(long)]
    trust_root: bool,
}

/// Largest package read (Azure's is a few hundred kB, with its installers).
const MAX_PACKAGE_BYTES: u64 = 64 << 20;

/// What an import did, for the user.
pub struct Imported {
    pub lines: Vec<String>,
}

/// Import a package: returns what was done, or why not.
pub fn import(
    store: &Store,
    system_dir: &Path,
    args: &ImportArgs,
) -> Result<Imported, crate::profile_cmd::Failure> {
    use crate::profile_cmd::Failure;
    let other = Failure::Other;
    let file = args.file.display().to_string();
    let size = std::fs::metadata(&args.file)
        .map_err(|e| other(format!("{file}: {e}")))?
        .len();
    if size > MAX_PACKAGE_BYTES {
        return Err(other(format!(
            "{file}: {size} bytes: not a client package (at most {MAX_PACKAGE_BYTES})"
        )));
    }
    let bytes = std::fs::read(&args.file).map_err(|e| other(format!("{file}: {e}")))?;
    let package = ClientPackage::read(&bytes).map_err(|e| other(format!("{file}: {e}")))?;
    let scope = Scope::from(args.scope);
    let mut lines = Vec::new();

    let mut roots = Vec::new();
    for der_or_pem in &package.roots {
        let certs = pki::load_certificates(der_or_pem)
            .map_err(|e| other(format!("{file}: Generic/VpnServerRoot.cer: {e}")))?;
        roots.extend(certs);
    }
    if let Some(r) = roots.iter().find(|r| !(r.is_ca() && r.is_self_issued())) {
        return Err(other(format!(
            "{file}: Generic/VpnServerRoot.cer holds {}, which is not a root CA",
            r.subject()
        )));
    }
    let thumbprints: Vec<String> = roots.iter().map(|r| r.thumbprint().to_string()).collect();
    let settings = &package.settings;
    let (xml, origin) = match (scope, &package.device_profile, &package.user_profile) {
        (Scope::Device, Some(xml), _) | (Scope::User, _, Some(xml)) => {
            (xml.clone(), "the package's ready profile")
        }
        _ => {
            let d = GatewayDescription::from_settings(settings, thumbprints.clone());
            let profile = match scope {
                Scope::Device => d.device_profile(),
                Scope::User => d.user_profile(),
            };
            (
                serialize::to_profile_xml(&profile),
                "made from VpnSettings.xml",
            )
        }
    };
    let label = settings.vpn_server.split('.').next().unwrap_or("vpn");
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "{label}-{}",
            match scope {
                Scope::Device => "device",
                Scope::User => "user",
            }
        )
    });
    let source = format!("{file}!{}", origin);
    let parsed = ParsedProfile::parse_str(&source, &xml).map_err(Failure::Refused)?;
    parsed.validate(Some(scope)).map_err(Failure::Refused)?;
    if store.get(&name).is_ok() {
        return Err(other(format!(
            "a profile named \"{name}\" exists: remove it or pass --name"
        )));
    }
    // Everything checked before anything is written: a refused import changes nothing.
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let dir = match scope {
                Scope::Device => system_dir.join("machine"),
                // Where the user's key helper looks (its `--config-dir` default).
                Scope::User => agent::profile_store::user_config_dir().join("user"),
            };
            Some((
                dir.clone(),
                checked_identity(&dir, cert, key, args.force).map_err(other)?,
            ))
        }
        _ => None,
    };
    let ca_dir = system_dir.join("ca");
    let trusted: Vec<String> = agent::config::ca_files_in(&ca_dir)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter_map(|b| pki::load_certificates(&b).ok())
        .flatten()
        .map(|c| c.thumbprint().to_string())
        .collect();
    let new_roots: Vec<(&pki::Certificate, &String)> = roots
        .iter()
        .zip(&thumbprints)
        .filter(|(_, t)| !trusted.contains(t))
        .collect();
    if !new_roots.is_empty() && !args.trust_root {
        let named: Vec<String> = new_roots
            .iter()
            .map(|(r, t)| format!("{} (SHA-1 {t})", r.subject()))
            .collect();
        return Err(other(format!(
            "the package's root CA is not trusted here yet: {}. Every profile on this machine would accept gateways it vouches for; check it (with whoever runs the gateway), then pass --trust-root",
            named.join(", ")
        )));
    }
    for (root, thumbprint) in roots.iter().zip(&thumbprints) {
        let path = ca_dir.join(format!("{thumbprint}.pem"));
        if trusted.contains(thumbprint) {
            lines.push(format!(
                "root {} ({thumbprint}) already trusted",
                root.subject()
            ));
            continue;
        }
        install(&path, root.to_pem().as_bytes(), 0o644).map_err(|e| {
            other(format!(
                "cannot install the gateway's root CA in {}: {e} (as root, run the import once, or copy it there)",
                ca_dir.display()
            ))
        })?;
        lines.push(format!(
            "root {} ({thumbprint}) installed in {}",
            root.subject(),
            path.display()
        ));
    }
    if let Some((dir, identity)) = identity {
        identity.install(&dir).map_err(other)?;
        lines.push(format!(
            "{} certificate installed in {}",
            match scope {
                Scope::Device => "machine",
                Scope::User => "user",
            },
            dir.display()
        ));
    }
    let (stored, warnings) = store.add(&name, scope, &parsed, xml.as_bytes())?;
    lines.extend(warnings.iter().map(ToString::to_string));
    lines.push(format!(
        "added {} profile \"{}\" for {} ({}; {} route(s)) in {}",
        stored.scope,
        stored.name,
        crate::profile_cmd::servers(&stored),
        origin,
        stored.parsed.profile.routes.len(),
        stored.dir.display()
    ));
    if !settings.ignored.is_empty() {
        lines.push(format!(
            "not used from VpnSettings.xml: {}",
            settings.ignored.join(", ")
        ));
    }
    if package.device_profile.is_none() && package.user_profile.is_none() {
        lines.push(
            "Azure's package names no DNS servers: add DomainNameInformation to the profile if names behind the gateway must resolve through it".into(),
        );
    }
    Ok(Imported { lines })
}

/// Write a file through a temporary name, with `mode`.
fn install(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("new")
    ));
    // A leftover (or planted) temporary name goes first; then a file of our own, never one
    // reached through a link, with the mode set whatever the umask.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A certificate chain and its key, checked to belong together, ready to install.
struct CheckedIdentity {
    chain_pem: String,
    key_pem: pki::Zeroizing<String>,
}

impl CheckedIdentity {
    /// `dir/certificate.pem` and `dir/key.pem` (0600), each written whole and renamed into
    /// place, the key first.
    fn install(&self, dir: &Path) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", dir.display());
        install(&dir.join("key.pem"), self.key_pem.as_bytes(), 0o600).map_err(err)?;
        install(
            &dir.join("certificate.pem"),
            self.chain_pem.as_bytes(),
            0o644,
        )
        .map_err(err)
    }
}

/// Reads and checks a certificate chain and its key for `dir` (refusing to replace another
/// certificate there without `force`).
fn checked_identity(
    dir: &Path,
    cert: &Path,
    key: &Path,
    force: bool,
) -> Result<CheckedIdentity, String> {
    let chain_bytes = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let chain =
        pki::load_certificates(&chain_bytes).map_err(|e| format!("{}: {e}", cert.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{}: no certificate", cert.display()))?;
    let key_bytes =
        pki::Zeroizing::new(std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?);
    let private =
        pki::PrivateKey::load(&key_bytes).map_err(|e| format!("{}: {e}", key.display()))?;
    let spki = private
        .public_key_spki()
        .map_err(|e| format!("{}: {e}", key.display()))?;
    if spki.as_slice() != leaf.spki_der() {
        return Err(format!(
            "{} is not the key of {}",
            key.display(),
            cert.display()
        ));
    }
    let cert_path = dir.join("certificate.pem");
    if let Ok(existing) = std::fs::read(&cert_path)
        && pki::load_certificates(&existing)
            .ok()
            .and_then(|c| c.first().map(pki::Certificate::thumbprint))
            != Some(leaf.thumbprint())
        && !force
    {
        return Err(format!(
            "{} holds another certificate: pass --force to replace it",
            cert_path.display()
        ));
    }
    Ok(CheckedIdentity {
        chain_pem: pki::certificates_to_pem(&chain),
        key_pem: private.to_pem(),
    })
}
