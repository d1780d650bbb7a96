//! Rekeying the IKE SA (RFC 7296 1.3.2, 2.18), both as its initiator and as its responder.

use std::time::Instant;

use ike_wire::{ExchangeType, KeyExchange, NotifyType, Payload, Payloads, SecurityAssociation};
use ipsec_crypto::{DhGroup, DhPrivateKey, SharedSecret};

use super::{Answer, RETIRED_GRACE, Rekeying, RetiredSa};
use crate::event::Event;
use crate::failure::{FailureReason, SyntaxError};
use crate::proposal::IkeAlgorithms;
use crate::sa::error::SaError;
use crate::sa::keys::Exchanged;
use crate::sa::spi::nonzero_u64;
use crate::sa::{IkeSa, RequestKind, wire_group};

impl IkeSa {
    pub(super) fn start_ike_rekey(&mut self, now: Instant) -> Result<(), SaError> {
        let algs = self.keys()?.algs;
        let spi = nonzero_u64(&self.provider)?;
        let ni = self.provider.random_vec(self.cfg.ike().nonce_len.max(16))?;
        let dh = self.provider.generate_dh(algs.dh)?;
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

    pub(super) fn ike_rekey_response(
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
        let syntax = |s: &'static str| FailureReason::InvalidSyntax(SyntaxError::Invalid(s));
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
                .filter(|a| self.keys.as_ref().is_some_and(|k| k.algs == *a))
                .ok_or(FailureReason::NoProposalChosen)?;
            if ke.group != wire_group(dh.group()) {
                return Err(FailureReason::InvalidKeGroup(ke.group.0));
            }
            let shared = dh.agree(&ke.data).map_err(SaError::KeyExchange)?;
            Ok((algs, peer_spi, nr.to_vec(), shared))
        })();
        match result {
            Ok((algs, peer_spi, nr, shared)) => {
                if let Err(e) =
                    self.switch_ike_sa(now, algs, (spi, peer_spi), true, ni, &nr, &shared)
                {
                    self.rekey_failed(e.into(), None);
                    return;
                }
                self.send_retired_delete(now);
            }
            Err(reason) => {
                self.ike_lifetime.rekey_at = None;
                self.rekey_failed(reason, None);
            }
        }
    }

    /// Moves everything over to the new IKE SA (`spis` = (SPIi, SPIr) of the new one,
    /// `initiator`: we started the rekey) and keeps the old one as retired.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn switch_ike_sa(
        &mut self,
        now: Instant,
        algs: IkeAlgorithms,
        spis: (u64, u64),
        initiator: bool,
        ni: &[u8],
        nr: &[u8],
        shared: &SharedSecret,
    ) -> Result<(), SaError> {
        let exchanged = Exchanged {
            ni,
            nr,
            spis,
            initiator,
        };
        let keys = self.keys()?.rekeyed(algs, shared, &exchanged)?;
        let Some(old) = self.keys.replace(keys) else {
            return Err(SaError::internal("no keys"));
        };
        self.retired = Some(RetiredSa {
            spis: (self.spi_i, self.spi_r),
            initiator: self.initiator,
            sk_in: old.sk_in,
            sk_out: old.sk_out,
            window: self.window.restart(),
            give_up: now + RETIRED_GRACE,
        });
        (self.spi_i, self.spi_r) = spis;
        self.initiator = initiator;
        self.start_ike_lifetime(now);
        self.events.push_back(Event::IkeSaRekeyed {
            spi_i: spis.0,
            spi_r: spis.1,
        });
        Ok(())
    }

    pub(super) fn answer_ike_rekey(
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
}
