//! The profile corpus: every file under `corpus/valid` must parse and validate (with exactly the
//! warnings in its `.warn` file, none if there is no such file) and survive a serialize/parse round
//! trip; every file under `corpus/invalid` must be refused with exactly the lines in its `.err`
//! file. `corpus/valid/azure-device-tunnel.xml` is the VPNProfile.xml of the Azure "Configure an
//! Always On VPN device tunnel" article, copied byte-for-byte (markdown list indentation included).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs;
use std::path::Path;

use profile::{ParsedProfile, Scope, serialize};

fn corpus_files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !matches!(p.extension().and_then(|e| e.to_str()), Some("err" | "warn")))
        .map(|p| {
            let name = format!("{dir}/{}", p.file_name().unwrap().to_str().unwrap());
            (name, fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "corpus {dir} is too small");
    files
}

fn sidecar(name: &str, ext: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(format!("{name}.{ext}"));
    fs::read_to_string(path).ok()
}

fn lines<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

#[test]
fn valid_profiles_parse_validate_and_round_trip() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus_files("valid") {
        let parsed = match ParsedProfile::parse(&name, &bytes) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: parse failed:\n{e}"));
                continue;
            }
        };
        match parsed.validate(None) {
            Ok(warnings) => {
                let expected = sidecar(&name, "warn").unwrap_or_default();
                if lines(&warnings) != expected {
                    failures.push(format!(
                        "{name}: warnings:\n{}expected:\n{expected}",
                        lines(&warnings)
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: validation failed:\n{e}")),
        }
        let xml = serialize::to_profile_xml(&parsed.profile);
        match ParsedProfile::parse_str("reserialized", &xml) {
            Ok(again) if again.profile == parsed.profile => {}
            Ok(again) => failures.push(format!(
                "{name}: round trip changed the model:\n{:?}\n{:?}",
                parsed.profile, again.profile
            )),
            Err(e) => failures.push(format!(
                "{name}: reserialized form does not parse:\n{e}\n{xml}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_profiles_are_refused_with_the_expected_errors() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus_files("invalid") {
        let errors = match ParsedProfile::parse(&name, &bytes) {
            Err(e) => e,
            Ok(parsed) => match parsed.validate(None) {
                Err(e) => e,
                Ok(_) => {
                    failures.push(format!("{name}: accepted"));
                    continue;
                }
            },
        };
        let actual = lines(&errors.0);
        let expected = sidecar(&name, "err").unwrap_or_else(|| format!("<no {name}.err file>"));
        if actual != expected {
            failures.push(format!("{name}: got:\n{actual}expected:\n{expected}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_azure_seed_is_the_document_verbatim() {
    let seed = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/valid/azure-device-tunnel.xml"),
    )
    .unwrap();
    // Trailing blanks and the odd indentation of the article are part of the test.
    assert!(seed.starts_with("   <VPNProfile>  \n     <NativeProfile>  \n"));
    assert!(seed.contains("    <!-- disable the addition of a class based route"));
    assert!(seed.ends_with("   </VPNProfile>\n"));
    let parsed = ParsedProfile::parse("seed", seed.as_bytes()).unwrap();
    // Every element of the seed is applied: nothing to warn about.
    let warnings = parsed.validate(Some(Scope::Device)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let p = &parsed.profile;
    assert!(p.is_device_tunnel() && p.is_always_on() && p.register_dns == Some(true));
    assert_eq!(
        p.servers()[0].host,
        "azuregateway-1234-56-78dc.cloudapp.net"
    );
    let routes: Vec<String> = p.routes.iter().map(|r| r.prefix().to_string()).collect();
    assert_eq!(routes, ["192.168.3.5/32", "192.168.3.4/32"]);
}

/// Every rule has its own error kind, and every kind a parser or validator can produce on its own
/// is shown by at least one file of the invalid corpus. (The store's kinds, SecondDeviceTunnel and
/// LockDownProfileExists, and ScopeConflict are covered by the store and CLI tests.)
#[test]
fn the_invalid_corpus_covers_every_error_kind() {
    let mut seen = std::collections::BTreeSet::new();
    for (name, bytes) in corpus_files("invalid") {
        let errors = match ParsedProfile::parse(&name, &bytes) {
            Err(e) => e,
            Ok(p) => p.validate(None).unwrap_err(),
        };
        for e in errors.0 {
            let debug = format!("{:?}", e.kind);
            let variant = debug.split([' ', '(', '{']).next().unwrap().to_owned();
            seen.insert(variant);
        }
    }
    let expected = [
        "Encoding",
        "Xml",
        "WrongRoot",
        "UnknownElement",
        "DuplicateElement",
        "MissingElement",
        "UnexpectedChildElements",
        "InvalidBool",
        "InvalidNumber",
        "InvalidValue",
        "InvalidAddress",
        "InvalidDnsName",
        "InvalidServer",
        "InvalidPortRange",
        "InvalidProfileName",
        "MissingNativeProfile",
        "UnsupportedProtocol",
        "ProtocolListWithoutIkev2",
        "DeviceTunnelRequiresIkev2",
        "DeviceTunnelRequiresMachineCertificate",
        "DeviceTunnelRequiresSplitTunnel",
        "DeviceTunnelRequiresDeviceScope",
        "LockDownRequiresDeviceScope",
        "MissingAuthenticationMethod",
        "ConflictingAuthenticationMethods",
        "MsChapV2NotForIkev2",
        "EapWithoutConfiguration",
        "IncompleteCryptographySuite",
        "GcmMismatch",
        "UnsupportedAlgorithm",
        "PrefixSizeOutOfRange",
        "ExclusionRouteRequiresSplitTunnel",
        "PortRangesRequireTcpOrUdp",
        "SyncMlWithoutProfile",
        "SyncMlMultipleProfiles",
        "SyncMlPerNodeSetting",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|k| !seen.contains(*k))
        .collect();
    assert!(missing.is_empty(), "no corpus file shows {missing:?}");
}
