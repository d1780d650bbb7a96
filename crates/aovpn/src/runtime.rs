//! The tokio runtime and signal handling the daemon subcommands share.

use std::process::ExitCode;

pub use netio::privileges::Capability;

/// Runs a daemon's future on a multi-thread runtime (one worker per core, for the data
/// plane); an error is printed with its causes and gives exit code 1. Before the runtime
/// starts a thread, the process is cut down to the capabilities in `keep` (see
/// [`netio::privileges`]): that is everything any of its threads will ever hold.
pub fn block_on_daemon(
    name: &str,
    keep: &[Capability],
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let held = match netio::privileges::limit_capabilities(keep) {
        Ok(held) => held,
        Err(e) => {
            eprintln!("aovpn {name}: cannot limit capabilities: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        capabilities = %netio::privileges::names(&held.effective),
        bounding_set_cut = held.bounding_cut,
        uid = nix::unistd::getuid().as_raw(),
        "running with least privilege (no_new_privs set)"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aovpn {name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aovpn {name}: {}", with_causes(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and the causes under it, each once. Our error types say their cause in their own
/// text and also keep it as `source()` (for code that matches on it), so a cause its parent's
/// text already says is not repeated, as a plain `{:#}` would.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut parent = text.clone();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !parent.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        parent = said;
        next = cause.source();
    }
    text
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without handlers nothing would ever stop us cleanly; stop at once instead.
        _ => tracing::error!("cannot install signal handlers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "starting", with its cause in its text when `says_cause`.
    #[derive(Debug)]
    struct Starting {
        says_cause: bool,
        cause: std::io::Error,
    }

    impl std::fmt::Display for Starting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.says_cause {
                write!(f, "starting: {}", self.cause)
            } else {
                write!(f, "starting")
            }
        }
    }

    impl std::error::Error for Starting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.cause)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        for says_cause in [true, false] {
            let cause = std::io::Error::other("permission denied");
            let e = Starting { says_cause, cause };
            assert_eq!(with_causes(&e), "starting: permission denied");
        }
    }
}
