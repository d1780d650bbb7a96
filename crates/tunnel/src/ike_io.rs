//! IKE datagrams in and out: port 500 is a socket of its own, port 4500 belongs to the data
//! plane (IKE and ESP share it, told apart by the non-ESP marker), which hands IKE up as events.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use datapath::{DatapathEvent, DatapathHandle};
use ikev2::Transmit;
use netio::udp::{DatagramMeta, UdpConfig, UdpSocket};
use tokio::sync::mpsc;

/// Largest IKE datagram we accept; fragmentation keeps real ones far below.
const MAX_IKE_DATAGRAM: usize = 65_535;

/// What arrived for the IKE side.
#[derive(Debug)]
pub enum Incoming {
    /// An IKE message (without the non-ESP marker), to `local` from `remote`.
    Ike {
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Something else the data plane reports (SA limits, unknown SPIs, NAT rebinding).
    Datapath(DatapathEvent),
    /// The data plane is gone.
    Closed,
}

/// The IKE side's view of the network.
#[derive(Debug)]
pub struct IkeIo {
    port500: UdpSocket,
    datapath: DatapathHandle,
    events: mpsc::Receiver<DatapathEvent>,
    buf: Vec<u8>,
}

impl IkeIo {
    /// Binds UDP `ike_bind` (port 500, usually) next to a running data plane.
    pub fn bind(
        ike_bind: SocketAddr,
        datapath: DatapathHandle,
        events: mpsc::Receiver<DatapathEvent>,
    ) -> io::Result<Self> {
        // No GRO here: it could merge two IKE messages of equal size into one buffer.
        let mut config = UdpConfig::new(ike_bind);
        config.offload = false;
        Ok(Self {
            port500: UdpSocket::bind(&config)?,
            datapath,
            events,
            buf: vec![0; MAX_IKE_DATAGRAM],
        })
    }

    /// The local port of the IKE (port 500) socket.
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.port500.local_addr()?.port())
    }

    /// The data plane this IKE side shares port 4500 with.
    pub fn datapath(&self) -> &DatapathHandle {
        &self.datapath
    }

    /// The next datagram or event. Cancel-safe: nothing is lost when another branch of a
    /// `select!` wins.
    pub async fn recv(&mut self) -> io::Result<Incoming> {
        let port = self.port500.local_addr()?.port();
        let bound = self.port500.local_addr()?.ip();
        tokio::select! {
            received = recv_one(&self.port500, &mut self.buf) => {
                let meta = received?;
                let local = SocketAddr::new(meta.destination.unwrap_or(bound), port);
                let bytes = self.buf.get(..meta.len).unwrap_or_default().to_vec();
                Ok(Incoming::Ike { local, remote: meta.source, bytes })
            }
            event = self.events.recv() => Ok(match event {
                Some(DatapathEvent::Ike { from, to, message }) => {
                    Incoming::Ike { local: to, remote: from, bytes: message }
                }
                Some(other) => Incoming::Datapath(other),
                None => Incoming::Closed,
            }),
        }
    }

    /// Sends what the engine asked for, from the port it named (4500 goes through the data
    /// plane's socket with the non-ESP marker).
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        let from = (!t.local.ip().is_unspecified()).then_some(t.local.ip());
        if t.non_esp_marker || t.local.port() == self.datapath.local_addr().port() {
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
