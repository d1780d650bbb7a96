//! One line of a doctor's report, shared by `aovpn doctor` (the client) and `aovpn gateway
//! doctor`: what was checked, the verdict, what was found and what to do about it.

use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warning,
    Problem,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a warning or problem.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: &str, detail: impl Into<String>) -> Self {
        Check {
            check: check.into(),
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning or problem, with what to do.
    pub fn bad(
        check: &str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            check: check.into(),
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Whether any check found a problem.
pub fn has_problem(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Problem)
}

/// One line per check, what to do on the next line.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let verdict = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Problem => "problem",
        };
        out.push_str(&format!("{verdict:<8} {:<28} {}\n", c.check, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<37} -> {fix}\n", ""));
        }
    }
    out
}
