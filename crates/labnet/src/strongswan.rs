//! A real strongSwan peer (Debian's 5.9.8 charon with kernel-libipsec) inside a [`Netns`].
//!
//! Follows `shared/interop/strongswan/`: each charon runs in its own mount namespace with a
//! private tmpfs over `/run` (its pid file path is hard-coded), reads a self-contained
//! `strongswan.conf` with an explicit plugin list (kernel-libipsec before kernel-netlink, since
//! the kernel has no XFRM ESP; kdf is mandatory in 5.9.8), and listens on a vici socket in its
//! work directory. `swanctl` runs from the host against that socket. All state lives in the
//! work directory, which must not be under `/run`.
//!
//! ```no_run
//! use std::time::Duration;
//! use labnet::netns::{Topology, lab};
//! use labnet::strongswan::{Charon, ChildConfig, Connection, KeyKind, SwanctlConf, TestPki};
//! let topo = Topology::routed("ssdoc", false)?;
//! let tmp = tempfile::tempdir()?;
//! let pki = TestPki::generate(&tmp.path().join("pki"), KeyKind::Rsa2048)?;
//! let gw = Charon::start(&topo.gateway, &tmp.path().join("gw"))?;
//! gw.configure(
//!     &SwanctlConf::new()
//!         .connection(
//!             Connection::responder("p2s")
//!                 .local_addrs(&topo.gateway_wan().to_string())
//!                 .pools("pool")
//!                 .proposals("aes256gcm16-prfsha384-ecp384")
//!                 .local_id(TestPki::GATEWAY_ID)
//!                 .local_cert(&pki.gateway_cert)
//!                 .remote_cacert(&pki.ca_cert)
//!                 .child(ChildConfig::new("p2s").local_ts(lab::VNET_TS).esp_proposals("aes256gcm16")),
//!         )
//!         .pool("pool", lab::CLIENT_POOL)
//!         .private_key(&pki.gateway_key),
//! )?;
//! gw.load_all()?;
//! // ... our client connects to topo.gateway_wan() from topo.client ...
//! let sa = gw.wait_for_sa("p2s", Duration::from_secs(10))?;
//! assert_eq!(sa.remote_id, TestPki::CLIENT_DN);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;

/// The charon daemon of Debian's `strongswan-charon`.
pub const CHARON_BIN: &str = "/usr/lib/ipsec/charon";

/// Plugins charon loads. Order matters: the first kernel-ipsec backend registered wins, so
/// kernel-libipsec (userspace ESP over TUN) precedes kernel-netlink (addresses and routes).
/// No resolve (rewrites /etc/resolv.conf), curl/ldap (network fetches) or stroke.
pub const CHARON_PLUGINS: &str = "random nonce openssl pem pkcs1 pkcs8 x509 revocation \
    constraints pubkey aes sha1 sha2 hmac gcm kdf curve25519 kernel-libipsec kernel-netlink \
    socket-default vici";

/// Plugins swanctl and pki load (the stock list starts ~40 and probes the TPM).
const TOOL_PLUGINS: &str = "pem pkcs1 pkcs8 x509 openssl random nonce gmp sha1 sha2";

/// The subdirectories swanctl expects (it warns about each missing one).
const SWANCTL_SUBDIRS: &[&str] = &[
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// How long charon gets to open its vici socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long charon gets to exit after SIGTERM (it usually needs 1.5-2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn command_error(what: &str, out: &Output) -> io::Error {
    io::Error::other(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A charon daemon running in a network namespace; dropped = stopped (by its own pid only).
#[derive(Debug)]
pub struct Charon {
    /// `ip netns exec` → `unshare` → `sh` → charon all exec, so this is charon itself.
    child: Child,
    workdir: PathBuf,
    netns: String,
}

impl Charon {
    /// Writes `workdir/strongswan.conf`, creates `workdir/swanctl/*`, starts charon inside `ns`
    /// and waits until its vici socket accepts connections.
    pub fn start(ns: &Netns, workdir: &Path) -> io::Result<Charon> {
        Self::start_with_plugins(ns, workdir, "")
    }

    /// Like [`Charon::start`], with more plugins loaded after [`CHARON_PLUGINS`] (e.g.
    /// `"eap-identity eap-tls"`).
    pub fn start_with_plugins(ns: &Netns, workdir: &Path, extra: &str) -> io::Result<Charon> {
        Self::start_with_settings(ns, workdir, extra, "")
    }

    /// Like [`Charon::start_with_plugins`], with `settings` added to strongswan.conf at the
    /// top level (e.g. `libtls { version_max = 1.3 }`).
    pub fn start_with_settings(
        ns: &Netns,
        workdir: &Path,
        extra: &str,
        settings: &str,
    ) -> io::Result<Charon> {
        if workdir.starts_with("/run") {
            return Err(io::Error::other(
                "charon work dir must not be under /run (private tmpfs)",
            ));
        }
        fs::create_dir_all(workdir)?;
        let workdir = workdir.canonicalize()?;
        if workdir.starts_with("/run") {
            return Err(io::Error::other(format!(
                "charon work dir {} resolves to under /run (private tmpfs)",
                workdir.display()
            )));
        }
        for sub in SWANCTL_SUBDIRS {
            fs::create_dir_all(workdir.join("swanctl").join(sub))?;
        }
        let vici = workdir.join("charon.vici");
        // The unix socket path is limited to 108 bytes.
        if vici.as_os_str().len() > 100 {
            return Err(io::Error::other(format!(
                "work dir path too long: {}",
                vici.display()
            )));
        }
        match fs::remove_file(&vici) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::write(
            workdir.join("strongswan.conf"),
            strongswan_conf(&workdir, extra, settings),
        )?;
        let stdout = fs::File::create(workdir.join("charon.stdout"))?;
        let stderr = stdout.try_clone()?;

        let mut cmd = ns.command([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o mode=0755 testkit-run /run && exec \"$0\"",
            CHARON_BIN,
        ]);
        cmd.env("STRONGSWAN_CONF", workdir.join("strongswan.conf"))
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd.spawn()?;
        let mut charon = Charon {
            child,
            workdir,
            netns: ns.name().to_owned(),
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = charon.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "charon in {} exited during start-up ({status}):\n{}\n{}",
                    charon.netns,
                    fs::read_to_string(charon.workdir.join("charon.stdout")).unwrap_or_default(),
                    charon.log()
                )));
            }
            if UnixStream::connect(&vici).is_ok() && charon.comm().as_deref() == Some("charon") {
                return Ok(charon);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "charon in {} did not open {} within {START_TIMEOUT:?}:\n{}",
                    charon.netns,
                    vici.display(),
                    charon.log()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn comm(&self) -> Option<String> {
        fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// charon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The work directory (configs, `charon.log`, `charon.vici`, `swanctl/`).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `SWANCTL_DIR` of this instance.
    pub fn swanctl_dir(&self) -> PathBuf {
        self.workdir.join("swanctl")
    }

    /// `unix://…/charon.vici`.
    pub fn vici_uri(&self) -> String {
        format!("unix://{}", self.workdir.join("charon.vici").display())
    }

    /// Contents of `charon.log` (empty if unreadable), for diagnostics.
    pub fn log(&self) -> String {
        fs::read_to_string(self.workdir.join("charon.log")).unwrap_or_default()
    }

    /// Runs `swanctl COMMAND --uri … ARGS…` against this instance (any exit status).
    pub fn swanctl(&self, command: &str, args: &[&str]) -> io::Result<Output> {
        // --uri must follow the command; placed first swanctl rejects it.
        Command::new("swanctl")
            .arg(command)
            .arg("--uri")
            .arg(self.vici_uri())
            .args(args)
            .env("STRONGSWAN_CONF", self.workdir.join("strongswan.conf"))
            .env("SWANCTL_DIR", self.swanctl_dir())
            .stdin(Stdio::null())
            .output()
    }

    fn swanctl_ok(&self, command: &str, args: &[&str]) -> io::Result<String> {
        let out = self.swanctl(command, args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(command_error(
                &format!("swanctl {command} {}", args.join(" ")),
                &out,
            ))
        }
    }

    /// Writes `swanctl/swanctl.conf` and copies the credential files `conf` refers to.
    pub fn configure(&self, conf: &SwanctlConf) -> io::Result<()> {
        conf.install(&self.swanctl_dir())
    }

    /// `swanctl --load-all`; returns its output.
    pub fn load_all(&self) -> io::Result<String> {
        self.swanctl_ok("--load-all", &[])
    }

    /// `swanctl --initiate --child CHILD --ike IKE --timeout T`; Ok with swanctl's output once
    /// the CHILD_SA is up, Err with the output otherwise.
    pub fn initiate(&self, child: &str, ike: &str, timeout: Duration) -> io::Result<String> {
        let secs = timeout.as_secs().max(1).to_string();
        self.swanctl_ok(
            "--initiate",
            &["--child", child, "--ike", ike, "--timeout", &secs],
        )
    }

    /// `swanctl --terminate --ike IKE` (waits up to 10 s for the delete to complete).
    pub fn terminate(&self, ike: &str) -> io::Result<String> {
        self.swanctl_ok("--terminate", &["--ike", ike, "--timeout", "10"])
    }

    /// The IKE SAs charon currently has (`swanctl --list-sas --pretty`, parsed).
    pub fn list_sas(&self) -> io::Result<Vec<SaInfo>> {
        let text = self.swanctl_ok("--list-sas", &["--pretty"])?;
        parse_list_sas(&text).map_err(io::Error::other)
    }

    /// Waits until an IKE SA of connection `ike` is ESTABLISHED with at least one CHILD_SA and
    /// all of its CHILD_SAs INSTALLED, and returns it (for when the peer initiates).
    pub fn wait_for_sa(&self, ike: &str, timeout: Duration) -> io::Result<SaInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let sas = self.list_sas()?;
            let ready = sas.into_iter().find(|sa| {
                sa.name == ike
                    && sa.state == "ESTABLISHED"
                    && !sa.children.is_empty()
                    && sa.children.iter().all(|c| c.state == "INSTALLED")
            });
            if let Some(sa) = ready {
                return Ok(sa);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no established IKE SA '{ike}' within {timeout:?}:\n{}",
                        self.log()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops charon: SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL. Signals only this
    /// pid (still our unreaped child, so it cannot have been reused).
    pub fn stop(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).map_err(io::Error::other)?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        self.child.wait().map(drop)
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "labnet: stopping charon {} in {}: {e}",
                self.child.id(),
                self.netns
            );
        }
    }
}

fn strongswan_conf(workdir: &Path, extra_plugins: &str, settings: &str) -> String {
    let d = workdir.display();
    let plugins = format!("{CHARON_PLUGINS} {extra_plugins}");
    let plugins = plugins.trim_end();
    format!(
        "# written by labnet::strongswan; self-contained (does not include /etc/strongswan.d)
charon {{
    load = {plugins}
    install_routes = yes
    filelog {{
        testkit {{
            path = {d}/charon.log
            time_format = %s
            time_add_ms = yes
            append = yes
            flush_line = yes
            default = 1
            ike = 1
            cfg = 1
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{d}/charon.vici
        }}
    }}
}}
swanctl {{
    load = {TOOL_PLUGINS}
    socket = unix://{d}/charon.vici
}}
pki {{
    load = {TOOL_PLUGINS}
}}
{settings}"
    )
}

/// Quotes a swanctl.conf value (`"` and `\` escaped).
fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn set(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => list.push((key.to_owned(), value.to_owned())),
    }
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("not a file path: {}", path.display())))
}

fn render_section(out: &mut String, indent: usize, name: &str, settings: &[(String, String)]) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}{name} {{");
    for (k, v) in settings {
        let _ = writeln!(out, "{pad}    {k} = {}", quote(v));
    }
}

/// A CHILD_SA section of a connection.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    name: String,
    settings: Vec<(String, String)>,
}

impl ChildConfig {
    /// A child named `name` (tunnel mode, strongSwan defaults otherwise).
    pub fn new(name: &str) -> Self {
        ChildConfig {
            name: name.to_owned(),
            settings: Vec::new(),
        }
    }
    /// `local_ts` (comma-separated list).
    pub fn local_ts(self, ts: &str) -> Self {
        self.set("local_ts", ts)
    }
    /// `remote_ts` (comma-separated list).
    pub fn remote_ts(self, ts: &str) -> Self {
        self.set("remote_ts", ts)
    }
    /// `esp_proposals` (comma-separated list).
    pub fn esp_proposals(self, proposals: &str) -> Self {
        self.set("esp_proposals", proposals)
    }
    /// Any other child setting (`start_action`, `dpd_action`, `mode`, …).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        set(&mut self.settings, key, value);
        self
    }
}

/// One `connections.NAME` section, with the certificate files it refers to.
#[derive(Debug, Clone)]
pub struct Connection {
    name: String,
    settings: Vec<(String, String)>,
    local: Vec<(String, String)>,
    remote: Vec<(String, String)>,
    children: Vec<ChildConfig>,
    local_certs: Vec<PathBuf>,
    remote_cacerts: Vec<PathBuf>,
}

impl Connection {
    fn base(name: &str) -> Self {
        let mut c = Connection {
            name: name.to_owned(),
            settings: Vec::new(),
            local: Vec::new(),
            remote: Vec::new(),
            children: Vec::new(),
            local_certs: Vec::new(),
            remote_cacerts: Vec::new(),
        };
        set(&mut c.settings, "version", "2");
        // kernel-libipsec only does ESP-in-UDP; encap makes the NAT-T switch explicit.
        set(&mut c.settings, "encap", "yes");
        set(&mut c.settings, "fragmentation", "yes");
        set(&mut c.local, "auth", "pubkey");
        set(&mut c.remote, "auth", "pubkey");
        c
    }

    /// A gateway-side connection: IKEv2, certificate auth, `send_cert = always`,
    /// `fragmentation = yes`, `encap = yes`.
    pub fn responder(name: &str) -> Self {
        let mut c = Self::base(name);
        set(&mut c.settings, "send_cert", "always");
        c
    }

    /// A client-side connection: IKEv2, certificate auth, asks for a virtual IP
    /// (`vips = 0.0.0.0`), `fragmentation = yes`, `encap = yes`.
    pub fn initiator(name: &str) -> Self {
        let mut c = Self::base(name);
        set(&mut c.settings, "vips", "0.0.0.0");
        c
    }

    /// `local_addrs`.
    pub fn local_addrs(self, addrs: &str) -> Self {
        self.set("local_addrs", addrs)
    }
    /// `remote_addrs`.
    pub fn remote_addrs(self, addrs: &str) -> Self {
        self.set("remote_addrs", addrs)
    }
    /// `pools` (names of [`SwanctlConf::pool`] entries).
    pub fn pools(self, pools: &str) -> Self {
        self.set("pools", pools)
    }
    /// `vips`.
    pub fn vips(self, vips: &str) -> Self {
        self.set("vips", vips)
    }
    /// IKE `proposals` (comma-separated).
    pub fn proposals(self, proposals: &str) -> Self {
        self.set("proposals", proposals)
    }
    /// `send_cert` (`always`, `ifasked`, `never`).
    pub fn send_cert(self, when: &str) -> Self {
        self.set("send_cert", when)
    }
    /// `local.id`.
    pub fn local_id(mut self, id: &str) -> Self {
        set(&mut self.local, "id", id);
        self
    }
    /// `remote.id`.
    pub fn remote_id(mut self, id: &str) -> Self {
        set(&mut self.remote, "id", id);
        self
    }
    /// Our certificate: copied to `x509/` and named in `local.certs`.
    pub fn local_cert(mut self, path: &Path) -> Self {
        self.local_certs.push(path.to_owned());
        self
    }
    /// A CA the peer's certificate must chain to: copied to `x509ca/`, named in
    /// `remote.cacerts`.
    pub fn remote_cacert(mut self, path: &Path) -> Self {
        self.remote_cacerts.push(path.to_owned());
        self
    }
    /// Adds a CHILD_SA section.
    pub fn child(mut self, child: ChildConfig) -> Self {
        self.children.push(child);
        self
    }
    /// Any other connection-level setting (`dpd_delay`, `keyingtries`, `mobike`, …).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        set(&mut self.settings, key, value);
        self
    }
    /// Any other `local` setting.
    pub fn set_local(mut self, key: &str, value: &str) -> Self {
        set(&mut self.local, key, value);
        self
    }
    /// Any other `remote` setting.
    pub fn set_remote(mut self, key: &str, value: &str) -> Self {
        set(&mut self.remote, key, value);
        self
    }

    fn render(&self, out: &mut String) -> io::Result<()> {
        render_section(out, 4, &self.name, &self.settings);
        let mut local = self.local.clone();
        if !self.local_certs.is_empty() {
            let names: io::Result<Vec<String>> =
                self.local_certs.iter().map(|p| file_name(p)).collect();
            set(&mut local, "certs", &names?.join(","));
        }
        render_section(out, 8, "local", &local);
        out.push_str("        }\n");
        let mut remote = self.remote.clone();
        if !self.remote_cacerts.is_empty() {
            let names: io::Result<Vec<String>> =
                self.remote_cacerts.iter().map(|p| file_name(p)).collect();
            set(&mut remote, "cacerts", &names?.join(","));
        }
        render_section(out, 8, "remote", &remote);
        out.push_str("        }\n        children {\n");
        for child in &self.children {
            render_section(out, 12, &child.name, &child.settings);
            out.push_str("            }\n");
        }
        out.push_str("        }\n    }\n");
        Ok(())
    }
}

/// Where a private key file goes under `SWANCTL_DIR`.
///
/// With the openssl/pkcs8 plugins of 5.9.8, swanctl loads PKCS#1 RSA, SEC1 EC and PKCS#8 (RSA or
/// EC, PEM or DER) keys from `private/` alike; `ecdsa/` also takes PKCS#8 EC keys, but
/// `private/` needs no knowledge of the key type (see `key_formats_load_from_private_dir`).
pub const PRIVATE_KEY_DIR: &str = "private";

/// A whole `swanctl.conf` plus the credential files to install next to it.
#[derive(Debug, Clone, Default)]
pub struct SwanctlConf {
    connections: Vec<Connection>,
    pools: Vec<(String, String)>,
    private_keys: Vec<PathBuf>,
    cacerts: Vec<PathBuf>,
}

impl SwanctlConf {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a connection.
    pub fn connection(mut self, connection: Connection) -> Self {
        self.connections.push(connection);
        self
    }
    /// Adds an address pool (`pools.NAME.addrs`).
    pub fn pool(mut self, name: &str, addrs: &str) -> Self {
        self.pools.push((name.to_owned(), addrs.to_owned()));
        self
    }
    /// A private key (PEM or DER; PKCS#1, SEC1 or PKCS#8), copied to [`PRIVATE_KEY_DIR`].
    pub fn private_key(mut self, path: &Path) -> Self {
        self.private_keys.push(path.to_owned());
        self
    }
    /// An extra trusted CA certificate, copied to `x509ca/` (not tied to a connection).
    pub fn cacert(mut self, path: &Path) -> Self {
        self.cacerts.push(path.to_owned());
        self
    }

    /// The `swanctl.conf` text.
    pub fn render(&self) -> io::Result<String> {
        let mut out = String::from("# written by labnet::strongswan\nconnections {\n");
        for c in &self.connections {
            c.render(&mut out)?;
        }
        out.push_str("}\npools {\n");
        for (name, addrs) in &self.pools {
            let _ = writeln!(
                out,
                "    {name} {{\n        addrs = {}\n    }}",
                quote(addrs)
            );
        }
        out.push_str("}\n");
        Ok(out)
    }

    /// Writes `dir/swanctl.conf` and copies every referenced file into its subdirectory.
    pub fn install(&self, dir: &Path) -> io::Result<()> {
        let copy = |src: &Path, sub: &str| -> io::Result<()> {
            let dst_dir = dir.join(sub);
            fs::create_dir_all(&dst_dir)?;
            fs::copy(src, dst_dir.join(file_name(src)?))
                .map_err(|e| io::Error::new(e.kind(), format!("copy {}: {e}", src.display())))
                .map(drop)
        };
        for c in &self.connections {
            for p in &c.local_certs {
                copy(p, "x509")?;
            }
            for p in &c.remote_cacerts {
                copy(p, "x509ca")?;
            }
        }
        for p in &self.cacerts {
            copy(p, "x509ca")?;
        }
        for p in &self.private_keys {
            copy(p, PRIVATE_KEY_DIR)?;
        }
        fs::write(dir.join("swanctl.conf"), self.render()?)
    }
}

/// One IKE SA as listed by `swanctl --list-sas`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaInfo {
    /// Connection name.
    pub name: String,
    /// IKE SA state, e.g. `ESTABLISHED`.
    pub state: String,
    /// Our address.
    pub local_host: String,
    /// Peer address.
    pub remote_host: String,
    /// Our IKE identity.
    pub local_id: String,
    /// Peer's IKE identity.
    pub remote_id: String,
    /// Negotiated IKE algorithms as swanctl prints them, e.g.
    /// `AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384`.
    pub ike_algorithms: String,
    /// Virtual IPs assigned to us.
    pub local_vips: Vec<String>,
    /// Virtual IPs assigned to the peer.
    pub remote_vips: Vec<String>,
    /// CHILD_SAs of this IKE SA.
    pub children: Vec<ChildSaInfo>,
}

/// One CHILD_SA of an [`SaInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSaInfo {
    /// Child config name.
    pub name: String,
    /// State, e.g. `INSTALLED`.
    pub state: String,
    /// `TUNNEL`/`TRANSPORT`.
    pub mode: String,
    /// Whether ESP is UDP-encapsulated.
    pub encap: bool,
    /// Negotiated algorithms as swanctl prints them, e.g. `ESP:AES_GCM_16-256`.
    pub algorithms: String,
    /// Local traffic selectors.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
    /// Packets received through this CHILD_SA.
    pub packets_in: u64,
    /// Packets sent through this CHILD_SA.
    pub packets_out: u64,
}

/// A node of swanctl's `--pretty` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Section(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn value(&self, key: &str) -> String {
        match self.get(key) {
            Some(Node::Value(v)) => v.clone(),
            _ => String::new(),
        }
    }
    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Node::List(v)) => v.clone(),
            Some(Node::Value(v)) => vec![v.clone()],
            _ => Vec::new(),
        }
    }
    fn sections(&self) -> impl Iterator<Item = (&str, &Node)> {
        let entries: &[(String, Node)] = match self {
            Node::Section(e) => e,
            _ => &[],
        };
        entries
            .iter()
            .filter(|(_, v)| matches!(v, Node::Section(_)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// `swanctl --list-sas --pretty` output we cannot read; the message says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SwanctlOutputError(String);

impl From<&str> for SwanctlOutputError {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

/// Parses the line-based `--pretty` format: `name {` … `}`, `key = value`, `key = [` … `]`.
/// Returns the top-level events (each `list-sa event { … }`).
fn parse_pretty(text: &str) -> Result<Vec<Node>, SwanctlOutputError> {
    let mut stack: Vec<(String, Vec<(String, Node)>)> = vec![(String::new(), Vec::new())];
    let mut list: Option<(String, Vec<String>)> = None;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, items)) = list.as_mut() {
            if line == "]" {
                let (key, items) = (std::mem::take(key), std::mem::take(items));
                list = None;
                let top = stack.last_mut().ok_or("parser stack empty")?;
                top.1.push((key, Node::List(items)));
            } else {
                items.push(line.to_owned());
            }
            continue;
        }
        if line == "}" {
            let (name, entries) = stack.pop().ok_or("parser stack empty")?;
            let parent = stack
                .last_mut()
                .ok_or_else(|| SwanctlOutputError(format!("line {}: unbalanced }}", no + 1)))?;
            parent.1.push((name, Node::Section(entries)));
        } else if let Some((key, value)) = line.split_once(" = ") {
            if value == "[" {
                list = Some((key.to_owned(), Vec::new()));
            } else {
                let top = stack.last_mut().ok_or("parser stack empty")?;
                top.1.push((key.to_owned(), Node::Value(value.to_owned())));
            }
        } else if let Some(name) = line.strip_suffix(" {") {
            stack.push((name.to_owned(), Vec::new()));
        } else if let Some(key) = line.strip_suffix(" =") {
            // A key with an empty value.
            let top = stack.last_mut().ok_or("parser stack empty")?;
            top.1.push((key.to_owned(), Node::Value(String::new())));
        } else {
            return Err(SwanctlOutputError(format!(
                "line {}: cannot parse {raw:?}",
                no + 1
            )));
        }
    }
    if stack.len() != 1 || list.is_some() {
        return Err("unterminated section or list".into());
    }
    let (_, entries) = stack.pop().ok_or("parser stack empty")?;
    Ok(entries.into_iter().map(|(_, v)| v).collect())
}

/// `ALG[-KEYSIZE]`, as swanctl prints algorithms.
fn alg(node: &Node, alg_key: &str, size_key: &str) -> Option<String> {
    let a = node.value(alg_key);
    if a.is_empty() {
        return None;
    }
    let size = node.value(size_key);
    Some(if size.is_empty() {
        a
    } else {
        format!("{a}-{size}")
    })
}

fn parse_list_sas(text: &str) -> Result<Vec<SaInfo>, SwanctlOutputError> {
    let mut sas = Vec::new();
    for event in parse_pretty(text)? {
        for (name, ike) in event.sections() {
            let ike_algorithms = [
                alg(ike, "encr-alg", "encr-keysize"),
                alg(ike, "integ-alg", "integ-keysize"),
                alg(ike, "prf-alg", ""),
                alg(ike, "dh-group", ""),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
            let mut children = Vec::new();
            if let Some(child_sas) = ike.get("child-sas") {
                for (_, child) in child_sas.sections() {
                    let algs = [
                        alg(child, "encr-alg", "encr-keysize"),
                        alg(child, "integ-alg", "integ-keysize"),
                        alg(child, "dh-group", ""),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                    children.push(ChildSaInfo {
                        name: child.value("name"),
                        state: child.value("state"),
                        mode: child.value("mode"),
                        encap: child.value("encap") == "yes",
                        algorithms: format!("{}:{algs}", child.value("protocol")),
                        local_ts: child.list("local-ts"),
                        remote_ts: child.list("remote-ts"),
                        packets_in: child.value("packets-in").parse().unwrap_or(0),
                        packets_out: child.value("packets-out").parse().unwrap_or(0),
                    });
                }
            }
            sas.push(SaInfo {
                name: name.to_owned(),
                state: ike.value("state"),
                local_host: ike.value("local-host"),
                remote_host: ike.value("remote-host"),
                local_id: ike.value("local-id"),
                remote_id: ike.value("remote-id"),
                ike_algorithms,
                local_vips: ike.list("local-vips"),
                remote_vips: ike.list("remote-vips"),
                children,
            });
        }
    }
    Ok(sas)
}

/// Key algorithm for [`TestPki`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048 made by `pki --gen` (PKCS#1 PEM), like Azure's documented certificates.
    Rsa2048,
    /// ECDSA P-256 made by `openssl genpkey` (PKCS#8 PEM, the form rcgen and most tools write).
    EcdsaP256Pkcs8,
}

/// A CA, a gateway certificate and a client certificate made with strongSwan's `pki` tool.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Gateway certificate (SAN = [`TestPki::GATEWAY_ID`], EKU serverAuth + ikeIntermediate).
    pub gateway_cert: PathBuf,
    /// Gateway private key.
    pub gateway_key: PathBuf,
    /// Client certificate (subject [`TestPki::CLIENT_DN`], EKU clientAuth).
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// The gateway's IKE identity (its certificate's DNS SAN).
    pub const GATEWAY_ID: &'static str = "vpn.testkit.example";
    /// The client's IKE identity (its certificate's subject).
    pub const CLIENT_DN: &'static str = "C=XX, O=aovpn testkit, CN=client1";
    /// The CA's subject.
    pub const CA_DN: &'static str = "C=XX, O=aovpn testkit, CN=testkit Root CA";

    /// Generates the CA and both end-entity certificates under `dir`.
    pub fn generate(dir: &Path, kind: KeyKind) -> io::Result<TestPki> {
        fs::create_dir_all(dir)?;
        let conf = dir.join("pki.conf");
        fs::write(&conf, format!("pki {{\n    load = {TOOL_PLUGINS}\n}}\n"))?;
        // `fixed` is a space-separated flag list; `args` are appended as given (may hold spaces).
        let run = |program: &str, fixed: &str, args: &[&OsStr], out_file: &Path| {
            let out = Command::new(program)
                .args(fixed.split(' '))
                .args(args)
                .env("STRONGSWAN_CONF", &conf)
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(command_error(&format!("{program} {fixed} {args:?}"), &out));
            }
            fs::write(out_file, &out.stdout)
        };
        let gen_key = |path: &Path| match kind {
            KeyKind::Rsa2048 => run(
                "pki",
                "--gen --type rsa --size 2048 --outform pem",
                &[],
                path,
            ),
            KeyKind::EcdsaP256Pkcs8 => run(
                "openssl",
                "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
                &[],
                path,
            ),
        };
        let pki = TestPki {
            ca_cert: dir.join("ca.crt"),
            gateway_cert: dir.join("gateway.crt"),
            gateway_key: dir.join("gateway.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        let ca_key = dir.join("ca.key");
        let os = OsStr::new;
        gen_key(&ca_key)?;
        run(
            "pki",
            "--self --ca --lifetime 3650 --type priv --outform pem",
            &[os("--in"), ca_key.as_os_str(), os("--dn"), os(Self::CA_DN)],
            &pki.ca_cert,
        )?;
        let issue = "--issue --type priv --lifetime 730 --outform pem";
        let ca = [
            os("--cacert"),
            pki.ca_cert.as_os_str(),
            os("--cakey"),
            ca_key.as_os_str(),
        ];
        gen_key(&pki.gateway_key)?;
        let gw_dn = format!("C=XX, O=aovpn testkit, CN={}", Self::GATEWAY_ID);
        let gw_args = [
            os("--in"),
            pki.gateway_key.as_os_str(),
            os("--dn"),
            os(&gw_dn),
        ];
        let gw_flags = [
            os("--san"),
            os(Self::GATEWAY_ID),
            os("--flag"),
            os("serverAuth"),
            os("--flag"),
            os("ikeIntermediate"),
        ];
        run(
            "pki",
            issue,
            &[&gw_args[..], &ca, &gw_flags].concat(),
            &pki.gateway_cert,
        )?;
        gen_key(&pki.client_key)?;
        let cl_args = [
            os("--in"),
            pki.client_key.as_os_str(),
            os("--dn"),
            os(Self::CLIENT_DN),
        ];
        let cl_flags = [os("--flag"), os("clientAuth")];
        run(
            "pki",
            issue,
            &[&cl_args[..], &ca, &cl_flags].concat(),
            &pki.client_cert,
        )?;
        Ok(pki)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::netns::{Topology, lab, unique_name};
    use crate::require_root;

    const SAMPLE_PRETTY: &str = "\
list-sa event {
  ao {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.2
    local-port = 4500
    local-id = C=XX, O=AO Lab, CN=client1
    remote-host = 198.51.100.1
    remote-port = 4500
    remote-id = vpn.aolab.example
    initiator = yes
    encr-alg = AES_GCM_16
    encr-keysize = 256
    prf-alg = PRF_HMAC_SHA2_384
    dh-group = ECP_384
    local-vips = [
      172.16.201.1
    ]
    child-sas {
      ao-1 {
        name = ao
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        encr-alg = AES_CBC
        encr-keysize = 128
        integ-alg = HMAC_SHA2_256_128
        local-ts = [
          172.16.201.1/32
        ]
        remote-ts = [
          10.1.0.0/16
        ]
      }
    }
  }
}
";

    #[test]
    fn parses_pretty_list_sas() {
        let sas = parse_list_sas(SAMPLE_PRETTY).unwrap();
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "ao");
        assert_eq!(sa.state, "ESTABLISHED");
        assert_eq!(sa.local_id, "C=XX, O=AO Lab, CN=client1");
        assert_eq!(sa.remote_id, "vpn.aolab.example");
        assert_eq!(
            sa.ike_algorithms,
            "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
        );
        assert_eq!(sa.local_vips, vec!["172.16.201.1"]);
        assert!(sa.remote_vips.is_empty());
        let child = &sa.children[0];
        assert_eq!(child.name, "ao");
        assert_eq!(child.state, "INSTALLED");
        assert!(child.encap);
        assert_eq!(child.algorithms, "ESP:AES_CBC-128/HMAC_SHA2_256_128");
        assert_eq!(child.remote_ts, vec!["10.1.0.0/16"]);
        assert!(parse_list_sas("").unwrap().is_empty());
        assert!(parse_list_sas("a {\n").is_err());
        assert!(parse_list_sas("}\n").is_err());
        assert!(parse_list_sas("garbage\n").is_err());
    }

    #[test]
    fn extra_plugins_follow_the_standard_list() {
        let plain = strongswan_conf(Path::new("/w"), "", "");
        assert!(
            plain.contains(&format!("load = {CHARON_PLUGINS}\n")),
            "{plain}"
        );
        let eap = strongswan_conf(
            Path::new("/w"),
            "eap-identity eap-tls",
            "libtls {\n    version_max = 1.3\n}\n",
        );
        assert!(
            eap.contains(&format!("load = {CHARON_PLUGINS} eap-identity eap-tls\n")),
            "{eap}"
        );
        // Settings go at the top level, after the charon section.
        assert!(
            eap.ends_with("}\nlibtls {\n    version_max = 1.3\n}\n"),
            "{eap}"
        );
    }

    #[test]
    fn renders_quoted_swanctl_conf() {
        let conf = SwanctlConf::new()
            .connection(
                Connection::initiator("ao")
                    .remote_addrs("203.0.113.1")
                    .local_cert(Path::new("/x/client.crt"))
                    .remote_id("vpn \"q\"")
                    .child(ChildConfig::new("ao").remote_ts("10.1.0.0/16")),
            )
            .pool("p", "172.16.201.0/24");
        let text = conf.render().unwrap();
        assert!(text.contains("vips = \"0.0.0.0\""), "{text}");
        assert!(text.contains("certs = \"client.crt\""), "{text}");
        assert!(text.contains("id = \"vpn \\\"q\\\"\""), "{text}");
        assert!(text.contains("remote_ts = \"10.1.0.0/16\""), "{text}");
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    /// Gateway and client charon in a lab topology, proposals as given.
    fn strongswan_to_strongswan(topo: Topology, kind: KeyKind, ike: &str, esp: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(&tmp.path().join("pki"), kind).unwrap();
        let gw_addr = topo.gateway_wan().to_string();

        let gw = Charon::start(&topo.gateway, &tmp.path().join("gw")).unwrap();
        let cl = Charon::start(&topo.client, &tmp.path().join("cl")).unwrap();
        let (gw_pid, cl_pid) = (gw.pid(), cl.pid());
        assert_ne!(gw_pid, cl_pid);

        gw.configure(
            &SwanctlConf::new()
                .connection(
                    Connection::responder("p2s")
                        .local_addrs(&gw_addr)
                        .pools("p2s-pool")
                        .proposals(ike)
                        .local_id(TestPki::GATEWAY_ID)
                        .local_cert(&pki.gateway_cert)
                        .remote_cacert(&pki.ca_cert)
                        .child(
                            ChildConfig::new("p2s")
                                .local_ts(lab::VNET_TS)
                                .esp_proposals(esp),
                        ),
                )
                .pool("p2s-pool", lab::CLIENT_POOL)
                .private_key(&pki.gateway_key),
        )
        .unwrap();
        cl.configure(
            &SwanctlConf::new()
                .connection(
                    Connection::initiator("ao")
                        .remote_addrs(&gw_addr)
                        .proposals(ike)
                        .local_cert(&pki.client_cert)
                        .remote_id(TestPki::GATEWAY_ID)
                        .remote_cacert(&pki.ca_cert)
                        .child(
                            ChildConfig::new("ao")
                                .remote_ts(lab::VNET_TS)
                                .esp_proposals(esp)
                                .set("start_action", "none"),
                        ),
                )
                .private_key(&pki.client_key),
        )
        .unwrap();
        let gw_load = gw.load_all().unwrap();
        let cl_load = cl.load_all().unwrap();
        assert!(gw_load.contains("loaded connection 'p2s'"), "{gw_load}");
        assert!(cl_load.contains("loaded connection 'ao'"), "{cl_load}");
        for load in [&gw_load, &cl_load] {
            assert!(load.contains(" key from '"), "{load}");
        }

        if let Err(e) = cl.initiate("ao", "ao", Duration::from_secs(30)) {
            panic!(
                "initiate failed: {e}\n--- client log\n{}\n--- gateway log\n{}",
                cl.log(),
                gw.log()
            );
        }

        let cl_sas = cl.list_sas().unwrap();
        let gw_sa = gw.wait_for_sa("p2s", Duration::from_secs(5)).unwrap();
        let gw_sas = gw.list_sas().unwrap();
        assert_eq!(gw_sas, vec![gw_sa]);
        assert_eq!(cl_sas.len(), 1, "{cl_sas:?}");
        assert_eq!(gw_sas.len(), 1, "{gw_sas:?}");
        let (c, g) = (&cl_sas[0], &gw_sas[0]);
        assert_eq!((c.name.as_str(), c.state.as_str()), ("ao", "ESTABLISHED"));
        assert_eq!((g.name.as_str(), g.state.as_str()), ("p2s", "ESTABLISHED"));
        assert_eq!(c.remote_id, TestPki::GATEWAY_ID);
        assert_eq!(g.local_id, TestPki::GATEWAY_ID);
        assert_eq!(c.local_id, TestPki::CLIENT_DN);
        assert_eq!(g.remote_id, TestPki::CLIENT_DN);
        assert_eq!(c.ike_algorithms, g.ike_algorithms);
        assert_eq!(c.remote_host, gw_addr);
        assert_eq!(g.remote_host, topo.client_as_seen_by_gateway().to_string());
        let vip = c.local_vips.first().expect("client got no virtual IP");
        assert!(vip.starts_with("172.16.201."), "{vip}");
        assert_eq!(g.remote_vips, c.local_vips);
        for sa in [c, g] {
            assert_eq!(sa.children.len(), 1, "{sa:?}");
            let child = &sa.children[0];
            assert_eq!(child.state, "INSTALLED");
            assert_eq!(child.mode, "TUNNEL");
            assert!(child.encap, "{child:?}");
        }
        assert_eq!(c.children[0].algorithms, g.children[0].algorithms);
        assert_eq!(c.children[0].remote_ts, vec![lab::VNET_TS.to_string()]);
        assert_eq!(c.children[0].local_ts, vec![format!("{vip}/32")]);

        // Traffic to the host behind the gateway goes through the tunnel (the client has no
        // other route to 10.1.0.0/16: in the direct layout none, in the routed one the
        // internet router has none).
        topo.client
            .exec_ok([
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                &lab::VNET_HOST.to_string(),
            ])
            .unwrap();
        let after = cl.list_sas().unwrap();
        let child = &after[0].children[0];
        assert!(child.packets_out >= 2 && child.packets_in >= 2, "{child:?}");

        let algorithms = format!("{} | {}", c.ike_algorithms, c.children[0].algorithms);
        cl.terminate("ao").unwrap();
        assert!(cl.list_sas().unwrap().is_empty());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gw.list_sas().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "gateway kept its SA after the delete"
            );
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            topo.client
                .exec(["ping", "-c", "1", "-W", "1", "10.1.0.10"])
                .unwrap()
                .status
                .code()
                != Some(0),
            "10.1.0.10 still reachable after terminate"
        );

        let workdirs = [gw.workdir().to_owned(), cl.workdir().to_owned()];
        drop(gw);
        drop(cl);
        for pid in [gw_pid, cl_pid] {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "charon {pid} still runs"
            );
        }
        assert!(topo.gateway.pids().unwrap().is_empty());
        assert!(topo.client.pids().unwrap().is_empty());
        for d in workdirs {
            assert!(d.join("charon.log").exists());
        }
        algorithms
    }

    #[test]
    fn strongswan_pair_ecp384_rsa_direct() {
        require_root();
        let topo = Topology::direct("tkss").unwrap();
        let algs = strongswan_to_strongswan(
            topo,
            KeyKind::Rsa2048,
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16",
        );
        assert_eq!(
            algs,
            "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384 | ESP:AES_GCM_16-256"
        );
    }

    #[test]
    fn strongswan_pair_x25519_ecdsa_pkcs8_behind_nat() {
        require_root();
        let topo = Topology::routed("tksn", true).unwrap();
        let algs = strongswan_to_strongswan(
            topo,
            KeyKind::EcdsaP256Pkcs8,
            "aes128-sha256-x25519",
            "aes128-sha256",
        );
        assert_eq!(
            algs,
            "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519 | \
             ESP:AES_CBC-128/HMAC_SHA2_256_128"
        );
    }

    #[test]
    fn charon_start_rejects_run_and_stops_on_drop() {
        require_root();
        let ns = crate::netns::Netns::new(unique_name("tkch")).unwrap();
        assert!(Charon::start(&ns, Path::new("/run/testkit-x")).is_err());
        let tmp = tempfile::tempdir().unwrap();
        let charon = Charon::start(&ns, tmp.path()).unwrap();
        let pid = charon.pid();
        assert_eq!(ns.pids().unwrap(), vec![i32::try_from(pid).unwrap()]);
        assert!(charon.list_sas().unwrap().is_empty());
        let err = charon
            .wait_for_sa("none", Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(charon.log().contains("charon"), "{}", charon.log());
        drop(charon);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(ns.pids().unwrap().is_empty());
    }

    /// Which key encodings swanctl accepts from which directory (the reason for
    /// [`PRIVATE_KEY_DIR`]).
    #[test]
    fn key_formats_load_from_private_dir() {
        require_root();
        let ns = crate::netns::Netns::new(unique_name("tkkf")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        fs::create_dir_all(&keys).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&keys)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec-pkcs8.pem",
        ]);
        openssl(&[
            "pkey",
            "-in",
            "ec-pkcs8.pem",
            "-outform",
            "DER",
            "-out",
            "ec-pkcs8.der",
        ]);
        openssl(&["ec", "-in", "ec-pkcs8.pem", "-out", "ec-sec1.pem"]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa-pkcs8.pem",
        ]);
        openssl(&[
            "rsa",
            "-in",
            "rsa-pkcs8.pem",
            "-traditional",
            "-out",
            "rsa-pkcs1.pem",
        ]);
        assert!(
            fs::read_to_string(keys.join("ec-sec1.pem"))
                .unwrap()
                .contains("BEGIN EC PRIVATE KEY")
        );
        assert!(
            fs::read_to_string(keys.join("rsa-pkcs1.pem"))
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY")
        );

        let charon = Charon::start(&ns, &tmp.path().join("charon")).unwrap();
        let cases = [
            (PRIVATE_KEY_DIR, "ec-pkcs8.pem", "ECDSA"),
            (PRIVATE_KEY_DIR, "ec-pkcs8.der", "ECDSA"),
            (PRIVATE_KEY_DIR, "ec-sec1.pem", "ECDSA"),
            (PRIVATE_KEY_DIR, "rsa-pkcs8.pem", "RSA"),
            (PRIVATE_KEY_DIR, "rsa-pkcs1.pem", "RSA"),
            ("ecdsa", "ec-pkcs8.pem", "ECDSA"),
        ];
        for (dir, file, kind) in cases {
            for sub in ["private", "ecdsa"] {
                let d = charon.swanctl_dir().join(sub);
                fs::remove_dir_all(&d).unwrap();
                fs::create_dir_all(&d).unwrap();
            }
            fs::copy(keys.join(file), charon.swanctl_dir().join(dir).join(file)).unwrap();
            let out = charon.swanctl("--load-creds", &[]).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!("loaded {kind} key from")) && out.status.success(),
                "{dir}/{file}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
