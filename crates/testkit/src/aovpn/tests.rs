use super::*;

#[test]
fn json_fields_are_found_in_pretty_status() {
    let text =
        "{\n  \"state\": \"connected\",\n  \"virtual_ip\": \"172.16.201.1\",\n  \"error\": null\n}";
    assert_eq!(json_state(text).as_deref(), Some("connected"));
    assert_eq!(
        json_string_field(text, "virtual_ip").as_deref(),
        Some("172.16.201.1")
    );
    assert_eq!(json_string_field(text, "error"), None);
    assert_eq!(json_state(""), None);
}

#[test]
fn gateway_toml_lists_every_option() {
    let opts = GatewayOpts {
        listen: "203.0.113.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        cert: "/p/gw.crt".into(),
        key: "/p/gw.key".into(),
        id: Some("vpn.example".into()),
        root_cas: vec!["/p/ca.crt".into()],
        pool: "172.16.201.0/24".into(),
        pool_v6: Some("fd00:172:16:201::/112".into()),
        routes: vec!["10.1.0.0/16".into()],
        dns: vec![],
        dns_domains: vec!["corp.example".into()],
        ike_proposals: vec!["aes256-sha1-modp1024".into()],
        esp_proposals: vec!["aes256-sha1".into()],
        allow_legacy: true,
        revoked: vec!["AB".into()],
        dpd_interval_secs: Some(3),
        lifetimes_secs: Some((12, 10)),
        interface: "gw0".into(),
        state_dir: None,
        run_as: None,
        extra: "[limits]\nhalf_open_per_source = 3\n".into(),
        accept: Some(vec!["machine".into()]),
        admin_group: Some("aovpn".into()),
    };
    let text = opts.render(Path::new("/w"));
    assert!(
        text.ends_with("[limits]\nhalf_open_per_source = 3\n"),
        "{text}"
    );
    for needle in [
        "state_dir = \"/w/state\"",
        "socket = \"/w/admin.sock\"",
        "group = \"aovpn\"",
        "addresses = [\"203.0.113.1\"]",
        "id = \"vpn.example\"",
        "root_ca_files = [\"/p/ca.crt\"]",
        "revoked_thumbprints = [\"AB\"]",
        "pool_v6 = \"fd00:172:16:201::/112\"",
        "dns = []",
        "dns_domains = [\"corp.example\"]",
        "ike_proposals = [\"aes256-sha1-modp1024\"]",
        "allow_legacy = true",
        "dpd_interval_secs = 3",
        "ike_lifetime_secs = 12",
        "child_lifetime_secs = 10",
        "interface = \"gw0\"",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}
