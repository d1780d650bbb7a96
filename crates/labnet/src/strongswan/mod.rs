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
pub(super) const TOOL_PLUGINS: &str = "pem pkcs1 pkcs8 x509 openssl random nonce gmp sha1 sha2";

/// The subdirectories swanctl expects (it warns about each missing one).
const SWANCTL_SUBDIRS: &[&str] = &[
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// How long charon gets to open its vici socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long charon gets to exit after SIGTERM (it usually needs 1.5-2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn command_error(what: &str, out: &Output) -> io::Error {
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

    /// How many IKE SAs charon has (`swanctl --stats`: "IKE_SAs: N total, M half-open"),
    /// cheap where listing ten thousand SAs is not.
    pub fn ike_sa_count(&self) -> io::Result<usize> {
        let text = self.swanctl_ok("--stats", &[])?;
        parse_ike_sa_total(&text).ok_or_else(|| {
            io::Error::other(format!("swanctl --stats: no IKE_SAs total in {text:?}"))
        })
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

/// N from swanctl --stats' "IKE_SAs: N total, M half-open" line.
fn parse_ike_sa_total(stats: &str) -> Option<usize> {
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("IKE_SAs:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
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

mod list_sas;
mod pki;
mod swanctl_conf;

use list_sas::parse_list_sas;
pub use list_sas::{ChildSaInfo, SaInfo, SwanctlOutputError};
pub use pki::{KeyKind, TestPki};
pub use swanctl_conf::{ChildConfig, Connection, PRIVATE_KEY_DIR, SwanctlConf};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;
