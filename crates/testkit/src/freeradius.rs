//! A real FreeRADIUS 3 (Debian's `freeradius`) in a namespace: Debian's configuration copied
//! to the test's directory with one site of our own (the `files` module, then EAP), one client
//! (the gateway) with its secret, EAP-TLS with the lab's CA and a server certificate, and
//! users refused or given a Class. Started in debug mode (`-X`, its log in the directory),
//! stopped by pid.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// Debian's configuration, copied for each server.
const DEBIAN_RADDB: &str = "/etc/freeradius/3.0";

/// What the server runs with.
#[derive(Debug, Clone)]
pub struct FreeRadiusConfig {
    pub dir: PathBuf,
    pub listen: IpAddr,
    /// The gateway's address as the server sees it, and the secret they share.
    pub client: IpAddr,
    pub secret: String,
    /// The CA client certificates must chain to, and the server's certificate and key (PEM).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// User-Names refused whatever their certificate.
    pub rejected: Vec<String>,
    /// (User-Name, Class) given in the Access-Accept.
    pub classes: Vec<(String, String)>,
}

impl FreeRadiusConfig {
    fn raddb(&self) -> PathBuf {
        self.dir.join("raddb")
    }

    fn site(&self) -> String {
        format!(
            r#"server default {{
    listen {{
        type = auth
        ipaddr = {listen}
        port = 1812
    }}
    authorize {{
        files
        eap {{
            ok = return
        }}
    }}
    authenticate {{
        eap
    }}
    post-auth {{
        Post-Auth-Type REJECT {{
            eap
            update reply {{
                Message-Authenticator := 0x00
            }}
        }}
    }}
}}
"#,
            listen = self.listen
        )
    }

    fn eap_module(&self) -> String {
        format!(
            r#"eap {{
    default_eap_type = tls
    timer_expire = 60
    ignore_unknown_eap_types = no
    max_sessions = 64
    tls-config tls-common {{
        private_key_file = {key}
        certificate_file = {cert}
        ca_file = {ca}
        random_file = /dev/urandom
        fragment_size = 1000
        cipher_list = "DEFAULT"
        tls_min_version = "1.2"
        tls_max_version = "1.2"
        ecdh_curve = "prime256v1"
        # The identity a client claims must be its certificate's: the gateway takes it.
        check_cert_cn = %{{User-Name}}
        cache {{
            enable = no
        }}
        verify {{
        }}
    }}
    tls {{
        tls = tls-common
    }}
}}
"#,
            key = self.server_key.display(),
            cert = self.server_cert.display(),
            ca = self.ca.display()
        )
    }

    fn users(&self) -> String {
        let mut out = String::new();
        for user in &self.rejected {
            let _ = writeln!(
                out,
                "\"{user}\" Auth-Type := Reject\n\tReply-Message = \"refused by the test\"\n"
            );
        }
        for (user, class) in &self.classes {
            let _ = writeln!(out, "\"{user}\"\n\tClass := \"{class}\"\n");
        }
        out
    }

    /// Copies Debian's configuration and writes ours over it.
    fn write(&self) -> io::Result<()> {
        let raddb = self.raddb();
        let _ = fs::remove_dir_all(&raddb);
        fs::create_dir_all(&self.dir)?;
        let status = Command::new("cp")
            .args(["-a", DEBIAN_RADDB])
            .arg(&raddb)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("cp -a {DEBIAN_RADDB} failed")));
        }
        let conf = raddb.join("radiusd.conf");
        let text = fs::read_to_string(&conf)?
            .replace(
                "logdir = /var/log/freeradius",
                &format!("logdir = {}", self.dir.display()),
            )
            .replace(
                "run_dir = ${localstatedir}/run/${name}",
                &format!("run_dir = {}", self.dir.join("run").display()),
            )
            // Rejects at once: the tests use short RADIUS timeouts.
            .replace("reject_delay = 1", "reject_delay = 0")
            .replace("\tuser = freerad", "\t#user = freerad")
            .replace("\tgroup = freerad", "\t#group = freerad");
        fs::write(&conf, text)?;
        fs::create_dir_all(self.dir.join("run"))?;
        fs::write(
            raddb.join("clients.conf"),
            format!(
                "client gateway {{\n    ipaddr = {}\n    secret = {}\n    require_message_authenticator = yes\n}}\n",
                self.client, self.secret
            ),
        )?;
        for entry in fs::read_dir(raddb.join("sites-enabled"))? {
            fs::remove_file(entry?.path())?;
        }
        fs::write(raddb.join("sites-enabled").join("default"), self.site())?;
        let eap = raddb.join("mods-enabled").join("eap");
        fs::remove_file(&eap)?;
        fs::write(&eap, self.eap_module())?;
        fs::write(
            raddb.join("mods-config").join("files").join("authorize"),
            self.users(),
        )?;
        Ok(())
    }
}

/// A running `freeradius -X`; dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct FreeRadius {
    child: Child,
    config: FreeRadiusConfig,
}

impl FreeRadius {
    /// Writes the configuration and starts the server in `ns`; returns once it is ready to
    /// process requests (or with its log when it is not within 20 s).
    pub fn start(ns: &Netns, config: FreeRadiusConfig) -> io::Result<FreeRadius> {
        config.write()?;
        let log = fs::File::create(config.dir.join("freeradius.log"))?;
        let child = ns
            .command([
                "freeradius".to_owned(),
                "-X".to_owned(),
                "-d".to_owned(),
                config.raddb().display().to_string(),
            ])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut server = FreeRadius { child, config };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if server.log().contains("Ready to process requests") {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(io::Error::other(format!(
                    "freeradius exited ({status}):\n{}",
                    server.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "freeradius not ready:\n{}",
                    server.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the server printed (`-X`: every request and its answer).
    pub fn log(&self) -> String {
        fs::read_to_string(self.config.dir.join("freeradius.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Stops it now (SIGTERM, then SIGKILL), as a server that goes down.
    pub fn stop(&mut self) {
        crate::terminate(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.stop();
    }
}
