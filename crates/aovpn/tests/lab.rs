//! The README's main job, `aovpn lab`, end to end: up (gateway, the agent with the device
//! tunnel, alice's key helper with her user tunnel, traffic through both), then what the agent
//! issue asks an operator to try: the client's link down for 5 s and up, the gateway restarted,
//! and `aovpn lab status` shows both tunnels connected again with nobody typing connect.
//! The lab has fixed names (`aolab-*`, /run/aovpn-lab): this test replaces a running lab.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `aovpn ARGS`; the lab's daemons inherit the trace-level logging the secrets check reads.
fn aovpn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aovpn"))
        .args(args)
        .env("AOVPN_LOG", "trace")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes the lab even when the test fails.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let out = aovpn(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down: {}", text(&out));
        }
    }
}

#[test]
fn the_lab_comes_up_and_its_tunnels_come_back_by_themselves() {
    testkit::require_root();
    let _down = Down;
    let up = aovpn(&["lab", "up", "--iperf-secs", "1"]);
    let up_text = text(&up);
    assert!(up.status.success(), "lab up failed:\n{up_text}");
    for needle in [
        "MachineCertTest",
        "AliceCorp",
        "aovpn-dev",
        "ping ok",
        "Mbit/s",
        // Split DNS through the user tunnel, the device's registered name, manage out by it.
        "app.corp.aolab.example     -> 10.1.0.20    (from 10.1.0.53 through the tunnel)",
        "client1.corp.aolab.example -> 172.16.201.",
        "the agent: registered",
        "connected through the device tunnel",
        // The gateway's sessions, from its admin socket.
        "`aovpn gateway sessions --socket",
        "fqdn:client1.corp.aolab.example",
    ] {
        assert!(up_text.contains(needle), "{needle} missing:\n{up_text}");
    }

    // The admin page in the gateway's namespace, for whoever has the lab's token.
    let token = std::fs::read_to_string("/run/aovpn-lab/web.token").unwrap();
    let page = aovpn(&[
        "lab",
        "exec",
        "gateway",
        "--",
        "curl",
        "-s",
        "-H",
        &format!("Authorization: Bearer {}", token.trim()),
        "http://127.0.0.1:9478/api/state",
    ]);
    let state = text(&page);
    assert!(
        state.contains("client1.corp.aolab.example") && state.contains("alice@corp.aolab.example"),
        "{state}"
    );

    let exec = |args: &[&str]| {
        let mut all = vec!["lab", "exec", "client", "--"];
        all.extend_from_slice(args);
        let out = aovpn(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    exec(&["ip", "link", "set", "cl-wan", "down"]);
    std::thread::sleep(Duration::from_secs(5));
    exec(&["ip", "link", "set", "cl-wan", "up"]);
    let restart = aovpn(&["lab", "restart", "gateway"]);
    assert!(restart.status.success(), "{}", text(&restart));
    let started = Instant::now();
    let (healthy, last) = loop {
        let status = aovpn(&["lab", "status"]);
        let shown = text(&status);
        if status.status.success() {
            break (true, shown);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break (false, shown);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        healthy,
        "the lab did not come back:\n{last}\n{}",
        agent_log()
    );
    assert_eq!(
        last.matches("connected to vpn.aolab.example").count(),
        2,
        "{last}"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE: after link down/up and a gateway restart, `aovpn lab status` was all green {} ms after the restart",
        started.elapsed().as_millis()
    );

    // No secret in any log of the whole run, at trace level.
    let state = Path::new("/run/aovpn-lab");
    let logs: Vec<(String, String)> = std::fs::read_dir(state)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "log").then(|| {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                (p.display().to_string(), text)
            })
        })
        .collect();
    let logged: usize = logs.iter().map(|(_, t)| t.len()).sum();
    assert!(
        logs.len() >= 3 && logged > 2_000,
        "too little logged to check: {logged} bytes"
    );
    let keys = private_keys(&state.join("pki"));
    assert!(
        keys.len() >= 4,
        "CA, gateway, machine and user keys: {keys:?}"
    );
    let mut found = Vec::new();
    for (name, text) in &logs {
        found.extend(
            secrets_in(text, &keys)
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
    }
    assert!(
        found.is_empty(),
        "secrets in the logs:\n{}",
        found.join("\n")
    );
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE: {} log files, {logged} bytes at trace level: no private key, no long hex or byte dump",
        logs.len()
    );
}

/// Every private key under `dir` (PEM), as PEM body lines and PKCS#8 DER.
fn private_keys(dir: &Path) -> Vec<(Vec<String>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "key") {
                let pem = std::fs::read(&p).unwrap();
                let key = pki::PrivateKey::load(&pem).unwrap();
                let lines = String::from_utf8_lossy(&pem)
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(str::to_owned)
                    .collect();
                out.push((lines, key.pkcs8_der().to_vec()));
            }
        }
    }
    out
}

/// What in `text` looks like key material: a piece of one of `keys` (PEM text, or 16 bytes
/// of its DER in hex), a hex run of 64 digits or more (thumbprints have 40, SPIs 8 to 16),
/// or a byte-array dump of 16 numbers or more (a `Vec<u8>` printed with `{:?}`).
fn secrets_in(text: &str, keys: &[(Vec<String>, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    for (lines, der) in keys {
        for l in lines {
            if text.contains(l.as_str()) {
                found.push(format!("PEM line of a private key: {l}"));
            }
        }
        for window in der.chunks(16).filter(|w| w.len() == 16) {
            let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
            if lower.contains(&hex) {
                found.push(format!("private key bytes in hex: {hex}"));
            }
        }
    }
    for line in text.lines() {
        let shown = || line.chars().take(240).collect::<String>();
        let mut run = 0usize;
        for c in line.chars() {
            run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
            if run == 64 {
                found.push(format!("a hex run of 64 digits or more: {}", shown()));
            }
        }
        let mut numbers = 0usize;
        for token in line.split(", ") {
            let t = token.trim_start_matches('[');
            numbers = if !t.is_empty() && t.len() <= 3 && t.bytes().all(|b| b.is_ascii_digit()) {
                numbers + 1
            } else {
                0
            };
            if numbers == 16 {
                found.push(format!("a byte array of 16 numbers or more: {}", shown()));
            }
        }
    }
    found
}

#[test]
fn the_secret_scan_finds_what_it_looks_for() {
    let key = (
        vec!["MIGHAgEAMBMGByqGSM49AgEGCCqGSM49".to_owned()],
        (0u8..48).collect(),
    );
    let keys = [key];
    assert!(
        secrets_in(
            "all quiet, spi=0x1a2b3c4d thumbprint=AABBCCDDEEFF00112233445566778899AABBCCDD",
            &keys
        )
        .is_empty()
    );
    assert_eq!(
        secrets_in("oops MIGHAgEAMBMGByqGSM49AgEGCCqGSM49 here", &keys).len(),
        1
    );
    assert_eq!(
        secrets_in("k=000102030405060708090A0B0C0D0E0F", &keys).len(),
        1
    );
    assert_eq!(
        secrets_in(&format!("sk_ei={}", "ab".repeat(32)), &keys).len(),
        1
    );
    let dump = format!("data: {:?}", vec![200u8; 20]);
    assert_eq!(secrets_in(&dump, &keys).len(), 1, "{dump}");
}

fn agent_log() -> String {
    std::fs::read_to_string(Path::new("/run/aovpn-lab/agent.log")).unwrap_or_default()
}
