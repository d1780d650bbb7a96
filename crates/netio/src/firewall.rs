//! Traffic filters on a tunnel interface, in nftables: one table per tunnel (`inet
//! aovpn-IFNAME`), replaced atomically and removed with the tunnel. Once a tunnel has filters,
//! only what they allow crosses its interface (plus the replies of allowed connections), as
//! Windows does with a VPNv2 TrafficFilter.
//!
//! The ruleset is built with the `nftables` crate's schema and handed to `nft -j` in one
//! transaction, so a tunnel is never left half-filtered.

use std::borrow::Cow;
use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// Which way a filter's connections are opened (Windows' `Direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Connections from this machine into the tunnel (the default).
    Outbound,
    /// Connections from the tunnel to this machine.
    Inbound,
}

/// Addresses a filter matches: a prefix or an inclusive range, one family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMatch {
    /// `addr/len`.
    Prefix(IpAddr, u8),
    /// `first-last`, both of one family.
    Range(IpAddr, IpAddr),
}

impl AddressMatch {
    fn is_ipv4(self) -> bool {
        match self {
            Self::Prefix(a, _) | Self::Range(a, _) => a.is_ipv4(),
        }
    }
}

/// One allowed kind of traffic. Empty lists match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub direction: Direction,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: Option<u8>,
    /// Ports on this machine's side (TCP and UDP only).
    pub local_ports: Vec<(u16, u16)>,
    /// Ports on the far side.
    pub remote_ports: Vec<(u16, u16)>,
    pub local_addresses: Vec<AddressMatch>,
    pub remote_addresses: Vec<AddressMatch>,
}

/// Why filters could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("nft: {0}")]
    Nft(String),
    #[error("interface name {0:?} cannot name a table")]
    InterfaceName(String),
}

/// The table of LockDown (one per machine: at most one LockDown profile exists).
pub const LOCKDOWN_TABLE: &str = "aovpn-lockdown";

/// What LockDown still lets through outside the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lockdown {
    /// Interface indexes of the LockDown profile's tunnel while it is up (none while it is
    /// down). Indexes, not names: anyone allowed to create an interface could give it a name.
    #[serde(default)]
    pub tunnel_indexes: Vec<u32>,
    /// UDP ports of IKE and ESP-in-UDP towards the gateways (500 and 4500, or a profile's).
    #[serde(default = "default_ike_ports")]
    pub ike_ports: Vec<u16>,
    /// Owners of the sockets that may send IKE and DNS outside the tunnel: root (the agent)
    /// and the system resolver's user. Other users' programs get nothing outside.
    #[serde(default)]
    pub daemon_uids: Vec<u32>,
}

fn default_ike_ports() -> Vec<u16> {
    vec![500, 4500]
}

/// Installs (or replaces) LockDown: nothing leaves or enters the machine outside the tunnel
/// but loopback, the agent's own IKE/ESP and DNS, DHCP and IPv6 neighbour discovery (so the
/// machine keeps its address), and the replies of those; nothing is forwarded. It stays while
/// the tunnel is down, and after the agent stops: only removing the LockDown profile (or
/// `nft delete table inet aovpn-lockdown`) lifts it.
pub async fn install_lockdown(l: &Lockdown) -> Result<(), FirewallError> {
    nftables::helper::apply_ruleset_async(&lockdown_ruleset(l)?)
        .await
        .map_err(|e| FirewallError::Nft(e.to_string()))
}

/// The LockDown table, replacing any previous one in the same transaction.
pub fn lockdown_ruleset(l: &Lockdown) -> Result<Nftables<'static>, FirewallError> {
    let table = LOCKDOWN_TABLE;
    let mut batch = fresh_table(table, NfChainPolicy::Drop);
    let mut rule = |chain: &'static str, expr: Vec<Statement<'static>>| {
        let mut all = expr;
        all.push(Statement::Accept(None));
        batch.add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(table),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(all),
            handle: None,
            index: None,
            comment: None,
        }));
    };
    rule("output", vec![meta_eq(MetaKey::Oifname, "lo")]);
    rule("input", vec![meta_eq(MetaKey::Iifname, "lo")]);
    if !l.tunnel_indexes.is_empty() {
        let indexes = || l.tunnel_indexes.iter().map(|i| Expression::Number(*i));
        rule("output", vec![meta_in(MetaKey::Oif, indexes())]);
        rule("input", vec![meta_in(MetaKey::Iif, indexes())]);
    }
    // The forward chain accepts nothing: a locked machine routes for no one.
    for chain in ["output", "input"] {
        rule(chain, vec![established()]);
        // The machine keeps its addresses: IPv6 neighbour and router discovery.
        rule(
            chain,
            vec![
                l4proto(58),
                payload_in(
                    "icmpv6",
                    "type",
                    [133u32, 134, 135, 136].into_iter().map(Expression::Number),
                ),
            ],
        );
    }
    // DHCP (v4 and v6) clients, which bind the privileged client ports: an unprivileged
    // program cannot use these exceptions as a channel.
    for (client, server) in [(68u32, 67u32), (546, 547)] {
        let port = |field: &'static str, p: u32| {
            payload_in("udp", field, std::iter::once(Expression::Number(p)))
        };
        rule(
            "output",
            vec![l4proto(17), port("sport", client), port("dport", server)],
        );
        rule(
            "input",
            vec![l4proto(17), port("sport", server), port("dport", client)],
        );
    }
    // The agent's IKE/ESP-in-UDP and name lookups (the gateway's name).
    let daemons = || {
        meta_in(
            MetaKey::Skuid,
            l.daemon_uids.iter().map(|u| Expression::Number(*u)),
        )
    };
    let ike_ports = || {
        l.ike_ports
            .iter()
            .map(|p| Expression::Number(u32::from(*p)))
    };
    rule(
        "output",
        vec![
            daemons(),
            l4proto(17),
            payload_in("udp", "dport", ike_ports()),
        ],
    );
    for proto in [(17u8, "udp"), (6, "tcp")] {
        rule(
            "output",
            vec![
                daemons(),
                l4proto(proto.0),
                payload_in(proto.1, "dport", std::iter::once(Expression::Number(53))),
            ],
        );
    }
    Ok(batch.to_nftables())
}

fn meta_eq(key: MetaKey, value: &str) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Meta(Meta { key })),
        right: Expression::String(Cow::Owned(value.to_owned())),
        op: Operator::EQ,
    })
}

fn l4proto(p: u8) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        right: Expression::Number(u32::from(p)),
        op: Operator::EQ,
    })
}

fn meta_in(key: MetaKey, items: impl Iterator<Item = Expression<'static>>) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Meta(Meta { key })),
        right: Expression::Named(NamedExpression::Set(items.map(SetItem::Element).collect())),
        op: Operator::EQ,
    })
}

/// The table that holds `ifname`'s filters (a prefix of its own: no interface name can make
/// it [`LOCKDOWN_TABLE`]).
pub fn table_name(ifname: &str) -> String {
    format!("aovpn-filter-{ifname}")
}

/// Installs (or replaces) the filters of the tunnel on `ifname`. Returns the table's name.
pub async fn install(ifname: &str, rules: &[FilterRule]) -> Result<String, FirewallError> {
    let ruleset = ruleset(ifname, rules)?;
    nftables::helper::apply_ruleset_async(&ruleset)
        .await
        .map_err(|e| FirewallError::Nft(e.to_string()))?;
    Ok(table_name(ifname))
}

/// Removes a table this module installed; one that is already gone is fine.
pub async fn remove(table: &str) -> Result<(), FirewallError> {
    let mut batch = Batch::new();
    // "add" first makes "delete" succeed whether or not the table still exists.
    batch.add(NfListObject::Table(inet_table(table)));
    batch.delete(NfListObject::Table(inet_table(table)));
    nftables::helper::apply_ruleset_async(&batch.to_nftables())
        .await
        .map_err(|e| FirewallError::Nft(e.to_string()))
}

/// A batch that replaces `table` (deleted if it exists, in the same transaction) with empty
/// output, input and forward filter chains of `policy`.
fn fresh_table(table: &str, policy: NfChainPolicy) -> Batch<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(inet_table(table)));
    batch.delete(NfListObject::Table(inet_table(table)));
    batch.add(NfListObject::Table(inet_table(table)));
    for (chain, hook) in [
        ("output", NfHook::Output),
        ("input", NfHook::Input),
        ("forward", NfHook::Forward),
    ] {
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Owned(table.to_owned()),
            name: Cow::Borrowed(chain),
            _type: Some(NfChainType::Filter),
            hook: Some(hook),
            prio: Some(0),
            policy: Some(policy),
            ..Chain::default()
        }));
    }
    batch
}

fn inet_table(name: &str) -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    }
}

/// The whole table for `ifname`: the old one (if any) deleted and the new one added in the
/// same transaction.
pub fn ruleset(ifname: &str, rules: &[FilterRule]) -> Result<Nftables<'static>, FirewallError> {
    let valid = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(FirewallError::InterfaceName(ifname.to_owned()));
    }
    let table = table_name(ifname);
    let mut batch = fresh_table(&table, NfChainPolicy::Accept);
    // Forwarded traffic (containers, VMs, a LAN behind this machine) crosses the tunnel
    // interface too, and gets the same rules.
    for (chain, direction) in [
        ("output", Direction::Outbound),
        ("input", Direction::Inbound),
        ("forward", Direction::Outbound),
        ("forward", Direction::Inbound),
    ] {
        let on_tunnel = interface_match(direction, ifname);
        let mut add = |mut expr: Vec<Statement<'static>>, last: Statement<'static>| {
            let mut all = vec![on_tunnel.clone()];
            all.append(&mut expr);
            all.push(last);
            batch.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: Cow::Owned(table.clone()),
                chain: Cow::Borrowed(chain),
                expr: Cow::Owned(all),
                handle: None,
                index: None,
                comment: None,
            }));
        };
        // Replies of allowed connections, either way.
        add(vec![established()], Statement::Accept(None));
        for rule in rules {
            for matches in rule_matches(rule, direction) {
                add(matches, Statement::Accept(None));
            }
        }
        add(Vec::new(), Statement::Drop(None));
    }
    Ok(batch.to_nftables())
}

/// `oifname IF` on the way out, `iifname IF` on the way in.
fn interface_match(direction: Direction, ifname: &str) -> Statement<'static> {
    let key = match direction {
        Direction::Outbound => MetaKey::Oifname,
        Direction::Inbound => MetaKey::Iifname,
    };
    meta_eq(key, ifname)
}

fn established() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("state"),
            family: None,
            dir: None,
        })),
        right: Expression::List(vec![
            Expression::String(Cow::Borrowed("established")),
            Expression::String(Cow::Borrowed("related")),
        ]),
        op: Operator::IN,
    })
}

/// The match statements of `rule` on the chain of `chain_direction`: a connection opened in
/// the rule's direction is seen there with its local side as the source (outbound) or as the
/// destination (inbound). One list per address family the rule names (none: one, any family).
fn rule_matches(rule: &FilterRule, chain_direction: Direction) -> Vec<Vec<Statement<'static>>> {
    if rule.direction != chain_direction {
        return Vec::new();
    }
    let (local_side, remote_side) = match chain_direction {
        Direction::Outbound => ("saddr", "daddr"),
        Direction::Inbound => ("daddr", "saddr"),
    };
    let (local_port, remote_port) = match chain_direction {
        Direction::Outbound => ("sport", "dport"),
        Direction::Inbound => ("dport", "sport"),
    };
    let mut common = Vec::new();
    if let Some(p) = rule.protocol {
        common.push(l4proto(p));
    }
    for (ports, field) in [
        (&rule.local_ports, local_port),
        (&rule.remote_ports, remote_port),
    ] {
        if !ports.is_empty() {
            common.push(payload_in("th", field, ports.iter().map(|r| port_item(*r))));
        }
    }
    let has_addresses = !rule.local_addresses.is_empty() || !rule.remote_addresses.is_empty();
    if !has_addresses {
        return vec![common];
    }
    let mut out = Vec::new();
    for (v4, protocol) in [(true, "ip"), (false, "ip6")] {
        let local: Vec<&AddressMatch> = rule
            .local_addresses
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .collect();
        let remote: Vec<&AddressMatch> = rule
            .remote_addresses
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .collect();
        // A side that names addresses, none of this family: this family cannot match.
        if (local.is_empty() && !rule.local_addresses.is_empty())
            || (remote.is_empty() && !rule.remote_addresses.is_empty())
        {
            continue;
        }
        let mut m = common.clone();
        for (addrs, field) in [(local, local_side), (remote, remote_side)] {
            if !addrs.is_empty() {
                m.push(payload_in(
                    protocol,
                    field,
                    addrs.into_iter().map(|a| address_item(*a)),
                ));
            }
        }
        out.push(m);
    }
    out
}

fn payload_in(
    protocol: &'static str,
    field: &'static str,
    items: impl Iterator<Item = Expression<'static>>,
) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: Cow::Borrowed(protocol),
                field: Cow::Borrowed(field),
            },
        ))),
        right: Expression::Named(NamedExpression::Set(items.map(SetItem::Element).collect())),
        op: Operator::EQ,
    })
}

fn port_item((first, last): (u16, u16)) -> Expression<'static> {
    if first == last {
        Expression::Number(u32::from(first))
    } else {
        Expression::Range(Box::new(Range {
            range: [
                Expression::Number(u32::from(first)),
                Expression::Number(u32::from(last)),
            ],
        }))
    }
}

fn address_item(a: AddressMatch) -> Expression<'static> {
    let text = |ip: IpAddr| Expression::String(Cow::Owned(ip.to_string()));
    match a {
        AddressMatch::Prefix(ip, len) => Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(text(ip)),
            len: u32::from(len),
        })),
        AddressMatch::Range(first, last) => Expression::Range(Box::new(Range {
            range: [text(first), text(last)],
        })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn json(rules: &[FilterRule]) -> String {
        serde_json::to_string(&ruleset("aovpn0", rules).unwrap()).unwrap()
    }

    /// LockDown names its way out by interface index (a name anyone allowed to create links
    /// could take), forwards nothing, and its DHCP exceptions need the privileged client ports.
    #[test]
    fn lockdown_is_by_index_forwards_nothing_and_dhcp_needs_client_ports() {
        let l = Lockdown {
            tunnel_indexes: vec![42],
            ike_ports: vec![500, 4500],
            daemon_uids: vec![0],
        };
        let rules: Vec<(String, String)> = lockdown_ruleset(&l)
            .unwrap()
            .objects
            .iter()
            .filter_map(|o| match o {
                nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
                    NfListObject::Rule(r),
                )) => Some((r.chain.to_string(), serde_json::to_string(&r.expr).unwrap())),
                _ => None,
            })
            .collect();
        assert!(
            !rules.iter().any(|(chain, _)| chain == "forward"),
            "{rules:?}"
        );
        assert!(
            rules
                .iter()
                .any(|(_, e)| e.contains(r#""key":"oif""#) && e.contains("42"))
        );
        assert!(!rules.iter().any(|(_, e)| e.contains("aovpn")), "{rules:?}");
        for (_, e) in rules
            .iter()
            .filter(|(_, e)| e.contains("[67]") || e.contains("[547]"))
        {
            assert!(
                e.contains(r#""field":"sport""#),
                "DHCP without client port: {e}"
            );
        }
        // Without a tunnel (down), no interface is a way out.
        let down = Lockdown {
            tunnel_indexes: Vec::new(),
            ..l
        };
        let text = serde_json::to_string(&lockdown_ruleset(&down).unwrap()).unwrap();
        assert!(!text.contains(r#""key":"oif""#), "{text}");
        assert_ne!(table_name("lockdown"), LOCKDOWN_TABLE);
    }

    #[test]
    fn interface_names_that_could_inject_are_refused() {
        for bad in ["", "a\"b", "tun 0", "0123456789abcdef"] {
            assert!(ruleset(bad, &[]).is_err(), "{bad:?}");
        }
    }

    /// A rule naming only IPv4 remote addresses gives an `ip daddr` match and no IPv6 rule; a
    /// rule naming both families gives one rule per family.
    #[test]
    fn address_families_are_split() {
        let v4_only = FilterRule {
            direction: Direction::Outbound,
            protocol: Some(6),
            local_ports: Vec::new(),
            remote_ports: vec![(443, 443), (8000, 8080)],
            local_addresses: Vec::new(),
            remote_addresses: vec![AddressMatch::Prefix("10.1.0.0".parse().unwrap(), 16)],
        };
        let rules = rule_matches(&v4_only, Direction::Outbound);
        assert_eq!(rules.len(), 1);
        assert!(rule_matches(&v4_only, Direction::Inbound).is_empty());
        let text = json(std::slice::from_ref(&v4_only));
        assert!(
            text.contains(r#""protocol":"ip","field":"daddr""#),
            "{text}"
        );
        assert!(!text.contains(r#""protocol":"ip6""#), "{text}");
        assert!(text.contains(r#""field":"dport""#), "{text}");
        assert!(text.contains(r#""range":[8000,8080]"#), "{text}");

        let both = FilterRule {
            remote_addresses: vec![
                AddressMatch::Prefix("10.1.0.0".parse().unwrap(), 16),
                AddressMatch::Range("fd00::1".parse().unwrap(), "fd00::9".parse().unwrap()),
            ],
            ..v4_only
        };
        assert_eq!(rule_matches(&both, Direction::Outbound).len(), 2);
    }
}
