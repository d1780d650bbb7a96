//! The aovpn packet engine, shared by the gateway and the client: it moves packets between a
//! TUN device and the UDP port 4500 socket through ESP SAs, in both directions. It does no IKE:
//! the IKE side installs SAs and receives events and the IKE datagrams that arrive on 4500.
//!
//! ```text
//! let (dp, mut events) = Datapath::start(DatapathConfig::new(tun.queues, mtu, udp4500))?;
//! dp.install_sa(EspSa { id, inbound, outbound, peer, local, routes, nat_keepalive })?;
//! // rekey: dp.install_sa_replacing(new, old_id, fallback)?;  (receives at once, old still sends)
//! //        initiator: dp.activate_outbound(new_id)?;  both, on the old SA's Delete:
//! //        dp.retire_sa(old_id, linger)?;  (new sends, old receives for `linger`, then goes)
//! // receivers.ike: IkeDatagram { from, to, message } (port 4500, a channel of its own)
//! // receivers.events: SaLimit | UnknownSpi | PeerAddressChanged
//! dp.send_ike(peer, None, &ike_message).await?;
//! let queues = dp.shutdown().await;   // all tasks stopped; TUN queues handed back
//! ```
//!
//! - **Threads**: one tokio task per TUN queue on the caller's runtime. Each task encapsulates
//!   what its queue delivers (a multi-queue TUN spreads flows over tasks, each flow on one
//!   queue); the first task also receives from the UDP socket, because two readers of one socket
//!   reorder packets and TCP takes reordering for loss. [`Datapath::start`] must run inside the
//!   runtime that owns the TUN and socket.
//! - **Offload**: create the TUN with offload (`TunConfig::offload`) and the socket with GSO/GRO
//!   (`UdpConfig::offload`): TCP then crosses the TUN as 64 KiB super-packets both ways, which
//!   measured ~2.5x the throughput of per-packet TUN I/O here (see the `tunnel-bench` example).
//! - **Outbound** (TUN -> UDP): longest-prefix match of the inner destination over the installed
//!   routes (hash for /32 and /128, a short list for prefixes), batch encapsulation into a
//!   reusable buffer, UDP GSO for runs of equal-sized packets to the same peer. No SA: dropped
//!   and counted.
//! - **Inbound** (UDP -> TUN): `recvmmsg` + GRO, demultiplexing (IKE -> event with the marker
//!   stripped, NAT keepalive absorbed, ESP by SPI), in-place decapsulation, anti-spoofing (the
//!   inner source must lie in the SA's routes), batched TUN writes.
//! - **SA table**: an immutable snapshot swapped on install/remove; workers pick up a new one
//!   before their next batch. A new snapshot is a copy of the last one changed where the SA
//!   table changed; the copy shares everything else (copy-on-write shards), so installing an SA
//!   with host routes (a gateway's per-client /32) does not cost more with 10,000 installed. Each SA's halves have their own mutex, so outbound sequence
//!   numbers stay unique and the replay window has one owner at a time.
//! - **Rekeying without loss** (RFC 7296 2.8): the SA that replaces another receives at once
//!   but sends only once the peer is known to receive on it: at once for the rekey initiator
//!   (the responder installed it before answering), on the old SA's Delete (or a fallback
//!   timeout) for the responder. A retired SA keeps receiving for a short linger, for ESP that
//!   was in flight when the peer switched.
//! - **Ownership**: the caller creates the TUN (addresses, routes) and the socket, and removes
//!   the routes/addresses after [`DatapathHandle::shutdown`], which returns the TUN queues.
//! - **Events**: a bounded channel; unknown-SPI reports (rate-limited) are dropped and counted
//!   when it is full; SA limit and peer-address events are never dropped. IKE datagrams from
//!   port 4500 have a bounded channel of their own, so that nothing else can crowd them out.
//! - **NAT keepalives**: a 0xFF datagram every `keepalive_interval` to the peer of each SA
//!   installed with `nat_keepalive` (sent whether or not ESP flowed meanwhile); received ones
//!   are absorbed.
//! - **Counters**: [`DatapathHandle::counters`] (totals) and [`DatapathHandle::sa_counters`].
//!
//! Not supported yet: several UDP sockets (IPv4 and IPv6 outer addresses need two data planes
//! today) and parallel inbound decryption (one task receives; a gateway could shard it by peer
//! with SO_REUSEPORT sockets).
//!
//! May depend on: `esp`, `netio`.
//! Start reading: the overview above, then `worker.rs`.

mod counters;
mod handle;
mod routes;
mod sa;
mod selector;
mod shards;
mod worker;

pub use counters::DatapathCounters;
pub use handle::{
    DEFAULT_EVENT_CAPACITY, DEFAULT_IKE_CAPACITY, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_REKEY_SEND_FALLBACK, DEFAULT_RETIRE_LINGER, Datapath, DatapathConfig, DatapathError,
    DatapathEvent, DatapathHandle, DatapathReceivers, Direction, IkeDatagram,
};
pub use routes::{RouteTable, inner_destination, inner_source};
pub use sa::{EspSa, EspSaId, SaCounters};
pub use selector::{Refusal, Selector, Selectors};
