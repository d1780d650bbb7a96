//! Known-answer tests for ESP AES-GCM.
//!
//! Source: D. McGrew, J. Viega, "The Use of Galois/Counter Mode (GCM) in IPsec ESP: Test
//! Vectors", draft-mcgrew-gcm-test-01 (IETF, 2005), the ESP packet cases whose AAD is
//! SPI ‖ 32-bit sequence number (the ESN cases are left out: ESN is not supported). Each case
//! gives key, salt ‖ IV as the nonce, AAD, the ESP plaintext (inner packet, padding, pad
//! length, next header), ciphertext and ICV. The draft's packets use next header 1, which
//! tunnel mode refuses, so the full decapsulation path must authenticate them and then drop
//! them as `BadNextHeader(1)`.

use crate::cipher::{CipherState, ESP_HEADER_LEN};
use crate::error::DecapError;
use crate::sa::InboundSa;
use crate::transform::{AesKeyLen, DirectionKeys, Transform};

struct Case {
    name: &'static str,
    key: &'static str,
    nonce: &'static str,
    aad: &'static str,
    plaintext: &'static str,
    ciphertext: &'static str,
    icv: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "test case 2 (AES-128)",
        key: "feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "0000a5f80000000a",
        plaintext: "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100\
                    0001000000000000037369700963796265726369747902646b00000100010001",
        ciphertext: "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c\
                     3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1",
        icv: "83b70d3aa8bc6ee4c309e9d85a41ad4a",
    },
    Case {
        name: "test case 3 (AES-256)",
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        nonce: "112233440102030405060708",
        aad: "4a2cbfe300000002",
        plaintext: "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000\
                    7002400020bf0000020405b40101040201020201",
        ciphertext: "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763\
                     748a637985771d347f0545659f14e99def842d8e",
        icv: "b335f4eecfdbf831824b4c4915956c96",
    },
    Case {
        name: "test case 4 (AES-128, zero key)",
        key: "00000000000000000000000000000000",
        nonce: "000000000000000000000000",
        aad: "0000000000000001",
        plaintext: "4500003c99c500008001cb7a40679318010101010800075c0200440061626364\
                    65666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
        ciphertext: "4688daf2f973a392732909c331d56d60f694abaa414b5e7ff5fdcdfff5e9a284\
                     456476492719ffb64de7d9dca1e1d894bc3bd57873ed4d181d19d4d5c8c18af3",
        icv: "f821d496eeb096e98ad2b69e4799c71d",
    },
    Case {
        name: "test case 7 (AES-192)",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c",
        nonce: "cafebabefacedbaddecaf888",
        aad: "0000a5f80000000a",
        plaintext: "45000028a4ad4000400678800a01038f0a010612802306b8cb712602dd6bb03e\
                    501016d075680001",
        ciphertext: "a5b1f8066029aea40e598b8122de02420938b3ab33f828e687b8858b5bfbdbd0\
                     315b27452144cc77",
        icv: "95457b9652037f5318027b5b4cd7a636",
    },
    Case {
        name: "test case 12 (AES-128, padding only, seq 0xffffffff)",
        key: "7d773d00c144c525ac619d18c84a3f47",
        nonce: "d966426743457e9182443bc6",
        aad: "335467aeffffffff",
        plaintext: "01020201",
        ciphertext: "437f866b",
        icv: "cb3f699fe9b0822bac961c4504bef270",
    },
];

fn unhex(s: &str) -> Vec<u8> {
    let compact: String = s.split_whitespace().collect();
    hex::decode(compact).unwrap()
}

fn keys(case: &Case) -> DirectionKeys {
    let key = unhex(case.key);
    let nonce = unhex(case.nonce);
    let transform = Transform::AesGcm16(match key.len() {
        16 => AesKeyLen::Aes128,
        24 => AesKeyLen::Aes192,
        _ => AesKeyLen::Aes256,
    });
    // KEYMAT for an AES-GCM key is the key followed by the 4-byte salt (RFC 4106 section 8.1).
    let keymat = [key.as_slice(), &nonce[..4]].concat();
    DirectionKeys::from_keymat(transform, &keymat).unwrap()
}

/// The ESP packet on the wire: SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV.
fn wire_packet(case: &Case) -> Vec<u8> {
    [
        unhex(case.aad),
        unhex(case.nonce)[4..].to_vec(),
        unhex(case.ciphertext),
        unhex(case.icv),
    ]
    .concat()
}

#[test]
fn seal_matches_vectors() {
    for case in CASES {
        let cipher = CipherState::new(&keys(case)).unwrap();
        let plaintext = unhex(case.plaintext);
        let mut packet = [unhex(case.aad), vec![0; 8], plaintext, vec![0; 16]].concat();
        let iv: [u8; 8] = unhex(case.nonce)[4..].try_into().unwrap();
        cipher.seal_aead(&mut packet, iv).unwrap();
        assert_eq!(packet, wire_packet(case), "{}", case.name);
    }
}

#[test]
fn open_matches_vectors() {
    for case in CASES {
        let cipher = CipherState::new(&keys(case)).unwrap();
        let mut packet = wire_packet(case);
        let range = cipher.open(&mut packet).unwrap();
        assert_eq!(packet[range], unhex(case.plaintext)[..], "{}", case.name);
    }
}

#[test]
fn full_path_authenticates_vectors_then_refuses_next_header_1() {
    for case in CASES {
        let aad = unhex(case.aad);
        let spi = u32::from_be_bytes(aad[..4].try_into().unwrap());
        let seq = u32::from_be_bytes(aad[4..ESP_HEADER_LEN].try_into().unwrap());
        let mut sa = InboundSa::new(spi, &keys(case)).unwrap();
        let mut packet = wire_packet(case);
        assert_eq!(
            sa.decapsulate_in_place(&mut packet),
            Err(DecapError::BadNextHeader(1)),
            "{}",
            case.name
        );
        let c = sa.counters();
        assert_eq!((c.auth_failed, c.bad_next_header), (0, 1), "{}", case.name);
        assert_eq!(sa.replay_window().highest(), u64::from(seq));

        // One flipped ICV bit: dropped as an authentication failure.
        let mut sa = InboundSa::new(spi, &keys(case)).unwrap();
        let mut packet = wire_packet(case);
        *packet.last_mut().unwrap() ^= 1;
        assert_eq!(
            sa.decapsulate_in_place(&mut packet),
            Err(DecapError::AuthenticationFailed)
        );
    }
}
