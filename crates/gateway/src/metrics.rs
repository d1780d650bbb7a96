//! Prometheus metrics (text exposition) on a configured local address, off by default:
//! tunnels by group, setups and failures by reason, the data plane's totals (bytes, packets,
//! drops by cause), pool usage per group, half-open SAs and whether COOKIEs are demanded.
//!
//! The values live with the gateway's loop, which owns the sessions; a scrape reaches it
//! through [`crate::http`]'s listener, so nothing is shared or locked.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Handshake durations told apart, in seconds (a LAN handshake takes milliseconds; EAP-TLS
/// and lossy paths take longer).
const HANDSHAKE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabel {
    counter: String,
}

/// What a scrape shows besides the counters the loop keeps.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Established tunnels per group (every configured group, 0 included).
    pub tunnels: Vec<(String, i64)>,
    /// (group, addresses in its pool, leased to identities).
    pub pools: Vec<(String, i64, i64)>,
    pub half_open: i64,
    pub cookie_threshold: i64,
    /// COOKIEs sent since start (the endpoint's count).
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests redirected to another gateway since start.
    pub redirected: u64,
    /// The data plane's totals since start.
    pub datapath: datapath::DatapathCounters,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tunnels: Family<GroupLabel, Gauge>,
    setups: Counter,
    handshake: Histogram,
    failures: Family<ReasonLabel, Counter>,
    datapath: Family<CounterLabel, Counter>,
    pool_size: Family<GroupLabel, Gauge>,
    pool_leased: Family<GroupLabel, Gauge>,
    half_open: Gauge,
    cookie_mode: Gauge,
    cookies_sent: Counter,
    redirected: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("aovpn_gateway");
        let m = Metrics {
            registry: Registry::default(),
            tunnels: Family::default(),
            setups: Counter::default(),
            handshake: Histogram::new(HANDSHAKE_BUCKETS),
            failures: Family::default(),
            datapath: Family::default(),
            pool_size: Family::default(),
            pool_leased: Family::default(),
            half_open: Gauge::default(),
            cookie_mode: Gauge::default(),
            cookies_sent: Counter::default(),
            redirected: Counter::default(),
        };
        registry.register(
            "tunnels",
            "Established client tunnels (IKE SAs), by policy group",
            m.tunnels.clone(),
        );
        registry.register(
            "ike_setups",
            "Client IKE SAs established since start",
            m.setups.clone(),
        );
        registry.register(
            "ike_handshake_seconds",
            "From a client's first IKE_SA_INIT to its IKE SA established (COOKIE and INVALID_KE round trips and EAP included)",
            m.handshake.clone(),
        );
        registry.register(
            "ike_failures",
            "IKE SAs that failed before they were established, by reason",
            m.failures.clone(),
        );
        registry.register(
            "datapath",
            "Data plane totals since start (packets and bytes each way, drops by cause), by counter",
            m.datapath.clone(),
        );
        registry.register(
            "pool_addresses",
            "Client addresses in each group's IPv4 pool",
            m.pool_size.clone(),
        );
        registry.register(
            "pool_leased",
            "Addresses bound to an identity (sticky leases), by group",
            m.pool_leased.clone(),
        );
        registry.register(
            "half_open_sas",
            "IKE SAs not yet authenticated",
            m.half_open.clone(),
        );
        registry.register(
            "cookie_mode",
            "1 while every new initiator must echo a COOKIE (half-open SAs at the threshold)",
            m.cookie_mode.clone(),
        );
        registry.register(
            "cookies_sent",
            "COOKIE demands sent since start",
            m.cookies_sent.clone(),
        );
        registry.register(
            "redirected",
            "new clients sent to another gateway (RFC 5685 REDIRECT) since start",
            m.redirected.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A client's IKE SA came up after a handshake of `took`.
    pub fn setup(&self, took: std::time::Duration) {
        self.setups.inc();
        self.handshake.observe(took.as_secs_f64());
    }

    /// An IKE SA failed before it was established.
    pub fn failure(&self, reason: &ikev2::FailureReason) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.code().to_owned(),
            })
            .inc();
    }

    /// The exposition text with `now` folded in.
    pub fn render(&self, now: &Snapshot) -> String {
        for (group, n) in &now.tunnels {
            self.tunnels
                .get_or_create(&GroupLabel {
                    group: group.clone(),
                })
                .set(*n);
        }
        for (group, size, leased) in &now.pools {
            let label = GroupLabel {
                group: group.clone(),
            };
            self.pool_size.get_or_create(&label).set(*size);
            self.pool_leased.get_or_create(&label).set(*leased);
        }
        self.half_open.set(now.half_open);
        self.cookie_mode
            .set(i64::from(now.half_open >= now.cookie_threshold));
        raise(&self.cookies_sent, now.cookies_sent);
        raise(&self.redirected, now.redirected);
        for (name, _, value) in now.datapath.each() {
            raise(
                &self.datapath.get_or_create(&CounterLabel {
                    counter: name.to_owned(),
                }),
                value,
            );
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Brings a counter up to `total` (a total kept elsewhere that only grows).
fn raise(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The answer to a request on the metrics address: `GET /metrics` only.
pub fn answer(
    request: &crate::http::Request,
    render: impl FnOnce() -> String,
) -> crate::http::Response {
    use crate::http::Response;
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/metrics") => Response::new(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        ),
        ("GET", _) => Response::text("404 Not Found", "only /metrics here\n"),
        _ => Response::text("405 Method Not Allowed", "GET /metrics\n"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_text_carries_every_family_and_counters_only_grow() {
        let m = Metrics::new();
        m.setup(std::time::Duration::from_millis(30));
        m.failure(&ikev2::FailureReason::Timeout);
        let mut snap = Snapshot {
            tunnels: vec![("default".into(), 2), ("eng".into(), 1)],
            pools: vec![("default".into(), 254, 3)],
            half_open: 1,
            cookie_threshold: 10,
            cookies_sent: 4,
            redirected: 2,
            ..Snapshot::default()
        };
        snap.datapath.tun_rx_bytes = 1000;
        let text = m.render(&snap);
        for line in [
            "aovpn_gateway_tunnels{group=\"eng\"} 1",
            "aovpn_gateway_ike_setups_total 1",
            "aovpn_gateway_ike_handshake_seconds_bucket{le=\"0.05\"} 1",
            "aovpn_gateway_ike_handshake_seconds_bucket{le=\"0.025\"} 0",
            "aovpn_gateway_ike_failures_total{reason=\"timeout\"} 1",
            "aovpn_gateway_datapath_total{counter=\"tun_rx_bytes\"} 1000",
            "aovpn_gateway_pool_leased{group=\"default\"} 3",
            "aovpn_gateway_cookie_mode 0",
            "aovpn_gateway_cookies_sent_total 4",
            "aovpn_gateway_redirected_total 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // A total reported lower (it cannot be) does not make a counter go down.
        snap.datapath.tun_rx_bytes = 10;
        snap.half_open = 10;
        let text = m.render(&snap);
        assert!(text.contains("aovpn_gateway_datapath_total{counter=\"tun_rx_bytes\"} 1000"));
        assert!(text.contains("aovpn_gateway_cookie_mode 1"));
    }
}
