//! A good configuration, the helpers every section's tests load variations of it with, and
//! the tests of loading as a whole.

use std::path::{Path, PathBuf};

use super::{ConfigError, GatewayConfig};

pub(super) const GOOD: &str = r#"
state_dir = "state"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "/etc/aovpn/gw.key"
[clients]
root_ca_files = ["ca.crt"]
root_ca_data = ["MIIBszCCAVmgAwIBAgIU"]
revoked_thumbprints = ["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16"]
dns = ["10.1.0.53"]
"#;

pub(super) fn load(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_toml(
        text,
        Path::new("/etc/aovpn/gateway.toml"),
        Path::new("/etc/aovpn"),
    )
}

pub(super) fn field_of(text: &str) -> &'static str {
    match load(text) {
        Err(e) => e.field().unwrap_or("<not a field error>"),
        Ok(_) => "<accepted>",
    }
}

/// For each `(from, to, field)`: `GOOD` with its first `from` replaced by `to` is refused
/// naming `field`.
pub(super) fn assert_each_names_its_field(cases: &[(&str, &str, &str)]) {
    for (from, to, field) in cases {
        assert!(GOOD.contains(from), "test case does not apply: {from}");
        assert_eq!(
            field_of(&GOOD.replacen(from, to, 1)),
            *field,
            "{from} -> {to}"
        );
    }
}

#[test]
fn good_config_loads_with_defaults_and_resolved_paths() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.listen.ike_port, 500);
    assert_eq!(c.listen.natt_port, 4500);
    assert_eq!(c.identity.certificate, PathBuf::from("/etc/aovpn/gw.crt"));
    assert_eq!(c.identity.key, PathBuf::from("/etc/aovpn/gw.key"));
    assert_eq!(
        c.clients.root_ca_files,
        vec![PathBuf::from("/etc/aovpn/ca.crt")]
    );
    assert_eq!(c.state_dir, PathBuf::from("/etc/aovpn/state"));
    assert_eq!(c.crypto.ike_lifetime_secs, 28_800);
    assert_eq!(c.crypto.child_lifetime_secs, 27_000);
    assert_eq!(c.tunnel.interface, "aovpn0");
    assert_eq!(c.limits.half_open_per_source, 5);
    assert_eq!(c.limits.max_unauthenticated_message, 10_000);
    let revoked: Vec<_> = c.revoked().into_iter().collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].to_string(),
        "AABBCCDDEEFF00112233445566778899AABBCCDD"
    );
}

#[test]
fn unknown_key_is_refused_with_its_name_and_position() {
    let text = GOOD.replace("[network]", "[network]\nroutez = []");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("routez"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn wrong_type_is_refused_with_the_key() {
    let text = GOOD.replace(
        "pool_v4 = \"172.16.201.0/24\"",
        "pool_v4 = \"172.16.201.0/33\"",
    );
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("pool_v4"), "{err}");
}

#[test]
fn what_needs_a_restart_is_named() {
    let old = load(GOOD).unwrap();
    let same = load(&GOOD.replace("10.1.0.53", "10.1.0.54")).unwrap();
    assert!(old.needs_restart_for(&same).is_empty(), "DNS applies live");
    let moved = load(
        &GOOD
            .replace("172.16.201.0/24", "172.16.202.0/24")
            .replace("[listen]", "[listen]\nike_port = 5000"),
    )
    .unwrap();
    assert_eq!(
        old.needs_restart_for(&moved),
        ["listen.ike_port", "clients.pool_v4"]
    );
}

/// Errors in several sections: the one checked first is reported.
#[test]
fn sections_are_checked_in_a_fixed_order() {
    let broken_limits = GOOD.replace("[network]", "[limits]\nhalf_open_limit = 0\n[network]");
    assert_eq!(field_of(&broken_limits), "limits.half_open_limit");
    let broken_network = broken_limits.replace("routes = [\"10.1.0.0/16\"]", "routes = []");
    assert_eq!(field_of(&broken_network), "network.routes");
    let broken_listen = broken_network.replace("[listen]", "[listen]\nike_port = 0");
    assert_eq!(field_of(&broken_listen), "listen.ike_port");
}
