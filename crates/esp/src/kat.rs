//! Known-answer tests for ESP AES-GCM.
//!
//! Source: D. McGrew, J. Viega, "The Use of Galois/Counter Mode (GCM) in IPsec ESP: Test
//! Vectors", draft-mcgrew-gcm-test-01 (IETF, 2005). Each case gives key, salt ‖ IV as the
//! nonce, AAD (SPI ‖ 32-bit sequence number, or SPI ‖ 64-bit extended sequence number), the ESP
//! plaintext (inner packet, padding, pad length, next header), ciphertext and ICV. The draft's
//! packets use next header 1, which tunnel mode refuses, so the full decapsulation path must
//! authenticate them and then drop them as `BadNextHeader(1)`. Not all cases are copied: the
//! ones below cover all three key sizes, both AAD forms and an empty payload.

use crate::cipher::CipherState;
use crate::error::DecapError;
use crate::framing::ESP_HEADER_LEN;
use crate::sa::{InboundConfig, InboundSa};
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
        name: "test case 1 (AES-128, ESN)",
        key: "4c80cdefbb5d10da906ac73c3613a634",
        nonce: "2e443b684956ed7e3b244cfe",
        aad: "000043218765432100000000",
        plaintext: "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000\
                    00000000045f736970045f756470037369700963796265726369747902646b00\
                    0021000101020201",
        ciphertext: "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34\
                     cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce\
                     61bc17d768fd9732",
        icv: "459018148f6cbe722fd04796562dfdb4",
    },
    Case {
        name: "test case 8 (AES-128, ESN high 0)",
        key: "abbccddef00112233445566778899aab",
        nonce: "decaf888cafedebaceface74",
        aad: "000001000000000000000001",
        plaintext: "4500004933ba00007f119106c3fb1d10c2b1d326c02831ce0035dd7b800302d5\
                    00004e20001e8c18d75b81dc91baa0476b91b924b280389d92c963bac046ec95\
                    9b6266c04722b14923010101",
        ciphertext: "18a6fd42f72cbf4ab2a2ea901f73d814e3e7f243d95412e1c349c1d2fbec168f\
                     9190feebaf2cb01984e65863965d7472b79da345e0e780191f0d2f0e0f496c22\
                     6f2127b27db35724e7845d68",
        icv: "651f57e65f354f75ff17015769623436",
    },
    Case {
        name: "test case 9 (AES-256, ESN)",
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        nonce: "73616c74616e640169766563",
        aad: "17405e67156f3126dd0db99b",
        plaintext: "45080028732c00004006e9f90a0106120a01038f06b88023dd6bafbecb712602\
                    50101f646d540001",
        ciphertext: "f2d69ecdbd5a0d5b8d5ef38bad4da58d1f278fde98ef67549d524a3018d9a57f\
                     f4d3a31ce673119e",
        icv: "451626c2415771e3b7eebca614c89b35",
    },
    Case {
        name: "test case 14 (AES-256, ESN all ones)",
        key: "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961",
        nonce: "7475726e333021696765746d",
        aad: "796b6963ffffffffffffffff",
        plaintext: "45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364\
                    65666768696a6b6c6d6e6f707172737401020201",
        ciphertext: "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a86\
                     4cd3d78ca4ae68a32b42458fb57dbe821dcc63b9",
        icv: "d0937ba2945f669368661a329fb4c053",
    },
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

/// SPI ‖ low 32 bits of the sequence number, and the high 32 bits if the case uses ESN.
fn header(case: &Case) -> (Vec<u8>, Option<u32>) {
    let aad = unhex(case.aad);
    match aad.len() {
        12 => (
            [&aad[..4], &aad[8..]].concat(),
            Some(u32::from_be_bytes(aad[4..8].try_into().unwrap())),
        ),
        _ => (aad, None),
    }
}

/// The ESP packet on the wire: SPI ‖ seq ‖ IV ‖ ciphertext ‖ ICV.
fn wire_packet(case: &Case) -> Vec<u8> {
    [
        header(case).0,
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
        let (hdr, seq_hi) = header(case);
        let mut packet = [hdr, vec![0; 8], plaintext, vec![0; 16]].concat();
        let iv: [u8; 8] = unhex(case.nonce)[4..].try_into().unwrap();
        cipher.seal_aead(&mut packet, iv, seq_hi).unwrap();
        assert_eq!(packet, wire_packet(case), "{}", case.name);
    }
}

#[test]
fn open_matches_vectors() {
    for case in CASES {
        let cipher = CipherState::new(&keys(case)).unwrap();
        let mut packet = wire_packet(case);
        let range = cipher.open(&mut packet, header(case).1).unwrap();
        assert_eq!(packet[range], unhex(case.plaintext)[..], "{}", case.name);
    }
}

/// Vectors a fresh inbound SA can receive: no ESN, or ESN with high half 0 (a fresh window
/// infers 0).
fn receivable(case: &Case) -> Option<(u32, u64, InboundConfig)> {
    let (hdr, seq_hi) = header(case);
    let spi = u32::from_be_bytes(hdr[..4].try_into().unwrap());
    let seq_lo = u32::from_be_bytes(hdr[4..ESP_HEADER_LEN].try_into().unwrap());
    let config = InboundConfig {
        esn: seq_hi.is_some(),
        ..InboundConfig::default()
    };
    match seq_hi {
        None | Some(0) => Some((spi, u64::from(seq_lo), config)),
        Some(_) => None,
    }
}

#[test]
fn full_path_authenticates_vectors_then_refuses_next_header_1() {
    let mut esn_cases = 0;
    for case in CASES {
        let Some((spi, seq, config)) = receivable(case) else {
            continue;
        };
        esn_cases += usize::from(config.esn);
        let mut sa = InboundSa::with_config(spi, &keys(case), config).unwrap();
        let mut packet = wire_packet(case);
        assert_eq!(
            sa.decapsulate_in_place(&mut packet),
            Err(DecapError::BadNextHeader(1)),
            "{}",
            case.name
        );
        let c = sa.counters();
        assert_eq!((c.auth_failed, c.bad_next_header), (0, 1), "{}", case.name);
        assert_eq!(sa.replay_window().highest(), seq);

        // One flipped ICV bit: dropped as an authentication failure.
        let mut sa = InboundSa::with_config(spi, &keys(case), config).unwrap();
        let mut packet = wire_packet(case);
        *packet.last_mut().unwrap() ^= 1;
        assert_eq!(
            sa.decapsulate_in_place(&mut packet),
            Err(DecapError::AuthenticationFailed)
        );
    }
    assert_eq!(esn_cases, 1);
}
