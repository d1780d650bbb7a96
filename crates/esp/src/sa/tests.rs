use super::*;
use crate::transform::{AesKeyLen, Transform};

fn keys() -> DirectionKeys {
    let t = Transform::AesGcm16(AesKeyLen::Aes128);
    DirectionKeys::from_keymat(t, &[7u8; 20]).unwrap()
}

fn ipv4(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

#[test]
fn sequence_exhaustion_refuses_and_never_wraps() {
    let mut out = OutboundSa::new(0x1000, &keys()).unwrap();
    let mut inb = InboundSa::new(0x1000, &keys()).unwrap();
    out.next_seq = MAX_SEQ_32 - 1;
    inb.replay = ReplayWindow::new(1024);
    let mut buf = [0u8; 256];
    let inner = ipv4(40);
    for expect_seq in [MAX_SEQ_32 - 1, MAX_SEQ_32] {
        let n = out.encapsulate(&inner, &mut buf).unwrap();
        assert_eq!(&buf[4..8], &(expect_seq as u32).to_be_bytes());
        assert!(matches!(
            inb.decapsulate_in_place(&mut buf[..n]),
            Ok(Decapsulated::Packet { .. })
        ));
    }
    assert_eq!(
        out.encapsulate(&inner, &mut buf),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(
        out.encapsulate(&inner, &mut buf),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(out.next_seq(), MAX_SEQ_32 + 1);
    assert_eq!(out.counters().refused, 2);
    assert_eq!(
        out.poll_event(),
        Some(SaEvent::RekeyNeeded(LimitKind::Sequence))
    );
    assert_eq!(
        out.poll_event(),
        Some(SaEvent::Expired(LimitKind::Sequence))
    );
    assert_eq!(out.poll_event(), None);
}

fn esn_pair(t: Transform, first_seq: u64) -> (OutboundSa, InboundSa) {
    let keys = DirectionKeys::from_keymat(t, &vec![3u8; t.keymat_len()]).unwrap();
    let mut out = OutboundSa::with_config(0x2000, &keys, OutboundConfig::with_esn()).unwrap();
    let cfg = InboundConfig {
        esn: true,
        ..InboundConfig::default()
    };
    let mut inb = InboundSa::with_config(0x2000, &keys, cfg).unwrap();
    out.next_seq = first_seq;
    inb.replay.accept(first_seq - 1).unwrap();
    (out, inb)
}

#[test]
fn esn_crosses_the_32_bit_boundary_in_order_and_reordered() {
    use crate::transform::Integrity;
    for t in [
        Transform::AesGcm16(AesKeyLen::Aes256),
        Transform::ChaCha20Poly1305,
        Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha256_128),
    ] {
        let start = (1u64 << 32) - 3;
        let (mut out, mut inb) = esn_pair(t, start);
        let packets: Vec<Vec<u8>> = (0..8)
            .map(|_| {
                let mut buf = vec![0u8; 200];
                let n = out.encapsulate(&ipv4(60), &mut buf).unwrap();
                buf.truncate(n);
                buf
            })
            .collect();
        // Low halves on the wire wrap: ..fffd, ..fffe, ..ffff, 0, 1, ...
        assert_eq!(&packets[3][4..8], &[0, 0, 0, 0]);
        // Deliver 0..2 and 5..8 in order, then 3 and 4 late (window straddles 2^32).
        for i in [0, 1, 2, 5, 6, 7, 3, 4] {
            let mut p = packets[i].clone();
            assert!(
                matches!(
                    inb.decapsulate_in_place(&mut p),
                    Ok(Decapsulated::Packet { .. })
                ),
                "{t:?} packet {i}"
            );
        }
        assert_eq!(inb.replay_window().highest(), start + 7);
        let mut again = packets[2].clone();
        assert_eq!(
            inb.decapsulate_in_place(&mut again),
            Err(DecapError::Replayed)
        );
    }
}

#[test]
fn esn_mismatch_fails_authentication() {
    let t = Transform::AesGcm16(AesKeyLen::Aes128);
    let (mut out, _) = esn_pair(t, 5);
    let mut plain_in =
        InboundSa::new(0x2000, &DirectionKeys::from_keymat(t, &[3u8; 20]).unwrap()).unwrap();
    let mut buf = [0u8; 200];
    let n = out.encapsulate(&ipv4(40), &mut buf).unwrap();
    // High half 0 is still authenticated under ESN: a non-ESN receiver's AAD differs.
    assert_eq!(
        plain_in.decapsulate_in_place(&mut buf[..n]),
        Err(DecapError::AuthenticationFailed)
    );
}

#[test]
fn esn_inference_follows_rfc4303_appendix_a() {
    let t = Transform::ChaCha20Poly1305;
    let (_, mut inb) = esn_pair(t, 2);
    // Window at the start (top 1): everything lands in subspace 0.
    assert_eq!(inb.infer_seq(7), 7);
    assert_eq!(inb.infer_seq(u32::MAX), u64::from(u32::MAX));
    // Window inside subspace 1: [2^32 + 10000 - 4095, 2^32 + 10000].
    inb.replay.accept((1 << 32) + 10_000).unwrap();
    assert_eq!(inb.infer_seq(9_000), (1 << 32) + 9_000);
    assert_eq!(inb.infer_seq(20_000), (1 << 32) + 20_000);
    assert_eq!(inb.infer_seq(1_000), (2 << 32) + 1_000);
    // Window straddling 2^33: top = 2^33 + 5.
    inb.replay.accept((2 << 32) + 5).unwrap();
    assert_eq!(
        inb.infer_seq(u32::MAX - 10),
        (1 << 32) + u64::from(u32::MAX - 10)
    );
    assert_eq!(inb.infer_seq(3), (2 << 32) + 3);
    assert_eq!(inb.infer_seq(100), (2 << 32) + 100);
}

#[test]
fn soft_sequence_limit_fires_once() {
    let cfg = OutboundConfig {
        soft_seq: 3,
        ..OutboundConfig::default()
    };
    let mut out = OutboundSa::with_config(0x1000, &keys(), cfg).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..2 {
        out.encapsulate(&ipv4(20), &mut buf).unwrap();
    }
    assert_eq!(out.poll_event(), None);
    out.encapsulate(&ipv4(20), &mut buf).unwrap();
    out.encapsulate(&ipv4(20), &mut buf).unwrap();
    assert_eq!(
        out.poll_event(),
        Some(SaEvent::RekeyNeeded(LimitKind::Sequence))
    );
    assert_eq!(out.poll_event(), None);
}

#[test]
fn trailer_parsing() {
    assert_eq!(parse_trailer(&[9, 9, 1, 2, 3, 3, 4]), Ok((2, 4)));
    assert_eq!(parse_trailer(&[9, 0, 41]), Ok((1, 41)));
    assert_eq!(parse_trailer(&[9, 1, 3, 3, 4]), Err(DecapError::BadPadding));
    assert_eq!(parse_trailer(&[1, 2, 3, 4]), Err(DecapError::BadPadding));
    assert_eq!(parse_trailer(&[4]), Err(DecapError::Malformed));
}
