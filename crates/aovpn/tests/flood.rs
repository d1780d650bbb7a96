//! The flood bench in its short form: a legitimate client still connects to our gateway while
//! spoofed sources flood it with IKE_SA_INIT requests and while one host echoes COOKIEs to
//! hold half-open SAs (`aovpn bench flood`, which also measures strongSwan in the same run).
//! The connect times are reported, not asserted; that every attempt connects is.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{bin, report};

const ATTEMPTS: usize = 3;
/// The gateway's default `limits.half_open_per_source`.
const HALF_OPEN_PER_SOURCE: u64 = 5;

#[test]
fn a_legitimate_client_connects_during_each_flood() {
    testkit::require_root();
    let out = Command::new(bin())
        .args(["bench", "flood", "--rate", "20000", "--attempts"])
        .arg(ATTEMPTS.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench flood failed\n{stdout}\n--- stderr\n{stderr}"
    );
    let want = format!("{ATTEMPTS}/{ATTEMPTS}");
    for phase in ["quiet", "spoofed flood", "COOKIE echoer", "both"] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(phase) && !l.contains(':'))
            .unwrap_or_else(|| panic!("no row for {phase}:\n{stdout}"));
        let cells: Vec<&str> = row
            .trim_start()
            .strip_prefix(phase)
            .unwrap()
            .split_whitespace()
            .collect();
        // connected aovpn, <=1 s, connected strongSwan, <=1 s, median aovpn, strongSwan,
        // ratio, max aovpn, max strongSwan, ...
        assert_eq!(
            cells.first(),
            Some(&want.as_str()),
            "{phase}: our gateway refused the legitimate client\n{stdout}"
        );
        report(&format!(
            "flood {phase}: legitimate client connected {} (strongSwan {}), median {} ms \
             (strongSwan {}), max {} ms (strongSwan {})",
            cells[0], cells[2], cells[4], cells[5], cells[7], cells[8]
        ));
    }
    // However fast it echoes COOKIEs, one host holds no more half-open SAs than its share.
    let echo = stdout
        .lines()
        .find(|l| l.contains("COOKIE echoer aovpn: the echoer got"))
        .unwrap_or_else(|| panic!("no echoer summary:\n{stdout}"));
    let half_open: u64 = echo
        .split("got ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {echo:?}"));
    assert!(
        half_open <= HALF_OPEN_PER_SOURCE,
        "the echoer got {half_open} half-open SAs\n{stdout}"
    );
    report(&format!("flood: {}", echo.trim()));
}
