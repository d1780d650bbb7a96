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

/// Key algorithm for [`Pki::issue`] (the `--key` values of `aovpn pki`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiKey {
    /// ECDSA P-256 (aovpn's default).
    P256,
    /// RSA 2048.
    Rsa2048,
    /// RSA 4096 (certificates large enough to force IKE fragmentation).
    Rsa4096,
}

impl PkiKey {
    fn arg(self) -> &'static str {
        match self {
            PkiKey::P256 => "p256",
            PkiKey::Rsa2048 => "rsa2048",
            PkiKey::Rsa4096 => "rsa4096",
        }
    }
}

/// What [`Pki::issue`] makes.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// The gateway certificate's name (DNS name or IP literal; an IP gets dNSName + iPAddress).
    pub gateway_name: String,
    /// Machine certificate name (FQDN).
    pub machine_name: String,
    /// User certificate name (UPN).
    pub user_name: String,
    /// Key algorithm for every key, CAs included.
    pub key: PkiKey,
    /// Issue the end-entity certificates from an intermediate CA below the root.
    pub intermediate: bool,
}

impl PkiOptions {
    /// P-256 keys, no intermediate, machine `client1.corp.example`, user `alice@corp.example`.
    pub fn new(gateway_name: &str) -> Self {
        PkiOptions {
            gateway_name: gateway_name.to_owned(),
            machine_name: "client1.corp.example".to_owned(),
            user_name: "alice@corp.example".to_owned(),
            key: PkiKey::P256,
            intermediate: false,
        }
    }
    /// Sets the key algorithm.
    pub fn key(mut self, key: PkiKey) -> Self {
        self.key = key;
        self
    }
    /// Issues end-entity certificates from an intermediate CA.
    pub fn intermediate(mut self, yes: bool) -> Self {
        self.intermediate = yes;
        self
    }
}

/// A root CA (optionally an intermediate) and gateway, machine and user certificates, made by
/// `aovpn pki`. Certificate files hold the leaf first, then any intermediate.
#[derive(Debug, Clone)]
pub struct Pki {
    bin: PathBuf,
    dir: PathBuf,
    key: PkiKey,
    /// The directory of the CA that issues end entities (root or intermediate).
    issuer_dir: PathBuf,
    /// Root CA certificate (what peers trust).
    pub ca_cert: PathBuf,
    /// Intermediate CA certificate alone, when there is one.
    pub intermediate_cert: Option<PathBuf>,
    /// Gateway certificate (+ intermediate) and key.
    pub gateway_cert: PathBuf,
    /// Gateway private key (PKCS#8 PEM).
    pub gateway_key: PathBuf,
    /// Machine (device tunnel) certificate and key.
    pub machine_cert: PathBuf,
    /// Machine private key.
    pub machine_key: PathBuf,
    /// User certificate and key.
    pub user_cert: PathBuf,
    /// User private key.
    pub user_key: PathBuf,
    /// The options it was made with.
    pub options: PkiOptions,
}

impl Pki {
    /// Creates `dir` and issues everything with `bin pki init/issue`.
    pub fn issue(bin: &Path, dir: &Path, options: &PkiOptions) -> io::Result<Pki> {
        fs::create_dir_all(dir)?;
        let root = dir.join("root");
        let key = options.key.arg();
        run_aovpn(
            bin,
            &[
                "pki",
                "init",
                "--out",
                path_str(&root)?,
                "--name",
                "testkit Root CA",
                "--key",
                key,
            ],
        )?;
        let (issuer_dir, intermediate_cert) = if options.intermediate {
            let sub = dir.join("intermediate");
            run_aovpn(
                bin,
                &[
                    "pki",
                    "issue",
                    "--ca",
                    path_str(&root)?,
                    "--kind",
                    "intermediate",
                    "--name",
                    "testkit Issuing CA",
                    "--out",
                    path_str(&sub)?,
                    "--key",
                    key,
                ],
            )?;
            // ca.crt holds the intermediate, then the root: keep the first block alone.
            let chain = fs::read_to_string(sub.join("ca.crt"))?;
            let end = "-----END CERTIFICATE-----";
            let first = chain
                .find(end)
                .map(|i| &chain[..i + end.len()])
                .ok_or_else(|| io::Error::other("intermediate ca.crt has no certificate"))?;
            let only = dir.join("intermediate.crt");
            fs::write(&only, format!("{first}\n"))?;
            (sub, Some(only))
        } else {
            (root.clone(), None)
        };
        let mut pki = Pki {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            key: options.key,
            issuer_dir,
            ca_cert: root.join("ca.crt"),
            intermediate_cert,
            gateway_cert: PathBuf::new(),
            gateway_key: PathBuf::new(),
            machine_cert: PathBuf::new(),
            machine_key: PathBuf::new(),
            user_cert: PathBuf::new(),
            user_key: PathBuf::new(),
            options: options.clone(),
        };
        (pki.gateway_cert, pki.gateway_key) =
            pki.issue_end_entity("gateway", &options.gateway_name)?;
        (pki.machine_cert, pki.machine_key) =
            pki.issue_end_entity("machine", &options.machine_name)?;
        (pki.user_cert, pki.user_key) = pki.issue_end_entity("user", &options.user_name)?;
        Ok(pki)
    }

    /// Issues one more certificate (`kind` = gateway, machine or user) from the same CA;
    /// returns (certificate, key).
    pub fn issue_end_entity(&self, kind: &str, name: &str) -> io::Result<(PathBuf, PathBuf)> {
        let out = self.dir.join(format!("{kind}-{name}"));
        run_aovpn(
            &self.bin,
            &[
                "pki",
                "issue",
                "--ca",
                path_str(&self.issuer_dir)?,
                "--kind",
                kind,
                "--name",
                name,
                "--out",
                path_str(&out)?,
                "--key",
                self.key.arg(),
            ],
        )?;
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok((
            out.join(format!("{stem}.crt")),
            out.join(format!("{stem}.key")),
        ))
    }

    /// The certificate's SHA-1 thumbprint as `aovpn pki thumbprint` prints it.
    pub fn thumbprint(&self, cert: &Path) -> io::Result<String> {
        let out = run_aovpn(&self.bin, &["pki", "thumbprint", path_str(cert)?])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Splits a PEM chain file into one file per certificate (`STEM-0.crt`, `STEM-1.crt`, …
    /// next to it), for peers such as swanctl that load one certificate per file.
    pub fn split_chain(cert: &Path) -> io::Result<Vec<PathBuf>> {
        let text = fs::read_to_string(cert)?;
        let end = "-----END CERTIFICATE-----";
        let stem = cert
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| io::Error::other("certificate path has no file name"))?;
        let dir = cert.parent().unwrap_or(Path::new("."));
        let mut files = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(end) {
            let block = rest[..i + end.len()].trim();
            let file = dir.join(format!("{stem}-{}.crt", files.len()));
            fs::write(&file, format!("{block}\n"))?;
            files.push(file);
            rest = &rest[i + end.len()..];
        }
        Ok(files)
    }
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

/// How [`AgentProcess::start`] sets up the system store.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    /// Device-scope profiles: (name, ProfileXML file), added with `aovpn profile add --system`.
    pub profiles: Vec<(String, PathBuf)>,
    /// The machine certificate (chain) and key, copied to `etc/machine/`.
    pub machine: Option<(PathBuf, PathBuf)>,
    /// The gateway's root, copied to `etc/ca/`.
    pub ca: PathBuf,
    /// `sessions` in agent.toml (`helpers` by default: there is no logind in the namespaces).
    pub sessions: String,
    /// `admin_group` in agent.toml.
    pub admin_group: Option<u32>,
    /// `backoff_cap_secs` in agent.toml.
    pub backoff_cap_secs: Option<u64>,
    /// Extra environment of the agent (e.g. `DBUS_SYSTEM_BUS_ADDRESS` of a private bus).
    pub env: Vec<(String, String)>,
    /// Appended to agent.toml (tables such as `[register_dns]`).
    pub extra_toml: String,
    /// Files written into the store before the agent starts: (name under `etc/`, text),
    /// readable by root only.
    pub files: Vec<(String, String)>,
}

impl AgentOpts {
    /// A device tunnel profile with the machine certificate and the root.
    pub fn new(ca: &Path) -> Self {
        AgentOpts {
            profiles: Vec::new(),
            machine: None,
            ca: ca.to_owned(),
            sessions: "helpers".to_owned(),
            admin_group: None,
            backoff_cap_secs: None,
            env: Vec::new(),
            extra_toml: String::new(),
            files: Vec::new(),
        }
    }
}

/// `aovpn agent` running in a namespace with its own store, socket and state under
/// `workdir` (`etc/`, `run/`, `state/`, `resolv.conf`); dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct AgentProcess {
    bin: PathBuf,
    ns_name: String,
    daemon: Option<Daemon>,
    workdir: PathBuf,
    generation: u32,
    env: Vec<(String, String)>,
}

/// How long the agent gets to open its socket.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(15);

impl AgentProcess {
    /// Prepares the store (profiles, machine credentials, root, agent.toml) and starts the
    /// agent in `ns`; returns once its control socket answers.
    pub fn start(bin: &Path, ns: &Netns, workdir: &Path, opts: &AgentOpts) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let etc = workdir.join("etc");
        for dir in [
            etc.join("ca"),
            etc.join("machine"),
            workdir.join("run"),
            workdir.join("state"),
        ] {
            fs::create_dir_all(&dir)?;
        }
        // The socket must be reachable for unprivileged helpers and users.
        fs::set_permissions(workdir, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(workdir.join("run"), fs::Permissions::from_mode(0o755))?;
        fs::copy(&opts.ca, etc.join("ca").join("root.pem"))?;
        if let Some((cert, key)) = &opts.machine {
            fs::copy(cert, etc.join("machine").join("certificate.pem"))?;
            fs::copy(key, etc.join("machine").join("key.pem"))?;
            fs::set_permissions(
                etc.join("machine").join("key.pem"),
                fs::Permissions::from_mode(0o600),
            )?;
        }
        let mut toml = format!("sessions = \"{}\"\n", opts.sessions);
        if let Some(g) = opts.admin_group {
            toml.push_str(&format!("admin_group = \"{g}\"\n"));
        }
        if let Some(cap) = opts.backoff_cap_secs {
            toml.push_str(&format!("backoff_cap_secs = {cap}\n"));
        }
        toml.push_str(&opts.extra_toml);
        fs::write(etc.join("agent.toml"), toml)?;
        for (name, text) in &opts.files {
            let path = etc.join(name);
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
        fs::write(workdir.join("resolv.conf"), "nameserver 192.0.2.53\n")?;
        let mut agent = AgentProcess {
            bin: bin.to_owned(),
            ns_name: ns.name().to_owned(),
            daemon: None,
            workdir: workdir.to_owned(),
            generation: 0,
            env: opts.env.clone(),
        };
        for (name, file) in &opts.profiles {
            agent.add_profile(name, file)?;
        }
        agent.spawn(ns)?;
        Ok(agent)
    }

    /// `aovpn profile add --system FILE --name NAME` into this agent's store.
    pub fn add_profile(&self, name: &str, file: &Path) -> io::Result<Output> {
        run_aovpn(
            &self.bin,
            &[
                "profile",
                "--system-dir",
                path_str(&self.workdir.join("etc"))?,
                "--socket",
                path_str(&self.socket())?,
                "add",
                "--system",
                "--name",
                name,
                path_str(file)?,
            ],
        )
    }

    /// `aovpn profile remove NAME` from this agent's store.
    pub fn remove_profile(&self, name: &str) -> io::Result<Output> {
        run_aovpn(
            &self.bin,
            &[
                "profile",
                "--system-dir",
                path_str(&self.workdir.join("etc"))?,
                "--socket",
                path_str(&self.socket())?,
                "remove",
                name,
            ],
        )
    }

    fn spawn(&mut self, ns: &Netns) -> io::Result<()> {
        self.generation += 1;
        let w = &self.workdir;
        let args: Vec<String> = [
            "agent",
            "--config-dir",
            path_str(&w.join("etc"))?,
            "--socket",
            path_str(&self.socket())?,
            "--run-dir",
            path_str(&w.join("run"))?,
            "--state-dir",
            path_str(&w.join("state"))?,
            "--resolv-conf",
            path_str(&w.join("resolv.conf"))?,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let log = w.join(format!("agent.{}.log", self.generation));
        self.daemon = Some(Daemon::spawn_with_env(
            ns,
            &self.bin,
            &args,
            log,
            "aovpn agent",
            &self.env,
        )?);
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(d) = self.daemon.as_mut()
                && let Some(status) = d.try_exited()?
            {
                return Err(io::Error::other(format!(
                    "aovpn agent exited during start-up ({status}):\n{}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "aovpn agent did not open its socket within {AGENT_START_TIMEOUT:?}:\n{}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent again (after [`Self::kill`] or [`Self::stop`]) with the same store.
    pub fn restart(&mut self, ns: &Netns) -> io::Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.stop()?;
        }
        self.spawn(ns)
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.workdir.join("run").join("agent.sock")
    }

    /// The store directory (`etc/`).
    pub fn config_dir(&self) -> PathBuf {
        self.workdir.join("etc")
    }

    /// The resolv.conf the agent manages.
    pub fn resolv_conf(&self) -> PathBuf {
        self.workdir.join("resolv.conf")
    }

    /// The agent's run directory (`--run-dir`).
    pub fn run_dir(&self) -> PathBuf {
        self.workdir.join("run")
    }

    /// The agent's state directory (`--state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join("state")
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.child.id())
    }

    /// `aovpn ARGS --socket SOCKET` as root (a control command); the output whatever the exit.
    pub fn control(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
    }

    /// The same as user `uid` (no passwd entry needed): what an unprivileged user may do.
    pub fn control_as(&self, uid: u32, args: &[&str]) -> io::Result<Output> {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
    }

    /// Everything every agent run logged so far.
    pub fn log(&self) -> String {
        (1..=self.generation)
            .map(|g| {
                fs::read_to_string(self.workdir.join(format!("agent.{g}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("---- agent restarted ----\n")
    }

    /// SIGTERM: every tunnel says goodbye and cleans up; waits.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        match self.daemon.as_mut() {
            Some(d) => d.stop(),
            None => Err(io::Error::other("not running")),
        }
    }

    /// SIGKILL: a crash, without goodbye or cleanup.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        match self.daemon.as_mut() {
            Some(d) => d.kill(),
            None => Err(io::Error::other("not running")),
        }
    }

    /// The namespace it runs in.
    pub fn namespace(&self) -> &str {
        &self.ns_name
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- testkit: agent logs ----\n{}---- end ----", self.log());
        }
    }
}

/// `aovpn user-helper` running as an unprivileged user (uid without a passwd entry) with its
/// own config directory; dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct UserHelperProcess {
    daemon: Daemon,
    config_dir: PathBuf,
}

impl UserHelperProcess {
    /// Creates `dir` owned by `uid` with the user's certificate and key (0600) and the given
    /// user profiles (added with `aovpn profile add --scope user` as that user), then starts
    /// the helper as `uid` in `ns`.
    pub fn start(
        bin: &Path,
        ns: &Netns,
        uid: u32,
        dir: &Path,
        cert_key: (&Path, &Path),
        profiles: &[(&str, &Path)],
        socket: &Path,
    ) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let config_dir = dir.join("aovpn");
        let user_dir = config_dir.join("user");
        fs::create_dir_all(&user_dir)?;
        fs::copy(cert_key.0, user_dir.join("certificate.pem"))?;
        fs::copy(cert_key.1, user_dir.join("key.pem"))?;
        fs::set_permissions(user_dir.join("key.pem"), fs::Permissions::from_mode(0o600))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        chown_tree(dir, uid)?;
        for (name, file) in profiles {
            let readable = dir.join(format!("{name}.xml"));
            fs::copy(file, &readable)?;
            chown_tree(&readable, uid)?;
            let out = Command::new("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .env("XDG_CONFIG_HOME", dir)
                .env("HOME", dir)
                .arg(bin)
                .args(["profile", "add", "--scope", "user", "--name", name])
                .arg(&readable)
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "adding user profile {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let setpriv = PathBuf::from("/usr/bin/setpriv");
        let args = vec![
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
            bin.display().to_string(),
            "user-helper".to_owned(),
            "--config-dir".to_owned(),
            config_dir.display().to_string(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--rescan-secs".to_owned(),
            "1".to_owned(),
        ];
        let log = dir.join("helper.log");
        let daemon = Daemon::spawn(
            ns,
            &setpriv,
            &args,
            log,
            &format!("aovpn user-helper (uid {uid})"),
        )?;
        Ok(UserHelperProcess { daemon, config_dir })
    }

    /// The user's aovpn directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Everything the helper logged.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// SIGTERM (the user logs out).
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.daemon.stop()
    }
}

fn chown_tree(path: &Path, uid: u32) -> io::Result<()> {
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    let group = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(path, owner, group).map_err(io::Error::from)?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_found_in_pretty_status() {
        let text = "{\n  \"state\": \"connected\",\n  \"virtual_ip\": \"172.16.201.1\",\n  \"error\": null\n}";
        assert_eq!(json_state(text).as_deref(), Some("connected"));
        assert_eq!(
            json_string_field(text, "virtual_ip").as_deref(),
            Some("172.16.201.1")
        );
        assert_eq!(json_string_field(text, "error"), None);
        assert_eq!(json_state(""), None);
    }

    #[test]
    fn gateway_toml_lists_every_option() {
        let opts = GatewayOpts {
            listen: "203.0.113.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            cert: "/p/gw.crt".into(),
            key: "/p/gw.key".into(),
            id: Some("vpn.example".into()),
            root_cas: vec!["/p/ca.crt".into()],
            pool: "172.16.201.0/24".into(),
            pool_v6: Some("fd00:172:16:201::/112".into()),
            routes: vec!["10.1.0.0/16".into()],
            dns: vec![],
            dns_domains: vec!["corp.example".into()],
            ike_proposals: vec!["aes256-sha1-modp1024".into()],
            esp_proposals: vec!["aes256-sha1".into()],
            allow_legacy: true,
            revoked: vec!["AB".into()],
            dpd_interval_secs: Some(3),
            lifetimes_secs: Some((12, 10)),
            interface: "gw0".into(),
            state_dir: None,
            run_as: None,
            extra: "[limits]\nhalf_open_per_source = 3\n".into(),
            accept: Some(vec!["machine".into()]),
            admin_group: Some("aovpn".into()),
        };
        let text = opts.render(Path::new("/w"));
        assert!(
            text.ends_with("[limits]\nhalf_open_per_source = 3\n"),
            "{text}"
        );
        for needle in [
            "state_dir = \"/w/state\"",
            "socket = \"/w/admin.sock\"",
            "group = \"aovpn\"",
            "addresses = [\"203.0.113.1\"]",
            "id = \"vpn.example\"",
            "root_ca_files = [\"/p/ca.crt\"]",
            "revoked_thumbprints = [\"AB\"]",
            "pool_v6 = \"fd00:172:16:201::/112\"",
            "dns = []",
            "dns_domains = [\"corp.example\"]",
            "ike_proposals = [\"aes256-sha1-modp1024\"]",
            "allow_legacy = true",
            "dpd_interval_secs = 3",
            "ike_lifetime_secs = 12",
            "child_lifetime_secs = 10",
            "interface = \"gw0\"",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
