//! Shared helpers for the namespace tests (run as root; each test makes its own namespace).
#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use testkit::netns::{Netns, unique_name};

/// A fresh namespace (deleted on drop, also when the test panics).
pub fn netns(tag: &str) -> Netns {
    Netns::new(unique_name(&format!("aonio{tag}"))).expect("create netns (tests run as root)")
}

/// Runs `fut` on a current-thread runtime on a thread inside `ns`.
pub fn block_on_in<F, Fut, R>(ns: &Netns, f: F) -> R
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = R>,
    R: Send,
{
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f())
    })
}

/// `ip -n NS args…` stdout as text.
pub fn ip_out(ns: &Netns, args: &[&str]) -> String {
    let out = ns.ip(args).expect("ip command");
    String::from_utf8(out.stdout).expect("utf8")
}

/// Deadline for anything that should happen "at once" in a namespace.
pub const STEP: Duration = Duration::from_secs(5);

pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet with protocol `proto` around `payload` (valid header checksum).
pub fn ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
    ]);
    p.extend_from_slice(&[proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let csum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv4/UDP packet (UDP checksum 0 = none).
pub fn ipv4_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    ipv4(17, src, dst, &udp)
}

/// An ICMP echo request (`reply == false`) or reply with a valid checksum.
pub fn icmp_echo(reply: bool, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![if reply { 0 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let csum = checksum(&m);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// Source, destination and payload of an IPv4 packet of protocol `proto` with a valid header.
pub fn parse_ipv4(proto: u8, p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != proto {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total != p.len() || checksum(&p[..ihl]) != 0 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst, &p[ihl..]))
}

/// Parsed fields of an IPv4/UDP packet (None for anything else).
#[derive(Debug, PartialEq, Eq)]
pub struct UdpPacket {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

pub fn parse_ipv4_udp(p: &[u8]) -> Option<UdpPacket> {
    let (src, dst, udp) = parse_ipv4(17, p)?;
    if udp.len() < 8 || usize::from(u16::from_be_bytes([udp[4], udp[5]])) != udp.len() {
        return None;
    }
    Some(UdpPacket {
        src,
        dst,
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp[8..].to_vec(),
    })
}
