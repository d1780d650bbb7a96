//! Security associations: outbound (encapsulate) and inbound (decapsulate).
//!
//! Sequence numbers are `u64`. Without extended sequence numbers (the default) they stop at
//! 2^32 - 1; with ESN (RFC 4303 section 2.2.1, `esn: true` in both configs, as negotiated by
//! IKE) the high 32 bits are authenticated but not sent, and the receiver infers them from its
//! replay window (RFC 4303 appendix A2).

use core::ops::Range;

use crate::batch::{BatchBuf, PacketList};
use crate::cipher::{CipherState, OpenError};
use crate::error::{DecapError, EncapError, KeyError};
use crate::framing::{ESP_HEADER_LEN, ESP_TRAILER_LEN};
use crate::replay::{DEFAULT_REPLAY_WINDOW, ReplayWindow};
use crate::transform::DirectionKeys;

/// Largest ESP packet we build: the largest UDP payload over IPv4.
pub const MAX_ESP_PACKET_LEN: usize = 65_507;
/// Highest sequence number an SA without ESN may send; the next packet needs a new SA.
pub const MAX_SEQ_32: u64 = u32::MAX as u64;
/// Highest sequence number an SA with ESN may send.
pub const MAX_SEQ_64: u64 = u64::MAX - 1;
/// Default soft limit on the sequence number: leaves 2^16 packets to finish a rekey.
pub const DEFAULT_SOFT_SEQ: u64 = (1u64 << 32) - (1u64 << 16);
/// Default soft limit on the sequence number with ESN.
pub const DEFAULT_SOFT_SEQ_ESN: u64 = u64::MAX - (1u64 << 32);

/// Protocol numbers of the ESP next-header field (IANA protocol numbers).
pub mod next_header {
    /// IPv4 in tunnel mode.
    pub const IPV4: u8 = 4;
    /// IPv6 in tunnel mode.
    pub const IPV6: u8 = 41;
    /// Dummy packet for traffic flow confidentiality (RFC 4303 section 2.6): dropped silently.
    pub const NO_NEXT_HEADER: u8 = 59;
}

/// Which limit an event or error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Outbound sequence number.
    Sequence,
    /// Inner bytes protected by the SA.
    Bytes,
    /// Packets protected by the SA.
    Packets,
}

/// Notifications for the IKE side. Each fires at most once per SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaEvent {
    /// A soft limit was reached: start a rekey (CREATE_CHILD_SA).
    RekeyNeeded(LimitKind),
    /// A hard limit was reached: the SA refuses traffic from now on and must be deleted.
    Expired(LimitKind),
}

impl SaEvent {
    fn bit(self) -> u8 {
        let kind = match self {
            Self::RekeyNeeded(k) | Self::Expired(k) => k as u8,
        };
        let hard = matches!(self, Self::Expired(_)) as u8;
        1 << (kind * 2 + hard)
    }

    const ALL: [SaEvent; 6] = [
        Self::RekeyNeeded(LimitKind::Sequence),
        Self::Expired(LimitKind::Sequence),
        Self::RekeyNeeded(LimitKind::Bytes),
        Self::Expired(LimitKind::Bytes),
        Self::RekeyNeeded(LimitKind::Packets),
        Self::Expired(LimitKind::Packets),
    ];
}

/// Byte and packet lifetimes (RFC 4301 section 4.4.2.1). `u64::MAX` means no limit. Time-based
/// lifetimes belong to the IKE side, which has a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Soft byte limit (inner bytes).
    pub soft_bytes: u64,
    /// Hard byte limit (inner bytes).
    pub hard_bytes: u64,
    /// Soft packet limit.
    pub soft_packets: u64,
    /// Hard packet limit.
    pub hard_packets: u64,
}

impl Default for Lifetime {
    fn default() -> Self {
        Self {
            soft_bytes: u64::MAX,
            hard_bytes: u64::MAX,
            soft_packets: u64::MAX,
            hard_packets: u64::MAX,
        }
    }
}

/// Pending events plus the ones already delivered, so each fires once.
#[derive(Debug, Clone, Copy, Default)]
struct EventFlags {
    pending: u8,
    raised: u8,
}

impl EventFlags {
    fn raise(&mut self, ev: SaEvent) {
        let bit = ev.bit();
        if self.raised & bit == 0 {
            self.raised |= bit;
            self.pending |= bit;
        }
    }

    fn poll(&mut self) -> Option<SaEvent> {
        let ev = SaEvent::ALL
            .into_iter()
            .find(|e| self.pending & e.bit() != 0)?;
        self.pending &= !ev.bit();
        Some(ev)
    }
}

/// Outbound SA settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Sequence number at which [`SaEvent::RekeyNeeded`]`(Sequence)` fires.
    pub soft_seq: u64,
    /// Byte/packet lifetimes.
    pub lifetime: Lifetime,
    /// Extended (64-bit) sequence numbers, if negotiated.
    pub esn: bool,
    /// Traffic flow confidentiality padding (RFC 4303 section 2.7): inner packets shorter than
    /// this are followed by zeros up to this length, hiding their size. 0 (default) = off.
    pub tfc_pad_to: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            soft_seq: DEFAULT_SOFT_SEQ,
            lifetime: Lifetime::default(),
            esn: false,
            tfc_pad_to: 0,
        }
    }
}

impl OutboundConfig {
    /// Defaults for an SA with extended sequence numbers.
    pub fn with_esn() -> Self {
        Self {
            soft_seq: DEFAULT_SOFT_SEQ_ESN,
            esn: true,
            ..Self::default()
        }
    }
}

/// Outbound counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundCounters {
    /// Packets encapsulated.
    pub packets: u64,
    /// Inner bytes encapsulated.
    pub bytes: u64,
    /// Inner packets refused because they were not IPv4/IPv6 or too large.
    pub invalid_inner: u64,
    /// Packets refused because the SA is exhausted or expired.
    pub refused: u64,
}

/// The sending half of a Child SA.
#[derive(Debug)]
pub struct OutboundSa {
    spi: u32,
    cipher: CipherState,
    /// Sequence number of the next packet.
    next_seq: u64,
    config: OutboundConfig,
    counters: OutboundCounters,
    events: EventFlags,
}

/// Result of a batch encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncapBatchReport {
    /// Input packets processed (sealed or skipped); resume from this index.
    pub consumed: usize,
    /// Packets appended to the output buffer.
    pub sealed: usize,
    /// Input packets skipped as invalid.
    pub skipped: usize,
    /// Why the batch stopped early (`None`: all consumed, or the output buffer is full).
    pub stopped: Option<EncapError>,
}

fn inner_next_header(inner: &[u8]) -> Option<u8> {
    match inner.first()? >> 4 {
        4 if inner.len() >= 20 => Some(next_header::IPV4),
        6 if inner.len() >= 40 => Some(next_header::IPV6),
        _ => None,
    }
}

impl OutboundSa {
    /// A new outbound SA with default limits.
    pub fn new(spi: u32, keys: &DirectionKeys) -> Result<Self, KeyError> {
        Self::with_config(spi, keys, OutboundConfig::default())
    }

    /// A new outbound SA.
    pub fn with_config(
        spi: u32,
        keys: &DirectionKeys,
        config: OutboundConfig,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            spi,
            cipher: CipherState::new(keys)?,
            next_seq: 1,
            config,
            counters: OutboundCounters::default(),
            events: EventFlags::default(),
        })
    }

    /// The peer's SPI, sent in every packet.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Counters so far.
    pub fn counters(&self) -> &OutboundCounters {
        &self.counters
    }

    /// Sequence number the next packet will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Next pending event for the IKE side, if any.
    pub fn poll_event(&mut self) -> Option<SaEvent> {
        self.events.poll()
    }

    /// Length of the ESP packet (UDP payload) for an inner packet of `inner_len` bytes.
    pub fn encapsulated_len(&self, inner_len: usize) -> usize {
        self.cipher.packet_len(self.data_len(inner_len))
    }

    /// Inner packet plus TFC padding.
    fn data_len(&self, inner_len: usize) -> usize {
        inner_len.max(self.config.tfc_pad_to.min(MAX_ESP_PACKET_LEN))
    }

    /// Refuse if sending `inner_len` more bytes would cross a hard limit.
    fn admit(&mut self, inner_len: usize) -> Result<u64, EncapError> {
        let seq = self.next_seq;
        let limits = &self.config.lifetime;
        let max_seq = if self.config.esn {
            MAX_SEQ_64
        } else {
            MAX_SEQ_32
        };
        let refusal = if seq > max_seq {
            Some((EncapError::SequenceExhausted, LimitKind::Sequence))
        } else if self.counters.packets >= limits.hard_packets {
            Some((
                EncapError::LifetimeExpired(LimitKind::Packets),
                LimitKind::Packets,
            ))
        } else if self.counters.bytes.saturating_add(inner_len as u64) > limits.hard_bytes {
            Some((
                EncapError::LifetimeExpired(LimitKind::Bytes),
                LimitKind::Bytes,
            ))
        } else {
            None
        };
        if let Some((err, kind)) = refusal {
            self.counters.refused += 1;
            self.events.raise(SaEvent::Expired(kind));
            return Err(err);
        }
        Ok(seq)
    }

    fn account(&mut self, seq: u64, inner_len: usize) {
        self.next_seq = seq + 1;
        self.counters.packets += 1;
        self.counters.bytes = self.counters.bytes.saturating_add(inner_len as u64);
        let limits = self.config.lifetime;
        if seq >= self.config.soft_seq {
            self.events.raise(SaEvent::RekeyNeeded(LimitKind::Sequence));
        }
        if self.counters.packets >= limits.soft_packets {
            self.events.raise(SaEvent::RekeyNeeded(LimitKind::Packets));
        }
        if self.counters.bytes >= limits.soft_bytes {
            self.events.raise(SaEvent::RekeyNeeded(LimitKind::Bytes));
        }
    }

    /// Encapsulate one inner IP packet into `out`; returns the ESP packet length (the UDP
    /// payload for port 4500).
    pub fn encapsulate(&mut self, inner: &[u8], out: &mut [u8]) -> Result<usize, EncapError> {
        let Some(nh) = inner_next_header(inner) else {
            self.counters.invalid_inner += 1;
            return Err(EncapError::InvalidInnerPacket);
        };
        let len = self.encapsulated_len(inner.len());
        if len > MAX_ESP_PACKET_LEN {
            self.counters.invalid_inner += 1;
            return Err(EncapError::PacketTooLarge { len });
        }
        let Some(packet) = out.get_mut(..len) else {
            return Err(EncapError::BufferTooSmall { needed: len });
        };
        let seq = self.admit(inner.len())?;
        self.write_and_seal(packet, inner, nh, seq)?;
        self.account(seq, inner.len());
        Ok(len)
    }

    fn write_and_seal(
        &self,
        packet: &mut [u8],
        inner: &[u8],
        nh: u8,
        seq: u64,
    ) -> Result<(), EncapError> {
        let data_len = self.data_len(inner.len());
        let (payload_len, pad_len) = self.cipher.payload_len(data_len);
        let start = ESP_HEADER_LEN + self.cipher.transform().iv_len();
        let payload = packet
            .get_mut(start..start + payload_len)
            .ok_or(EncapError::Crypto)?;
        let (data, rest) = payload.split_at_mut(data_len);
        let (packet_part, tfc) = data.split_at_mut(inner.len());
        packet_part.copy_from_slice(inner);
        tfc.fill(0);
        let (padding, trailer) = rest.split_at_mut(pad_len);
        // RFC 4303 section 2.4: padding bytes are 1, 2, 3, ...
        for (i, b) in padding.iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        trailer.copy_from_slice(&[pad_len as u8, nh]);
        let hdr = packet.get_mut(..ESP_HEADER_LEN).ok_or(EncapError::Crypto)?;
        hdr[..4].copy_from_slice(&self.spi.to_be_bytes());
        hdr[4..].copy_from_slice(&(seq as u32).to_be_bytes());
        self.cipher
            .seal(packet, seq, self.config.esn)
            .map_err(|()| EncapError::Crypto)
    }

    /// Encapsulate many packets, appending one segment per ESP packet to `out`. Stops at the
    /// first packet that does not fit in `out` or when the SA refuses to send; invalid inner
    /// packets are skipped and counted. No allocation.
    pub fn encapsulate_batch<P: PacketList + ?Sized>(
        &mut self,
        packets: &P,
        out: &mut BatchBuf,
    ) -> EncapBatchReport {
        let mut report = EncapBatchReport::default();
        for i in 0..packets.count() {
            let Some(inner) = packets.packet(i) else {
                break;
            };
            let len = self.encapsulated_len(inner.len());
            let Some(seg) = out.begin_segment(len) else {
                if len > MAX_ESP_PACKET_LEN || inner_next_header(inner).is_none() {
                    // Would be skipped anyway: don't let it block the batch.
                    self.counters.invalid_inner += 1;
                    report.skipped += 1;
                    report.consumed = i + 1;
                    continue;
                }
                return report;
            };
            match self.encapsulate(inner, seg) {
                Ok(_) => {
                    out.commit_segment(len, self.spi);
                    report.sealed += 1;
                }
                Err(EncapError::InvalidInnerPacket | EncapError::PacketTooLarge { .. }) => {
                    report.skipped += 1;
                }
                Err(e) => {
                    report.stopped = Some(e);
                    return report;
                }
            }
            report.consumed = i + 1;
        }
        report
    }
}

/// Inbound SA settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundConfig {
    /// Anti-replay window in packets (at least [`crate::replay::MIN_REPLAY_WINDOW`]).
    pub replay_window: u32,
    /// Byte/packet lifetimes.
    pub lifetime: Lifetime,
    /// Extended (64-bit) sequence numbers, if negotiated.
    pub esn: bool,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            replay_window: DEFAULT_REPLAY_WINDOW,
            lifetime: Lifetime::default(),
            esn: false,
        }
    }
}

/// Inbound counters: every dropped packet is counted under exactly one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundCounters {
    /// Inner packets delivered.
    pub packets: u64,
    /// Inner bytes delivered.
    pub bytes: u64,
    /// Authenticated dummy packets (next header 59), dropped silently.
    pub dummy: u64,
    /// Too short or impossible length.
    pub malformed: u64,
    /// Duplicate or too old sequence number.
    pub replayed: u64,
    /// ICV check failed.
    pub auth_failed: u64,
    /// Padding bytes or pad length wrong.
    pub bad_padding: u64,
    /// Next header not 4, 41 or 59.
    pub bad_next_header: u64,
    /// Inner packet inconsistent with its next header or length field.
    pub bad_inner: u64,
    /// Refused after a hard lifetime.
    pub expired: u64,
}

/// Outcome of a successful decapsulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decapsulated {
    /// An inner packet at this range of the buffer.
    Packet {
        /// Where the inner IP packet is.
        range: Range<usize>,
        /// [`next_header::IPV4`] or [`next_header::IPV6`].
        next_header: u8,
    },
    /// An authenticated dummy packet (RFC 4303 section 2.6); nothing to deliver.
    Dummy,
}

/// The receiving half of a Child SA.
#[derive(Debug)]
pub struct InboundSa {
    spi: u32,
    cipher: CipherState,
    replay: ReplayWindow,
    config: InboundConfig,
    counters: InboundCounters,
    events: EventFlags,
}

impl InboundSa {
    /// A new inbound SA with default window and limits.
    pub fn new(spi: u32, keys: &DirectionKeys) -> Result<Self, KeyError> {
        Self::with_config(spi, keys, InboundConfig::default())
    }

    /// A new inbound SA.
    pub fn with_config(
        spi: u32,
        keys: &DirectionKeys,
        config: InboundConfig,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            spi,
            cipher: CipherState::new(keys)?,
            replay: ReplayWindow::new(config.replay_window),
            config,
            counters: InboundCounters::default(),
            events: EventFlags::default(),
        })
    }

    /// Our SPI, which the peer puts in every packet.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Counters so far.
    pub fn counters(&self) -> &InboundCounters {
        &self.counters
    }

    /// The anti-replay window.
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Next pending event for the IKE side, if any.
    pub fn poll_event(&mut self) -> Option<SaEvent> {
        self.events.poll()
    }

    /// Decapsulate one ESP packet (a UDP/4500 payload without marker) in place. On success the
    /// inner packet is at the returned range of `packet`. Order (RFC 4303 section 3.4): replay
    /// pre-check, ICV check, window update, decryption result checks (padding, next header).
    pub fn decapsulate_in_place(&mut self, packet: &mut [u8]) -> Result<Decapsulated, DecapError> {
        let result = self.decapsulate_inner(packet);
        if let Err(e) = result {
            let c = &mut self.counters;
            match e {
                DecapError::Malformed | DecapError::UnknownSpi(_) => c.malformed += 1,
                DecapError::Replayed => c.replayed += 1,
                DecapError::AuthenticationFailed => c.auth_failed += 1,
                DecapError::BadPadding => c.bad_padding += 1,
                DecapError::BadNextHeader(_) => c.bad_next_header += 1,
                DecapError::BadInnerPacket => c.bad_inner += 1,
                DecapError::LifetimeExpired(_) => c.expired += 1,
            }
        }
        result
    }

    /// Decapsulate `packet` into `out` (which must hold at least `packet.len()` bytes); the
    /// inner packet is at the returned range of `out`.
    pub fn decapsulate(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Decapsulated, DecapError> {
        let Some(buf) = out.get_mut(..packet.len()) else {
            self.counters.malformed += 1;
            return Err(DecapError::Malformed);
        };
        buf.copy_from_slice(packet);
        self.decapsulate_in_place(buf)
    }

    /// Full sequence number for the low 32 bits received (RFC 4303 appendix A2.2): the value
    /// that places it in or just right of the replay window.
    fn infer_seq(&self, seq_lo: u32) -> u64 {
        let lo = u64::from(seq_lo);
        if !self.config.esn {
            return lo;
        }
        let top = self.replay.highest();
        let (th, tl) = (top >> 32, top & 0xFFFF_FFFF);
        let span = self.replay.size() - 1;
        if tl >= span {
            // The window lies within one 2^32 subspace: below its bottom means the next one.
            if lo >= tl - span {
                (th << 32) | lo
            } else {
                ((th + 1) << 32) | lo
            }
        } else {
            // The window straddles a subspace boundary: above its wrapped bottom means the
            // previous subspace.
            let bottom = (tl + (1u64 << 32) - span) & 0xFFFF_FFFF;
            if lo >= bottom {
                th.checked_sub(1).map_or(lo, |h| (h << 32) | lo)
            } else {
                (th << 32) | lo
            }
        }
    }

    fn decapsulate_inner(&mut self, packet: &mut [u8]) -> Result<Decapsulated, DecapError> {
        let Some(hdr) = packet.get(..ESP_HEADER_LEN) else {
            return Err(DecapError::Malformed);
        };
        let spi = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        if spi != self.spi {
            return Err(DecapError::UnknownSpi(spi));
        }
        let seq = self.infer_seq(u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]));
        // Cheap rejection of replays before any crypto; the window only moves after the ICV
        // check, so a forged packet cannot shift it.
        self.replay.check(seq).map_err(|_| DecapError::Replayed)?;
        let limits = self.config.lifetime;
        if self.counters.packets >= limits.hard_packets {
            self.events.raise(SaEvent::Expired(LimitKind::Packets));
            return Err(DecapError::LifetimeExpired(LimitKind::Packets));
        }
        if self.counters.bytes >= limits.hard_bytes {
            self.events.raise(SaEvent::Expired(LimitKind::Bytes));
            return Err(DecapError::LifetimeExpired(LimitKind::Bytes));
        }
        let seq_hi = self.config.esn.then_some((seq >> 32) as u32);
        let payload = self.cipher.open(packet, seq_hi).map_err(|e| match e {
            OpenError::Malformed => DecapError::Malformed,
            OpenError::Auth => DecapError::AuthenticationFailed,
        })?;
        self.replay.accept(seq).map_err(|_| DecapError::Replayed)?;

        let plain = packet.get(payload.clone()).ok_or(DecapError::Malformed)?;
        let (inner_len, nh) = parse_trailer(plain)?;
        let inner = match nh {
            next_header::NO_NEXT_HEADER => {
                self.counters.dummy += 1;
                return Ok(Decapsulated::Dummy);
            }
            next_header::IPV4 | next_header::IPV6 => {
                inner_ip_len(plain.get(..inner_len).ok_or(DecapError::Malformed)?, nh)?
            }
            other => return Err(DecapError::BadNextHeader(other)),
        };
        self.counters.packets += 1;
        self.counters.bytes = self.counters.bytes.saturating_add(inner as u64);
        if self.counters.packets >= limits.soft_packets {
            self.events.raise(SaEvent::RekeyNeeded(LimitKind::Packets));
        }
        if self.counters.bytes >= limits.soft_bytes {
            self.events.raise(SaEvent::RekeyNeeded(LimitKind::Bytes));
        }
        Ok(Decapsulated::Packet {
            range: payload.start..payload.start + inner,
            next_header: nh,
        })
    }
}

/// Split the decrypted payload into inner data length and next header, checking the padding.
fn parse_trailer(plain: &[u8]) -> Result<(usize, u8), DecapError> {
    let [.., pad_len, nh] = plain else {
        return Err(DecapError::Malformed);
    };
    let pad_len = usize::from(*pad_len);
    let body_len = plain.len() - ESP_TRAILER_LEN;
    let inner_len = body_len
        .checked_sub(pad_len)
        .ok_or(DecapError::BadPadding)?;
    let padding = plain
        .get(inner_len..body_len)
        .ok_or(DecapError::BadPadding)?;
    // RFC 4303 section 2.4: padding is 1, 2, 3, ...; a constant-time compare is not needed
    // because the packet is already authenticated.
    if padding
        .iter()
        .enumerate()
        .any(|(i, &b)| usize::from(b) != i + 1)
    {
        return Err(DecapError::BadPadding);
    }
    Ok((inner_len, *nh))
}

/// Length of the inner IP packet from its own header; anything after it is TFC padding
/// (RFC 4303 section 2.7).
fn inner_ip_len(data: &[u8], nh: u8) -> Result<usize, DecapError> {
    let version = data.first().map(|b| b >> 4);
    let len = match (nh, version) {
        (next_header::IPV4, Some(4)) => {
            let l = data.get(2..4).ok_or(DecapError::BadInnerPacket)?;
            let total = usize::from(u16::from_be_bytes([l[0], l[1]]));
            if total < 20 {
                return Err(DecapError::BadInnerPacket);
            }
            total
        }
        (next_header::IPV6, Some(6)) => {
            let l = data.get(4..6).ok_or(DecapError::BadInnerPacket)?;
            // Payload length 0 is an empty packet here: a jumbogram cannot fit in UDP.
            40 + usize::from(u16::from_be_bytes([l[0], l[1]]))
        }
        _ => return Err(DecapError::BadInnerPacket),
    };
    if len > data.len() {
        return Err(DecapError::BadInnerPacket);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
