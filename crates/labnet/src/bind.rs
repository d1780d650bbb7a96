//! A real BIND 9 (Debian's `bind9`) serving one zone that accepts RFC 2136 updates signed
//! with one TSIG key: the corporate DNS server of RegisterDNS tests and of `aovpn lab`.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// The name `tsig-keygen` gives the key in the files below.
pub const KEY_NAME: &str = "aovpn-update";

/// A fresh HMAC-SHA256 key named [`KEY_NAME`] in BIND's syntax, made by BIND's own
/// `tsig-keygen`.
pub fn tsig_keygen() -> io::Result<String> {
    let out = std::process::Command::new("tsig-keygen")
        .args(["-a", "hmac-sha256", KEY_NAME])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "tsig-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(io::Error::other)
}

/// What `named` runs with: its configuration and the zone file.
#[derive(Debug, Clone)]
pub struct BindConfig {
    /// Where named keeps its files (zone, journal, log, pid).
    pub dir: PathBuf,
    pub listen: IpAddr,
    /// The zone, e.g. `corp.example`.
    pub zone: String,
    /// (host label, address) records present from the start.
    pub records: Vec<(String, IpAddr)>,
    /// The key (BIND syntax, as [`tsig_keygen`] makes it) that may update any name in the zone.
    pub key: String,
}

impl BindConfig {
    /// named.conf.
    pub fn named_conf(&self) -> String {
        let d = self.dir.display();
        let listen = match self.listen {
            IpAddr::V4(a) => {
                format!("listen-on port 53 {{ {a}; }};\n    listen-on-v6 {{ none; }};")
            }
            IpAddr::V6(a) => {
                format!("listen-on {{ none; }};\n    listen-on-v6 port 53 {{ {a}; }};")
            }
        };
        format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    {listen}
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
logging {{
    channel file {{ file "{d}/named.log"; severity info; print-time yes; }};
    category default {{ file; }};
    category update {{ file; }};
    category update-security {{ file; }};
}};
{key}
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
}};
"#,
            key = self.key,
            zone = self.zone,
        )
    }

    /// The zone file.
    pub fn zone_file(&self) -> String {
        let z = &self.zone;
        let mut text = format!(
            "$TTL 300\n@ IN SOA ns.{z}. hostmaster.{z}. 1 3600 600 86400 300\n@ IN NS ns.{z}.\n"
        );
        let ns_type = if self.listen.is_ipv4() { "A" } else { "AAAA" };
        text.push_str(&format!("ns IN {ns_type} {}\n", self.listen));
        for (host, ip) in &self.records {
            let t = if ip.is_ipv4() { "A" } else { "AAAA" };
            text.push_str(&format!("{host} IN {t} {ip}\n"));
        }
        text
    }

    /// Writes both files; returns named's argument list (foreground, this configuration).
    pub fn write(&self) -> io::Result<Vec<String>> {
        fs::create_dir_all(&self.dir)?;
        let conf = self.dir.join("named.conf");
        fs::write(&conf, self.named_conf())?;
        fs::write(
            self.dir.join(format!("{}.zone", self.zone)),
            self.zone_file(),
        )?;
        // A journal from an earlier run would replay its updates.
        let _ = fs::remove_file(self.dir.join(format!("{}.zone.jnl", self.zone)));
        Ok(vec![
            "named".into(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
        ])
    }
}

/// named running in a namespace; stopped by pid when dropped.
#[derive(Debug)]
pub struct Bind {
    child: Child,
    config: BindConfig,
}

impl Bind {
    /// Starts named in `ns` and waits until it answers for the zone.
    pub fn start(ns: &Netns, config: BindConfig) -> io::Result<Bind> {
        let argv = config.write()?;
        let child = ns
            .command(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let bind = Bind { child, config };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if !bind.dig(ns, &bind.config.zone, "SOA").is_empty() {
                return Ok(bind);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "named did not answer for {} on {}:\n{}",
                    bind.config.zone,
                    bind.config.listen,
                    bind.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `dig +short @server NAME TYPE` from `ns`: the answers, one per line (empty if none).
    pub fn dig(&self, ns: &Netns, name: &str, rr_type: &str) -> String {
        ns.exec([
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            &format!("@{}", self.config.listen),
            name,
            rr_type,
        ])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
    }

    /// An update with `nsupdate` signed with the zone's key (`commands` without `send`);
    /// a SERVFAIL or a refused connection (named still settling after its start: it answered
    /// a query but had not opened every listener yet, seen once in a full run) is retried for
    /// a few seconds.
    pub fn nsupdate(&self, ns: &Netns, commands: &str) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.nsupdate_once(ns, commands) {
                Err(e)
                    if (e.to_string().contains("SERVFAIL")
                        || e.to_string().contains("connection refused"))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "{e}\n--- named.log\n{}",
                        self.log()
                    )));
                }
                Ok(()) => return Ok(()),
            }
        }
    }

    fn nsupdate_once(&self, ns: &Netns, commands: &str) -> io::Result<()> {
        let keyfile = self.config.dir.join("nsupdate.key");
        fs::write(&keyfile, &self.config.key)?;
        let script = format!(
            "server {}\nzone {}\n{commands}\nsend\n",
            self.config.listen, self.config.zone
        );
        let script_file = self.config.dir.join("nsupdate.txt");
        fs::write(&script_file, script)?;
        let out = ns.exec([
            "nsupdate".to_owned(),
            "-k".to_owned(),
            keyfile.display().to_string(),
            script_file.display().to_string(),
        ])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "nsupdate: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// named's log (updates and refusals are logged).
    pub fn log(&self) -> String {
        fs::read_to_string(self.config.dir.join("named.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        crate::terminate(&mut self.child, Duration::from_secs(5));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_names_its_server_and_records() {
        let c = BindConfig {
            dir: "/tmp/x".into(),
            listen: "10.1.0.53".parse().unwrap(),
            zone: "corp.example".into(),
            records: vec![("mgmt".into(), "10.1.0.10".parse().unwrap())],
            key: "key \"aovpn-update\" { algorithm hmac-sha256; secret \"AAAA\"; };".into(),
        };
        let zone = c.zone_file();
        assert!(
            zone.contains("ns IN A 10.1.0.53\nmgmt IN A 10.1.0.10\n"),
            "{zone}"
        );
        let conf = c.named_conf();
        assert!(conf.contains("listen-on port 53 { 10.1.0.53; };"), "{conf}");
        assert!(conf.contains("grant aovpn-update zonesub ANY;"), "{conf}");
        assert!(conf.contains("file \"/tmp/x/corp.example.zone\""), "{conf}");
    }
}
