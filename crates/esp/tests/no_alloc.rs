//! The batch paths must not allocate per packet. A counting global allocator records Rust heap
//! allocations made on the measuring thread while armed. (aws-lc's own C allocations go through
//! libc malloc and are not seen here.)

#![allow(clippy::unwrap_used)] // test setup with fixed, valid inputs

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use esp::{
    AesKeyLen, BatchBuf, Decapsulated, DirectionKeys, InboundSa, Integrity, OutboundSa, Transform,
};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn batch_encapsulation_and_in_place_decapsulation_do_not_allocate() {
    // The counter works: a real allocation is seen.
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(10)))),
        1
    );
    for t in [
        Transform::AesGcm16(AesKeyLen::Aes256),
        Transform::ChaCha20Poly1305,
        Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha256_128),
    ] {
        let keymat: Vec<u8> = (0..t.keymat_len()).map(|i| i as u8).collect();
        let keys = DirectionKeys::from_keymat(t, &keymat).unwrap();
        let mut out = OutboundSa::new(0x4242, &keys).unwrap();
        let mut inb = InboundSa::new(0x4242, &keys).unwrap();
        let inner: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                let mut p = vec![i as u8; 1400];
                p[0] = 0x45;
                p[2..4].copy_from_slice(&1400u16.to_be_bytes());
                p
            })
            .collect();
        let mut wire = BatchBuf::new(64 * 1500, 64);
        // The receive buffers the data plane reuses: one per datagram of a batch.
        let mut received: Vec<Vec<u8>> = vec![vec![0u8; 1500]; 64];
        for round in 0..3 {
            let n = allocations_during(|| {
                wire.clear();
                let e = out.encapsulate_batch(&inner[..], &mut wire);
                let mut delivered = 0;
                for (seg, buf) in wire.iter().zip(received.iter_mut()) {
                    let packet = &mut buf[..seg.len()];
                    packet.copy_from_slice(seg);
                    if let Ok(Decapsulated::Packet { .. }) = inb.decapsulate_in_place(packet) {
                        delivered += 1;
                    }
                }
                assert_eq!((e.sealed, delivered), (64, 64));
            });
            assert_eq!(n, 0, "{t:?} round {round}: {n} allocations");
        }
    }
}
