//! Demultiplexing inbound ESP by SPI for a gateway with many SAs.

use std::collections::HashMap;

use crate::batch::{BatchBuf, PacketList};
use crate::error::DecapError;
use crate::sa::{DecapBatchReport, Decapsulated, InboundSa, SaEvent};
use crate::udp::{Udp4500, classify_udp4500};

/// Counters for packets that no SA could take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounters {
    /// ESP packets with an SPI not in the table.
    pub unknown_spi: u64,
    /// Payloads that are not ESP (IKE, keepalives or garbage) handed to the ESP path.
    pub not_esp: u64,
}

/// Inbound SAs keyed by our SPI.
#[derive(Debug, Default)]
pub struct InboundSaTable {
    sas: HashMap<u32, InboundSa>,
    counters: TableCounters,
}

impl InboundSaTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an SA; returns the SA it replaces, if its SPI was in use.
    pub fn insert(&mut self, sa: InboundSa) -> Option<InboundSa> {
        self.sas.insert(sa.spi(), sa)
    }

    /// Remove the SA with this SPI.
    pub fn remove(&mut self, spi: u32) -> Option<InboundSa> {
        self.sas.remove(&spi)
    }

    /// The SA with this SPI.
    pub fn get(&self, spi: u32) -> Option<&InboundSa> {
        self.sas.get(&spi)
    }

    /// The SA with this SPI, mutable.
    pub fn get_mut(&mut self, spi: u32) -> Option<&mut InboundSa> {
        self.sas.get_mut(&spi)
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// Table-level counters.
    pub fn counters(&self) -> &TableCounters {
        &self.counters
    }

    /// Next pending event of any SA, with that SA's SPI. Scans all SAs.
    pub fn poll_event(&mut self) -> Option<(u32, SaEvent)> {
        self.sas
            .iter_mut()
            .find_map(|(spi, sa)| sa.poll_event().map(|e| (*spi, e)))
    }

    /// Decapsulate one ESP packet in place, choosing the SA by SPI.
    pub fn decapsulate_in_place(
        &mut self,
        packet: &mut [u8],
    ) -> Result<(u32, Decapsulated), DecapError> {
        let Udp4500::Esp { spi } = classify_udp4500(packet) else {
            self.counters.not_esp += 1;
            return Err(DecapError::Malformed);
        };
        let Some(sa) = self.sas.get_mut(&spi) else {
            self.counters.unknown_spi += 1;
            return Err(DecapError::UnknownSpi(spi));
        };
        sa.decapsulate_in_place(packet).map(|d| (spi, d))
    }

    /// Decapsulate many ESP packets (UDP/4500 payloads already classified as ESP) of any SAs
    /// into `out`; each output segment's tag is the SPI it arrived on. Stops only when `out` is
    /// full. No allocation.
    pub fn decapsulate_batch<P: PacketList + ?Sized>(
        &mut self,
        packets: &P,
        out: &mut BatchBuf,
    ) -> DecapBatchReport {
        let mut report = DecapBatchReport::default();
        for i in 0..packets.count() {
            let Some(packet) = packets.packet(i) else {
                break;
            };
            let sa = match classify_udp4500(packet) {
                Udp4500::Esp { spi } => match self.sas.get_mut(&spi) {
                    Some(sa) => sa,
                    None => {
                        self.counters.unknown_spi += 1;
                        report.dropped += 1;
                        report.consumed = i + 1;
                        continue;
                    }
                },
                _ => {
                    self.counters.not_esp += 1;
                    report.dropped += 1;
                    report.consumed = i + 1;
                    continue;
                }
            };
            if !sa.decapsulate_into_batch(packet, out, &mut report) {
                return report;
            }
            report.consumed = i + 1;
        }
        report
    }
}
