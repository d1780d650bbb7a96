//! A RADIUS client that takes bytes and time in and gives datagrams and answers out: requests
//! go to the server that answered last, are sent again after `timeout` up to `tries` times,
//! then to the next server (RFC 2865 2.6's failover), and when none answers the caller learns
//! it at once. Answers are accepted only from the server asked, for an outstanding identifier,
//! with both authenticators right; anything else is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::packet::{self, Packet};

/// One server and the secret shared with it.
#[derive(Clone)]
pub struct Server {
    pub address: SocketAddr,
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// What a server said, or that none did.
#[derive(Debug)]
pub enum Answer {
    /// Access-Challenge: the EAP request to relay, and the State to send back.
    Challenge {
        eap: Vec<u8>,
        state: Option<Vec<u8>>,
    },
    /// Access-Accept: EAP-Success (if sent), the MSK from the MPPE keys, Class and Filter-Id,
    /// the User-Name the server vouches for and its Session-Timeout (seconds), if given.
    Accept {
        eap: Option<Vec<u8>>,
        msk: Option<Zeroizing<Vec<u8>>>,
        class: Vec<Vec<u8>>,
        filter_id: Vec<String>,
        user_name: Option<String>,
        session_timeout: Option<u32>,
        server: SocketAddr,
    },
    /// Access-Reject, with the server's EAP-Failure and Reply-Message if any.
    Reject {
        eap: Option<Vec<u8>>,
        reply_message: Option<String>,
        server: SocketAddr,
    },
    /// No server answered (each was tried `tries` times).
    Unavailable { tried: Vec<SocketAddr> },
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub retransmissions: u64,
    pub failovers: u64,
    /// Datagrams dropped: not from the server asked, unknown identifier, bad authenticator.
    pub dropped: u64,
}

struct Outstanding {
    token: u64,
    attributes: Vec<(u8, Vec<u8>)>,
    server: usize,
    servers_tried: usize,
    sends_left: u32,
    deadline: Instant,
    authenticator: [u8; 16],
    datagram: Vec<u8>,
}

/// The client state.
pub struct Client {
    servers: Vec<Server>,
    /// The server to ask first: the last one that answered.
    preferred: usize,
    timeout: Duration,
    tries: u32,
    outstanding: HashMap<u8, Outstanding>,
    next_identifier: u8,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    answers: Vec<(u64, Answer)>,
    random: Box<dyn FnMut() -> [u8; 16] + Send>,
    stats: ClientStats,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .field("outstanding", &self.outstanding.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `random` gives each request's authenticator (RFC 2865 3: unpredictable).
    pub fn new(
        servers: Vec<Server>,
        timeout: Duration,
        tries: u32,
        random: Box<dyn FnMut() -> [u8; 16] + Send>,
    ) -> Client {
        Client {
            servers,
            preferred: 0,
            timeout,
            tries: tries.max(1),
            outstanding: HashMap::new(),
            next_identifier: 0,
            transmits: Vec::new(),
            answers: Vec::new(),
            random,
            stats: ClientStats::default(),
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Sends an Access-Request with `attributes` (a Message-Authenticator is added); its
    /// answer comes back from [`Client::poll_answer`] with `token`.
    pub fn request(&mut self, token: u64, attributes: Vec<(u8, Vec<u8>)>, now: Instant) {
        self.stats.requests += 1;
        if self.servers.is_empty() {
            self.answers
                .push((token, Answer::Unavailable { tried: Vec::new() }));
            return;
        }
        let Some(identifier) = self.free_identifier() else {
            // 256 requests in flight: answer this one as if no server answered.
            self.answers
                .push((token, Answer::Unavailable { tried: Vec::new() }));
            return;
        };
        let mut o = Outstanding {
            token,
            attributes,
            server: self.preferred,
            servers_tried: 1,
            sends_left: self.tries,
            deadline: now,
            authenticator: [0; 16],
            datagram: Vec::new(),
        };
        if self.prepare(identifier, &mut o).is_err() {
            self.answers
                .push((token, Answer::Unavailable { tried: Vec::new() }));
            return;
        }
        self.send(&mut o, now);
        self.outstanding.insert(identifier, o);
    }

    /// Forgets a request whose answer is no longer wanted (its IKE SA went away).
    pub fn cancel(&mut self, token: u64) {
        self.outstanding.retain(|_, o| o.token != token);
    }

    fn free_identifier(&mut self) -> Option<u8> {
        for _ in 0..=u8::MAX {
            let id = self.next_identifier;
            self.next_identifier = self.next_identifier.wrapping_add(1);
            if !self.outstanding.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn prepare(&mut self, identifier: u8, o: &mut Outstanding) -> Result<(), packet::PacketError> {
        o.authenticator = (self.random)();
        let secret = &self.servers[o.server].secret;
        o.datagram = packet::access_request(identifier, o.authenticator, &o.attributes, secret)?;
        Ok(())
    }

    fn send(&mut self, o: &mut Outstanding, now: Instant) {
        o.sends_left = o.sends_left.saturating_sub(1);
        o.deadline = now + self.timeout;
        self.transmits
            .push((self.servers[o.server].address, o.datagram.clone()));
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        (!self.transmits.is_empty()).then(|| self.transmits.remove(0))
    }

    pub fn poll_answer(&mut self) -> Option<(u64, Answer)> {
        (!self.answers.is_empty()).then(|| self.answers.remove(0))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding.values().map(|o| o.deadline).min()
    }

    /// Retransmits what timed out, fails over, and gives up when every server was tried.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u8> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(mut o) = self.outstanding.remove(&id) else {
                continue;
            };
            if o.sends_left > 0 {
                self.stats.retransmissions += 1;
                self.send(&mut o, now);
                self.outstanding.insert(id, o);
                continue;
            }
            if o.servers_tried >= self.servers.len() {
                let tried = (0..self.servers.len())
                    .map(|i| self.servers[(self.preferred + i) % self.servers.len()].address)
                    .collect();
                self.answers.push((o.token, Answer::Unavailable { tried }));
                continue;
            }
            self.stats.failovers += 1;
            o.server = (o.server + 1) % self.servers.len();
            o.servers_tried += 1;
            o.sends_left = self.tries;
            // A new server, a new secret: the request is built again.
            if self.prepare(id, &mut o).is_ok() {
                self.send(&mut o, now);
                self.outstanding.insert(id, o);
            }
        }
    }

    /// A datagram on the client's socket.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let Some(&identifier) = bytes.get(1) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(o) = self.outstanding.get(&identifier) else {
            self.stats.dropped += 1;
            return;
        };
        let server = &self.servers[o.server];
        if server.address != from {
            self.stats.dropped += 1;
            return;
        }
        let Ok(p) = packet::verify_response(bytes, &o.authenticator, &server.secret) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(o) = self.outstanding.remove(&identifier) else {
            return;
        };
        let server = &self.servers[o.server];
        let answer = match p.code {
            packet::ACCESS_CHALLENGE => match p.eap_message() {
                Some(eap) => Answer::Challenge {
                    eap,
                    state: p.first(packet::STATE).map(<[u8]>::to_vec),
                },
                None => Answer::Reject {
                    eap: None,
                    reply_message: Some("Access-Challenge without EAP-Message".into()),
                    server: server.address,
                },
            },
            packet::ACCESS_ACCEPT => Answer::Accept {
                eap: p.eap_message(),
                msk: packet::mppe_msk(&p, &o.authenticator, &server.secret),
                class: p.all(packet::CLASS).map(<[u8]>::to_vec).collect(),
                filter_id: p
                    .all(packet::FILTER_ID)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect(),
                user_name: p
                    .first(packet::USER_NAME)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                session_timeout: p
                    .first(packet::SESSION_TIMEOUT)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(u32::from_be_bytes),
                server: server.address,
            },
            packet::ACCESS_REJECT => Answer::Reject {
                eap: p.eap_message(),
                reply_message: reply_message(&p),
                server: server.address,
            },
            _ => {
                self.stats.dropped += 1;
                self.outstanding.insert(identifier, o);
                return;
            }
        };
        self.preferred = o.server;
        self.answers.push((o.token, answer));
    }
}

fn reply_message(p: &Packet) -> Option<String> {
    p.first(packet::REPLY_MESSAGE)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ACCESS_ACCEPT, ACCESS_CHALLENGE, USER_NAME, answer, mppe_attribute};

    fn servers() -> Vec<Server> {
        ["10.1.0.5:1812", "10.1.0.6:1812"]
            .iter()
            .map(|a| Server {
                address: a.parse().unwrap(),
                secret: Zeroizing::new(format!("secret-{a}").into_bytes()),
            })
            .collect()
    }

    fn client() -> Client {
        let mut n = 0u8;
        Client::new(
            servers(),
            Duration::from_secs(2),
            2,
            Box::new(move || {
                n = n.wrapping_add(1);
                [n; 16]
            }),
        )
    }

    /// The server's answer to the datagram the client just sent.
    fn reply(server: &Server, datagram: &[u8], code: u8, attrs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let p = Packet::parse(datagram).unwrap();
        answer(code, p.identifier, &p.authenticator, attrs, &server.secret)
    }

    #[test]
    fn a_challenge_and_an_accept_come_back_with_the_state_and_the_msk() {
        let mut c = client();
        let t0 = Instant::now();
        c.request(7, vec![(USER_NAME, b"alice".to_vec())], t0);
        let (to, d) = c.poll_transmit().unwrap();
        let s = &servers()[0];
        assert_eq!(to, s.address);
        let mut attrs = packet::eap_attributes(&[1, 2, 0, 6, 13, 0x20]);
        attrs.push((packet::STATE, b"st".to_vec()));
        c.handle_datagram(to, &reply(s, &d, ACCESS_CHALLENGE, &attrs));
        match c.poll_answer() {
            Some((7, Answer::Challenge { eap, state })) => {
                assert_eq!(eap, [1, 2, 0, 6, 13, 0x20]);
                assert_eq!(state.as_deref(), Some(&b"st"[..]));
            }
            other => panic!("{other:?}"),
        }
        c.request(8, vec![(USER_NAME, b"alice".to_vec())], t0);
        let (to, d) = c.poll_transmit().unwrap();
        let p = Packet::parse(&d).unwrap();
        let attrs = vec![
            mppe_attribute(&[1; 32], &[2; 32], &p.authenticator, &s.secret),
            (packet::CLASS, b"eng".to_vec()),
        ];
        c.handle_datagram(to, &reply(s, &d, ACCESS_ACCEPT, &attrs));
        match c.poll_answer() {
            Some((8, Answer::Accept { msk, class, .. })) => {
                assert_eq!(msk.unwrap().len(), 64);
                assert_eq!(class, [b"eng".to_vec()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(c.poll_timeout().is_none());
    }

    #[test]
    fn silence_retransmits_then_fails_over_then_gives_up() {
        let mut c = client();
        let mut now = Instant::now();
        c.request(1, vec![(USER_NAME, b"bob".to_vec())], now);
        let mut sent = Vec::new();
        while let Some((to, _)) = c.poll_transmit() {
            sent.push(to);
        }
        for _ in 0..4 {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
            while let Some((to, _)) = c.poll_transmit() {
                sent.push(to);
            }
        }
        let [a, b] = [servers()[0].address, servers()[1].address];
        assert_eq!(sent, [a, a, b, b]);
        match c.poll_answer() {
            Some((1, Answer::Unavailable { tried })) => assert_eq!(tried, [a, b]),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.stats().failovers, 1);
    }

    #[test]
    fn the_second_server_answers_and_is_asked_first_next_time() {
        let mut c = client();
        let mut now = Instant::now();
        c.request(1, vec![(USER_NAME, b"bob".to_vec())], now);
        let mut last = None;
        while last
            .as_ref()
            .is_none_or(|(to, _): &(SocketAddr, Vec<u8>)| *to != servers()[1].address)
        {
            now = c.poll_timeout().unwrap_or(now);
            c.handle_timeout(now);
            while let Some(t) = c.poll_transmit() {
                last = Some(t);
            }
        }
        let (to, d) = last.unwrap();
        // An answer keyed with the first server's secret is not the second's.
        c.handle_datagram(to, &reply(&servers()[0], &d, ACCESS_ACCEPT, &[]));
        assert!(c.poll_answer().is_none());
        // Nor is one from another address.
        c.handle_datagram(
            servers()[0].address,
            &reply(&servers()[1], &d, ACCESS_ACCEPT, &[]),
        );
        assert!(c.poll_answer().is_none());
        c.handle_datagram(to, &reply(&servers()[1], &d, ACCESS_ACCEPT, &[]));
        assert!(matches!(c.poll_answer(), Some((1, Answer::Accept { .. }))));
        assert_eq!(c.stats().dropped, 2);
        c.request(2, vec![(USER_NAME, b"bob".to_vec())], now);
        assert_eq!(c.poll_transmit().unwrap().0, servers()[1].address);
    }
}
