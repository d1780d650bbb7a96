//! The documented rules (windows-azure-reference.md §1.3-1.6) applied to a parsed profile.

use crate::error::{ErrorKind, ProfileError, ProfileErrors, ProfileWarning, WarningKind};
use crate::model::*;
use crate::parse::ParsedProfile;

struct Check<'a> {
    parsed: &'a ParsedProfile,
    errors: Vec<ProfileError>,
    warnings: Vec<ProfileWarning>,
}

impl Check<'_> {
    fn error(&mut self, path: &str, kind: ErrorKind) {
        let (_, pos) = self.parsed.spans.locate(path);
        let file = self.parsed.file.clone();
        self.errors.push(ProfileError {
            file,
            pos,
            element: path.to_owned(),
            kind,
        });
    }

    fn warn(&mut self, path: &str, why: &'static str) {
        self.warning(path, WarningKind::Ignored(why));
    }

    fn not_applied(&mut self, path: &str, what: &'static str) {
        self.warning(path, WarningKind::NotApplied(what));
    }

    fn warning(&mut self, path: &str, kind: WarningKind) {
        let (_, pos) = self.parsed.spans.locate(path);
        let file = self.parsed.file.clone();
        self.warnings.push(ProfileWarning {
            file,
            pos,
            element: path.to_owned(),
            kind,
        });
    }
}

/// Why a name cannot be a profile name (CSP node names match `^[^/]*$`; the store also needs a
/// usable directory name).
pub fn check_profile_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.contains('/') {
        Err("it contains '/'")
    } else if name == "." || name == ".." || name.starts_with('.') {
        Err("it starts with '.'")
    } else if name.chars().any(char::is_control) {
        Err("it contains control characters")
    } else if name.len() > 200 {
        Err("it is longer than 200 bytes")
    } else {
        Ok(())
    }
}

impl ParsedProfile {
    /// The scope the profile ends up in: the SyncML URI's scope, or `requested`; both given and
    /// different is an error.
    pub fn effective_scope(
        &self,
        requested: Option<Scope>,
    ) -> Result<Option<Scope>, ProfileErrors> {
        match (self.uri.as_ref().and_then(|u| u.scope), requested) {
            (Some(u), Some(r)) if u != r => Err(ProfileErrors(vec![ProfileError {
                file: self.file.clone(),
                pos: self.spans.locate("VPNProfile").1,
                element: String::new(),
                kind: ErrorKind::ScopeConflict {
                    uri_scope: u.as_str(),
                    requested: r.as_str(),
                },
            }])),
            (u, r) => Ok(u.or(r)),
        }
    }

    /// Apply every rule. `scope` is where the profile will live (`None`: not known yet, e.g.
    /// `profile validate` on a plain file). Returns all warnings, or all errors.
    pub fn validate(&self, scope: Option<Scope>) -> Result<Vec<ProfileWarning>, ProfileErrors> {
        let mut c = Check {
            parsed: self,
            errors: vec![],
            warnings: self.warnings.clone(),
        };
        let scope = self.effective_scope(scope)?;
        let p = &self.profile;
        let device_tunnel = p.is_device_tunnel();

        if let Some(name) = &p.profile_name
            && let Err(why) = check_profile_name(name)
        {
            c.error(
                "VPNProfile/ProfileName",
                ErrorKind::InvalidProfileName {
                    value: name.clone(),
                    why,
                },
            );
        }
        if scope == Some(Scope::User) {
            if device_tunnel {
                c.error(
                    "VPNProfile/DeviceTunnel",
                    ErrorKind::DeviceTunnelRequiresDeviceScope,
                );
            }
            if p.lock_down == Some(true) {
                c.error(
                    "VPNProfile/LockDown",
                    ErrorKind::LockDownRequiresDeviceScope,
                );
            }
        }
        if matches!(
            p.data_encryption,
            Some(DataEncryption::None | DataEncryption::Optional)
        ) {
            c.warn(
                "VPNProfile/DataEncryption",
                "aovpn always encrypts: ESP without encryption is never negotiated",
            );
        }

        let Some(native) = &p.native_profile else {
            c.error("VPNProfile", ErrorKind::MissingNativeProfile);
            return c.finish();
        };
        check_protocol(&mut c, native, device_tunnel);
        check_authentication(&mut c, &native.authentication, device_tunnel);
        let split = native.routing_policy() == RoutingPolicy::SplitTunnel;
        if device_tunnel && !split {
            c.error(
                "VPNProfile/NativeProfile/RoutingPolicyType",
                ErrorKind::DeviceTunnelRequiresSplitTunnel,
            );
        }
        if native.l2tp_psk.is_some() {
            c.warn(
                "VPNProfile/NativeProfile/L2tpPsk",
                "L2tpPsk applies to L2TP only; ignored",
            );
        }
        if let Some(suite) = &native.cryptography_suite {
            check_suite(&mut c, suite);
        }
        if p.proxy.is_some() {
            if split {
                c.warn(
                    "VPNProfile/Proxy",
                    "Proxy applies only with ForceTunnel; ignored",
                );
            } else if let Some(proxy) = &p.proxy {
                // Manual/Server is exported by the agent (an environment file, see the
                // README); a PAC URL has no system-wide place on Linux.
                if let Some(server) = &proxy.manual_server
                    && !crate::plan::proxy_server_ok(server)
                {
                    c.error(
                        "VPNProfile/Proxy/Manual/Server",
                        ErrorKind::InvalidValue {
                            value: server.clone(),
                            allowed: "host or host:port",
                        },
                    );
                }
                if proxy.auto_config_url.is_some() {
                    c.not_applied(
                        "VPNProfile/Proxy/AutoConfigUrl",
                        "a PAC URL has no system-wide place on Linux",
                    );
                }
            }
        }
        if !split && p.by_pass_for_local != Some(true) {
            let path = if p.by_pass_for_local.is_some() {
                "VPNProfile/ByPassForLocal"
            } else {
                "VPNProfile/NativeProfile/RoutingPolicyType"
            };
            c.not_applied(
                path,
                "local subnets stay reachable outside the tunnel under ForceTunnel \
                 (ByPassForLocal true is what Linux does: its connected routes stay)",
            );
        }
        for (i, rule) in p.domain_name_information.iter().enumerate() {
            // The rules may stand alone or inside the CSP example's DomainNameInformationList.
            let direct = format!("VPNProfile/DomainNameInformation[{}]", i + 1);
            let listed = format!(
                "VPNProfile/DomainNameInformationList/DomainNameInformation[{}]",
                i + 1
            );
            let path = if self.spans.locate(&direct).0 == direct {
                direct
            } else {
                listed
            };
            // The rule itself is applied by the agent (systemd-resolved routing domains, or
            // its split DNS stub); these parts of it are not.
            if rule.auto_trigger == Some(true) {
                c.warn(
                    &format!("{path}/AutoTrigger"),
                    "AutoTrigger (app-triggered connection) is ignored",
                );
            }
            if rule.web_proxy_servers.is_some() {
                c.not_applied(
                    &format!("{path}/WebProxyServers"),
                    "no per-namespace proxy is set",
                );
            }
        }
        if p.always_on_active.is_some() {
            c.warn(
                "VPNProfile/AlwaysOnActive",
                "AlwaysOnActive is a read-only status on Windows; ignored",
            );
        }
        if p.remember_credentials.is_some() {
            c.warn(
                "VPNProfile/RememberCredentials",
                "certificate authentication caches no credentials; ignored",
            );
        }
        for (i, r) in p.routes.iter().enumerate() {
            let path = format!("VPNProfile/Route[{}]", i + 1);
            let max = Prefix::max_len(r.address);
            if r.prefix_size > max {
                let family = if r.address.is_ipv4() { "IPv4" } else { "IPv6" };
                c.error(
                    &format!("{path}/PrefixSize"),
                    ErrorKind::PrefixSizeOutOfRange {
                        prefix: r.prefix_size,
                        family,
                        max,
                    },
                );
            }
            if r.is_exclusion() && !split {
                c.error(
                    &format!("{path}/ExclusionRoute"),
                    ErrorKind::ExclusionRouteRequiresSplitTunnel,
                );
            }
        }
        for (i, f) in p.traffic_filters.iter().enumerate() {
            let path = format!("VPNProfile/TrafficFilter[{}]", i + 1);
            let tcp_udp = matches!(f.protocol, Some(6 | 17));
            for (ranges, name) in [
                (&f.local_port_ranges, "LocalPortRanges"),
                (&f.remote_port_ranges, "RemotePortRanges"),
            ] {
                if !ranges.is_empty() && !tcp_udp {
                    c.error(
                        &format!("{path}/{name}"),
                        ErrorKind::PortRangesRequireTcpOrUdp,
                    );
                }
            }
            // Dropping the condition would let every application (or user) through what the
            // administrator opened for one: refused instead.
            if f.app_id.is_some() {
                c.error(&format!("{path}/App"), ErrorKind::AppFilterNotSupported);
            }
            if f.claims.is_some() {
                c.error(
                    &format!("{path}/Claims"),
                    ErrorKind::ClaimsFilterNotSupported,
                );
            }
            if f.routing_policy_type.is_some() {
                c.warn(
                    &format!("{path}/RoutingPolicyType"),
                    "a filter's RoutingPolicyType applies to App filters only; ignored",
                );
            }
        }
        c.finish()
    }
}

impl Check<'_> {
    fn finish(mut self) -> Result<Vec<ProfileWarning>, ProfileErrors> {
        if self.errors.is_empty() {
            self.warnings.sort_by_key(|w| (w.pos.line, w.pos.col));
            Ok(self.warnings)
        } else {
            self.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            Err(ProfileErrors(self.errors))
        }
    }
}

fn check_protocol(c: &mut Check<'_>, native: &NativeProfile, device_tunnel: bool) {
    let path = "VPNProfile/NativeProfile/NativeProtocolType";
    let protocol = native.native_protocol_type;
    if device_tunnel && protocol != Some(NativeProtocol::Ikev2) {
        let found = protocol
            .map_or("nothing (Automatic)", NativeProtocol::as_str)
            .to_owned();
        c.error(path, ErrorKind::DeviceTunnelRequiresIkev2 { found });
        return;
    }
    match protocol {
        Some(p @ (NativeProtocol::Pptp | NativeProtocol::L2tp | NativeProtocol::Sstp)) => {
            c.error(
                path,
                ErrorKind::UnsupportedProtocol {
                    protocol: p.as_str().to_owned(),
                },
            );
        }
        Some(NativeProtocol::ProtocolList) => match &native.protocol_list {
            None => c.error(
                "VPNProfile/NativeProfile/ProtocolList",
                ErrorKind::MissingElement {
                    name: "ProtocolList".to_owned(),
                },
            ),
            Some(list) if !list.protocols.contains(&ListedProtocol::Ikev2) => c.error(
                "VPNProfile/NativeProfile/ProtocolList",
                ErrorKind::ProtocolListWithoutIkev2,
            ),
            Some(list) if list.protocols.len() > 1 => c.warn(
                "VPNProfile/NativeProfile/ProtocolList",
                "aovpn uses only the Ikev2 entry of ProtocolList",
            ),
            Some(_) => {}
        },
        Some(NativeProtocol::Automatic) | None => {
            c.warn(path, "Automatic protocol selection: aovpn tries IKEv2 only");
        }
        Some(NativeProtocol::Ikev2) => {}
    }
}

fn check_authentication(c: &mut Check<'_>, auth: &Authentication, device_tunnel: bool) {
    let path = "VPNProfile/NativeProfile/Authentication";
    match (auth.user_method, auth.machine_method) {
        (Some(_), Some(_)) => c.error(path, ErrorKind::ConflictingAuthenticationMethods),
        (None, None) if !device_tunnel => c.error(path, ErrorKind::MissingAuthenticationMethod),
        _ => {}
    }
    if device_tunnel && auth.machine_method != Some(MachineMethod::Certificate) {
        c.error(
            &format!("{path}/MachineMethod"),
            ErrorKind::DeviceTunnelRequiresMachineCertificate,
        );
    }
    match auth.user_method {
        Some(UserMethod::MsChapV2) => c.error(
            &format!("{path}/UserMethod"),
            ErrorKind::MsChapV2NotForIkev2,
        ),
        Some(UserMethod::Eap) => match &auth.eap {
            None => c.error(&format!("{path}/Eap"), ErrorKind::EapWithoutConfiguration),
            Some(eap) => match crate::plan::eap_method_type(&eap.0) {
                Some(13) => {
                    for found in crate::plan::eap_server_validation(&eap.0).bad_roots {
                        c.error(
                            &format!("{path}/Eap"),
                            ErrorKind::BadTrustedRootCa { found },
                        );
                    }
                }
                other => c.error(
                    &format!("{path}/Eap"),
                    ErrorKind::UnsupportedEapMethod {
                        found: other.map_or_else(|| "(none given)".to_owned(), |t| t.to_string()),
                    },
                ),
            },
        },
        _ => {}
    }
}

fn check_suite(c: &mut Check<'_>, s: &CryptographySuite) {
    let base = "VPNProfile/NativeProfile/CryptographySuite";
    let missing = [
        (
            "AuthenticationTransformConstants",
            s.authentication_transform_constants.is_none(),
        ),
        (
            "CipherTransformConstants",
            s.cipher_transform_constants.is_none(),
        ),
        ("PfsGroup", s.pfs_group.is_none()),
        ("DHGroup", s.dh_group.is_none()),
        ("IntegrityCheckMethod", s.integrity_check_method.is_none()),
        ("EncryptionMethod", s.encryption_method.is_none()),
    ];
    for (field, absent) in missing {
        if absent {
            c.error(base, ErrorKind::IncompleteCryptographySuite { field });
        }
    }
    let unsupported = |c: &mut Check<'_>, field: &str, value: &str, why: &'static str| {
        c.error(
            &format!("{base}/{field}"),
            ErrorKind::UnsupportedAlgorithm {
                value: value.to_owned(),
                why,
            },
        );
    };
    if let Some(v @ EncryptionMethod::Des) = s.encryption_method {
        unsupported(c, "EncryptionMethod", v.as_str(), "single DES is broken");
    }
    if let Some(v @ IntegrityCheckMethod::Md5) = s.integrity_check_method {
        unsupported(c, "IntegrityCheckMethod", v.as_str(), "MD5 is broken");
    }
    match s.dh_group {
        Some(v @ DhGroupSetting::None) => unsupported(
            c,
            "DHGroup",
            v.as_str(),
            "IKEv2 needs a Diffie-Hellman group for the IKE SA",
        ),
        Some(v @ DhGroupSetting::Group1) => {
            unsupported(c, "DHGroup", v.as_str(), "the 768-bit group is broken")
        }
        _ => {}
    }
    match s.cipher_transform_constants {
        Some(v @ CipherTransform::Des) => unsupported(
            c,
            "CipherTransformConstants",
            v.as_str(),
            "single DES is broken",
        ),
        Some(v @ CipherTransform::None) => unsupported(
            c,
            "CipherTransformConstants",
            v.as_str(),
            "ESP without encryption",
        ),
        _ => {}
    }
    if let Some(v @ AuthTransform::Md596) = s.authentication_transform_constants {
        unsupported(
            c,
            "AuthenticationTransformConstants",
            v.as_str(),
            "MD5 is broken",
        );
    }
    if let Some(v @ PfsGroupSetting::Pfs1) = s.pfs_group {
        unsupported(c, "PfsGroup", v.as_str(), "the 768-bit group is broken");
    }
    if let (Some(auth), Some(cipher)) = (
        s.authentication_transform_constants,
        s.cipher_transform_constants,
    ) {
        let expected = match (auth, cipher) {
            (AuthTransform::GcmAes128, c) if c != CipherTransform::GcmAes128 => Some("GCMAES128"),
            (AuthTransform::GcmAes192, c) if c != CipherTransform::GcmAes192 => Some("GCMAES192"),
            (AuthTransform::GcmAes256, c) if c != CipherTransform::GcmAes256 => Some("GCMAES256"),
            (AuthTransform::None, c) if !is_gcm(c) => Some("GCMAES128, GCMAES192 or GCMAES256"),
            (AuthTransform::Md596 | AuthTransform::Sha196 | AuthTransform::Sha256128, c)
                if is_gcm(c) =>
            {
                Some("DES3, AES128, AES192 or AES256")
            }
            _ => None,
        };
        if let Some(expected) = expected {
            c.error(
                &format!("{base}/AuthenticationTransformConstants"),
                ErrorKind::GcmMismatch {
                    integrity: auth.as_str().to_owned(),
                    cipher: cipher.as_str().to_owned(),
                    expected: expected.to_owned(),
                },
            );
        }
    }
}

fn is_gcm(c: CipherTransform) -> bool {
    matches!(
        c,
        CipherTransform::GcmAes128 | CipherTransform::GcmAes192 | CipherTransform::GcmAes256
    )
}
