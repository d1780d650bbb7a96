//! What the agent's tunnels added to the system, on disk (`RUN_DIR/installed.json`), so that an
//! agent that was killed (SIGKILL, OOM, a crash) removes exactly that at its next start, and
//! nothing it did not install. The TUN devices and what hangs on them go with the dead process;
//! what outlives it is a route on a physical interface (the gateway kept outside a full tunnel)
//! and DNS settings (resolv.conf, or a resolved link that a later interface could reuse).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use netio::dns::DnsBackend;
use netio::netlink::Netlink;

use crate::connection::InstallRecord;

/// The record of every tunnel's installs, kept in step with the tunnels.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    records: BTreeMap<String, InstallRecord>,
}

/// What a recovery found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub routes: usize,
    pub addresses: usize,
    pub dns: usize,
    pub firewall_tables: usize,
    pub interfaces_left: Vec<String>,
}

impl Ledger {
    /// An empty ledger at `path` (the previous one must have been recovered first).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            records: BTreeMap::new(),
        }
    }

    /// Records what the tunnel `key` has installed now (an empty record: nothing).
    pub fn set(&mut self, key: &str, record: InstallRecord) -> io::Result<()> {
        if record == InstallRecord::default() {
            self.records.remove(key);
        } else {
            self.records.insert(key.to_owned(), record);
        }
        self.save()
    }

    fn save(&self) -> io::Result<()> {
        if self.records.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let json = serde_json::to_vec_pretty(&self.records).map_err(io::Error::other)?;
        write_atomically(&self.path, &json)
    }

    /// Removes what a previous agent recorded and did not remove (it was killed), then the
    /// record itself. Routes and addresses are deleted only as recorded (a route that a user
    /// added since on the same prefix but another interface or gateway stays); DNS is undone on
    /// the recorded interfaces (resolved) or from resolv.conf's backup (fallback).
    pub async fn recover(
        path: &Path,
        netlink: &Netlink,
        dns: &DnsBackend,
    ) -> io::Result<Recovered> {
        let mut found = Recovered::default();
        let records: BTreeMap<String, InstallRecord> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: unreadable ({e}); ignoring it", path.display());
                BTreeMap::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        for (key, record) in &records {
            for route in &record.routes {
                match netlink.del_route(route).await {
                    Ok(()) => found.routes += 1,
                    Err(e) if e.is_already_gone() => {}
                    Err(e) => tracing::warn!(%key, ?route, "leftover route: {e}"),
                }
            }
            for addr in &record.addresses {
                match netlink.del_address(addr).await {
                    Ok(()) => found.addresses += 1,
                    Err(e) if e.is_already_gone() => {}
                    Err(e) => tracing::warn!(%key, ?addr, "leftover address: {e}"),
                }
            }
            if record.dns
                && let DnsBackend::Resolved(resolved) = dns
            {
                // (A link that went with its TUN device took its settings with it.)
                match resolved.revert(&record.interface) {
                    Ok(()) => found.dns += 1,
                    Err(e) => tracing::warn!(%key, "leftover DNS settings: {e}"),
                }
            }
            if let Some(table) = &record.firewall_table {
                match netio::firewall::remove(table).await {
                    Ok(()) => found.firewall_tables += 1,
                    Err(e) => tracing::warn!(%key, %table, "leftover traffic filters: {e}"),
                }
            }
            // A TUN device disappears with the process that held it; if one of ours is still
            // there, something else holds it now, and it is not ours to delete.
            if !record.interface.is_empty() && netlink.link_by_name(&record.interface).await.is_ok()
            {
                found.interfaces_left.push(record.interface.clone());
            }
        }
        if let DnsBackend::ResolvConf(file) = dns
            && netio::dns::recover_stale(file).map_err(io::Error::other)?
        {
            found.dns += 1;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(found)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    netio::fs::replace_file(path, bytes, 0o600, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use netio::netlink::Route;

    /// A ledger written before records used netio's own types still reads (addresses had
    /// no `peer` then).
    #[test]
    fn an_older_record_still_reads() {
        let old = r#"{"interface":"aovpn-dev","tun_index":7,
            "routes":[{"destination":"203.0.113.1","prefix_len":32,"oif":2,
                "gateway":"198.51.100.1","source":null,"metric":null,"table":null}],
            "addresses":[{"index":7,"local":"172.16.201.10","prefix_len":32}],
            "dns":true}"#;
        let record: InstallRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            record.routes[0].gateway,
            Some("198.51.100.1".parse().unwrap())
        );
        assert_eq!(
            record.addresses,
            vec![netio::netlink::IfAddress::new(
                7,
                "172.16.201.10".parse().unwrap(),
                32
            )]
        );
    }

    #[test]
    fn records_follow_the_tunnels_and_vanish_when_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("installed.json");
        let mut ledger = Ledger::new(path.clone());
        let record = InstallRecord {
            interface: "aovpn-dev".into(),
            tun_index: 7,
            routes: vec![Route {
                destination: "203.0.113.1".parse().unwrap(),
                prefix_len: 32,
                oif: Some(2),
                gateway: Some("198.51.100.1".parse().unwrap()),
                source: None,
                metric: None,
                table: None,
            }],
            addresses: Vec::new(),
            dns: true,
            firewall_table: Some("aovpn-filter-aovpn-dev".into()),
        };
        ledger.set("0-Device", record.clone()).unwrap();
        let saved: BTreeMap<String, InstallRecord> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved.get("0-Device"), Some(&record));
        ledger.set("0-Device", InstallRecord::default()).unwrap();
        assert!(!path.exists());
    }
}
