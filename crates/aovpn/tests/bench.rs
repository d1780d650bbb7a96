//! `aovpn bench` in short forms: each bench's figures reach its report directory (text, JSON
//! and chart), and the flood bench's promise holds: a legitimate client still connects to our
//! gateway while spoofed sources flood it with IKE_SA_INIT requests and while one host echoes
//! COOKIEs to hold half-open SAs (strongSwan is measured in the same run). Times are reported,
//! not asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, report};
use serde_json::Value;

const ATTEMPTS: usize = 3;
/// The gateway's default `limits.half_open_per_source`.
const HALF_OPEN_PER_SOURCE: u64 = 5;

/// Runs `aovpn bench <args> --out <dir>`; asserts it succeeded and returns report.json.
fn bench(args: &[&str], out: &Path) -> Value {
    let run = Command::new(bin())
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench {args:?} failed\n{stdout}\n--- stderr\n{stderr}"
    );
    // The text report is what was printed.
    assert_eq!(
        std::fs::read_to_string(out.join("report.txt")).unwrap(),
        stdout
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_f64().unwrap())
        .collect()
}

#[test]
fn a_legitimate_client_connects_during_each_flood() {
    testkit::require_root();
    let out = tempfile::tempdir().unwrap();
    let json = bench(
        &[
            "flood",
            "--rate",
            "20000",
            "--attempts",
            &ATTEMPTS.to_string(),
        ],
        out.path(),
    );
    let phases = json["figures"]["flood"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["quiet", "spoofed flood", "COOKIE echoer", "both"],
        "{json:#}"
    );
    for phase in phases {
        let name = phase["phase"].as_str().unwrap();
        let (ours, swan) = (&phase["aovpn"], &phase["strongswan"]);
        assert_eq!(
            numbers(&ours["setup_ms"]).len(),
            ATTEMPTS,
            "{name}: our gateway refused the legitimate client: {ours}"
        );
        let max = |v: &Value| numbers(&v["setup_ms"]).into_iter().fold(f64::NAN, f64::max);
        report(&format!(
            "flood {name}: legitimate client connected {}/{ATTEMPTS} (strongSwan {}/{ATTEMPTS}), max {:.1} ms (strongSwan {:.1})",
            numbers(&ours["setup_ms"]).len(),
            numbers(&swan["setup_ms"]).len(),
            max(ours),
            max(swan),
        ));
        if name == "COOKIE echoer" {
            // However fast it echoes COOKIEs, one host holds no more half-open SAs than its
            // share.
            let half_open = ours["echo_half_open"].as_u64().unwrap();
            assert!(
                half_open <= HALF_OPEN_PER_SOURCE,
                "the echoer got {half_open} half-open SAs: {ours}"
            );
            report(&format!(
                "flood: the echoer got {half_open} half-open SAs from our gateway, {} from strongSwan",
                swan["echo_half_open"]
            ));
        }
    }
    // The flood bench has no chart.
    assert!(!out.path().join("flood.png").exists());
}

#[test]
fn the_memory_bench_reports_each_quarter_as_json_and_a_chart() {
    testkit::require_root();
    let out = tempfile::tempdir().unwrap();
    let json = bench(&["memory", "--clients", "8"], out.path());
    assert_eq!(json["failed"], serde_json::json!({}), "{json:#}");
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    let responders = json["figures"]["memory"]["responders"].as_array().unwrap();
    assert_eq!(responders.len(), 2, "{json:#}");
    for r in responders {
        let points = r["points"].as_array().unwrap();
        let clients: Vec<u64> = points
            .iter()
            .map(|p| p["clients"].as_u64().unwrap())
            .collect();
        assert_eq!(clients, [2, 4, 6, 8], "{}: {r}", r["responder"]);
        for p in points {
            // The responder itself lists every client the initiator holds.
            assert_eq!(p["seen_by_responder"], p["clients"], "{r}");
            assert!(p["rss"].as_u64().unwrap() > 0);
        }
    }
    let png = std::fs::read(out.path().join("memory.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    report(&format!(
        "bench memory --clients 8: {}",
        responders
            .iter()
            .map(|r| format!("{} {}", r["responder"], r["points"]))
            .collect::<Vec<_>>()
            .join("; ")
    ));
}

#[test]
fn the_scale_bench_holds_every_tunnel_on_both_responders() {
    testkit::require_root();
    const TUNNELS: u64 = 40;
    let out = tempfile::tempdir().unwrap();
    let json = bench(
        &[
            "scale",
            "--tunnels",
            &TUNNELS.to_string(),
            "--parallel",
            "8",
            "--idle-secs",
            "2",
            "--probes",
            "3",
            "--storm-secs",
            "4",
        ],
        out.path(),
    );
    let responders = json["figures"]["scale"]["responders"].as_array().unwrap();
    let names: Vec<&str> = responders
        .iter()
        .map(|r| r["memory"]["responder"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aovpn gateway", "strongSwan charon"], "{json:#}");
    for r in responders {
        assert_eq!(r["error"], Value::Null, "{r}");
        assert_eq!(r["up"].as_u64(), Some(TUNNELS), "{r}");
        let points = r["memory"]["points"].as_array().unwrap();
        assert_eq!(points.len(), 4, "{r}");
        // Each responder lists every tunnel once all are up, and the stream's.
        assert_eq!(
            points[3]["seen_by_responder"].as_u64(),
            Some(TUNNELS + 1),
            "{r}"
        );
        assert_eq!(numbers(&r["probe_setup_ms"]).len(), 3, "{r}");
        assert!(r["idle_cpu_percent"].as_f64().is_some(), "{r}");
        // Every held tunnel's Child SA was rekeyed in the storm, and the stream's three times.
        let storm = &r["storm"];
        assert_eq!(storm["rekeyed"].as_u64(), Some(TUNNELS), "{r}");
        assert_eq!(storm["stream_rekeys"].as_u64(), Some(3), "{r}");
        let sent = storm["stream_sent"].as_u64().unwrap();
        assert!(sent > 0, "{r}");
        report(&format!(
            "bench scale --tunnels {TUNNELS} rekey storm on {}: stream lost {} of {sent}",
            r["memory"]["responder"],
            sent - storm["stream_received"].as_u64().unwrap()
        ));
    }
    assert!(out.path().join("scale.png").exists());
    let text = std::fs::read_to_string(out.path().join("report.txt")).unwrap();
    let ratios = text
        .lines()
        .find(|l| l.contains("ratio aovpn/strongSwan: RSS per tunnel"))
        .unwrap_or_else(|| panic!("no ratio line:\n{text}"));
    report(&format!(
        "bench scale --tunnels {TUNNELS}: {}",
        ratios.trim()
    ));
}
