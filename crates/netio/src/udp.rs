//! UDP sockets for IKE (500) and ESP-in-UDP/IKE (4500) with batched I/O through quinn-udp:
//! `recvmmsg` + UDP GRO on receive, UDP GSO (`UDP_SEGMENT`) on send, and IP_PKTINFO /
//! IPV6_RECVPKTINFO so every datagram reports the local address it was sent to and a reply can
//! leave from that same address (multi-homed gateways, sockets bound to the wildcard).
//!
//! `UDP_ENCAP_ESPINUDP` is deliberately not set: ESP stays in userspace, the caller demultiplexes
//! IKE (non-ESP marker), ESP and NAT keepalives itself.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Most datagrams (or GRO batches) one [`UdpSocket::recv_batch`] call returns.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Buffer size that holds any GRO batch the kernel may deliver (64 segments of up to 64 KiB are
/// capped by the 64 KiB total of a GRO skb).
pub const GRO_BUF_SIZE: usize = 65_535;

/// Socket options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Address to bind (e.g. `0.0.0.0:4500` or a specific gateway address).
    pub bind: SocketAddr,
    /// Use UDP GSO on send and UDP GRO on receive when the kernel supports them. With `false`
    /// every datagram is a separate send and receive (for comparison benchmarks).
    pub offload: bool,
    /// SO_RCVBUF / SO_SNDBUF request in bytes (the kernel doubles it), `None` = default. With
    /// CAP_NET_ADMIN it may exceed `net.core.rmem_max`/`wmem_max` (SO_RCVBUFFORCE), without
    /// it the kernel caps it there.
    pub buffer_size: Option<usize>,
}

impl UdpConfig {
    /// Binds `bind` with offload on and default buffers.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            offload: true,
            buffer_size: None,
        }
    }
}

/// Per-datagram (or per-GRO-batch) receive metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramMeta {
    /// Sender address.
    pub source: SocketAddr,
    /// Local address the datagram was sent to (from IP_PKTINFO); reply with it as `src_ip`.
    pub destination: Option<IpAddr>,
    /// Interface it arrived on.
    pub ifindex: Option<u32>,
    /// Bytes in the buffer.
    pub len: usize,
    /// Size of each datagram in the buffer: with GRO the buffer holds `len / stride` (rounded
    /// up) datagrams of `stride` bytes, the last one possibly shorter. Equals `len` otherwise.
    pub stride: usize,
}

impl Default for DatagramMeta {
    fn default() -> Self {
        Self {
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            destination: None,
            ifindex: None,
            len: 0,
            stride: 0,
        }
    }
}

impl DatagramMeta {
    /// Splits `buf` (the buffer this meta describes) into its individual datagrams.
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let filled = buf.get(..self.len.min(buf.len())).unwrap_or_default();
        filled.chunks(self.stride.max(1))
    }

    fn from_quinn(m: &RecvMeta) -> Self {
        Self {
            source: m.addr,
            destination: m.dst_ip,
            ifindex: m.interface_index,
            len: m.len,
            stride: m.stride,
        }
    }
}

/// Datagrams to send to one destination. With `segment_size` set, `contents` holds several
/// datagrams of `segment_size` bytes each (the last may be shorter), sent with one GSO call
/// when enabled.
#[derive(Debug, Clone, Copy)]
pub struct OutDatagrams<'a> {
    /// Peer address.
    pub destination: SocketAddr,
    /// Local source address to use (the `destination` of the datagram being answered).
    pub source_ip: Option<IpAddr>,
    /// Payload(s).
    pub contents: &'a [u8],
    /// Size of each datagram in `contents`; `None` = a single datagram.
    pub segment_size: Option<usize>,
}

/// An async UDP socket with batched I/O.
#[derive(Debug)]
pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    offload: bool,
}

impl UdpSocket {
    /// Creates and binds the socket (SO_REUSEADDR, non-blocking, PKTINFO on). Must be called
    /// inside a tokio runtime.
    pub fn bind(config: &UdpConfig) -> io::Result<Self> {
        let domain = if config.bind.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        if config.bind.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        if let Some(size) = config.buffer_size {
            set_buffer_sizes(&sock, size)?;
        }
        sock.bind(&config.bind.into())?;
        let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
        if config.bind.is_ipv4() {
            // quinn-udp sets DF for QUIC's path MTU discovery. IKE and ESP outer packets go
            // without it, as kernel IPsec sends them: a router on a smaller-MTU path then
            // fragments them (RFC 4459) instead of dropping them, which behind a firewall
            // that blocks ICMP would be a black hole for every full-size inner packet.
            nix_setsockopt_int(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )?;
        }
        if !config.offload {
            // quinn-udp turns UDP_GRO on whenever the kernel has it; turn it back off.
            let off: libc::c_int = 0;
            nix_setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO, off)?;
        }
        let io = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(sock))?;
        Ok(Self {
            io,
            state,
            offload: config.offload,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Whether GSO/GRO were requested.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Most segments one GSO send may carry (1 when GSO is off or unsupported).
    pub fn max_gso_segments(&self) -> usize {
        if self.offload {
            self.state.max_gso_segments()
        } else {
            1
        }
    }

    /// Most datagrams one GRO receive may coalesce (1 when off or unsupported).
    pub fn gro_segments(&self) -> usize {
        if self.offload {
            self.state.gro_segments()
        } else {
            1
        }
    }

    /// Waits for and receives up to `min(bufs.len(), meta.len(), RECV_BATCH)` buffers with one
    /// `recvmmsg`. Returns how many buffers were filled; `meta[i]` describes `bufs[i]` (use
    /// [`DatagramMeta::datagrams`] to split GRO batches). Size buffers with [`GRO_BUF_SIZE`]
    /// when offload is on, or GRO batches are truncated.
    pub async fn recv_batch(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [DatagramMeta],
    ) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(RECV_BATCH);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no receive buffers",
            ));
        }
        let mut qmeta = [RecvMeta::default(); RECV_BATCH];
        let bufs = bufs.get_mut(..n).unwrap_or_default();
        let qmeta_n = qmeta.get_mut(..n).unwrap_or_default();
        let got = self
            .io
            .async_io(Interest::READABLE, || {
                self.state.recv(UdpSockRef::from(&self.io), bufs, qmeta_n)
            })
            .await?;
        for (out, q) in meta.iter_mut().zip(qmeta.iter()).take(got) {
            *out = DatagramMeta::from_quinn(q);
        }
        Ok(got)
    }

    /// Sends every item, waiting while the socket buffer is full. Items with a `segment_size`
    /// go out as GSO sends of at most [`max_gso_segments`](Self::max_gso_segments) segments, or
    /// datagram by datagram when offload is off. Returns the number of datagrams sent.
    pub async fn send_batch(&self, items: &[OutDatagrams<'_>]) -> io::Result<usize> {
        let mut sent = 0;
        for item in items {
            let seg = match item.segment_size {
                Some(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "segment size 0",
                    ));
                }
                Some(s) if s < item.contents.len() => s,
                _ => {
                    self.send_one(item, item.contents, None).await?;
                    sent += 1;
                    continue;
                }
            };
            let per_call = self.max_gso_segments().max(1);
            for chunk in item.contents.chunks(seg * per_call) {
                let count = chunk.len().div_ceil(seg);
                let segment_size = (count > 1).then_some(seg);
                match self.send_one(item, chunk, segment_size).await {
                    Ok(()) => {}
                    // The device refused GSO (quinn-udp has switched it off for later sends):
                    // send this chunk datagram by datagram.
                    Err(e)
                        if segment_size.is_some()
                            && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                    {
                        for datagram in chunk.chunks(seg) {
                            self.send_one(item, datagram, None).await?;
                        }
                    }
                    Err(e) => return Err(e),
                }
                sent += count;
            }
        }
        Ok(sent)
    }

    /// Sends one datagram (an IKE message, a keepalive) from `source_ip` if given.
    pub async fn send_to(
        &self,
        destination: SocketAddr,
        source_ip: Option<IpAddr>,
        datagram: &[u8],
    ) -> io::Result<()> {
        let item = OutDatagrams {
            destination,
            source_ip,
            contents: datagram,
            segment_size: None,
        };
        self.send_one(&item, datagram, None).await
    }

    async fn send_one(
        &self,
        item: &OutDatagrams<'_>,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: item.destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: item.source_ip,
        };
        self.io
            .async_io(Interest::WRITABLE, || {
                self.state.try_send(UdpSockRef::from(&self.io), &transmit)
            })
            .await
    }
}

/// A UDP socket for path MTU probes to `remote`. `dont_fragment`: every datagram leaves with
/// DF set and unfragmented, whatever the kernel has learnt about the path
/// (`IP_PMTUDISC_PROBE`), so a datagram too large for a link on the way is lost there (or
/// refused here, `EMSGSIZE`, when it is too large for our own interface). Otherwise DF is
/// clear (`IP_PMTUDISC_DONT`), as our IKE and ESP datagrams go, and routers fragment.
pub fn path_probe_socket(
    remote: SocketAddr,
    dont_fragment: bool,
) -> io::Result<std::net::UdpSocket> {
    let domain = if remote.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if remote.is_ipv4() {
        nix_setsockopt_int(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            if dont_fragment {
                libc::IP_PMTUDISC_PROBE
            } else {
                libc::IP_PMTUDISC_DONT
            },
        )?;
    } else {
        nix_setsockopt_int(
            &sock,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            if dont_fragment {
                libc::IPV6_PMTUDISC_PROBE
            } else {
                libc::IPV6_PMTUDISC_DONT
            },
        )?;
    }
    let any: SocketAddr = if remote.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    sock.bind(&any.into())?;
    sock.connect(&remote.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Sets both socket buffers to `size`, beyond the sysctl maximum where we may.
fn set_buffer_sizes(sock: &Socket, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    for (forced, capped) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        match nix_setsockopt_int(sock, libc::SOL_SOCKET, forced, value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                nix_setsockopt_int(sock, libc::SOL_SOCKET, capped, value)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn nix_setsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd owned by `sock`; the option value is a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beyond `net.core.rmem_max` as root (SO_RCVBUFFORCE); up to it otherwise.
    #[test]
    fn buffers_reach_the_request_where_allowed() -> io::Result<()> {
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")?
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("rmem_max: {e}")))?;
        // Capped, the kernel would give 2 * rmem_max: ask for more than that.
        let request = 2 * rmem_max + (1 << 20);
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        set_buffer_sizes(&sock, request)?;
        let got = sock.recv_buffer_size()?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(got >= request, "{got} < {request}");
        } else {
            assert!(got >= rmem_max, "{got} < {rmem_max}");
        }
        assert!(sock.send_buffer_size()? > 0);
        Ok(())
    }

    #[test]
    fn gro_meta_splits_into_datagrams() {
        let buf: Vec<u8> = (0..=9).collect();
        let meta = DatagramMeta {
            len: 10,
            stride: 4,
            ..DatagramMeta::default()
        };
        let parts: Vec<&[u8]> = meta.datagrams(&buf).collect();
        assert_eq!(parts, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        // A length beyond the buffer (never from the kernel) is clamped, not a panic.
        let meta = DatagramMeta {
            len: 99,
            stride: 0,
            ..DatagramMeta::default()
        };
        assert_eq!(meta.datagrams(&buf).count(), 10);
    }
}
