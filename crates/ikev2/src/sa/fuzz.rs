//! Fuzzing only (`--cfg fuzzing`, never in a shipped build): hooks that let fuzz input reach
//! past the integrity check and into the EAP-TLS state machines.

use std::sync::Arc;

use ike_wire::{ExchangeType, Payload};

use super::{IkeSa, eap};
use crate::identity::IkeId;

/// What a peer holding this SA's keys could send, so that fuzz input reaches past the
/// integrity check.
impl IkeSa {
    /// Sends `payloads` as our next request of `exchange`, protected with this SA's keys.
    pub fn fuzz_request(&mut self, exchange: ExchangeType, payloads: &[Payload]) {
        let id = self.window.take_request_id();
        if let Ok(datagrams) = self.protect(exchange, id, false, payloads) {
            for d in datagrams {
                self.push_transmit(d);
            }
        }
    }
}

/// The gateway's EAP-TLS server fed EAP-Responses whose framing is valid and whose TLS bytes
/// are the fuzz input (the identity first), for as many rounds as there are chunks.
pub fn fuzz_eap_tls(
    key: Arc<dyn ipsec_crypto::Signer>,
    chain: &[Vec<u8>],
    identity: &[u8],
    chunks: &[&[u8]],
) {
    let idi = ike_wire::Identification {
        id_type: ike_wire::IdType::FQDN,
        data: b"client".to_vec(),
    };
    let Ok((mut server, _)) = eap::EapServer::new(key, chain, true, Vec::new(), idi, 1) else {
        return;
    };
    let response = |id: u8, method: u8, data: &[u8]| {
        let len = u16::try_from(5 + data.len()).unwrap_or(u16::MAX);
        let mut p = vec![2, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.push(method);
        p.extend_from_slice(data);
        p
    };
    if server
        .handle(&response(server.identifier(), 1, identity))
        .is_err()
    {
        return;
    }
    for chunk in chunks {
        // EAP-TLS: flags byte first (no length, no more fragments), then TLS records.
        let mut data = vec![0u8];
        data.extend_from_slice(chunk);
        if server
            .handle(&response(server.identifier(), 13, &data))
            .is_err()
        {
            return;
        }
    }
}

/// EAP-TLS as our client sees it: the gateway's EAP-TLS start, then `chunks` as its
/// requests (each `[0, ...]` wrapped as an EAP-TLS request with its TLS bytes, anything else
/// handed over as a raw EAP packet). Nothing may panic.
pub fn fuzz_eap_tls_client(
    key: Arc<dyn ipsec_crypto::Signer>,
    chain: &[Vec<u8>],
    chunks: &[&[u8]],
) {
    let settings = crate::config::EapTlsClient {
        identity: "alice@corp.example".into(),
        server_names: vec![IkeId::Fqdn("gw.example".into())],
        server_validator: Arc::new(crate::identity::PkiValidator {
            trust: pki::TrustStore::new(),
            role: crate::identity::PeerRole::Gateway {
                server_name: "gw.example".into(),
            },
            expected_id: None,
        }),
        tls13: true,
    };
    let Ok(mut client) = eap::EapClient::new(key, chain, &settings, 1_800_000_000) else {
        return;
    };
    let request = |id: u8, data: &[u8]| {
        let len = u16::try_from(6 + data.len()).unwrap_or(u16::MAX);
        let mut p = vec![1, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.push(13);
        p.push(0);
        p.extend_from_slice(data);
        p
    };
    let mut start = request(1, &[]);
    if let Some(flags) = start.get_mut(5) {
        *flags = 0x20;
    }
    if client.handle(&start).is_err() {
        return;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let id = u8::try_from(i % 250).unwrap_or(0).wrapping_add(2);
        let packet = match chunk.split_first() {
            Some((0, tls)) => request(id, tls),
            _ => chunk.to_vec(),
        };
        if client.handle(&packet).is_err() {
            return;
        }
    }
}
