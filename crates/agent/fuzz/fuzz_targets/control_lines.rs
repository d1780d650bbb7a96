//! What any local user can write to the agent's control socket: lines of JSON requests, and,
//! on a helper connection, helper messages with a certificate chain in PEM. Parsing never
//! panics, and whatever parses re-encodes to the same request.
#![no_main]

use agent::control::{FromHelper, Request, ToHelper};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n').take(8) {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(request) = serde_json::from_str::<Request>(text) {
            let again = serde_json::to_string(&request).expect("a request encodes");
            assert_eq!(serde_json::from_str::<Request>(&again).expect("decodes"), request);
            if let Request::RegisterHelper { chain_pem, .. } = &request {
                let _ = pki::load_certificates(chain_pem.as_bytes());
            }
        }
        let _ = serde_json::from_str::<FromHelper>(text);
        let _ = serde_json::from_str::<ToHelper>(text);
    }
});
