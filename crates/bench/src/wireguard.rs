//! Userspace WireGuard between the client and the gateway of a bench lab: the tunnel many users
//! would pick instead of IPsec. The kernel here has no wireguard module, so the peers are the
//! userspace implementations: Debian's wireguard-go and boringtun-cli from crates.io (which
//! `scripts/install-bench-peers.sh` installs). Each daemon runs in the foreground as a child we
//! stop by pid; `wg` configures it over its UAPI socket.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::{Netns, Topology, lab};

use super::common::{Process, write_private};

/// A userspace WireGuard implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireGuard {
    /// Debian's wireguard-go.
    Go,
    /// boringtun-cli from crates.io.
    BoringTun,
}

const PORT: u16 = 51820;
const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(172, 16, 202, 2);
const GATEWAY_ADDR: Ipv4Addr = Ipv4Addr::new(172, 16, 202, 1);
/// WireGuard's own default MTU for IPv4 outer packets on a 1500-byte link.
const MTU: &str = "1420";

impl WireGuard {
    pub fn label(self) -> &'static str {
        match self {
            WireGuard::Go => "wireguard-go (userspace)",
            WireGuard::BoringTun => "boringtun (userspace)",
        }
    }

    fn program(self) -> &'static str {
        match self {
            WireGuard::Go => "wireguard-go",
            WireGuard::BoringTun => "boringtun-cli",
        }
    }

    /// The daemon's executable, or why this peer cannot be measured.
    pub fn find(self) -> std::result::Result<PathBuf, String> {
        let wg = find_program("wg");
        match (find_program(self.program()), wg) {
            (Some(p), Some(_)) => Ok(p),
            (None, _) => Err(format!(
                "{} not installed (scripts/install-bench-peers.sh)",
                self.program()
            )),
            (_, None) => Err("wg (wireguard-tools) not installed".to_owned()),
        }
    }

    /// The daemon and its version, as its package or itself says (`boringtun 0.7.1`).
    fn version(self, program: &Path) -> String {
        let out = match self {
            WireGuard::Go => Command::new("dpkg-query")
                .args(["-W", "-f=wireguard-go ${Version}", "wireguard-go"])
                .output(),
            WireGuard::BoringTun => Command::new(program).arg("--version").output(),
        };
        out.ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("{} ?", self.program()))
    }

    fn argv(self, program: &Path, interface: &str) -> Vec<String> {
        let mut argv = vec![program.display().to_string()];
        match self {
            WireGuard::Go => argv.push("-f".to_owned()),
            WireGuard::BoringTun => argv.extend(
                [
                    "--foreground",
                    "--disable-drop-privileges",
                    "--threads",
                    "2",
                ]
                .map(str::to_owned),
            ),
        }
        argv.push(interface.to_owned());
        argv
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A WireGuard tunnel up between the topology's client and gateway: the client routes
/// 10.1.0.0/16 through it. Daemons stop (by pid) on drop.
#[derive(Debug)]
pub struct Tunnel {
    pub client: Process,
    pub gateway: Process,
    /// `WireGuard (Noise IK, ChaCha20-Poly1305), wireguard-go 0.0.20220316`.
    pub negotiated: String,
}

struct Keys {
    private: PathBuf,
    public: String,
}

fn keypair(dir: &Path, name: &str) -> Result<Keys> {
    let out = Command::new("wg")
        .arg("genkey")
        .output()
        .context("wg genkey")?;
    if !out.status.success() {
        bail!("wg genkey: {}", String::from_utf8_lossy(&out.stderr));
    }
    let private = dir.join(format!("{name}.key"));
    write_private(&private, &out.stdout)?;
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("wg pubkey")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("wg pubkey: no stdin"))?
        .write_all(&out.stdout)?;
    let public = child.wait_with_output()?;
    if !public.status.success() {
        bail!("wg pubkey failed");
    }
    Ok(Keys {
        private,
        public: String::from_utf8_lossy(&public.stdout).trim().to_owned(),
    })
}

/// Starts the daemon for `interface` in `ns` and waits for its interface.
fn start(
    kind: WireGuard,
    program: &Path,
    ns: &Netns,
    interface: &str,
    dir: &Path,
) -> Result<Process> {
    // A socket left by a daemon that was killed would pass for this one's.
    let socket = Path::new("/var/run/wireguard").join(format!("{interface}.sock"));
    let _ = std::fs::remove_file(&socket);
    let mut daemon = Process::spawn_in(
        ns,
        kind.program(),
        &kind.argv(program, interface),
        &dir.join(format!("{interface}.log")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        daemon
            .check_alive()
            .with_context(|| format!("see {}", dir.join(format!("{interface}.log")).display()))?;
        let link = ns.exec(["ip", "link", "show", interface])?;
        if link.status.success() && socket.exists() {
            return Ok(daemon);
        }
        if Instant::now() > deadline {
            bail!("{} made no {interface} within 10 s", kind.program());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings a tunnel up between `topo`'s client and gateway; interface names start with
/// `tag` (the UAPI sockets live in one /var/run/wireguard for every namespace).
pub fn tunnel(kind: WireGuard, topo: &Topology, dir: &Path, tag: &str) -> Result<Tunnel> {
    let program = kind.find().map_err(|e| anyhow!(e))?;
    std::fs::create_dir_all(dir)?;
    let (client_if, gateway_if) = (format!("{tag}c"), format!("{tag}g"));
    let client_keys = keypair(dir, "client")?;
    let gateway_keys = keypair(dir, "gateway")?;
    let gateway = start(kind, &program, &topo.gateway, &gateway_if, dir)?;
    let client = start(kind, &program, &topo.client, &client_if, dir)?;
    let port = PORT.to_string();
    topo.gateway
        .exec_ok([
            "wg",
            "set",
            &gateway_if,
            "listen-port",
            &port,
            "private-key",
            &gateway_keys.private.display().to_string(),
            "peer",
            &client_keys.public,
            "allowed-ips",
            &format!("{CLIENT_ADDR}/32"),
        ])
        .context("wg set (gateway)")?;
    topo.client
        .exec_ok([
            "wg",
            "set",
            &client_if,
            "private-key",
            &client_keys.private.display().to_string(),
            "peer",
            &gateway_keys.public,
            "allowed-ips",
            &format!("{GATEWAY_ADDR}/32,{}", lab::VNET_TS),
            "endpoint",
            &format!("{}:{port}", topo.gateway_wan()),
        ])
        .context("wg set (client)")?;
    for (ns, interface, addr, route) in [
        (
            &topo.gateway,
            &gateway_if,
            GATEWAY_ADDR,
            format!("{CLIENT_ADDR}/32"),
        ),
        (
            &topo.client,
            &client_if,
            CLIENT_ADDR,
            lab::VNET_TS.to_owned(),
        ),
    ] {
        let ip = |args: &[&str]| ns.exec_ok(std::iter::once("ip").chain(args.iter().copied()));
        ip(&["addr", "add", &format!("{addr}/32"), "dev", interface])?;
        ip(&["link", "set", interface, "mtu", MTU, "up"])?;
        ip(&[
            "route",
            "add",
            &route,
            "dev",
            interface,
            "src",
            &addr.to_string(),
        ])
        .with_context(|| format!("route {route} via {interface}"))?;
    }
    Ok(Tunnel {
        negotiated: format!(
            "WireGuard (Noise IK, ChaCha20-Poly1305), {}, MTU {MTU}",
            kind.version(&program)
        ),
        client,
        gateway,
    })
}
