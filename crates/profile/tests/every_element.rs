//! One rule for every VPNv2 element: aovpn applies it (and the plan shows it), or `validate`
//! refuses the profile, or warns that it is not applied (or ignored) on Linux and the plan says
//! so. A profile with every element is checked element by element, so a new element that is
//! parsed but neither applied nor reported fails here.

#![allow(clippy::unwrap_used)] // tests may unwrap

use profile::plan::{self, PlannedRoute, RouteVia};
use profile::{ErrorKind, ParsedProfile, ProfileWarning, Scope};

const EAP_TLS: &str = r#"<Eap><Configuration>
<EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig"><EapMethod>
<Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type>
<VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId>
<VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType>
<AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId>
</EapMethod></EapHostConfig></Configuration></Eap>"#;

/// Every element a user-tunnel ProfileXML may carry (LockDown, which is refused, and App and
/// Claims filters are checked on their own below).
fn every_element() -> String {
    format!(
        r#"<VPNProfile>
<ProfileName>every</ProfileName>
<EdpModeId>corp.example</EdpModeId>
<RememberCredentials>true</RememberCredentials>
<AlwaysOn>true</AlwaysOn>
<AlwaysOnActive>true</AlwaysOnActive>
<DnsSuffix>corp.example</DnsSuffix>
<TrustedNetworkDetection>office.corp.example</TrustedNetworkDetection>
<DisableAdvancedOptionsEditButton>true</DisableAdvancedOptionsEditButton>
<DisableDisconnectButton>true</DisableDisconnectButton>
<RegisterDNS>true</RegisterDNS>
<ByPassForLocal>false</ByPassForLocal>
<RequireVpnClientAppUI>true</RequireVpnClientAppUI>
<DataEncryption>Max</DataEncryption>
<DisableIKEv2Fragmentation>true</DisableIKEv2Fragmentation>
<IPv4InterfaceMetric>10</IPv4InterfaceMetric>
<IPv6InterfaceMetric>20</IPv6InterfaceMetric>
<NetworkOutageTime>60</NetworkOutageTime>
<PrivateNetwork>true</PrivateNetwork>
<UseRasCredentials>true</UseRasCredentials>
<Proxy><AutoConfigUrl>http://proxy.corp.example/proxy.pac</AutoConfigUrl>
<Manual><Server>proxy.corp.example:3128</Server></Manual></Proxy>
<DomainNameInformation><DomainName>.corp.example</DomainName><DnsServers>10.1.0.53</DnsServers>
<AutoTrigger>true</AutoTrigger><Persistent>true</Persistent></DomainNameInformation>
<AppTrigger><App><Id>%ProgramFiles%\Corp\app.exe</Id></App></AppTrigger>
<NativeProfile>
<Servers>vpn.corp.example;Corp VPN</Servers>
<RoutingPolicyType>ForceTunnel</RoutingPolicyType>
<NativeProtocolType>IKEv2</NativeProtocolType>
<L2tpPsk>secret</L2tpPsk>
<DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>
<PlumbIKEv2TSAsRoutes>true</PlumbIKEv2TSAsRoutes>
<CryptographySuite>
<AuthenticationTransformConstants>GCMAES256</AuthenticationTransformConstants>
<CipherTransformConstants>GCMAES256</CipherTransformConstants>
<EncryptionMethod>AES_GCM_256</EncryptionMethod>
<IntegrityCheckMethod>SHA384</IntegrityCheckMethod>
<DHGroup>ECP384</DHGroup>
<PfsGroup>ECP384</PfsGroup>
</CryptographySuite>
<Authentication><UserMethod>Eap</UserMethod>{EAP_TLS}</Authentication>
</NativeProfile>
<Route><Address>10.2.0.0</Address><PrefixSize>16</PrefixSize><Metric>5</Metric></Route>
<TrafficFilter><Protocol>6</Protocol><RemotePortRanges>443,8000-8080</RemotePortRanges>
<RemoteAddressRanges>10.2.0.0/16</RemoteAddressRanges><Direction>Outbound</Direction></TrafficFilter>
<APNBinding><ProviderId>x</ProviderId></APNBinding>
<DeviceCompliance><Enabled>false</Enabled></DeviceCompliance>
<PluginProfile><ServerUrlList>x</ServerUrlList></PluginProfile>
</VPNProfile>"#
    )
}

/// Elements the client applies, each checked against the plan below.
const APPLIED: &[&str] = &[
    "ProfileName",
    "AlwaysOn",
    "DnsSuffix",
    "RegisterDNS",
    "TrustedNetworkDetection",
    "DataEncryption",
    "DisableIKEv2Fragmentation",
    "IPv4InterfaceMetric",
    "IPv6InterfaceMetric",
    "NetworkOutageTime",
    "NativeProfile/Servers",
    // UserMethod Eap with EAP-TLS: done as EAP-TLS inside IKE_AUTH.
    "NativeProfile/Authentication",
    "NativeProfile/RoutingPolicyType",
    "NativeProfile/NativeProtocolType",
    "NativeProfile/DisableClassBasedDefaultRoute",
    "NativeProfile/PlumbIKEv2TSAsRoutes",
    "NativeProfile/CryptographySuite",
    "Route",
    "TrafficFilter",
    "DomainNameInformation",
    "Proxy",
];

fn said(warnings: &[ProfileWarning], element: &str) -> Option<String> {
    let path = format!("VPNProfile/{element}");
    warnings
        .iter()
        .find(|w| w.element == path || w.element.starts_with(&format!("{path}[")))
        .map(|w| w.kind.to_string())
}

#[test]
fn every_element_is_applied_or_reported() {
    let xml = every_element();
    let parsed = ParsedProfile::parse_str("every.xml", &xml).unwrap();
    let warnings = parsed.validate(Some(Scope::User)).unwrap();

    // What is reported, and how.
    let not_applied = |e: &str| {
        let w = said(&warnings, e).unwrap_or_else(|| panic!("{e}: nothing said"));
        assert!(w.starts_with("not applied on Linux"), "{e}: {w}");
    };
    for e in [
        "Proxy/AutoConfigUrl",
        // ForceTunnel with ByPassForLocal false: local subnets stay outside on Linux.
        "ByPassForLocal",
    ] {
        not_applied(e);
    }
    for e in [
        "DomainNameInformation[1]/AutoTrigger",
        "EdpModeId",
        "RememberCredentials",
        "AlwaysOnActive",
        "DisableAdvancedOptionsEditButton",
        "DisableDisconnectButton",
        "RequireVpnClientAppUI",
        "PrivateNetwork",
        "UseRasCredentials",
        "AppTrigger",
        "NativeProfile/L2tpPsk",
        "APNBinding",
        "DeviceCompliance",
        "PluginProfile",
    ] {
        assert!(said(&warnings, e).is_some(), "{e}: nothing said");
    }

    // What is applied, as the plan has it.
    let p = plan::plan("every", Some(Scope::User), &parsed.profile).unwrap();
    assert_eq!(p.name, "every");
    assert!(p.always_on);
    assert!(p.dns.register, "RegisterDNS: the agent registers the name");
    assert!(matches!(
        p.credential,
        plan::Credential::Eap {
            method_type: Some(13),
            ..
        }
    ));
    assert_eq!(p.dns.suffixes, ["corp.example"]);
    assert_eq!(p.trusted_networks, ["office.corp.example"]);
    assert!(p.disable_ike_fragmentation);
    assert_eq!(p.network_outage_time, Some(60));
    assert_eq!(p.servers[0].host, "vpn.corp.example");
    assert_eq!(p.routes.policy, profile::RoutingPolicy::ForceTunnel);
    assert!(!p.routes.class_based_route);
    assert!(p.routes.traffic_selectors_as_routes);
    assert!(p.proposals_from_profile);
    assert_eq!(p.ike_proposals.len(), 1);
    let route = PlannedRoute {
        prefix: profile::Prefix {
            addr: "10.2.0.0".parse().unwrap(),
            len: 16,
        },
        via: RouteVia::Tunnel,
        metric: Some(5),
    };
    assert!(p.routes.configured.contains(&route));
    assert_eq!(
        p.routes.tunnel_route_metric(&route),
        Some(15),
        "5 + IPv4 10"
    );
    let v6 = PlannedRoute {
        prefix: profile::Prefix {
            addr: "fd00::".parse().unwrap(),
            len: 8,
        },
        via: RouteVia::Tunnel,
        metric: None,
    };
    assert_eq!(p.routes.tunnel_route_metric(&v6), Some(20));
    assert_eq!(p.traffic_filters.len(), 1);
    assert_eq!(p.dns.split.len(), 1);
    assert_eq!(p.proxy_server.as_deref(), Some("proxy.corp.example:3128"));
    assert_eq!(p.dns.split[0].domain, ".corp.example");
    assert!(
        p.dns.split[0].persistent,
        "Persistent: kept while the tunnel is down"
    );
    assert_eq!(p.traffic_filters[0].protocol, Some(6));

    // Every element of the document is in one of the lists: applied, or said.
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let mut elements = Vec::new();
    for child in doc.root_element().children().filter(|n| n.is_element()) {
        let name = child.tag_name().name();
        if name == "NativeProfile" {
            for inner in child.children().filter(|n| n.is_element()) {
                elements.push(format!("NativeProfile/{}", inner.tag_name().name()));
            }
        } else {
            elements.push(name.to_owned());
        }
    }
    for e in elements {
        assert!(
            APPLIED.contains(&e.as_str()) || said(&warnings, &e).is_some(),
            "{e}: neither applied nor reported"
        );
    }
}

#[test]
fn filters_that_linux_cannot_enforce_are_refused_and_lockdown_is_planned() {
    let device = r#"<VPNProfile><NativeProfile><Servers>vpn.corp.example</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication><MachineMethod>Certificate</MachineMethod></Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType></NativeProfile>
<LockDown>true</LockDown>
<DeviceTunnel>true</DeviceTunnel><AlwaysOn>true</AlwaysOn></VPNProfile>"#;
    let parsed = ParsedProfile::parse_str("lockdown.xml", device).unwrap();
    assert_eq!(parsed.validate(Some(Scope::Device)).unwrap(), []);
    let p = plan::plan("lockdown", Some(Scope::Device), &parsed.profile).unwrap();
    assert!(p.lockdown);

    let filters = device.replace(
        "<LockDown>true</LockDown>",
        r#"<TrafficFilter><App><Id>%ProgramFiles%\Corp\app.exe</Id></App></TrafficFilter>
<TrafficFilter><Claims>O:SYG:SYD:(A;;CC;;;AU)</Claims></TrafficFilter>"#,
    );
    let parsed = ParsedProfile::parse_str("filter.xml", &filters).unwrap();
    let errors = parsed.validate(Some(Scope::Device)).unwrap_err();
    let kinds: Vec<&ErrorKind> = errors.0.iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [
            &ErrorKind::AppFilterNotSupported,
            &ErrorKind::ClaimsFilterNotSupported
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert!(text.contains("VPNProfile/TrafficFilter[1]/App"), "{text}");
    assert!(
        text.contains("VPNProfile/TrafficFilter[2]/Claims"),
        "{text}"
    );
}

#[test]
fn eap_methods_other_than_tls_are_refused_by_name() {
    let peap = every_element().replace(
        r#"<Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type>"#,
        r#"<Type xmlns="http://www.microsoft.com/provisioning/EapCommon">25</Type>"#,
    );
    let parsed = ParsedProfile::parse_str("peap.xml", &peap).unwrap();
    let errors = parsed.validate(Some(Scope::User)).unwrap_err();
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.kind == ErrorKind::UnsupportedEapMethod { found: "25".into() }),
        "{errors}"
    );
    assert!(errors.to_string().contains("EAP-TLS (type 13) only"));
}
