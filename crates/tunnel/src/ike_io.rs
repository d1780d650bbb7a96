//! IKE datagrams in and out: port 500 is a socket of its own, port 4500 belongs to the data
//! plane (IKE and ESP share it, told apart by the non-ESP marker), which hands IKE up on a
//! channel that carries nothing else.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use datapath::{DatapathHandle, IkeDatagram};
use ikev2::{Path, Transmit};
use netio::udp::{DatagramMeta, UdpConfig, UdpSocket};
use tokio::sync::mpsc;

/// Largest IKE datagram we accept; fragmentation keeps real ones far below.
const MAX_IKE_DATAGRAM: usize = 65_535;
/// Receive buffer of the port-500 socket: a flood arrives in bursts, and a legitimate
/// client's request lost in one costs it a retransmission (half a second at least). The
/// kernel caps it at net.core.rmem_max.
const PORT500_BUFFER: usize = 4 << 20;

/// One received IKE message (without the non-ESP marker) and the path it came along: the
/// socket it arrived on is recorded here, once, for the engine.
#[derive(Debug)]
pub struct IkeIn {
    pub path: Path,
    pub bytes: Vec<u8>,
}

/// The IKE side's view of the network.
#[derive(Debug)]
pub struct IkeIo {
    port500: UdpSocket,
    bound: SocketAddr,
    datapath: DatapathHandle,
    port4500: mpsc::Receiver<IkeDatagram>,
    buf: Vec<u8>,
}

impl IkeIo {
    /// Binds UDP `ike_bind` (port 500, usually) next to a running data plane whose port 4500
    /// IKE datagrams arrive on `port4500`.
    pub fn bind(
        ike_bind: SocketAddr,
        datapath: DatapathHandle,
        port4500: mpsc::Receiver<IkeDatagram>,
    ) -> io::Result<Self> {
        // No GRO here: it could merge two IKE messages of equal size into one buffer.
        let mut config = UdpConfig::new(ike_bind);
        config.offload = false;
        config.buffer_size = Some(PORT500_BUFFER);
        let port500 = UdpSocket::bind(&config)?;
        let bound = port500.local_addr()?;
        Ok(Self {
            port500,
            bound,
            datapath,
            port4500,
            buf: vec![0; MAX_IKE_DATAGRAM],
        })
    }

    /// The local address of the IKE (port 500) socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// The next IKE datagram from either port; `None` once the data plane is gone. Cancel-safe:
    /// nothing is lost when another branch of a `select!` wins.
    pub async fn recv(&mut self) -> Option<io::Result<IkeIn>> {
        tokio::select! {
            received = recv_one(&self.port500, &mut self.buf) => Some(received.map(|meta| {
                let local = SocketAddr::new(
                    meta.destination.unwrap_or(self.bound.ip()),
                    self.bound.port(),
                );
                let bytes = self.buf.get(..meta.len).unwrap_or_default().to_vec();
                IkeIn { path: Path::ike(local, meta.source), bytes }
            })),
            datagram = self.port4500.recv() => datagram.map(|d| Ok(IkeIn {
                path: Path::natt(d.to, d.from),
                bytes: d.message,
            })),
        }
    }

    /// Sends what the engine asked for on the socket it chose: NAT-T goes through the data
    /// plane's socket with the non-ESP marker. The source IP is the engine's; the port is the
    /// socket's.
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        let from = (!t.local.ip().is_unspecified()).then_some(t.local.ip());
        if t.natt {
            self.datapath.send_ike(t.remote, from, &t.bytes).await
        } else {
            self.port500.send_to(t.remote, from, &t.bytes).await
        }
    }
}

async fn recv_one(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<DatagramMeta> {
    let mut bufs = [IoSliceMut::new(buf)];
    let mut meta = [DatagramMeta::default()];
    sock.recv_batch(&mut bufs, &mut meta).await?;
    let [meta] = meta;
    Ok(meta)
}
