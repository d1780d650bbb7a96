//! Caller-owned packet batches: one contiguous byte buffer plus segment offsets.
//!
//! Packets are appended back to back, so a run of equal-sized segments is exactly what UDP GSO
//! (`UDP_SEGMENT`) wants: see [`BatchBuf::gso_runs`].

/// Read access to a list of packets, for the batch APIs.
pub trait PacketList {
    /// Number of packets.
    fn count(&self) -> usize;
    /// Packet `i`, if `i < count()`.
    fn packet(&self, i: usize) -> Option<&[u8]>;
}

impl<T: AsRef<[u8]>> PacketList for [T] {
    fn count(&self) -> usize {
        self.len()
    }

    fn packet(&self, i: usize) -> Option<&[u8]> {
        self.get(i).map(AsRef::as_ref)
    }
}

impl PacketList for BatchBuf {
    fn count(&self) -> usize {
        self.len()
    }

    fn packet(&self, i: usize) -> Option<&[u8]> {
        self.get(i)
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: usize,
    len: usize,
    tag: u32,
}

/// A fixed-capacity buffer of packets. Allocates only in [`BatchBuf::new`].
#[derive(Debug, Clone)]
pub struct BatchBuf {
    data: Box<[u8]>,
    used: usize,
    segments: Vec<Segment>,
    max_segments: usize,
}

/// A run of consecutive, contiguous segments that all have `segment_size` bytes except possibly
/// the last, which may be shorter: one `sendmsg` with `UDP_SEGMENT = segment_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoRun<'a> {
    /// The bytes of all segments of the run.
    pub bytes: &'a [u8],
    /// Size of every segment but the last.
    pub segment_size: usize,
    /// Number of segments.
    pub segments: usize,
}

impl BatchBuf {
    /// A buffer holding up to `max_segments` packets and `byte_capacity` bytes in total.
    pub fn new(byte_capacity: usize, max_segments: usize) -> Self {
        Self {
            data: vec![0u8; byte_capacity].into_boxed_slice(),
            used: 0,
            segments: Vec::with_capacity(max_segments),
            max_segments,
        }
    }

    /// Forget all packets (keeps the memory).
    pub fn clear(&mut self) {
        self.used = 0;
        self.segments.clear();
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether there are no packets.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Free bytes.
    pub fn remaining_bytes(&self) -> usize {
        self.data.len() - self.used
    }

    /// Whether no more packets can be added.
    pub fn is_full(&self) -> bool {
        self.segments.len() >= self.max_segments || self.used >= self.data.len()
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let s = self.segments.get(i)?;
        self.data.get(s.start..s.start + s.len)
    }

    /// Packet `i`, mutable.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let s = self.segments.get(i)?;
        self.data.get_mut(s.start..s.start + s.len)
    }

    /// Tag of packet `i`: the SPI of the SA that produced it (outbound: the peer's SPI; inbound:
    /// the SA it arrived on, for checking the inner source against the SA's traffic selectors).
    pub fn tag(&self, i: usize) -> Option<u32> {
        self.segments.get(i).map(|s| s.tag)
    }

    /// All packets in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.segments
            .iter()
            .filter_map(|s| self.data.get(s.start..s.start + s.len))
    }

    /// All packets' bytes, back to back.
    pub fn bytes(&self) -> &[u8] {
        self.data.get(..self.used).unwrap_or_default()
    }

    /// Append a copy of `packet` with `tag`. Returns `false` if it does not fit.
    pub fn push(&mut self, packet: &[u8], tag: u32) -> bool {
        let Some(seg) = self.begin_segment(packet.len()) else {
            return false;
        };
        seg.copy_from_slice(packet);
        self.commit_segment(packet.len(), tag);
        true
    }

    /// Space for a segment of up to `len` bytes at the end, not yet part of the batch.
    pub(crate) fn begin_segment(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.segments.len() >= self.max_segments {
            return None;
        }
        let end = self.used.checked_add(len)?;
        self.data.get_mut(self.used..end)
    }

    /// Make the first `len` bytes of the space from `begin_segment` a segment.
    pub(crate) fn commit_segment(&mut self, len: usize, tag: u32) {
        if self.segments.len() < self.max_segments && self.used + len <= self.data.len() {
            self.segments.push(Segment {
                start: self.used,
                len,
                tag,
            });
            self.used += len;
        }
    }

    /// Group the packets into GSO sends of at most `max_segments` segments each.
    pub fn gso_runs(&self, max_segments: usize) -> GsoRuns<'_> {
        GsoRuns {
            buf: self,
            next: 0,
            max_segments: max_segments.max(1),
        }
    }
}

/// Iterator returned by [`BatchBuf::gso_runs`].
#[derive(Debug)]
pub struct GsoRuns<'a> {
    buf: &'a BatchBuf,
    next: usize,
    max_segments: usize,
}

impl<'a> Iterator for GsoRuns<'a> {
    type Item = GsoRun<'a>;

    fn next(&mut self) -> Option<GsoRun<'a>> {
        let segs = &self.buf.segments;
        let first = segs.get(self.next)?;
        let mut end = first.start + first.len;
        let mut count = 1;
        while count < self.max_segments && first.len > 0 {
            let Some(s) = segs.get(self.next + count) else {
                break;
            };
            if s.start != end || s.len > first.len {
                break;
            }
            end += s.len;
            count += 1;
            if s.len < first.len {
                // A shorter segment can only end a run.
                break;
            }
        }
        self.next += count;
        Some(GsoRun {
            bytes: self.buf.data.get(first.start..end)?,
            segment_size: first.len,
            segments: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_and_capacity() {
        let mut b = BatchBuf::new(10, 3);
        assert!(b.push(b"abc", 1));
        assert!(b.push(b"de", 2));
        assert!(!b.push(b"fghijk", 3));
        assert!(b.push(b"fgh", 3));
        assert!(!b.push(b"", 4));
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(1), Some(&b"de"[..]));
        assert_eq!(b.tag(2), Some(3));
        assert_eq!(b.bytes(), b"abcdefgh");
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.remaining_bytes(), 10);
    }

    #[test]
    fn gso_runs_split_on_size_change() {
        let mut b = BatchBuf::new(100, 10);
        for p in [
            &[1u8; 4][..],
            &[2; 4],
            &[3; 4],
            &[4; 2],
            &[5; 4],
            &[6; 4],
            &[7; 5],
        ] {
            assert!(b.push(p, 0));
        }
        let runs: Vec<_> = b
            .gso_runs(64)
            .map(|r| (r.segment_size, r.segments))
            .collect();
        assert_eq!(runs, vec![(4, 4), (4, 2), (5, 1)]);
        let runs: Vec<_> = b
            .gso_runs(2)
            .map(|r| (r.segment_size, r.segments))
            .collect();
        assert_eq!(runs, vec![(4, 2), (4, 2), (4, 2), (5, 1)]);
        let total: usize = b.gso_runs(3).map(|r| r.bytes.len()).sum();
        assert_eq!(total, b.bytes().len());
    }
}
