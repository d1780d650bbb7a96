//! The README's main job, `aovpn lab`, end to end: up (gateway, the agent with the device
//! tunnel, alice's key helper with her user tunnel, traffic through both), then what the agent
//! issue asks an operator to try: the client's link down for 5 s and up, the gateway restarted,
//! and `aovpn lab status` shows both tunnels connected again with nobody typing connect.
//! The lab has fixed names (`aolab-*`, /run/aovpn-lab): this test replaces a running lab.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn aovpn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aovpn"))
        .args(args)
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
    ] {
        assert!(up_text.contains(needle), "{needle} missing:\n{up_text}");
    }

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
}

fn agent_log() -> String {
    std::fs::read_to_string(Path::new("/run/aovpn-lab/agent.log")).unwrap_or_default()
}
