//! Property tests: serialize(parse(x)) parses to the same model, for generated models and for
//! each delivery form (plain, escaped, SyncML); the parser never panics on arbitrary input.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::IpAddr;

use profile::serialize::{to_escaped, to_profile_xml, to_syncml};
use profile::*;
use proptest::prelude::*;
use proptest::sample::select;

fn text() -> impl Strategy<Value = String> {
    // No leading/trailing blanks (values are trimmed); markup characters exercise escaping.
    "[A-Za-z0-9][A-Za-z0-9 _&<>\"'.%-]{0,14}[A-Za-z0-9]"
}

fn dns_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,8}){0,3}"
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from)
    ]
}

fn name<T: WindowsName + std::fmt::Debug>() -> impl Strategy<Value = T> {
    select(T::ALL)
}

fn raw(options: &'static [&'static str]) -> impl Strategy<Value = RawXml> {
    select(options).prop_map(|s| RawXml(s.to_owned()))
}

fn server() -> impl Strategy<Value = Server> {
    let host = prop_oneof![dns_name(), ip().prop_map(|a| a.to_string())];
    let friendly = proptest::option::of("[A-Za-z0-9][A-Za-z0-9 ]{0,10}[A-Za-z0-9]");
    (host, friendly).prop_map(|(host, friendly_name)| Server {
        host,
        friendly_name,
    })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange {
        first: a.min(b),
        last: a.max(b),
    })
}

fn address_range() -> impl Strategy<Value = AddressRange> {
    prop_oneof![
        any::<[u8; 4]>().prop_flat_map(|a| (0u8..=32).prop_map(move |len| AddressRange::Prefix(
            Prefix {
                addr: IpAddr::from(a),
                len
            }
        ))),
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(a, b)| {
            let (a, b) = (IpAddr::from(a), IpAddr::from(b));
            AddressRange::Range(a.min(b), a.max(b))
        }),
    ]
}

fn traffic_filter() -> impl Strategy<Value = TrafficFilter> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(any::<u8>()),
        proptest::collection::vec(port_range(), 0..3),
        proptest::collection::vec(port_range(), 0..3),
        proptest::collection::vec(address_range(), 0..3),
        proptest::collection::vec(address_range(), 0..3),
        proptest::option::of(name::<RoutingPolicy>()),
        proptest::option::of(name::<Direction>()),
    )
        .prop_map(
            |(app_id, claims, protocol, lp, rp, la, ra, routing, direction)| TrafficFilter {
                app_id,
                claims,
                protocol,
                local_port_ranges: lp,
                remote_port_ranges: rp,
                local_address_ranges: la,
                remote_address_ranges: ra,
                routing_policy_type: routing,
                direction,
            },
        )
}

fn domain_info() -> impl Strategy<Value = DomainNameInformation> {
    let domain = prop_oneof![
        Just(".".to_owned()),
        dns_name(),
        dns_name().prop_map(|d| format!(".{d}"))
    ];
    (
        domain,
        proptest::collection::vec(ip(), 0..3),
        proptest::option::of(text()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(domain_name, dns_servers, web_proxy_servers, auto_trigger, persistent)| {
                DomainNameInformation {
                    domain_name,
                    dns_servers,
                    web_proxy_servers,
                    auto_trigger,
                    persistent,
                }
            },
        )
}

fn route() -> impl Strategy<Value = Route> {
    (
        ip(),
        any::<u8>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(address, prefix_size, exclusion_route, metric)| Route {
            address,
            prefix_size,
            exclusion_route,
            metric,
        })
}

const EAP: &[&str] = &[
    "<Eap><Configuration><EapHostConfig xmlns=\"http://www.microsoft.com/provisioning/EapHostConfig\"><EapMethod><Type xmlns=\"http://www.microsoft.com/provisioning/EapCommon\">13</Type></EapMethod></EapHostConfig></Configuration></Eap>",
    "<Eap>\n  <Configuration>&lt;x/&gt;</Configuration>\n</Eap>",
];
const WINDOWS_ONLY: &[&str] = &[
    "<PluginProfile><ServerUrlList>a;b</ServerUrlList><PluginPackageFamilyName>P</PluginPackageFamilyName></PluginProfile>",
    "<DeviceCompliance>\n<Enabled>true</Enabled>\n</DeviceCompliance>",
    "<APNBinding><AccessPointName>apn &amp; co</AccessPointName></APNBinding>",
];

fn crypto_suite() -> impl Strategy<Value = CryptographySuite> {
    (
        proptest::option::of(name::<AuthTransform>()),
        proptest::option::of(name::<CipherTransform>()),
        proptest::option::of(name::<PfsGroupSetting>()),
        proptest::option::of(name::<DhGroupSetting>()),
        proptest::option::of(name::<IntegrityCheckMethod>()),
        proptest::option::of(name::<EncryptionMethod>()),
    )
        .prop_map(|(a, c, p, d, i, e)| CryptographySuite {
            authentication_transform_constants: a,
            cipher_transform_constants: c,
            pfs_group: p,
            dh_group: d,
            integrity_check_method: i,
            encryption_method: e,
        })
}

fn native_profile() -> impl Strategy<Value = NativeProfile> {
    let protocol_list = (
        proptest::collection::vec(name::<ListedProtocol>(), 0..4),
        proptest::option::of(0u32..=500_000),
    )
        .prop_map(|(protocols, retry_time_in_hours)| ProtocolList {
            protocols,
            retry_time_in_hours,
        });
    let authentication = (
        proptest::option::of(name::<UserMethod>()),
        proptest::option::of(name::<MachineMethod>()),
        proptest::option::of(raw(EAP)),
        proptest::option::of(raw(&["<Certificate><Issuer>x</Issuer></Certificate>"])),
    )
        .prop_map(
            |(user_method, machine_method, eap, certificate)| Authentication {
                user_method,
                machine_method,
                eap,
                certificate,
            },
        );
    (
        proptest::collection::vec(server(), 1..4),
        proptest::option::of(name::<RoutingPolicy>()),
        proptest::option::of(name::<NativeProtocol>()),
        proptest::option::of(protocol_list),
        proptest::option::of(text()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(crypto_suite()),
        authentication,
    )
        .prop_map(
            |(servers, rp, np, pl, psk, dcb, plumb, suite, authentication)| NativeProfile {
                servers,
                routing_policy_type: rp,
                native_protocol_type: np,
                protocol_list: pl,
                l2tp_psk: psk,
                disable_class_based_default_route: dcb,
                plumb_ikev2_ts_as_routes: plumb,
                cryptography_suite: suite,
                authentication,
            },
        )
}

fn opt_bool() -> impl Strategy<Value = Option<bool>> {
    proptest::option::of(any::<bool>())
}

fn vpn_profile() -> impl Strategy<Value = VpnProfile> {
    let head = (
        proptest::option::of(text().prop_filter("no /", |s| !s.contains('/'))),
        proptest::option::of(text()),
        [
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
        ],
        proptest::collection::vec(dns_name(), 0..3),
        proptest::collection::vec(dns_name(), 0..3),
        [
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
            opt_bool(),
        ],
        proptest::option::of(name::<DataEncryption>()),
        (
            proptest::option::of(1u32..=9999),
            proptest::option::of(1u32..=9999),
            proptest::option::of(any::<u32>()),
        ),
    );
    let proxy = proptest::option::of(
        (proptest::option::of(text()), proptest::option::of(text())).prop_map(
            |(auto_config_url, manual_server)| Proxy {
                auto_config_url,
                manual_server,
            },
        ),
    );
    let lists = (
        proxy,
        proptest::collection::vec(domain_info(), 0..3),
        proptest::collection::vec(traffic_filter(), 0..2),
        proptest::collection::vec(text(), 0..2),
        proptest::option::of(native_profile()),
        proptest::collection::vec(route(), 0..3),
        proptest::sample::subsequence(WINDOWS_ONLY, 0..=3).prop_map(|v| {
            v.into_iter()
                .map(|s| RawXml(s.to_owned()))
                .collect::<Vec<_>>()
        }),
    );
    (head, lists).prop_map(|(h, l)| {
        let (profile_name, edp_mode_id, b1, dns_suffix, tnd, b2, data_encryption, nums) = h;
        let (proxy, dni, tf, app_triggers, native_profile, routes, windows_only) = l;
        VpnProfile {
            profile_name,
            edp_mode_id,
            remember_credentials: b1[0],
            always_on: b1[1],
            always_on_active: b1[2],
            dns_suffix,
            trusted_network_detection: tnd,
            disable_advanced_options_edit_button: b1[3],
            disable_disconnect_button: b1[4],
            lock_down: b1[5],
            device_tunnel: b2[0],
            register_dns: b2[1],
            by_pass_for_local: b2[2],
            require_vpn_client_app_ui: b2[3],
            data_encryption,
            disable_ikev2_fragmentation: b2[4],
            ipv4_interface_metric: nums.0,
            ipv6_interface_metric: nums.1,
            network_outage_time: nums.2,
            private_network: b2[5],
            use_ras_credentials: b2[6],
            proxy,
            domain_name_information: dni,
            traffic_filters: tf,
            app_triggers,
            native_profile,
            routes,
            windows_only,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn serialize_then_parse_is_identity(model in vpn_profile()) {
        let xml = to_profile_xml(&model);
        let parsed = ParsedProfile::parse_str("gen.xml", &xml)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&parsed.profile, &model, "{}", xml);
        // And a second round is byte-stable.
        prop_assert_eq!(to_profile_xml(&parsed.profile), xml);
    }

    #[test]
    fn escaped_and_syncml_forms_carry_the_same_model(
        model in vpn_profile(),
        name in "[A-Za-z0-9][A-Za-z0-9 %&#<>éß-]{0,20}",
        scope in proptest::option::of(select(&[Scope::Device, Scope::User][..])),
    ) {
        let xml = to_profile_xml(&model);
        let escaped = ParsedProfile::parse_str("e.txt", &to_escaped(&xml)).unwrap();
        prop_assert_eq!(escaped.form, SourceForm::Escaped);
        prop_assert_eq!(&escaped.profile, &model);
        prop_assert_eq!(&escaped.profile_xml, &xml);
        let syncml = ParsedProfile::parse_str("s.xml", &to_syncml(&name, scope, &xml)).unwrap();
        prop_assert_eq!(syncml.form, SourceForm::SyncMl);
        prop_assert_eq!(&syncml.profile, &model);
        prop_assert_eq!(syncml.uri, Some(CspUri { scope, name }));
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(input in "\\PC{0,200}") {
        let _ = ParsedProfile::parse_str("any", &input);
    }

    #[test]
    fn parser_never_panics_on_mutated_profiles(
        model in vpn_profile(),
        cut in any::<prop::sample::Index>(),
        insert in "[<>&;/\"a-zA-Z ]{0,4}",
        escaped in any::<bool>(),
    ) {
        let xml = to_profile_xml(&model);
        let xml = if escaped { to_escaped(&xml) } else { xml };
        let mut at = cut.index(xml.len() + 1);
        while !xml.is_char_boundary(at) {
            at -= 1;
        }
        let mutated = format!("{}{insert}{}", &xml[..at], &xml[at..]);
        match ParsedProfile::parse_str("m.xml", &mutated) {
            Ok(p) => {
                let _ = p.validate(None);
                let _ = profile::plan::plan("m", None, &p.profile);
                // Whatever was accepted serializes to something that reads back the same.
                let again = to_profile_xml(&p.profile);
                let reparsed = ParsedProfile::parse_str("again.xml", &again)
                    .map_err(|e| TestCaseError::fail(format!("{e}\n{again}")))?;
                prop_assert_eq!(reparsed.profile, p.profile);
            }
            Err(e) => {
                let lines = mutated.lines().count().max(1) as u32;
                for err in &e.0 {
                    prop_assert!(err.pos.line >= 1 && err.pos.col >= 1, "{}", err);
                    prop_assert!(err.pos.line <= lines + 1, "{} (input has {} lines)", err, lines);
                }
            }
        }
    }
}
