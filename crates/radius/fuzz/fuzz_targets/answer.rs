//! A RADIUS server's answer to the client. First byte 0: the rest is the datagram as it
//! is. Otherwise the first byte picks the code and the rest is read as attributes (type,
//! length, value; lengths clamped), wrapped in an answer with the right identifier and both
//! authenticators (so the client gets past its integrity checks to the attributes, EAP
//! reassembly and MPPE key decryption). Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use radius::packet::{ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, USER_NAME, answer};
use radius::{Client, Server};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let server: SocketAddr = "192.0.2.1:1812".parse().unwrap_or_else(|_| unreachable!());
    let mut client = Client::new(
        vec![Server {
            address: server,
            secret: zeroize::Zeroizing::new(SECRET.to_vec()),
        }],
        Duration::from_secs(1),
        1,
        Box::new(|| [0x5a; 16]),
    );
    client.request(1, vec![(USER_NAME, b"fuzz".to_vec())], Instant::now());
    let Some((_, request)) = client.poll_transmit() else {
        return;
    };
    let datagram = if mode == 0 {
        rest.to_vec()
    } else {
        let code = [ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, mode][usize::from(mode % 4)];
        let mut attributes = Vec::new();
        let mut r = rest;
        while let [kind, len, tail @ ..] = r {
            let n = usize::from(*len).min(tail.len()).min(253);
            attributes.push((*kind, tail[..n].to_vec()));
            r = &tail[n..];
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&request[4..20]);
        answer(code, request[1], &authenticator, &attributes, SECRET)
    };
    client.handle_datagram(server, &datagram);
    let _ = client.poll_answer();
    let _ = radius::packet::Packet::parse(&datagram);
});
