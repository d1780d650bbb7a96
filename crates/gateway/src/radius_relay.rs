//! EAP to RADIUS (RFC 3579): each EAP-Response a client sends in IKE_AUTH goes to the RADIUS
//! servers as an Access-Request, and their Access-Challenge, -Accept or -Reject comes back to
//! the engine as the EAP answer. The MSK comes from the Accept's MS-MPPE keys, the client's
//! policy group from its Class or Filter-Id (the first that names a configured group).
//! The protocol is `radius::Client`'s; this module owns its socket and the conversations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ikev2::{EapAnswer, IkeSaId, PeerPolicy};
use radius::packet::{
    CALLED_STATION_ID, CALLING_STATION_ID, FRAMED_MTU, NAS_IDENTIFIER, NAS_PORT_TYPE, SERVICE_TYPE,
    STATE, USER_NAME, eap_attributes,
};
use tokio::net::UdpSocket;

use crate::config::RadiusConfig;

/// RFC 2865 Service-Type Framed, RFC 2865 NAS-Port-Type Virtual.
const SERVICE_FRAMED: u32 = 2;
const PORT_VIRTUAL: u32 = 5;
/// EAP packets the server sends must fit an IKE message without IKE fragmentation trouble
/// (strongSwan's eap-radius sends the same hint).
const FRAMED_MTU_BYTES: u32 = 1100;

struct Conversation {
    token: u64,
    identity: String,
    state: Option<Vec<u8>>,
}

/// The RADIUS side of the gateway.
pub struct RadiusRelay {
    client: radius::Client,
    socket: UdpSocket,
    nas_identifier: String,
    called_station: String,
    groups: Vec<Arc<PeerPolicy>>,
    conversations: HashMap<IkeSaId, Conversation>,
    next_token: u64,
    /// The receive buffer, one RADIUS packet long.
    buf: Vec<u8>,
}

impl std::fmt::Debug for RadiusRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusRelay")
            .field("client", &self.client)
            .field("conversations", &self.conversations.len())
            .finish_non_exhaustive()
    }
}

/// Why the RADIUS relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RadiusSetupError {
    /// A `[radius]` setting (a secret file, most likely) that cannot be used.
    #[error("{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("RADIUS socket: {0}")]
    Socket(#[source] std::io::Error),
}

impl RadiusRelay {
    /// Reads the secrets and binds the client's socket (any local port, the family of the
    /// first server).
    pub fn new(
        config: &RadiusConfig,
        groups: Vec<Arc<PeerPolicy>>,
        called_station: String,
    ) -> Result<RadiusRelay, RadiusSetupError> {
        let servers = config
            .load_servers()
            .map_err(|(field, message)| RadiusSetupError::Config { field, message })?;
        let any = match servers.first().map(|s| s.address) {
            Some(SocketAddr::V6(_)) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            _ => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        };
        let std_socket = std::net::UdpSocket::bind(any).map_err(RadiusSetupError::Socket)?;
        std_socket
            .set_nonblocking(true)
            .map_err(RadiusSetupError::Socket)?;
        let socket = UdpSocket::from_std(std_socket).map_err(RadiusSetupError::Socket)?;
        let provider = ipsec_crypto::Provider::system();
        let random = Box::new(move || provider.random_array::<16>().unwrap_or_default());
        Ok(RadiusRelay {
            client: radius::Client::new(
                servers,
                Duration::from_millis(config.timeout_ms),
                config.tries,
                random,
            ),
            socket,
            nas_identifier: config.nas_identifier.clone(),
            called_station,
            groups,
            conversations: HashMap::new(),
            next_token: 1,
            buf: vec![0u8; radius::packet::MAX_PACKET],
        })
    }

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Relays a client's EAP-Response; `remote` is its outer address (Calling-Station-Id).
    pub fn relay(&mut self, sa: IkeSaId, eap: &[u8], identity: &[u8], remote: Option<SocketAddr>) {
        let token = self.next_token;
        self.next_token += 1;
        let conversation = self
            .conversations
            .entry(sa)
            .or_insert_with(|| Conversation {
                token,
                identity: printable(identity),
                state: None,
            });
        conversation.token = token;
        if conversation.identity.is_empty() {
            conversation.identity = printable(identity);
        }
        let mut attributes = vec![
            (USER_NAME, identity.to_vec()),
            (SERVICE_TYPE, SERVICE_FRAMED.to_be_bytes().to_vec()),
            (NAS_PORT_TYPE, PORT_VIRTUAL.to_be_bytes().to_vec()),
            (FRAMED_MTU, FRAMED_MTU_BYTES.to_be_bytes().to_vec()),
            (NAS_IDENTIFIER, self.nas_identifier.as_bytes().to_vec()),
            (CALLED_STATION_ID, self.called_station.as_bytes().to_vec()),
        ];
        if let Some(remote) = remote {
            attributes.push((CALLING_STATION_ID, remote.ip().to_string().into_bytes()));
        }
        if let Some(state) = &conversation.state {
            attributes.push((STATE, state.clone()));
        }
        attributes.extend(eap_attributes(eap));
        attributes.retain(|(_, v)| !v.is_empty() && v.len() <= 253);
        let now = self.now();
        self.client.request(token, attributes, now);
        self.flush();
    }

    /// The SA is gone: its answer is not wanted any more.
    pub fn forget(&mut self, sa: IkeSaId) {
        if let Some(c) = self.conversations.remove(&sa) {
            self.client.cancel(c.token);
        }
    }

    fn flush(&mut self) {
        while let Some((to, datagram)) = self.client.poll_transmit() {
            if let Err(e) = self.socket.try_send_to(&datagram, to) {
                tracing::warn!(server = %to, "sending to RADIUS: {e}");
            }
        }
    }

    /// Waits for a server's datagram or a retransmission time; returns the answers that came.
    /// Cancel-safe (what was received is handed to the client before anything can be lost).
    pub async fn next_answers(&mut self) -> Vec<(IkeSaId, EapAnswer)> {
        let deadline = self.client.poll_timeout();
        let sleep = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(self.now())
        });
        tokio::select! {
            received = self.socket.recv_from(&mut self.buf) => {
                if let Ok((n, from)) = received {
                    self.client.handle_datagram(from, &self.buf[..n]);
                }
            }
            () = tokio::time::sleep(sleep) => {
                let now = self.now();
                self.client.handle_timeout(now);
            }
        }
        self.flush();
        let mut out = Vec::new();
        while let Some((token, answer)) = self.client.poll_answer() {
            let Some((&sa, _)) = self.conversations.iter().find(|(_, c)| c.token == token) else {
                continue;
            };
            out.push((sa, self.eap_answer_of(sa, answer)));
        }
        out
    }

    fn eap_answer_of(&mut self, sa: IkeSaId, answer: radius::Answer) -> EapAnswer {
        let identity = self
            .conversations
            .get(&sa)
            .map(|c| c.identity.clone())
            .unwrap_or_default();
        match answer {
            radius::Answer::Challenge { eap, state } => {
                if let Some(c) = self.conversations.get_mut(&sa) {
                    c.state = state;
                }
                EapAnswer::Request(eap)
            }
            radius::Answer::Accept {
                eap,
                msk,
                class,
                filter_id,
                user_name,
                session_timeout,
                server,
            } => {
                self.conversations.remove(&sa);
                let (Some(eap), Some(msk)) = (eap, msk) else {
                    tracing::warn!(%server, %identity, "RADIUS accepted without EAP-Success or MS-MPPE keys: refused");
                    return EapAnswer::Failure {
                        eap: None,
                        reason: format!(
                            "{server} accepted {identity} without EAP-Success or MS-MPPE keys"
                        ),
                    };
                };
                let names = class
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .chain(filter_id);
                let mut policy = None;
                let mut offered = Vec::new();
                for name in names {
                    if policy.is_none() {
                        policy = self.groups.iter().find(|g| g.group == name).cloned();
                    }
                    offered.push(name);
                }
                tracing::info!(
                    %server,
                    %identity,
                    user_name = ?user_name.as_deref().map(str::escape_debug).map(|e| e.to_string()),
                    session_timeout_s = ?session_timeout,
                    group = policy.as_ref().map_or("default", |p| p.group.as_str()),
                    class_or_filter_id = ?offered,
                    "RADIUS accepted"
                );
                let until = session_timeout.map(|secs| {
                    std::time::SystemTime::now() + Duration::from_secs(u64::from(secs))
                });
                EapAnswer::Success {
                    eap,
                    msk,
                    policy,
                    identity: user_name,
                    until,
                }
            }
            radius::Answer::Reject {
                eap,
                reply_message,
                server,
            } => {
                self.conversations.remove(&sa);
                let why = reply_message.unwrap_or_else(|| "Access-Reject".into());
                tracing::info!(%server, %identity, "RADIUS refused: {why}");
                EapAnswer::Failure {
                    eap,
                    reason: format!("{server} refused {identity}: {why}"),
                }
            }
            radius::Answer::Unavailable { tried } if tried.is_empty() => {
                // Every identifier in use: the servers are slow or clients many (or an
                // attacker opens EAP conversations from many addresses).
                self.conversations.remove(&sa);
                tracing::warn!(%identity, "256 RADIUS requests outstanding: client refused");
                EapAnswer::Failure {
                    eap: None,
                    reason: "256 RADIUS requests outstanding: the servers are not keeping up"
                        .into(),
                }
            }
            radius::Answer::Unavailable { tried } => {
                self.conversations.remove(&sa);
                let tried: Vec<String> = tried.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    %identity,
                    "no RADIUS server answered (tried {}): client refused",
                    tried.join(", ")
                );
                EapAnswer::Failure {
                    eap: None,
                    reason: format!("no RADIUS server answered (tried {})", tried.join(", ")),
                }
            }
        }
    }
}

/// A client-chosen identity as logs and reasons show it (control characters escaped).
fn printable(identity: &[u8]) -> String {
    String::from_utf8_lossy(identity).escape_debug().to_string()
}
