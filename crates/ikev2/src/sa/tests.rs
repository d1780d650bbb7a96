//! Unit tests that drive IKE_AUTH with hand-made payloads.

use std::time::{Duration, UNIX_EPOCH};

use ike_wire::UnknownPayload;
use ipsec_crypto::SigningKey;
use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

use super::*;
use crate::config::LocalCredentials;
use crate::identity::{PeerRole, PkiValidator};

const START: u64 = 1_767_225_600;

/// A client SA and a half-open server SA after IKE_SA_INIT, with the client's keys ready.
fn after_init() -> (IkeSa, IkeSa, Instant) {
    let validity = Validity::days_from(UNIX_EPOCH + Duration::from_secs(START), 365);
    let ca = CertificateAuthority::new_root("root", KeyAlgorithm::P256, validity).unwrap();
    let creds = |kind, name: &str| {
        let id = ca.issue(kind, name, KeyAlgorithm::P256, validity).unwrap();
        LocalCredentials {
            id: IkeId::Fqdn(name.into()),
            key: Arc::new(SigningKey::from_pkcs8_der(id.key.pkcs8_der()).unwrap()),
            chain: vec![id.chain[0].der().as_ref().to_vec()],
        }
    };
    let trust = pki::TrustStore::with_roots([ca.cert().clone()]).unwrap();
    let client_cfg = InitiatorConfig::new(IkeConfig::new(
        creds(CertKind::Machine, "c.test"),
        Arc::new(PkiValidator {
            trust: trust.clone(),
            role: PeerRole::Gateway {
                server_name: "gw.test".into(),
            },
            expected_id: None,
        }),
    ));
    let server_cfg = ResponderConfig::new(IkeConfig::new(
        creds(CertKind::Gateway, "gw.test"),
        Arc::new(PkiValidator {
            trust,
            role: PeerRole::Client,
            expected_id: None,
        }),
    ));
    let now = Instant::now();
    let (c_addr, s_addr): (SocketAddr, SocketAddr) = (
        "198.51.100.2:500".parse().unwrap(),
        "203.0.113.2:500".parse().unwrap(),
    );
    let mut client = IkeSa::connect(
        Arc::new(client_cfg),
        Arc::new(Provider::deterministic(b"c")),
        now,
        c_addr,
        s_addr,
    )
    .unwrap();
    let req = client.poll_transmit().unwrap();
    let msg = Message::decode(&req.bytes).unwrap();
    let InitOutcome::Created(mut server) = IkeSa::respond_init(
        Arc::new(server_cfg),
        Arc::new(Provider::deterministic(b"s")),
        now,
        s_addr,
        c_addr,
        &msg,
        &req.bytes,
        7,
    ) else {
        panic!("no SA");
    };
    let resp = server.poll_transmit().unwrap();
    client.handle_datagram(now, c_addr, s_addr, &resp.bytes);
    // Discard the client's real IKE_AUTH request: the tests send their own.
    while client.poll_transmit().is_some() {}
    (client, *server, now)
}

/// Sends `payloads` as the client's IKE_AUTH request; returns the server's reply payloads.
fn auth_with(payloads: &[Payload]) -> (Vec<Payload>, IkeSa) {
    let (client, mut server, now) = after_init();
    let datagrams = client
        .protect(ExchangeType::IKE_AUTH, 1, false, payloads)
        .unwrap();
    let (local, remote) = (client.local, client.remote);
    for d in datagrams {
        server.handle(now, remote, local, &d, None);
    }
    let reply = server.poll_transmit().expect("a reply");
    let parts = open_parts(&reply.bytes).unwrap();
    let plain = client
        .sk_in
        .as_ref()
        .unwrap()
        .open(parts.aad, parts.body)
        .unwrap();
    (decode_chain(parts.first_payload, &plain).unwrap(), server)
}

fn failure_of(server: &mut IkeSa) -> Failure {
    std::iter::from_fn(|| server.poll_event())
        .find_map(|e| match e {
            Event::Failed(f) => Some(f),
            _ => None,
        })
        .unwrap()
}

#[test]
fn unsupported_critical_payload_inside_sk() {
    let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
        payload_type: PayloadType(222),
        critical: true,
        body: vec![0; 4],
    })]);
    let n = reply
        .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
        .unwrap();
    assert_eq!(n.data, [222]);
    let f = failure_of(&mut server);
    assert_eq!(
        f.notify_sent,
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );
    assert!(server.is_closed());
}

#[test]
fn malformed_inner_chain_is_invalid_syntax() {
    // A "SA payload" whose body is not a proposal.
    let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
        payload_type: PayloadType::SA,
        critical: false,
        body: vec![0xff; 3],
    })]);
    assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
    assert!(matches!(
        failure_of(&mut server).reason,
        FailureReason::InvalidSyntax(_)
    ));
}

#[test]
fn ike_auth_without_idi_is_invalid_syntax() {
    let (reply, mut server) = auth_with(&[Payload::Notify(Notify::new(
        NotifyType::INITIAL_CONTACT,
        Vec::new(),
    ))]);
    assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
    assert_eq!(
        failure_of(&mut server).notify_sent,
        Some(NotifyType::INVALID_SYNTAX)
    );
}

#[test]
fn eap_or_psk_instead_of_a_certificate_is_authentication_failed() {
    let id = IkeId::Fqdn("c.test".into()).to_wire();
    let (reply, mut server) = auth_with(&[
        Payload::IdI(id),
        Payload::Auth(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: vec![0; 32],
        }),
    ]);
    assert!(reply.notify(NotifyType::AUTHENTICATION_FAILED).is_some());
    assert_eq!(
        failure_of(&mut server).reason,
        FailureReason::PeerRejected(PeerRejection::NoCertificate)
    );
}

#[test]
fn tampered_sk_payload_is_dropped_without_answer() {
    let (client, mut server, now) = after_init();
    let mut d = client
        .protect(ExchangeType::IKE_AUTH, 1, false, &[])
        .unwrap()
        .remove(0);
    let last = d.len() - 1;
    d[last] ^= 1;
    server.handle(now, client.remote, client.local, &d, None);
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.state(), SaState::HalfOpen);
}
