//! RFC 7383 fragment splitting and reassembly limits.
#![allow(clippy::unwrap_used)]

use ike_wire::*;

fn pos(number: u16, total: u16) -> FragmentPosition {
    FragmentPosition { number, total }
}

#[test]
fn split_sizes() {
    let data: Vec<u8> = (0..=255).collect();
    let chunks = split_fragments(&data, 100, 60).unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        [40; 6].iter().copied().chain([16]).collect::<Vec<_>>()
    );
    assert_eq!(chunks.concat(), data);
    assert_eq!(split_fragments(&[], 100, 60).unwrap(), [&[] as &[u8]]);
    assert_eq!(
        split_fragments(&data, 60, 60),
        Err(FragmentError::NoRoom {
            max_datagram: 60,
            overhead: 60
        })
    );
    assert!(matches!(
        split_fragments(&vec![0; 70_000], 2, 1),
        Err(FragmentError::TooManyFragments {
            total: 70_000,
            max: 65535
        })
    ));
}

#[test]
fn rejects_bad_positions_and_limits() {
    let mut r = Reassembler::default();
    let none = PayloadType::NONE;
    assert_eq!(
        r.insert(1, pos(0, 2), none, b"x"),
        Err(FragmentError::BadNumber {
            number: 0,
            total: 2
        })
    );
    assert_eq!(
        r.insert(1, pos(3, 2), none, b"x"),
        Err(FragmentError::BadNumber {
            number: 3,
            total: 2
        })
    );
    assert_eq!(
        r.insert(1, pos(1, 0), none, b"x"),
        Err(FragmentError::BadNumber {
            number: 1,
            total: 0
        })
    );
    assert_eq!(
        r.insert(1, pos(1, 65), none, b"x"),
        Err(FragmentError::TooManyFragments { total: 65, max: 64 })
    );
    assert_eq!(r.pending_messages(), 0);
    assert_eq!(
        r.insert(1, pos(64, 64), none, b"x"),
        Ok(ReassemblyStatus::Incomplete)
    );
}

#[test]
fn default_byte_limit_is_64k() {
    let mut r = Reassembler::default();
    let big = vec![0; 32 * 1024];
    assert_eq!(
        r.insert(9, pos(1, 3), PayloadType::SA, &big),
        Ok(ReassemblyStatus::Incomplete)
    );
    assert_eq!(
        r.insert(9, pos(2, 3), PayloadType::NONE, &big),
        Ok(ReassemblyStatus::Incomplete)
    );
    assert_eq!(
        r.insert(9, pos(3, 3), PayloadType::NONE, b"!"),
        Err(FragmentError::TooLarge {
            bytes: 64 * 1024 + 1,
            max: 64 * 1024
        })
    );
    // The partial message is gone; a fresh start works.
    assert_eq!(r.pending_messages(), 0);
}

#[test]
fn total_changes() {
    let mut r = Reassembler::default();
    assert_eq!(
        r.insert(5, pos(1, 2), PayloadType::IDI, b"ab"),
        Ok(ReassemblyStatus::Incomplete)
    );
    // Smaller total: stale fragment of an older fragmentation, rejected, state kept.
    assert_eq!(
        r.insert(5, pos(1, 1), PayloadType::IDI, b"abcd"),
        Err(FragmentError::StaleTotal {
            total: 1,
            current: 2
        })
    );
    // Larger total: the sender re-fragmented smaller; restart with the new set (RFC 7383 2.6).
    assert_eq!(
        r.insert(5, pos(3, 3), PayloadType::NONE, b"d"),
        Ok(ReassemblyStatus::Incomplete)
    );
    assert_eq!(
        r.insert(5, pos(2, 2), PayloadType::NONE, b"cd"),
        Err(FragmentError::StaleTotal {
            total: 2,
            current: 3
        })
    );
    assert_eq!(
        r.insert(5, pos(1, 3), PayloadType::IDI, b"ab"),
        Ok(ReassemblyStatus::Incomplete)
    );
    assert_eq!(
        r.insert(5, pos(2, 3), PayloadType::NONE, b"c"),
        Ok(ReassemblyStatus::Complete(Reassembled {
            message_id: 5,
            first_payload: PayloadType::IDI,
            chain: b"abcd".to_vec(),
        }))
    );
}

#[test]
fn messages_are_separate_and_oldest_is_evicted() {
    let limits = ReassemblyLimits {
        max_messages: 2,
        ..ReassemblyLimits::default()
    };
    let mut r = Reassembler::new(limits);
    r.insert(1, pos(1, 2), PayloadType::SA, b"1a").unwrap();
    r.insert(2, pos(1, 2), PayloadType::SA, b"2a").unwrap();
    assert_eq!(r.pending_messages(), 2);
    // A third message evicts message 1.
    r.insert(3, pos(2, 2), PayloadType::NONE, b"3b").unwrap();
    assert_eq!(r.pending_messages(), 2);
    assert_eq!(
        r.insert(1, pos(2, 2), PayloadType::NONE, b"1b"),
        Ok(ReassemblyStatus::Incomplete)
    );
    // Message 2 was evicted by the restart of 1; message 3 still completes.
    let done = r.insert(3, pos(1, 2), PayloadType::SA, b"3a").unwrap();
    assert_eq!(
        done,
        ReassemblyStatus::Complete(Reassembled {
            message_id: 3,
            first_payload: PayloadType::SA,
            chain: b"3a3b".to_vec()
        })
    );
    r.discard(1);
    assert_eq!(r.pending_messages(), 0);
}

#[test]
fn encrypted_payload_must_be_last_when_encoding() {
    let h = Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::INITIATOR, 3);
    let sk = Payload::Sk(Encrypted {
        first_payload: PayloadType::NONE,
        body: vec![1; 24],
    });
    let bad = Message::new(h, vec![sk.clone(), Payload::Nonce(vec![1])]);
    assert!(matches!(
        bad.encode(),
        Err(EncodeError::Inconsistent { .. })
    ));
    let prot = Protection::Sk {
        first_payload: PayloadType::NONE,
    };
    assert!(matches!(
        seal_prefix(&h, std::slice::from_ref(&sk), prot, 8),
        Err(EncodeError::Inconsistent { .. })
    ));
    assert!(
        Message::new(h, vec![Payload::Nonce(vec![1]), sk])
            .encode()
            .is_ok()
    );
}
