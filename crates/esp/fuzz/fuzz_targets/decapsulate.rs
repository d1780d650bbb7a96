//! Arbitrary UDP/4500 payloads through classification and decapsulation, for every cipher
//! family. Nothing may panic, and nothing unauthenticated may come out.
#![no_main]

use esp::{
    AesKeyLen, Decapsulated, DirectionKeys, InboundSa, Integrity, OutboundSa, Transform,
    classify_udp4500,
};
use libfuzzer_sys::fuzz_target;

const SPI: u32 = 0x0102_0304;

fn transforms() -> [Transform; 3] {
    [
        Transform::AesGcm16(AesKeyLen::Aes128),
        Transform::ChaCha20Poly1305,
        Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha1_96),
    ]
}

fn keys(t: Transform) -> DirectionKeys {
    let keymat: Vec<u8> = (0..t.keymat_len()).map(|i| i as u8).collect();
    DirectionKeys::from_keymat(t, &keymat).expect("fixed key length")
}

fuzz_target!(|data: &[u8]| {
    let _ = classify_udp4500(data);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let t = transforms()[usize::from(selector) % 3];
    let mut sa = InboundSa::new(SPI, &keys(t)).expect("valid keys");

    // Raw bytes, with the SPI forced to ours half the time so the crypto path is reached.
    let mut packet = rest.to_vec();
    if selector & 0x80 != 0 && packet.len() >= 4 {
        packet[..4].copy_from_slice(&SPI.to_be_bytes());
    }
    assert!(sa.decapsulate_in_place(&mut packet).is_err());

    // A genuine packet whose inner bytes are the fuzz input: it decapsulates only if the input
    // is an acceptable IP packet, and then to exactly those bytes.
    let mut out = OutboundSa::new(SPI, &keys(t)).expect("valid keys");
    let mut buf = vec![0u8; rest.len() + 64];
    let Ok(n) = out.encapsulate(rest, &mut buf) else {
        return;
    };
    match sa.decapsulate_in_place(&mut buf[..n]) {
        Ok(Decapsulated::Packet { range, .. }) => assert!(rest.starts_with(&buf[range])),
        Ok(Decapsulated::Dummy) => panic!("dummy from a real packet"),
        Err(_) => {}
    }

    // The same genuine packet (next sequence number) with one byte flipped past the header:
    // the ICV check must refuse it, whatever the byte and the flip.
    let mut next = vec![0u8; n];
    if out.encapsulate(rest, &mut next).is_ok() && rest.len() >= 2 {
        let at = 8 + usize::from(rest[0]) % (n - 8);
        next[at] ^= rest[1] | 1;
        assert!(sa.decapsulate_in_place(&mut next).is_err());
    }
});
