//! Our certificate and key (readable, a pair, the key private, the chain to the roots with the
//! right role, validity), the roots' own validity, and whether the certificate is of the
//! tunnel's kind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, Verdict, bad, ok};

/// A certificate that expires sooner than this is reported.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// What the tunnel would use: its certificate and key files, and the roots.
#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Vec<PathBuf>,
}

/// Our certificate and key: readable, a pair, the key private to its owner, the chain to the
/// roots with the client role (EKU), revocation and validity, and how long it has left.
pub fn check_credentials(files: &Files, unix_now: u64) -> Vec<Check> {
    let mut out = Vec::new();
    let chain = match std::fs::read(&files.cert)
        .map_err(|e| e.to_string())
        .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()))
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) | Err(_) => {
            out.push(bad(
                "certificate",
                Verdict::Problem,
                format!("{}: no readable certificate", files.cert.display()),
                "install the certificate (PEM, leaf first) where the profile's tunnel expects it",
            ));
            return out;
        }
    };
    let leaf = &chain[0];
    out.push(ok(
        "certificate",
        format!("{} ({})", leaf.subject(), files.cert.display()),
    ));
    out.push(check_key(&files.key, leaf));
    let mut trust = pki::TrustStore::new();
    let mut roots = Vec::new();
    let mut root_certs = Vec::new();
    for file in &files.ca {
        let certs = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()));
        match certs {
            Ok(certs) => {
                for c in certs {
                    roots.push(c.subject().to_owned());
                    root_certs.push(c.clone());
                    let _ = trust.add_root(c);
                }
            }
            Err(e) => out.push(bad(
                "roots",
                Verdict::Problem,
                format!("{}: {e}", file.display()),
                "the roots must be PEM certificates",
            )),
        }
    }
    for root in &root_certs {
        out.extend(check_root(root, unix_now));
    }
    if roots.is_empty() {
        out.push(bad(
            "roots",
            Verdict::Problem,
            "no trusted root configured",
            "install the root that issued the gateway's certificate (/etc/aovpn/ca/*.pem for the device tunnel)",
        ));
        return out;
    }
    let at = std::time::UNIX_EPOCH + Duration::from_secs(unix_now);
    let eku_refused = leaf
        .eku()
        .filter(|e| !e.client_auth && !e.any)
        .map(|e| eku_names(&e));
    // The CA that issued the last certificate of the file: the file must go on to it or a
    // root must be it (checked by name, as path building does).
    let top = chain.last().unwrap_or(leaf);
    let issuer_missing = !top.is_self_issued()
        && !root_certs
            .iter()
            .any(|r| r.subject_der() == top.issuer_der());
    match trust.verify(leaf, &chain[1..], pki::Role::Client, at) {
        Ok(_) => out.push(ok(
            "chain",
            format!("ours chains to a trusted root, client authentication allowed ({})", roots.join("; ")),
        )),
        Err(_) if eku_refused.is_some() => out.push(bad(
            "chain",
            Verdict::Problem,
            format!(
                "our certificate is not for client authentication: its extended key usage is {}",
                eku_refused.unwrap_or_default()
            ),
            "a tunnel needs a certificate with EKU clientAuth (1.3.6.1.5.5.7.3.2): request one from a client-authentication template (aovpn pki issue --kind machine or user), not the gateway's or a web server's",
        )),
        Err(e) if issuer_missing && chain.len() == 1 => out.push(bad(
            "chain",
            Verdict::Problem,
            format!(
                "the CA that issued our certificate ({}) is neither in {} nor among our roots: the intermediate certificate is missing ({e})",
                top.issuer(),
                files.cert.display()
            ),
            format!(
                "append the issuing (intermediate) CA's certificate to {} after ours; the gateway needs it to build the chain",
                files.cert.display()
            ),
        )),
        Err(e) => out.push(bad(
            "chain",
            Verdict::Warning,
            format!("our certificate against our own roots: {e}"),
            "the gateway checks it against its roots; if they are ours too, reissue the certificate for client authentication (EKU clientAuth) from that CA, with its intermediates after it in the file",
        )),
    }
    let left = leaf
        .not_after()
        .duration_since(at)
        .unwrap_or(Duration::ZERO);
    if left.is_zero() {
        out.push(bad(
            "expiry",
            Verdict::Problem,
            "our certificate has expired",
            "renew the certificate",
        ));
    } else if left < EXPIRY_WARNING {
        out.push(bad(
            "expiry",
            Verdict::Warning,
            format!(
                "our certificate expires in {} days",
                left.as_secs() / 86_400
            ),
            "renew the certificate before it expires",
        ));
    } else {
        out.push(ok(
            "expiry",
            format!("{} days left", left.as_secs() / 86_400),
        ));
    }
    out
}

/// The files of a tunnel with the agent's store layout (`config_dir`: machine files, ca/).
pub fn system_files(config_dir: &Path) -> Files {
    let config = crate::config::AgentConfig::load(config_dir).ok();
    let dir = config_dir.join("machine");
    Files {
        cert: dir.join("certificate.pem"),
        key: dir.join("key.pem"),
        ca: config.map(|c| c.ca_files()).unwrap_or_default(),
    }
}

/// The key: readable by us, private to its owner, and the certificate's.
fn check_key(path: &Path, leaf: &pki::Certificate) -> Check {
    use std::os::unix::fs::MetadataExt;
    let missing = |e: std::io::Error| {
        bad(
            "key",
            Verdict::Problem,
            format!("{}: {e}", path.display()),
            "install the private key next to the certificate",
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return missing(e),
    };
    let me = nix::unistd::geteuid().as_raw();
    let bytes = match std::fs::read(path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return bad(
                "key",
                Verdict::Problem,
                format!(
                    "{} cannot be read by uid {me} (it belongs to uid {}, mode {:o})",
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o777
                ),
                format!(
                    "the key must belong to whoever runs the tunnel (root for the device tunnel, the user for her tunnel): chown that user {0}; chmod 600 {0}",
                    path.display()
                ),
            );
        }
        Err(e) => return missing(e),
    };
    if meta.mode() & 0o077 != 0 {
        return bad(
            "key",
            Verdict::Problem,
            format!(
                "{} can be read by others (mode {:o})",
                path.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        );
    }
    let spki = pki::PrivateKey::load(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|k| k.public_key_spki().map_err(|e| e.to_string()));
    match spki {
        Ok(spki) if spki != leaf.spki_der() => bad(
            "key",
            Verdict::Problem,
            "the key does not belong to the certificate",
            "install the key that was issued with this certificate",
        ),
        Ok(_) if meta.uid() != me => bad(
            "key",
            Verdict::Warning,
            format!("{} belongs to uid {}", path.display(), meta.uid()),
            "the key should belong to whoever runs the tunnel (root for the device tunnel)",
        ),
        Ok(_) => ok("key", "matches the certificate, private to its owner"),
        Err(e) => bad(
            "key",
            Verdict::Problem,
            format!("{}: {e}", path.display()),
            "a PEM private key (PKCS#8, PKCS#1 or SEC1) is expected",
        ),
    }
}

/// A root we trust: expired, or about to.
fn check_root(root: &pki::Certificate, unix_now: u64) -> Option<Check> {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(unix_now);
    let left = root
        .not_after()
        .duration_since(at)
        .unwrap_or(Duration::ZERO);
    let day = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0)
    };
    if left.is_zero() {
        Some(bad(
            "roots",
            Verdict::Problem,
            format!(
                "the root {} expired {} days ago: nothing chains to it any more",
                root.subject(),
                day(at).saturating_sub(day(root.not_after()))
            ),
            "install the CA's renewed root here and on the gateway, and reissue the certificates under it",
        ))
    } else if left < EXPIRY_WARNING {
        Some(bad(
            "roots",
            Verdict::Warning,
            format!(
                "the root {} expires in {} days",
                root.subject(),
                left.as_secs() / 86_400
            ),
            "renew the CA and distribute its new root before then",
        ))
    } else {
        None
    }
}

/// An EKU extension's purposes, by name.
fn eku_names(eku: &pki::Eku) -> String {
    let mut names = Vec::new();
    if eku.server_auth {
        names.push("serverAuth");
    }
    if eku.client_auth {
        names.push("clientAuth");
    }
    if eku.ike_intermediate {
        names.push("ikeIntermediate");
    }
    if names.is_empty() {
        names.push("none we know");
    }
    names.join(", ")
}

/// Whether the certificate is of the kind the tunnel is: a device tunnel authenticates the
/// machine (a certificate naming a host), a user tunnel its user (a UPN or e-mail name).
/// Gateways that take only machine certificates for device tunnels (`clients.accept`, Azure's
/// device tunnel) refuse the other kind.
pub fn check_kind(cert: &Path, device_tunnel: bool) -> Option<Check> {
    let leaf = std::fs::read(cert)
        .ok()
        .and_then(|b| pki::load_certificates(&b).ok())?
        .into_iter()
        .next()?;
    let names_a_user = !leaf.upns().is_empty() || !leaf.rfc822_names().is_empty();
    Some(match (device_tunnel, names_a_user) {
        (true, true) => bad(
            "certificate kind",
            Verdict::Warning,
            "a device tunnel with a user's certificate (it names a UPN or e-mail address)",
            "the device tunnel uses the machine certificate (Local Computer store on Windows, /etc/aovpn/machine here); gateways that take machine certificates only for it refuse this one",
        ),
        (false, false) => bad(
            "certificate kind",
            Verdict::Warning,
            "a user tunnel with a certificate that names no user (no UPN or e-mail address)",
            "the user tunnel uses the user's own certificate (her UPN in its subjectAltName)",
        ),
        (true, false) => ok(
            "certificate kind",
            "a machine certificate, for the device tunnel",
        ),
        (false, true) => ok(
            "certificate kind",
            "a user certificate, for the user tunnel",
        ),
    })
}
