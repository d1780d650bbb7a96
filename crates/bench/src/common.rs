//! What the benchmarks share: a scratch directory, an in-process PKI, daemons started by pid,
//! /proc readings (CPU time, RSS), and the two responders (`aovpn gateway`, strongSwan charon)
//! configured alike.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::{Netns, Topology, lab};
use labnet::strongswan::{Charon, ChildConfig, Connection, SwanctlConf};
use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

/// The gateway's name (its certificate's dNSName and its IKE identity), for both responders.
pub const GATEWAY_NAME: &str = "vpn.bench.example";
/// The only ESP cipher of every benchmark: AES-256-GCM with a 16-byte ICV.
pub const ESP_PROPOSAL: &str = "aes256gcm16";
/// The two IKE suites measured; both responders accept both.
pub const IKE_SUITES: [&str; 2] = [
    "aes256gcm16-prfsha384-ecp384",
    "aes256gcm16-prfsha256-x25519",
];
/// Port both responders listen on for IKE_SA_INIT.
pub const IKE_PORT: u16 = 500;

static SCRATCH_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory under /tmp for configs, certificates and logs (not /run: charon's private
/// tmpfs hides it); removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Result<Scratch> {
        Scratch::new_in(&std::env::temp_dir(), tag)
    }

    /// A scratch directory under `base` (e.g. /dev/shm for a tmpfs).
    pub fn new_in(base: &Path, tag: &str) -> Result<Scratch> {
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("aovpn-bench-{tag}-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("AOVPN_BENCH_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!("aovpn bench: kept {}", self.path.display());
        }
    }
}

/// A CA, the gateway's certificate (ECDSA P-256) and client certificates, issued in-process
/// and written as PEM where daemons need files.
pub struct BenchPki {
    ca: CertificateAuthority,
    /// The key type of the gateway's and the clients' certificates.
    pub keys: KeyAlgorithm,
    /// The CA certificate.
    pub ca_file: PathBuf,
    /// The gateway's certificate (leaf only).
    pub gateway_cert: PathBuf,
    /// The gateway's key (PKCS#8 PEM).
    pub gateway_key: PathBuf,
    dir: PathBuf,
}

fn validity() -> Validity {
    // Backdated an hour so that clock skew between the namespaces' processes cannot matter.
    Validity::days_from(SystemTime::now() - Duration::from_secs(3600), 30)
}

pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

impl BenchPki {
    pub fn issue(dir: &Path) -> Result<BenchPki> {
        BenchPki::issue_with(dir, KeyAlgorithm::P256)
    }

    /// A CA, the gateway's certificate and the clients' to come, all with `keys`.
    pub fn issue_with(dir: &Path, keys: KeyAlgorithm) -> Result<BenchPki> {
        fs::create_dir_all(dir)?;
        let ca = CertificateAuthority::new_root("aovpn bench Root CA", keys, validity())?;
        let gw = ca.issue(CertKind::Gateway, GATEWAY_NAME, keys, validity())?;
        let pki = BenchPki {
            keys,
            ca_file: dir.join("ca.crt"),
            gateway_cert: dir.join("gateway.crt"),
            gateway_key: dir.join("gateway.key"),
            dir: dir.to_owned(),
            ca,
        };
        fs::write(&pki.ca_file, pki.ca.cert().to_pem())?;
        let leaf = gw
            .chain
            .first()
            .ok_or_else(|| anyhow!("issued gateway chain is empty"))?;
        fs::write(&pki.gateway_cert, leaf.to_pem())?;
        write_private(&pki.gateway_key, gw.key.to_pem().as_bytes())?;
        Ok(pki)
    }

    /// A machine certificate whose identity is the FQDN `name`.
    pub fn client(&self, name: &str) -> Result<pki::Identity> {
        Ok(self
            .ca
            .issue(CertKind::Machine, name, self.keys, validity())?)
    }

    /// A machine certificate for `name` written as `name.crt` / `name.key`.
    pub fn client_files(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        let id = self.client(name)?;
        let crt = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        let leaf = id
            .chain
            .first()
            .ok_or_else(|| anyhow!("issued chain is empty"))?;
        fs::write(&crt, leaf.to_pem())?;
        write_private(&key, id.key.to_pem().as_bytes())?;
        Ok((crt, key))
    }

    /// A trust store holding the bench CA.
    pub fn trust(&self) -> Result<pki::TrustStore> {
        Ok(pki::TrustStore::with_roots([self.ca.cert().clone()])?)
    }
}

/// The log level of every aovpn process a bench starts, whatever the caller's AOVPN_LOG:
/// the figures must not depend on the shell they were started from.
pub const AOVPN_LOG_LEVEL: &str = "info";

/// How both responders log in every bench, printed in the report's header.
pub const LOG_LEVELS: &str = "aovpn AOVPN_LOG=info to a file; charon filelog level 1 (default, ike, cfg) flushed per line, syslog off";

/// A process we started, stopped by its pid on drop (SIGTERM, then SIGKILL after 5 s).
#[derive(Debug)]
pub struct Process {
    child: Child,
    name: String,
}

impl Process {
    /// Starts `argv` inside `ns` with stdout and stderr appended to `log`.
    pub fn spawn_in(ns: &Netns, name: &str, argv: &[String], log: &Path) -> Result<Process> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = ns
            .command(argv)
            .env("AOVPN_LOG", AOVPN_LOG_LEVEL)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Process {
            child,
            name: name.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status})", self.name);
        }
        Ok(())
    }

    /// Waits for the process to exit by itself; fails after `timeout` (it is then stopped on
    /// drop) or if it exited with an error.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited ({status})", self.name);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} still runs after {timeout:?}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Still our unreaped child, so the pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/etc/netns/NS/hosts`, which `ip netns exec` binds over /etc/hosts; removed on drop.
#[derive(Debug)]
pub struct HostsFile {
    dir: PathBuf,
}

impl HostsFile {
    pub fn new(ns: &Netns, entries: &[(Ipv4Addr, &str)]) -> Result<HostsFile> {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        fs::create_dir_all(&dir)?;
        let guard = HostsFile { dir };
        let mut text = String::from("127.0.0.1 localhost\n");
        for (addr, name) in entries {
            let _ = writeln!(text, "{addr} {name}");
        }
        fs::write(guard.dir.join("hosts"), text)?;
        Ok(guard)
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat"))
}

/// Fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name (which
/// may contain spaces).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when that fails).
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds a set of processes used between two readings.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<u64>,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> Result<CpuMeter> {
        let start = pids
            .iter()
            .map(|p| cpu_ticks(*p))
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuMeter {
            pids: pids.to_vec(),
            start,
        })
    }

    /// Seconds per process since `start`, in the order given.
    pub fn seconds(&self) -> Result<Vec<f64>> {
        let hz = ticks_per_second();
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(p, s)| Ok(cpu_ticks(*p)?.saturating_sub(*s) as f64 / hz))
            .collect()
    }
}

/// VmRSS of a process in bytes.
pub fn vm_rss_bytes(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The `VmRSS:  1234 kB` line of /proc/PID/status, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether a process's network namespace has a socket of `proto` ("udp" or "tcp", v4 or v6)
/// bound to local `port` (for TCP: listening).
fn port_bound(pid: u32, proto: &str, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    [proto.to_owned(), format!("{proto}6")].iter().any(|f| {
        fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .map(|t| {
                t.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let local_ok = cols.get(1).is_some_and(|a| a.ends_with(&suffix));
                    // TCP state 0A = LISTEN; UDP sockets are 07 (unconnected), any is fine.
                    let state_ok = proto != "tcp" || cols.get(3) == Some(&"0A");
                    local_ok && state_ok
                })
            })
            .unwrap_or(false)
    })
}

/// Waits until the process runs and its namespace has `proto` ("udp"/"tcp") `port` bound.
pub fn wait_bound(process: &mut Process, proto: &str, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        process.check_alive()?;
        if port_bound(process.pid(), proto, port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not bind {proto} {port} within {timeout:?}",
                process.name
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a daemon's JSON status file.
pub fn read_status(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Waits for `"state": wanted` in a status file (fails early on `"failed"`).
pub fn wait_for_state(path: &Path, wanted: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_status(path) {
            match v.get("state").and_then(|s| s.as_str()) {
                Some(s) if s == wanted => return Ok(()),
                Some("failed") => bail!(
                    "{}: {}",
                    path.display(),
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("failed")
                ),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            bail!("{}: no state {wanted:?} within {timeout:?}", path.display());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Path of this binary, to start `aovpn gateway` / `aovpn connect`.
pub fn self_exe() -> Result<String> {
    Ok(std::env::current_exe()
        .context("locating the aovpn binary")?
        .display()
        .to_string())
}

/// The responders' address for IKE.
pub fn ike_server(topo: &Topology) -> SocketAddr {
    SocketAddr::from((topo.gateway_wan(), IKE_PORT))
}

/// The gateway's `[limits]` in a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// COOKIEs and the half-open caps (in all and per source) out of the way, as charon's
    /// are (rate, memory and scale benches).
    OutOfTheWay,
    /// What an operator gets without a `[limits]` section (the flood bench).
    Defaults,
}

/// Starts `aovpn gateway` in the topology's gateway namespace with the bench PKI, the given
/// IKE proposals, ESP AES-256-GCM and `limits` (strongSwan gets the same proposals, see
/// [`start_charon_gateway`]). With `status_file`, waits for it to say "running"; otherwise for
/// UDP 500 (the status file is rewritten on client changes, a cost charon does not pay).
pub fn start_our_gateway(
    topo: &Topology,
    dir: &Path,
    pki: &BenchPki,
    ike_proposals: &[&str],
    status_file: bool,
    limits: Limits,
) -> Result<(Process, Option<PathBuf>)> {
    start_our_gateway_with(
        topo,
        dir,
        pki,
        ResponderSetup {
            ike_proposals,
            limits,
            pool: lab::CLIENT_POOL,
            auth: ClientAuth::Certificate,
        },
        status_file,
    )
}

/// [`start_our_gateway`] with the pool of `setup` (its `auth` needs no setting here: our
/// gateway serves EAP-TLS to any client that asks).
pub fn start_our_gateway_with(
    topo: &Topology,
    dir: &Path,
    pki: &BenchPki,
    setup: ResponderSetup<'_>,
    status_file: bool,
) -> Result<(Process, Option<PathBuf>)> {
    let ResponderSetup {
        ike_proposals,
        limits,
        pool,
        auth: _,
    } = setup;
    fs::create_dir_all(dir)?;
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let conf = dir.join("gateway.toml");
    fs::write(
        &conf,
        format!(
            r#"# aovpn bench gateway
state_dir = "{state}"
[admin]
socket = "{state}/admin.sock"
[listen]
addresses = ["{wan}"]
[identity]
certificate = "{crt}"
key = "{key}"
id = "{GATEWAY_NAME}"
[clients]
root_ca_files = ["{ca}"]
pool_v4 = "{pool}"
[network]
routes = ["{vnet}"]
[crypto]
ike_proposals = [{ike}]
esp_proposals = ["{ESP_PROPOSAL}"]
{limits}[tunnel]
interface = "aovpn-gw"
"#,
            state = dir.join("state").display(),
            wan = topo.gateway_wan(),
            crt = pki.gateway_cert.display(),
            key = pki.gateway_key.display(),
            ca = pki.ca_file.display(),
            vnet = lab::VNET_TS,
            ike = list(ike_proposals),
            limits = match limits {
                Limits::OutOfTheWay =>
                    "[limits]\ncookie_threshold = 1000000\nhalf_open_limit = 1000000\nhalf_open_per_source = 1000000\n",
                Limits::Defaults => "",
            },
        ),
    )?;
    let status = status_file.then(|| dir.join("gateway.status.json"));
    let mut argv = vec![
        self_exe()?,
        "gateway".to_owned(),
        "--config".to_owned(),
        conf.display().to_string(),
    ];
    if let Some(s) = &status {
        argv.push("--status-file".to_owned());
        argv.push(s.display().to_string());
    }
    let mut gw = Process::spawn_in(
        &topo.gateway,
        "aovpn gateway",
        &argv,
        &dir.join("gateway.log"),
    )?;
    match &status {
        Some(s) => wait_for_state(s, "running", Duration::from_secs(20)).with_context(|| {
            format!(
                "aovpn gateway did not start; see {}",
                dir.join("gateway.log").display()
            )
        })?,
        None => wait_bound(&mut gw, "udp", IKE_PORT, Duration::from_secs(20))
            .with_context(|| format!("see {}", dir.join("gateway.log").display()))?,
    }
    Ok((gw, status))
}

/// strongSwan's charon as the peer responder: same certificate, proposals, pool and traffic
/// selector as [`start_our_gateway`], and the same COOKIE policy: with
/// [`Limits::OutOfTheWay`] its thresholds (`cookie_threshold` 10 half-open SAs in all,
/// `cookie_threshold_ip` 3 and `block_threshold` 5 per source address) are raised as ours are;
/// with [`Limits::Defaults`] both keep what an operator gets. The in-process initiator also
/// spreads its concurrent handshakes over source addresses of their own
/// ([`add_client_sources`]); our gateway sees the same traffic.
pub fn start_charon_gateway(
    topo: &Topology,
    dir: &Path,
    pki: &BenchPki,
    ike_proposals: &[&str],
    limits: Limits,
) -> Result<Charon> {
    start_charon_gateway_with(
        topo,
        dir,
        pki,
        ResponderSetup {
            ike_proposals,
            limits,
            pool: lab::CLIENT_POOL,
            auth: ClientAuth::Certificate,
        },
    )
}

/// How clients authenticate in a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// IKEv2 certificate authentication (device tunnels).
    Certificate,
    /// EAP-TLS with the same certificate inside IKE_AUTH (Windows' user tunnels), TLS 1.2.
    EapTls,
}

/// What a responder in a bench is set up with besides the PKI, the same for ours
/// ([`start_our_gateway_with`]) and charon ([`start_charon_gateway_with`]).
#[derive(Debug, Clone, Copy)]
pub struct ResponderSetup<'a> {
    pub ike_proposals: &'a [&'a str],
    pub limits: Limits,
    /// The client address pool.
    pub pool: &'a str,
    /// How the clients authenticate (our gateway serves EAP-TLS to any client that asks).
    pub auth: ClientAuth,
}

/// [`start_charon_gateway`] with a pool and client authentication of the caller's choice.
pub fn start_charon_gateway_with(
    topo: &Topology,
    dir: &Path,
    pki: &BenchPki,
    setup: ResponderSetup<'_>,
) -> Result<Charon> {
    let ResponderSetup {
        ike_proposals,
        limits,
        pool,
        auth,
    } = setup;
    let settings = match limits {
        // A second `charon` section is merged into the first, as strongswan.d's files are.
        // The IKE SA table sized as strongSwan's documentation advises for many SAs (its
        // default is one bucket); with few SAs it changes nothing.
        Limits::OutOfTheWay => {
            "charon {\n    cookie_threshold = 1000000\n    cookie_threshold_ip = 1000000\n    block_threshold = 1000000\n    ikesa_table_size = 4096\n    ikesa_table_segments = 16\n}\n"
        }
        Limits::Defaults => "",
    };
    let plugins = match auth {
        ClientAuth::Certificate => "",
        ClientAuth::EapTls => "eap-identity eap-tls",
    };
    let gw = Charon::start_with_settings(&topo.gateway, dir, plugins, settings)
        .context("starting charon")?;
    let mut responder = Connection::responder("p2s")
        .local_addrs(&topo.gateway_wan().to_string())
        .pools("p2s-pool")
        .proposals(&ike_proposals.join(","))
        .local_id(GATEWAY_NAME)
        .local_cert(&pki.gateway_cert)
        .remote_cacert(&pki.ca_file)
        // Liveness as our gateway's default (crypto.dpd_interval_secs = 30).
        .set("dpd_delay", "30s")
        .child(
            ChildConfig::new("p2s")
                .local_ts(lab::VNET_TS)
                .esp_proposals(ESP_PROPOSAL),
        );
    if auth == ClientAuth::EapTls {
        responder = responder
            .set_remote("auth", "eap-tls")
            .set_remote("eap_id", "%any");
    }
    gw.configure(
        &SwanctlConf::new()
            .connection(responder)
            .pool("p2s-pool", pool)
            .private_key(&pki.gateway_key),
    )?;
    gw.load_all().context("swanctl --load-all (gateway)")?;
    Ok(gw)
}

/// strongSwan's charon as a client in the topology's client namespace with the certificate
/// of `name`, connected (IKE SA and Child SA `ao` for 10.1.0.0/16, `ike_suite`, ESP
/// AES-256-GCM) to the gateway, whichever responder runs there.
pub fn connect_charon_client(
    topo: &Topology,
    dir: &Path,
    pki: &BenchPki,
    ike_suite: &str,
    name: &str,
) -> Result<Charon> {
    let (crt, key) = pki.client_files(name)?;
    let cl = Charon::start(&topo.client, dir).context("starting client charon")?;
    cl.configure(
        &SwanctlConf::new()
            .connection(
                Connection::initiator("ao")
                    .remote_addrs(&topo.gateway_wan().to_string())
                    .proposals(ike_suite)
                    .local_cert(&crt)
                    .remote_id(GATEWAY_NAME)
                    .remote_cacert(&pki.ca_file)
                    .child(
                        ChildConfig::new("ao")
                            .remote_ts(lab::VNET_TS)
                            .esp_proposals(ESP_PROPOSAL)
                            .set("start_action", "none"),
                    ),
            )
            .private_key(&key),
    )?;
    cl.load_all().context("swanctl --load-all (client)")?;
    cl.initiate("ao", "ao", Duration::from_secs(30))
        .with_context(|| format!("strongSwan client initiate failed:\n{}", cl.log()))?;
    Ok(cl)
}

/// Two pings from the client to the host behind the gateway (10.1.0.10).
pub fn ping_vnet(topo: &Topology) -> Result<()> {
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
        .map(drop)
        .context("ping 10.1.0.10 from the client")
}

/// Extra client addresses 198.51.100.10.. on the client's WAN link, one per concurrent
/// handshake (up to 64), so that per-address half-open limits do not throttle either responder.
pub fn add_client_sources(topo: &Topology, count: usize) -> Result<Vec<Ipv4Addr>> {
    let count = count.clamp(1, 64);
    let mut addrs = Vec::with_capacity(count);
    for i in 0..count {
        let a = Ipv4Addr::new(198, 51, 100, 10 + i as u8);
        topo.client
            .ip(["addr", "add", &format!("{a}/24"), "dev", lab::CLIENT_IF])
            .with_context(|| format!("adding {a} to the client"))?;
        addrs.push(a);
    }
    Ok(addrs)
}

/// "1 min load average" and friends from /proc/loadavg, for the report.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_and_15_even_with_spaces_in_the_name() {
        // Shape of /proc/PID/stat (proc(5)); the command name may hold spaces and parentheses.
        let stat = "4242 (aovpn (x) y) S 1 4242 4242 0 -1 4194560 700 0 0 0 123 45 0 0 20 0 3 0 \
                    9999 12345678 900 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(168));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tcharon\nVmPeak:\t  99999 kB\nVmRSS:\t   10608 kB\nThreads:\t17\n";
        assert_eq!(parse_vm_rss(status), Some(10608 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }
}
