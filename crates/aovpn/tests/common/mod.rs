//! What the `aovpn` binary's namespace tests share: the binary, and the routed lab (client --
//! internet router, optionally with NAT -- gateway -- vnet) with a PKI from `aovpn pki` and the
//! client's hosts entry for the gateway's name. Each test file adds its own methods.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::aovpn::{HostsFile, Pki, PkiOptions};
use testkit::netns::{Netns, Topology};

/// Transfers go in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_aovpn"))
}

/// A routed topology, a PKI, the client's hosts file and a scratch directory; all removed on
/// drop (hosts file, then namespaces, then files).
pub struct Lab {
    pub _hosts: HostsFile,
    pub topo: Topology,
    pub pki: Pki,
    pub tmp: tempfile::TempDir,
}

impl Lab {
    /// The routed lab (`nat`: masquerade in the router), a PKI made with `pki`, and the client
    /// resolving `gateway_name` to the gateway.
    pub fn routed(prefix: &str, pki: PkiOptions, nat: bool, gateway_name: &str) -> Lab {
        testkit::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let topo = Topology::routed(prefix, nat).unwrap();
        let hosts =
            HostsFile::write(&topo.client, &[(topo.gateway_wan().into(), gateway_name)]).unwrap();
        let pki = Pki::issue(bin(), &tmp.path().join("pki"), &pki).unwrap();
        Lab {
            _hosts: hosts,
            topo,
            pki,
            tmp,
        }
    }

    /// A path in the scratch directory.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Prints a figure a test measured where CI shows it: straight to stderr, past the test
/// harness's output capture (which hides `eprintln!` of passing tests).
pub fn report(figure: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "FIGURE: {figure}");
}

/// Deterministic pseudo-random bytes (xorshift64*), reproducible from the seed.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_exact_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            word.copy_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }
}

/// FNV-1a, 64 bit, over little-endian 64-bit words (the byte-wise variant is too slow in a
/// debug build for 100 MB; chunks are multiples of 8 bytes).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for word in data.chunks_exact(8) {
            let w = u64::from_le_bytes(word.try_into().unwrap());
            self.0 = (self.0 ^ w).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Sends `bytes` of the seeded stream; returns the hash of what was sent.
fn send_stream(mut sock: TcpStream, seed: u64, bytes: u64) -> u64 {
    let mut stream = Stream(seed);
    let mut hash = Fnv::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        stream.fill(&mut buf);
        hash.update(&buf);
        sock.write_all(&buf).unwrap();
        left -= CHUNK as u64;
    }
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    hash.0
}

/// Receives until EOF; returns (bytes, hash).
fn receive_stream(mut sock: TcpStream) -> (u64, u64) {
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut hash = Fnv::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        // Fill whole chunks so that hashing stays word-aligned.
        let mut filled = 0;
        while filled < CHUNK {
            let n = sock.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        hash.update(&buf[..filled - filled % 8]);
        total += filled as u64;
        if filled < CHUNK {
            return (total, hash.0);
        }
    }
}

/// One checksummed transfer of `bytes` (a multiple of 64 KiB). `listener_ns` accepts on `listen`; `connector_ns` connects to it.
/// `listener_sends` picks the direction. Returns throughput in Mbit/s.
pub fn checked_transfer(
    bytes: u64,
    listener_ns: &Netns,
    listen: SocketAddr,
    connector_ns: &Netns,
    listener_sends: bool,
    seed: u64,
) -> f64 {
    let expected = {
        let mut stream = Stream(seed);
        let mut hash = Fnv::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..bytes / CHUNK as u64 {
            stream.fill(&mut buf);
            hash.update(&buf);
        }
        hash.0
    };
    let started = Instant::now();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (sent, (received, received_hash)) = std::thread::scope(|scope| {
        let server = scope.spawn(move || {
            listener_ns.run(move || {
                let listener = TcpListener::bind(listen).unwrap();
                ready_tx.send(()).unwrap();
                let (sock, _) = listener.accept().unwrap();
                if listener_sends {
                    (Some(send_stream(sock, seed, bytes)), None)
                } else {
                    (None, Some(receive_stream(sock)))
                }
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener did not start");
        let (c_sent, c_recv) = connector_ns.run(move || {
            let sock = TcpStream::connect_timeout(&listen, Duration::from_secs(10)).unwrap();
            if listener_sends {
                (None, Some(receive_stream(sock)))
            } else {
                (Some(send_stream(sock, seed, bytes)), None)
            }
        });
        let (s_sent, s_recv) = server.join().unwrap();
        (s_sent.or(c_sent).unwrap(), s_recv.or(c_recv).unwrap())
    });
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(sent, expected, "sender's stream is not the seeded one");
    assert_eq!(received, bytes, "byte count differs");
    assert_eq!(
        received_hash, expected,
        "received data differs from what was sent"
    );
    (bytes * 8) as f64 / secs / 1e6
}
