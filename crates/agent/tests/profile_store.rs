//! The agent's profile store on a temporary directory (profiles from the profile crate's corpus).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent::profile_store::{Store, StoreError};
use profile::{ErrorKind, ParsedProfile, Scope, SourceForm};

fn corpus(name: &str) -> (ParsedProfile, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profile/tests/corpus/valid")
        .join(name);
    let bytes = fs::read(&path).unwrap();
    (ParsedProfile::parse(name, &bytes).unwrap(), bytes)
}

#[test]
fn add_keeps_the_original_bytes_and_the_plain_profile() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (parsed, bytes) = corpus("syncml-device.xml");
    let (stored, warnings) = store
        .add("Corp Device Tunnel", Scope::Device, &parsed, &bytes)
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(stored.form, SourceForm::SyncMl);
    let entry = dir.path().join("device/Corp Device Tunnel");
    assert_eq!(fs::read(entry.join("original")).unwrap(), bytes);
    // profile.xml is the unescaped ProfileXML: the plain corpus file it was made from.
    let plain = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../profile/tests/corpus/valid/device-tunnel.xml"),
    )
    .unwrap();
    assert_eq!(fs::read(entry.join("profile.xml")).unwrap(), plain);
    let again = store.get("Corp Device Tunnel").unwrap();
    assert_eq!(again.parsed.profile, parsed.profile);
    assert_eq!(again.original, bytes);
    assert_eq!(again.scope, Scope::Device);
}

#[test]
fn user_scope_entries_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (parsed, bytes) = corpus("user-tunnel-eap.xml");
    store
        .add("Corp User Tunnel", Scope::User, &parsed, &bytes)
        .unwrap();
    let entry = dir.path().join("user/Corp User Tunnel");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("user")), 0o700);
    assert_eq!(mode(&entry.join("original")), 0o600);
}

#[test]
fn a_crash_leftover_is_invisible_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    // What an interrupted add leaves: a hidden, half-written temporary directory.
    let leftover = dir.path().join("device/.tmp-999-0");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join("original"), b"<VPNPro").unwrap();
    assert!(store.list().unwrap().is_empty());
    let (parsed, bytes) = corpus("azure-device-tunnel.xml");
    store
        .add("MachineCertTest", Scope::Device, &parsed, &bytes)
        .unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["MachineCertTest"]);
}

#[test]
fn second_device_tunnel_and_duplicate_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (seed, seed_bytes) = corpus("azure-device-tunnel.xml");
    store
        .add("MachineCertTest", Scope::Device, &seed, &seed_bytes)
        .unwrap();
    let (other, other_bytes) = corpus("crypto-gcm.xml");
    match store.add("Other", Scope::Device, &other, &other_bytes) {
        Err(StoreError::Invalid(e)) => assert_eq!(
            e.kinds(),
            [&ErrorKind::SecondDeviceTunnel {
                existing: "MachineCertTest".into()
            }]
        ),
        other => panic!("{other:?}"),
    }
    let (user, user_bytes) = corpus("user-tunnel-eap.xml");
    match store.add("MachineCertTest", Scope::User, &user, &user_bytes) {
        Err(StoreError::Exists { name, scope }) => {
            assert_eq!((name.as_str(), scope), ("MachineCertTest", Scope::Device))
        }
        other => panic!("{other:?}"),
    }
    // A device tunnel in user scope is refused by the rules before the store looks at it.
    match store.add("U", Scope::User, &other, &other_bytes) {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.kinds(), [&ErrorKind::DeviceTunnelRequiresDeviceScope])
        }
        other => panic!("{other:?}"),
    }
    // After removal the second device tunnel fits.
    store.remove("MachineCertTest").unwrap();
    store
        .add("Other", Scope::Device, &other, &other_bytes)
        .unwrap();
    assert!(matches!(
        store.get("MachineCertTest"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn a_damaged_entry_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (parsed, bytes) = corpus("force-tunnel.xml");
    store.add("Full", Scope::User, &parsed, &bytes).unwrap();
    fs::write(
        dir.path().join("user/Full/meta.toml"),
        "name = \"Other\"\nscope = \"user\"\nform = \"profilexml\"\nsource_file = \"x\"\n",
    )
    .unwrap();
    assert!(matches!(store.get("Full"), Err(StoreError::Damaged { .. })));
    fs::write(dir.path().join("user/Full/meta.toml"), "not toml").unwrap();
    assert!(matches!(store.list(), Err(StoreError::Damaged { .. })));
    // ... and can still be removed.
    assert_eq!(store.remove("Full").unwrap(), Scope::User);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_lockdown_profile_blocks_adding_and_removing_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (user, user_bytes) = corpus("force-tunnel.xml");
    store.add("User", Scope::User, &user, &user_bytes).unwrap();
    let xml = "<VPNProfile><LockDown>true</LockDown><NativeProfile><Servers>gw.example.net</Servers>\
               <NativeProtocolType>IKEv2</NativeProtocolType><Authentication>\
               <MachineMethod>Certificate</MachineMethod></Authentication></NativeProfile></VPNProfile>";
    let locked = ParsedProfile::parse_str("locked.xml", xml).unwrap();
    store
        .add("Locked", Scope::Device, &locked, xml.as_bytes())
        .unwrap();
    let (other, other_bytes) = corpus("force-tunnel.xml");
    match store.add("Other", Scope::User, &other, &other_bytes) {
        Err(StoreError::Invalid(e)) => assert_eq!(
            e.kinds(),
            [&ErrorKind::LockDownProfileExists {
                existing: "Locked".into()
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.remove("User"), Err(StoreError::LockedDown { by }) if by == "Locked"));
    store.remove("Locked").unwrap();
    store.remove("User").unwrap();
    assert!(store.list().unwrap().is_empty());
}
