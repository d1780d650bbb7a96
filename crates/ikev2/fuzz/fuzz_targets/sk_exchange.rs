//! Requests a peer holding an IKE SA's keys could send: the input becomes the payloads of an
//! INFORMATIONAL, CREATE_CHILD_SA or IKE_AUTH request, encrypted and integrity-protected with
//! the established SA's real keys, so it reaches everything behind the integrity check
//! (Delete, rekeys, MOBIKE, notifies, CP, TS ...). The gateway must neither panic nor stop
//! answering: a liveness check afterwards gets its answer unless the input closed the SA.
#![no_main]

mod common;

use std::cell::RefCell;

use ikev2::ike_wire::{ExchangeType, Notify, NotifyType, Payload, PayloadType, decode_chain};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static FIXTURE: common::Fixture = common::Fixture::new();
    static PAIR: RefCell<Option<common::Pair>> = const { RefCell::new(None) };
}

fn payloads(data: &[u8]) -> Vec<Payload> {
    let Some((&first, rest)) = data.split_first() else {
        return Vec::new();
    };
    if let Ok(chain) = decode_chain(PayloadType(first), rest) {
        return chain;
    }
    // Not a payload chain: a notify of the type the first bytes name, the rest its data, so
    // every notify handler is reachable from short inputs.
    let kind = u16::from_be_bytes([first, rest.first().copied().unwrap_or(0)]);
    vec![Payload::Notify(Notify::new(
        NotifyType(kind),
        rest.get(1..).unwrap_or_default().to_vec(),
    ))]
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let exchange = match selector % 3 {
        0 => ExchangeType::INFORMATIONAL,
        1 => ExchangeType::CREATE_CHILD_SA,
        _ => ExchangeType::IKE_AUTH,
    };
    PAIR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot
            .as_ref()
            .is_none_or(|p| p.client.state() != ikev2::IkeSaState::Established)
        {
            // Both ends are ours and configured alike: not establishing is a bug, not noise.
            *slot = Some(
                FIXTURE
                    .with(|f| f.establish())
                    .expect("the fixture establishes"),
            );
        }
        let Some(pair) = slot.as_mut() else {
            return;
        };
        pair.client.fuzz_request(exchange, &payloads(rest));
        pair.exchange();
    });
});
