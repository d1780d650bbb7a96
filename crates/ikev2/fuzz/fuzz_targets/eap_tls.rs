//! EAP-TLS inside IKE_AUTH as either side sees it. First byte even: the gateway (an Identity
//! response, then EAP-Responses whose framing is valid and whose TLS bytes are the input);
//! odd: our client (an EAP-TLS start, then the gateway's requests). Rounds are split at 0xFF
//! bytes. Nothing may panic; memory stays bounded by each side's own limits.
#![no_main]

mod common;

use std::sync::Arc;

use ikev2::ipsec_crypto::SigningKey;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static KEY: (Arc<SigningKey>, Vec<Vec<u8>>) = {
        let f = common::Fixture::new();
        let key = SigningKey::from_pkcs8_der(f.gateway.key.pkcs8_der()).expect("key");
        (Arc::new(key), vec![f.gateway.chain[0].der().as_ref().to_vec()])
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((role, data)) = data.split_first() else {
        return;
    };
    let mut parts = data.split(|b| *b == 0xff);
    if role % 2 == 1 {
        let chunks: Vec<&[u8]> = parts.take(16).collect();
        KEY.with(|(key, chain)| ikev2::fuzz_eap_tls_client(key.clone(), chain, &chunks));
        return;
    }
    let identity = parts.next().unwrap_or_default();
    let chunks: Vec<&[u8]> = parts.take(16).collect();
    KEY.with(|(key, chain)| {
        ikev2::fuzz_eap_tls(key.clone(), chain, identity, &chunks);
    });
});
