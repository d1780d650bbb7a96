#[test]
fn proxy_servers_are_host_and_port_or_refused() {
    for ok in [
        "proxy.corp.example",
        "proxy.corp.example:3128",
        "10.1.0.8:8080",
        "[fd00::8]:3128",
    ] {
        assert!(super::proxy_server_ok(ok), "{ok}");
    }
    for bad in [
        "",
        "proxy:0",
        "proxy:99999",
        "a b:80",
        "p;rm -rf /",
        "x\ny",
        "[fd00::8",
        "-x:80",
        "proxy:",
    ] {
        assert!(!super::proxy_server_ok(bad), "{bad:?}");
    }
}

use super::*;

#[test]
fn eap_server_validation_reads_names_and_thumbprints() {
    let raw = r#"<EapHostConfig><Config><Eap><EapType>
        <ServerValidation>
          <DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation>
          <ServerNames>NPS1.corp.example; nps2.corp.example.</ServerNames>
          <TrustedRootCA>5a 3b 9c 1d 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff </TrustedRootCA>
          <TrustedRootCA>not a thumbprint</TrustedRootCA>
        </ServerValidation></EapType></Eap></Config></EapHostConfig>"#;
    let v = eap_server_validation(raw);
    assert_eq!(v.server_names, ["nps1.corp.example", "nps2.corp.example"]);
    assert_eq!(
        v.trusted_roots,
        ["5a3b9c1d00112233445566778899aabbccddeeff"]
    );
    assert_eq!(v.bad_roots, ["not a thumbprint"]);
    assert_eq!(
        eap_server_validation("<x/>"),
        EapServerValidation::default()
    );
}
use crate::parse::ParsedProfile;

fn profile(native_extra: &str, top_extra: &str) -> VpnProfile {
    let xml = format!(
        "<VPNProfile><NativeProfile><Servers>gw1.example.net;Primary,203.0.113.9</Servers>\
         <NativeProtocolType>IKEv2</NativeProtocolType>{native_extra}</NativeProfile>\
         {top_extra}</VPNProfile>"
    );
    let parsed = ParsedProfile::parse_str("t.xml", &xml).unwrap();
    parsed.validate(None).unwrap();
    parsed.profile
}

const MACHINE: &str = "<Authentication><MachineMethod>Certificate</MachineMethod></Authentication>";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix {
        addr: ip(a),
        len: l.parse().unwrap(),
    }
}

#[test]
fn classful_routes_follow_the_address_class() {
    let cases = [
        ("10.7.8.9", Some("10.0.0.0/8")),
        ("172.16.201.5", Some("172.16.0.0/16")),
        ("172.31.0.1", Some("172.31.0.0/16")),
        ("192.168.3.77", Some("192.168.3.0/24")),
        ("100.64.1.1", Some("100.0.0.0/8")),
        ("203.0.113.5", Some("203.0.113.0/24")),
        ("224.0.0.1", None),
        ("fd00::1", None),
    ];
    for (addr, want) in cases {
        assert_eq!(classful_prefix(ip(addr)), want.map(prefix), "{addr}");
    }
}

#[test]
fn device_tunnel_plan_uses_machine_cert_and_configured_routes_only() {
    let p = profile(
        &format!("{MACHINE}<DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>"),
        "<DeviceTunnel>true</DeviceTunnel><RegisterDNS>true</RegisterDNS>\
         <Route><Address>10.1.0.5</Address><PrefixSize>32</PrefixSize></Route>",
    );
    let plan = plan("dev", Some(Scope::Device), &p).unwrap();
    assert!(plan.device_tunnel && plan.always_on && plan.dns.register);
    assert_eq!(plan.certificate_store, CertificateStore::Machine);
    assert_eq!(plan.credential, Credential::MachineCertificate);
    let hosts: Vec<&str> = plan.servers.iter().map(|s| s.display_name()).collect();
    assert_eq!(hosts, ["Primary", "203.0.113.9"]);
    assert_eq!(plan.ike_proposals, default_ike_proposals());
    assert_eq!(plan.esp_proposals, default_esp_proposals());
    let routes = plan
        .routes
        .routes(ip("203.0.113.9"), &[ip("172.16.201.4")], &[]);
    assert_eq!(
        routes,
        [PlannedRoute {
            prefix: prefix("10.1.0.5/32"),
            via: RouteVia::Tunnel,
            metric: None
        }]
    );
}

#[test]
fn split_tunnel_adds_class_route_exclusions_and_traffic_selectors() {
    let p = profile(
        &format!("{MACHINE}<PlumbIKEv2TSAsRoutes>true</PlumbIKEv2TSAsRoutes>"),
        "<Route><Address>10.1.0.0</Address><PrefixSize>16</PrefixSize><Metric>7</Metric></Route>\
         <Route><Address>169.254.1.9</Address><PrefixSize>16</PrefixSize>\
         <ExclusionRoute>true</ExclusionRoute></Route>",
    );
    let plan = plan("split", None, &p).unwrap();
    let ts = [
        prefix("10.1.0.0/16"),
        prefix("10.2.3.0/24"),
        prefix("0.0.0.0/0"),
    ];
    let routes = plan
        .routes
        .routes(ip("198.51.100.1"), &[ip("172.16.201.4")], &ts);
    let shown: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {:?} {:?}", r.prefix, r.via, r.metric))
        .collect();
    assert_eq!(
        shown,
        [
            "10.1.0.0/16 Tunnel Some(7)",
            "169.254.0.0/16 Physical None",
            // The selector equal to a configured route is not installed twice, and the
            // 0.0.0.0/0 selector does not turn a split tunnel into a full one.
            "10.2.3.0/24 Tunnel None",
            "172.16.0.0/16 Tunnel None",
        ]
    );
}

#[test]
fn force_tunnel_routes_everything_but_the_gateway() {
    let p = profile(
        &format!("{MACHINE}<RoutingPolicyType>ForceTunnel</RoutingPolicyType>"),
        "",
    );
    let plan = plan("force", None, &p).unwrap();
    let routes = plan
        .routes
        .routes(ip("198.51.100.1"), &[ip("10.9.0.2")], &[]);
    let shown: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {:?}", r.prefix, r.via))
        .collect();
    assert_eq!(
        shown,
        [
            "198.51.100.1/32 Physical",
            "0.0.0.0/0 Tunnel",
            "::/0 Tunnel",
            "10.0.0.0/8 Tunnel",
        ]
    );
}

#[test]
fn cryptography_suite_becomes_exactly_one_proposal() {
    let suite = |a, c, p, d, i, e| {
        format!(
            "<CryptographySuite><AuthenticationTransformConstants>{a}\
             </AuthenticationTransformConstants><CipherTransformConstants>{c}\
             </CipherTransformConstants><PfsGroup>{p}</PfsGroup><DHGroup>{d}</DHGroup>\
             <IntegrityCheckMethod>{i}</IntegrityCheckMethod><EncryptionMethod>{e}\
             </EncryptionMethod></CryptographySuite>{MACHINE}"
        )
    };
    let cases = [
        (
            suite(
                "GCMAES256",
                "GCMAES256",
                "ECP384",
                "ECP384",
                "SHA384",
                "AES_GCM_256",
            ),
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16-ecp384",
        ),
        (
            suite("SHA256128", "AES128", "None", "Group14", "SHA256", "AES128"),
            "aes128-sha256-prfsha256-modp2048",
            "aes128-sha256",
        ),
        (
            suite("SHA196", "DES3", "PFSMM", "Group24", "SHA196", "DES3"),
            "3des-sha1-prfsha1-modp2048s256",
            "3des-sha1-modp2048s256",
        ),
        (
            suite(
                "GCMAES128",
                "GCMAES128",
                "PFS2048",
                "ECP256",
                "SHA256",
                "AES_GCM_128",
            ),
            "aes128gcm16-prfsha256-ecp256",
            "aes128gcm16-modp2048",
        ),
    ];
    for (native, ike, esp) in &cases {
        let plan = plan("c", None, &profile(native, "")).unwrap();
        assert!(plan.proposals_from_profile);
        let ikes: Vec<String> = plan.ike_proposals.iter().map(ToString::to_string).collect();
        let esps: Vec<String> = plan.esp_proposals.iter().map(ToString::to_string).collect();
        assert_eq!((ikes, esps), (vec![ike.to_string()], vec![esp.to_string()]));
    }
    let gcm = plan("c", None, &profile(&cases[0].0, "")).unwrap();
    let ike = gcm.ike_proposals[0];
    assert_eq!(
        (
            ike.encryption.iana_id(),
            ike.encryption.key_bits(),
            ike.prf.iana_id(),
            ike.dh_group.iana_id()
        ),
        (20, Some(256), 6, 20)
    );
    assert_eq!(ike.integrity, None);
}

#[test]
fn user_tunnel_with_eap_uses_the_user_store_and_split_dns() {
    let native = "<Authentication><UserMethod>EAP</UserMethod><Eap><Configuration>\
        <EapHostConfig xmlns=\"http://www.microsoft.com/provisioning/EapHostConfig\"><EapMethod>\
        <Type xmlns=\"http://www.microsoft.com/provisioning/EapCommon\">13</Type></EapMethod>\
        </EapHostConfig></Configuration></Eap></Authentication>";
    let top = "<AlwaysOn>true</AlwaysOn><DnsSuffix>corp.example.net,example.net</DnsSuffix>\
        <TrustedNetworkDetection>corp.example.net</TrustedNetworkDetection>\
        <NetworkOutageTime>600</NetworkOutageTime>\
        <DomainNameInformation><DomainName>.corp.example.net</DomainName>\
        <DnsServers>10.1.0.10,10.1.0.11</DnsServers><Persistent>true</Persistent>\
        </DomainNameInformation>";
    let plan = plan("u", Some(Scope::User), &profile(native, top)).unwrap();
    assert_eq!(plan.certificate_store, CertificateStore::User);
    assert!(matches!(
        plan.credential,
        Credential::Eap {
            method_type: Some(13),
            ..
        }
    ));
    assert_eq!(plan.dns.suffixes, ["corp.example.net", "example.net"]);
    assert_eq!(
        plan.dns.split,
        [SplitDns {
            domain: ".corp.example.net".into(),
            servers: vec![ip("10.1.0.10"), ip("10.1.0.11")],
            web_proxy: None,
            auto_trigger: false,
            persistent: true,
        }]
    );
    assert_eq!(plan.trusted_networks, ["corp.example.net"]);
    assert!(plan.always_on && !plan.device_tunnel && !plan.dns.register);
    assert_eq!(plan.network_outage_time, Some(600));
    assert!(plan.routes.class_based_route);
}

#[test]
fn default_proposals_match_their_names_and_iana_ids() {
    let ike: Vec<String> = default_ike_proposals()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        ike,
        [
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16-prfsha256-x25519",
            "aes256-sha256-prfsha256-modp2048"
        ]
    );
    let esp: Vec<String> = default_esp_proposals()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(esp, ["aes256gcm16", "aes256-sha256"]);
    // RFC 7296 / IANA IKEv2 transform registries.
    assert_eq!(DhGroup::Curve25519.iana_id(), 31);
    assert_eq!(Integrity::HmacSha2_256_128.iana_id(), 12);
    assert_eq!(Prf::HmacSha2_512.iana_id(), 7);
    assert_eq!(Encryption::ChaCha20Poly1305.iana_id(), 28);
    assert_eq!(Encryption::TripleDes.iana_id(), 3);
    assert_eq!(Encryption::AesCbc { key_bits: 128 }.iana_id(), 12);
}

#[test]
fn every_suite_windows_can_say_reads_back_from_its_proposals() {
    let encs = [
        Encryption::TripleDes,
        Encryption::AesCbc { key_bits: 128 },
        Encryption::AesCbc { key_bits: 256 },
        Encryption::AesGcm16 { key_bits: 128 },
        Encryption::AesGcm16 { key_bits: 256 },
        Encryption::ChaCha20Poly1305,
    ];
    let groups = [DhGroup::Modp2048, DhGroup::Ecp384, DhGroup::Curve25519];
    let mut said = 0;
    for &ike_enc in &encs {
        for prf in [Prf::HmacSha2_256, Prf::HmacSha2_384, Prf::HmacSha2_512] {
            for &dh_group in &groups {
                let integrity = (!ike_enc.is_aead()).then_some(match prf {
                    Prf::HmacSha2_384 => Integrity::HmacSha2_384_192,
                    _ => Integrity::HmacSha2_256_128,
                });
                let ike = IkeProposal {
                    encryption: ike_enc,
                    integrity,
                    prf,
                    dh_group,
                };
                for &esp_enc in &encs {
                    let esp = EspProposal {
                        encryption: esp_enc,
                        integrity: (!esp_enc.is_aead()).then_some(Integrity::HmacSha2_256_128),
                        pfs_group: Some(dh_group).filter(|g| *g != DhGroup::Modp2048),
                    };
                    if let Some(suite) = suite_for(ike, esp) {
                        said += 1;
                        assert_eq!(suite_proposals(&suite), Some((ike, esp)));
                    } else {
                        assert!(
                            [ike_enc, esp_enc].contains(&Encryption::ChaCha20Poly1305)
                                || prf == Prf::HmacSha2_512
                                || dh_group == DhGroup::Curve25519,
                            "{ike:?} {esp:?} should be expressible"
                        );
                    }
                }
            }
        }
    }
    assert!(said > 20, "{said}");
}
