//! `aovpn doctor`: the checks a failing tunnel comes down to, in the order an administrator
//! would make them, each with a verdict and what to do: the profile, our certificate and key,
//! each server's name, and a real IKE handshake with the gateway (IKE_SA_INIT answered and
//! what came back, the gateway's certificate against our roots and the dialled name, ours
//! accepted by the gateway), deleted at once.
//!
//! Here: the verdict helpers. Beside it: `credentials` (our certificate and key, the roots,
//! the certificate's kind), `names` (the servers' names, the split DNS servers), `handshake`
//! (the real IKE handshake and its failure explained), `probes` (stateless IKE_SA_INIT probes:
//! the gateway's suites, the path to UDP 4500).

mod credentials;
mod handshake;
mod names;
mod probes;

pub use credentials::{Files, check_credentials, check_kind, system_files};
pub use handshake::check_handshake;
pub use names::{check_servers, check_split_dns};
pub use probes::check_path;
pub use tunnel::check::{Check, Verdict, has_problem};

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check::ok(check, detail)
}

fn bad(check: &str, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check::bad(check, verdict, detail, fix)
}

/// A check that failed here, before anything reached the gateway.
fn local_problem(check: &str, e: impl std::fmt::Display) -> Check {
    bad(
        check,
        Verdict::Problem,
        e.to_string(),
        "fix the local setup first",
    )
}
