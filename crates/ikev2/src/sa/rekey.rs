//! CREATE_CHILD_SA (RFC 7296 1.3.2, 1.3.3, 2.8, 2.18, 2.25): rekeying Child SAs and the IKE
//! SA in both directions, lifetimes, and the old IKE SA that lives on until it is deleted.
//!
//! Collisions: a Child SA rekey that crosses the peer's rekey of the same Child SA is resolved
//! as RFC 7296 2.8.1 says (both new SAs are created; the one with the lowest of the four
//! nonces is deleted by its creator, and the other exchange's initiator deletes the old SA).
//! Every other overlap (IKE rekey against anything, a rekey of an SA that is being deleted)
//! is answered with TEMPORARY_FAILURE and retried after a random delay (RFC 7296 2.25).

use std::cmp::Ordering;
use std::time::Duration;

use ike_wire::{EsnId, Transform, TransformId};
use ipsec_crypto::SharedSecret;

use super::*;

/// Delay before retrying a rekey the peer refused with TEMPORARY_FAILURE: 2 s plus up to 8 s.
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_JITTER: Duration = Duration::from_secs(8);

/// How long a rekeyed IKE SA waits for the peer's Delete before it is dropped silently.
const RETIRED_GRACE: Duration = Duration::from_secs(60);

/// A Child SA of this IKE SA as the engine tracks it (the keys live in the data plane).
#[derive(Debug, Clone)]
pub(super) struct ChildState {
    pub(super) spi_in: u32,
    pub(super) spi_out: u32,
    ts_local: Vec<TrafficSelector>,
    ts_remote: Vec<TrafficSelector>,
    virtual_ips: Vec<IpAddr>,
    dns_servers: Vec<IpAddr>,
    dns_domains: Vec<String>,
    subnets: Vec<IpNet>,
    rekey_at: Option<Instant>,
    expire_at: Option<Instant>,
    /// Replaced by a rekey, redundant after a collision, or being deleted: never rekeyed
    /// again, only waits for its Delete (or its hard lifetime).
    pub(super) retiring: bool,
}

/// Our outstanding CREATE_CHILD_SA request.
#[derive(Debug)]
pub(super) enum Rekeying {
    Child {
        old_spi_in: u32,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivateKey>,
        /// The peer rekeyed the same Child SA meanwhile (RFC 7296 2.8.1).
        collision: Option<Collision>,
    },
    Ike {
        spi: u64,
        ni: Vec<u8>,
        dh: DhPrivateKey,
    },
}

/// The peer's rekey of the Child SA we are rekeying too, answered but not yet announced:
/// once our own exchange ends we know which new SA survives, and announce the loser first so
/// that a data plane where the newest SA carries the outbound traffic sends on the winner.
/// (In-order delivery guarantees that the peer sends nothing on it before our response
/// arrives: it answered our request before it saw our answer to its own.)
#[derive(Debug)]
pub(super) struct Collision {
    ni: Vec<u8>,
    nr: Vec<u8>,
    new: Box<ChildSa>,
}

/// The IKE SA an IKE rekey replaced: it answers retransmissions and the peer's Delete, or
/// sends our Delete, then disappears.
#[derive(Debug)]
pub(super) struct RetiredSa {
    spis: (u64, u64),
    initiator: bool,
    sk_in: SkCipher,
    sk_out: SkCipher,
    expected_request_id: u32,
    next_request_id: u32,
    cached_response: Option<(u32, Vec<Vec<u8>>)>,
    /// Our Delete (when we initiated the rekey).
    pending: Option<Pending>,
    give_up: Instant,
}

impl RetiredSa {
    pub(super) fn spis(&self) -> (u64, u64) {
        self.spis
    }

    pub(super) fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spis.0
        } else {
            self.spis.1
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        self.pending
            .as_ref()
            .map_or(self.give_up, |p| p.deadline.min(self.give_up))
    }
}

/// A rekey's nonces: the lower of the two, for the RFC 7296 2.8.1 comparison.
fn lowest<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if a.cmp(b) == Ordering::Less { a } else { b }
}

/// The first non-NONE KE transform of a proposal.
fn proposal_ke(p: &ike_wire::Proposal) -> Option<u16> {
    p.transforms.iter().find_map(|t| match t.id {
        TransformId::Ke(g) if g.0 != 0 => Some(g.0),
        _ => None,
    })
}

/// KE groups a proposal offers, and whether it accepts no KE at all.
fn proposal_ke_options(p: &ike_wire::Proposal) -> (Vec<u16>, bool) {
    let groups: Vec<u16> = p
        .transforms
        .iter()
        .filter_map(|t| match t.id {
            TransformId::Ke(g) => Some(g.0),
            _ => None,
        })
        .collect();
    let none_ok = groups.is_empty() || groups.contains(&0);
    (groups.into_iter().filter(|g| *g != 0).collect(), none_ok)
}

impl IkeSa {
    // ---------------------------------------------------------------- public API

    /// Rekeys the Child SA whose inbound SPI is `spi_in` (e.g. when the data plane reports a
    /// soft sequence-number limit) as soon as no other request is outstanding. Returns false
    /// when there is no such Child SA or it is already being replaced.
    pub fn rekey_child_sa(&mut self, now: Instant, spi_in: u32) -> bool {
        if self.state != IkeSaState::Established {
            return false;
        }
        let busy = matches!(&self.rekeying, Some(Rekeying::Child { old_spi_in, .. }) if *old_spi_in == spi_in);
        let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.spi_in == spi_in && !c.retiring)
        else {
            return false;
        };
        if !busy {
            c.rekey_at = Some(now);
            self.run_lifetimes(now);
        }
        true
    }

    /// Rekeys the IKE SA as soon as no other request is outstanding. False when not
    /// established.
    pub fn rekey_ike_sa(&mut self, now: Instant) -> bool {
        if self.state != IkeSaState::Established {
            return false;
        }
        if !matches!(self.rekeying, Some(Rekeying::Ike { .. })) {
            self.ike_rekey_at = Some(now);
            self.run_lifetimes(now);
        }
        true
    }

    /// Inbound SPIs of the Child SAs in use (not the ones being replaced or deleted).
    pub fn child_sa_spis(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter(|c| !c.retiring)
            .map(|c| c.spi_in)
            .collect()
    }

    // ---------------------------------------------------------------- lifetimes

    /// (rekey, expire) for something created now with `lifetime`: rekey at 90 % minus a
    /// random share of up to 10 %, so that the two peers rarely rekey at the same moment.
    fn lifetime_deadlines(
        &self,
        now: Instant,
        lifetime: Option<Duration>,
    ) -> (Option<Instant>, Option<Instant>) {
        let Some(life) = lifetime else {
            return (None, None);
        };
        let jitter = life.mul_f64(0.1 * self.random_fraction());
        (
            Some(now + life.mul_f64(0.9).saturating_sub(jitter)),
            Some(now + life),
        )
    }

    fn random_fraction(&self) -> f64 {
        let r = self
            .provider
            .random_array::<4>()
            .map(u32::from_be_bytes)
            .unwrap_or(u32::MAX / 2);
        f64::from(r) / f64::from(u32::MAX)
    }

    fn retry_at(&self, now: Instant) -> Instant {
        now + RETRY_BASE + RETRY_JITTER.mul_f64(self.random_fraction())
    }

    pub(super) fn start_ike_lifetime(&mut self, now: Instant) {
        let (rekey, expire) = self.lifetime_deadlines(now, self.cfg.ike().ike_lifetime);
        self.ike_rekey_at = rekey;
        self.ike_expire_at = expire;
    }

    /// Starts tracking a new Child SA (its lifetime starts now).
    pub(super) fn register_child(&mut self, now: Instant, c: &ChildSa) {
        let (rekey_at, expire_at) = self.lifetime_deadlines(now, self.cfg.ike().child_lifetime);
        self.children.push(ChildState {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            ts_local: c.ts_local.clone(),
            ts_remote: c.ts_remote.clone(),
            virtual_ips: c.virtual_ips.clone(),
            dns_servers: c.dns_servers.clone(),
            dns_domains: c.dns_domains.clone(),
            subnets: c.subnets.clone(),
            rekey_at,
            expire_at,
            retiring: false,
        });
    }

    /// Releases the SPIs this SA allocated that nothing refers to any more (a refused or lost
    /// rekey's, a first Child SA that never came): every Child SA, the first one while it is
    /// negotiated, and an outstanding or colliding rekey keep theirs.
    pub(crate) fn sweep_spis(&mut self) {
        let mut live: Vec<u32> = self.children.iter().map(|c| c.spi_in).collect();
        if matches!(
            self.state,
            IkeSaState::InitSent | IkeSaState::AuthSent | IkeSaState::HalfOpen
        ) {
            live.push(self.child_spi_in);
        }
        if let Some(Rekeying::Child {
            spi_in, collision, ..
        }) = &self.rekeying
        {
            live.push(*spi_in);
            if let Some(c) = collision {
                live.push(c.new.spi_in);
            }
        }
        let stale: Vec<u32> = self
            .own_spis
            .iter()
            .copied()
            .filter(|s| !live.contains(s))
            .collect();
        for spi in stale {
            self.release_child_spi(spi);
        }
    }

    /// A Child SA is gone (deleted by either side).
    pub(super) fn child_gone(&mut self, spi_in: u32) {
        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(i);
            self.release_child_spi(c.spi_in);
            self.events.push_back(Event::ChildSaDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    /// The next rekey or expiry, when one of them can be acted upon (no request outstanding).
    pub(super) fn lifetime_deadline(&self) -> Option<Instant> {
        if self.state != IkeSaState::Established || self.pending.is_some() {
            return None;
        }
        let children = self.children.iter().flat_map(|c| {
            let rekey = c.rekey_at.filter(|_| !c.retiring);
            [rekey, c.expire_at]
        });
        [self.ike_rekey_at, self.ike_expire_at]
            .into_iter()
            .chain(children)
            .flatten()
            .min()
    }

    /// Acts on due lifetimes: hard expiry first, then IKE rekey, then Child SA rekeys.
    pub(super) fn run_lifetimes(&mut self, now: Instant) {
        if self.state != IkeSaState::Established || self.pending.is_some() {
            return;
        }
        if self.ike_expire_at.is_some_and(|t| t <= now) {
            // Say goodbye without waiting: the SA's time is up.
            let id = self.next_request_id;
            if let Ok(datagrams) = self.protect(
                ExchangeType::INFORMATIONAL,
                id,
                false,
                &[Payload::Delete(Delete::ike())],
            ) {
                for d in datagrams {
                    self.push_transmit(d);
                }
            }
            self.close(CloseReason::Expired);
            return;
        }
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.expire_at.is_some_and(|t| t <= now))
        {
            c.expire_at = None;
            let spi_in = c.spi_in;
            self.send_delete_child(now, spi_in);
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| t <= now) {
            if self.retired.is_some() {
                // The previous IKE SA is still being deleted: one at a time.
                self.ike_rekey_at = Some(self.retry_at(now));
            } else {
                self.ike_rekey_at = None;
                if let Err(e) = self.start_ike_rekey(now) {
                    self.rekey_failed(FailureReason::Local(e), None);
                }
                return;
            }
        }
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| !c.retiring && c.rekey_at.is_some_and(|t| t <= now))
        {
            c.rekey_at = None;
            let spi_in = c.spi_in;
            if let Err(e) = self.start_child_rekey(now, spi_in) {
                self.rekey_failed(FailureReason::Local(e), None);
            }
        }
    }

    /// A rekey failed for good; the SA lives on until its hard lifetime.
    fn rekey_failed(&mut self, reason: FailureReason, received: Option<NotifyType>) {
        self.events.push_back(Event::Failed(Failure {
            reason,
            notify_sent: None,
            notify_received: received,
            remote: self.remote,
            claimed_id: self.claimed_peer.clone(),
        }));
    }

    // ---------------------------------------------------------------- initiating

    fn start_child_rekey(&mut self, now: Instant, old_spi_in: u32) -> Result<(), String> {
        let old = self
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .cloned()
            .ok_or("no such Child SA")?;
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        let crypto = |e: ipsec_crypto::CryptoError| e.to_string();
        let spi_in = self.new_child_spi().map_err(crypto)?;
        let ni = self
            .provider
            .random_vec(ike.nonce_len.max(16))
            .map_err(crypto)?;
        let pfs = ike.esp_proposals.iter().find_map(|p| p.dh.first().copied());
        let dh = pfs
            .map(|g| self.provider.generate_dh(g))
            .transpose()
            .map_err(crypto)?;
        let proposals = ike
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX), spi_in, true))
            .collect();
        let mut rekey = Notify::new(NotifyType::REKEY_SA, Vec::new());
        rekey.protocol = ProtocolId::ESP;
        rekey.spi = old_spi_in.to_be_bytes().to_vec();
        let mut payloads = vec![
            Payload::Notify(rekey),
            Payload::Sa(SecurityAssociation { proposals }),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke(KeyExchange {
                group: wire_group(dh.group()),
                data: dh.public_value().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(old.ts_local.clone()));
        payloads.push(Payload::TsR(old.ts_remote.clone()));
        self.send_request(
            now,
            ExchangeType::CREATE_CHILD_SA,
            RequestKind::Rekey,
            payloads,
        )?;
        self.rekeying = Some(Rekeying::Child {
            old_spi_in,
            spi_in,
            ni,
            dh,
            collision: None,
        });
        Ok(())
    }

    fn start_ike_rekey(&mut self, now: Instant) -> Result<(), String> {
        let algs = self.algs.ok_or("no IKE algorithms")?;
        let crypto = |e: ipsec_crypto::CryptoError| e.to_string();
        let spi = nonzero_u64(&self.provider).map_err(crypto)?;
        let ni = self
            .provider
            .random_vec(self.cfg.ike().nonce_len.max(16))
            .map_err(crypto)?;
        let dh = self.provider.generate_dh(algs.dh).map_err(crypto)?;
        // The algorithms in use: the peer accepted them once, and our KE matches them.
        let mut proposal = algs.to_wire(1);
        proposal.spi = spi.to_be_bytes().to_vec();
        let payloads = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![proposal],
            }),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KeyExchange {
                group: wire_group(dh.group()),
                data: dh.public_value().to_vec(),
            }),
        ];
        self.send_request(
            now,
            ExchangeType::CREATE_CHILD_SA,
            RequestKind::Rekey,
            payloads,
        )?;
        self.rekeying = Some(Rekeying::Ike { spi, ni, dh });
        Ok(())
    }

    pub(super) fn process_rekey_response(&mut self, now: Instant, payloads: &[Payload]) {
        match self.rekeying.take() {
            Some(Rekeying::Child {
                old_spi_in,
                spi_in,
                ni,
                dh,
                collision,
            }) => self.child_rekey_response(now, payloads, old_spi_in, spi_in, &ni, dh, collision),
            Some(Rekeying::Ike { spi, ni, dh }) => {
                self.ike_rekey_response(now, payloads, spi, &ni, &dh)
            }
            None => {}
        }
    }

    /// Handles an error notify in a rekey response of the IKE SA (`child` None) or a Child
    /// SA; true if there was one.
    fn rekey_refused(&mut self, now: Instant, payloads: &[Payload], child: Option<u32>) -> bool {
        let Some(n) = payloads.error_notify() else {
            return false;
        };
        let t = n.notify_type;
        let retry = self.retry_at(now);
        match (t, child) {
            (NotifyType::TEMPORARY_FAILURE, None) => self.ike_rekey_at = Some(retry),
            (NotifyType::TEMPORARY_FAILURE, Some(spi)) => {
                // Unless the peer's own rekey of it won meanwhile.
                if let Some(c) = self
                    .children
                    .iter_mut()
                    .find(|c| c.spi_in == spi && !c.retiring)
                {
                    c.rekey_at = Some(retry);
                }
            }
            // The peer no longer has it (RFC 7296 2.25): it is gone.
            (NotifyType::CHILD_SA_NOT_FOUND, Some(spi)) => self.child_gone(spi),
            _ => {
                let reason = if t == NotifyType::NO_PROPOSAL_CHOSEN {
                    FailureReason::NoProposalChosen
                } else {
                    FailureReason::PeerNotify(t)
                };
                self.rekey_failed(reason, Some(t));
            }
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn child_rekey_response(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        old_spi_in: u32,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivateKey>,
        collision: Option<Collision>,
    ) {
        let old = self
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .cloned();
        let ours = if self.rekey_refused(now, payloads, Some(old_spi_in)) {
            None
        } else if let Some(old) = &old {
            match self.accept_child_response(payloads, old, spi_in, ni, dh) {
                Ok(c) => Some(c),
                Err(reason) => {
                    self.rekey_failed(reason, None);
                    None
                }
            }
        } else {
            // Deleted meanwhile: the peer's new SA would be an orphan.
            self.send_delete_child(now, spi_in);
            None
        };
        let nr = payloads.nonce().unwrap_or_default().to_vec();
        let (old_spi_in, old_spi_out) = old.map_or((old_spi_in, 0), |o| (o.spi_in, o.spi_out));
        let rekeyed = |new| Event::ChildSaRekeyed {
            old_spi_in,
            old_spi_out,
            new,
        };
        match (ours, collision) {
            (None, None) => {}
            // Only the peer's rekey succeeded: it deletes the old SA.
            (None, Some(c)) => self.events.push_back(rekeyed(c.new)),
            (Some(new), None) => {
                self.register_child(now, &new);
                let spi_in = new.spi_in;
                self.events.push_back(rekeyed(new));
                self.events
                    .push_back(Event::ChildSaOutboundReady { spi_in });
                self.send_delete_child(now, old_spi_in);
            }
            // RFC 7296 2.8.1: the exchange with the lowest nonce lost; its initiator deletes
            // the SA it created, the winner's initiator deletes the old one.
            (Some(new), Some(c)) => {
                let ours_lost = lowest(ni, &nr).cmp(lowest(&c.ni, &c.nr)) == Ordering::Less;
                self.register_child(now, &new);
                if ours_lost {
                    // Ours is deleted at once and never sends; the peer's takes over when
                    // the peer deletes the old one.
                    let lost = new.spi_in;
                    self.events.push_back(rekeyed(new));
                    self.events.push_back(rekeyed(c.new));
                    self.send_delete_child(now, lost);
                } else {
                    let peer_spi = c.new.spi_in;
                    if let Some(x) = self.children.iter_mut().find(|x| x.spi_in == peer_spi) {
                        x.retiring = true;
                    }
                    self.events.push_back(rekeyed(c.new));
                    let spi_in = new.spi_in;
                    self.events.push_back(rekeyed(new));
                    self.events
                        .push_back(Event::ChildSaOutboundReady { spi_in });
                    self.send_delete_child(now, old_spi_in);
                }
            }
        }
    }

    /// Checks a CREATE_CHILD_SA response to our Child SA rekey and derives the new SA.
    fn accept_child_response(
        &self,
        payloads: &[Payload],
        old: &ChildState,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivateKey>,
    ) -> Result<Box<ChildSa>, FailureReason> {
        let syntax = |s: &str| FailureReason::InvalidSyntax(s.to_owned());
        let (Some(sa), Some(nr), Some(tsi), Some(tsr)) = (
            payloads.sa(),
            payloads.nonce(),
            payloads.ts_i(),
            payloads.ts_r(),
        ) else {
            return Err(syntax("CREATE_CHILD_SA response lacks SA, Nonce or TS"));
        };
        if !(16..=256).contains(&nr.len()) {
            return Err(syntax("bad nonce"));
        }
        let [proposal] = sa.proposals.as_slice() else {
            return Err(syntax("ESP reply must have one proposal"));
        };
        let (algs, spi_out) =
            EspAlgorithms::from_wire(proposal).ok_or_else(|| syntax("bad ESP proposal"))?;
        let chosen_ke = proposal_ke(proposal);
        let acceptable = self.cfg.ike().esp_proposals.iter().any(|p| {
            p.encr.contains(&algs.encr)
                && algs.integ.is_none_or(|i| p.integ.contains(&i))
                && p.esn.contains(&algs.esn)
                && match chosen_ke {
                    Some(g) => p.dh.iter().any(|d| d.iana() == g),
                    None => p.dh.is_empty(),
                }
        });
        if !acceptable {
            return Err(FailureReason::NoProposalChosen);
        }
        let shared = match (chosen_ke, dh) {
            (None, _) => None,
            (Some(g), Some(dh)) if dh.group().iana() == g => {
                let ke = payloads
                    .ke()
                    .filter(|k| k.group.0 == g)
                    .ok_or_else(|| syntax("KE missing or of another group"))?;
                Some(
                    dh.agree(&ke.data)
                        .map_err(|e| FailureReason::Local(e.to_string()))?,
                )
            }
            (Some(g), _) => return Err(FailureReason::InvalidKeGroup(g)),
        };
        if tsi.is_empty()
            || tsr.is_empty()
            || !tsi.iter().all(|t| ts::is_subset(t, &old.ts_local))
            || !tsr.iter().all(|t| ts::is_subset(t, &old.ts_remote))
        {
            return Err(FailureReason::TsUnacceptable);
        }
        let keys = self
            .rekey_child_keys(algs, shared.as_ref(), ni, nr)
            .map_err(FailureReason::Local)?;
        // We started the exchange: its "initiator" keys are our outbound ones.
        Ok(self.child_from(
            old,
            spi_in,
            spi_out,
            algs,
            keys,
            true,
            tsi.to_vec(),
            tsr.to_vec(),
        ))
    }

    fn rekey_child_keys(
        &self,
        algs: EspAlgorithms,
        shared: Option<&SharedSecret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, String> {
        let ike = self.algs.ok_or("no IKE algorithms")?;
        let keys = self.keys.as_ref().ok_or("no keys")?;
        ChildSaKeys::derive(
            ike.prf,
            keys.sk_d.as_bytes(),
            shared.map(SharedSecret::as_bytes),
            ni,
            nr,
            algs.encr.key_material_len(),
            algs.integ.map_or(0, |i| i.key_len()),
        )
        .map_err(|e| e.to_string())
    }

    /// The new Child SA replacing `old`; `exchange_initiator`: we started the CREATE_CHILD_SA.
    #[allow(clippy::too_many_arguments)]
    fn child_from(
        &self,
        old: &ChildState,
        spi_in: u32,
        spi_out: u32,
        algorithms: EspAlgorithms,
        keys: ChildSaKeys,
        exchange_initiator: bool,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
    ) -> Box<ChildSa> {
        let (encr_key_in, integ_key_in, encr_key_out, integ_key_out) = if exchange_initiator {
            (keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i)
        } else {
            (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r)
        };
        Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in,
            spi_out,
            algorithms,
            encr_key_in,
            integ_key_in,
            encr_key_out,
            integ_key_out,
            ts_local,
            ts_remote,
            virtual_ips: old.virtual_ips.clone(),
            dns_servers: old.dns_servers.clone(),
            dns_domains: old.dns_domains.clone(),
            subnets: old.subnets.clone(),
            local: self.local,
            remote: self.remote,
            udp_encap: self.encap,
        })
    }

    fn ike_rekey_response(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        spi: u64,
        ni: &[u8],
        dh: &DhPrivateKey,
    ) {
        if self.rekey_refused(now, payloads, None) {
            return;
        }
        let syntax = |s: &str| FailureReason::InvalidSyntax(s.to_owned());
        let result = (|| {
            let (Some(sa), Some(nr), Some(ke)) = (payloads.sa(), payloads.nonce(), payloads.ke())
            else {
                return Err(syntax("IKE rekey response lacks SA, Nonce or KE"));
            };
            if !(16..=256).contains(&nr.len()) {
                return Err(syntax("bad nonce"));
            }
            let [proposal] = sa.proposals.as_slice() else {
                return Err(syntax("IKE reply must have one proposal"));
            };
            let peer_spi = <[u8; 8]>::try_from(proposal.spi.as_slice())
                .map(u64::from_be_bytes)
                .ok()
                .filter(|s| *s != 0)
                .ok_or_else(|| syntax("IKE rekey reply without SPI"))?;
            let algs = IkeAlgorithms::from_wire(proposal)
                .filter(|a| Some(*a) == self.algs)
                .ok_or(FailureReason::NoProposalChosen)?;
            if ke.group != wire_group(dh.group()) {
                return Err(FailureReason::InvalidKeGroup(ke.group.0));
            }
            let shared = dh
                .agree(&ke.data)
                .map_err(|e| FailureReason::Local(e.to_string()))?;
            Ok((algs, peer_spi, nr.to_vec(), shared))
        })();
        match result {
            Ok((algs, peer_spi, nr, shared)) => {
                let ni = ni.to_vec();
                if let Err(e) =
                    self.switch_ike_sa(now, algs, (spi, peer_spi), true, ni, nr, &shared)
                {
                    self.rekey_failed(FailureReason::Local(e), None);
                    return;
                }
                self.send_retired_delete(now);
            }
            Err(reason) => {
                self.ike_rekey_at = None;
                self.rekey_failed(reason, None);
            }
        }
    }

    /// Moves everything over to the new IKE SA (`spis` = (SPIi, SPIr) of the new one,
    /// `initiator`: we started the rekey) and keeps the old one as retired.
    #[allow(clippy::too_many_arguments)]
    fn switch_ike_sa(
        &mut self,
        now: Instant,
        algs: IkeAlgorithms,
        spis: (u64, u64),
        initiator: bool,
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: &SharedSecret,
    ) -> Result<(), String> {
        let old_algs = self.algs.ok_or("no IKE algorithms")?;
        let old_keys = self.keys.as_ref().ok_or("no keys")?;
        let suite = algs.suite();
        let keys = IkeSaKeys::derive_rekey(
            old_algs.prf,
            old_keys.sk_d.as_bytes(),
            &suite,
            shared.as_bytes(),
            &ni,
            &nr,
            &spis.0.to_be_bytes(),
            &spis.1.to_be_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let (out, inb) = keys
            .sk_ciphers(&suite, initiator)
            .map_err(|e| e.to_string())?;
        let (Some(old_out), Some(old_in)) = (self.sk_out.replace(out), self.sk_in.replace(inb))
        else {
            return Err("no keys".into());
        };
        self.retired = Some(RetiredSa {
            spis: (self.spi_i, self.spi_r),
            initiator: self.initiator,
            sk_in: old_in,
            sk_out: old_out,
            expected_request_id: self.expected_request_id,
            next_request_id: self.next_request_id,
            cached_response: self.cached_response.take(),
            pending: None,
            give_up: now + RETIRED_GRACE,
        });
        (self.spi_i, self.spi_r) = spis;
        self.initiator = initiator;
        self.ni = ni;
        self.nr = nr;
        self.algs = Some(algs);
        self.keys = Some(keys);
        self.next_request_id = 0;
        self.expected_request_id = 0;
        self.reassembler = Reassembler::new(ReassemblyLimits::default());
        self.start_ike_lifetime(now);
        self.events.push_back(Event::IkeSaRekeyed {
            spi_i: spis.0,
            spi_r: spis.1,
        });
        Ok(())
    }

    /// Sends the Delete of the retired IKE SA (the last request on it, RFC 7296 2.18).
    fn send_retired_delete(&mut self, now: Instant) {
        let Some(r) = self.retired.as_ref() else {
            return;
        };
        // Message IDs of the old SA continue where they were.
        let id = r.next_request_id;
        let header = header_for(r.spis, r.initiator, ExchangeType::INFORMATIONAL, id, false);
        let Ok(datagrams) = self.protect_with(&r.sk_out, header, &[Payload::Delete(Delete::ike())])
        else {
            self.retired = None;
            return;
        };
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        let initial = self.cfg.ike().retransmit.initial;
        if let Some(r) = self.retired.as_mut() {
            r.pending = Some(Pending {
                message_id: id,
                kind: RequestKind::Delete,
                datagrams,
                sent: 1,
                deadline: now + initial,
            });
        }
    }

    // ---------------------------------------------------------------- responding

    pub(super) fn process_create_child_request(
        &mut self,
        now: Instant,
        message_id: u32,
        payloads: &[Payload],
    ) {
        let result = match payloads.sa() {
            None => Err(NotifyType::INVALID_SYNTAX),
            Some(sa) if sa.proposals.iter().any(|p| p.protocol == ProtocolId::IKE) => {
                self.answer_ike_rekey(now, payloads)
            }
            Some(_) => match payloads.notify(NotifyType::REKEY_SA) {
                // A new, additional Child SA: a remote-access tunnel has one.
                None => Err(NotifyType::NO_ADDITIONAL_SAS),
                Some(n) => self.answer_child_rekey(now, payloads, n),
            },
        };
        match result {
            Ok(Answer::Child {
                reply,
                old,
                new,
                nonces,
            }) => {
                self.send_response(ExchangeType::CREATE_CHILD_SA, message_id, &reply);
                if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old.spi_in) {
                    c.retiring = true;
                }
                self.register_child(now, &new);
                match (nonces, self.rekeying.as_mut()) {
                    (Some((ni, nr)), Some(Rekeying::Child { collision, .. })) => {
                        // Announced when our own rekey of it ends.
                        *collision = Some(Collision { ni, nr, new });
                    }
                    _ => self.events.push_back(Event::ChildSaRekeyed {
                        old_spi_in: old.spi_in,
                        old_spi_out: old.spi_out,
                        new,
                    }),
                }
            }
            Ok(Answer::Ike {
                reply,
                algs,
                spis,
                ni,
                nr,
                shared,
            }) => {
                // The answer goes out on the old SA; then the new one takes over.
                self.send_response(ExchangeType::CREATE_CHILD_SA, message_id, &reply);
                if let Err(e) = self.switch_ike_sa(now, algs, spis, false, ni, nr, &shared) {
                    self.rekey_failed(FailureReason::Local(e), None);
                }
            }
            Err(t) => {
                let data = if t == NotifyType::INVALID_KE_PAYLOAD {
                    self.invalid_ke_group(payloads)
                } else {
                    Vec::new()
                };
                self.send_response(
                    ExchangeType::CREATE_CHILD_SA,
                    message_id,
                    &[Payload::Notify(Notify::new(t, data))],
                );
            }
        }
    }

    /// The group we want for INVALID_KE_PAYLOAD: the first of our proposals' groups the peer
    /// offers too.
    fn invalid_ke_group(&self, payloads: &[Payload]) -> Vec<u8> {
        let offered: Vec<u16> = payloads
            .sa()
            .map(|sa| {
                sa.proposals
                    .iter()
                    .flat_map(|p| proposal_ke_options(p).0)
                    .collect()
            })
            .unwrap_or_default();
        let ike = self.cfg.ike();
        let ike_rekey = payloads
            .sa()
            .is_some_and(|sa| sa.proposals.iter().any(|p| p.protocol == ProtocolId::IKE));
        let ours: Vec<DhGroup> = if ike_rekey {
            ike.ike_proposals
                .iter()
                .flat_map(|p| p.dh.clone())
                .collect()
        } else {
            ike.esp_proposals
                .iter()
                .flat_map(|p| p.dh.clone())
                .collect()
        };
        ours.iter()
            .map(|g| g.iana())
            .find(|g| offered.contains(g))
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec()
    }

    fn answer_child_rekey(
        &mut self,
        _now: Instant,
        payloads: &[Payload],
        rekey: &Notify,
    ) -> Result<Answer, NotifyType> {
        if rekey.protocol != ProtocolId::ESP {
            return Err(NotifyType::CHILD_SA_NOT_FOUND);
        }
        let spi = <[u8; 4]>::try_from(rekey.spi.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| NotifyType::INVALID_SYNTAX)?;
        // The SPI names the SA in the sender's terms (its inbound SPI); accept ours too.
        let old = self
            .children
            .iter()
            .find(|c| c.spi_out == spi)
            .or_else(|| self.children.iter().find(|c| c.spi_in == spi))
            .cloned()
            .ok_or(NotifyType::CHILD_SA_NOT_FOUND)?;
        let colliding = match &self.rekeying {
            None => false,
            Some(Rekeying::Child { old_spi_in, .. }) if *old_spi_in == old.spi_in => true,
            Some(_) => return Err(NotifyType::TEMPORARY_FAILURE),
        };
        if old.retiring {
            return Err(NotifyType::TEMPORARY_FAILURE);
        }
        let (Some(sa), Some(ni), Some(tsi), Some(tsr)) = (
            payloads.sa(),
            payloads.nonce(),
            payloads.ts_i(),
            payloads.ts_r(),
        ) else {
            return Err(NotifyType::INVALID_SYNTAX);
        };
        if !(16..=256).contains(&ni.len()) {
            return Err(NotifyType::INVALID_SYNTAX);
        }
        let ke = payloads.ke();
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        // Our preference order; PFS: a group both sides list, and it must be the one in KE.
        let mut want_other_group = false;
        let chosen = ike.esp_proposals.iter().find_map(|ours| {
            sa.proposals.iter().find_map(|peer| {
                let (algs, spi_out) = ours.select(peer)?;
                let (groups, none_ok) = proposal_ke_options(peer);
                let group = if ours.dh.is_empty() {
                    // We don't ask for PFS; go along if the peer insists on a group we know.
                    if none_ok {
                        None
                    } else {
                        Some(
                            groups
                                .iter()
                                .copied()
                                .find(|g| DhGroup::from_iana(*g).is_some())?,
                        )
                    }
                } else {
                    Some(
                        ours.dh
                            .iter()
                            .map(|g| g.iana())
                            .find(|g| groups.contains(g))?,
                    )
                };
                if let Some(g) = group
                    && ke.map(|k| k.group.0) != Some(g)
                {
                    want_other_group = true;
                    return None;
                }
                Some((algs, spi_out, peer.number, group))
            })
        });
        let Some((algs, spi_out, number, group)) = chosen else {
            return Err(if want_other_group {
                NotifyType::INVALID_KE_PAYLOAD
            } else {
                NotifyType::NO_PROPOSAL_CHOSEN
            });
        };
        let tsi_n = ts::narrow(tsi, &old.ts_remote);
        let tsr_n = ts::narrow(tsr, &old.ts_local);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            return Err(NotifyType::TS_UNACCEPTABLE);
        }
        let local_err = |_| NotifyType::NO_PROPOSAL_CHOSEN;
        let (ke_reply, shared) = match (group, ke) {
            (Some(g), Some(ke)) => {
                let dh = DhGroup::from_iana(g)
                    .ok_or(NotifyType::NO_PROPOSAL_CHOSEN)
                    .and_then(|g| self.provider.generate_dh(g).map_err(local_err))?;
                let shared = dh.agree(&ke.data).map_err(|_| NotifyType::INVALID_SYNTAX)?;
                (
                    Some(KeyExchange {
                        group: wire_group(dh.group()),
                        data: dh.public_value().to_vec(),
                    }),
                    Some(shared),
                )
            }
            _ => (None, None),
        };
        let spi_in = self.new_child_spi().map_err(local_err)?;
        let nr = self
            .provider
            .random_vec(ike.nonce_len.max(16))
            .map_err(local_err)?;
        let keys = self
            .rekey_child_keys(algs, shared.as_ref(), ni, &nr)
            .map_err(|_| NotifyType::NO_PROPOSAL_CHOSEN)?;
        let new = self.child_from(
            &old,
            spi_in,
            spi_out,
            algs,
            keys,
            false,
            tsr_n.clone(),
            tsi_n.clone(),
        );
        let nonces = colliding.then(|| (ni.to_vec(), nr.clone()));
        let mut proposal = algs.to_wire(number, spi_in);
        if let Some(g) = group {
            // ENCR, INTEG, KE, ESN.
            let at = proposal
                .transforms
                .iter()
                .position(|t| matches!(t.id, TransformId::Esn(EsnId::ESN | EsnId::NO_ESN)))
                .unwrap_or(proposal.transforms.len());
            proposal
                .transforms
                .insert(at, Transform::new(TransformId::Ke(ike_wire::DhGroup(g))));
        }
        let mut reply = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![proposal],
            }),
            Payload::Nonce(nr),
        ];
        reply.extend(ke_reply.map(Payload::Ke));
        reply.push(Payload::TsI(tsi_n));
        reply.push(Payload::TsR(tsr_n));
        Ok(Answer::Child {
            reply,
            old,
            new,
            nonces,
        })
    }

    fn answer_ike_rekey(
        &mut self,
        _now: Instant,
        payloads: &[Payload],
    ) -> Result<Answer, NotifyType> {
        // One thing at a time (RFC 7296 2.25.2): our own rekey, or an old IKE SA still being
        // deleted, make the peer retry later.
        if self.rekeying.is_some() || self.retired.is_some() {
            return Err(NotifyType::TEMPORARY_FAILURE);
        }
        let (Some(sa), Some(ni), Some(ke)) = (payloads.sa(), payloads.nonce(), payloads.ke())
        else {
            return Err(NotifyType::INVALID_SYNTAX);
        };
        if !(16..=256).contains(&ni.len()) {
            return Err(NotifyType::INVALID_SYNTAX);
        }
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        let chosen = ike.ike_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|s| (s, peer)))
        });
        let Some(((mut algs, groups), peer)) = chosen else {
            return Err(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let peer_spi = <[u8; 8]>::try_from(peer.spi.as_slice())
            .map(u64::from_be_bytes)
            .ok()
            .filter(|s| *s != 0)
            .ok_or(NotifyType::INVALID_SYNTAX)?;
        match DhGroup::from_iana(ke.group.0).filter(|g| groups.contains(g)) {
            Some(g) => algs.dh = g,
            None => return Err(NotifyType::INVALID_KE_PAYLOAD),
        }
        let local_err = |_| NotifyType::NO_PROPOSAL_CHOSEN;
        let dh = self.provider.generate_dh(algs.dh).map_err(local_err)?;
        let shared = dh.agree(&ke.data).map_err(|_| NotifyType::INVALID_SYNTAX)?;
        let nr = self
            .provider
            .random_vec(ike.nonce_len.max(16))
            .map_err(local_err)?;
        let spi = nonzero_u64(&self.provider).map_err(local_err)?;
        let mut proposal = algs.to_wire(peer.number);
        proposal.spi = spi.to_be_bytes().to_vec();
        let reply = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![proposal],
            }),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KeyExchange {
                group: wire_group(dh.group()),
                data: dh.public_value().to_vec(),
            }),
        ];
        Ok(Answer::Ike {
            reply,
            algs,
            spis: (peer_spi, spi),
            ni: ni.to_vec(),
            nr,
            shared,
        })
    }

    // ---------------------------------------------------------------- the retired IKE SA

    /// A message for the IKE SA that a rekey replaced.
    pub(super) fn handle_retired(&mut self, parts: &ike_wire::ProtectedParts<'_>) {
        let h = parts.header;
        let Some(r) = self.retired.as_mut() else {
            return;
        };
        if h.flags.initiator() == r.initiator || parts.fragment.is_some() {
            return;
        }
        let Ok(plain) = r.sk_in.open(parts.aad, parts.body) else {
            return;
        };
        if h.flags.response() {
            if r.pending
                .as_ref()
                .is_some_and(|p| p.message_id == h.message_id)
            {
                // Our Delete was answered: the old SA is gone.
                self.retired = None;
            }
            return;
        }
        if let Some((id, datagrams)) = &r.cached_response
            && *id == h.message_id
        {
            let datagrams = datagrams.clone();
            for d in datagrams {
                self.push_transmit(d);
            }
            return;
        }
        if h.message_id != r.expected_request_id {
            return;
        }
        r.expected_request_id = r.expected_request_id.wrapping_add(1);
        let (spis, initiator) = (r.spis, r.initiator);
        let payloads = decode_chain(parts.first_payload, &plain).unwrap_or_default();
        let ike_deleted = payloads
            .iter()
            .any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let reply: Vec<Payload> = if h.exchange_type == ExchangeType::INFORMATIONAL {
            Vec::new()
        } else {
            vec![Payload::Notify(Notify::new(
                NotifyType::TEMPORARY_FAILURE,
                Vec::new(),
            ))]
        };
        let header = header_for(spis, initiator, h.exchange_type, h.message_id, true);
        let Some(sk_out) = self.retired.as_ref().map(|r| &r.sk_out) else {
            return;
        };
        let Ok(datagrams) = self.protect_with(sk_out, header, &reply) else {
            return;
        };
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        if ike_deleted {
            self.retired = None;
        } else if let Some(r) = self.retired.as_mut() {
            r.cached_response = Some((h.message_id, datagrams));
        }
    }

    /// Retransmits the retired SA's Delete, or drops the retired SA when its time is up.
    pub(super) fn retired_timeout(&mut self, now: Instant) {
        let tries = self.cfg.ike().retransmit;
        let Some(r) = self.retired.as_mut() else {
            return;
        };
        if r.give_up <= now {
            self.retired = None;
            return;
        }
        let Some(p) = r.pending.as_mut() else {
            return;
        };
        if p.deadline > now {
            return;
        }
        if p.sent >= tries.tries {
            self.retired = None;
            return;
        }
        let shift = p.sent.min(16);
        p.sent += 1;
        p.deadline = now
            + tries
                .initial
                .saturating_mul(1u32 << shift)
                .min(tries.max_timeout);
        let datagrams = p.datagrams.clone();
        for d in datagrams {
            self.push_transmit(d);
        }
    }
}

/// What we answer to a CREATE_CHILD_SA request.
enum Answer {
    Child {
        reply: Vec<Payload>,
        old: ChildState,
        new: Box<ChildSa>,
        /// (Ni, Nr) when it collides with our own rekey of the same Child SA.
        nonces: Option<(Vec<u8>, Vec<u8>)>,
    },
    Ike {
        reply: Vec<Payload>,
        algs: IkeAlgorithms,
        spis: (u64, u64),
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: SharedSecret,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap
mod tests {
    use super::super::*;

    const START: u64 = 1_767_225_600;

    struct OneAddress;

    impl AddressPool for OneAddress {
        fn allocate(&mut self, _: &IkeId, _: Option<&str>, _: AddressFamily) -> Option<IpAddr> {
            "172.16.201.10".parse().ok()
        }
        fn release(&mut self, _: &IkeId, _: IpAddr) {}
    }

    /// A client and a gateway IKE SA, established with one Child SA; events drained.
    fn established() -> (IkeSa, IkeSa, Instant) {
        // The same IKE_SA_INIT fixture as the IKE_AUTH unit tests.
        let (mut client, mut server, now) = crate::sa::tests::init_pair();
        client.set_unix_time(START + 86_400);
        server.set_unix_time(START + 86_400);
        exchange(&mut client, &mut server, now);
        assert_eq!(client.state(), IkeSaState::Established);
        assert_eq!(server.state(), IkeSaState::Established);
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
        (client, server, now)
    }

    /// Delivers datagrams both ways until both are quiet.
    fn exchange(client: &mut IkeSa, server: &mut IkeSa, now: Instant) {
        let (c_addr, s_addr) = (client.local, client.remote);
        loop {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                moved = true;
                server.handle(now, s_addr, c_addr, &t.bytes, Some(&mut OneAddress));
            }
            while let Some(t) = server.poll_transmit() {
                moved = true;
                client.handle_datagram(now, c_addr, s_addr, &t.bytes);
            }
            if !moved {
                return;
            }
        }
    }

    fn events(sa: &mut IkeSa) -> Vec<Event> {
        std::iter::from_fn(|| sa.poll_event()).collect()
    }

    /// Whether ChildSaOutboundReady for the new SA follows ChildSaRekeyed at once, and how
    /// many ChildSaOutboundReady there are; checks that the old SA is deleted afterwards.
    fn rekey_outcome(events: &[Event], old_spi_in: u32) -> (bool, usize) {
        let at = events
            .iter()
            .position(|e| matches!(e, Event::ChildSaRekeyed { .. }))
            .expect("ChildSaRekeyed");
        let Some(Event::ChildSaRekeyed { new, .. }) = events.get(at) else {
            unreachable!()
        };
        let ready = matches!(
            events.get(at + 1),
            Some(Event::ChildSaOutboundReady { spi_in }) if *spi_in == new.spi_in
        );
        let readies = events
            .iter()
            .filter(|e| matches!(e, Event::ChildSaOutboundReady { .. }))
            .count();
        let deleted = events.iter().position(
            |e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old_spi_in),
        );
        assert!(
            deleted.is_some_and(|d| d > at),
            "old SA deleted after the rekey"
        );
        (ready, readies)
    }

    /// RFC 7296 2.8: only the rekey initiator may send on the new SA at once; the responder
    /// learns the initiator is ready from its Delete of the old SA. Both roles, both sides.
    #[test]
    fn outbound_ready_only_for_the_rekey_initiator() {
        for client_initiates in [true, false] {
            let (mut client, mut server, now) = established();
            let c_old = client.children[0].spi_in;
            let s_old = server.children[0].spi_in;
            let started = if client_initiates {
                client.rekey_child_sa(now, c_old)
            } else {
                server.rekey_child_sa(now, s_old)
            };
            assert!(started);
            exchange(&mut client, &mut server, now);
            let (c_events, s_events) = (events(&mut client), events(&mut server));
            let (c_ready, c_count) = rekey_outcome(&c_events, c_old);
            let (s_ready, s_count) = rekey_outcome(&s_events, s_old);
            assert_eq!(c_ready, client_initiates, "{c_events:?}");
            assert_eq!(s_ready, !client_initiates, "{s_events:?}");
            assert_eq!(c_count + s_count, 1, "one side only");
        }
    }
}
