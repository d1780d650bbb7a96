//! systemd-resolved over D-Bus (`org.freedesktop.resolve1.Manager` on the system bus): DNS
//! servers, search and routing-only domains and the default-route flag of one link, and
//! `RevertLink` to drop exactly those. resolved runs when its name has an owner on the bus.
//!
//! The calls are synchronous for their callers (DNS guards restore on drop, from any
//! context): a thread of its own holds the bus connection and its runtime, and each call waits
//! for its answer (bounded by [`CALL_TIMEOUT`]).

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use crate::dns::{DnsConfig, DnsError};

const DESTINATION: &str = "org.freedesktop.resolve1";
const PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";

/// Longest wait for the bus (resolved answers in milliseconds).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What one link should get.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkSettings {
    servers: Vec<IpAddr>,
    /// (domain, routing only)
    domains: Vec<(String, bool)>,
    default_route: Option<bool>,
}

impl LinkSettings {
    fn of(config: &DnsConfig) -> Self {
        let mut domains: Vec<(String, bool)> = config
            .search_domains
            .iter()
            .map(|d| (d.clone(), false))
            .collect();
        domains.extend(config.routing_domains.iter().map(|d| (d.clone(), true)));
        Self {
            servers: config.servers.clone(),
            domains,
            default_route: config.default_route,
        }
    }
}

enum Request {
    Apply(i32, LinkSettings, mpsc::Sender<Result<(), BusFailure>>),
    Revert(i32, mpsc::Sender<Result<(), BusFailure>>),
}

/// A call to resolved that did not go through.
#[derive(Debug, thiserror::Error)]
enum BusFailure {
    #[error("the system bus does not answer")]
    NoBus,
    #[error("{method}: {source}")]
    Call {
        method: &'static str,
        source: zbus::Error,
    },
}

/// A connection to systemd-resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Apply(..) => "Apply",
            Request::Revert(..) => "Revert",
        })
    }
}

fn bus_error(what: &str) -> impl FnOnce(String) -> DnsError + '_ {
    move |message| DnsError::Resolved {
        what: what.to_owned(),
        message,
    }
}

impl Resolved {
    /// resolved on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the standard socket): when
    /// its name has an owner there, or its varlink socket exists (at boot the bus may answer
    /// later than resolved runs; the connection is then made at the first call). `None`
    /// otherwise.
    pub fn connect() -> Option<Resolved> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (requests, incoming) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name("aovpn-resolved".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                else {
                    let _ = ready_tx.send(false);
                    return;
                };
                let mut conn = rt.block_on(owned_bus());
                let runs = conn.is_some() || crate::dns::resolved_socket_exists();
                let _ = ready_tx.send(runs);
                if !runs {
                    return;
                }
                while let Ok(request) = incoming.recv() {
                    if conn.is_none() {
                        conn = rt.block_on(bus());
                    }
                    let Some(c) = conn.as_ref() else {
                        let error = Err(BusFailure::NoBus);
                        match request {
                            Request::Apply(_, _, reply) | Request::Revert(_, reply) => {
                                let _ = reply.send(error);
                            }
                        }
                        continue;
                    };
                    let result = match &request {
                        Request::Apply(index, settings, _) => {
                            rt.block_on(apply(c, *index, settings))
                        }
                        Request::Revert(index, _) => rt.block_on(call(c, "RevertLink", &(*index,))),
                    };
                    if result.is_err() {
                        // The bus or resolved may have restarted: connect afresh next time.
                        conn = None;
                    }
                    match request {
                        Request::Apply(_, _, reply) | Request::Revert(_, reply) => {
                            let _ = reply.send(result);
                        }
                    }
                }
            });
        if spawned.is_err() {
            return None;
        }
        match ready_rx.recv_timeout(CALL_TIMEOUT) {
            Ok(true) => Some(Resolved { requests }),
            _ => None,
        }
    }

    fn ask(
        &self,
        what: &str,
        make: impl FnOnce(mpsc::Sender<Result<(), BusFailure>>) -> Request,
    ) -> Result<(), DnsError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| bus_error(what)("the bus connection is gone".into()))?;
        match rx.recv_timeout(CALL_TIMEOUT) {
            Ok(result) => result.map_err(|e| bus_error(what)(e.to_string())),
            Err(_) => Err(bus_error(what)("no answer from systemd-resolved".into())),
        }
    }

    /// Sets `config` on `ifname` (servers, then domains, then the default-route flag).
    pub fn apply(&self, ifname: &str, config: &DnsConfig) -> Result<(), DnsError> {
        let index = link_index(ifname)?;
        let settings = LinkSettings::of(config);
        self.ask(&format!("SetLinkDNS/SetLinkDomains on {ifname}"), |tx| {
            Request::Apply(index, settings, tx)
        })
    }

    /// Drops everything set on `ifname` (nothing to do when the link is gone: resolved forgot
    /// it with the link).
    pub fn revert(&self, ifname: &str) -> Result<(), DnsError> {
        let Ok(index) = link_index(ifname) else {
            return Ok(());
        };
        self.ask(&format!("RevertLink on {ifname}"), |tx| {
            Request::Revert(index, tx)
        })
    }
}

fn link_index(ifname: &str) -> Result<i32, DnsError> {
    nix::net::if_::if_nametoindex(ifname)
        .ok()
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| bus_error("interface")(format!("no interface {ifname}")))
}

/// The system bus; a bus that stops answering fails each call after the timeout instead of
/// hanging.
async fn bus() -> Option<zbus::Connection> {
    zbus::connection::Builder::system()
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
        .ok()
}

/// The system bus, if resolved owns its name there.
async fn owned_bus() -> Option<zbus::Connection> {
    let conn = bus().await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
    let name = zbus::names::BusName::try_from(DESTINATION).ok()?;
    dbus.name_has_owner(name).await.ok()?.then_some(conn)
}

async fn call<B>(conn: &zbus::Connection, method: &'static str, body: &B) -> Result<(), BusFailure>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body)
        .await
        .map(|_| ())
        .map_err(|source| BusFailure::Call { method, source })
}

async fn apply(conn: &zbus::Connection, index: i32, s: &LinkSettings) -> Result<(), BusFailure> {
    let servers: Vec<(i32, Vec<u8>)> = s
        .servers
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
        })
        .collect();
    let result = async {
        if !servers.is_empty() {
            call(conn, "SetLinkDNS", &(index, servers)).await?;
        }
        call(conn, "SetLinkDomains", &(index, s.domains.clone())).await?;
        if let Some(default) = s.default_route {
            call(conn, "SetLinkDefaultRoute", &(index, default)).await?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        // Don't leave half a configuration on the link.
        let _ = call(conn, "RevertLink", &(index,)).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_domains_then_routing_domains() {
        let config = DnsConfig {
            servers: vec!["10.1.0.53".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))],
            search_domains: vec!["corp.example".into()],
            routing_domains: vec!["lab.example".into(), ".".into()],
            default_route: Some(false),
        };
        let s = LinkSettings::of(&config);
        assert_eq!(
            s.domains,
            [
                ("corp.example".to_owned(), false),
                ("lab.example".to_owned(), true),
                (".".to_owned(), true)
            ]
        );
        assert_eq!(s.default_route, Some(false));
    }
}
