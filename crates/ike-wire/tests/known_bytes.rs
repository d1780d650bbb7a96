//! Exact-byte tests: messages laid out by hand from the RFC 7296 section 3 diagrams.
#![allow(clippy::unwrap_used)]

use ike_wire::*;

/// IKE_SA_INIT request: SA(1 IKE proposal: AES-CBC-256, HMAC-SHA2-256, HMAC-SHA2-256-128,
/// MODP-2048), KE, Nonce, N(IKEV2_FRAGMENTATION_SUPPORTED). Built field by field from the
/// RFC 7296 3.1, 3.3, 3.4, 3.9, 3.10 diagrams.
#[rustfmt::skip]
const SA_INIT: &[u8] = &[
    // IKE header
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // SPIi
    0, 0, 0, 0, 0, 0, 0, 0,                         // SPIr
    33, 0x20, 34, 0x08,                             // next SA, v2.0, IKE_SA_INIT, Initiator
    0, 0, 0, 0,                                     // message ID
    0, 0, 0, 116,                                   // length
    // SA payload
    34, 0, 0, 48,                                   // next KE, length 48
    0, 0, 0, 44, 1, 1, 0, 4,                        // last proposal, len 44, #1, IKE, no SPI, 4 transforms
    3, 0, 0, 12, 1, 0, 0, 12, 0x80, 14, 0x01, 0x00, // ENCR AES_CBC, KEY_LENGTH(TV)=256
    3, 0, 0, 8, 2, 0, 0, 5,                         // PRF HMAC_SHA2_256
    3, 0, 0, 8, 3, 0, 0, 12,                        // INTEG HMAC_SHA2_256_128
    0, 0, 0, 8, 4, 0, 0, 14,                        // last: DH MODP_2048
    // KE payload
    40, 0, 0, 12, 0, 14, 0, 0, 0xde, 0xad, 0xbe, 0xef,
    // Nonce payload
    41, 0, 0, 20,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    // Notify payload: protocol 0, SPI size 0, type 16430
    0, 0, 0, 8, 0, 0, 0x40, 0x2e,
];

fn sa_init() -> Message {
    Message::new(
        Header::new(
            0x0102030405060708,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags::INITIATOR,
            0,
        ),
        vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![Proposal {
                    number: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::encr(EncrId::AES_CBC, Some(256)),
                        Transform::new(TransformId::Prf(PrfId::HMAC_SHA2_256)),
                        Transform::new(TransformId::Integ(IntegId::HMAC_SHA2_256_128)),
                        Transform::new(TransformId::Ke(DhGroup::MODP_2048)),
                    ],
                }],
            }),
            Payload::Ke(KeyExchange {
                group: DhGroup::MODP_2048,
                data: vec![0xde, 0xad, 0xbe, 0xef],
            }),
            Payload::Nonce(vec![0x11; 16]),
            Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                vec![],
            )),
        ],
    )
}

#[test]
fn sa_init_encodes_to_exact_bytes() {
    assert_eq!(sa_init().encode().unwrap(), SA_INIT);
}

#[test]
fn sa_init_decodes_from_exact_bytes() {
    let msg = Message::decode(SA_INIT).unwrap();
    assert_eq!(msg, sa_init());
    let sa = msg.payloads.sa().unwrap();
    assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(256));
    assert_eq!(msg.payloads.ke().unwrap().group, DhGroup::MODP_2048);
    assert_eq!(msg.payloads.nonce().unwrap(), &[0x11; 16]);
    assert!(
        msg.payloads
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_some()
    );
    assert!(msg.payloads.notify(NotifyType::COOKIE).is_none());
    assert_eq!(msg.payloads.unsupported_critical(), None);
}

#[test]
fn protected_message_prefix_and_parts() {
    let header = Header::new(7, 9, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
    let inner = vec![
        Payload::IdI(Identification {
            id_type: IdType::FQDN,
            data: b"client.example".to_vec(),
        }),
        Payload::Auth(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: vec![5; 32],
        }),
    ];
    let (first, plain) = encode_chain(&inner).unwrap();
    assert_eq!(first, PayloadType::IDI);
    // Stand-in for seal(): IV(16) ‖ "ciphertext" ‖ ICV(16), length known in advance.
    let body_len = 16 + plain.len() + 16;
    let mut msg = seal_prefix(
        &header,
        &[],
        Protection::Sk {
            first_payload: first,
        },
        body_len,
    )
    .unwrap();
    assert_eq!(msg.len(), HEADER_LEN + 4);
    let prefix = msg.clone();
    msg.extend(std::iter::repeat_n(0xaa, 16));
    msg.extend(&plain);
    msg.extend(std::iter::repeat_n(0xbb, 16));

    let parts = open_parts(&msg).unwrap();
    assert_eq!(parts.header, header);
    assert_eq!(parts.aad, prefix.as_slice());
    assert_eq!(parts.body.len(), body_len);
    assert_eq!(parts.first_payload, PayloadType::IDI);
    assert_eq!(parts.fragment, None);
    assert_eq!(
        decode_chain(parts.first_payload, &parts.body[16..16 + plain.len()]).unwrap(),
        inner
    );

    // The whole datagram also decodes as a message ending in an opaque SK payload.
    let decoded = Message::decode(&msg).unwrap();
    let sk = decoded.payloads.encrypted().unwrap();
    assert_eq!(sk.first_payload, PayloadType::IDI);
    assert_eq!(sk.body.as_slice(), parts.body);
    assert_eq!(decoded.encode().unwrap(), msg);
}

#[test]
fn fragment_prefix_and_parts() {
    let header = Header::new(7, 9, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
    let fragment = FragmentPosition {
        number: 1,
        total: 3,
    };
    let prot = Protection::Skf {
        fragment,
        first_payload: PayloadType::IDI,
    };
    let mut msg = seal_prefix(&header, &[], prot, 5).unwrap();
    assert_eq!(msg.len(), HEADER_LEN + 8);
    assert_eq!(&msg[16..17], &[53]); // header Next Payload = SKF
    assert_eq!(&msg[24..28], &(HEADER_LEN as u32 + 8 + 5).to_be_bytes());
    assert_eq!(&msg[28..], &[35, 0, 0, 13, 0, 1, 0, 3]);
    msg.extend([1, 2, 3, 4, 5]);
    let parts = open_parts(&msg).unwrap();
    assert_eq!(parts.fragment, Some(fragment));
    assert_eq!(parts.body, &[1, 2, 3, 4, 5]);
    assert_eq!(parts.aad.len(), HEADER_LEN + 8);
    let Payload::Skf(f) = &Message::decode(&msg).unwrap().payloads[0] else {
        panic!()
    };
    assert_eq!(
        (f.number, f.total, f.first_payload),
        (1, 3, PayloadType::IDI)
    );
}

#[test]
fn unprotected_message_is_not_protected() {
    assert_eq!(open_parts(SA_INIT), Err(DecodeError::NotProtected));
}
