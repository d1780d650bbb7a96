//! What crosses the engine's boundary with a datagram: the path it travels (the two
//! addresses, and which of the two IKE sockets), when it arrives on both clocks the engine
//! needs, and the datagrams the engine asks to be sent.

use std::net::SocketAddr;
use std::time::Instant;

/// The moment an input reaches the engine, on both clocks it needs: `instant` for its timers
/// (monotonic; a driver that sleeps through suspend advances it by the time asleep) and
/// `unix`, seconds since the epoch, that certificates are checked against. The engine reads
/// no clock of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, for retransmissions, lifetimes and liveness checks.
    pub instant: Instant,
    /// Wall-clock seconds since the Unix epoch, for certificate validity.
    pub unix: u64,
}

impl Now {
    /// Both readings.
    pub fn new(instant: Instant, unix: u64) -> Self {
        Self { instant, unix }
    }
}

/// The way an IKE datagram travels: between `local` and `remote`, on the IKE socket (port
/// 500) or on the NAT-T socket (`natt`: the port ESP-in-UDP shares, where IKE carries the
/// 4-byte non-ESP marker, RFC 3948 2.2). A driver says which socket a datagram came on; an
/// IKE SA says which to send on. Nothing compares port numbers to find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Our address: where the datagram arrived (IP_PKTINFO; the bound address is fine when
    /// unknown), or where it is sent from.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// On the NAT-T socket (with the non-ESP marker, stripped on receipt).
    pub natt: bool,
}

impl Path {
    /// A path on the IKE socket (port 500).
    pub fn ike(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local,
            remote,
            natt: false,
        }
    }

    /// A path on the NAT-T socket.
    pub fn natt(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local,
            remote,
            natt: true,
        }
    }
}

/// One IKE datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address. Its IP is the one the peer's datagram arrived on; its port is the
    /// engine's name for the socket (a driver may bind the NAT-T socket to any port), and
    /// `natt` is what picks the socket.
    pub local: SocketAddr,
    /// Destination.
    pub remote: SocketAddr,
    /// Send on the NAT-T socket, prefixed with the 4-byte zero non-ESP marker (RFC 3948 2.2).
    pub natt: bool,
    /// The IKE message, WITHOUT the non-ESP marker.
    pub bytes: Vec<u8>,
}

impl Transmit {
    /// The path as the receiver sees it: what an in-process peer (tests, load generators)
    /// hands its engine when it delivers this datagram.
    pub fn arrival(&self) -> Path {
        Path {
            local: self.remote,
            remote: self.local,
            natt: self.natt,
        }
    }
}
