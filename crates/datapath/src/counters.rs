//! Data-plane counters: workers count locally per round and add to shared atomics, so packets
//! don't bounce a cache line between cores.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A snapshot of the data-plane counters (totals since start).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct DatapathCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl DatapathCounters {
            /// Every counter by its field name, with its documentation (for metrics).
            pub fn each(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),*).trim_ascii(), self.$name),)*]
            }
        }

        /// Shared totals.
        #[derive(Debug, Default)]
        pub(crate) struct SharedCounters {
            $($name: AtomicU64,)*
        }

        impl SharedCounters {
            pub(crate) fn add(&self, local: &DatapathCounters) {
                $(if local.$name != 0 {
                    self.$name.fetch_add(local.$name, Ordering::Relaxed);
                })*
            }

            pub(crate) fn snapshot(&self) -> DatapathCounters {
                DatapathCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Packets read from the TUN device.
    tun_rx_packets,
    /// Bytes read from the TUN device.
    tun_rx_bytes,
    /// TUN packets dropped: no SA routes their destination.
    no_route,
    /// TUN packets dropped: not IPv4/IPv6, or refused by the SA (see the SA's counters).
    encap_dropped,
    /// ESP packets built.
    encapsulated,
    /// UDP datagrams sent (ESP, IKE and keepalives).
    udp_tx_datagrams,
    /// UDP send errors (each may lose a whole GSO batch).
    udp_tx_errors,
    /// UDP datagrams received on port 4500.
    udp_rx_datagrams,
    /// NAT keepalives received (absorbed).
    keepalives_rx,
    /// NAT keepalives sent.
    keepalives_tx,
    /// IKE datagrams received (handed to the IKE side).
    ike_rx,
    /// Datagrams that are neither ESP, IKE nor keepalive.
    invalid_rx,
    /// ESP packets with an SPI no installed SA has.
    unknown_spi,
    /// ESP packets the SA refused (replay, ICV, padding...; reasons in the SA's counters).
    decap_failed,
    /// Inner packets decapsulated and accepted.
    decapsulated,
    /// Decapsulated packets dropped: inner source outside the peer's traffic selectors
    /// (anti-spoofing).
    spoofed,
    /// Decapsulated packets dropped: inner destination outside our traffic selectors (a client
    /// reaching for what its Child SA does not cover).
    inbound_destination_refused,
    /// TUN packets routed to an SA but outside its traffic selectors, not sent.
    outbound_refused,
    /// Packets written to the TUN device.
    tun_tx_packets,
    /// TUN write errors.
    tun_tx_errors,
    /// TUN or UDP receive errors.
    rx_errors,
    /// Events lost because the event channel was full.
    events_dropped,
    /// IKE datagrams lost because the IKE channel was full.
    ike_dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_add_up() {
        let shared = SharedCounters::default();
        let local = DatapathCounters {
            tun_rx_packets: 3,
            spoofed: 1,
            ..DatapathCounters::default()
        };
        shared.add(&local);
        shared.add(&local);
        let snap = shared.snapshot();
        assert_eq!(snap.tun_rx_packets, 6);
        assert_eq!(snap.spoofed, 2);
        assert_eq!(snap.decapsulated, 0);
    }
}
