//! IKE message fragmentation (RFC 7383): splitting a plaintext inner chain and reassembling
//! decrypted fragments. Pure data handling; the crypto is the caller's.

use crate::protect::FragmentPosition;
use crate::registry::PayloadType;

/// Why a fragment could not be split or was rejected by the [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// The per-fragment overhead leaves no room for data.
    #[error("overhead {overhead} leaves no room in a {max_datagram}-byte datagram")]
    NoRoom {
        /// Maximum datagram size.
        max_datagram: usize,
        /// Per-fragment overhead.
        overhead: usize,
    },
    /// Fragment Number 0 or greater than Total Fragments.
    #[error("fragment number {number} outside 1..={total}")]
    BadNumber {
        /// Fragment Number.
        number: u16,
        /// Total Fragments.
        total: u16,
    },
    /// More fragments than allowed.
    #[error("{total} fragments exceed the limit of {max}")]
    TooManyFragments {
        /// Total Fragments (or fragments needed when splitting).
        total: usize,
        /// Limit.
        max: usize,
    },
    /// The reassembled message would exceed the byte limit; the partial message is dropped.
    #[error("reassembled message would be {bytes} bytes, limit {max}")]
    TooLarge {
        /// Bytes collected including this fragment.
        bytes: usize,
        /// Limit.
        max: usize,
    },
    /// Total Fragments is smaller than in fragments already collected (RFC 7383 2.6: stale
    /// fragment of an earlier, coarser fragmentation; discard it).
    #[error("stale fragment: total {total} below the current {current}")]
    StaleTotal {
        /// Total Fragments of this fragment.
        total: u16,
        /// Total Fragments being reassembled.
        current: u16,
    },
}

/// Splits the plaintext inner chain of a message into fragment plaintexts so that each
/// protected fragment fits into `max_datagram` bytes.
///
/// `overhead` is everything a fragment adds around its plaintext chunk: IKE header (28), SKF
/// header (8), the crypto layer's worst-case IV + padding + pad-length + ICV, and the 4-byte
/// non-ESP marker when sent on port 4500. Returns at least one chunk.
pub fn split_fragments(
    plaintext: &[u8],
    max_datagram: usize,
    overhead: usize,
) -> Result<Vec<&[u8]>, FragmentError> {
    let room = max_datagram.saturating_sub(overhead);
    if room == 0 {
        return Err(FragmentError::NoRoom {
            max_datagram,
            overhead,
        });
    }
    if plaintext.is_empty() {
        return Ok(vec![plaintext]);
    }
    let chunks: Vec<&[u8]> = plaintext.chunks(room).collect();
    if chunks.len() > usize::from(u16::MAX) {
        return Err(FragmentError::TooManyFragments {
            total: chunks.len(),
            max: u16::MAX.into(),
        });
    }
    Ok(chunks)
}

/// Limits for one [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Largest accepted Total Fragments.
    pub max_fragments: u16,
    /// Largest reassembled plaintext in bytes.
    pub max_bytes: usize,
    /// Messages reassembled concurrently; starting another evicts the oldest.
    pub max_messages: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_fragments: 64,
            max_bytes: 64 * 1024,
            max_messages: 4,
        }
    }
}

/// A completely reassembled inner chain, ready for [`crate::decode_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// Message ID of the fragments.
    pub message_id: u32,
    /// First inner payload type (from fragment 1).
    pub first_payload: PayloadType,
    /// Concatenated fragment plaintexts in fragment-number order.
    pub chain: Vec<u8>,
}

/// Result of feeding one fragment to the [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyStatus {
    /// Stored; more fragments are needed.
    Incomplete,
    /// This fragment number was already stored; ignored.
    Duplicate,
    /// The last missing fragment arrived.
    Complete(Reassembled),
}

#[derive(Debug)]
struct Pending {
    message_id: u32,
    total: u16,
    first_payload: Option<PayloadType>,
    fragments: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

impl Pending {
    fn new(message_id: u32, total: u16) -> Self {
        Self {
            message_id,
            total,
            first_payload: None,
            fragments: vec![None; total.into()],
            received: 0,
            bytes: 0,
        }
    }
}

/// Collects decrypted fragment plaintexts per message ID (RFC 7383 2.6).
///
/// Feed it only fragments whose SKF payload the caller has already authenticated (ICV checked,
/// decrypted) with the IKE SA keys: the reassembler trusts that fragments of one message ID belong
/// together and bounds only memory, not forgery.
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    pending: Vec<Pending>,
}

impl Reassembler {
    /// An empty reassembler with the given limits.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            pending: Vec::new(),
        }
    }

    /// Adds the decrypted `plaintext` of fragment `position` of message `message_id`.
    /// `first_payload` is the SKF Next Payload field (used from fragment 1 only).
    ///
    /// A fragment with a larger Total Fragments than the ones collected restarts reassembly
    /// (the sender re-fragmented smaller, RFC 7383 2.6); a smaller one is rejected as stale.
    /// Once a message is complete its state is dropped: late retransmitted fragments of it would
    /// start a new reassembly, so the caller filters message IDs it has already processed (and
    /// answers those from its response cache) before calling this.
    pub fn insert(
        &mut self,
        message_id: u32,
        position: FragmentPosition,
        first_payload: PayloadType,
        plaintext: &[u8],
    ) -> Result<ReassemblyStatus, FragmentError> {
        let FragmentPosition { number, total } = position;
        if number == 0 || number > total {
            return Err(FragmentError::BadNumber { number, total });
        }
        if total > self.limits.max_fragments {
            return Err(FragmentError::TooManyFragments {
                total: total.into(),
                max: self.limits.max_fragments.into(),
            });
        }
        let index = match self.pending.iter().position(|p| p.message_id == message_id) {
            Some(i) if self.pending.get(i).is_some_and(|p| total < p.total) => {
                let current = self.pending.get(i).map_or(0, |p| p.total);
                return Err(FragmentError::StaleTotal { total, current });
            }
            Some(i) => {
                if let Some(p) = self.pending.get_mut(i).filter(|p| total > p.total) {
                    *p = Pending::new(message_id, total);
                }
                i
            }
            None => {
                if self.pending.len() >= self.limits.max_messages.max(1) {
                    self.pending.remove(0);
                }
                self.pending.push(Pending::new(message_id, total));
                self.pending.len() - 1
            }
        };
        let Some(p) = self.pending.get_mut(index) else {
            return Ok(ReassemblyStatus::Incomplete);
        };
        let Some(slot) = p.fragments.get_mut(usize::from(number) - 1) else {
            return Err(FragmentError::BadNumber { number, total });
        };
        if slot.is_some() {
            return Ok(ReassemblyStatus::Duplicate);
        }
        let bytes = p.bytes + plaintext.len();
        if bytes > self.limits.max_bytes {
            self.pending.remove(index);
            return Err(FragmentError::TooLarge {
                bytes,
                max: self.limits.max_bytes,
            });
        }
        *slot = Some(plaintext.to_vec());
        p.bytes = bytes;
        p.received += 1;
        if number == 1 {
            p.first_payload = Some(first_payload);
        }
        if p.received < usize::from(p.total) {
            return Ok(ReassemblyStatus::Incomplete);
        }
        let p = self.pending.remove(index);
        let mut chain = Vec::with_capacity(p.bytes);
        for frag in p.fragments.into_iter().flatten() {
            chain.extend_from_slice(&frag);
        }
        Ok(ReassemblyStatus::Complete(Reassembled {
            message_id,
            first_payload: p.first_payload.unwrap_or(PayloadType::NONE),
            chain,
        }))
    }

    /// Drops any partial reassembly of `message_id`.
    pub fn discard(&mut self, message_id: u32) {
        self.pending.retain(|p| p.message_id != message_id);
    }

    /// Drops all partial reassemblies.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Number of messages currently being reassembled.
    pub fn pending_messages(&self) -> usize {
        self.pending.len()
    }
}
