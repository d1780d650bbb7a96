//! The sample of Azure's client package (tests/data/azure-vpnclient, see its README) read the way
//! `aovpn profile import` reads a download: zipped with backslash names, the settings and the
//! root found, the rest named, and profiles made from it that pass validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use profile::client_package::{ClientPackage, GatewayDescription, write_zip};
use profile::{ParsedProfile, Scope};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/azure-vpnclient")
}

/// Every file of the sample but its README, named as Azure names entries (`Generic\...`).
fn sample_zip() -> Vec<u8> {
    let mut entries = Vec::new();
    for folder in std::fs::read_dir(sample_dir()).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            let name = format!(
                "{}\\{}",
                folder.file_name().unwrap().to_str().unwrap(),
                file.file_name().unwrap().to_str().unwrap()
            );
            entries.push((name, std::fs::read(&file).unwrap()));
        }
    }
    entries.sort();
    write_zip(&entries).unwrap()
}

#[test]
fn the_azure_sample_is_read_and_makes_valid_profiles_for_both_tunnels() {
    let package = ClientPackage::read(&sample_zip()).unwrap();
    let s = &package.settings;
    assert!(s.vpn_server.starts_with("azuregateway-"));
    assert!(s.vpn_server.ends_with(".vpn.azure.com"));
    assert_eq!(s.vpn_types, ["IkeV2", "OpenVPN"]);
    let routes: Vec<String> = s.routes.iter().map(ToString::to_string).collect();
    assert_eq!(routes, ["10.1.0.0/24", "10.1.4.0/24"]);
    assert_eq!(
        s.server_cert_root_cn.as_deref(),
        Some("Sample Gateway Root CA")
    );
    assert!(s.ignored.is_empty(), "{:?}", s.ignored);
    let root = std::fs::read(sample_dir().join("Generic/VpnServerRoot.cer_0")).unwrap();
    assert_eq!(package.roots, [root]);
    assert_eq!(package.unused, ["OpenVPN\\vpnconfig.ovpn"]);
    assert!(package.device_profile.is_none() && package.user_profile.is_none());

    let d = GatewayDescription::from_settings(s, vec!["00".repeat(20)]);
    for (profile, scope) in [
        (d.device_profile(), Scope::Device),
        (d.user_profile(), Scope::User),
    ] {
        let xml = profile::serialize::to_profile_xml(&profile);
        let parsed = ParsedProfile::parse_str("made.xml", &xml).unwrap();
        let warnings = parsed.validate(Some(scope)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let plan = profile::plan::plan("azure", Some(scope), &parsed.profile).unwrap();
        assert_eq!(plan.servers[0].host, s.vpn_server);
        assert_eq!(plan.device_tunnel, scope == Scope::Device);
        assert!(plan.always_on);
        assert_eq!(plan.routes.configured.len(), 2);
    }
}
