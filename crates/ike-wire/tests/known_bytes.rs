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

// ---- malformed input: every length check gives its typed error ----

fn malformed(payload_type: PayloadType, offset: usize, defect: Defect) -> DecodeError {
    DecodeError::Malformed {
        payload_type,
        offset,
        defect,
    }
}

/// SA_INIT with `f` applied, header Length kept equal to the buffer size.
fn mutate(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut m = SA_INIT.to_vec();
    f(&mut m);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    m
}

/// A message holding one payload of type `pt` with the given body (lengths computed).
fn single(pt: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::INITIATOR, 5).write(
        PayloadType(pt),
        (HEADER_LEN + 4 + body.len()) as u32,
        &mut m,
    );
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&(4 + body.len() as u16).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[test]
fn header_errors() {
    assert_eq!(
        Message::decode(&SA_INIT[..27]),
        Err(DecodeError::TooShort { len: 27 })
    );
    let mut v1 = SA_INIT.to_vec();
    v1[17] = 0x10;
    match Message::decode(&v1) {
        Err(DecodeError::UnsupportedMajorVersion { major: 1, header }) => {
            assert_eq!(header.spi_i, 0x0102030405060708);
            assert_eq!(header.exchange_type, ExchangeType::IKE_SA_INIT);
            assert_eq!(header.message_id, 0);
        }
        other => panic!("{other:?}"),
    }
    let mut long = SA_INIT.to_vec();
    long.push(0);
    assert_eq!(
        Message::decode(&long),
        Err(DecodeError::LengthMismatch {
            declared: 116,
            actual: 117
        })
    );
    // Header alone claiming a first payload.
    let mut bare = SA_INIT[..HEADER_LEN + 2].to_vec();
    bare[24..28].copy_from_slice(&30u32.to_be_bytes());
    assert_eq!(
        Message::decode(&bare),
        Err(malformed(
            PayloadType::SA,
            28,
            Defect::TruncatedPayloadHeader
        ))
    );
}

#[test]
fn generic_payload_length_errors() {
    let m = mutate(|m| m[31] = 3);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(
            PayloadType::SA,
            28,
            Defect::PayloadLengthTooSmall
        ))
    );
    let m = mutate(|m| m[31] = 200);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 28, Defect::PayloadExceedsParent))
    );
    // Nonce declared shorter by 1: the Notify header then starts one byte early and is garbage;
    // whatever it parses as, the chain no longer ends at the message end.
    let m = mutate(|m| m[28 + 48 + 12 + 3] = 19);
    assert!(Message::decode(&m).is_err());
    // Trailing byte after the last payload, with the header Length covering it.
    let m = mutate(|m| m.push(0));
    assert_eq!(
        Message::decode(&m),
        Err(DecodeError::TrailingData {
            offset: 116,
            len: 1
        })
    );
}

#[test]
fn proposal_errors() {
    // Proposal starts at 32.
    let m = mutate(|m| m[35] = 45);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 32, Defect::ProposalLength))
    );
    let m = mutate(|m| m[35] = 7);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 32, Defect::ProposalLength))
    );
    let m = mutate(|m| m[32] = 2);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 32, Defect::ProposalLastSubstruc))
    );
    let m = mutate(|m| m[39] = 5);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(
            PayloadType::SA,
            32,
            Defect::ProposalTransformCount
        ))
    );
    let m = mutate(|m| m[38] = 50);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 32, Defect::ProposalSpi))
    );
    // SA payload with 3 stray bytes after the proposal: too short for another proposal header.
    let m = mutate(|m| {
        m[31] = 51;
        m[32] = 2;
        m.splice(76..76, [0, 0, 0]);
    });
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 76, Defect::ProposalLength))
    );
}

#[test]
fn transform_and_attribute_errors() {
    // First transform starts at 40, its attribute at 48.
    let m = mutate(|m| m[43] = 7);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 40, Defect::TransformLength))
    );
    let m = mutate(|m| m[43] = 200);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 40, Defect::TransformLength))
    );
    let m = mutate(|m| m[40] = 0);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(
            PayloadType::SA,
            40,
            Defect::TransformLastSubstruc
        ))
    );
    // KEY_LENGTH switched to TLV form: its "value" 0x0100 becomes a length of 256.
    let m = mutate(|m| m[48] = 0x00);
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 48, Defect::AttributeLength))
    );
    // Transform of 10 bytes: 2 bytes of attribute header only.
    let m = mutate(|m| {
        m[31] -= 2;
        m[35] -= 2;
        m[43] = 10;
        m.drain(50..52);
    });
    assert_eq!(
        Message::decode(&m),
        Err(malformed(PayloadType::SA, 48, Defect::AttributeLength))
    );
}

#[test]
fn payload_body_errors() {
    // Generic header at 28, body at 32.
    for pt in [34u8, 35, 36, 39, 41, 42, 44, 45, 47, 53] {
        assert_eq!(
            Message::decode(&single(pt, &[0; 3])),
            Err(malformed(PayloadType(pt), 28, Defect::BodyTooShort)),
            "type {pt}"
        );
    }
    for pt in [37u8, 38] {
        assert_eq!(
            Message::decode(&single(pt, &[])),
            Err(malformed(PayloadType(pt), 28, Defect::BodyTooShort))
        );
    }
    // Notify with SPI size 4 but 3 bytes after the fixed part.
    assert_eq!(
        Message::decode(&single(41, &[3, 4, 0x40, 0x00, 1, 2, 3])),
        Err(malformed(PayloadType::NOTIFY, 33, Defect::NotifySpi))
    );
    // Delete: 2 SPIs of 4 bytes announced, 7 bytes present; or SPI size 0 with a count.
    assert_eq!(
        Message::decode(&single(42, &[3, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7])),
        Err(malformed(PayloadType::DELETE, 34, Defect::DeleteSpis))
    );
    assert_eq!(
        Message::decode(&single(42, &[1, 0, 0, 1])),
        Err(malformed(PayloadType::DELETE, 34, Defect::DeleteSpis))
    );
    let ok = Message::decode(&single(42, &[3, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8])).unwrap();
    assert_eq!(
        ok.payloads,
        vec![Payload::Delete(Delete::esp(&[0x01020304, 0x05060708]))]
    );
}

#[test]
fn traffic_selector_errors() {
    let v4 = [7, 6, 0, 16, 0, 0, 0xff, 0xff, 10, 0, 0, 0, 10, 0, 0, 255];
    let body = |count: u8, sel: &[u8]| [&[count, 0, 0, 0][..], sel].concat();
    let ok = Message::decode(&single(44, &body(1, &v4))).unwrap();
    assert_eq!(
        ok.payloads.ts_i().unwrap(),
        &[TrafficSelector::Ipv4(TsRange {
            ip_protocol: 6,
            start_port: 0,
            end_port: 65535,
            start: [10, 0, 0, 0].into(),
            end: [10, 0, 0, 255].into(),
        })]
    );
    // Selector at body offset 4 = absolute 36.
    let mut wrong_len = v4;
    wrong_len[3] = 40; // length of a v6 selector on a v4 type
    assert_eq!(
        Message::decode(&single(44, &body(1, &wrong_len))),
        Err(malformed(
            PayloadType::TSI,
            36,
            Defect::TrafficSelectorLength
        ))
    );
    assert_eq!(
        Message::decode(&single(44, &body(1, &v4[..15]))),
        Err(malformed(
            PayloadType::TSI,
            36,
            Defect::TrafficSelectorLength
        ))
    );
    assert_eq!(
        Message::decode(&single(45, &body(1, &v4[..3]))),
        Err(malformed(
            PayloadType::TSR,
            36,
            Defect::TrafficSelectorLength
        ))
    );
    let mut other = [9, 0, 0, 3];
    assert_eq!(
        Message::decode(&single(44, &body(1, &other))),
        Err(malformed(
            PayloadType::TSI,
            36,
            Defect::TrafficSelectorLength
        ))
    );
    other[3] = 4;
    assert!(Message::decode(&single(44, &body(1, &other))).is_ok());
    assert_eq!(
        Message::decode(&single(44, &body(2, &v4))),
        Err(malformed(
            PayloadType::TSI,
            32,
            Defect::TrafficSelectorCount
        ))
    );
}

#[test]
fn configuration_attribute_errors() {
    let cp = |attrs: &[u8]| single(47, &[&[1, 0, 0, 0][..], attrs].concat());
    // Request: empty INTERNAL_IP4_ADDRESS and INTERNAL_IP4_DNS, an unknown attribute 0x5ba0.
    let ok = Message::decode(&cp(&[0, 1, 0, 0, 0, 3, 0, 0, 0x5b, 0xa0, 0, 1, 7])).unwrap();
    assert_eq!(
        ok.payloads.cp().unwrap(),
        &Configuration {
            cfg_type: CfgType::CFG_REQUEST,
            attributes: vec![
                CfgAttribute::InternalIp4Address(None),
                CfgAttribute::InternalIp4Dns(None),
                CfgAttribute::Other {
                    attr_type: CfgAttributeType(0x5ba0),
                    value: vec![7]
                },
            ],
        }
    );
    // Attribute at body offset 4 = absolute 36.
    for bad in [
        &[0, 1, 0, 3, 1, 2, 3][..], // IPv4 address of 3 bytes
        &[0, 13, 0, 4, 1, 2, 3, 4], // IPv4 subnet without mask
        &[0, 8, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // IPv6 address w/o prefix
        &[0, 10, 0, 4, 1, 2, 3, 4], // IPv6 DNS of 4 bytes
        &[0, 1, 0, 4, 1, 2],        // value truncated
        &[0, 1, 0],                 // header truncated
    ] {
        assert_eq!(
            Message::decode(&cp(bad)),
            Err(malformed(PayloadType::CP, 36, Defect::CfgAttributeLength)),
            "{bad:?}"
        );
    }
}

#[test]
fn encrypted_payload_must_be_last() {
    let mut m = single(46, &[1, 2, 3, 4]);
    m.extend_from_slice(&[0, 0, 0, 4]);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Message::decode(&m),
        Err(DecodeError::DataAfterEncrypted { offset: 36 })
    );
    assert_eq!(
        open_parts(&m),
        Err(DecodeError::DataAfterEncrypted { offset: 36 })
    );
}

#[test]
fn unknown_payloads_and_critical_bit() {
    // Unknown type 200 (not critical) followed by a Nonce, then unknown 201 (critical).
    let mut m = Vec::new();
    Header::new(1, 2, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0).write(
        PayloadType(200),
        (HEADER_LEN + 6 + 5 + 4) as u32,
        &mut m,
    );
    m.extend_from_slice(&[40, 0x00, 0, 6, 0xaa, 0xbb]);
    m.extend_from_slice(&[201, 0, 0, 5, 0x77]);
    m.extend_from_slice(&[0, 0x80, 0, 4]);
    let msg = Message::decode(&m).unwrap();
    assert_eq!(
        msg.payloads,
        vec![
            Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(200),
                critical: false,
                body: vec![0xaa, 0xbb]
            }),
            Payload::Nonce(vec![0x77]),
            Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(201),
                critical: true,
                body: vec![]
            }),
        ]
    );
    assert_eq!(msg.payloads.unsupported_critical(), Some(PayloadType(201)));
    assert_eq!(msg.encode().unwrap(), m);
    // The critical bit of known payloads is ignored on receipt and not sent.
    let mut crit_nonce = single(40, &[1, 2]);
    crit_nonce[29] = 0x80;
    let msg = Message::decode(&crit_nonce).unwrap();
    assert_eq!(msg.payloads.unsupported_critical(), None);
    assert_eq!(msg.encode().unwrap(), single(40, &[1, 2]));
}

#[test]
fn encode_rejects_oversized_fields() {
    let h = Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::default(), 0);
    let big = Message::new(h, vec![Payload::Nonce(vec![0; MAX_PAYLOAD_BODY + 1])]);
    assert!(matches!(
        big.encode(),
        Err(EncodeError::TooLarge {
            what: "payload length",
            ..
        })
    ));
    let fits = Message::new(h, vec![Payload::Nonce(vec![0; MAX_PAYLOAD_BODY])]);
    assert_eq!(fits.encode().unwrap().len(), HEADER_LEN + 65535);
    let bad_delete = Message::new(
        h,
        vec![Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1]],
        })],
    );
    assert!(matches!(
        bad_delete.encode(),
        Err(EncodeError::Inconsistent { .. })
    ));
}

#[test]
fn notify_data_helpers() {
    let n = Notify::unsupported_critical_payload(PayloadType(201));
    assert_eq!(
        (n.notify_type, n.data.as_slice()),
        (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, &[201][..])
    );
    let n = Notify::invalid_ke_payload(DhGroup::ECP_256);
    assert_eq!(n.data, [0, 19]);
    assert_eq!(n.requested_group(), Some(DhGroup::ECP_256));
    assert_eq!(
        Notify::new(NotifyType::INVALID_KE_PAYLOAD, vec![19]).requested_group(),
        None
    );
    assert_eq!(
        Notify::new(NotifyType::COOKIE, vec![0, 19]).requested_group(),
        None
    );
    let n = Notify::signature_hash_algorithms(&[2, 3, 4]);
    assert_eq!(n.data, [0, 2, 0, 3, 0, 4]);
    assert_eq!(n.hash_algorithms(), Some(vec![2, 3, 4]));
    assert_eq!(
        Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, vec![0]).hash_algorithms(),
        None
    );
    assert!(NotifyType::TS_UNACCEPTABLE.is_error() && !NotifyType::COOKIE.is_error());
    assert_eq!(
        NotifyType(16430).to_string(),
        "IKEV2_FRAGMENTATION_SUPPORTED"
    );
    assert_eq!(format!("{:?}", NotifyType(50000)), "NotifyType(50000)");
    assert_eq!(
        format!("{:?}", Flags::INITIATOR | Flags::RESPONSE | Flags(0x01)),
        "Flags(I|R|0x01)"
    );
}

/// The fuzz seeds for RFC 5685 decode to what they were built to carry, so that the fuzzer
/// starts from messages that reach the REDIRECT and REDIRECTED_FROM readers.
#[test]
fn redirect_fuzz_seeds_decode() {
    let response = Message::decode(include_bytes!(
        "../fuzz/seeds/decode_message/redirect-response"
    ))
    .unwrap();
    let (to, nonce) = response
        .payloads
        .notify(NotifyType::REDIRECT)
        .unwrap()
        .redirect_target()
        .unwrap();
    assert_eq!(to.to_string(), "203.0.113.3");
    assert_eq!(nonce.len(), 32);
    let request = Message::decode(include_bytes!(
        "../fuzz/seeds/decode_message/redirected-from-request"
    ))
    .unwrap();
    let from = request
        .payloads
        .notify(NotifyType::REDIRECTED_FROM)
        .unwrap()
        .redirected_from_gateway()
        .unwrap();
    assert_eq!(from.to_string(), "gw2.vpn.example");
    assert!(
        request
            .payloads
            .notify(NotifyType::REDIRECT_SUPPORTED)
            .is_some()
    );
}
