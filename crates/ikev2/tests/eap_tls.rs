//! EAP-TLS on the responder (RFC 7296 2.16, RFC 5216): a hand-driven IKEv2 initiator that
//! sends IKE_AUTH without AUTH and runs a rustls TLS 1.2 client with the user certificate,
//! against our `Endpoint`, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use ikev2::ike_wire::{
    AuthMethod, Authentication, CfgAttribute, CfgType, Configuration, ExchangeType, Flags, Header,
    Message, Notify, NotifyType, Payload, Payloads, Protection, SecurityAssociation, decode_chain,
    encode_chain, open_parts, seal_prefix,
};
use ikev2::ipsec_crypto::{IkeSaKeys, Provider, SkCipher, auth_signed_octets, shared_key_auth};
use ikev2::{
    EspProposal, Event, FailureReason, IkeAlgorithms, IkeId, IkeProposal, PeerRejection, natd_hash,
};
use pki::{CertKind, Identity, KeyAlgorithm};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const USER: &str = "alice@corp.example";

/// The initiator's half of an IKE SA, enough to send protected IKE_AUTH requests.
struct Initiator {
    spi_i: u64,
    spi_r: u64,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    algs: IkeAlgorithms,
    keys: IkeSaKeys,
    out: SkCipher,
    inb: SkCipher,
    next_id: u32,
    provider: Provider,
}

fn exchange(server: &mut ikev2::Endpoint, now: Instant, bytes: &[u8]) -> Vec<u8> {
    server.handle_datagram(at(now), Path::ike(server_addr(), client_addr()), bytes);
    let t = server.poll_transmit().expect("a response");
    assert!(
        server.poll_transmit().is_none(),
        "one datagram per response"
    );
    t.bytes
}

impl Initiator {
    fn init(server: &mut ikev2::Endpoint, now: Instant) -> Self {
        let provider = Provider::deterministic(b"eap client");
        let proposal = IkeProposal::defaults().remove(0);
        let group = proposal.dh[0];
        let dh = provider.generate_dh(group).unwrap();
        let spi_i = u64::from_be_bytes(provider.random_array().unwrap());
        let ni = provider.random_vec(32).unwrap();
        let payloads = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![proposal.to_wire(1)],
            }),
            Payload::Ke(ikev2::ike_wire::KeyExchange {
                group: ikev2::ike_wire::DhGroup(group.iana()),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(ni.clone()),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                natd_hash(spi_i, 0, client_addr()),
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                natd_hash(spi_i, 0, server_addr()),
            )),
        ];
        let header = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
        let init_request = Message::new(header, payloads).encode().unwrap();
        let init_response = exchange(server, now, &init_request);
        let response = Message::decode(&init_response).unwrap();
        let p = &response.payloads;
        let algs = IkeAlgorithms::from_wire(&p.sa().unwrap().proposals[0]).unwrap();
        let nr = p.nonce().unwrap().to_vec();
        let shared = dh.agree(&p.ke().unwrap().data).unwrap();
        let spi_r = response.header.spi_r;
        let suite = algs.suite();
        let keys = IkeSaKeys::derive(
            &suite,
            shared.as_bytes(),
            &ni,
            &nr,
            &spi_i.to_be_bytes(),
            &spi_r.to_be_bytes(),
        )
        .unwrap();
        let (out, inb) = keys.sk_ciphers(&suite, true).unwrap();
        Self {
            spi_i,
            spi_r,
            ni,
            nr,
            init_request,
            init_response,
            algs,
            keys,
            out,
            inb,
            next_id: 1,
            provider,
        }
    }

    /// Sends one IKE_AUTH request and returns the decrypted response payloads.
    fn auth(
        &mut self,
        server: &mut ikev2::Endpoint,
        now: Instant,
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let header = Header::new(
            self.spi_i,
            self.spi_r,
            ExchangeType::IKE_AUTH,
            Flags::INITIATOR,
            self.next_id,
        );
        self.next_id += 1;
        let (first, plain) = encode_chain(payloads).unwrap();
        let mut msg = seal_prefix(
            &header,
            &[],
            Protection::Sk {
                first_payload: first,
            },
            self.out.body_len(plain.len()),
        )
        .unwrap();
        let body = self.out.seal(&msg, &plain, &self.provider).unwrap();
        msg.extend_from_slice(&body);
        let response = exchange(server, now, &msg);
        let parts = open_parts(&response).unwrap();
        assert!(parts.header.flags.response());
        let plain = self.inb.open(parts.aad, parts.body).unwrap();
        decode_chain(parts.first_payload, &plain).unwrap()
    }

    /// The octets an AUTH covers (RFC 7296 2.15): the initiator's (`ours`) or the responder's.
    fn signed_octets(&self, ours: bool, id: &ikev2::ike_wire::Identification) -> Vec<u8> {
        let mut rest = vec![id.id_type.0, 0, 0, 0];
        rest.extend_from_slice(&id.data);
        let (message, nonce, sk_p) = if ours {
            (&self.init_request, &self.nr, &self.keys.sk_pi)
        } else {
            (&self.init_response, &self.ni, &self.keys.sk_pr)
        };
        auth_signed_octets(self.algs.prf, message, nonce, sk_p.as_bytes(), &rest)
    }
}

/// An EAP-TLS peer over rustls with the user's certificate.
struct TlsPeer {
    tls: rustls::ClientConnection,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    sent: usize,
}

/// The peer fragments its flights smaller than the gateway does, to exercise reassembly.
const PEER_FRAGMENT: usize = 400;

impl TlsPeer {
    fn new(pki: &Pki, user: &Identity) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(pki.ca.cert().der().as_ref().to_vec()))
            .unwrap();
        let chain = user
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.der().as_ref().to_vec()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(user.key.pkcs8_der().to_vec()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let tls = rustls::ClientConnection::new(Arc::new(config), GATEWAY_NAME.try_into().unwrap())
            .unwrap();
        Self {
            tls,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
        }
    }

    /// EAP-TLS Type-Data of the next fragment (RFC 5216 3.1): L on the first of several,
    /// M on all but the last; an empty acknowledgement when there is nothing to send.
    fn next_fragment(&mut self) -> Vec<u8> {
        let total = self.outgoing.len();
        let end = (self.sent + PEER_FRAGMENT).min(total);
        let more = end < total;
        let mut out = vec![if more { 0x40 } else { 0 }];
        if self.sent == 0 && more {
            out[0] |= 0x80;
            out.extend_from_slice(&u32::try_from(total).unwrap().to_be_bytes());
        }
        out.extend_from_slice(&self.outgoing[self.sent..end]);
        self.sent = end;
        out
    }
}

fn eap_response(identifier: u8, method: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(5 + data.len()).unwrap();
    let mut out = vec![2, identifier];
    out.extend_from_slice(&len.to_be_bytes());
    out.push(method);
    out.extend_from_slice(data);
    out
}

fn eap_of(payloads: &[Payload]) -> Vec<u8> {
    payloads.eap().expect("EAP payload").to_vec()
}

/// Runs the whole exchange; `user` is the TLS client certificate, `eap_identity` what the
/// peer answers to EAP-Request/Identity. Returns the server's events.
/// What the test initiator does differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    /// The final AUTH is computed from a wrong MSK.
    WrongMsk,
}

/// What the server answered: its events, its last IKE_AUTH response, and the MSK (when
/// EAP-Success arrived).
struct Outcome {
    events: Vec<Event>,
    last: Vec<Payload>,
    msk: Option<[u8; 64]>,
}

fn run(setup: Setup, pki: &Pki, user: &Identity, eap_identity: &str, mode: Mode) -> Outcome {
    let now = Instant::now();
    let mut server = ikev2::Endpoint::new(
        Arc::new(setup.server),
        Arc::new(Provider::deterministic(b"server seed")),
        Box::new(setup.pool.clone()),
    )
    .unwrap();
    let mut ike = Initiator::init(&mut server, now);
    let idi = IkeId::Rfc822(USER.into()).to_wire();
    let first = vec![
        Payload::IdI(idi.clone()),
        Payload::IdR(IkeId::Fqdn(GATEWAY_NAME.into()).to_wire()),
        Payload::Cp(Configuration {
            cfg_type: CfgType::CFG_REQUEST,
            attributes: vec![CfgAttribute::InternalIp4Address(None)],
        }),
        Payload::Sa(SecurityAssociation {
            proposals: vec![EspProposal::defaults()[0].to_wire(1, 0x1234_5678, false)],
        }),
        Payload::TsI(vec![ikev2::ike_wire::TrafficSelector::ANY_V4]),
        Payload::TsR(vec![ikev2::ike_wire::TrafficSelector::ANY_V4]),
    ];
    let answer = ike.auth(&mut server, now, &first);
    // The gateway authenticates itself with its certificate and asks for the identity.
    if answer.eap().is_none() {
        return Outcome {
            events: events(&mut server),
            last: answer,
            msk: None,
        };
    }
    assert!(
        matches!(answer.id_r(), Some(id) if IkeId::from_wire(id) == IkeId::Fqdn(GATEWAY_NAME.into()))
    );
    assert!(answer.auth().is_some());
    let mut request = eap_of(&answer);
    assert_eq!((request[0], request[4]), (1, 1), "EAP-Request/Identity");
    let mut peer = TlsPeer::new(pki, user);
    let mut response = eap_response(request[1], 1, eap_identity.as_bytes());
    let msk;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 40, "EAP does not finish");
        let answer = ike.auth(&mut server, now, &[Payload::Eap(response.clone())]);
        let Some(eap) = answer.eap() else {
            // An error notify instead of EAP.
            return Outcome {
                events: events(&mut server),
                last: answer,
                msk: None,
            };
        };
        request = eap.to_vec();
        match request[0] {
            3 => {
                let mut key = [0u8; 64];
                peer.tls
                    .export_keying_material(&mut key, b"client EAP encryption", None)
                    .unwrap();
                msk = key;
                break;
            }
            4 => {
                return Outcome {
                    events: events(&mut server),
                    last: answer,
                    msk: None,
                };
            }
            1 => {}
            c => panic!("EAP code {c}"),
        }
        assert_eq!(request[4], 13, "EAP-TLS");
        let flags = request[5];
        let data = if flags & 0x80 != 0 {
            &request[10..]
        } else {
            &request[6..]
        };
        if peer.sent < peer.outgoing.len() {
            assert!(
                data.is_empty() && flags == 0,
                "the gateway acknowledges our fragment"
            );
            response = eap_response(request[1], 13, &peer.next_fragment());
            continue;
        }
        peer.incoming.extend_from_slice(data);
        if flags & 0x40 != 0 {
            response = eap_response(request[1], 13, &[0]);
            continue;
        }
        let input = std::mem::take(&mut peer.incoming);
        let mut slice = input.as_slice();
        while !slice.is_empty() {
            peer.tls.read_tls(&mut slice).unwrap();
            peer.tls.process_new_packets().unwrap();
        }
        let mut out = Vec::new();
        while peer.tls.wants_write() {
            peer.tls.write_tls(&mut out).unwrap();
        }
        peer.outgoing = out;
        peer.sent = 0;
        response = eap_response(request[1], 13, &peer.next_fragment());
    }
    let mut key = msk;
    if mode == Mode::WrongMsk {
        key[0] ^= 1;
    }
    let auth = shared_key_auth(ike.algs.prf, &key, &ike.signed_octets(true, &idi));
    let last = ike.auth(
        &mut server,
        now,
        &[Payload::Auth(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: auth.as_bytes().to_vec(),
        })],
    );
    // The gateway's final AUTH: the MSK MAC over its IKE_SA_INIT response, Ni and IDr.
    if let Some(auth) = last.auth() {
        let idr = IkeId::Fqdn(GATEWAY_NAME.into()).to_wire();
        let expected = shared_key_auth(ike.algs.prf, &msk, &ike.signed_octets(false, &idr));
        assert_eq!(auth.data, expected.as_bytes(), "gateway AUTH from the MSK");
    }
    Outcome {
        events: events(&mut server),
        last,
        msk: Some(msk),
    }
}

fn events(server: &mut ikev2::Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| server.poll_event().map(|(_, e)| e)).collect()
}

fn user_setup(alg: KeyAlgorithm) -> (Setup, Pki, Identity) {
    let pki = Pki::new(alg);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, alg);
    let machine = pki.issue(CertKind::Machine, CLIENT_NAME, alg);
    let user = pki.issue(CertKind::User, USER, alg);
    let setup = Setup::with_identities(&pki, &gw, &machine, IkeId::Fqdn(CLIENT_NAME.into()));
    (setup, pki, user)
}

fn established(events: &[Event]) -> Option<ikev2::IkeSaInfo> {
    events.iter().find_map(|e| match e {
        Event::IkeSaEstablished(i) => Some(i.clone()),
        _ => None,
    })
}

fn failure(events: &[Event]) -> Option<&FailureReason> {
    events.iter().find_map(|e| match e {
        Event::Failed(f) => Some(&f.reason),
        _ => None,
    })
}

#[test]
fn eap_tls_user_certificate_establishes_with_msk_auth_and_lease() {
    for alg in [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Rsa2048,
    ] {
        let (mut setup, pki, user) = user_setup(alg);
        // This client, like Windows, announces no RFC 7427 hashes: an RSA gateway can only
        // sign with SHA-1, which takes allow_legacy (the stock Windows case).
        setup.server.ike.allow_sha1_signatures = alg == KeyAlgorithm::Rsa2048;
        let pool = setup.pool.clone();
        let out = run(setup, &pki, &user, USER, Mode::Honest);
        let info =
            established(&out.events).unwrap_or_else(|| panic!("not established: {:?}", out.events));
        assert_eq!(info.peer_id, IkeId::Rfc822(USER.into()));
        assert_eq!(info.peer_auth_method, AuthMethod::SHARED_KEY_MIC);
        assert!(info.peer_subject.contains(USER), "{}", info.peer_subject);
        assert!(
            out.events
                .iter()
                .any(|e| matches!(e, Event::ChildSaEstablished(_)))
        );
        assert_eq!(
            pool.0.lock().unwrap().leased[0].0,
            IkeId::Rfc822(USER.into())
        );
        // (`run` checks the value of the gateway's final AUTH.)
        let msk = out.msk.unwrap();
        let auth = out.last.auth().unwrap();
        assert_eq!(auth.method, AuthMethod::SHARED_KEY_MIC);
        assert_eq!(auth.data.len(), info.algorithms.prf.output_len());
        assert_ne!(msk, [0u8; 64]);
        assert!(out.last.sa().is_some() && out.last.ts_i().is_some());
        assert!(matches!(out.last.cp(), Some(c) if c.cfg_type == CfgType::CFG_REPLY));
    }
}

#[test]
fn eap_tls_refuses_a_certificate_from_an_untrusted_ca() {
    let (setup, pki, _) = user_setup(KeyAlgorithm::P256);
    let stranger_ca = Pki::new(KeyAlgorithm::P256);
    let stranger = stranger_ca.issue(CertKind::User, USER, KeyAlgorithm::P256);
    let out = run(setup, &pki, &stranger, USER, Mode::Honest);
    assert!(out.msk.is_none(), "no EAP-Success");
    assert_eq!(out.last.eap().map(|e| e[0]), Some(4), "EAP-Failure");
    assert!(
        matches!(
            failure(&out.events),
            Some(FailureReason::PeerRejected(PeerRejection::Certificate(_)))
        ),
        "{:?}",
        out.events
    );
    assert!(established(&out.events).is_none());
}

#[test]
fn eap_tls_refuses_a_certificate_naming_someone_else() {
    let (setup, pki, _) = user_setup(KeyAlgorithm::P256);
    let other = pki.issue(CertKind::User, "mallory@corp.example", KeyAlgorithm::P256);
    let out = run(setup, &pki, &other, USER, Mode::Honest);
    assert!(
        matches!(
            failure(&out.events),
            Some(FailureReason::PeerRejected(
                PeerRejection::IdentityMismatch(_)
            ))
        ),
        "{:?}",
        out.events
    );
    assert!(established(&out.events).is_none());
}

#[test]
fn eap_tls_refuses_auth_from_a_wrong_msk() {
    let (setup, pki, user) = user_setup(KeyAlgorithm::P256);
    let out = run(setup, &pki, &user, USER, Mode::WrongMsk);
    assert!(out.msk.is_some(), "EAP itself succeeded");
    assert!(out.last.notify(NotifyType::AUTHENTICATION_FAILED).is_some());
    assert!(matches!(
        failure(&out.events),
        Some(FailureReason::AuthPayload(_))
    ));
    assert!(established(&out.events).is_none());
}

#[test]
fn eap_disabled_refuses_a_request_without_auth() {
    let (mut setup, pki, user) = user_setup(KeyAlgorithm::P256);
    setup.server.eap_tls = false;
    let out = run(setup, &pki, &user, USER, Mode::Honest);
    assert!(out.last.notify(NotifyType::AUTHENTICATION_FAILED).is_some());
    assert!(matches!(
        failure(&out.events),
        Some(FailureReason::AuthPayload(_))
    ));
}

// ---- our own initiator (InitiatorConfig::eap_tls) against our responder -------------------

/// A Pair whose client authenticates with EAP-TLS using `user`, checking the gateway's TLS
/// certificate for `names`.
fn eap_pair(alg: KeyAlgorithm, client13: bool, server13: bool, names: &[&str]) -> Pair {
    let mut pair = Pair::new(eap_setup(alg, client13, server13, names));
    pair.run(true, std::time::Duration::from_secs(20));
    pair
}

fn eap_setup(alg: KeyAlgorithm, client13: bool, server13: bool, names: &[&str]) -> Setup {
    let (mut setup, pki, user) = user_setup(alg);
    setup.client.ike.local = credentials(&user, IkeId::Rfc822(USER.into()));
    setup.client.eap_tls = Some(ikev2::EapTlsClient {
        identity: USER.into(),
        server_names: names.iter().map(|n| IkeId::Fqdn((*n).into())).collect(),
        server_validator: Arc::new(ikev2::PkiValidator {
            trust: pki.trust(),
            role: ikev2::PeerRole::Gateway {
                server_name: GATEWAY_NAME.into(),
            },
            expected_id: None,
        }),
        tls13: client13,
    });
    setup.server.eap_tls13 = server13;
    setup
}

#[test]
fn our_initiator_does_eap_tls_1_2_and_1_3_with_fragments_both_ways() {
    for (alg, client13, server13, version) in [
        (KeyAlgorithm::P256, false, true, "TLS 1.2"),
        (KeyAlgorithm::P256, true, false, "TLS 1.2"),
        (KeyAlgorithm::P256, true, true, "TLS 1.3"),
        // RSA chains are longer than one EAP-TLS fragment: fragments and acks both ways.
        (KeyAlgorithm::Rsa2048, false, false, "TLS 1.2"),
        (KeyAlgorithm::Rsa2048, true, true, "TLS 1.3"),
    ] {
        let pair = eap_pair(alg, client13, server13, &[GATEWAY_NAME]);
        let (Some(client), Some(server)) = pair.established() else {
            panic!(
                "{alg:?} {version}: not established\nclient: {:?}\nserver: {:?}",
                pair.client_failure(),
                pair.server_failure()
            );
        };
        assert_eq!(server.peer_id, IkeId::Rfc822(USER.into()));
        assert_eq!(server.peer_auth_method, AuthMethod::SHARED_KEY_MIC);
        // The client authenticated the gateway by its certificate, then by the MSK.
        assert_eq!(client.peer_id, IkeId::Fqdn(GATEWAY_NAME.into()));
        for info in [client, server] {
            let tls = info.eap_tls.as_deref().unwrap_or_default();
            assert!(
                tls.starts_with(version),
                "{alg:?}: {tls} instead of {version}"
            );
        }
        assert!(pair.client_child().is_some() && pair.server_child().is_some());
        assert_eq!(
            pair.client_child().unwrap().virtual_ips,
            pair.server_child().unwrap().virtual_ips
        );
        if alg == KeyAlgorithm::Rsa2048 {
            let eap_rounds = pair.wire.iter().filter(|f| f.to_server).count();
            assert!(eap_rounds > 6, "{eap_rounds} requests: no fragments?");
        }
    }
}

#[test]
fn our_initiator_refuses_an_eap_server_certificate_without_the_expected_name() {
    let pair = eap_pair(KeyAlgorithm::P256, true, true, &["nps.corp.example"]);
    assert_eq!(pair.established().0, None);
    let failure = pair.client_failure().expect("the client fails");
    assert!(
        matches!(
            &failure.reason,
            FailureReason::PeerRejected(PeerRejection::IdentityMismatch(name))
                if name.contains("nps.corp.example")
        ),
        "{:?}",
        failure.reason
    );
    assert_eq!(
        pair.established().1,
        None,
        "the gateway never sees EAP-Success"
    );
}

// ---- EAP relayed to an authentication server (ResponderConfig::eap_pass_through) -----------

/// The relayed EAP-Responses the gateway handed out.
fn relayed(pair: &Pair) -> Vec<(Vec<u8>, Vec<u8>)> {
    pair.server_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::EapPassThrough { eap, identity } => Some((eap.clone(), identity.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_relayed_conversation_waits_for_the_server_and_ends_in_its_refusal() {
    let mut setup = eap_setup(KeyAlgorithm::P256, true, true, &[GATEWAY_NAME]);
    setup.server.eap_pass_through = true;
    let mut pair = Pair::new(setup);
    pair.settle();
    // Our AUTH and EAP-Request/Identity went out; the identity came back and went to the
    // daemon, with nothing sent to the client meanwhile.
    let handed = relayed(&pair);
    assert_eq!(handed.len(), 1, "{:?}", pair.server_events);
    let (eap, identity) = &handed[0];
    assert_eq!(identity, USER.as_bytes());
    assert_eq!((eap[0], eap[4]), (2, 1), "an EAP-Response/Identity");
    assert!(pair.in_flight.is_empty());
    // The client's retransmission of that request is dropped, not handed out again.
    let last = pair
        .wire
        .iter()
        .rev()
        .find(|f| f.to_server)
        .unwrap()
        .clone();
    pair.deliver(&last);
    pair.collect();
    assert_eq!(relayed(&pair).len(), 1);
    assert!(
        pair.in_flight.is_empty(),
        "answered a request still with the server"
    );

    let sa = pair.server_events[0].0;
    pair.server.eap_answer(
        sa,
        pair.now,
        ikev2::EapAnswer::Failure {
            eap: Some(vec![4, eap[1], 0, 4]),
            reason: "refused by the test".into(),
        },
    );
    pair.collect();
    pair.settle();
    let client = pair.client_failure().expect("the client fails");
    assert_eq!(
        client.reason,
        FailureReason::PeerNotify(NotifyType::AUTHENTICATION_FAILED)
    );
    let server = pair.server_failure().expect("the gateway fails the SA");
    assert!(
        matches!(&server.reason, FailureReason::PeerRejected(PeerRejection::ServerRefused(r)) if r == "refused by the test"),
        "{:?}",
        server.reason
    );
    assert_eq!(server.notify_sent, Some(NotifyType::AUTHENTICATION_FAILED));
    // An answer for an SA that is gone changes nothing.
    pair.server.eap_answer(
        sa,
        pair.now,
        ikev2::EapAnswer::Request(vec![1, 2, 0, 6, 13, 0x20]),
    );
    pair.collect();
    assert!(pair.in_flight.is_empty());
}
