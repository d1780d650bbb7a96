//! Any datagram: decoding never panics, and whatever decodes re-encodes to an equal message
//! (REDIRECT and REDIRECTED_FROM notify data included).
#![no_main]

use ike_wire::{Message, Notify, Payload, PayloadType, decode_chain, encode_chain, open_parts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let wire = msg.encode().expect("a decoded message fits its wire fields");
        let again = Message::decode(&wire).expect("re-encoded message decodes");
        assert_eq!(again, msg);
        // Known payloads are canonical: only reserved bits/critical bits of known payloads and
        // unknown header flag bits may differ, and re-encoding is then stable.
        assert_eq!(again.encode().expect("encodes"), wire);
        // Notify data read further (RFC 5685): what reads back encodes to the same bytes.
        for payload in &msg.payloads {
            if let Payload::Notify(n) = payload {
                if let Some((gateway, nonce)) = n.redirect_target() {
                    assert_eq!(Notify::redirect(&gateway, Some(nonce)).data, n.data);
                }
                if let Some(gateway) = n.redirected_from_gateway() {
                    assert_eq!(Notify::redirected_from(&gateway).data, n.data);
                }
            }
        }
    }
    if let Ok(parts) = open_parts(data) {
        assert_eq!(parts.aad.len() + parts.body.len(), data.len());
    }
    if let Some((&first, rest)) = data.split_first()
        && let Ok(chain) = decode_chain(PayloadType(first), rest)
    {
        let (first2, wire) = encode_chain(&chain).expect("a decoded chain fits");
        assert_eq!(decode_chain(first2, &wire).expect("re-encoded chain decodes"), chain);
    }
});
