//! The per-queue worker: one tokio task owns one TUN queue. Every worker moves its queue's
//! packets out (the kernel spreads flows over the queues by hash, so each flow stays in order);
//! only the first worker also receives from the UDP socket: two workers draining one socket
//! would reorder a flow's packets, which TCP takes for loss.
//!
//! Outbound: a TUN read (one packet, or a split TSO super-packet when TUN offload is on) is
//! encapsulated at once into a caller-owned [`BatchBuf`]; further reads that are already
//! available are drained without waiting (up to [`TUN_READS_PER_ROUND`]), then the ESP packets go
//! out grouped into UDP GSO sends (equal sizes, same peer). Inbound: one `recvmmsg` (with GRO)
//! fills up to [`RECV_BATCH`] buffers; each datagram is classified, ESP is decapsulated in place,
//! its inner source checked against the SA, and the inner packets are written to the TUN in a
//! batch (coalesced by the TUN's GRO when offload is on). This crate allocates per packet only
//! for IKE datagrams handed to the IKE side; tun-rs's TUN GRO (offload on) still copies each TCP
//! segment it examines into a temporary `Vec`.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esp::{BatchBuf, Decapsulated, PacketList, Udp4500, classify_udp4500};
use futures::FutureExt;
use netio::tun::{TUN_SEND_HEADROOM, TunBatch, TunQueue};
use netio::udp::{DatagramMeta, GRO_BUF_SIZE, OutDatagrams, RECV_BATCH, UdpSocket};
use tokio::sync::watch;

use crate::counters::DatapathCounters;
use crate::handle::Shared;
use crate::routes::inner_destination;
use crate::sa::{PeerPath, SaSlot, Tables, lock};
use crate::selector::Refusal;
use crate::{DatapathEvent, Direction, IkeDatagram};

/// ESP packets one worker collects before sending them.
const BATCH: usize = netio::tun::IDEAL_BATCH_SIZE;
/// Packets one offloaded TUN read can split into: a 64 KiB TSO super-packet of minimum-size
/// TCP segments (Linux `tcp_min_snd_mss` = 48 bytes of payload). A read whose segments do not
/// all fit is lost whole, so size for the worst case (one MTU-sized buffer each, ~2 MB).
const TUN_READ_SLOTS_OFFLOAD: usize = 65_535 / 48 + 1;
/// Decapsulated packets collected before one batched TUN write.
const TUN_WRITE_BATCH: usize = 64;
/// Capacity of each TUN write buffer when TUN offload is on: tun-rs coalesces a flow's
/// segments into the first buffer of the flow only if it can hold a whole 64 KiB super-packet
/// (it never reallocates).
const TUN_COALESCE_CAPACITY: usize = 2 * TUN_SEND_HEADROOM + 65_535;
/// TUN reads drained (without waiting) before the collected ESP packets are sent.
const TUN_READS_PER_ROUND: usize = 64;
/// Largest UDP payload of one GSO send: the whole super-datagram must fit in one IPv4 packet.
const MAX_GSO_BYTES: usize = esp::MAX_ESP_PACKET_LEN;
/// Per-worker minimum gap between two `UnknownSpi` events (an attacker controls the rate).
const UNKNOWN_SPI_EVENT_GAP: Duration = Duration::from_millis(100);
/// Largest ESP overhead (header, IV, padding, trailer, ICV) over the inner packet.
const MAX_ESP_OVERHEAD: usize = 8 + 16 + 15 + 2 + 32;

/// Packets `start..end` of a TUN batch, as an `esp` packet list.
struct TunSlice<'a> {
    batch: &'a TunBatch,
    start: usize,
    end: usize,
}

impl PacketList for TunSlice<'_> {
    fn count(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    fn packet(&self, i: usize) -> Option<&[u8]> {
        let at = self.start.checked_add(i)?;
        if at >= self.end {
            return None;
        }
        self.batch.packet(at)
    }
}

enum Ready {
    Stop,
    TablesChanged,
    Tun(io::Result<usize>),
    Udp(io::Result<usize>),
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    tun: TunQueue,
    shutdown: watch::Receiver<bool>,
    /// Wakes an idle worker when SAs change, so removed SAs (and their keys) are let go at once.
    tables_changed: watch::Receiver<u64>,
    generation: u64,
    tables: Arc<Tables>,
    counts: DatapathCounters,
    consecutive_errors: u32,
    // Outbound.
    tun_batch: TunBatch,
    esp_out: BatchBuf,
    /// Destination of each segment of `esp_out`.
    esp_dest: Vec<PeerPath>,
    max_gso: usize,
    // Inbound (only the first worker receives from the UDP socket).
    receives_udp: bool,
    udp_buf: Box<[u8]>,
    metas: [DatagramMeta; RECV_BATCH],
    tun_out: Vec<Vec<u8>>,
    tun_out_len: usize,
    last_unknown_spi_event: Option<Instant>,
}

impl Worker {
    /// A worker for one TUN queue; `receives_udp` makes it also the inbound worker.
    pub(crate) fn new(
        shared: Arc<Shared>,
        tun: TunQueue,
        mtu: usize,
        receives_udp: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (generation, tables) = shared.tables();
        let tables_changed = shared.subscribe_tables();
        let (tun_read_slots, tun_write_capacity) = if tun.offload() {
            (TUN_READ_SLOTS_OFFLOAD, TUN_COALESCE_CAPACITY)
        } else {
            (1, TUN_SEND_HEADROOM + mtu)
        };
        let max_gso = shared.udp.max_gso_segments().max(1);
        Self {
            shared,
            tun,
            shutdown,
            tables_changed,
            generation,
            tables,
            counts: DatapathCounters::default(),
            consecutive_errors: 0,
            tun_batch: TunBatch::new(tun_read_slots, mtu),
            esp_out: BatchBuf::new(BATCH * (mtu + MAX_ESP_OVERHEAD), BATCH),
            esp_dest: Vec::with_capacity(BATCH),
            max_gso,
            receives_udp,
            udp_buf: if receives_udp {
                vec![0u8; RECV_BATCH * GRO_BUF_SIZE].into_boxed_slice()
            } else {
                Box::default()
            },
            metas: [DatagramMeta::default(); RECV_BATCH],
            tun_out: (0..if receives_udp { TUN_WRITE_BATCH } else { 0 })
                .map(|_| Vec::with_capacity(tun_write_capacity))
                .collect(),
            tun_out_len: 0,
            last_unknown_spi_event: None,
        }
    }

    /// Runs until shutdown; gives the TUN queue back.
    pub(crate) async fn run(mut self) -> TunQueue {
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let ready = {
                let Worker {
                    tun,
                    tun_batch,
                    shared,
                    udp_buf,
                    metas,
                    shutdown,
                    tables_changed,
                    receives_udp,
                    ..
                } = &mut self;
                tokio::select! {
                    _ = shutdown.changed() => Ready::Stop,
                    _ = tables_changed.changed() => Ready::TablesChanged,
                    r = tun.recv_batch(tun_batch) => Ready::Tun(r),
                    r = recv_udp(&shared.udp, udp_buf, metas), if *receives_udp => Ready::Udp(r),
                }
            };
            // Install/remove may have happened while waiting: use the current SAs.
            self.refresh_tables();
            match ready {
                Ready::Stop => break,
                Ready::TablesChanged => {}
                Ready::Tun(Ok(_)) => {
                    self.consecutive_errors = 0;
                    self.outbound_round().await;
                }
                Ready::Udp(Ok(n)) => {
                    self.consecutive_errors = 0;
                    self.inbound(n).await;
                }
                Ready::Tun(Err(e)) | Ready::Udp(Err(e)) => self.receive_error(&e).await,
            }
            self.shared.counters.add(&self.counts);
            self.counts = DatapathCounters::default();
        }
        self.shared.counters.add(&self.counts);
        self.tun
    }

    async fn receive_error(&mut self, e: &io::Error) {
        self.counts.rx_errors += 1;
        self.consecutive_errors = self.consecutive_errors.saturating_add(1);
        tracing::debug!(error = %e, "datapath receive error");
        // A persistent error (device gone) must not spin a core.
        if self.consecutive_errors > 16 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn refresh_tables(&mut self) {
        if self.shared.generation() != self.generation {
            (self.generation, self.tables) = self.shared.tables();
        }
    }

    async fn outbound_round(&mut self) {
        self.encapsulate_read().await;
        for _ in 1..TUN_READS_PER_ROUND {
            match self.tun.recv_batch(&mut self.tun_batch).now_or_never() {
                Some(Ok(_)) => self.encapsulate_read().await,
                Some(Err(_)) => {
                    self.counts.rx_errors += 1;
                    break;
                }
                None => break,
            }
        }
        self.flush_udp().await;
    }

    fn route(&self, packet: &[u8]) -> Option<&Arc<SaSlot>> {
        inner_destination(packet).and_then(|d| self.tables.routes.lookup(d))
    }

    /// Encapsulates the packets of the last TUN read, run by run of packets for the same SA.
    async fn encapsulate_read(&mut self) {
        let n = self.tun_batch.len();
        self.counts.tun_rx_packets += n as u64;
        self.counts.tun_rx_bytes += self
            .tun_batch
            .packets()
            .map(|p| p.len() as u64)
            .sum::<u64>();
        let mut i = 0;
        while i < n {
            let packet = self.tun_batch.packet(i).unwrap_or_default();
            let Some(sa) = self.route(packet).cloned() else {
                if inner_destination(packet).is_some() {
                    self.counts.no_route += 1;
                } else {
                    self.counts.encap_dropped += 1;
                }
                i += 1;
                continue;
            };
            if sa.selectors.check_outbound(packet).is_err() {
                self.counts.outbound_refused += 1;
                sa.outbound_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < n {
                let next = self.tun_batch.packet(end).unwrap_or_default();
                if !self.route(next).is_some_and(|s| Arc::ptr_eq(s, &sa))
                    || sa.selectors.check_outbound(next).is_err()
                {
                    break;
                }
                end += 1;
            }
            self.encapsulate_run(&sa, i, end).await;
            i = end;
        }
    }

    async fn encapsulate_run(&mut self, sa: &SaSlot, start: usize, end: usize) {
        let path = sa.path();
        let mut next = start;
        while next < end {
            let report = {
                let mut out = lock(&sa.outbound);
                let list = TunSlice {
                    batch: &self.tun_batch,
                    start: next,
                    end,
                };
                let report = out.encapsulate_batch(&list, &mut self.esp_out);
                while let Some(event) = out.poll_event() {
                    self.shared.emit(
                        DatapathEvent::SaLimit {
                            id: sa.id,
                            direction: Direction::Outbound,
                            event,
                        },
                        &mut self.counts,
                    );
                }
                report
            };
            for _ in 0..report.sealed {
                self.esp_dest.push(path);
            }
            self.counts.encapsulated += report.sealed as u64;
            self.counts.encap_dropped += report.skipped as u64;
            next += report.consumed;
            if report.stopped.is_some() {
                // The SA refuses to send (exhausted or expired): the rest of the run is lost.
                self.counts.encap_dropped += (end - next) as u64;
                break;
            }
            if next < end {
                if report.consumed == 0 && self.esp_out.is_empty() {
                    // Cannot fit even into an empty buffer: drop it rather than loop.
                    self.counts.encap_dropped += 1;
                    next += 1;
                    continue;
                }
                self.flush_udp().await;
            }
        }
    }

    /// Sends the collected ESP packets: runs of equal-sized segments to the same peer go out as
    /// one GSO send (the last segment of a run may be shorter).
    async fn flush_udp(&mut self) {
        let bytes = self.esp_out.bytes();
        let mut i = 0;
        let mut offset = 0;
        while let Some(group) = gso_group(
            &self.esp_out,
            &self.esp_dest,
            i,
            self.max_gso,
            MAX_GSO_BYTES,
        ) {
            let (Some(dest), Some(contents)) = (
                self.esp_dest.get(i),
                bytes.get(offset..offset + group.bytes),
            ) else {
                break;
            };
            let item = OutDatagrams {
                destination: dest.peer,
                source_ip: dest.local,
                contents,
                segment_size: (group.segments > 1).then_some(group.segment_size),
            };
            match self
                .shared
                .udp
                .send_batch(std::slice::from_ref(&item))
                .await
            {
                Ok(sent) => self.counts.udp_tx_datagrams += sent as u64,
                Err(e) => {
                    self.counts.udp_tx_errors += 1;
                    tracing::debug!(error = %e, peer = %dest.peer, "ESP send failed");
                }
            }
            i += group.segments;
            offset += group.bytes;
        }
        self.esp_out.clear();
        self.esp_dest.clear();
    }

    /// Handles `got` filled receive buffers.
    async fn inbound(&mut self, got: usize) {
        let local_port = self.shared.local.port();
        let local_ip = self.shared.local.ip();
        for m in 0..got.min(RECV_BATCH) {
            let Some(meta) = self.metas.get(m).copied() else {
                break;
            };
            let base = m * GRO_BUF_SIZE;
            let Some(buf) = self
                .udp_buf
                .get_mut(base..base + meta.len.min(GRO_BUF_SIZE))
            else {
                continue;
            };
            let stride = if meta.stride == 0 {
                meta.len.max(1)
            } else {
                meta.stride
            };
            for datagram in buf.chunks_mut(stride) {
                self.counts.udp_rx_datagrams += 1;
                let spi = match classify_udp4500(datagram) {
                    Udp4500::Esp { spi } => spi,
                    Udp4500::Keepalive => {
                        self.counts.keepalives_rx += 1;
                        continue;
                    }
                    Udp4500::Ike(message) => {
                        self.counts.ike_rx += 1;
                        let to = SocketAddr::new(meta.destination.unwrap_or(local_ip), local_port);
                        self.shared.deliver_ike(
                            IkeDatagram {
                                from: meta.source,
                                to,
                                message: message.to_vec(),
                            },
                            &mut self.counts,
                        );
                        continue;
                    }
                    Udp4500::Invalid => {
                        self.counts.invalid_rx += 1;
                        continue;
                    }
                };
                let Some(sa) = self.tables.by_spi.get(&spi) else {
                    self.counts.unknown_spi += 1;
                    let now = Instant::now();
                    if self
                        .last_unknown_spi_event
                        .is_none_or(|t| now.duration_since(t) >= UNKNOWN_SPI_EVENT_GAP)
                    {
                        self.last_unknown_spi_event = Some(now);
                        self.shared.emit(
                            DatapathEvent::UnknownSpi {
                                from: meta.source,
                                spi,
                            },
                            &mut self.counts,
                        );
                    }
                    continue;
                };
                let result = {
                    let mut inbound = lock(&sa.inbound);
                    let result = inbound.decapsulate_in_place(datagram);
                    while let Some(event) = inbound.poll_event() {
                        self.shared.emit(
                            DatapathEvent::SaLimit {
                                id: sa.id,
                                direction: Direction::Inbound,
                                event,
                            },
                            &mut self.counts,
                        );
                    }
                    result
                };
                let range = match result {
                    Ok(Decapsulated::Packet { range, .. }) => range,
                    Ok(Decapsulated::Dummy) => continue,
                    Err(_) => {
                        self.counts.decap_failed += 1;
                        continue;
                    }
                };
                let Some(inner) = datagram.get(range) else {
                    continue;
                };
                match sa.selectors.check_inbound(inner) {
                    Ok(()) => {}
                    Err(Refusal::Destination) => {
                        self.counts.inbound_destination_refused += 1;
                        sa.inbound_destination_refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    Err(Refusal::Source | Refusal::Malformed) => {
                        self.counts.spoofed += 1;
                        sa.spoofed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                }
                self.counts.decapsulated += 1;
                check_peer(&self.shared, sa, meta.source, &mut self.counts);
                if let Some(slot) = self.tun_out.get_mut(self.tun_out_len) {
                    slot.clear();
                    slot.resize(TUN_SEND_HEADROOM, 0);
                    slot.extend_from_slice(inner);
                    self.tun_out_len += 1;
                }
                if self.tun_out_len >= self.tun_out.len() {
                    flush_tun(
                        &mut self.tun,
                        &mut self.tun_out,
                        &mut self.tun_out_len,
                        &mut self.counts,
                    )
                    .await;
                }
            }
        }
        flush_tun(
            &mut self.tun,
            &mut self.tun_out,
            &mut self.tun_out_len,
            &mut self.counts,
        )
        .await;
    }
}

/// Reports (once per new address) ESP that authenticated but came from another address than
/// the SA's peer: a NAT rebinding or a MOBIKE move. The IKE side decides whether to follow it
/// (an attacker can race a captured packet from elsewhere, so ESP alone does not move the SA).
fn check_peer(shared: &Shared, sa: &SaSlot, source: SocketAddr, counts: &mut DatapathCounters) {
    let expected = sa.path().peer;
    if expected == source {
        return;
    }
    let mut reported = lock(&sa.reported_source);
    if *reported == Some(source) {
        return;
    }
    *reported = Some(source);
    drop(reported);
    shared.emit(
        DatapathEvent::PeerAddressChanged {
            id: sa.id,
            expected,
            seen: source,
        },
        counts,
    );
}

/// One GSO send: `segments` consecutive segments, `bytes` in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GsoGroup {
    segments: usize,
    segment_size: usize,
    bytes: usize,
}

/// The GSO send starting at segment `start`: following segments join while they go to the same
/// destination and have the first one's size (a shorter one joins and ends the group), up to
/// `max_segments` segments and `max_bytes` bytes. `None` past the end.
fn gso_group<D: PartialEq>(
    buf: &BatchBuf,
    dests: &[D],
    start: usize,
    max_segments: usize,
    max_bytes: usize,
) -> Option<GsoGroup> {
    let segment_size = buf.get(start)?.len();
    let dest = dests.get(start)?;
    let mut group = GsoGroup {
        segments: 1,
        segment_size,
        bytes: segment_size,
    };
    while group.segments < max_segments {
        let j = start + group.segments;
        let (Some(p), Some(d)) = (buf.get(j), dests.get(j)) else {
            break;
        };
        if p.len() > segment_size || d != dest || group.bytes + p.len() > max_bytes {
            break;
        }
        group.bytes += p.len();
        group.segments += 1;
        if p.len() < segment_size {
            break;
        }
    }
    Some(group)
}

async fn flush_tun(
    tun: &mut TunQueue,
    bufs: &mut [Vec<u8>],
    len: &mut usize,
    counts: &mut DatapathCounters,
) {
    let n = std::mem::take(len);
    let Some(batch) = bufs.get_mut(..n) else {
        return;
    };
    if batch.is_empty() {
        return;
    }
    match tun.send_batch(batch).await {
        Ok(_) => counts.tun_tx_packets += n as u64,
        Err(e) => {
            counts.tun_tx_errors += 1;
            tracing::debug!(error = %e, "TUN write failed");
        }
    }
}

async fn recv_udp(
    udp: &UdpSocket,
    buf: &mut [u8],
    metas: &mut [DatagramMeta],
) -> io::Result<usize> {
    let mut chunks = buf.chunks_mut(GRO_BUF_SIZE);
    let mut slices: [IoSliceMut<'_>; RECV_BATCH] =
        std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
    udp.recv_batch(&mut slices, metas).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_list(
        sizes: &[(usize, u8)],
        max_segments: usize,
        max_bytes: usize,
    ) -> Vec<(usize, usize, usize)> {
        let mut buf = BatchBuf::new(1 << 16, 64);
        let mut dests = Vec::new();
        for &(len, dest) in sizes {
            assert!(buf.push(&vec![dest; len], 0));
            dests.push(dest);
        }
        let mut out = Vec::new();
        let mut i = 0;
        let mut bytes = 0;
        while let Some(g) = gso_group(&buf, &dests, i, max_segments, max_bytes) {
            out.push((g.segments, g.segment_size, g.bytes));
            i += g.segments;
            bytes += g.bytes;
        }
        assert_eq!(i, sizes.len(), "every segment in exactly one group");
        assert_eq!(bytes, buf.bytes().len());
        out
    }

    #[test]
    fn groups_equal_sizes_per_destination() {
        let sizes = [
            (100, 1),
            (100, 1),
            (60, 1), // shorter: ends the group
            (100, 1),
            (100, 2), // other peer
            (100, 2),
            (120, 2), // larger: new group
        ];
        assert_eq!(
            group_list(&sizes, 64, 65_507),
            vec![(3, 100, 260), (1, 100, 100), (2, 100, 200), (1, 120, 120)]
        );
    }

    #[test]
    fn groups_respect_segment_and_byte_limits() {
        let sizes = [(100, 1); 7];
        assert_eq!(
            group_list(&sizes, 3, 65_507),
            vec![(3, 100, 300), (3, 100, 300), (1, 100, 100)]
        );
        assert_eq!(
            group_list(&sizes, 64, 250),
            vec![(2, 100, 200), (2, 100, 200), (2, 100, 200), (1, 100, 100)]
        );
        assert!(group_list(&[], 64, 65_507).is_empty());
    }
}
