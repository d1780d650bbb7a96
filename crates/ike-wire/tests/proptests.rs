//! Property tests: encode/decode round trips for arbitrary messages, decoding arbitrary bytes never
//! panics, and fragment split/reassembly.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use ike_wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn transform_id() -> impl Strategy<Value = TransformId> {
    prop_oneof![
        any::<u16>().prop_map(|v| TransformId::Encr(EncrId(v))),
        any::<u16>().prop_map(|v| TransformId::Prf(PrfId(v))),
        any::<u16>().prop_map(|v| TransformId::Integ(IntegId(v))),
        any::<u16>().prop_map(|v| TransformId::Ke(DhGroup(v))),
        any::<u16>().prop_map(|v| TransformId::Esn(EsnId(v))),
        (
            any::<u8>().prop_filter("not 1..=5", |t| !(1..=5).contains(t)),
            any::<u16>()
        )
            .prop_map(|(t, v)| TransformId::Other(TransformType(t), v)),
    ]
}

fn transform_attribute() -> impl Strategy<Value = TransformAttribute> {
    (
        0u16..0x8000,
        prop_oneof![
            any::<u16>().prop_map(AttributeValue::Tv),
            bytes(8).prop_map(AttributeValue::Tlv)
        ],
    )
        .prop_map(|(t, value)| TransformAttribute {
            attr_type: TransformAttributeType(t),
            value,
        })
}

fn transform() -> impl Strategy<Value = Transform> {
    (transform_id(), vec(transform_attribute(), 0..3))
        .prop_map(|(id, attributes)| Transform { id, attributes })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), bytes(8), vec(transform(), 0..6)).prop_map(
        |(number, protocol, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId(protocol),
            spi,
            transforms,
        },
    )
}

fn traffic_selector() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (any::<u8>(), any::<u16>(), any::<u16>(), ipv4(), ipv4()).prop_map(|(p, sp, ep, s, e)| {
            TrafficSelector::Ipv4(TsRange {
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start: s,
                end: e,
            })
        }),
        (any::<u8>(), any::<u16>(), any::<u16>(), ipv6(), ipv6()).prop_map(|(p, sp, ep, s, e)| {
            TrafficSelector::Ipv6(TsRange {
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start: s,
                end: e,
            })
        }),
        (
            any::<u8>().prop_filter("not 7/8", |t| *t != 7 && *t != 8),
            any::<u8>(),
            bytes(24)
        )
            .prop_map(|(t, octet1, data)| TrafficSelector::Other {
                ts_type: TsType(t),
                octet1,
                data
            }),
    ]
}

const TYPED_CFG: [u16; 7] = [1, 2, 3, 8, 10, 13, 15];

fn cfg_attribute() -> impl Strategy<Value = CfgAttribute> {
    prop_oneof![
        proptest::option::of(ipv4()).prop_map(CfgAttribute::InternalIp4Address),
        proptest::option::of(ipv4()).prop_map(CfgAttribute::InternalIp4Netmask),
        proptest::option::of(ipv4()).prop_map(CfgAttribute::InternalIp4Dns),
        proptest::option::of((ipv6(), any::<u8>())).prop_map(CfgAttribute::InternalIp6Address),
        proptest::option::of(ipv6()).prop_map(CfgAttribute::InternalIp6Dns),
        proptest::option::of((ipv4(), ipv4())).prop_map(CfgAttribute::InternalIp4Subnet),
        proptest::option::of((ipv6(), any::<u8>())).prop_map(CfgAttribute::InternalIp6Subnet),
        (
            (0u16..0x8000).prop_filter("typed", |t| !TYPED_CFG.contains(t)),
            bytes(20)
        )
            .prop_map(|(t, value)| CfgAttribute::Other {
                attr_type: CfgAttributeType(t),
                value
            }),
    ]
}

fn delete() -> impl Strategy<Value = Delete> {
    (any::<u8>(), 0u8..=8).prop_flat_map(|(protocol, spi_size)| {
        let count = if spi_size == 0 { 0..1 } else { 0..5 };
        vec(vec(any::<u8>(), usize::from(spi_size)), count).prop_map(move |spis| Delete {
            protocol: ProtocolId(protocol),
            spi_size,
            spis,
        })
    })
}

/// Any payload except SK / SKF (which must come last).
fn plain_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 0..4).prop_map(|proposals| Payload::Sa(SecurityAssociation { proposals })),
        (any::<u16>(), bytes(64)).prop_map(|(g, data)| Payload::Ke(KeyExchange {
            group: DhGroup(g),
            data
        })),
        (any::<u8>(), bytes(32), any::<bool>()).prop_map(|(t, data, initiator)| {
            let id = Identification {
                id_type: IdType(t),
                data,
            };
            if initiator {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }),
        (any::<u8>(), bytes(64), any::<bool>()).prop_map(|(e, data, req)| {
            let c = Certificate {
                encoding: CertEncoding(e),
                data,
            };
            if req {
                Payload::CertReq(c)
            } else {
                Payload::Cert(c)
            }
        }),
        (any::<u8>(), bytes(64)).prop_map(|(m, data)| Payload::Auth(Authentication {
            method: AuthMethod(m),
            data
        })),
        bytes(64).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(32)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify {
                protocol: ProtocolId(p),
                spi,
                notify_type: NotifyType(t),
                data,
            })
        }),
        delete().prop_map(Payload::Delete),
        bytes(32).prop_map(Payload::VendorId),
        (vec(traffic_selector(), 0..4), any::<bool>()).prop_map(|(ts, i)| if i {
            Payload::TsI(ts)
        } else {
            Payload::TsR(ts)
        }),
        (any::<u8>(), vec(cfg_attribute(), 0..6)).prop_map(|(t, attributes)| {
            Payload::Cp(Configuration {
                cfg_type: CfgType(t),
                attributes,
            })
        }),
        bytes(32).prop_map(Payload::Eap),
        (
            any::<u8>().prop_filter("unknown", |t| *t != 0
                && !Payload::is_known_type(PayloadType(*t))),
            any::<bool>(),
            bytes(32)
        )
            .prop_map(|(t, critical, body)| Payload::Unknown(UnknownPayload {
                payload_type: PayloadType(t),
                critical,
                body
            })),
    ]
}

fn encrypted_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<u8>(), bytes(64)).prop_map(|(f, body)| Payload::Sk(Encrypted {
            first_payload: PayloadType(f),
            body
        })),
        (any::<u16>(), any::<u16>(), any::<u8>(), bytes(64)).prop_map(
            |(number, total, f, body)| {
                Payload::Skf(EncryptedFragment {
                    number,
                    total,
                    first_payload: PayloadType(f),
                    body,
                })
            }
        ),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(spi_i, spi_r, minor_version, x, f, message_id)| Header {
            spi_i,
            spi_r,
            minor_version,
            exchange_type: ExchangeType(x),
            flags: Flags(f),
            message_id,
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        header(),
        vec(plain_payload(), 0..6),
        proptest::option::of(encrypted_payload()),
    )
        .prop_map(|(header, mut payloads, sk)| {
            payloads.extend(sk);
            Message { header, payloads }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip(msg in message()) {
        let wire = msg.encode().unwrap();
        prop_assert_eq!(Message::decode(&wire).unwrap(), msg);
    }

    #[test]
    fn chain_round_trip(payloads in vec(plain_payload(), 0..8)) {
        let (first, wire) = encode_chain(&payloads).unwrap();
        prop_assert_eq!(decode_chain(first, &wire).unwrap(), payloads);
    }

    #[test]
    fn protected_split_matches_prefix(
        header in header(),
        unprotected in vec(plain_payload(), 0..3),
        first in any::<u8>(),
        fragment in proptest::option::of((any::<u16>(), any::<u16>())),
        body in bytes(128),
    ) {
        let protection = match fragment {
            None => Protection::Sk { first_payload: PayloadType(first) },
            Some((number, total)) => Protection::Skf {
                fragment: FragmentPosition { number, total },
                first_payload: PayloadType(first),
            },
        };
        let mut wire = seal_prefix(&header, &unprotected, protection, body.len()).unwrap();
        let prefix_len = wire.len();
        wire.extend(&body);
        let parts = open_parts(&wire).unwrap();
        prop_assert_eq!(parts.header, header);
        prop_assert_eq!(&parts.unprotected, &unprotected);
        prop_assert_eq!(parts.aad, &wire[..prefix_len]);
        prop_assert_eq!(parts.body, body.as_slice());
        prop_assert_eq!(parts.first_payload, PayloadType(first));
        prop_assert_eq!(parts.fragment, fragment.map(|(number, total)| FragmentPosition { number, total }));
        // The same datagram is an ordinary message too.
        let msg = Message::decode(&wire).unwrap();
        prop_assert_eq!(msg.encode().unwrap(), wire);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(512)) {
        let _ = Message::decode(&data);
        let _ = open_parts(&data);
        if let Some((&first, rest)) = data.split_first() {
            let _ = decode_chain(PayloadType(first), rest);
        }
    }

    /// Valid header + arbitrary chain bytes: reaches the payload parsers. Whatever decodes must
    /// re-encode to something that decodes to the same message.
    #[test]
    fn arbitrary_chain_behind_valid_header(h in header(), first in 33u8..=53, chain in bytes(400)) {
        let mut wire = Vec::new();
        h.write(PayloadType(first), (HEADER_LEN + chain.len()) as u32, &mut wire);
        wire.extend(&chain);
        if let Ok(msg) = Message::decode(&wire) {
            let again = msg.encode().unwrap();
            prop_assert_eq!(Message::decode(&again).unwrap(), msg);
        }
        let _ = open_parts(&wire);
    }

    /// Corrupting bytes of a valid message never panics, and anything still accepted is stable.
    #[test]
    fn mutated_messages(msg in message(), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut wire = msg.encode().unwrap();
        for (i, v) in flips {
            let at = i.index(wire.len());
            wire[at] = v;
        }
        if let Ok(decoded) = Message::decode(&wire) {
            let again = decoded.encode().unwrap();
            prop_assert_eq!(Message::decode(&again).unwrap(), decoded);
        }
    }

    #[test]
    fn truncated_messages_are_rejected(msg in message(), cut in any::<prop::sample::Index>()) {
        let wire = msg.encode().unwrap();
        let len = cut.index(wire.len());
        // Keep the header Length consistent with the shorter buffer so the payload checks run.
        let mut short = wire[..len].to_vec();
        if short.len() >= HEADER_LEN {
            short[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        }
        if let Ok(decoded) = Message::decode(&short) {
            // Only possible when the cut falls exactly on a payload boundary of a shorter message.
            prop_assert!(decoded.payloads.len() < msg.payloads.len() || msg.payloads.is_empty());
        }
    }
}

/// Order in which fragments arrive: each index at least once, duplicates of earlier ones mixed in
/// before the last new fragment.
fn arrival_order(n: usize) -> impl Strategy<Value = Vec<usize>> {
    (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        vec((any::<bool>(), any::<prop::sample::Index>()), n),
    )
        .prop_map(move |(order, dups)| {
            let mut seq = Vec::new();
            for (k, &i) in order.iter().enumerate() {
                seq.push(i);
                let (dup, pick) = dups[k];
                if dup && k + 1 < n {
                    seq.push(order[pick.index(k + 1)]);
                }
            }
            seq
        })
}

proptest! {
    #[test]
    fn reassembly_in_any_order_with_duplicates(
        (plain, room, order) in (bytes(3000), 1usize..400).prop_flat_map(|(plain, room)| {
            let n = plain.len().div_ceil(room).max(1);
            (Just(plain), Just(room), arrival_order(n))
        }),
        message_id in any::<u32>(),
        first in any::<u8>(),
    ) {
        let chunks = split_fragments(&plain, room + 36, 36).unwrap();
        prop_assert!(chunks.iter().all(|c| c.len() <= room));
        let total = u16::try_from(chunks.len()).unwrap();
        let limits = ReassemblyLimits { max_fragments: u16::MAX, ..ReassemblyLimits::default() };
        let mut r = Reassembler::new(limits);
        let mut seen = vec![false; chunks.len()];
        for (step, &i) in order.iter().enumerate() {
            let pos = FragmentPosition { number: i as u16 + 1, total };
            // Only fragment 1 carries the first payload type; the others carry NONE.
            let np = if i == 0 { PayloadType(first) } else { PayloadType::NONE };
            let status = r.insert(message_id, pos, np, chunks[i]).unwrap();
            if step + 1 == order.len() {
                prop_assert_eq!(status, ReassemblyStatus::Complete(Reassembled {
                    message_id,
                    first_payload: PayloadType(first),
                    chain: plain.clone(),
                }));
                prop_assert_eq!(r.pending_messages(), 0);
            } else if seen[i] {
                prop_assert_eq!(status, ReassemblyStatus::Duplicate);
            } else {
                prop_assert_eq!(status, ReassemblyStatus::Incomplete);
            }
            seen[i] = true;
        }
    }

    #[test]
    fn reassembly_byte_limit(sizes in vec(1usize..200, 2..10), max_bytes in 1usize..1000) {
        let total = sizes.len() as u16;
        let limits = ReassemblyLimits { max_bytes, ..ReassemblyLimits::default() };
        let mut r = Reassembler::new(limits);
        let mut sum = 0;
        for (i, &size) in sizes.iter().enumerate() {
            sum += size;
            let res = r.insert(1, FragmentPosition { number: i as u16 + 1, total }, PayloadType::NONE, &vec![0; size]);
            if sum > max_bytes {
                prop_assert_eq!(res, Err(FragmentError::TooLarge { bytes: sum, max: max_bytes }));
                prop_assert_eq!(r.pending_messages(), 0);
                break;
            }
            prop_assert!(res.is_ok());
        }
    }
}

fn gateway_identity() -> impl Strategy<Value = GatewayIdentity> {
    prop_oneof![
        ipv4().prop_map(GatewayIdentity::Ipv4),
        ipv6().prop_map(GatewayIdentity::Ipv6),
        "[a-z0-9][a-z0-9.-]{0,254}".prop_map(|n| GatewayIdentity::fqdn(&n).unwrap()),
    ]
}

proptest! {
    /// REDIRECT and REDIRECTED_FROM (RFC 5685) carry any gateway, with or without the nonce,
    /// through a whole message.
    #[test]
    fn redirect_notifies_round_trip(
        gateway in gateway_identity(),
        nonce in prop::option::of(vec(any::<u8>(), 16..=256)),
    ) {
        let header = Header::new(1, 2, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
        let msg = Message::new(
            header,
            vec![
                Payload::Notify(Notify::redirect(&gateway, nonce.as_deref())),
                Payload::Notify(Notify::redirected_from(&gateway)),
                Payload::Notify(Notify::redirect_supported()),
            ],
        );
        let decoded = Message::decode(&msg.encode().unwrap()).unwrap();
        let redirect = decoded.payloads.notify(NotifyType::REDIRECT).unwrap();
        let (to, got_nonce) = redirect.redirect_target().unwrap();
        prop_assert_eq!(&to, &gateway);
        prop_assert_eq!(got_nonce, nonce.as_deref().unwrap_or_default());
        let from = decoded.payloads.notify(NotifyType::REDIRECTED_FROM).unwrap();
        prop_assert_eq!(from.redirected_from_gateway(), Some(gateway));
        prop_assert!(decoded.payloads.notify(NotifyType::REDIRECT_SUPPORTED).unwrap().data.is_empty());
    }

    /// Any data in a REDIRECT or REDIRECTED_FROM is read without a panic, and what is read
    /// back encodes to the same bytes.
    #[test]
    fn redirect_data_never_panics(data in bytes(300)) {
        let redirect = Notify::new(NotifyType::REDIRECT, data.clone());
        if let Some((gateway, nonce)) = redirect.redirect_target() {
            prop_assert_eq!(Notify::redirect(&gateway, Some(nonce)).data, data.clone());
        }
        let from = Notify::new(NotifyType::REDIRECTED_FROM, data.clone());
        if let Some(gateway) = from.redirected_from_gateway() {
            prop_assert_eq!(Notify::redirected_from(&gateway).data, data);
        }
    }
}

#[test]
fn redirect_data_is_checked() {
    let v4 = Notify::new(NotifyType::REDIRECT, vec![1, 4, 203, 0, 113, 2, 0xaa, 0xbb]);
    assert_eq!(
        v4.redirect_target(),
        Some((
            GatewayIdentity::Ipv4(Ipv4Addr::new(203, 0, 113, 2)),
            &[0xaa, 0xbb][..]
        ))
    );
    // Wrong length for the type, unknown type, truncated, a name with a space or a NUL.
    for data in [
        vec![1, 3, 203, 0, 113],
        vec![2, 4, 203, 0, 113, 2],
        vec![4, 1, b'a'],
        vec![3, 5, b'a', b'b'],
        b"\x03\x03a b".to_vec(),
        b"\x03\x02a\x00".to_vec(),
        vec![3, 0],
        vec![1],
    ] {
        let n = Notify::new(NotifyType::REDIRECT, data.clone());
        assert_eq!(n.redirect_target(), None, "{data:?}");
    }
    // REDIRECTED_FROM has nothing after the gateway; another notify type is not read as one.
    let trailing = Notify::new(NotifyType::REDIRECTED_FROM, vec![1, 4, 10, 0, 0, 1, 9]);
    assert_eq!(trailing.redirected_from_gateway(), None);
    assert_eq!(
        Notify::new(NotifyType::COOKIE, vec![1, 4, 10, 0, 0, 1]).redirect_target(),
        None
    );
    assert_eq!(GatewayIdentity::fqdn(""), None);
    assert_eq!(GatewayIdentity::fqdn(&"a".repeat(256)), None);
    assert_eq!(
        GatewayIdentity::fqdn("gw2.vpn.example").map(|g| g.to_string()),
        Some("gw2.vpn.example".to_owned())
    );
}
