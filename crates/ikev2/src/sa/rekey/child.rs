//! Rekeying a Child SA (RFC 7296 1.3.3, 2.8), both as its initiator and as its responder,
//! collisions included (2.8.1).

use std::cmp::Ordering;
use std::time::Instant;

use ike_wire::{
    EsnId, ExchangeType, KeyExchange, Notify, NotifyType, Payload, Payloads, ProtocolId,
    SecurityAssociation, TrafficSelector, Transform, TransformId,
};
use ipsec_crypto::{ChildSaKeys, DhGroup, DhPrivateKey, SharedSecret};

use super::{Answer, Collision, Rekeying, lowest, proposal_ke, proposal_ke_options};
use crate::event::{ChildSa, Event};
use crate::failure::{FailureReason, SyntaxError};
use crate::proposal::EspAlgorithms;
use crate::sa::children::ChildState;
use crate::sa::error::SaError;
use crate::sa::{IkeSa, RequestKind, wire_group};
use crate::ts;

impl IkeSa {
    pub(super) fn start_child_rekey(
        &mut self,
        now: Instant,
        old_spi_in: u32,
    ) -> Result<(), SaError> {
        let old = self
            .children
            .get(old_spi_in)
            .cloned()
            .ok_or(SaError::internal("no such Child SA"))?;
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        let spi_in = self.new_child_spi()?;
        let ni = self.provider.random_vec(ike.nonce_len.max(16))?;
        let pfs = ike.esp_proposals.iter().find_map(|p| p.dh.first().copied());
        let dh = pfs.map(|g| self.provider.generate_dh(g)).transpose()?;
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_rekey_response(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        old_spi_in: u32,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivateKey>,
        collision: Option<Collision>,
    ) {
        let old = self.children.get(old_spi_in).cloned();
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
                    self.children.retire(peer_spi);
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
    pub(super) fn accept_child_response(
        &self,
        payloads: &[Payload],
        old: &ChildState,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivateKey>,
    ) -> Result<Box<ChildSa>, FailureReason> {
        let syntax = |s: &'static str| FailureReason::InvalidSyntax(SyntaxError::Invalid(s));
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
                Some(dh.agree(&ke.data).map_err(SaError::KeyExchange)?)
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
        let keys = self.rekey_child_keys(algs, shared.as_ref(), ni, nr)?;
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

    pub(super) fn rekey_child_keys(
        &self,
        algs: EspAlgorithms,
        shared: Option<&SharedSecret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, SaError> {
        let sa_keys = self.keys()?;
        let (ike, keys) = (sa_keys.algs, &sa_keys.secrets);
        Ok(ChildSaKeys::derive(
            ike.prf,
            keys.sk_d.as_bytes(),
            shared.map(SharedSecret::as_bytes),
            ni,
            nr,
            algs.encr.key_material_len(),
            algs.integ.map_or(0, |i| i.key_len()),
        )?)
    }

    /// The new Child SA replacing `old`; `exchange_initiator`: we started the CREATE_CHILD_SA.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn child_from(
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
            local: self.path.local,
            remote: self.path.remote,
            udp_encap: self.path.natt,
        })
    }

    pub(super) fn answer_child_rekey(
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
            .named_by_peer(spi)
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
}
