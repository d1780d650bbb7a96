//! `aovpn connect` as a process in a namespace: one tunnel, its status and log.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use super::{CLIENT_TIMEOUT, Daemon, json_state, json_string_field};
use crate::netns::Netns;

/// How [`ClientProcess::start`] runs `aovpn connect`.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// `--server` (ignored when `profile_file` is set).
    pub server: String,
    /// `--profile-file` instead of `--server`.
    pub profile_file: Option<PathBuf>,
    /// `--cert`.
    pub cert: PathBuf,
    /// `--key`.
    pub key: PathBuf,
    /// `--ca`.
    pub ca: PathBuf,
    /// `--interface`.
    pub interface: String,
    /// Name of the log/status files in the work directory.
    pub name: String,
}

impl ClientOpts {
    /// A client of `server` on interface `aovpn0`, files named `client.*`.
    pub fn new(server: &str, cert: &Path, key: &Path, ca: &Path) -> Self {
        ClientOpts {
            server: server.to_owned(),
            profile_file: None,
            cert: cert.to_owned(),
            key: key.to_owned(),
            ca: ca.to_owned(),
            interface: "aovpn0".to_owned(),
            name: "client".to_owned(),
        }
    }
    /// Uses a VPNv2 ProfileXML file instead of `--server`.
    pub fn profile(mut self, file: &Path) -> Self {
        self.profile_file = Some(file.to_owned());
        self
    }
    /// Sets the file name stem for log and status.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
}

/// `aovpn connect` running in a namespace; dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct ClientProcess {
    daemon: Daemon,
    status_file: PathBuf,
}

impl ClientProcess {
    /// Starts `aovpn connect` in `ns` and waits until its status says "connected" or
    /// "failed", or it exits. Which one happened is for the caller to check ([`Self::state`]).
    /// Err only if it could not be started or decided nothing in time.
    pub fn start(bin: &Path, ns: &Netns, workdir: &Path, opts: &ClientOpts) -> io::Result<Self> {
        fs::create_dir_all(workdir)?;
        let status_file = workdir.join(format!("{}.status.json", opts.name));
        match fs::remove_file(&status_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut args = vec!["connect".to_owned()];
        match &opts.profile_file {
            Some(file) => args.extend(["--profile-file".to_owned(), file.display().to_string()]),
            None => args.extend(["--server".to_owned(), opts.server.clone()]),
        }
        for (flag, value) in [
            ("--cert", opts.cert.display().to_string()),
            ("--key", opts.key.display().to_string()),
            ("--ca", opts.ca.display().to_string()),
            ("--interface", opts.interface.clone()),
            (
                "--resolv-conf",
                workdir
                    .join(format!("{}.resolv.conf", opts.name))
                    .display()
                    .to_string(),
            ),
            ("--status-file", status_file.display().to_string()),
        ] {
            args.push(flag.to_owned());
            args.push(value);
        }
        let log = workdir.join(format!("{}.log", opts.name));
        let daemon = Daemon::spawn(
            ns,
            bin,
            &args,
            log,
            &format!("aovpn connect ({})", opts.name),
        )?;
        let mut client = ClientProcess {
            daemon,
            status_file,
        };
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            match client.state().as_deref() {
                Some("connected") | Some("failed") => return Ok(client),
                _ => {}
            }
            if client.daemon.try_exited()?.is_some() {
                return Ok(client);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "aovpn connect decided nothing within {CLIENT_TIMEOUT:?}:\n{}\n--- log\n{}",
                    client.status_text(),
                    client.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.daemon.child.id()
    }

    /// The status JSON text (empty if not written).
    pub fn status_text(&self) -> String {
        fs::read_to_string(&self.status_file).unwrap_or_default()
    }

    /// `"state"` of the status file.
    pub fn state(&self) -> Option<String> {
        json_state(&self.status_text())
    }

    /// `"virtual_ip"` of the status file.
    pub fn virtual_ip(&self) -> Option<IpAddr> {
        json_string_field(&self.status_text(), "virtual_ip").and_then(|s| s.parse().ok())
    }

    /// Everything the client logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.daemon.try_exited()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.daemon.try_exited()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (goodbye and cleanup), wait; returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.daemon.stop()
    }

    /// SIGKILL: a crash, without goodbye or cleanup.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.daemon.kill()
    }
}
