//! `[[groups]]`: policy groups, each with the certificates it takes in and what their
//! clients get instead of the defaults.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use pki::Thumbprint;
use serde::Deserialize;

use super::clients::Clients;

/// A policy group, as Azure's "user groups and address pools": clients whose certificate
/// matches get its address pool, routes and DNS servers instead of the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: GroupMatch,
    pub pool_v4: Ipv4Net,
    #[serde(default)]
    pub pool_v6: Option<Ipv6Net>,
    /// The networks its clients reach (their only traffic selectors and pushed routes).
    pub routes: Vec<IpNet>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub dns_domains: Vec<String>,
}

/// What a client certificate must carry to be in a group (every criterion given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMatch {
    /// The SHA-1 thumbprint of a CA on the client's validated path (the intermediate that
    /// issued it, or the root), as `aovpn pki thumbprint` prints it: a CA by its key and
    /// signature, not by a name another CA could also carry.
    #[serde(default)]
    pub issuer_thumbprint: Option<String>,
    /// A subject O value (any trusted CA can write any O: combine with issuer_thumbprint
    /// when several CAs are trusted).
    #[serde(default)]
    pub subject_o: Option<String>,
    /// A subject OU value (the same caution).
    #[serde(default)]
    pub subject_ou: Option<String>,
    /// A domain a dNSName ends in (machine certificates).
    #[serde(default)]
    pub dns_suffix: Option<String>,
    /// A domain a UPN or e-mail name ends in (user certificates; the EAP identity of an
    /// EAP-TLS user is the same name).
    #[serde(default)]
    pub upn_suffix: Option<String>,
}

impl GroupMatch {
    /// Whether the client certificate `leaf`, validated through the CAs `path` (their
    /// thumbprints), satisfies every criterion.
    pub fn matches(&self, leaf: &pki::Certificate, path: &[Thumbprint]) -> bool {
        let eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        let under = |name: &str, domain: &str| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let domain = domain
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            name == domain || name.ends_with(&format!(".{domain}"))
        };
        let domain_of = |user: &str| user.rsplit_once('@').map(|(_, d)| d.to_owned());
        self.issuer_thumbprint
            .as_ref()
            .is_none_or(|t| t.parse::<Thumbprint>().is_ok_and(|t| path.contains(&t)))
            && self
                .subject_o
                .as_ref()
                .is_none_or(|o| leaf.organizations().iter().any(|v| eq(v, o)))
            && self
                .subject_ou
                .as_ref()
                .is_none_or(|o| leaf.organizational_units().iter().any(|v| eq(v, o)))
            && self
                .dns_suffix
                .as_ref()
                .is_none_or(|d| leaf.dns_names().iter().any(|n| under(n, d)))
            && self.upn_suffix.as_ref().is_none_or(|d| {
                leaf.upns()
                    .iter()
                    .chain(leaf.rfc822_names())
                    .filter_map(|u| domain_of(u))
                    .any(|n| under(&n, d))
            })
    }

    fn is_empty(&self) -> bool {
        *self == GroupMatch::default()
    }
}

/// The groups in order, each against the ones before it and the default pools in `clients`
/// (no pool may share an address with another).
pub(super) fn validate_groups(
    groups: &[Group],
    clients: &Clients,
) -> Result<(), (&'static str, String)> {
    let mut pools: Vec<(String, IpNet)> =
        vec![("clients.pool_v4".into(), IpNet::V4(clients.pool_v4))];
    pools.extend(
        clients
            .pool_v6
            .map(|p| ("clients.pool_v6".to_owned(), IpNet::V6(p))),
    );
    let mut names = BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        let at = |what: &str| format!("groups[{i}] ({}): {what}", g.name);
        // Names also name the lease files: two that read the same there are one.
        if g.name.trim().is_empty() || !names.insert(crate::daemon::file_safe(&g.name)) {
            return Err(("groups.name", at("every group needs a name of its own")));
        }
        if g.name.eq_ignore_ascii_case("default") {
            return Err((
                "groups.name",
                at("\"default\" names the clients no group matches"),
            ));
        }
        if g.matches.is_empty() {
            return Err((
                "groups.match",
                at(
                    "matches nothing: give issuer_thumbprint, subject_o, subject_ou, dns_suffix or upn_suffix",
                ),
            ));
        }
        if let Some(t) = &g.matches.issuer_thumbprint
            && t.parse::<Thumbprint>().is_err()
        {
            return Err((
                "groups.match",
                at(&format!(
                    "issuer_thumbprint {t:?} is not a SHA-1 thumbprint (40 hex digits)"
                )),
            ));
        }
        if g.routes.is_empty() {
            return Err(("groups.routes", at("its clients would reach nothing")));
        }
        if g.pool_v4.prefix_len() > 30 || g.pool_v4 != g.pool_v4.trunc() {
            return Err((
                "groups.pool_v4",
                at(&format!("{} must be a network of /30 or larger", g.pool_v4)),
            ));
        }
        if !g.dns_domains.is_empty() && g.dns.is_empty() {
            return Err((
                "groups.dns_domains",
                at("internal domains need DNS servers to resolve them"),
            ));
        }
        let own = std::iter::once(IpNet::V4(g.pool_v4)).chain(g.pool_v6.map(IpNet::V6));
        for net in own {
            if let Some((other, theirs)) = pools
                .iter()
                .find(|(_, p)| p.contains(&net) || net.contains(p))
            {
                return Err((
                    "groups.pool_v4",
                    at(&format!(
                        "{net} overlaps {other} ({theirs}): pools never share addresses"
                    )),
                ));
            }
            pools.push((format!("groups[{i}] ({})", g.name), net));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::tests::{GOOD, field_of, load};

    /// Groups: pools that overlap name both; a group that matches nothing, reaches nothing
    /// or shares a name is refused.
    #[test]
    fn groups_are_checked() {
        let group = |pool: &str, m: &str| {
            format!(
                "{GOOD}[[groups]]\nname = \"eng\"\nmatch = {{ {m} }}\npool_v4 = \"{pool}\"\nroutes = [\"10.1.2.0/24\"]\n"
            )
        };
        let c = load(&group(
            "172.16.202.0/24",
            "upn_suffix = \"eng.corp.example\"",
        ))
        .unwrap();
        assert_eq!(c.groups.len(), 1);
        assert_eq!(
            c.groups[0].matches.upn_suffix.as_deref(),
            Some("eng.corp.example")
        );
        let err = load(&group(
            "172.16.201.128/25",
            "upn_suffix = \"eng.corp.example\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("groups.pool_v4")
                && err.contains("172.16.201.128/25")
                && err.contains("clients.pool_v4 (172.16.201.0/24)"),
            "{err}"
        );
        assert_eq!(field_of(&group("172.16.202.0/24", "")), "groups.match");
        let twice = format!(
            "{}[[groups]]\nname = \"ENG\"\nmatch = {{ dns_suffix = \"x\" }}\npool_v4 = \"172.16.203.0/24\"\nroutes = [\"10.1.3.0/24\"]\n",
            group("172.16.202.0/24", "dns_suffix = \"y\"")
        );
        assert_eq!(field_of(&twice), "groups.name");
        assert_eq!(
            field_of(&group("172.16.202.0/24", "issuer_thumbprint = \"CN=Eng\"")),
            "groups.match"
        );
        let named_default = group("172.16.202.0/24", "dns_suffix = \"y\"")
            .replace("name = \"eng\"", "name = \"Default\"");
        assert_eq!(field_of(&named_default), "groups.name");
        let old = load(GOOD).unwrap();
        let new = load(&group("172.16.202.0/24", "dns_suffix = \"y\"")).unwrap();
        assert!(
            old.needs_restart_for(&new)
                .iter()
                .any(|r| r.starts_with("groups"))
        );
    }

    /// Each criterion of a group's match against real certificates.
    #[test]
    fn group_matches_by_issuer_names_and_domains() {
        use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};
        let v = Validity::days_from(std::time::SystemTime::now(), 30);
        let root = CertificateAuthority::new_root("Corp Root", KeyAlgorithm::P256, v).unwrap();
        let eng_ca = root
            .issue_intermediate("Engineering CA", KeyAlgorithm::P256, v)
            .unwrap();
        let carol = eng_ca
            .issue(
                CertKind::User,
                "carol@eng.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        let pc = root
            .issue(
                CertKind::Machine,
                "pc7.lab.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        let m = |text: &str| -> GroupMatch { toml::from_str(text).unwrap() };
        // The CAs each was validated through (what the validator hands over).
        let carol_path = [eng_ca.cert().thumbprint(), root.cert().thumbprint()];
        let pc_path = [root.cert().thumbprint()];
        let by_ca = m(&format!(
            "issuer_thumbprint = \"{}\"",
            eng_ca.cert().thumbprint()
        ));
        assert!(by_ca.matches(&carol, &carol_path));
        assert!(!by_ca.matches(&pc, &pc_path));
        // A CA with the same name but another key is not that CA.
        let twin = CertificateAuthority::new_root("Engineering CA", KeyAlgorithm::P256, v).unwrap();
        let impostor = twin
            .issue(
                CertKind::User,
                "mallory@eng.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        assert!(!by_ca.matches(&impostor, &[twin.cert().thumbprint()]));
        assert!(m("upn_suffix = \"corp.example\"").matches(&carol, &carol_path));
        assert!(m("upn_suffix = \"eng.corp.example\"").matches(&carol, &carol_path));
        assert!(!m("upn_suffix = \"ng.corp.example\"").matches(&carol, &carol_path));
        assert!(!m("upn_suffix = \"eng.corp.example\"").matches(&pc, &pc_path));
        assert!(m("dns_suffix = \"lab.corp.example\"").matches(&pc, &pc_path));
        assert!(!m("dns_suffix = \"lab.corp.example\"").matches(&carol, &carol_path));
        // Every criterion must hold.
        let both = format!(
            "dns_suffix = \"lab.corp.example\"\nissuer_thumbprint = \"{}\"",
            eng_ca.cert().thumbprint()
        );
        assert!(!m(&both).matches(&pc, &pc_path));
        assert!(!m("subject_ou = \"Engineering\"").matches(&carol, &carol_path));
    }
}
