//! The tunnel lab shared by the namespace tests and the `tunnel-bench` example: the testkit
//! topology with one data plane in the client namespace and one in the gateway namespace, joined
//! by static SAs (keys chosen here), client virtual IP 172.16.201.1, gateway protecting
//! 10.1.0.0/16 with the host 10.1.0.10 behind it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers may unwrap

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket as StdUdp};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use datapath::{
    Datapath, DatapathConfig, DatapathEvent, DatapathHandle, EspSa, EspSaId, IkeDatagram, Selector,
    Selectors,
};
use esp::{AesKeyLen, DirectionKeys, InboundSa, Integrity, OutboundConfig, OutboundSa, Transform};
use netio::tun::TunConfig;
use netio::udp::{UdpConfig, UdpSocket};
use testkit::netns::{Netns, Topology, lab};
use tokio::sync::mpsc;

/// TUN name inside both namespaces.
pub const TUN: &str = "aodp0";
/// The client's virtual IP.
pub const CLIENT_VIP: Ipv4Addr = Ipv4Addr::new(172, 16, 201, 1);
/// The client's IPv6 virtual address (dual-stack lab).
pub const CLIENT_VIP6: &str = "fd00:201::1";
/// IPv6 prefix of the protected network, the gateway's and the host's address on it.
pub const VNET6: &str = "fd00:10::/64";
pub const GATEWAY_LAN6: &str = "fd00:10::1";
pub const VNET_HOST6: &str = "fd00:10::10";
/// TUN MTU: 1500 outer minus the worst ESP-in-UDP overhead, like strongSwan's 1400.
pub const MTU: u16 = 1400;

/// How to build a lab.
#[derive(Debug, Clone, Copy)]
pub struct LabOptions {
    pub transform: Transform,
    /// Routed layout with masquerade NAT instead of the direct link.
    pub nat: bool,
    /// TUN queues (= workers) per side.
    pub queues: usize,
    /// TUN virtio offload (TSO/GRO through the TUN).
    pub tun_offload: bool,
    /// UDP GSO/GRO.
    pub udp_offload: bool,
    /// Tokio worker threads per side.
    pub threads: usize,
    /// NAT keepalive interval; the client SA sends keepalives when set.
    pub keepalive: Option<Duration>,
    /// Also carry IPv6 inside the tunnel (dual-stack virtual addresses and protected network).
    pub ipv6: bool,
    /// Capacity of each side's event channel.
    pub event_capacity: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            transform: Transform::AesGcm16(AesKeyLen::Aes256),
            nat: false,
            queues: 1,
            tun_offload: false,
            udp_offload: true,
            threads: 1,
            keepalive: None,
            ipv6: false,
            event_capacity: datapath::DEFAULT_EVENT_CAPACITY,
        }
    }
}

pub fn gcm256() -> Transform {
    Transform::AesGcm16(AesKeyLen::Aes256)
}

pub fn cbc256_sha256() -> Transform {
    Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha256_128)
}

/// One data plane with its runtime, running inside a namespace.
pub struct Side {
    pub rt: Option<tokio::runtime::Runtime>,
    pub dp: DatapathHandle,
    pub events: mpsc::Receiver<DatapathEvent>,
    pub ike: mpsc::Receiver<IkeDatagram>,
}

impl Side {
    /// Creates the TUN and the 4500 socket inside `ns` and starts a data plane on them.
    pub fn start(ns: &Netns, bind: SocketAddr, opts: &LabOptions) -> Side {
        let side = ns.run(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(opts.threads.max(1))
                .enable_all()
                .build()
                .expect("runtime");
            let (dp, receivers) = rt.block_on(async {
                let tun = netio::tun::create(&TunConfig {
                    queues: opts.queues,
                    offload: opts.tun_offload,
                    ..TunConfig::new(TUN, MTU)
                })
                .expect("create TUN");
                let udp = UdpSocket::bind(&UdpConfig {
                    bind,
                    offload: opts.udp_offload,
                    buffer_size: Some(4 << 20),
                })
                .expect("bind 4500");
                let mut config = DatapathConfig::new(tun.queues, MTU, udp);
                config.keepalive_interval = opts.keepalive;
                config.event_capacity = opts.event_capacity;
                Datapath::start(config).expect("start data plane")
            });
            Side {
                rt: Some(rt),
                dp,
                events: receivers.events,
                ike: receivers.ike,
            }
        });
        ns.ip(["link", "set", TUN, "up"]).expect("TUN up");
        side
    }

    /// Waits up to `within` for an event matching `pred`; returns it.
    pub fn wait_event(
        &mut self,
        within: Duration,
        pred: impl Fn(&DatapathEvent) -> bool,
    ) -> Option<DatapathEvent> {
        let rt = self.rt.as_ref()?;
        let events = &mut self.events;
        rt.block_on(async {
            tokio::time::timeout(within, async {
                while let Some(ev) = events.recv().await {
                    if pred(&ev) {
                        return Some(ev);
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
        })
    }

    /// Waits up to `within` for an IKE datagram from port 4500.
    pub fn wait_ike(&mut self, within: Duration) -> Option<IkeDatagram> {
        let rt = self.rt.as_ref()?;
        let ike = &mut self.ike;
        rt.block_on(async {
            tokio::time::timeout(within, ike.recv())
                .await
                .ok()
                .flatten()
        })
    }

    /// Runs an async control call on this side's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("running").block_on(f)
    }

    /// Stops the data plane and its runtime; returns how many TUN queues came back.
    pub fn stop(&mut self) -> usize {
        let Some(rt) = self.rt.take() else {
            return 0;
        };
        let queues = rt.block_on(self.dp.shutdown());
        let n = queues.len();
        drop(queues);
        rt.shutdown_timeout(Duration::from_secs(5));
        n
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keys of one direction, derived from a label so both ends agree.
pub fn keys(t: Transform, label: u8) -> DirectionKeys {
    let keymat: Vec<u8> = (0..t.keymat_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(label))
        .collect();
    DirectionKeys::from_keymat(t, &keymat).unwrap()
}

/// SPIs and key labels of one SA pair (one Child SA as both ends see it).
#[derive(Debug, Clone, Copy)]
pub struct SaPair {
    pub id: EspSaId,
    /// The client's inbound SPI (gateway -> client).
    pub client_spi: u32,
    /// The gateway's inbound SPI (client -> gateway).
    pub gateway_spi: u32,
}

/// The client's addresses as traffic selectors.
fn client_vips() -> Vec<Selector> {
    [
        CLIENT_VIP.to_string() + "/32",
        CLIENT_VIP6.to_string() + "/128",
    ]
    .iter()
    .map(|n| Selector::prefix(n.parse().unwrap()))
    .collect()
}

/// The protected networks as traffic selectors.
fn vnet() -> Vec<Selector> {
    [lab::VNET_TS, VNET6]
        .iter()
        .map(|n| Selector::prefix(n.parse().unwrap()))
        .collect()
}

impl SaPair {
    pub fn new(id: EspSaId) -> Self {
        Self {
            id,
            client_spi: 0xc000_0000 + id as u32,
            gateway_spi: 0x6000_0000 + id as u32,
        }
    }

    /// The client's view: sends with the gateway's SPI, routes the protected network.
    pub fn client_sa(&self, t: Transform, gateway: SocketAddr, keepalive: bool) -> EspSa {
        self.client_sa_with(t, gateway, keepalive, OutboundConfig::default())
    }

    /// The client's view with outbound limits.
    pub fn client_sa_with(
        &self,
        t: Transform,
        gateway: SocketAddr,
        keepalive: bool,
        outbound: OutboundConfig,
    ) -> EspSa {
        let label = self.id as u8;
        EspSa {
            id: self.id,
            inbound: InboundSa::new(self.client_spi, &keys(t, label.wrapping_add(100))).unwrap(),
            outbound: OutboundSa::with_config(self.gateway_spi, &keys(t, label), outbound).unwrap(),
            peer: gateway,
            local: None,
            routes: vec![lab::VNET_TS.parse().unwrap(), VNET6.parse().unwrap()],
            selectors: Selectors {
                local: client_vips(),
                remote: vnet(),
            },
            nat_keepalive: keepalive,
        }
    }

    /// The gateway's view: routes (and accepts from) the client's virtual IP only.
    pub fn gateway_sa(&self, t: Transform, client: SocketAddr) -> EspSa {
        let label = self.id as u8;
        EspSa {
            id: self.id,
            inbound: InboundSa::new(self.gateway_spi, &keys(t, label)).unwrap(),
            outbound: OutboundSa::new(self.client_spi, &keys(t, label.wrapping_add(100))).unwrap(),
            peer: client,
            local: None,
            routes: vec![
                format!("{CLIENT_VIP}/32").parse().unwrap(),
                format!("{CLIENT_VIP6}/128").parse().unwrap(),
            ],
            selectors: Selectors {
                local: vnet(),
                remote: client_vips(),
            },
            nat_keepalive: false,
        }
    }
}

/// The whole lab. Fields drop in order: data planes first, then the namespaces.
pub struct Lab {
    pub client: Side,
    pub gateway: Side,
    pub topo: Topology,
    pub opts: LabOptions,
}

impl Lab {
    /// Builds the topology and both data planes, configures TUN addresses and routes, and
    /// installs SA pair 1 on both sides.
    pub fn new(prefix: &str, opts: LabOptions) -> Lab {
        testkit::require_root();
        let topo = if opts.nat {
            Topology::routed(prefix, true).expect("topology")
        } else {
            Topology::direct(prefix).expect("topology")
        };
        let client = Side::start(&topo.client, lab_addr(lab::CLIENT_WAN), &opts);
        let gateway = Side::start(&topo.gateway, lab_addr(topo.gateway_wan()), &opts);
        topo.client
            .ip(["addr", "add", &format!("{CLIENT_VIP}/32"), "dev", TUN])
            .unwrap();
        topo.client
            .ip([
                "route",
                "add",
                lab::VNET_TS,
                "dev",
                TUN,
                "src",
                &CLIENT_VIP.to_string(),
            ])
            .unwrap();
        topo.gateway
            .ip(["route", "add", &format!("{CLIENT_VIP}/32"), "dev", TUN])
            .unwrap();
        if opts.ipv6 {
            let (c, g, v) = (&topo.client, &topo.gateway, &topo.vnet);
            let vip6 = format!("{CLIENT_VIP6}/128");
            c.ip(["-6", "addr", "add", &vip6, "dev", TUN, "nodad"])
                .unwrap();
            c.ip(["-6", "route", "add", VNET6, "dev", TUN, "src", CLIENT_VIP6])
                .unwrap();
            g.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
            g.ip(["-6", "route", "add", &vip6, "dev", TUN]).unwrap();
            let gw6 = format!("{GATEWAY_LAN6}/64");
            g.ip([
                "-6",
                "addr",
                "add",
                &gw6,
                "dev",
                lab::GATEWAY_LAN_IF,
                "nodad",
            ])
            .unwrap();
            let host6 = format!("{VNET_HOST6}/64");
            v.ip(["-6", "addr", "add", &host6, "dev", lab::VNET_IF, "nodad"])
                .unwrap();
            v.ip(["-6", "route", "add", "default", "via", GATEWAY_LAN6])
                .unwrap();
        }
        let lab = Lab {
            client,
            gateway,
            topo,
            opts,
        };
        lab.install(SaPair::new(1));
        lab
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        lab_addr(self.topo.gateway_wan())
    }

    pub fn client_addr_at_gateway(&self) -> SocketAddr {
        lab_addr(self.topo.client_as_seen_by_gateway())
    }

    /// Installs one SA pair on both ends.
    pub fn install(&self, pair: SaPair) {
        let t = self.opts.transform;
        self.gateway
            .dp
            .install_sa(pair.gateway_sa(t, self.client_addr_at_gateway()))
            .unwrap();
        self.client
            .dp
            .install_sa(pair.client_sa(t, self.gateway_addr(), self.opts.keepalive.is_some()))
            .unwrap();
    }
}

pub fn lab_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), 4500)
}

/// Polls `cond` every 20 ms until it holds (true) or `within` has passed (false): tests wait on
/// what they expect to happen, not on a fixed sleep that a busy CI machine may overrun.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ping` from `ns`; true if all `count` replies came back.
pub fn ping(ns: &Netns, from: Ipv4Addr, to: Ipv4Addr, count: u32) -> bool {
    ping_any(ns, &from.to_string(), &to.to_string(), count)
}

/// `ping` between any two addresses (IPv4 or IPv6); true if all `count` replies came back
/// (ping itself exits 0 when at least one reply came).
pub fn ping_any(ns: &Netns, from: &str, to: &str, count: u32) -> bool {
    let out = ns
        .exec([
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            "-I",
            from,
            to,
        ])
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" packets transmitted, ")?;
            rest.split_whitespace().next()?.parse::<u32>().ok()
        })
        .unwrap_or(0);
    received == count
}

/// xorshift64* stream: the bytes a transfer carries, reproducible on both ends.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a 64 over a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Which way a TCP transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Client -> vnet host.
    Upload,
    /// Vnet host -> client.
    Download,
}

/// Result of a transfer.
#[derive(Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub sent_hash: Fnv,
    pub received_hash: Fnv,
    pub elapsed: Duration,
}

const IO_TIMEOUT: Duration = Duration::from_secs(20);
const CHUNK: usize = 64 * 1024;

fn send_all(stream: &mut TcpStream, total: u64, seed: u64) -> Fnv {
    let mut pattern = Pattern::new(seed);
    let mut hash = Fnv::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        pattern.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n]).expect("send through tunnel");
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    hash
}

fn receive_all(stream: &mut TcpStream) -> (u64, Fnv) {
    let mut hash = Fnv::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).expect("receive through tunnel");
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    (total, hash)
}

/// Moves `total` pattern bytes over TCP between the client (which connects from its virtual
/// IP) and a listener on the vnet host, in the direction `way`.
pub fn tcp_transfer(lab: &Lab, way: Way, total: u64, port: u16) -> Transfer {
    tcp_transfer_mss(lab, way, total, port, None)
}

/// [`tcp_transfer`] with the client's TCP_MAXSEG set (it also advertises it, so both
/// directions use segments of at most `mss` bytes).
pub fn tcp_transfer_mss(lab: &Lab, way: Way, total: u64, port: u16, mss: Option<u32>) -> Transfer {
    let listen = SocketAddr::new(IpAddr::V4(lab::VNET_HOST), port);
    let (ready_tx, ready_rx) = std_mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            lab.topo.vnet.run(move || {
                let listener = TcpListener::bind(listen).expect("listen in vnet");
                ready_tx.send(()).unwrap();
                let (mut stream, _) = listener.accept().expect("accept");
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                match way {
                    Way::Upload => {
                        let (n, h) = receive_all(&mut stream);
                        (n, None, Some(h))
                    }
                    Way::Download => (total, Some(send_all(&mut stream, total, 7)), None),
                }
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener ready");
        let start = Instant::now();
        let (client_bytes, client_sent, client_recv) = lab.topo.client.run(move || {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .unwrap();
            if let Some(mss) = mss {
                sock.set_tcp_mss(mss).unwrap();
            }
            sock.connect_timeout(&listen.into(), Duration::from_secs(10))
                .expect("connect");
            let mut stream: TcpStream = sock.into();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            match way {
                Way::Upload => (total, Some(send_all(&mut stream, total, 7)), None),
                Way::Download => {
                    let (n, h) = receive_all(&mut stream);
                    (n, None, Some(h))
                }
            }
        });
        let (server_bytes, server_sent, server_recv) = server.join().expect("server thread");
        let elapsed = start.elapsed();
        let bytes = match way {
            Way::Upload => server_bytes,
            Way::Download => client_bytes,
        };
        Transfer {
            bytes,
            sent_hash: client_sent.or(server_sent).unwrap(),
            received_hash: client_recv.or(server_recv).unwrap(),
            elapsed,
        }
    })
}

/// Sends UDP datagrams of the given sizes from the client's virtual IP to the vnet host and
/// returns what arrived (sizes above the TUN MTU are fragmented inside the tunnel).
pub fn udp_datagrams(lab: &Lab, sizes: &[usize], port: u16) -> Vec<Vec<u8>> {
    let listen = SocketAddr::new(IpAddr::V4(lab::VNET_HOST), port);
    let (ready_tx, ready_rx) = std_mpsc::channel();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            lab.topo.vnet.run(move || {
                let sock = StdUdp::bind(listen).expect("bind in vnet");
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                ready_tx.send(()).unwrap();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65_536];
                while got.len() < sizes.len() {
                    match sock.recv(&mut buf) {
                        Ok(n) => got.push(buf[..n].to_vec()),
                        Err(_) => break,
                    }
                }
                got
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        lab.topo.client.run(|| {
            let sock = StdUdp::bind(SocketAddr::new(IpAddr::V4(CLIENT_VIP), 0)).unwrap();
            for (i, &len) in sizes.iter().enumerate() {
                let mut d = vec![0u8; len];
                Pattern::new(i as u64 + 1).fill(&mut d);
                sock.send_to(&d, listen).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        receiver.join().unwrap()
    })
}

/// The datagrams [`udp_datagrams`] sends.
pub fn expected_datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut d = vec![0u8; len];
            Pattern::new(i as u64 + 1).fill(&mut d);
            d
        })
        .collect()
}
