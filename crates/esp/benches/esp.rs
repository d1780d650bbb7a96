//! Seal/open throughput: 64 inner packets of 1400 bytes, sealed as one batch and opened one by
//! one in place (the data plane's two paths).

#![allow(clippy::unwrap_used)] // benchmark setup with fixed, valid keys

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use esp::{
    AesKeyLen, BatchBuf, Decapsulated, DirectionKeys, InboundSa, Integrity, OutboundSa, Transform,
};

const PACKET: usize = 1400;
const BATCH: usize = 64;

fn inner_packets() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut p = vec![i as u8; PACKET];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
            p
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let transforms = [
        ("aes256gcm", Transform::AesGcm16(AesKeyLen::Aes256)),
        ("chacha20poly1305", Transform::ChaCha20Poly1305),
        (
            "aes256cbc-hmacsha256",
            Transform::AesCbc(AesKeyLen::Aes256, Integrity::HmacSha256_128),
        ),
    ];
    let inner = inner_packets();
    let mut group = c.benchmark_group("esp");
    group.throughput(Throughput::Bytes((PACKET * BATCH) as u64));
    for (name, t) in transforms {
        let keymat: Vec<u8> = (0..t.keymat_len()).map(|i| i as u8).collect();
        let keys = DirectionKeys::from_keymat(t, &keymat).unwrap();
        let mut out_sa = OutboundSa::new(0x1234_5678, &keys).unwrap();
        let mut sealed = BatchBuf::new(BATCH * (PACKET + 128), BATCH);
        group.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| {
                sealed.clear();
                let r = out_sa.encapsulate_batch(black_box(&inner[..]), &mut sealed);
                assert_eq!(r.sealed, BATCH);
            })
        });
        // Inbound is one packet at a time, in place, as the data plane does it.
        group.bench_function(format!("open/{name}"), |b| {
            b.iter_batched(
                || {
                    let packets: Vec<Vec<u8>> = sealed.iter().map(<[u8]>::to_vec).collect();
                    (InboundSa::new(0x1234_5678, &keys).unwrap(), packets)
                },
                |(mut in_sa, mut packets)| {
                    for p in &mut packets {
                        let r = in_sa.decapsulate_in_place(black_box(p)).unwrap();
                        assert!(matches!(r, Decapsulated::Packet { .. }));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
