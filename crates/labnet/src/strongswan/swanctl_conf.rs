//! `swanctl.conf` written from Rust: connections, children, pools and the credential files
//! beside it.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
