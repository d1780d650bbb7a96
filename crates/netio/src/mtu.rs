//! Inner (TUN) MTU from an outer path MTU and the ESP-in-UDP encapsulation overhead.
//!
//! An ESP-in-UDP packet (RFC 4303, RFC 3948) is laid out as
//! `outer IP | UDP 8 | SPI 4 + seq 4 | IV | inner packet | padding | pad len 1 + next hdr 1 | ICV`,
//! where `inner + padding + 2` must be a multiple of the cipher's block size (4 for AEAD and
//! NULL ciphers: RFC 4303 §2.4 requires 4-byte alignment of the ICV).
//!
//! [`inner_mtu`] is exact (the largest inner packet that still fits), not "subtract the worst
//! case padding": for CBC ciphers this gains up to `block - 1` bytes.

/// Outer header family: decides the outer IP header length (no IPv4 options, no IPv6 extension
/// headers are ever emitted by us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterFamily {
    /// 20-byte IPv4 header.
    Ipv4,
    /// 40-byte IPv6 header.
    Ipv6,
}

impl OuterFamily {
    /// Length of the outer IP header in bytes.
    pub const fn header_len(self) -> u32 {
        match self {
            OuterFamily::Ipv4 => 20,
            OuterFamily::Ipv6 => 40,
        }
    }
}

/// ESP encryption transform, as far as its framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspCipher {
    /// AES-GCM with a 16-byte ICV (ENCR_AES_GCM_16): 8-byte IV, 4-byte alignment.
    AesGcm16,
    /// ChaCha20-Poly1305 (RFC 7634): 8-byte IV, 16-byte ICV, 4-byte alignment.
    ChaCha20Poly1305,
    /// AES-CBC: 16-byte IV, 16-byte blocks; ICV from a separate integrity transform.
    AesCbc,
    /// 3DES-CBC: 8-byte IV, 8-byte blocks; ICV from a separate integrity transform.
    TripleDesCbc,
    /// ENCR_NULL: no IV, 4-byte alignment.
    Null,
}

impl EspCipher {
    /// IV length carried in every packet.
    pub const fn iv_len(self) -> u32 {
        match self {
            EspCipher::AesGcm16 | EspCipher::ChaCha20Poly1305 | EspCipher::TripleDesCbc => 8,
            EspCipher::AesCbc => 16,
            EspCipher::Null => 0,
        }
    }

    /// Alignment that `payload + padding + 2` must reach.
    pub const fn block_align(self) -> u32 {
        match self {
            EspCipher::AesCbc => 16,
            EspCipher::TripleDesCbc => 8,
            EspCipher::AesGcm16 | EspCipher::ChaCha20Poly1305 | EspCipher::Null => 4,
        }
    }

    /// ICV appended by the cipher itself (AEAD tag), 0 for non-AEAD ciphers.
    pub const fn aead_icv_len(self) -> u32 {
        match self {
            EspCipher::AesGcm16 | EspCipher::ChaCha20Poly1305 => 16,
            EspCipher::AesCbc | EspCipher::TripleDesCbc | EspCipher::Null => 0,
        }
    }
}

/// ESP integrity transform (none for AEAD ciphers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspIntegrity {
    /// No separate integrity transform (AEAD).
    None,
    /// HMAC-SHA1-96: 12-byte ICV.
    HmacSha1_96,
    /// HMAC-SHA2-256-128: 16-byte ICV.
    HmacSha256_128,
    /// HMAC-SHA2-384-192: 24-byte ICV.
    HmacSha384_192,
    /// HMAC-SHA2-512-256: 32-byte ICV.
    HmacSha512_256,
}

impl EspIntegrity {
    /// ICV length in bytes.
    pub const fn icv_len(self) -> u32 {
        match self {
            EspIntegrity::None => 0,
            EspIntegrity::HmacSha1_96 => 12,
            EspIntegrity::HmacSha256_128 => 16,
            EspIntegrity::HmacSha384_192 => 24,
            EspIntegrity::HmacSha512_256 => 32,
        }
    }
}

/// UDP header length of the RFC 3948 encapsulation.
pub const UDP_HEADER_LEN: u32 = 8;
/// SPI + sequence number.
pub const ESP_HEADER_LEN: u32 = 8;
/// Pad length + next header bytes of the ESP trailer.
pub const ESP_TRAILER_LEN: u32 = 2;

/// Everything that decides the size of an ESP-in-UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspFraming {
    /// Outer IP family.
    pub outer: OuterFamily,
    /// Whether ESP is carried in UDP (RFC 3948); always true for our userspace data plane.
    pub udp_encap: bool,
    /// Encryption transform.
    pub cipher: EspCipher,
    /// Integrity transform ([`EspIntegrity::None`] with AEAD ciphers).
    pub integrity: EspIntegrity,
}

impl EspFraming {
    /// Bytes added around the inner packet, excluding padding and the 2-byte trailer.
    pub const fn fixed_overhead(&self) -> u32 {
        let udp = if self.udp_encap { UDP_HEADER_LEN } else { 0 };
        self.outer.header_len()
            + udp
            + ESP_HEADER_LEN
            + self.cipher.iv_len()
            + self.cipher.aead_icv_len()
            + self.integrity.icv_len()
    }

    /// Outer packet length (IP header included) for an inner packet of `inner_len` bytes.
    pub const fn outer_len(&self, inner_len: u32) -> u64 {
        let align = self.cipher.block_align() as u64;
        let padded = (inner_len as u64 + ESP_TRAILER_LEN as u64).div_ceil(align) * align;
        self.fixed_overhead() as u64 + padded
    }

    /// Worst-case overhead (fixed part + trailer + maximal padding), for rough budgeting.
    pub const fn worst_case_overhead(&self) -> u32 {
        self.fixed_overhead() + ESP_TRAILER_LEN + self.cipher.block_align() - 1
    }
}

/// Largest inner packet length whose ESP-in-UDP encapsulation fits in `outer_mtu`, or `None`
/// when not even an empty inner packet fits.
pub const fn inner_mtu(outer_mtu: u32, framing: &EspFraming) -> Option<u32> {
    let fixed = framing.fixed_overhead();
    let align = framing.cipher.block_align();
    if outer_mtu < fixed {
        return None;
    }
    let room = (outer_mtu - fixed) / align * align;
    if room < ESP_TRAILER_LEN {
        return None;
    }
    Some(room - ESP_TRAILER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn framing(outer: OuterFamily, cipher: EspCipher, integrity: EspIntegrity) -> EspFraming {
        EspFraming {
            outer,
            udp_encap: true,
            cipher,
            integrity,
        }
    }

    #[test]
    fn gcm_over_ipv4_1500() {
        // 20 IP + 8 UDP + 8 ESP + 8 IV + 16 ICV = 60; 1440 is 4-aligned, minus the 2-byte trailer.
        let f = framing(OuterFamily::Ipv4, EspCipher::AesGcm16, EspIntegrity::None);
        assert_eq!(f.fixed_overhead(), 60);
        assert_eq!(inner_mtu(1500, &f), Some(1438));
        assert_eq!(f.outer_len(1438), 1500);
        assert_eq!(f.outer_len(1439), 1504);
    }

    #[test]
    fn gcm_over_ipv6_1500() {
        let f = framing(OuterFamily::Ipv6, EspCipher::AesGcm16, EspIntegrity::None);
        assert_eq!(f.fixed_overhead(), 80);
        assert_eq!(inner_mtu(1500, &f), Some(1418));
    }

    #[test]
    fn chacha_matches_gcm_framing() {
        let g = framing(OuterFamily::Ipv4, EspCipher::AesGcm16, EspIntegrity::None);
        let c = framing(
            OuterFamily::Ipv4,
            EspCipher::ChaCha20Poly1305,
            EspIntegrity::None,
        );
        assert_eq!(inner_mtu(1500, &g), inner_mtu(1500, &c));
    }

    #[test]
    fn cbc_sha1_over_ipv4_1500() {
        // fixed = 20 + 8 + 8 + 16 IV + 12 ICV = 64; room 1436 -> 89 blocks of 16 = 1424; minus 2.
        let f = framing(
            OuterFamily::Ipv4,
            EspCipher::AesCbc,
            EspIntegrity::HmacSha1_96,
        );
        assert_eq!(f.fixed_overhead(), 64);
        assert_eq!(inner_mtu(1500, &f), Some(1422));
        assert_eq!(f.outer_len(1422), 1488);
        assert_eq!(f.outer_len(1423), 1504);
    }

    #[test]
    fn cbc_sha256_over_ipv6_1280() {
        // fixed = 40 + 8 + 8 + 16 + 16 = 88; room 1192 -> 74 blocks = 1184; minus 2.
        let f = framing(
            OuterFamily::Ipv6,
            EspCipher::AesCbc,
            EspIntegrity::HmacSha256_128,
        );
        assert_eq!(inner_mtu(1280, &f), Some(1182));
    }

    #[test]
    fn triple_des_sha1_without_udp() {
        let f = EspFraming {
            outer: OuterFamily::Ipv4,
            udp_encap: false,
            cipher: EspCipher::TripleDesCbc,
            integrity: EspIntegrity::HmacSha1_96,
        };
        // fixed = 20 + 8 + 8 + 12 = 48; room 1452 -> 181 blocks of 8 = 1448; minus 2.
        assert_eq!(inner_mtu(1500, &f), Some(1446));
    }

    #[test]
    fn too_small_outer_mtu() {
        let f = framing(
            OuterFamily::Ipv6,
            EspCipher::AesCbc,
            EspIntegrity::HmacSha512_256,
        );
        assert_eq!(inner_mtu(0, &f), None);
        assert_eq!(inner_mtu(f.fixed_overhead(), &f), None);
        assert_eq!(inner_mtu(f.fixed_overhead() + 16, &f), Some(14));
    }

    #[test]
    fn worst_case_bounds_exact() {
        let f = framing(
            OuterFamily::Ipv4,
            EspCipher::AesCbc,
            EspIntegrity::HmacSha256_128,
        );
        for mtu in 200..2000 {
            let exact = inner_mtu(mtu, &f).unwrap();
            assert!(exact >= mtu - f.worst_case_overhead());
        }
    }

    fn any_framing() -> impl Strategy<Value = EspFraming> {
        (
            prop_oneof![Just(OuterFamily::Ipv4), Just(OuterFamily::Ipv6)],
            any::<bool>(),
            prop_oneof![
                Just((EspCipher::AesGcm16, EspIntegrity::None)),
                Just((EspCipher::ChaCha20Poly1305, EspIntegrity::None)),
                Just((EspCipher::AesCbc, EspIntegrity::HmacSha1_96)),
                Just((EspCipher::AesCbc, EspIntegrity::HmacSha256_128)),
                Just((EspCipher::AesCbc, EspIntegrity::HmacSha384_192)),
                Just((EspCipher::TripleDesCbc, EspIntegrity::HmacSha512_256)),
                Just((EspCipher::Null, EspIntegrity::HmacSha1_96)),
            ],
        )
            .prop_map(|(outer, udp_encap, (cipher, integrity))| EspFraming {
                outer,
                udp_encap,
                cipher,
                integrity,
            })
    }

    proptest! {
        #[test]
        fn inner_mtu_is_the_largest_fitting_length(mtu in 0u32..70_000, f in any_framing()) {
            match inner_mtu(mtu, &f) {
                Some(inner) => {
                    prop_assert!(f.outer_len(inner) <= u64::from(mtu));
                    prop_assert!(f.outer_len(inner + 1) > u64::from(mtu));
                }
                None => prop_assert!(f.outer_len(0) > u64::from(mtu)),
            }
        }
    }
}
