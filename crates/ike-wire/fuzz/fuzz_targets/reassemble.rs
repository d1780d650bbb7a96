//! Reassembler under arbitrary fragment streams (limits hold, never panics) and split/reassemble
//! of arbitrary plaintext in an arbitrary arrival order (always yields the original).
#![no_main]

use arbitrary::Arbitrary;
use ike_wire::{
    FragmentPosition, PayloadType, Reassembler, ReassemblyLimits, ReassemblyStatus,
    split_fragments,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Fragment {
    message_id: u8,
    number: u16,
    total: u16,
    first_payload: u8,
    data: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    max_fragments: u8,
    max_bytes: u16,
    max_messages: u8,
    stream: Vec<Fragment>,
    plaintext: Vec<u8>,
    room: u8,
    order_seed: Vec<u16>,
}

fuzz_target!(|input: Input| {
    let limits = ReassemblyLimits {
        max_fragments: input.max_fragments.into(),
        max_bytes: input.max_bytes.into(),
        max_messages: usize::from(input.max_messages % 8),
    };
    let mut r = Reassembler::new(limits);
    for f in &input.stream {
        let pos = FragmentPosition { number: f.number, total: f.total };
        let res = r.insert(f.message_id.into(), pos, PayloadType(f.first_payload), &f.data);
        if let Ok(ReassemblyStatus::Complete(done)) = res {
            assert!(done.chain.len() <= limits.max_bytes);
            assert_eq!(done.message_id, u32::from(f.message_id));
        }
        assert!(r.pending_messages() <= limits.max_messages.max(1));
    }

    // Split and reassemble in a permuted order with duplicates.
    let room = usize::from(input.room.max(1));
    let Ok(chunks) = split_fragments(&input.plaintext, room + 40, 40) else {
        panic!("split with room must succeed");
    };
    let Ok(total) = u16::try_from(chunks.len()) else { return };
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    for (i, s) in input.order_seed.iter().enumerate() {
        let a = i % order.len();
        let b = usize::from(*s) % order.len();
        order.swap(a, b);
    }
    let limits = ReassemblyLimits { max_fragments: u16::MAX, max_bytes: usize::MAX, max_messages: 1 };
    let mut r = Reassembler::new(limits);
    let mut completed = None;
    for (k, &i) in order.iter().enumerate() {
        let pos = FragmentPosition { number: i as u16 + 1, total };
        let status = r.insert(7, pos, PayloadType(41), chunks[i]).expect("valid fragment");
        if k > 0 && k + 1 < order.len() {
            // Re-deliver an earlier fragment: must be ignored.
            let j = order[k - 1];
            let dup = FragmentPosition { number: j as u16 + 1, total };
            assert_eq!(r.insert(7, dup, PayloadType(41), chunks[j]), Ok(ReassemblyStatus::Duplicate));
        }
        if let ReassemblyStatus::Complete(done) = status {
            assert_eq!(k + 1, order.len());
            completed = Some(done);
        }
    }
    let done = completed.expect("all fragments delivered");
    assert_eq!(done.chain, input.plaintext);
    assert_eq!(done.first_payload, PayloadType(41));
});
