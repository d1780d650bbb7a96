//! `aovpn profile ...` end to end, against a temporary store (`--store`).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profile/tests/corpus")
        .join(name)
}

fn aovpn(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aovpn"))
        .arg("profile")
        .arg("--store")
        .arg(store)
        .args(args)
        .env("AOVPN_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn validate_accepts_the_azure_seed_document() {
    let store = tempfile::tempdir().unwrap();
    let file = corpus("valid/azure-device-tunnel.xml");
    let out = aovpn(store.path(), &["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Valid, and every element applied: nothing to warn about.
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out), format!("{}: valid\n", file.display()));
}

#[test]
fn validate_refuses_with_file_line_col_lines_and_exit_2() {
    let store = tempfile::tempdir().unwrap();
    let file = corpus("invalid/prefix-size.xml");
    let f = file.to_str().unwrap();
    let out = aovpn(store.path(), &["validate", f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{f}:10:5: VPNProfile/Route[1]/PrefixSize: PrefixSize 33 is out of range for an IPv4 \
             address (max 32)\n{f}:14:5: VPNProfile/Route[2]/PrefixSize: PrefixSize 129 is out of \
             range for an IPv6 address (max 128)\n"
        )
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn validate_with_user_scope_refuses_a_device_tunnel() {
    let store = tempfile::tempdir().unwrap();
    let f = corpus("valid/azure-device-tunnel.xml");
    let f = f.to_str().unwrap();
    let out = aovpn(store.path(), &["validate", f, "--scope", "user"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{f}:24:5: VPNProfile/DeviceTunnel: a device tunnel must be a device-scope profile, \
             not user scope\n"
        )
    );
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let store = tempfile::tempdir().unwrap();
    let f = corpus("valid/windows-only.xml");
    let out = aovpn(store.path(), &["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out).lines().count(), 4);
    assert!(stderr(&out).contains(":2:3: warning: VPNProfile/EdpModeId: "));
}

#[test]
fn add_list_show_export_remove() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    let seed = corpus("valid/azure-device-tunnel.xml");
    let out = aovpn(
        s,
        &["add", seed.to_str().unwrap(), "--name", "MachineCertTest"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("added device profile \"MachineCertTest\" (device tunnel)"));
    // The original bytes are kept exactly.
    let kept = std::fs::read(s.join("device/MachineCertTest/original")).unwrap();
    assert_eq!(kept, std::fs::read(&seed).unwrap());

    // SyncML: name and scope come from the URI (%20 decoded).
    let user = corpus("valid/syncml-user-cdata.xml");
    let out = aovpn(s, &["add", user.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("added user profile \"Corp Full Tunnel\" (user tunnel)"));

    let out = aovpn(s, &["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "NAME              SCOPE   TUNNEL         ALWAYSON  SERVERS\n\
         MachineCertTest   device  device tunnel  yes       azuregateway-1234-56-78dc.cloudapp.net\n\
         Corp Full Tunnel  user    user tunnel    yes       vpn.example.net\n"
    );

    let out = aovpn(s, &["show", "MachineCertTest"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("scope: device\ntunnel: device tunnel\nalways-on: yes\n"));
    assert!(text.ends_with(&std::fs::read_to_string(&seed).unwrap()));

    let out = aovpn(s, &["show", "MachineCertTest", "--plan"]);
    assert_eq!(out.status.code(), Some(0));
    let plan = stdout(&out);
    for line in [
        "certificate: machine store, machine certificate\n",
        "ike proposals: aes256gcm16-prfsha384-ecp384, aes256gcm16-prfsha256-x25519, \
         aes256-sha256-prfsha256-modp2048 (aovpn defaults)\n",
        "esp proposals: aes256gcm16, aes256-sha256 (aovpn defaults)\n",
        "routing: SplitTunnel\n",
        "route: 192.168.3.5/32 via tunnel\nroute: 192.168.3.4/32 via tunnel\n",
        "class-based route: no\n",
        "always-on: yes\n",
        "register dns: yes (the agent: RFC 2136 update signed with its TSIG key, \
         /etc/aovpn/dns-update.key)\n",
    ] {
        assert!(plan.contains(line), "missing {line:?} in\n{plan}");
    }
    assert!(!plan.contains("not applied"), "{plan}");

    let out = aovpn(s, &["show", "Corp Full Tunnel", "--plan"]);
    let plan = stdout(&out);
    assert!(plan.contains("routing: ForceTunnel\n"), "{plan}");
    assert!(plan.contains("split dns: . -> 10.1.0.10 (agent"), "{plan}");
    assert!(
        plan.contains("proxy: proxy.corp.example.net:8080 (the agent"),
        "{plan}"
    );

    // Export gives the ProfileXML back; --syncml wraps it with the scope's URI.
    let out = aovpn(s, &["export", "MachineCertTest"]);
    assert_eq!(stdout(&out), std::fs::read_to_string(&seed).unwrap());
    let out = aovpn(s, &["export", "Corp Full Tunnel", "--syncml"]);
    let syncml = stdout(&out);
    assert!(
        syncml
            .contains("<LocURI>./User/Vendor/MSFT/VPNv2/Corp%20Full%20Tunnel/ProfileXML</LocURI>")
    );
    // ... and the export can be added back (to another store) as is.
    let other = tempfile::tempdir().unwrap();
    let exported = other.path().join("exported.xml");
    std::fs::write(&exported, &syncml).unwrap();
    let out = aovpn(other.path(), &["add", exported.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = aovpn(s, &["remove", "MachineCertTest"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "removed device profile \"MachineCertTest\"\n");
    assert!(!s.join("device/MachineCertTest").exists());
    let out = aovpn(s, &["show", "MachineCertTest"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "aovpn profile: no profile named \"MachineCertTest\"\n"
    );
    // No temporary or removed directories are left behind.
    assert_eq!(std::fs::read_dir(s.join("device")).unwrap().count(), 0);
}

#[test]
fn a_second_device_tunnel_is_refused_and_names_the_first() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    let seed = corpus("valid/azure-device-tunnel.xml");
    let out = aovpn(s, &["add", seed.to_str().unwrap(), "--name", "First"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = corpus("valid/syncml-device.xml");
    let f = second.to_str().unwrap();
    let out = aovpn(s, &["add", f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{f}:33:2: VPNProfile/DeviceTunnel: only one device tunnel may exist per machine; \
             \"First\" is already one (remove it first)\n"
        )
    );
    // Same name twice is refused too.
    let out = aovpn(s, &["add", seed.to_str().unwrap(), "--name", "First"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("a device profile named \"First\" already exists"));
}

#[test]
fn add_needs_a_name_and_a_consistent_scope() {
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    let seed = corpus("valid/azure-device-tunnel.xml");
    let out = aovpn(s, &["add", seed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no <ProfileName> and no SyncML URI; pass --name"));
    let syncml = corpus("valid/syncml-device.xml");
    let out = aovpn(s, &["add", syncml.to_str().unwrap(), "--scope", "user"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("the SyncML URI says device scope but user scope was requested"));
    let out = aovpn(s, &["add", seed.to_str().unwrap(), "--name", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid profile name \"a/b\": it contains '/'"));
}

#[test]
fn escaped_devicecert_form_is_accepted() {
    let store = tempfile::tempdir().unwrap();
    let f = corpus("valid/devicecert-escaped.txt");
    let out = aovpn(
        store.path(),
        &["add", f.to_str().unwrap(), "--name", "Escaped"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = aovpn(store.path(), &["export", "Escaped"]);
    let unindented = std::fs::read_to_string(corpus("valid/azure-device-tunnel-unindented.xml"));
    assert_eq!(stdout(&out), unindented.unwrap());
}
