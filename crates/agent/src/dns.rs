//! DNS settings of every tunnel on the machine, in one place: with systemd-resolved each tunnel's
//! servers and suffixes go on its own link (independent by construction); without it, the one
//! resolv.conf is composed from all tunnels that are up, so a device tunnel and a user tunnel
//! never overwrite each other, and the original file comes back when the last one goes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use netio::dns::{DnsBackend, DnsConfig, DnsError, DnsGuard};

use crate::split_dns::{STUB_ADDRESS, SplitRule, SplitRules};

/// The machine's DNS, shared by its tunnels.
#[derive(Debug)]
pub struct SharedDns {
    backend: DnsBackend,
    state: Mutex<State>,
    /// The split DNS stub's rules, when the stub runs (resolv.conf backend only).
    stub: Option<Arc<RwLock<SplitRules>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Tunnel key -> (interface, settings, split DNS rules), in key order (device tunnel
    /// first).
    entries: BTreeMap<String, (String, DnsConfig, Vec<SplitRule>)>,
    /// resolved: one guard per tunnel.
    links: HashMap<String, DnsGuard>,
    /// resolv.conf: the guard of the composed file.
    file: Option<DnsGuard>,
    /// Persistent DomainNameInformation rules of every loaded profile: in force whether or
    /// not their tunnels are up.
    persistent: Vec<SplitRule>,
}

impl SharedDns {
    /// systemd-resolved when it runs, otherwise the resolv.conf at `resolv_conf`.
    pub fn new(resolv_conf: impl Into<PathBuf>) -> Self {
        Self::with_backend(DnsBackend::detect(resolv_conf))
    }

    /// A given backend.
    pub fn with_backend(backend: DnsBackend) -> Self {
        Self {
            backend,
            state: Mutex::new(State::default()),
            stub: None,
        }
    }

    /// Routes split DNS through the stub serving `rules` (see [`crate::split_dns`]).
    pub fn with_split_stub(mut self, rules: Arc<RwLock<SplitRules>>) -> Self {
        self.stub = Some(rules);
        self
    }

    /// Whether a profile's DomainNameInformation can be applied here.
    pub fn split_dns_available(&self) -> bool {
        matches!(self.backend, DnsBackend::Resolved(_)) || self.stub.is_some()
    }

    /// Where settings go.
    pub fn backend(&self) -> &DnsBackend {
        &self.backend
    }

    /// Sets (or replaces) the settings of the tunnel `key` on interface `ifname`.
    pub fn apply(&self, key: &str, ifname: &str, config: &DnsConfig) -> Result<(), DnsError> {
        self.apply_split(key, ifname, config, &[])
    }

    /// [`Self::apply`] with split DNS rules: names under each rule's namespace go to its
    /// servers (a rule without servers: the tunnel's). With systemd-resolved the namespaces
    /// become routing domains of the tunnel's link, served by its servers and the rules'.
    pub fn apply_split(
        &self,
        key: &str,
        ifname: &str,
        config: &DnsConfig,
        split: &[SplitRule],
    ) -> Result<(), DnsError> {
        let split: Vec<SplitRule> = split
            .iter()
            .map(|r| SplitRule {
                namespace: r.namespace.clone(),
                servers: if r.servers.is_empty() {
                    config.servers.clone()
                } else {
                    r.servers.clone()
                },
            })
            .collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &self.backend {
            DnsBackend::Resolved(_) => {
                if let Some(old) = state.links.remove(key) {
                    old.restore()?;
                }
                let mut config = config.clone();
                for rule in &split {
                    push_unique(&mut config.servers, &rule.servers);
                    let domain = rule.namespace.trim_start_matches('.');
                    let domain = if domain.is_empty() { "." } else { domain };
                    push_unique(&mut config.routing_domains, &[domain.to_owned()]);
                }
                let guard = self.backend.apply(ifname, &config)?;
                state.links.insert(key.to_owned(), guard);
                Ok(())
            }
            DnsBackend::ResolvConf(_) => {
                state
                    .entries
                    .insert(key.to_owned(), (ifname.to_owned(), config.clone(), split));
                self.rewrite(&mut state)
            }
        }
    }

    /// Sets the Persistent DomainNameInformation rules (NRPT rules Windows keeps while the
    /// tunnel is down): names under them go to their servers only, never to the network's,
    /// tunnel up or not. Needs the split DNS stub (systemd-resolved has no per-name servers
    /// without a link); returns false when they cannot be applied.
    pub fn set_persistent(&self, rules: Vec<SplitRule>) -> Result<bool, DnsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.persistent == rules {
            return Ok(self.stub.is_some() || rules.is_empty());
        }
        let previous = std::mem::replace(&mut state.persistent, rules);
        if self.stub.is_none() {
            return Ok(state.persistent.is_empty());
        }
        if let Err(e) = self.rewrite(&mut state) {
            // Not in force: the next call tries again rather than finding it done.
            state.persistent = previous;
            return Err(e);
        }
        Ok(true)
    }

    /// Composes resolv.conf again (the stub's rules too) when something is in force: after a
    /// network change a DHCP client may have written its own file, whose servers become the
    /// default for names no rule covers.
    pub fn refresh(&self) -> Result<(), DnsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(self.backend, DnsBackend::ResolvConf(_)) || state.file.is_none() {
            return Ok(());
        }
        self.rewrite(&mut state)
    }

    /// Removes the settings of the tunnel `key` (nothing if it had none).
    pub fn remove(&self, key: &str) -> Result<(), DnsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &self.backend {
            DnsBackend::Resolved(_) => match state.links.remove(key) {
                Some(guard) => guard.restore(),
                None => Ok(()),
            },
            DnsBackend::ResolvConf(_) => {
                if state.entries.remove(key).is_none() {
                    return Ok(());
                }
                self.rewrite(&mut state)
            }
        }
    }

    /// The search domains of the network itself, without anything a tunnel added: from the
    /// original resolv.conf (its saved copy while a composed file is in place). Used to tell a
    /// trusted network (TrustedNetworkDetection) when systemd-resolved does not run.
    pub fn network_search_domains(&self) -> Vec<String> {
        let DnsBackend::ResolvConf(path) = &self.backend else {
            return Vec::new();
        };
        // While our composed file is in place the network's own is its saved copy; a file
        // someone else wrote since (a DHCP client on a new network) is the network's.
        let ours = std::fs::read(path)
            .is_ok_and(|b| b.starts_with(netio::dns::GENERATED_MARKER.as_bytes()));
        let original = if ours {
            netio::dns::backup_path(path)
        } else {
            path.clone()
        };
        search_domains(&original)
    }

    /// Writes the composition of every entry, or restores the original without entries.
    fn rewrite(&self, state: &mut State) -> Result<(), DnsError> {
        // Restoring first makes the next apply capture the real original again.
        if let Some(old) = state.file.take() {
            old.restore()?;
        }
        let persistent = if self.stub.is_some() {
            state.persistent.clone()
        } else {
            Vec::new()
        };
        if state.entries.is_empty() && persistent.is_empty() {
            if let Some(stub) = &self.stub {
                *stub.write().unwrap_or_else(PoisonError::into_inner) = SplitRules::default();
            }
            return Ok(());
        }
        let mut composed = DnsConfig::default();
        let mut names = Vec::new();
        let mut split = Vec::new();
        for (ifname, config, rules) in state.entries.values() {
            names.push(ifname.as_str());
            push_unique(&mut composed.servers, &config.servers);
            push_unique(&mut composed.search_domains, &config.search_domains);
            push_unique(&mut split, rules);
            if self.stub.is_some() {
                // With the stub, a tunnel's routing domains are rules to its own servers,
                // not search suffixes for every short name.
                for d in &config.routing_domains {
                    let rule = SplitRule {
                        namespace: format!(".{d}"),
                        servers: config.servers.clone(),
                    };
                    push_unique(&mut split, &[rule]);
                }
            } else {
                push_unique(&mut composed.routing_domains, &config.routing_domains);
            }
        }
        // After the tunnels' own rules: an up tunnel's rule for the same namespace wins.
        push_unique(&mut split, &persistent);
        if names.is_empty() {
            names.push("persistent DomainNameInformation");
        }
        if composed.servers.is_empty()
            && let DnsBackend::ResolvConf(path) = &self.backend
        {
            // Only suffixes from the tunnels: names still go to the network's own servers
            // (the original file is back in place at this point).
            composed.servers = name_servers(path);
        }
        if let Some(stub) = &self.stub {
            let mut rules = stub.write().unwrap_or_else(PoisonError::into_inner);
            if split.is_empty() {
                *rules = SplitRules::default();
            } else {
                // Everything the rules do not name goes where it would have gone.
                *rules = SplitRules {
                    rules: split,
                    default: std::mem::take(&mut composed.servers),
                };
                composed.servers = vec![IpAddr::V4(STUB_ADDRESS)];
            }
        }
        state.file = Some(self.backend.apply(&names.join(", "), &composed)?);
        Ok(())
    }
}

impl Drop for SharedDns {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        state.entries.clear();
        for (_, guard) in state.links.drain() {
            if let Err(e) = guard.restore() {
                tracing::warn!("restoring DNS: {e}");
            }
        }
        if let Some(guard) = state.file.take()
            && let Err(e) = guard.restore()
        {
            tracing::warn!("restoring DNS: {e}");
        }
    }
}

fn push_unique<T: Clone + PartialEq>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(x.clone());
        }
    }
}

/// The `search` and `domain` entries of a resolv.conf-format file (lower case, no trailing
/// dot); nothing if it cannot be read.
pub fn search_domains(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if matches!(words.next(), Some("search" | "domain")) {
            for w in words {
                let d = w.trim_end_matches('.').to_ascii_lowercase();
                if !d.is_empty() && !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    out
}

/// The name servers of a resolv.conf-format file.
pub fn name_servers(path: &Path) -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next().and_then(|a| a.parse().ok()))
                .flatten()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(server: &str, suffix: &str) -> DnsConfig {
        DnsConfig {
            servers: vec![server.parse().unwrap()],
            search_domains: vec![suffix.to_owned()],
            routing_domains: Vec::new(),
            default_route: None,
        }
    }

    #[test]
    fn two_tunnels_share_resolv_conf_and_the_original_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\nsearch home.example\n").unwrap();
        let dns = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()));

        dns.apply(
            "0-device",
            "aovpn-dev",
            &config("10.1.0.53", "corp.example"),
        )
        .unwrap();
        dns.apply(
            "1-user",
            "aovpn-u0",
            &config("10.1.0.54", "apps.corp.example"),
        )
        .unwrap();
        assert_eq!(
            name_servers(&path),
            vec![
                "10.1.0.53".parse::<IpAddr>().unwrap(),
                "10.1.0.54".parse().unwrap()
            ]
        );
        assert_eq!(
            search_domains(&path),
            vec!["corp.example", "apps.corp.example"]
        );
        // The network's own suffix is still known while the composed file is in place.
        assert_eq!(dns.network_search_domains(), vec!["home.example"]);

        // One tunnel goes: the other keeps its settings.
        dns.remove("0-device").unwrap();
        assert_eq!(
            name_servers(&path),
            vec!["10.1.0.54".parse::<IpAddr>().unwrap()]
        );
        dns.remove("1-user").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\nsearch home.example\n"
        );
        assert!(!netio::dns::backup_path(&path).exists());
    }

    /// A profile's DnsSuffix with a gateway that pushes no server: the suffix is searched,
    /// and names still reach the network's own servers.
    #[test]
    fn suffixes_without_servers_keep_the_networks_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\nsearch home.example\n").unwrap();
        let dns = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()));
        let suffix_only = DnsConfig {
            servers: Vec::new(),
            search_domains: vec!["corp.example".into()],
            routing_domains: Vec::new(),
            default_route: None,
        };
        dns.apply("0-device", "aovpn-dev", &suffix_only).unwrap();
        assert_eq!(
            name_servers(&path),
            vec!["192.0.2.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(search_domains(&path), vec!["corp.example"]);
        // A tunnel with servers replaces them; when it goes, the network's are back.
        dns.apply(
            "1-user",
            "aovpn-u0",
            &config("10.1.0.54", "apps.corp.example"),
        )
        .unwrap();
        assert_eq!(
            name_servers(&path),
            vec!["10.1.0.54".parse::<IpAddr>().unwrap()]
        );
        dns.remove("1-user").unwrap();
        assert_eq!(
            name_servers(&path),
            vec!["192.0.2.53".parse::<IpAddr>().unwrap()]
        );
        dns.remove("0-device").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\nsearch home.example\n"
        );
    }

    /// With the split DNS stub, resolv.conf names the stub; the profile's rules and the
    /// gateway's internal domains become its rules (not search suffixes), and everything else
    /// goes to the servers the machine would have used.
    #[test]
    fn with_the_stub_rules_and_internal_domains_go_to_their_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\n").unwrap();
        let rules = Arc::new(RwLock::new(SplitRules::default()));
        let dns = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()))
            .with_split_stub(rules.clone());
        let config = DnsConfig {
            servers: Vec::new(),
            search_domains: vec!["corp.example".into()],
            routing_domains: vec!["apps.example".into()],
            default_route: Some(false),
        };
        let nrpt = [SplitRule {
            namespace: ".corp.example".into(),
            servers: vec!["10.1.0.53".parse().unwrap()],
        }];
        dns.apply_split("0-device", "aovpn-dev", &config, &nrpt)
            .unwrap();
        assert_eq!(
            name_servers(&path),
            vec![IpAddr::V4(crate::split_dns::STUB_ADDRESS)]
        );
        assert_eq!(search_domains(&path), vec!["corp.example"]);
        {
            let r = rules.read().unwrap();
            assert_eq!(r.default, vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
            assert_eq!(
                r.servers_for("x.corp.example"),
                ["10.1.0.53".parse::<IpAddr>().unwrap()]
            );
            // The gateway's domain, with a tunnel that pushed no servers: nowhere to go
            // rather than the public servers.
            assert!(r.servers_for("x.apps.example").is_empty());
        }
        dns.remove("0-device").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        assert_eq!(*rules.read().unwrap(), SplitRules::default());
    }

    #[test]
    fn persistent_rules_hold_while_no_tunnel_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\n").unwrap();
        let rules = Arc::new(RwLock::new(SplitRules::default()));
        let dns = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()))
            .with_split_stub(rules.clone());
        let pinned = SplitRule {
            namespace: ".corp.example".into(),
            servers: vec!["10.1.0.53".parse().unwrap()],
        };
        let sealed = SplitRule {
            namespace: ".secret.example".into(),
            servers: Vec::new(),
        };
        assert!(dns.set_persistent(vec![pinned, sealed]).unwrap());
        assert_eq!(
            name_servers(&path),
            vec![IpAddr::V4(crate::split_dns::STUB_ADDRESS)]
        );
        {
            let r = rules.read().unwrap();
            assert_eq!(
                r.servers_for("a.corp.example"),
                ["10.1.0.53".parse::<IpAddr>().unwrap()]
            );
            assert!(
                r.servers_for("a.secret.example").is_empty(),
                "never the network's"
            );
            assert_eq!(
                r.servers_for("www.example"),
                ["192.0.2.53".parse::<IpAddr>().unwrap()]
            );
        }
        // A tunnel up with its own rule for the namespace: its servers win while it is up.
        let config = DnsConfig {
            servers: vec!["10.9.0.53".parse().unwrap()],
            ..DnsConfig::default()
        };
        let live = [SplitRule {
            namespace: ".corp.example".into(),
            servers: vec!["10.9.0.53".parse().unwrap()],
        }];
        dns.apply_split("0-device", "aovpn-dev", &config, &live)
            .unwrap();
        assert_eq!(
            rules.read().unwrap().servers_for("a.corp.example"),
            ["10.9.0.53".parse::<IpAddr>().unwrap()]
        );
        dns.remove("0-device").unwrap();
        assert_eq!(
            rules.read().unwrap().servers_for("a.corp.example"),
            ["10.1.0.53".parse::<IpAddr>().unwrap()],
            "the tunnel went, the persistent rule stays"
        );
        assert!(dns.set_persistent(Vec::new()).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        // Without the stub (systemd-resolved) they cannot be kept, and the caller is told.
        let plain = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()));
        assert!(
            !plain
                .set_persistent(vec![SplitRule {
                    namespace: ".corp.example".into(),
                    servers: Vec::new(),
                }])
                .unwrap()
        );
    }

    #[test]
    fn dropping_restores_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\n").unwrap();
        {
            let dns = SharedDns::with_backend(DnsBackend::ResolvConf(path.clone()));
            dns.apply(
                "0-device",
                "aovpn-dev",
                &config("10.1.0.53", "corp.example"),
            )
            .unwrap();
            assert_ne!(
                std::fs::read_to_string(&path).unwrap(),
                "nameserver 192.0.2.53\n"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 192.0.2.53\n"
        );
    }

    #[test]
    fn search_lines_are_read_case_insensitively_without_trailing_dots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        std::fs::write(
            &path,
            "# c\ndomain Corp.Example.\nsearch a.example b.example\n",
        )
        .unwrap();
        assert_eq!(
            search_domains(&path),
            vec!["corp.example", "a.example", "b.example"]
        );
        assert!(search_domains(&dir.path().join("missing")).is_empty());
    }
}
