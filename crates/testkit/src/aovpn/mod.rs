//! Runners for our own `aovpn` binary inside a [`Netns`]: a PKI made with `aovpn pki`, the
//! gateway daemon (`aovpn gateway`) and a client tunnel (`aovpn connect`).
//!
//! The binary's path is passed in (integration tests use `env!("CARGO_BIN_EXE_aovpn")`).
//! Each process runs under `ip netns exec`, which execs it, so the child's pid is aovpn's own;
//! it is stopped by that pid only (SIGTERM, then SIGKILL) when dropped. Logs go to files in
//! the process's work directory and are printed to stderr when a drop happens while the test
//! panics, so CI failures carry the daemons' own account.
//!
//! ```no_run
//! use std::path::Path;
//! use testkit::aovpn::{ClientOpts, ClientProcess, GatewayOpts, GatewayProcess, Pki, PkiOptions};
//! use testkit::netns::Topology;
//! let bin = Path::new("target/debug/aovpn");
//! let topo = Topology::routed("doc", true)?;
//! let tmp = tempfile::tempdir()?;
//! let pki = Pki::issue(bin, &tmp.path().join("pki"), &PkiOptions::new("vpn.doc.example"))?;
//! let gw = GatewayProcess::start(bin, &topo.gateway, &tmp.path().join("gw"),
//!     &GatewayOpts::new(&pki, topo.gateway_wan().into()))?;
//! let _hosts = testkit::aovpn::HostsFile::write(&topo.client, &[(topo.gateway_wan().into(), "vpn.doc.example")])?;
//! let cl = ClientProcess::start(bin, &topo.client, &tmp.path().join("cl"),
//!     &ClientOpts::new("vpn.doc.example", &pki.machine_cert, &pki.machine_key, &pki.ca_cert))?;
//! assert_eq!(cl.state().as_deref(), Some("connected"));
//! # drop(gw);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;

/// How long the gateway gets to report "running".
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client gets to report "connected" or "failed".
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM (the client says goodbye for up to 2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn run_aovpn(bin: &Path, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(bin).args(args).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "aovpn {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("non-UTF-8 path {}", p.display())))
}

/// `/etc/netns/NS/hosts` (bound over `/etc/hosts` by `ip netns exec`), removed on drop.
#[derive(Debug)]
pub struct HostsFile {
    dir: PathBuf,
}

impl HostsFile {
    /// Writes the hosts file for `ns` with `localhost` plus `entries`.
    pub fn write(ns: &Netns, entries: &[(IpAddr, &str)]) -> io::Result<HostsFile> {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        fs::create_dir_all(&dir)?;
        let guard = HostsFile { dir };
        let mut text = String::from("127.0.0.1 localhost\n");
        for (ip, name) in entries {
            text.push_str(&format!("{ip} {name}\n"));
        }
        fs::write(guard.dir.join("hosts"), text)?;
        Ok(guard)
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("testkit: removing {}: {e}", self.dir.display());
        }
    }
}

/// The value of `"state"` in a status JSON text (the daemons write it pretty-printed).
pub fn json_state(text: &str) -> Option<String> {
    json_string_field(text, "state")
}

/// The first string value of `"key"` in a JSON text (no full parser: testkit has no serde).
pub fn json_string_field(text: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\"");
    let start = text.find(&pattern)? + pattern.len();
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

/// A daemon started under `ip netns exec`, stopped by its own pid.
#[derive(Debug)]
struct Daemon {
    child: Child,
    name: String,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    fn spawn(
        ns: &Netns,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        name: &str,
    ) -> io::Result<Daemon> {
        Self::spawn_with_env(ns, bin, args, log, name, &[])
    }

    fn spawn_with_env(
        ns: &Netns,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        name: &str,
        env: &[(String, String)],
    ) -> io::Result<Daemon> {
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut argv = vec![bin.as_os_str().to_owned()];
        argv.extend(args.iter().map(Into::into));
        // AOVPN_LOG of the test run wins (e.g. `AOVPN_LOG=debug cargo test …`).
        let level = std::env::var("AOVPN_LOG").unwrap_or_else(|_| "info".to_owned());
        let child = ns
            .command(argv)
            .env("AOVPN_LOG", level)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Daemon {
            child,
            name: name.to_owned(),
            log,
            exited: None,
        })
    }

    fn try_exited(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash: no goodbye, no cleanup) and reap.
    fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).map_err(io::Error::other)?);
        let _ = kill(pid, Signal::SIGKILL);
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }

    fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).map_err(io::Error::other)?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exited()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let status = self.child.wait()?;
        self.exited = Some(status);
        Err(io::Error::other(format!(
            "{} (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?} and was killed",
            self.name
        )))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let result = self.stop();
        if thread::panicking() {
            eprintln!(
                "---- testkit: log of {} ({}) ----\n{}---- end of {} log ----",
                self.name,
                self.log.display(),
                self.log(),
                self.name
            );
        }
        if let Err(e) = result {
            eprintln!("testkit: stopping {}: {e}", self.name);
        }
    }
}

mod agent;
mod client;
mod gateway;
mod pki;

pub use agent::{AgentOpts, AgentProcess, UserHelperProcess};
pub use client::{ClientOpts, ClientProcess};
pub use gateway::{GatewayOpts, GatewayProcess};
pub use pki::{Pki, PkiKey, PkiOptions};

#[cfg(test)]
mod tests;
