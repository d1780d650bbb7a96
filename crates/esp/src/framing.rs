//! How large an ESP-in-UDP packet is, and so the largest inner packet (the tunnel MTU) a path
//! MTU allows.
//!
//! An ESP-in-UDP packet (RFC 4303, RFC 3948) is laid out as
//! `outer IP | UDP 8 | SPI 4 + seq 4 | IV | inner packet | padding | pad len 1 + next hdr 1 | ICV`,
//! where `inner + padding + 2` is a multiple of [`Transform::payload_align`]. [`inner_mtu`] is
//! exact (the largest inner packet that still fits), not "subtract the worst-case padding": for
//! CBC ciphers this gains up to 15 bytes.

use crate::transform::Transform;

/// UDP header of the RFC 3948 encapsulation (the only one our data plane sends).
pub const UDP_HEADER_LEN: usize = 8;
/// SPI and sequence number.
pub const ESP_HEADER_LEN: usize = 8;
/// Pad length and next header bytes of the ESP trailer.
pub const ESP_TRAILER_LEN: usize = 2;

/// The outer IP header's family (we emit neither IPv4 options nor IPv6 extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterFamily {
    /// 20-byte IPv4 header.
    Ipv4,
    /// 40-byte IPv6 header.
    Ipv6,
}

impl OuterFamily {
    /// Length of the outer IP header in bytes.
    pub const fn header_len(self) -> usize {
        match self {
            Self::Ipv4 => 20,
            Self::Ipv6 => 40,
        }
    }

    /// The family of an address.
    pub const fn of(addr: &std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => Self::Ipv4,
            std::net::IpAddr::V6(_) => Self::Ipv6,
        }
    }
}

/// Bytes around the inner packet in every packet, padding and trailer excluded.
pub const fn fixed_overhead(outer: OuterFamily, t: Transform) -> usize {
    outer.header_len() + UDP_HEADER_LEN + ESP_HEADER_LEN + t.iv_len() + t.icv_len()
}

/// Outer packet length (IP header included) for an inner packet of `inner_len` bytes.
pub const fn outer_len(inner_len: usize, outer: OuterFamily, t: Transform) -> usize {
    let align = t.payload_align();
    fixed_overhead(outer, t) + (inner_len + ESP_TRAILER_LEN).div_ceil(align) * align
}

/// The largest inner packet whose ESP-in-UDP packet fits in `path_mtu`, or `None` when not
/// even an empty one fits.
pub const fn inner_mtu(path_mtu: usize, outer: OuterFamily, t: Transform) -> Option<usize> {
    let fixed = fixed_overhead(outer, t);
    let align = t.payload_align();
    if path_mtu < fixed {
        return None;
    }
    let room = (path_mtu - fixed) / align * align;
    if room < ESP_TRAILER_LEN {
        return None;
    }
    Some(room - ESP_TRAILER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{AesKeyLen, Integrity};
    use proptest::prelude::*;

    const GCM: Transform = Transform::AesGcm16(AesKeyLen::Aes256);

    #[test]
    fn gcm_over_ipv4_1500() {
        // 20 IP + 8 UDP + 8 ESP + 8 IV + 16 ICV = 60; 1440 is 4-aligned, minus the 2-byte trailer.
        assert_eq!(fixed_overhead(OuterFamily::Ipv4, GCM), 60);
        assert_eq!(inner_mtu(1500, OuterFamily::Ipv4, GCM), Some(1438));
        assert_eq!(outer_len(1438, OuterFamily::Ipv4, GCM), 1500);
        assert_eq!(outer_len(1439, OuterFamily::Ipv4, GCM), 1504);
    }

    #[test]
    fn gcm_over_ipv6_1500() {
        assert_eq!(fixed_overhead(OuterFamily::Ipv6, GCM), 80);
        assert_eq!(inner_mtu(1500, OuterFamily::Ipv6, GCM), Some(1418));
    }

    #[test]
    fn chacha_matches_gcm_framing() {
        assert_eq!(
            inner_mtu(1500, OuterFamily::Ipv4, GCM),
            inner_mtu(1500, OuterFamily::Ipv4, Transform::ChaCha20Poly1305)
        );
    }

    #[test]
    fn cbc_sha1_over_ipv4_1500() {
        // fixed = 20 + 8 + 8 + 16 IV + 12 ICV = 64; room 1436 -> 89 blocks of 16 = 1424; minus 2.
        let t = Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha1_96);
        assert_eq!(fixed_overhead(OuterFamily::Ipv4, t), 64);
        assert_eq!(inner_mtu(1500, OuterFamily::Ipv4, t), Some(1422));
        assert_eq!(outer_len(1422, OuterFamily::Ipv4, t), 1488);
        assert_eq!(outer_len(1423, OuterFamily::Ipv4, t), 1504);
    }

    #[test]
    fn cbc_sha256_over_ipv6_1280() {
        // fixed = 40 + 8 + 8 + 16 + 16 = 88; room 1192 -> 74 blocks = 1184; minus 2.
        let t = Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha256_128);
        assert_eq!(inner_mtu(1280, OuterFamily::Ipv6, t), Some(1182));
    }

    #[test]
    fn too_small_path_mtu() {
        let t = Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha512_256);
        let fixed = fixed_overhead(OuterFamily::Ipv6, t);
        assert_eq!(inner_mtu(0, OuterFamily::Ipv6, t), None);
        assert_eq!(inner_mtu(fixed, OuterFamily::Ipv6, t), None);
        assert_eq!(inner_mtu(fixed + 16, OuterFamily::Ipv6, t), Some(14));
    }

    #[test]
    fn agrees_with_the_packets_the_sa_makes() {
        // The arithmetic here and the SA's own encapsulation must never disagree.
        for t in [
            GCM,
            Transform::ChaCha20Poly1305,
            Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha1_96),
            Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha512_256),
        ] {
            let keymat: Vec<u8> = (0..t.keymat_len()).map(|i| i as u8).collect();
            let keys = crate::DirectionKeys::from_keymat(t, &keymat).unwrap();
            let sa = crate::OutboundSa::new(0x1000, &keys).unwrap();
            for inner in [20, 21, 1000, 1400, 1438] {
                assert_eq!(
                    outer_len(inner, OuterFamily::Ipv4, t),
                    20 + UDP_HEADER_LEN + sa.encapsulated_len(inner),
                    "{t:?} {inner}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn inner_mtu_is_the_largest_that_fits(path in 0usize..9000, v6 in any::<bool>(), cbc in any::<bool>()) {
            let outer = if v6 { OuterFamily::Ipv6 } else { OuterFamily::Ipv4 };
            let t = if cbc { Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha256_128) } else { GCM };
            match inner_mtu(path, outer, t) {
                Some(m) => {
                    prop_assert!(outer_len(m, outer, t) <= path);
                    prop_assert!(outer_len(m + 1, outer, t) > path);
                }
                None => prop_assert!(outer_len(0, outer, t) > path),
            }
        }
    }
}
