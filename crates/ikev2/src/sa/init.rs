//! IKE_SA_INIT for both roles: proposals, KE, nonces, NAT detection, COOKIE and
//! INVALID_KE_PAYLOAD retries, key derivation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ike_wire::{
    CertEncoding, Datagram, EncodeError, ExchangeType, Flags, Header, KeyExchange, Message, Notify,
    NotifyType, Payload, Payloads, ReassemblyLimits, SecurityAssociation,
};
use ipsec_crypto::{DhGroup, DhPrivateKey, HashAlg, Provider};

use super::error::SaError;
use super::handshake::Handshake;
use super::keys::{Exchanged, SaKeys};
use super::outgoing::stateless_reply;
use super::window::MessageWindow;
use super::{IkeSa, IkeSaState, InitOutcome, RequestKind, Role, RoleConfig, wire_group};
use crate::config::ResponderConfig;
use crate::datagram::Path;
use crate::failure::{FailureReason, SyntaxError};
use crate::natd::{fake_natd_hash, natd_hash};
use crate::proposal::IkeAlgorithms;

/// Fragment reassembly before the peer authenticated (the default limits apply after).
const HALF_OPEN_REASSEMBLY: ReassemblyLimits = ReassemblyLimits {
    max_fragments: 32,
    max_bytes: 24 * 1024,
    max_messages: 1,
};

/// Maximum COOKIE and INVALID_KE_PAYLOAD round trips of an initiator.
const MAX_INIT_RETRIES: u32 = 4;

fn hash_algs_notify() -> Notify {
    let mut data = Vec::new();
    for h in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        data.extend_from_slice(&h.iana().to_be_bytes());
    }
    Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
}

fn parse_hash_algs(payloads: &[Payload]) -> Vec<HashAlg> {
    payloads
        .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .map(|n| {
            n.data
                .chunks_exact(2)
                .filter_map(|c| HashAlg::from_iana(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        })
        .unwrap_or_default()
}

impl IkeSa {
    /// The IKE_SA_INIT request with our nonce `ni` and `dh`'s group (and the responder's
    /// `cookie`, once it asked for one).
    pub(super) fn init_request(
        &self,
        ni: &[u8],
        cookie: Option<&[u8]>,
        dh: &DhPrivateKey,
    ) -> Result<Vec<u8>, EncodeError> {
        let ike = self.cfg.ike();
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())));
        }
        let proposals = ike
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX)))
            .collect();
        payloads.push(Payload::Sa(SecurityAssociation { proposals }));
        payloads.push(Payload::Ke(KeyExchange {
            group: wire_group(dh.group()),
            data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(ni.to_vec()));
        // Forced encapsulation: claim to be behind a NAT (fake source hash), so the responder
        // expects UDP encapsulation from us.
        let src = if ike.force_encap {
            fake_natd_hash(self.spi_i, 0, self.path.local)
        } else {
            natd_hash(self.spi_i, 0, self.path.local)
        };
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            src,
        )));
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            natd_hash(self.spi_i, 0, self.path.remote),
        )));
        if ike.fragmentation {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        }
        if ike.signature_hash_algorithms {
            payloads.push(Payload::Notify(hash_algs_notify()));
        }
        if let RoleConfig::Initiator(c) = &self.cfg {
            match (&c.redirected_from, c.follow_redirects) {
                (Some(from), true) => {
                    payloads.push(Payload::Notify(Notify::redirected_from(from)));
                }
                (None, true) => payloads.push(Payload::Notify(Notify::redirect_supported())),
                (_, false) => {}
            }
        }
        let header = self.header(ExchangeType::IKE_SA_INIT, 0, false);
        Message::new(header, payloads).encode()
    }

    /// Sends `request`, an IKE_SA_INIT request, as message 0 (again, after a COOKIE or
    /// INVALID_KE_PAYLOAD); the AUTH payloads sign what went out last.
    pub(super) fn send_init_request(&mut self, now: Instant, request: Vec<u8>) {
        if let Some(hs) = self.handshake.as_deref_mut() {
            hs.init_request.clone_from(&request);
        }
        self.start_request(now, 0, RequestKind::Init, vec![request]);
    }

    /// Asks again with the COOKIE or the DH key the responder's answer made us take.
    fn retry_init(&mut self, now: Instant) {
        let request = match self.handshake.as_deref() {
            Some(Handshake {
                ni,
                cookie,
                dh: Some(dh),
                ..
            }) => self
                .init_request(ni, cookie.as_deref(), dh)
                .map_err(SaError::from),
            _ => Err(SaError::internal("no DH key")),
        };
        match request {
            Ok(request) => self.send_init_request(now, request),
            Err(e) => self.fail(e.into(), None, None),
        }
    }

    /// Responder: builds a half-open SA and its IKE_SA_INIT response, or a stateless reply.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn respond_init(
        cfg: Arc<ResponderConfig>,
        provider: Arc<Provider>,
        now: Instant,
        path: Path,
        request: &Message,
        raw: &[u8],
        spi_r: u64,
        under_load: bool,
    ) -> InitOutcome {
        let h = &request.header;
        let reply = |t: NotifyType, data: Vec<u8>| {
            stateless_reply(h, Notify::new(t, data)).map_or(InitOutcome::Drop, InitOutcome::Reply)
        };
        let p = &request.payloads;
        if let Some(t) = p.unsupported_critical() {
            return reply(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]);
        }
        let (Some(sa), Some(ke), Some(ni)) = (p.sa(), p.ke(), p.nonce()) else {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        };
        if !(16..=256).contains(&ni.len()) {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        }
        let ike = &cfg.ike;
        let chosen = ike.ike_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|s| (s, peer.number)))
        });
        let Some(((mut algs, groups), number)) = chosen else {
            return reply(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
        };
        match DhGroup::from_iana(ke.group.0).filter(|g| groups.contains(g)) {
            // Under load a MODP computation is what a flood costs us most: a peer that also
            // offers an elliptic-curve group is asked to use it (one round trip, no state).
            Some(g) if under_load && g.is_modp() => match groups.iter().find(|g| !g.is_modp()) {
                Some(cheap) => {
                    let notify = Notify::new(
                        NotifyType::INVALID_KE_PAYLOAD,
                        cheap.iana().to_be_bytes().to_vec(),
                    );
                    return stateless_reply(h, notify)
                        .map_or(InitOutcome::Drop, InitOutcome::CheaperGroup);
                }
                None => algs.dh = g,
            },
            Some(g) => algs.dh = g,
            None => {
                return reply(
                    NotifyType::INVALID_KE_PAYLOAD,
                    algs.dh.iana().to_be_bytes().to_vec(),
                );
            }
        }
        let Ok(dh) = provider.generate_dh(algs.dh) else {
            return InitOutcome::Drop;
        };
        let Ok(shared) = dh.agree(&ke.data) else {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        };
        let Ok(nr) = provider.random_vec(ike.nonce_len.max(16)) else {
            return InitOutcome::Drop;
        };
        let mut sa_state = Self::blank(
            Role::Responder,
            RoleConfig::Responder(cfg.clone()),
            provider.clone(),
            path,
        );
        sa_state.spi_i = h.spi_i;
        sa_state.spi_r = spi_r;
        sa_state.handshake = Some(Box::new(Handshake {
            ni: ni.to_vec(),
            nr: nr.clone(),
            init_request: raw.to_vec(),
            establish_deadline: Some(now + ike.establish_timeout),
            ..Handshake::default()
        }));
        sa_state.peer_frag = p
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_some();
        sa_state.peer_hashes = parse_hash_algs(p);
        sa_state.started = Some(now);
        // Until the peer authenticates it may make us hold one fragmented message at a time,
        // of a size an IKE_AUTH with a long certificate chain needs and no more.
        sa_state.window = MessageWindow::new(HALF_OPEN_REASSEMBLY);
        // The IKE_SA_INIT request is message 0: IKE_AUTH comes as 1.
        sa_state.window.accept_request();
        let (local, remote) = (path.local, path.remote);
        sa_state.nat_detected = ike.force_encap || natd_mismatch(p, h.spi_i, 0, remote, local);
        if sa_state.derive_keys(algs, shared.as_bytes()).is_err() {
            return InitOutcome::Drop;
        }

        let mut out = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![algs.to_wire(number)],
            }),
            Payload::Ke(KeyExchange {
                group: wire_group(algs.dh),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(nr),
        ];
        // Forced encapsulation: make the initiator believe that *it* is behind a NAT (fake
        // destination hash). Every client supports that case (it floats to the NAT-T port and
        // sends keepalives); a faked source hash ("the gateway is behind a NAT", strongSwan's
        // encap=yes) is refused by Windows without a registry change.
        let dst = if ike.force_encap {
            fake_natd_hash(h.spi_i, spi_r, remote)
        } else {
            natd_hash(h.spi_i, spi_r, remote)
        };
        out.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            natd_hash(h.spi_i, spi_r, local),
        )));
        out.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            dst,
        )));
        let hashes = ike.validator.ca_key_hashes();
        if !hashes.is_empty() {
            out.push(Payload::CertReq(ike_wire::Certificate {
                encoding: CertEncoding::X509_SIG,
                data: hashes.concat(),
            }));
        }
        if ike.fragmentation && sa_state.peer_frag {
            out.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        } else {
            sa_state.peer_frag = false;
        }
        if ike.signature_hash_algorithms && !sa_state.peer_hashes.is_empty() {
            out.push(Payload::Notify(hash_algs_notify()));
        }
        let header = Header::new(
            h.spi_i,
            spi_r,
            ExchangeType::IKE_SA_INIT,
            Flags::RESPONSE,
            0,
        );
        let Ok(bytes) = Message::new(header, out).encode() else {
            return InitOutcome::Drop;
        };
        if let Some(hs) = sa_state.handshake.as_deref_mut() {
            hs.init_response.clone_from(&bytes);
        }
        sa_state.push_transmit(bytes.clone());
        sa_state.window.cache_response(0, vec![bytes]);
        InitOutcome::Created(Box::new(sa_state))
    }

    pub(super) fn derive_keys(
        &mut self,
        algs: IkeAlgorithms,
        shared: &[u8],
    ) -> Result<(), SaError> {
        let hs = self
            .handshake
            .as_deref()
            .ok_or(SaError::internal("no nonces after the handshake"))?;
        let exchanged = Exchanged {
            ni: &hs.ni,
            nr: &hs.nr,
            spis: (self.spi_i, self.spi_r),
            initiator: self.initiator,
        };
        self.keys = Some(SaKeys::derive(algs, shared, &exchanged)?);
        Ok(())
    }

    pub(super) fn handle_init_plain(&mut self, now: Instant, path: Path, datagram: &Datagram<'_>) {
        let Ok(msg) = datagram.decode() else {
            return;
        };
        let h = msg.header;
        if h.message_id != 0 || h.spi_i != self.spi_i {
            return;
        }
        match (self.role, h.flags.response()) {
            // Retransmitted IKE_SA_INIT request: resend our response while still half-open.
            (Role::Responder, false)
                if self.state == IkeSaState::HalfOpen && self.window.has_answered(0) =>
            {
                self.resend_cached(path);
            }
            (Role::Initiator, true) if self.state == IkeSaState::InitSent => {
                self.process_init_response(now, path, &msg, datagram.bytes());
            }
            _ => {}
        }
    }

    pub(super) fn process_init_response(
        &mut self,
        now: Instant,
        path: Path,
        msg: &Message,
        bytes: &[u8],
    ) {
        let p = &msg.payloads;
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        // Only an established SA has none, and it is past InitSent.
        let Some(hs) = self.handshake.as_deref_mut() else {
            return;
        };
        // RFC 5685 section 4: only with our nonce, which an off-path attacker cannot know.
        // Unauthenticated still: the gateway named must authenticate as the one dialled.
        if let (RoleConfig::Initiator(c), Some(n)) = (&cfg, p.notify(NotifyType::REDIRECT))
            && c.follow_redirects
        {
            match n.redirect_target() {
                Some((to, nonce)) if nonce == hs.ni.as_slice() => {
                    self.fail(FailureReason::Redirected(to), None, None);
                }
                // Not an answer to our request (or malformed): a forgery, dropped; the real
                // answer may still come.
                _ => {}
            }
            return;
        }
        if let Some(c) = p.notify(NotifyType::COOKIE) {
            if hs.init_retries >= MAX_INIT_RETRIES || c.data.is_empty() || c.data.len() > 64 {
                self.fail(
                    FailureReason::TooManyRetries,
                    None,
                    Some(NotifyType::COOKIE),
                );
                return;
            }
            hs.init_retries += 1;
            hs.cookie = Some(c.data.clone());
            self.retry_init(now);
            return;
        }
        if let Some(n) = p.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = n
                .data
                .first_chunk::<2>()
                .map(|b| u16::from_be_bytes(*b))
                .unwrap_or(0);
            let offered = DhGroup::from_iana(wanted)
                .filter(|g| ike.ike_proposals.iter().any(|p| p.dh.contains(g)));
            let current = hs.dh.as_ref().map(DhPrivateKey::group);
            let (Some(group), true) = (offered, hs.init_retries < MAX_INIT_RETRIES) else {
                self.fail(
                    FailureReason::InvalidKeGroup(wanted),
                    None,
                    Some(NotifyType::INVALID_KE_PAYLOAD),
                );
                return;
            };
            if Some(group) == current {
                self.fail(
                    FailureReason::InvalidKeGroup(wanted),
                    None,
                    Some(NotifyType::INVALID_KE_PAYLOAD),
                );
                return;
            }
            hs.init_retries += 1;
            match self.provider.generate_dh(group) {
                Ok(dh) => hs.dh = Some(dh),
                Err(e) => {
                    self.fail(SaError::from(e).into(), None, None);
                    return;
                }
            }
            self.retry_init(now);
            return;
        }
        if let Some(n) = p.error_notify() {
            let reason = if n.notify_type == NotifyType::NO_PROPOSAL_CHOSEN {
                FailureReason::NoProposalChosen
            } else {
                FailureReason::PeerNotify(n.notify_type)
            };
            self.fail(reason, None, Some(n.notify_type));
            return;
        }
        let syntax = |s: &'static str| FailureReason::InvalidSyntax(SyntaxError::Invalid(s));
        let (Some(sa), Some(ke), Some(nr)) = (p.sa(), p.ke(), p.nonce()) else {
            self.fail(
                syntax("IKE_SA_INIT response lacks SA, KE or Nonce"),
                None,
                None,
            );
            return;
        };
        if msg.header.spi_r == 0 || !(16..=256).contains(&nr.len()) {
            self.fail(syntax("bad responder SPI or nonce"), None, None);
            return;
        }
        let algs = match sa.proposals.as_slice() {
            [one] => IkeAlgorithms::from_wire(one),
            _ => None,
        };
        let acceptable = algs.filter(|a| {
            ike.ike_proposals.iter().any(|p| {
                p.encr.contains(&a.encr)
                    && p.prf.contains(&a.prf)
                    && p.dh.contains(&a.dh)
                    && a.integ.is_none_or(|i| p.integ.contains(&i))
            })
        });
        let Some(algs) = acceptable else {
            self.fail(FailureReason::NoProposalChosen, None, None);
            return;
        };
        let Some(dh) = hs.dh.take() else {
            return;
        };
        if dh.group() != algs.dh || ke.group != wire_group(algs.dh) {
            self.fail(
                syntax("KE group differs from the chosen proposal"),
                None,
                None,
            );
            return;
        }
        let shared = match dh.agree(&ke.data) {
            Ok(s) => s,
            Err(e) => {
                self.fail(FailureReason::KeyExchange(e), None, None);
                return;
            }
        };
        hs.nr = nr.to_vec();
        hs.init_response = bytes.to_vec();
        self.spi_r = msg.header.spi_r;
        self.peer_frag = ike.fragmentation
            && p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
                .is_some();
        self.peer_hashes = parse_hash_algs(p);
        if let Err(e) = self.derive_keys(algs, shared.as_bytes()) {
            self.fail(e.into(), None, None);
            return;
        }
        self.window.take_request();
        self.nat_detected =
            ike.force_encap || natd_mismatch(p, self.spi_i, self.spi_r, path.remote, path.local);
        if self.nat_detected {
            // RFC 7296 2.23: float to the NAT-T port from IKE_AUTH on. Our port is the
            // engine's name for the NAT-T socket, which the driver may bind to any port.
            self.path.local.set_port(ike.natt_port);
            self.path.remote.set_port(ike.natt_port);
            self.path.natt = true;
        }
        let payloads = match self.build_auth_request() {
            Ok(p) => p,
            Err(e) => {
                self.fail(e.into(), None, None);
                return;
            }
        };
        match self.send_request(now, ExchangeType::IKE_AUTH, RequestKind::Auth, payloads) {
            Ok(()) => self.state = IkeSaState::AuthSent,
            Err(e) => self.fail(e.into(), None, None),
        }
    }
}

/// True when a NAT_DETECTION_* hash in `payloads` does not match the addresses we see:
/// `peer` is the sender's address as seen by us, `ours` our address.
pub(super) fn natd_mismatch(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    peer: SocketAddr,
    ours: SocketAddr,
) -> bool {
    let src: Vec<&Notify> = payloads
        .notifies()
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
        .collect();
    let dst = payloads.notify(NotifyType::NAT_DETECTION_DESTINATION_IP);
    if src.is_empty() || dst.is_none() {
        // The peer does not do NAT detection.
        return false;
    }
    let peer_hash = natd_hash(spi_i, spi_r, peer);
    let peer_ok = src.iter().any(|n| n.data == peer_hash);
    let ours_ok = dst.is_some_and(|n| n.data == natd_hash(spi_i, spi_r, ours));
    !(peer_ok && ours_ok)
}
