//! Demultiplexing of UDP port 4500 (RFC 3948 section 2).

/// The 4-byte non-ESP marker that precedes IKE messages on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// A NAT-keepalive packet: one byte 0xFF (RFC 3948 section 2.3).
pub const NAT_KEEPALIVE: [u8; 1] = [0xFF];

/// What a UDP/4500 datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// An IKE message (marker stripped).
    Ike(&'a [u8]),
    /// An ESP packet for this SPI (the whole payload is the ESP packet).
    Esp {
        /// The SPI (never 0).
        spi: u32,
    },
    /// A NAT keepalive; ignore it.
    Keepalive,
    /// Anything else; drop it.
    Invalid,
}

/// Classify a UDP/4500 payload.
pub fn classify_udp4500(payload: &[u8]) -> Udp4500<'_> {
    match payload {
        [0xFF] => Udp4500::Keepalive,
        [0, 0, 0, 0, ike @ ..] if !ike.is_empty() => Udp4500::Ike(ike),
        // SPI, sequence number and at least one more byte.
        [a, b, c, d, _, _, _, _, _, ..] => {
            let spi = u32::from_be_bytes([*a, *b, *c, *d]);
            if spi == 0 {
                Udp4500::Invalid
            } else {
                Udp4500::Esp { spi }
            }
        }
        _ => Udp4500::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify_udp4500(&[0xFF]), Udp4500::Keepalive);
        assert_eq!(classify_udp4500(&[0, 0, 0, 0, 1, 2]), Udp4500::Ike(&[1, 2]));
        assert_eq!(classify_udp4500(&[0, 0, 0, 0]), Udp4500::Invalid);
        assert_eq!(
            classify_udp4500(&[0, 0, 1, 0, 0, 0, 0, 1, 9]),
            Udp4500::Esp { spi: 256 }
        );
        assert_eq!(
            classify_udp4500(&[0, 0, 1, 0, 0, 0, 0, 1]),
            Udp4500::Invalid
        );
        assert_eq!(classify_udp4500(&[]), Udp4500::Invalid);
        assert_eq!(classify_udp4500(&[0xFE]), Udp4500::Invalid);
        assert_eq!(classify_udp4500(&[0xFF, 0xFF]), Udp4500::Invalid);
    }
}
