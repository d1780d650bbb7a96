//! NAT detection hashes (RFC 7296 2.23) and stateless COOKIEs (RFC 7296 2.6).

use std::net::{IpAddr, SocketAddr};

use aws_lc_rs::digest;
use ipsec_crypto::{PrfAlg, prf};
use subtle::ConstantTimeEq;

/// SHA-1(SPIi | SPIr | IP | port), the NAT_DETECTION_*_IP notification data.
pub fn natd_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// A NAT-D source hash that never matches (strongSwan `encap = yes`): it hashes the
/// unspecified address and port 0, so the peer concludes we are behind a NAT.
pub fn fake_natd_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let unspecified = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    natd_hash(spi_i, spi_r, unspecified)
}

/// Length of a COOKIE we issue: version octet + HMAC-SHA-256.
pub const COOKIE_LEN: usize = 33;

/// Cookie = version | HMAC-SHA-256(secret, Ni | IPi | SPIi) (RFC 7296 2.6).
pub fn make_cookie(secret: &[u8], version: u8, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
    let ip_bytes = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mac = prf(
        PrfAlg::HmacSha256,
        secret,
        &[ni, &ip_bytes, &spi_i.to_be_bytes()],
    );
    let mut out = Vec::with_capacity(COOKIE_LEN);
    out.push(version);
    out.extend_from_slice(mac.as_bytes());
    out
}

/// Constant-time comparison of a received cookie with the expected one.
pub fn cookie_matches(expected: &[u8], received: &[u8]) -> bool {
    expected.len() == received.len() && bool::from(expected.ct_eq(received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natd_hash_depends_on_every_input() {
        let a: SocketAddr = "198.51.100.1:500".parse().unwrap();
        let b: SocketAddr = "198.51.100.1:4500".parse().unwrap();
        let h = natd_hash(1, 2, a);
        assert_eq!(h.len(), 20);
        assert_ne!(h, natd_hash(1, 2, b));
        assert_ne!(h, natd_hash(1, 3, a));
        assert_ne!(h, fake_natd_hash(1, 2, a));
        // SHA-1 over 8+8+4+2 known bytes, computed independently.
        let mut input = Vec::new();
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(&2u64.to_be_bytes());
        input.extend_from_slice(&[198, 51, 100, 1, 0x01, 0xf4]);
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
        assert_eq!(h, d.as_ref());
    }

    #[test]
    fn cookies_bind_nonce_address_and_spi() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let c = make_cookie(b"secret", 1, b"nonce", ip, 9);
        assert_eq!(c.len(), COOKIE_LEN);
        assert!(cookie_matches(
            &c,
            &make_cookie(b"secret", 1, b"nonce", ip, 9)
        ));
        assert!(!cookie_matches(
            &c,
            &make_cookie(b"secret", 1, b"nonce", ip, 8)
        ));
        assert!(!cookie_matches(
            &c,
            &make_cookie(b"other", 1, b"nonce", ip, 9)
        ));
        assert!(!cookie_matches(&c, &c[..5]));
    }
}
