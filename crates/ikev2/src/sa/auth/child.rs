//! The first Child SA, carried by IKE_AUTH: the responder's proposal choice, address
//! assignment (CP) and TS narrowing; the initiator's checks of what it got; their keys.

use std::net::IpAddr;

use ike_wire::{
    CfgAttribute, CfgAttributeType, CfgType, Configuration, NotifyType, Payload, Payloads,
    SecurityAssociation, TrafficSelector,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipsec_crypto::ChildSaKeys;

use crate::config::{AddressFamily, AddressPool, InitiatorConfig, ResponderConfig};
use crate::event::ChildSa;
use crate::failure::{FailureReason, SyntaxError};
use crate::identity::IkeId;
use crate::proposal::EspAlgorithms;
use crate::sa::IkeSa;
use crate::sa::error::SaError;
use crate::ts;

impl IkeSa {
    /// Responder side of the first Child SA: CP, proposal, TS narrowing, keys.
    #[allow(clippy::type_complexity)]
    pub(super) fn responder_child(
        &mut self,
        cfg: &ResponderConfig,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
    ) -> Result<Option<(Vec<Payload>, Box<ChildSa>)>, (NotifyType, FailureReason)> {
        let cp = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REQUEST);
        let Some(sa) = payloads.sa() else {
            return Ok(None);
        };
        if cp.is_none() && cfg.require_virtual_ip {
            return Err((NotifyType::FAILED_CP_REQUIRED, FailureReason::CpRequired));
        }
        let (Some(tsi), Some(tsr)) = (payloads.ts_i(), payloads.ts_r()) else {
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        };
        let chosen = cfg.ike.esp_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|(a, spi)| (a, spi, peer.number)))
        });
        let Some((algs, spi_out, number)) = chosen else {
            return Err((
                NotifyType::NO_PROPOSAL_CHOSEN,
                FailureReason::NoProposalChosen,
            ));
        };
        let spi_in = self
            .new_child_spi()
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, SaError::from(e).into()))?;
        let keys = self
            .child_keys(algs)
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, e.into()))?;
        // Virtual IPs.
        let mut pool = pool;
        let mut vips = Vec::new();
        let peer = self.peer.id.clone().unwrap_or(IkeId::Other {
            id_type: ike_wire::IdType(0),
            data: Vec::new(),
        });
        if let Some(cp) = cp {
            let want_v4 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp4Address(_)));
            let want_v6 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp6Address(_)));
            if want_v4 || want_v6 {
                if let Some(pool) = pool.as_deref_mut() {
                    for (want, fam) in [(want_v4, AddressFamily::V4), (want_v6, AddressFamily::V6)]
                    {
                        if !want {
                            continue;
                        }
                        let group = self.peer.policy.as_ref().map(|p| p.group.as_str());
                        // INITIAL_CONTACT: the peer's other SAs are about to go; it takes
                        // their address over rather than getting another one.
                        let allocated = if self.peer.initial_contact {
                            pool.allocate_replacing(&peer, group, fam)
                        } else {
                            pool.allocate(&peer, group, fam)
                        };
                        if let Some(a) = allocated {
                            vips.push(a);
                        }
                    }
                }
                if vips.is_empty() {
                    return Err((
                        NotifyType::INTERNAL_ADDRESS_FAILURE,
                        FailureReason::AddressPoolExhausted,
                    ));
                }
            }
        }
        // A gateway that hands out addresses narrows TSi to them; without one (a CP asking
        // only for DNS, or no pool) TSi would stay 0.0.0.0/0 and the client could send from
        // any inner address it likes.
        if vips.is_empty() && cfg.require_virtual_ip {
            return Err((NotifyType::FAILED_CP_REQUIRED, FailureReason::CpRequired));
        }
        let allowed_remote: Vec<TrafficSelector> = if vips.is_empty() {
            vec![TrafficSelector::ANY_V4, TrafficSelector::ANY_V6]
        } else {
            vips.iter().map(|a| ts::host(*a)).collect()
        };
        let tsi_n = ts::narrow(tsi, &allowed_remote);
        // The peer's group, if the validator put it in one, decides what lies behind us.
        let policy = self.peer.policy.clone();
        let local_ts = policy.as_ref().map_or(&cfg.local_ts, |p| &p.local_ts);
        let dns_servers = policy.as_ref().map_or(&cfg.dns_servers, |p| &p.dns_servers);
        let dns_domains = policy.as_ref().map_or(&cfg.dns_domains, |p| &p.dns_domains);
        let pushed_subnets = policy
            .as_ref()
            .map_or(&cfg.pushed_subnets, |p| &p.pushed_subnets);
        let tsr_n = ts::narrow(tsr, local_ts);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            if let Some(pool) = pool {
                for a in vips {
                    pool.release(&peer, a);
                }
            }
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        }
        self.assigned.extend(vips.iter().copied());
        let mut attrs = Vec::new();
        let mut dns = Vec::new();
        for v in &vips {
            match v {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Address(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Address(Some((*a, 128)))),
            }
        }
        for d in dns_servers {
            let family_assigned = vips.iter().any(|v| v.is_ipv4() == d.is_ipv4());
            if !family_assigned {
                continue;
            }
            dns.push(*d);
            match d {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Dns(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Dns(Some(*a))),
            }
        }
        // RFC 8598: domains only to an initiator that asked, and only with DNS servers to
        // resolve them.
        let wants_domains = cp.is_some_and(|c| {
            c.attributes
                .iter()
                .any(|a| a.attr_type() == CfgAttributeType::INTERNAL_DNS_DOMAIN)
        });
        let domains = if wants_domains && !dns.is_empty() {
            dns_domains.clone()
        } else {
            Vec::new()
        };
        for d in &domains {
            attrs.push(crate::dns_domain::attribute(d));
        }
        for net in pushed_subnets {
            match net {
                IpNet::V4(n) => attrs.push(CfgAttribute::InternalIp4Subnet(Some((
                    n.addr(),
                    n.netmask(),
                )))),
                IpNet::V6(n) => attrs.push(CfgAttribute::InternalIp6Subnet(Some((
                    n.addr(),
                    n.prefix_len(),
                )))),
            }
        }
        let mut out = Vec::new();
        if cp.is_some() {
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::CFG_REPLY,
                attributes: attrs,
            }));
        }
        out.push(Payload::Sa(SecurityAssociation {
            proposals: vec![algs.to_wire(number, spi_in)],
        }));
        out.push(Payload::TsI(tsi_n.clone()));
        out.push(Payload::TsR(tsr_n.clone()));
        let child = Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_i,
            integ_key_in: keys.integ_i,
            encr_key_out: keys.encr_r,
            integ_key_out: keys.integ_r,
            ts_local: tsr_n,
            ts_remote: tsi_n,
            virtual_ips: vips,
            dns_servers: dns,
            dns_domains: domains,
            subnets: pushed_subnets.clone(),
            local: self.path.local,
            remote: self.path.remote,
            udp_encap: self.path.natt,
        });
        Ok(Some((out, child)))
    }

    fn child_keys(&self, algs: EspAlgorithms) -> Result<ChildSaKeys, SaError> {
        let sa_keys = self.keys()?;
        let (ike, keys) = (sa_keys.algs, &sa_keys.secrets);
        let hs = self
            .handshake
            .as_deref()
            .ok_or(SaError::internal("no nonces after the handshake"))?;
        Ok(ChildSaKeys::derive(
            ike.prf,
            keys.sk_d.as_bytes(),
            None,
            &hs.ni,
            &hs.nr,
            algs.encr.key_material_len(),
            algs.integ.map_or(0, |i| i.key_len()),
        )?)
    }
    pub(super) fn initiator_child(
        &self,
        cfg: &InitiatorConfig,
        payloads: &[Payload],
    ) -> Result<Box<ChildSa>, (FailureReason, Option<NotifyType>)> {
        if let Some(n) = payloads.error_notify() {
            let reason = match n.notify_type {
                NotifyType::NO_PROPOSAL_CHOSEN => FailureReason::NoProposalChosen,
                NotifyType::TS_UNACCEPTABLE => FailureReason::TsUnacceptable,
                NotifyType::INTERNAL_ADDRESS_FAILURE => FailureReason::AddressPoolExhausted,
                NotifyType::FAILED_CP_REQUIRED => FailureReason::CpRequired,
                t => FailureReason::PeerNotify(t),
            };
            return Err((reason, Some(n.notify_type)));
        }
        let syntax =
            |s: &'static str| (FailureReason::InvalidSyntax(SyntaxError::Invalid(s)), None);
        let (Some(sa), Some(tsi), Some(tsr)) = (payloads.sa(), payloads.ts_i(), payloads.ts_r())
        else {
            return Err(syntax("no Child SA in IKE_AUTH response"));
        };
        let (algs, spi_out) = match sa.proposals.as_slice() {
            [one] => EspAlgorithms::from_wire(one).ok_or_else(|| syntax("bad ESP proposal"))?,
            _ => return Err(syntax("ESP reply must have one proposal")),
        };
        let acceptable = cfg.ike.esp_proposals.iter().any(|p| {
            p.encr.contains(&algs.encr)
                && algs.integ.is_none_or(|i| p.integ.contains(&i))
                && p.esn.contains(&algs.esn)
        });
        if !acceptable {
            return Err((FailureReason::NoProposalChosen, None));
        }
        if tsi.is_empty()
            || tsr.is_empty()
            || !tsi.iter().all(|t| ts::is_subset(t, &cfg.ts_local))
            || !tsr.iter().all(|t| ts::is_subset(t, &cfg.ts_remote))
        {
            return Err((FailureReason::TsUnacceptable, None));
        }
        let mut vips = Vec::new();
        let mut dns = Vec::new();
        let mut domains = Vec::new();
        let mut subnets = Vec::new();
        if let Some(cp) = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REPLY) {
            for a in &cp.attributes {
                if let Some(d) = crate::dns_domain::from_attribute(a)
                    && !domains.contains(&d)
                    && domains.len() < crate::dns_domain::MAX_DOMAINS
                {
                    domains.push(d);
                }
                match a {
                    CfgAttribute::InternalIp4Address(Some(v)) => vips.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Address(Some((v, _))) => vips.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Dns(Some(v)) => dns.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Dns(Some(v)) => dns.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Subnet(Some((a, m))) => {
                        if let Ok(n) = Ipv4Net::with_netmask(*a, *m) {
                            subnets.push(IpNet::V4(n.trunc()));
                        }
                    }
                    CfgAttribute::InternalIp6Subnet(Some((a, p))) => {
                        if let Ok(n) = Ipv6Net::new(*a, *p) {
                            subnets.push(IpNet::V6(n.trunc()));
                        }
                    }
                    _ => {}
                }
            }
        }
        if (cfg.request_ipv4 || cfg.request_ipv6) && vips.is_empty() {
            return Err((FailureReason::AddressPoolExhausted, None));
        }
        if dns.is_empty() {
            // Nothing to resolve them with (RFC 8598 pairs them with the DNS servers).
            domains.clear();
        }
        let keys = self.child_keys(algs).map_err(|e| (e.into(), None))?;
        Ok(Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in: self.child_spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_r,
            integ_key_in: keys.integ_r,
            encr_key_out: keys.encr_i,
            integ_key_out: keys.integ_i,
            ts_local: tsi.to_vec(),
            ts_remote: tsr.to_vec(),
            virtual_ips: vips,
            dns_servers: dns,
            dns_domains: domains,
            subnets,
            local: self.path.local,
            remote: self.path.remote,
            udp_encap: self.path.natt,
        }))
    }
}
