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
            eprintln!("aovpn {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
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
