//! Throw-away network namespaces for tests (synchronous, std + nix only).
//!
//! A [`Netns`] is created with `ip netns add` and deleted again on drop, after every process
//! still running inside it has been stopped (TERM, then KILL; only pids whose network
//! namespace is this one). [`Netns::run`] executes Rust code on a thread that has entered the
//! namespace, so sockets, TUN devices, netlink handles and even a current-thread tokio runtime
//! created inside the closure live in it. [`Topology`] builds the standard lab used by the
//! end-to-end tests.
//!
//! ```no_run
//! use labnet::netns::{Topology, lab};
//! labnet::require_root();
//! let topo = Topology::routed("mytest", true)?; // client -- NAT router -- gateway -- vnet
//! topo.client.exec_ok(["ping", "-c", "1", &topo.gateway_wan().to_string()])?;
//! let sock = topo.gateway.run(|| std::net::UdpSocket::bind((topo.gateway_wan(), 4500)))?;
//! assert_eq!(topo.client_as_seen_by_gateway(), lab::INTERNET_GATEWAY_SIDE);
//! # drop(sock);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Where `ip netns` keeps the namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// How long a process in a dropped namespace gets to exit after SIGTERM (charon needs ~2 s).
const TERM_GRACE: Duration = Duration::from_secs(5);

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine for the life of this process: `prefix` + pid + counter (hex).
///
/// The result is at most [`MAX_IFNAME_LEN`] characters, so it can also name an interface; the
/// prefix is shortened if needed (the pid/counter suffix alone keeps the name unique).
pub fn unique_name(prefix: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{:x}-{:x}", std::process::id(), n);
    let room = MAX_IFNAME_LEN.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    format!("{prefix}{suffix}")
}

/// Runs a command and turns a non-zero exit into an error that carries its stderr.
fn run_checked(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{:?} failed ({}): {}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// A network namespace owned by a test; dropped = processes stopped and namespace deleted.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` with loopback up and rp_filter off (all/default), since
    /// strict reverse-path filtering drops decrypted packets arriving on a TUN device.
    pub fn new(name: impl Into<String>) -> io::Result<Netns> {
        let name = name.into();
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, Drop deletes the namespace if a later step fails.
        let ns = Netns { name };
        ns.ip(["link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        ns.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        Ok(ns)
    }

    /// The namespace's name (as used by `ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace handle, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// `ip -n NAME args…`, failing with stderr on a non-zero exit.
    pub fn ip<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets a sysctl (dotted key, e.g. `net.ipv4.ip_forward`) inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        // /proc/sys/net resolves against the opening thread's network namespace.
        self.try_run(|| std::fs::write(&path, value))?.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("sysctl {key}={value} in {}: {e}", self.name),
            )
        })
    }

    /// A `Command` for `ip netns exec NAME argv…` (stdin null), to adjust before running.
    pub fn command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside the namespace and collects its output (any exit status).
    pub fn exec<I, S>(&self, argv: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(argv).output()
    }

    /// Like [`Netns::exec`], but a non-zero exit is an error carrying stderr.
    pub fn exec_ok<I, S>(&self, argv: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(&mut self.command(argv))
    }

    /// Starts `argv` inside the namespace (stdin null, stdout/stderr inherited). `ip netns exec`
    /// execs the program, so the child's pid is the program's own pid.
    pub fn spawn<I, S>(&self, argv: I) -> io::Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(argv).spawn()
    }

    /// Runs `f` on a new thread that has entered this namespace (`setns(CLONE_NEWNET)`) and
    /// returns its result. A panic in `f` is propagated.
    ///
    /// # Panics
    /// If the namespace cannot be entered (use [`Netns::try_run`] to get that as an error).
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        match self.try_run(f) {
            Ok(r) => r,
            Err(e) => panic!("cannot enter network namespace {}: {e}", self.name),
        }
    }

    /// Like [`Netns::run`], but failing to enter the namespace is an error.
    pub fn try_run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let handle = File::open(self.path())?;
        thread::scope(|scope| {
            let thread = thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(scope, move || -> io::Result<R> {
                    nix::sched::setns(&handle, CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)?;
                    drop(handle);
                    Ok(f())
                })?;
            match thread.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Turns on IPv4 forwarding in the namespace.
    pub fn enable_forwarding(&self) -> io::Result<()> {
        self.sysctl("net.ipv4.ip_forward", "1")
    }

    /// `ip route add DEST via VIA` (DEST may be `default`).
    pub fn add_route(&self, dest: &str, via: &str) -> io::Result<()> {
        self.ip(["route", "add", dest, "via", via]).map(drop)
    }

    /// Pids of the processes whose network namespace is this one (like `ip netns pids`),
    /// never including this test process itself.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let ns = std::fs::metadata(self.path())?;
        let own = std::process::id();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            // Exited processes (and zombies) have no ns link any more: they are skipped.
            let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) else {
                continue;
            };
            if meta.dev() == ns.dev()
                && meta.ino() == ns.ino()
                && let Ok(pid) = i32::try_from(pid)
            {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// Stops every process inside the namespace: SIGTERM, up to [`TERM_GRACE`] to exit, then
    /// SIGKILL. Signals go only to pids found in this namespace.
    pub fn kill_all(&self) -> io::Result<()> {
        let pids = self.pids()?;
        if pids.is_empty() {
            return Ok(());
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if self.pids()?.is_empty() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        for pid in self.pids()? {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.pids()?.is_empty() {
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "processes survive SIGKILL in netns {}",
                    self.name
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Netns {
    /// Takes over an existing namespace (created earlier, e.g. by another command); dropping
    /// the result deletes it like one made by [`Netns::new`].
    pub fn attach(name: impl Into<String>) -> io::Result<Netns> {
        let name = name.into();
        let path = PathBuf::from(NETNS_DIR).join(&name);
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network namespace {name}"),
            ));
        }
        Ok(Netns { name })
    }

    /// Keeps the namespace after this handle is gone (a lab that outlives the command that
    /// built it); returns its name. [`Netns::attach`] finds it again.
    pub fn persist(self) -> String {
        let this = std::mem::ManuallyDrop::new(self);
        this.name.clone()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.kill_all() {
            eprintln!("testkit: stopping processes in netns {}: {e}", self.name);
        }
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("testkit: {e}");
        }
    }
}

/// Creates a veth pair `a_if` (in `a`, address `a_cidr`) <-> `b_if` (in `b`, `b_cidr`), both up.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_cidr: &str,
    b: &Netns,
    b_if: &str,
    b_cidr: &str,
) -> io::Result<()> {
    a.ip([
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(["addr", "add", a_cidr, "dev", a_if])?;
    b.ip(["addr", "add", b_cidr, "dev", b_if])?;
    a.ip(["link", "set", a_if, "up"])?;
    b.ip(["link", "set", b_if, "up"])?;
    Ok(())
}

/// Addresses and interface names of the standard lab.
pub mod lab {
    use std::net::Ipv4Addr;

    /// Client's "internet" address (both layouts).
    pub const CLIENT_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// Internet router on the client link (routed layout); the gateway in the direct layout.
    pub const CLIENT_LINK_PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// Gateway's public address in the routed layout.
    pub const GATEWAY_WAN_ROUTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    /// Internet router on the gateway link (routed layout); the NAT's public address.
    pub const INTERNET_GATEWAY_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
    /// Gateway's address on the protected network.
    pub const GATEWAY_LAN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    /// The host behind the gateway (in the vnet namespace).
    pub const VNET_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
    /// Traffic selector for the protected network.
    pub const VNET_TS: &str = "10.1.0.0/16";
    /// Virtual-IP pool for clients.
    pub const CLIENT_POOL: &str = "172.16.201.0/24";

    /// Client's WAN interface.
    pub const CLIENT_IF: &str = "cl-wan";
    /// Gateway's WAN interface.
    pub const GATEWAY_WAN_IF: &str = "gw-wan";
    /// Gateway's LAN interface.
    pub const GATEWAY_LAN_IF: &str = "gw-lan";
    /// Host interface in the vnet namespace.
    pub const VNET_IF: &str = "vn-lan";
    /// Internet router's interface toward the client.
    pub const INTERNET_CLIENT_IF: &str = "in-cl";
    /// Internet router's interface toward the gateway (NAT egress).
    pub const INTERNET_GATEWAY_IF: &str = "in-gw";
}

/// Which lab layout a [`Topology`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// client 198.51.100.2 and gateway 198.51.100.1 on one link (like the shared recipe).
    Direct,
    /// client 198.51.100.2 -- internet router -- gateway 203.0.113.1; with `nat`, the router
    /// masquerades client traffic toward the gateway behind 203.0.113.254.
    Routed {
        /// Masquerade NAT (nftables) on the router's gateway-side interface.
        nat: bool,
    },
}

/// Builder for a [`Topology`]; see [`Topology::builder`].
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    prefix: String,
    layout: Layout,
    exact_names: bool,
}

impl TopologyBuilder {
    /// Use the prefix as it is instead of making it unique: for a long-lived lab whose
    /// namespaces other commands find again by name (`aolab-cl`, `aolab-gw`, ...).
    pub fn exact_names(mut self) -> Self {
        self.exact_names = true;
        self
    }

    /// client and gateway on one link.
    pub fn direct(mut self) -> Self {
        self.layout = Layout::Direct;
        self
    }

    /// client -- internet router -- gateway, with or without masquerade NAT.
    pub fn routed(mut self, nat: bool) -> Self {
        self.layout = Layout::Routed { nat };
        self
    }

    /// Creates the namespaces, links, addresses, routes (and NAT).
    pub fn build(self) -> io::Result<Topology> {
        use lab::*;
        let base = if self.exact_names {
            self.prefix.clone()
        } else {
            unique_name(&self.prefix)
        };
        let client = Netns::new(format!("{base}-cl"))?;
        let gateway = Netns::new(format!("{base}-gw"))?;
        let vnet = Netns::new(format!("{base}-vn"))?;
        let internet = match self.layout {
            Layout::Direct => None,
            Layout::Routed { .. } => Some(Netns::new(format!("{base}-in"))?),
        };
        let topo = Topology {
            client,
            internet,
            gateway,
            vnet,
            layout: self.layout,
        };

        match (&topo.internet, self.layout) {
            (Some(inet), Layout::Routed { nat }) => {
                veth(
                    &topo.client,
                    CLIENT_IF,
                    &format!("{CLIENT_WAN}/24"),
                    inet,
                    INTERNET_CLIENT_IF,
                    &format!("{CLIENT_LINK_PEER}/24"),
                )?;
                veth(
                    &topo.gateway,
                    GATEWAY_WAN_IF,
                    &format!("{GATEWAY_WAN_ROUTED}/24"),
                    inet,
                    INTERNET_GATEWAY_IF,
                    &format!("{INTERNET_GATEWAY_SIDE}/24"),
                )?;
                inet.enable_forwarding()?;
                topo.client
                    .add_route("default", &CLIENT_LINK_PEER.to_string())?;
                topo.gateway
                    .add_route("default", &INTERNET_GATEWAY_SIDE.to_string())?;
                if nat {
                    let rules = format!(
                        "add table ip aonat; \
                         add chain ip aonat post {{ type nat hook postrouting priority 100 ; }}; \
                         add rule ip aonat post oifname \"{INTERNET_GATEWAY_IF}\" masquerade"
                    );
                    inet.exec_ok(["nft", &rules])?;
                }
            }
            _ => {
                veth(
                    &topo.client,
                    CLIENT_IF,
                    &format!("{CLIENT_WAN}/24"),
                    &topo.gateway,
                    GATEWAY_WAN_IF,
                    &format!("{CLIENT_LINK_PEER}/24"),
                )?;
            }
        }
        veth(
            &topo.gateway,
            GATEWAY_LAN_IF,
            &format!("{GATEWAY_LAN}/24"),
            &topo.vnet,
            VNET_IF,
            &format!("{VNET_HOST}/24"),
        )?;
        topo.gateway.enable_forwarding()?;
        // The host's replies to the client pool go back through the gateway.
        topo.vnet.add_route("default", &GATEWAY_LAN.to_string())?;
        Ok(topo)
    }
}

/// The standard end-to-end lab:
///
/// ```text
/// routed: [client] 198.51.100.2 -- .1 [internet, opt. NAT] 203.0.113.254 -- 203.0.113.1 [gateway]
/// direct: [client] 198.51.100.2 -- 198.51.100.1 [gateway]
/// both:   [gateway] 10.1.0.1/24 -- 10.1.0.10/24 [vnet] (default via 10.1.0.1)
/// ```
///
/// The gateway forwards; client and gateway have default routes via the router (routed).
#[derive(Debug)]
pub struct Topology {
    /// Client namespace (interface [`lab::CLIENT_IF`]).
    pub client: Netns,
    /// Router namespace; `None` in the direct layout.
    pub internet: Option<Netns>,
    /// Gateway namespace ([`lab::GATEWAY_WAN_IF`], [`lab::GATEWAY_LAN_IF`]).
    pub gateway: Netns,
    /// Protected network with the host [`lab::VNET_HOST`].
    pub vnet: Netns,
    layout: Layout,
}

impl Topology {
    /// Keeps every namespace of the topology after this value is gone; returns their names.
    pub fn persist(self) -> Vec<String> {
        let mut names = vec![self.client.persist()];
        names.extend(self.internet.map(Netns::persist));
        names.push(self.gateway.persist());
        names.push(self.vnet.persist());
        names
    }

    /// A builder (default layout: routed without NAT); namespace names start with `prefix`.
    pub fn builder(prefix: &str) -> TopologyBuilder {
        TopologyBuilder {
            prefix: prefix.to_owned(),
            layout: Layout::Routed { nat: false },
            exact_names: false,
        }
    }

    /// The 2-namespace layout plus vnet (client and gateway on one link).
    pub fn direct(prefix: &str) -> io::Result<Topology> {
        Topology::builder(prefix).direct().build()
    }

    /// The routed layout, optionally with masquerade NAT in the router.
    pub fn routed(prefix: &str, nat: bool) -> io::Result<Topology> {
        Topology::builder(prefix).routed(nat).build()
    }

    /// The layout this topology was built with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Client's WAN address (always 198.51.100.2).
    pub fn client_wan(&self) -> Ipv4Addr {
        lab::CLIENT_WAN
    }

    /// The address the client connects to: 203.0.113.1 (routed) or 198.51.100.1 (direct).
    pub fn gateway_wan(&self) -> Ipv4Addr {
        match self.layout {
            Layout::Direct => lab::CLIENT_LINK_PEER,
            Layout::Routed { .. } => lab::GATEWAY_WAN_ROUTED,
        }
    }

    /// The source address the gateway sees for client traffic (the NAT's address with NAT).
    pub fn client_as_seen_by_gateway(&self) -> Ipv4Addr {
        match self.layout {
            Layout::Routed { nat: true } => lab::INTERNET_GATEWAY_SIDE,
            _ => lab::CLIENT_WAN,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;
