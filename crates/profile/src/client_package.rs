//! The VPN client configuration package, both ways: the zip Azure's portal hands out ("Download
//! VPN client") and the one `aovpn gateway client-package` writes in the same shape.
//!
//! Azure's zip holds `Generic/VpnSettings.xml` (see [`crate::vpn_settings`]) and
//! `Generic/VpnServerRoot.cer` (the root of the gateway's certificate, DER; `VpnServerRoot.cer_0`
//! and up when there are several), next to Windows installers and OpenVPN files we do not use.
//! Its entry names use backslashes (`Generic\VpnSettings.xml`). Ours adds an `aovpn/` folder with
//! ready ProfileXML for a device and a user tunnel (plain, escaped for the devicecert.ps1 way, and
//! SyncML for Intune), the root as PEM and a README.
//!
//! Everything here works on bytes in memory; reading and writing files is the caller's.

use std::io::{Cursor, Read, Write};
use std::net::IpAddr;

use crate::model::*;
use crate::vpn_settings::{SettingsError, VpnSettings};

/// The settings entry, as ours is named.
pub const SETTINGS_ENTRY: &str = "Generic/VpnSettings.xml";
/// Ready profiles in our packages.
pub const DEVICE_PROFILE_ENTRY: &str = "aovpn/DeviceTunnel.xml";
pub const USER_PROFILE_ENTRY: &str = "aovpn/UserTunnel.xml";

/// More entries than a client package ever has (Azure's has about ten).
const MAX_ENTRIES: usize = 1024;
/// The most an entry we read may inflate to: settings, certificates and profiles are small.
const MAX_ENTRY_BYTES: u64 = 1 << 20;
/// The most all entries we read may inflate to together.
const MAX_READ_BYTES: u64 = 4 << 20;
/// Azure takes at most 20 root certificates; a package carries no more.
const MAX_ROOTS: usize = 20;

/// Why a package could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("not a zip archive: {0}")]
    Zip(String),
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error(
        "the package has no Generic/VpnSettings.xml: the gateway's point-to-site configuration has no IKEv2 (Azure adds the Generic folder only when IKEv2 is enabled)"
    )]
    NoSettings,
    #[error(
        "the gateway offers {found} but not IKEv2: enable IKEv2 in its point-to-site configuration and download the package again"
    )]
    NoIkev2 { found: String },
    #[error(
        "the package has no Generic/VpnServerRoot.cer: nothing to check the gateway's certificate against"
    )]
    NoRoot,
    #[error("{entry}: {why}")]
    Entry { entry: String, why: String },
}

/// What a package carries that a client uses.
#[derive(Debug, Clone, Default)]
pub struct ClientPackage {
    pub settings: VpnSettings,
    /// The roots of the gateway's certificate, as found (DER, or PEM in some re-packed zips).
    pub roots: Vec<Vec<u8>>,
    /// Ready ProfileXML (ours only).
    pub device_profile: Option<String>,
    pub user_profile: Option<String>,
    /// Entries not used (installers, OpenVPN files, ...), by name.
    pub unused: Vec<String>,
}

/// An entry's name with `/` separators, as the last two components in lower case: a package
/// re-zipped with a top folder (`vpnClient/Generic/...`) reads the same.
fn entry_key(name: &str) -> String {
    let name = name.replace('\\', "/").to_ascii_lowercase();
    let mut parts = name.rsplit('/').filter(|p| !p.is_empty());
    let file = parts.next().unwrap_or_default();
    match parts.next() {
        Some(folder) => format!("{folder}/{file}"),
        None => file.to_owned(),
    }
}

impl ClientPackage {
    /// Read a package zip (Azure's or ours).
    pub fn read(zip_bytes: &[u8]) -> Result<ClientPackage, PackageError> {
        let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))
            .map_err(|e| PackageError::Zip(e.to_string()))?;
        if archive.len() > MAX_ENTRIES {
            return Err(PackageError::Zip(format!(
                "{} entries (at most {MAX_ENTRIES})",
                archive.len()
            )));
        }
        let mut package = ClientPackage::default();
        let mut settings = None;
        let mut roots: Vec<(String, Vec<u8>)> = Vec::new();
        let mut read_total = 0u64;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| PackageError::Zip(e.to_string()))?;
            if entry.is_dir() {
                continue;
            }
            let name = entry
                .name()
                .map_err(|e| PackageError::Zip(e.to_string()))?
                .into_owned();
            let key = entry_key(&name);
            let wanted = key == "generic/vpnsettings.xml"
                || key.starts_with("generic/vpnserverroot.cer")
                || key == DEVICE_PROFILE_ENTRY.to_ascii_lowercase()
                || key == USER_PROFILE_ENTRY.to_ascii_lowercase();
            if !wanted {
                package.unused.push(name);
                continue;
            }
            let entry_err = |why: String| PackageError::Entry {
                entry: name.clone(),
                why,
            };
            if entry.size() > MAX_ENTRY_BYTES {
                return Err(entry_err(format!(
                    "{} bytes (at most {MAX_ENTRY_BYTES})",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_ENTRY_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| entry_err(e.to_string()))?;
            if bytes.len() as u64 > MAX_ENTRY_BYTES {
                return Err(entry_err(format!("inflates past {MAX_ENTRY_BYTES} bytes")));
            }
            read_total += bytes.len() as u64;
            if read_total > MAX_READ_BYTES {
                return Err(entry_err(format!(
                    "the entries read inflate past {MAX_READ_BYTES} bytes"
                )));
            }
            let twice = || entry_err("a second entry of that name: which one counts?".to_owned());
            if key == "generic/vpnsettings.xml" {
                if settings.is_some() {
                    return Err(twice());
                }
                settings = Some(VpnSettings::parse(&name, &bytes)?);
            } else if key.starts_with("generic/vpnserverroot.cer") {
                if roots.len() == MAX_ROOTS || roots.iter().any(|(k, _)| *k == key) {
                    return Err(entry_err(format!(
                        "more than {MAX_ROOTS} roots, or one named twice"
                    )));
                }
                roots.push((key, bytes));
            } else {
                let text =
                    String::from_utf8(bytes).map_err(|_| entry_err("not UTF-8 text".to_owned()))?;
                let slot = if key == DEVICE_PROFILE_ENTRY.to_ascii_lowercase() {
                    &mut package.device_profile
                } else {
                    &mut package.user_profile
                };
                if slot.replace(text).is_some() {
                    return Err(twice());
                }
            }
        }
        package.settings = settings.ok_or(PackageError::NoSettings)?;
        if !package.settings.offers_ikev2() {
            return Err(PackageError::NoIkev2 {
                found: package.settings.vpn_types.join(", "),
            });
        }
        // VpnServerRoot.cer, then .cer_0, .cer_1, ... in order.
        roots.sort();
        package.roots = roots.into_iter().map(|(_, bytes)| bytes).collect();
        if package.roots.is_empty() {
            return Err(PackageError::NoRoot);
        }
        Ok(package)
    }
}

/// Write a zip of `(name, bytes)` entries, deflated, with a fixed time stamp so the same input
/// gives the same bytes.
pub fn write_zip(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PackageError> {
    let zip_err = |e: zip::result::ZipError| PackageError::Zip(e.to_string());
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in entries {
        writer.start_file(name.as_str(), options).map_err(zip_err)?;
        writer
            .write_all(bytes)
            .map_err(|e| PackageError::Zip(e.to_string()))?;
    }
    Ok(writer.finish().map_err(zip_err)?.into_inner())
}

/// What a generated profile is built from: a gateway as a client sees it.
#[derive(Debug, Clone, Default)]
pub struct GatewayDescription {
    /// The name clients dial, which the gateway's certificate carries.
    pub server: String,
    pub routes: Vec<Prefix>,
    pub dns_servers: Vec<IpAddr>,
    pub dns_domains: Vec<String>,
    /// The gateway's one IKE + ESP suite, when it insists on one.
    pub suite: Option<CryptographySuite>,
    /// SHA-1 thumbprints (hex) of the roots of the gateway's certificate.
    pub root_thumbprints: Vec<String>,
}

impl GatewayDescription {
    /// What an Azure package says (Azure does not put DNS servers or its suite in it).
    pub fn from_settings(settings: &VpnSettings, root_thumbprints: Vec<String>) -> Self {
        GatewayDescription {
            server: settings.vpn_server.clone(),
            routes: settings.routes.clone(),
            root_thumbprints,
            ..GatewayDescription::default()
        }
    }

    fn native(&self, authentication: Authentication) -> NativeProfile {
        NativeProfile {
            servers: vec![Server {
                host: self.server.clone(),
                friendly_name: None,
            }],
            routing_policy_type: Some(RoutingPolicy::SplitTunnel),
            native_protocol_type: Some(NativeProtocol::Ikev2),
            protocol_list: None,
            l2tp_psk: None,
            disable_class_based_default_route: Some(true),
            plumb_ikev2_ts_as_routes: None,
            cryptography_suite: self.suite,
            authentication,
        }
    }

    fn common(&self) -> VpnProfile {
        VpnProfile {
            always_on: Some(true),
            routes: self
                .routes
                .iter()
                .map(|p| Route {
                    address: p.addr,
                    prefix_size: p.len,
                    exclusion_route: None,
                    metric: None,
                })
                .collect(),
            domain_name_information: if self.dns_servers.is_empty() {
                Vec::new()
            } else {
                self.dns_domains
                    .iter()
                    .map(|d| DomainNameInformation {
                        domain_name: format!(".{}", d.trim_start_matches('.')),
                        dns_servers: self.dns_servers.clone(),
                        web_proxy_servers: None,
                        auto_trigger: None,
                        persistent: None,
                    })
                    .collect()
            },
            ..VpnProfile::default()
        }
    }

    /// Azure's device tunnel recipe: machine certificate, split tunnel, always on.
    pub fn device_profile(&self) -> VpnProfile {
        VpnProfile {
            device_tunnel: Some(true),
            native_profile: Some(self.native(Authentication {
                machine_method: Some(MachineMethod::Certificate),
                ..Authentication::default()
            })),
            ..self.common()
        }
    }

    /// A user tunnel as Windows runs them: EAP-TLS with the user's certificate, the gateway
    /// checked by name and root.
    pub fn user_profile(&self) -> VpnProfile {
        VpnProfile {
            dns_suffix: self.dns_domains.first().cloned().into_iter().collect(),
            native_profile: Some(self.native(Authentication {
                user_method: Some(UserMethod::Eap),
                eap: Some(RawXml(self.eap_tls_configuration())),
                ..Authentication::default()
            })),
            ..self.common()
        }
    }

    fn eap_tls_configuration(&self) -> String {
        let roots: String = self
            .root_thumbprints
            .iter()
            .map(|t| {
                let spaced: Vec<String> = t
                    .as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                format!("<TrustedRootCA>{}</TrustedRootCA>", spaced.join(" "))
            })
            .collect();
        let server = crate::text::escape(&self.server);
        format!(
            r#"<Eap><Configuration><EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig"><EapMethod><Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type><VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId><VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType><AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId></EapMethod><Config xmlns="http://www.microsoft.com/provisioning/EapHostConfig"><Eap xmlns="http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1"><Type>13</Type><EapType xmlns="http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1"><CredentialsSource><CertificateStore><SimpleCertSelection>true</SimpleCertSelection></CertificateStore></CredentialsSource><ServerValidation><DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation><ServerNames>{server}</ServerNames>{roots}</ServerValidation><DifferentUsername>false</DifferentUsername></EapType></Eap></Config></EapHostConfig></Configuration></Eap>"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParsedProfile, Scope};

    fn description() -> GatewayDescription {
        GatewayDescription {
            server: "vpn.corp.example".into(),
            routes: vec![Prefix {
                addr: "10.1.0.0".parse().unwrap(),
                len: 16,
            }],
            dns_servers: vec!["10.1.0.53".parse().unwrap()],
            dns_domains: vec!["corp.example".into()],
            suite: None,
            root_thumbprints: vec!["00112233445566778899aabbccddeeff00112233".into()],
        }
    }

    #[test]
    fn generated_profiles_pass_validation_for_their_scope() {
        let d = description();
        for (profile, scope) in [
            (d.device_profile(), Scope::Device),
            (d.user_profile(), Scope::User),
        ] {
            let xml = crate::serialize::to_profile_xml(&profile);
            let parsed = ParsedProfile::parse_str("generated.xml", &xml).unwrap();
            parsed.validate(Some(scope)).unwrap();
            assert_eq!(parsed.profile, profile, "{xml}");
            let plan = crate::plan::plan("p", Some(scope), &parsed.profile).unwrap();
            assert_eq!(plan.servers[0].host, "vpn.corp.example");
            assert_eq!(plan.routes.configured[0].prefix.to_string(), "10.1.0.0/16");
            assert_eq!(plan.dns.split[0].domain, ".corp.example");
        }
        let user = crate::serialize::to_profile_xml(&d.user_profile());
        assert!(
            user.contains("<TrustedRootCA>00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00 11 22 33</TrustedRootCA>"),
            "{user}"
        );
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        write_zip(
            &entries
                .iter()
                .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    const SETTINGS: &[u8] =
        b"<VpnProfile><VpnServer>gw.example</VpnServer><VpnType>IkeV2</VpnType><Routes>10.1.0.0/16</Routes></VpnProfile>";

    #[test]
    fn azures_backslash_names_and_numbered_roots_are_found() {
        let zip = zip_of(&[
            ("Generic\\VpnSettings.xml", SETTINGS),
            ("Generic\\VpnServerRoot.cer_1", b"second"),
            ("Generic\\VpnServerRoot.cer_0", b"first"),
            ("WindowsAmd64\\VpnClientSetupAmd64.exe", b"MZ"),
        ]);
        let p = ClientPackage::read(&zip).unwrap();
        assert_eq!(p.settings.vpn_server, "gw.example");
        assert_eq!(p.roots, [b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(p.unused, ["WindowsAmd64\\VpnClientSetupAmd64.exe"]);
        assert!(p.device_profile.is_none());
    }

    #[test]
    fn a_package_is_refused_with_the_reason() {
        let no_settings = zip_of(&[("OpenVPN\\vpnconfig.ovpn", b"client")]);
        assert!(matches!(
            ClientPackage::read(&no_settings),
            Err(PackageError::NoSettings)
        ));
        let no_root = zip_of(&[("Generic/VpnSettings.xml", SETTINGS)]);
        assert!(matches!(
            ClientPackage::read(&no_root),
            Err(PackageError::NoRoot)
        ));
        let openvpn_only = zip_of(&[(
            "Generic/VpnSettings.xml",
            b"<VpnProfile><VpnServer>gw</VpnServer><VpnType>OpenVPN</VpnType></VpnProfile>",
        )]);
        assert!(matches!(
            ClientPackage::read(&openvpn_only),
            Err(PackageError::NoIkev2 { .. })
        ));
        let bad_settings = zip_of(&[("Generic/VpnSettings.xml", b"<VpnProfile>")]);
        let e = ClientPackage::read(&bad_settings).unwrap_err().to_string();
        assert!(e.starts_with("Generic/VpnSettings.xml:1:"), "{e}");
        assert!(matches!(
            ClientPackage::read(b"PK\x03\x04 not really"),
            Err(PackageError::Zip(_))
        ));
    }

    #[test]
    fn a_second_settings_file_elsewhere_is_refused_not_chosen() {
        let zip = zip_of(&[
            ("Generic/VpnSettings.xml", SETTINGS),
            ("Generic/VpnServerRoot.cer", b"root"),
            ("Other/Generic/VpnSettings.xml", SETTINGS),
        ]);
        let e = ClientPackage::read(&zip).unwrap_err();
        assert!(e.to_string().contains("a second entry"), "{e}");
    }

    #[test]
    fn an_entry_that_inflates_too_far_is_refused() {
        let big = vec![b'a'; (MAX_ENTRY_BYTES + 10) as usize];
        let zip = zip_of(&[
            ("Generic/VpnSettings.xml", SETTINGS),
            ("Generic/VpnServerRoot.cer", &big),
        ]);
        assert!(zip.len() < 10_000, "deflated to {}", zip.len());
        let e = ClientPackage::read(&zip).unwrap_err();
        assert!(matches!(e, PackageError::Entry { .. }), "{e}");
    }
}
