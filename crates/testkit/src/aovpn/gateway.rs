//! `aovpn gateway` as a process in a namespace: its options, its files, its status.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use super::Pki;
use super::{Daemon, GATEWAY_START_TIMEOUT, json_state};
use crate::netns::Netns;

/// How [`GatewayProcess::start`] configures `gateway.toml`.
#[derive(Debug, Clone)]
pub struct GatewayOpts {
    /// `listen.addresses`.
    pub listen: IpAddr,
    /// `identity.certificate` / `identity.key`.
    pub cert: PathBuf,
    /// Gateway private key.
    pub key: PathBuf,
    /// `identity.id` (None = the certificate's first dNSName).
    pub id: Option<String>,
    /// `clients.root_ca_files`.
    pub root_cas: Vec<PathBuf>,
    /// `clients.pool_v4`.
    pub pool: String,
    /// `clients.pool_v6` (None: no IPv6 inside the tunnels).
    pub pool_v6: Option<String>,
    /// `network.routes`.
    pub routes: Vec<String>,
    /// `network.dns`.
    pub dns: Vec<String>,
    /// `network.dns_domains` (RFC 8598 internal domains).
    pub dns_domains: Vec<String>,
    /// `crypto.ike_proposals` (empty = built-in defaults).
    pub ike_proposals: Vec<String>,
    /// `crypto.esp_proposals`.
    pub esp_proposals: Vec<String>,
    /// `crypto.allow_legacy`.
    pub allow_legacy: bool,
    /// `clients.revoked_thumbprints`.
    pub revoked: Vec<String>,
    /// `crypto.dpd_interval_secs` (None = the gateway's default).
    pub dpd_interval_secs: Option<u64>,
    /// `crypto.ike_lifetime_secs` / `crypto.child_lifetime_secs` (None = defaults); short
    /// ones make the gateway rekey within a test.
    pub lifetimes_secs: Option<(u64, u64)>,
    /// `tunnel.interface`.
    pub interface: String,
    /// `state_dir` (None = `WORKDIR/state`).
    pub state_dir: Option<PathBuf>,
    /// Start it as this (uid, gid) with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE as ambient
    /// capabilities, as the systemd unit does (via setpriv); None = as root.
    pub run_as: Option<(u32, u32)>,
    /// Extra TOML appended to the file (e.g. a `[limits]` section).
    pub extra: String,
    /// `clients.accept` (None = the gateway's default, machine and user).
    pub accept: Option<Vec<String>>,
    /// `admin.group` (the socket itself is `WORKDIR/admin.sock`).
    pub admin_group: Option<String>,
}

impl GatewayOpts {
    /// The lab defaults: pool 172.16.201.0/24, route 10.1.0.0/16, DNS 10.1.0.53, the PKI's
    /// gateway certificate and root CA, interface `aovpn-gw`.
    pub fn new(pki: &Pki, listen: IpAddr) -> Self {
        GatewayOpts {
            listen,
            cert: pki.gateway_cert.clone(),
            key: pki.gateway_key.clone(),
            id: None,
            root_cas: vec![pki.ca_cert.clone()],
            pool: crate::netns::lab::CLIENT_POOL.to_owned(),
            pool_v6: None,
            routes: vec![crate::netns::lab::VNET_TS.to_owned()],
            dns: vec!["10.1.0.53".to_owned()],
            dns_domains: Vec::new(),
            ike_proposals: Vec::new(),
            esp_proposals: Vec::new(),
            allow_legacy: false,
            revoked: Vec::new(),
            dpd_interval_secs: None,
            lifetimes_secs: None,
            interface: "aovpn-gw".to_owned(),
            state_dir: None,
            run_as: None,
            extra: String::new(),
            accept: None,
            admin_group: None,
        }
    }

    /// The `gateway.toml` text for this configuration, state in `workdir/state` by default.
    pub fn render(&self, workdir: &Path) -> String {
        fn list<T: std::fmt::Display>(items: &[T]) -> String {
            let quoted: Vec<String> = items
                .iter()
                .map(|i| format!("{:?}", i.to_string()))
                .collect();
            format!("[{}]", quoted.join(", "))
        }
        let paths = |ps: &[PathBuf]| {
            list(
                &ps.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let state = self
            .state_dir
            .clone()
            .unwrap_or_else(|| workdir.join("state"));
        let mut dpd = self
            .dpd_interval_secs
            .map(|secs| format!("dpd_interval_secs = {secs}\n"))
            .unwrap_or_default();
        if let Some((ike, child)) = self.lifetimes_secs {
            dpd.push_str(&format!(
                "ike_lifetime_secs = {ike}\nchild_lifetime_secs = {child}\n"
            ));
        }
        let id = self
            .id
            .as_ref()
            .map(|id| format!("id = {id:?}\n"))
            .unwrap_or_default();
        format!(
            "# written by testkit::aovpn\nstate_dir = {state:?}\n\
             [admin]\nsocket = {admin:?}\n{admin_group}\
             [listen]\naddresses = [\"{listen}\"]\n\
             [identity]\ncertificate = {cert:?}\nkey = {key:?}\n{id}\
             [clients]\nroot_ca_files = {roots}\nrevoked_thumbprints = {revoked}\npool_v4 = {pool:?}\n{pool_v6}{accept}\
             [network]\nroutes = {routes}\ndns = {dns}\ndns_domains = {dns_domains}\n\
             [crypto]\nike_proposals = {ike}\nesp_proposals = {esp}\nallow_legacy = {legacy}\n{dpd}\
             [tunnel]\ninterface = {interface:?}\n{extra}",
            state = state.display().to_string(),
            admin = workdir.join("admin.sock").display().to_string(),
            admin_group = self
                .admin_group
                .as_ref()
                .map(|g| format!("group = {g:?}\n"))
                .unwrap_or_default(),
            listen = self.listen,
            cert = self.cert.display().to_string(),
            key = self.key.display().to_string(),
            roots = paths(&self.root_cas),
            revoked = list(&self.revoked),
            pool = self.pool,
            pool_v6 = self
                .pool_v6
                .as_ref()
                .map(|p| format!("pool_v6 = {p:?}\n"))
                .unwrap_or_default(),
            routes = list(&self.routes),
            dns = list(&self.dns),
            dns_domains = list(&self.dns_domains),
            ike = list(&self.ike_proposals),
            esp = list(&self.esp_proposals),
            legacy = self.allow_legacy,
            interface = self.interface,
            extra = self.extra,
            accept = self
                .accept
                .as_ref()
                .map(|a| format!("accept = {}\n", list(a)))
                .unwrap_or_default(),
        )
    }
}

/// `aovpn gateway` running in a namespace; dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct GatewayProcess {
    daemon: Daemon,
    workdir: PathBuf,
    config: PathBuf,
    status_file: PathBuf,
}

impl GatewayProcess {
    /// Writes `workdir/gateway.toml`, starts the gateway in `ns` and waits for "running".
    /// Fails (with the log) if it exits or does not get there in time.
    pub fn start(bin: &Path, ns: &Netns, workdir: &Path, opts: &GatewayOpts) -> io::Result<Self> {
        fs::create_dir_all(workdir)?;
        let config = workdir.join("gateway.toml");
        fs::write(&config, opts.render(workdir))?;
        let status_file = workdir.join("gateway.status.json");
        match fs::remove_file(&status_file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut args = vec![
            "gateway".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            "--status-file".to_owned(),
            status_file.display().to_string(),
        ];
        let mut program = bin.to_owned();
        if let Some((uid, gid)) = opts.run_as {
            let caps = "+net_admin,+net_bind_service";
            let mut wrapped = vec![
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_owned(),
                format!("--inh-caps={caps}"),
                format!("--ambient-caps={caps}"),
                "--".to_owned(),
                bin.display().to_string(),
            ];
            wrapped.append(&mut args);
            args = wrapped;
            program = PathBuf::from("/usr/bin/setpriv");
        }
        let daemon = Daemon::spawn(
            ns,
            &program,
            &args,
            workdir.join("gateway.log"),
            "aovpn gateway",
        )?;
        let mut gw = GatewayProcess {
            daemon,
            workdir: workdir.to_owned(),
            config,
            status_file,
        };
        let deadline = Instant::now() + GATEWAY_START_TIMEOUT;
        loop {
            if gw.state().as_deref() == Some("running") {
                return Ok(gw);
            }
            if let Some(status) = gw.daemon.try_exited()? {
                return Err(io::Error::other(format!(
                    "aovpn gateway exited during start-up ({status}):\n{}",
                    gw.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "aovpn gateway not running after {GATEWAY_START_TIMEOUT:?}:\n{}",
                    gw.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gateway's pid.
    pub fn pid(&self) -> u32 {
        self.daemon.child.id()
    }

    /// The work directory (config, log, status, default state dir).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Its admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.workdir.join("admin.sock")
    }

    /// The `gateway.toml` it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The status JSON text (empty if not written yet).
    pub fn status_text(&self) -> String {
        fs::read_to_string(&self.status_file).unwrap_or_default()
    }

    /// `"state"` of the status file.
    pub fn state(&self) -> Option<String> {
        json_state(&self.status_text())
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Waits until `pred(status_text)` holds; Err(TimedOut) with the status and log otherwise.
    pub fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.status_text();
            if pred(&text) {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "gateway status not as expected after {timeout:?}:\n{text}\n--- log\n{}",
                        self.log()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, wait (SIGKILL after a grace period, which is an error); returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.daemon.stop()
    }

    /// SIGKILL: a crash, without goodbye or cleanup.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.daemon.kill()
    }
}
