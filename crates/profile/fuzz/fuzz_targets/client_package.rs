//! Client packages: a first byte of 0 gives the rest to the zip reader as it is; otherwise the
//! rest, split at 0xFF bytes, becomes a valid zip (so the reader gets past the archive's own
//! checks) of VpnSettings.xml, the root and a ready device profile under Azure's backslash
//! names. Nothing may panic, and whatever settings are accepted must make device and user
//! profiles that parse and pass validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profile::client_package::{ClientPackage, GatewayDescription, write_zip};
use profile::{ParsedProfile, Scope, serialize};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let zip = if mode == 0 {
        rest.to_vec()
    } else {
        let names = [
            "Generic\\VpnSettings.xml",
            "Generic\\VpnServerRoot.cer_0",
            "aovpn/DeviceTunnel.xml",
        ];
        let entries: Vec<(String, Vec<u8>)> = rest
            .split(|&b| b == 0xFF)
            .zip(names)
            .map(|(bytes, name)| (name.to_owned(), bytes.to_vec()))
            .collect();
        let Ok(zip) = write_zip(&entries) else {
            return;
        };
        zip
    };
    let Ok(package) = ClientPackage::read(&zip) else {
        return;
    };
    let d = GatewayDescription::from_settings(&package.settings, vec!["ab".repeat(20)]);
    for (profile, scope) in [
        (d.device_profile(), Scope::Device),
        (d.user_profile(), Scope::User),
    ] {
        let xml = serialize::to_profile_xml(&profile);
        let parsed = ParsedProfile::parse_str("made", &xml).expect("a made profile parses");
        if let Err(e) = parsed.validate(Some(scope)) {
            panic!("a made profile is refused: {e}\n{xml}");
        }
    }
});
