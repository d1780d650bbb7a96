//! Real strongSwan 5.9.8 messages (Debian 12 package `strongswan-charon` 5.9.8-5+deb12u6), captured
//! from charon's `net`/`enc` level-4 hex dumps in a two-namespace lab (PSK auth, proposals
//! `aes256gcm16-prfsha384-ecp384, aes256-sha256-modp2048`, `fragment_size = 300` on the initiator
//! to force RFC 7383 fragments, virtual IP requested, responder pool 172.16.201.0/24 with DNS
//! 10.1.0.53). The `*_PLAIN` constants are charon's own dumps of the decrypted SK / SKF contents,
//! without padding. Throw-away keys; nothing secret.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use ike_wire::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// AES-GCM-16 body: 8-byte IV, plaintext, 1-byte pad length (charon adds no padding), 16-byte ICV.
fn gcm_body_len(plain: usize) -> usize {
    8 + plain + 1 + 16
}

/// IKE_SA_INIT request (initiator -> responder, port 500): 340 bytes.
const SA_INIT_REQUEST: &str = concat!(
    "cb039837fcb6125600000000000000002120220800000000000001542200005402000024010100030300000c",
    "01000014800e0100030000080200000600000008040000140000002c020100040300000c0100000c800e0100",
    "030000080300000c0300000802000005000000080400000e2800006800140000a9996a48105c60a48539dc8d",
    "a8993f15c6eff3754486888b1215b9058d059531479058bed69602f95bfab2b8b77f3441e631e1efe8b3e0db",
    "17d9f46c8f3d462ff119e248c07eed7e77ad8094712453318386660923d4978a87fe2d2f0189cf2e29000024",
    "7e2a0001ca4c06d7125246e2db143d5925cc37f4f771911d028930b061e676fa2900001c00004004203dc1f9",
    "496b74d02889d3fdaa5124310147006a2900001c00004005a191bc295472b5966d8ec2cd2bfef194725152ed",
    "290000080000402e290000100000402f00020003000400050000000800004016",
);

/// IKE_SA_INIT response: 304 bytes.
const SA_INIT_RESPONSE: &str = concat!(
    "cb039837fcb61256555b1d5c2875dbfb2120222000000000000001302200002800000024010100030300000c",
    "01000014800e010003000008020000060000000804000014280000680014000018b50c28718d2b05f939a11d",
    "cbfbbdb42e75cb3e5f35225ffdd6bca30091e715cda777939f711efc4faa9620cbee4a9ab41ac6e955465026",
    "3a4d29420ed813be32f5a7b0a63b0b43412d791fe1032b919f5ae5e8218e4ee0835a7230dae9811429000024",
    "3c7a152c399b2156cd24d4c2d5ba0e51cfdac51240eecc0d21a3264bdd22f4302900001c000040041be05fb9",
    "a029db4f37e1e6c7a2a6c6f5d029850e2900001c0000400578f59f987388d78a2eaacca36d1fb14928c9206d",
    "290000080000402e290000100000402f000200030004000529000008000040220000000800004014",
);

/// IKE_AUTH request, SKF 1/2 (port 4500, non-ESP marker removed): 268 bytes.
const AUTH_REQUEST_FRAGMENT_1: &str = concat!(
    "cb039837fcb61256555b1d5c2875dbfb35202308000000010000010c230000f000010002264c49afee705684",
    "24b79d4fcbad17e16ec97672204f99c08e710a0c010d29e69a53bbb8c09145878a275e995d4ac8865bbf4a4a",
    "3fccab0e8c1d77491eff10d5525462adc40a7d6652c97ef6636f13fa3f9e7dfc38228952018ba5ed3e9bf573",
    "751ffbad07ca83d362c322cb86426b04db3ad09d300c361bf64b637404eeae3df669656078f1bba06378c242",
    "7bc63349bb74fbadf326fb159635f840da4e6f5176ef84a09b7b1d0926701aa9025c5898d4cf332b8fa73a5d",
    "540049ece21ff6be3fafa46691d6eb7dcd0a95a271a2dd5a61ba029167f471a1d3b1b1cb117ffae84f0f69dd",
    "fd98a59f",
);

/// decrypted plaintext of SKF 1/2 (charon 'plain' dump, no padding): 207 bytes.
const AUTH_REQUEST_FRAGMENT_1_PLAIN: &str = concat!(
    "2900001a02000000636c69656e742e6578616d706c652e6f7267240000080000400027000017020000007670",
    "6e2e6578616d706c652e6f72672f0000380200000062765f266ce45cdfc7faa88e00f4fbebdf8401302a7c09",
    "d9607e2452f43f6e5a9950a13ea1f1d825d5a0bc2fa6c10f102100000c01000000000100002c00004c020000",
    "20010304024e8fa43d0300000c01000014800e0100000000080500000000000028020304034e8fa43d030000",
    "0c0100000c800e0100030000080300000c00000008050000002d0000180100",
);

/// IKE_AUTH request, SKF 2/2: 143 bytes.
const AUTH_REQUEST_FRAGMENT_2: &str = concat!(
    "cb039837fcb61256555b1d5c2875dbfb35202308000000010000008f0000007300020002264c49afee705687",
    "d21cc2828b3a83986bcecd6445d6f25247dd01d334ae4d031b5f373e268f76158b7641e93e7002aa23c0a344",
    "b05450dee2b4ae17322e5728c1f7e7b07ba6416df7bc787882d205947e2a7ac4c77c7a01da3984d17f05d628",
    "c2f81f5762b93fc2e5033d",
);

/// decrypted plaintext of SKF 2/2: 82 bytes.
const AUTH_REQUEST_FRAGMENT_2_PLAIN: &str = concat!(
    "0000070000100000ffff00000000ffffffff2900001801000000070000100000ffff0a0100000a01ffff2900",
    "00080000400c290000080000400f290000080000401429000008000040210000000800004024",
);

/// IKE_AUTH response (SK, not fragmented): 184 bytes.
const AUTH_RESPONSE: &str = concat!(
    "cb039837fcb61256555b1d5c2875dbfb2e20232000000001000000b82400009c0c9a484cc3394bcd487dafd3",
    "0f62ec935573aad395841c576b3a1814286d10c5e2552c207725fff5704e657eb9221fe44b221809dd7daa59",
    "a883274b42eb579559488715d91f0fa925b46a0cd5c26063a43744047626d595a90972c98be7089cc9466e97",
    "3ee7185c39392151495f67df1689344faee46bc44b3016b167920f1c293fc60a3ebd7044eb078a0ddc906f59",
    "303635da96029f13",
);

/// decrypted plaintext of the IKE_AUTH response: 127 bytes.
const AUTH_RESPONSE_PLAIN: &str = concat!(
    "270000170200000076706e2e6578616d706c652e6f72672f000038020000005da25b5c851960993eb6d3d969",
    "54a7d7d455b6e6fd2392c3c70c73d487c989766d91bef03e7d78f406dd181f001e26ca290000180200000000",
    "010004ac10c901000300040a010035290000080000400c290000080000400f0000000800000026",
);

/// INFORMATIONAL request deleting the IKE SA: 65 bytes.
const INFORMATIONAL_DELETE: &str = concat!(
    "cb039837fcb61256555b1d5c2875dbfb2e20250800000002000000412a000025264c49acee70568561fc896b",
    "3632030e417c00d6748b0b731676507338e46da4d8",
);

/// its decrypted plaintext: 8 bytes.
const INFORMATIONAL_DELETE_PLAIN: &str = "0000000801000000";

fn no_data_notify(m: &[Payload], t: NotifyType) -> bool {
    m.notify(t)
        .is_some_and(|n| n.data.is_empty() && n.spi.is_empty())
}

fn ike_proposal_1() -> Proposal {
    Proposal {
        number: 1,
        protocol: ProtocolId::IKE,
        spi: vec![],
        transforms: vec![
            Transform::encr(EncrId::AES_GCM_16, Some(256)),
            Transform::new(TransformId::Prf(PrfId::HMAC_SHA2_384)),
            Transform::new(TransformId::Ke(DhGroup::ECP_384)),
        ],
    }
}

#[test]
fn ike_sa_init_request() {
    let wire = unhex(SA_INIT_REQUEST);
    let msg = Message::decode(&wire).unwrap();
    let h = msg.header;
    assert_eq!(
        (h.spi_r, h.message_id, h.exchange_type),
        (0, 0, ExchangeType::IKE_SA_INIT)
    );
    assert!(h.flags.initiator() && !h.flags.response());
    let sa = msg.payloads.sa().unwrap();
    assert_eq!(sa.proposals.len(), 2);
    assert_eq!(sa.proposals[0], ike_proposal_1());
    // strongSwan orders ENCR, INTEG, PRF, KE.
    assert_eq!(
        sa.proposals[1]
            .transforms
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        [
            TransformId::Encr(EncrId::AES_CBC),
            TransformId::Integ(IntegId::HMAC_SHA2_256_128),
            TransformId::Prf(PrfId::HMAC_SHA2_256),
            TransformId::Ke(DhGroup::MODP_2048),
        ]
    );
    assert_eq!(sa.proposals[1].transforms[0].key_length(), Some(256));
    let ke = msg.payloads.ke().unwrap();
    assert_eq!((ke.group, ke.data.len()), (DhGroup::ECP_384, 96));
    assert_eq!(msg.payloads.nonce().unwrap().len(), 32);
    for t in [
        NotifyType::NAT_DETECTION_SOURCE_IP,
        NotifyType::NAT_DETECTION_DESTINATION_IP,
    ] {
        assert_eq!(msg.payloads.notify(t).unwrap().data.len(), 20); // SHA-1
    }
    assert!(no_data_notify(
        &msg.payloads,
        NotifyType::IKEV2_FRAGMENTATION_SUPPORTED
    ));
    assert!(no_data_notify(
        &msg.payloads,
        NotifyType::REDIRECT_SUPPORTED
    ));
    // RFC 7427: SHA2-256, SHA2-384, SHA2-512, Identity.
    assert_eq!(
        msg.payloads
            .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .unwrap()
            .data,
        [0, 2, 0, 3, 0, 4, 0, 5]
    );
    assert_eq!(msg.payloads.unsupported_critical(), None);
    assert_eq!(msg.encode().unwrap(), wire);
}

#[test]
fn ike_sa_init_response() {
    let wire = unhex(SA_INIT_RESPONSE);
    let msg = Message::decode(&wire).unwrap();
    let request = Message::decode(&unhex(SA_INIT_REQUEST)).unwrap();
    assert_eq!(msg.header.spi_i, request.header.spi_i);
    assert_ne!(msg.header.spi_r, 0);
    assert!(msg.header.flags.response() && !msg.header.flags.initiator());
    assert_eq!(msg.payloads.sa().unwrap().proposals, [ike_proposal_1()]);
    assert_eq!(msg.payloads.ke().unwrap().group, DhGroup::ECP_384);
    assert!(no_data_notify(
        &msg.payloads,
        NotifyType::CHILDLESS_IKEV2_SUPPORTED
    ));
    assert!(no_data_notify(
        &msg.payloads,
        NotifyType::MULTIPLE_AUTH_SUPPORTED
    ));
    assert!(
        msg.payloads
            .notify(NotifyType::REDIRECT_SUPPORTED)
            .is_none()
    );
    assert_eq!(msg.encode().unwrap(), wire);
}

#[test]
fn ike_auth_request_fragments() {
    let frags = [
        unhex(AUTH_REQUEST_FRAGMENT_1),
        unhex(AUTH_REQUEST_FRAGMENT_2),
    ];
    let plains = [
        unhex(AUTH_REQUEST_FRAGMENT_1_PLAIN),
        unhex(AUTH_REQUEST_FRAGMENT_2_PLAIN),
    ];
    let mut reassembler = Reassembler::default();
    let mut done = None;
    // Deliver out of order, with a duplicate.
    for i in [1, 1, 0] {
        let parts = open_parts(&frags[i]).unwrap();
        assert_eq!(parts.header.exchange_type, ExchangeType::IKE_AUTH);
        assert_eq!(parts.header.message_id, 1);
        assert!(parts.unprotected.is_empty());
        let pos = parts.fragment.unwrap();
        assert_eq!(
            pos,
            FragmentPosition {
                number: i as u16 + 1,
                total: 2
            }
        );
        let expected_first = if i == 0 {
            PayloadType::IDI
        } else {
            PayloadType::NONE
        };
        assert_eq!(parts.first_payload, expected_first);
        assert_eq!(parts.aad.len(), HEADER_LEN + 8);
        assert_eq!(parts.body.len(), gcm_body_len(plains[i].len()));
        assert_eq!(parts.aad.len() + parts.body.len(), frags[i].len());
        if let ReassemblyStatus::Complete(r) = reassembler
            .insert(
                parts.header.message_id,
                pos,
                parts.first_payload,
                &plains[i],
            )
            .unwrap()
        {
            done = Some(r);
        }
        // As a plain message: one opaque SKF payload, byte-exact re-encoding.
        let msg = Message::decode(&frags[i]).unwrap();
        assert_eq!(msg.payloads.len(), 1);
        assert_eq!(msg.encode().unwrap(), frags[i]);
    }
    let done = done.unwrap();
    assert_eq!(done.first_payload, PayloadType::IDI);
    let inner = decode_chain(done.first_payload, &done.chain).unwrap();

    let fqdn = |s: &str| Identification {
        id_type: IdType::FQDN,
        data: s.as_bytes().to_vec(),
    };
    assert_eq!(inner.id_i(), Some(&fqdn("client.example.org")));
    assert_eq!(inner.id_r(), Some(&fqdn("vpn.example.org")));
    let auth = inner.auth().unwrap();
    assert_eq!(
        (auth.method, auth.data.len()),
        (AuthMethod::SHARED_KEY_MIC, 48)
    ); // PRF SHA-384
    assert_eq!(
        inner.cp(),
        Some(&Configuration {
            cfg_type: CfgType::CFG_REQUEST,
            attributes: vec![CfgAttribute::InternalIp4Address(None)],
        })
    );
    let sa = inner.sa().unwrap();
    assert_eq!(sa.proposals.len(), 2);
    assert!(
        sa.proposals
            .iter()
            .all(|p| p.protocol == ProtocolId::ESP && p.spi.len() == 4)
    );
    assert_eq!(
        sa.proposals[0].transforms,
        [
            Transform::encr(EncrId::AES_GCM_16, Some(256)),
            Transform::new(TransformId::Esn(EsnId::NO_ESN))
        ]
    );
    assert_eq!(inner.ts_i(), Some(&[TrafficSelector::ANY_V4][..]));
    assert_eq!(
        inner.ts_r(),
        Some(
            &[TrafficSelector::Ipv4(TsRange {
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start: Ipv4Addr::new(10, 1, 0, 0),
                end: Ipv4Addr::new(10, 1, 255, 255),
            })][..]
        )
    );
    for t in [
        NotifyType::INITIAL_CONTACT,
        NotifyType::MOBIKE_SUPPORTED,
        NotifyType::NO_ADDITIONAL_ADDRESSES,
        NotifyType::MULTIPLE_AUTH_SUPPORTED,
        NotifyType::EAP_ONLY_AUTHENTICATION,
        NotifyType::MSG_ID_SYNC_SUPPORTED,
    ] {
        assert!(no_data_notify(&inner, t), "{t}");
    }
    assert_eq!(
        encode_chain(&inner).unwrap(),
        (PayloadType::IDI, done.chain.clone())
    );

    // Our own splitter cuts the same chain at the same place for the same datagram budget:
    // 268-byte first fragment = 28 header + 8 SKF + 8 IV + 1 pad length + 16 ICV + 207 plain.
    let chunks = split_fragments(&done.chain, frags[0].len(), 28 + 8 + 8 + 1 + 16).unwrap();
    assert_eq!(chunks, [&plains[0][..], &plains[1][..]]);
    // And our prefix for fragment 1 is byte-identical to strongSwan's AAD.
    let header = Message::decode(&frags[0]).unwrap().header;
    let prot = Protection::Skf {
        fragment: FragmentPosition {
            number: 1,
            total: 2,
        },
        first_payload: PayloadType::IDI,
    };
    let prefix = seal_prefix(&header, &[], prot, gcm_body_len(plains[0].len())).unwrap();
    assert_eq!(prefix, open_parts(&frags[0]).unwrap().aad);
}

#[test]
fn ike_auth_response() {
    let wire = unhex(AUTH_RESPONSE);
    let parts = open_parts(&wire).unwrap();
    assert!(parts.header.flags.response());
    assert_eq!(parts.fragment, None);
    assert_eq!(parts.first_payload, PayloadType::IDR);
    assert_eq!(parts.aad.len(), HEADER_LEN + 4);
    let plain = unhex(AUTH_RESPONSE_PLAIN);
    assert_eq!(parts.body.len(), gcm_body_len(plain.len()));
    let prefix = seal_prefix(
        &parts.header,
        &[],
        Protection::Sk {
            first_payload: PayloadType::IDR,
        },
        parts.body.len(),
    )
    .unwrap();
    assert_eq!(prefix, parts.aad);

    let inner = decode_chain(parts.first_payload, &plain).unwrap();
    assert_eq!(inner.id_r().unwrap().data, b"vpn.example.org");
    assert_eq!(
        inner.cp(),
        Some(&Configuration {
            cfg_type: CfgType::CFG_REPLY,
            attributes: vec![
                CfgAttribute::InternalIp4Address(Some(Ipv4Addr::new(172, 16, 201, 1))),
                CfgAttribute::InternalIp4Dns(Some(Ipv4Addr::new(10, 1, 0, 53))),
            ],
        })
    );
    // The lab's traffic selectors did not match, so the Child SA was refused.
    let err = inner.error_notify().unwrap();
    assert_eq!(err.notify_type, NotifyType::TS_UNACCEPTABLE);
    assert!(inner.sa().is_none());
    assert_eq!(encode_chain(&inner).unwrap(), (PayloadType::IDR, plain));
}

#[test]
fn informational_delete() {
    let wire = unhex(INFORMATIONAL_DELETE);
    let msg = Message::decode(&wire).unwrap();
    assert_eq!(msg.header.exchange_type, ExchangeType::INFORMATIONAL);
    let sk = msg.payloads.encrypted().unwrap();
    assert_eq!(sk.first_payload, PayloadType::DELETE);
    let inner = decode_chain(sk.first_payload, &unhex(INFORMATIONAL_DELETE_PLAIN)).unwrap();
    assert_eq!(inner, [Payload::Delete(Delete::ike())]);
    assert_eq!(msg.encode().unwrap(), wire);
}
