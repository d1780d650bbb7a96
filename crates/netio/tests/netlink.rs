//! rtnetlink programming, teardown and monitoring inside a private namespace (root only).

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPERS.md)

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{STEP, block_on_in, ip_out, netns};
use netio::netlink::{IfAddress, Installed, NetEvent, Netlink, NetworkMonitor, Route};
use tokio::time::timeout;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Everything `ip` shows about addresses and routes (all tables, both families).
fn snapshot(ns: &testkit::netns::Netns) -> String {
    let mut s = ip_out(ns, &["addr", "show"]);
    s.push_str(&ip_out(ns, &["-4", "route", "show", "table", "all"]));
    s.push_str(&ip_out(ns, &["-6", "route", "show", "table", "all"]));
    // Lifetimes count down between snapshots; they are not configuration.
    s.lines()
        .filter(|l| !l.contains("valid_lft"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn link_settings_addresses_routes_and_exact_teardown() {
    let ns = netns("nl");
    // No DAD: addresses are usable at once and the snapshots below don't race it.
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0").unwrap();
    ns.ip([
        "link", "add", "aodum0", "type", "veth", "peer", "name", "aopeer0",
    ])
    .unwrap();
    ns.ip(["link", "set", "aopeer0", "up"]).unwrap();
    block_on_in(&ns, || async {
        let nl = Netlink::new().unwrap();
        let link = nl.link_by_name("aodum0").await.unwrap();
        assert!(!link.up);
        nl.set_link_up(link.index, true).await.unwrap();
        nl.set_mtu(link.index, 1380).await.unwrap();
        let now = nl.link_by_index(link.index).await.unwrap();
        assert!(now.up);
        assert_eq!(now.mtu, Some(1380));
        assert!(nl.link_by_name("aonosuch").await.is_err());

        // Let the kernel's own IPv6 setup (link-local address, multicast route) settle so the
        // "before" snapshot is stable.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = snapshot(&ns);

        let mut session = nl.session();
        let v4 = IfAddress::new(link.index, ip("198.51.100.2"), 24);
        let v6 = IfAddress::new(link.index, ip("2001:db8:1::2"), 64);
        session.add_address(v4).await.unwrap();
        session.add_address(v6).await.unwrap();
        let via_gw = Route {
            destination: ip("10.1.0.0"),
            prefix_len: 16,
            oif: Some(link.index),
            gateway: Some(ip("198.51.100.1")),
            source: None,
            metric: Some(77),
            table: None,
        };
        let in_table = Route {
            destination: ip("203.0.113.0"),
            prefix_len: 24,
            oif: Some(link.index),
            gateway: None,
            source: Some(ip("198.51.100.2")),
            metric: None,
            table: Some(100),
        };
        let v6_route = Route {
            destination: ip("2001:db8:ff::"),
            prefix_len: 48,
            oif: Some(link.index),
            gateway: Some(ip("2001:db8:1::1")),
            source: None,
            metric: Some(1024),
            table: None,
        };
        session.add_route(via_gw).await.unwrap();
        session.add_route(in_table).await.unwrap();
        session.add_route(v6_route).await.unwrap();
        assert_eq!(session.installed().len(), 5);
        assert_eq!(session.installed()[2], Installed::Route(via_gw));

        let addrs = nl.addresses(Some(link.index)).await.unwrap();
        assert!(addrs.contains(&v4), "{addrs:?}");
        assert!(addrs.contains(&v6), "{addrs:?}");
        let v4_routes = nl.routes(false).await.unwrap();
        assert!(
            v4_routes.iter().any(|r| r.matches(&via_gw)),
            "{v4_routes:?}"
        );
        assert!(
            v4_routes.iter().any(|r| r.matches(&in_table)),
            "{v4_routes:?}"
        );
        assert!(
            nl.routes(true)
                .await
                .unwrap()
                .iter()
                .any(|r| r.matches(&v6_route))
        );
        let shown = ip_out(&ns, &["-4", "route", "show", "table", "all"]);
        assert!(shown.contains("10.1.0.0/16 via 198.51.100.1 dev aodum0 proto static metric 77"));
        assert!(shown.contains("203.0.113.0/24 dev aodum0 table 100 proto static scope link src"));
        assert_eq!(
            nl.route_to(ip("10.1.9.9")).await.unwrap().gateway,
            Some(ip("198.51.100.1"))
        );

        // Adding the same route twice is refused and not recorded twice.
        assert_eq!(
            session.add_route(via_gw).await.unwrap_err().errno(),
            Some(libc::EEXIST)
        );
        assert_eq!(session.installed().len(), 5);

        session.teardown().await.unwrap();
        assert_eq!(snapshot(&ns), before);
    });
}

#[test]
fn dropped_session_is_torn_down_and_gone_items_are_fine() {
    let ns = netns("drop");
    ns.ip([
        "link", "add", "aodum1", "type", "veth", "peer", "name", "aopeer1",
    ])
    .unwrap();
    ns.ip(["link", "set", "aodum1", "up"]).unwrap();
    block_on_in(&ns, || async {
        let nl = Netlink::new().unwrap();
        let index = nl.link_by_name("aodum1").await.unwrap().index;
        let mut session = nl.session();
        session
            .add_address(IfAddress::new(index, ip("198.51.100.7"), 24))
            .await
            .unwrap();
        session
            .add_route(Route::via_dev(ip("10.1.0.0"), 16, index))
            .await
            .unwrap();
        drop(session);
        // The drop spawned the teardown on this runtime; give it a moment.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if nl
                .addresses(Some(index))
                .await
                .unwrap()
                .iter()
                .all(|a| a.local.is_ipv6())
            {
                break;
            }
        }
        assert!(
            nl.addresses(Some(index))
                .await
                .unwrap()
                .iter()
                .all(|a| a.local.is_ipv6())
        );
        assert!(!ip_out(&ns, &["route"]).contains("10.1.0.0/16"));

        // Items that vanished with their interface don't make teardown fail.
        let mut session = nl.session();
        session
            .add_address(IfAddress::new(index, ip("198.51.100.8"), 24))
            .await
            .unwrap();
        session
            .add_route(Route::via_dev(ip("10.1.0.0"), 16, index))
            .await
            .unwrap();
        ns.ip(["link", "del", "aodum1"]).unwrap();
        session.teardown().await.unwrap();
    });
}

#[test]
fn monitor_reports_link_address_and_route_changes() {
    let ns = netns("mon");
    block_on_in(&ns, || async {
        let mut monitor = NetworkMonitor::new().unwrap();
        let nl = Netlink::new().unwrap();
        ns.ip([
            "link", "add", "aodum2", "type", "veth", "peer", "name", "aopeer2",
        ])
        .unwrap();
        let index = nl.link_by_name("aodum2").await.unwrap().index;
        nl.set_link_up(index, true).await.unwrap();
        let addr = IfAddress::new(index, ip("198.51.100.9"), 24);
        nl.add_address(&addr).await.unwrap();
        let route = Route::via_dev(ip("10.1.0.0"), 16, index);
        nl.add_route(&route).await.unwrap();
        nl.del_address(&addr).await.unwrap();

        let mut saw_link = false;
        let mut saw_up = false;
        let mut saw_addr = false;
        let mut saw_route = false;
        let mut saw_addr_removed = false;
        while !(saw_link && saw_up && saw_addr && saw_route && saw_addr_removed) {
            let ev = timeout(STEP, monitor.next())
                .await
                .expect("event in time")
                .expect("open");
            match ev {
                NetEvent::LinkChanged(l) if l.index == index => {
                    assert_eq!(l.name, "aodum2");
                    saw_link = true;
                    saw_up |= l.up;
                }
                NetEvent::AddressAdded(a) if a == addr => saw_addr = true,
                NetEvent::AddressRemoved(a) if a == addr => saw_addr_removed = true,
                NetEvent::RouteAdded(r) if r.matches(&route) => saw_route = true,
                _ => {}
            }
        }
        ns.ip(["link", "del", "aodum2"]).unwrap();
        loop {
            let ev = timeout(STEP, monitor.next())
                .await
                .expect("event in time")
                .expect("open");
            if ev == (NetEvent::LinkRemoved { index }) {
                break;
            }
        }
    });
}

#[test]
fn path_mtu_comes_from_route_metric_or_link() {
    let ns = netns("pmtu");
    ns.ip([
        "link", "add", "aowan0", "type", "veth", "peer", "name", "aowanp0",
    ])
    .unwrap();
    ns.ip(["link", "set", "aowanp0", "up"]).unwrap();
    ns.ip(["link", "set", "aowan0", "up"]).unwrap();
    ns.ip(["addr", "add", "198.51.100.2/24", "dev", "aowan0"])
        .unwrap();
    ns.ip([
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "198.51.100.1",
        "mtu",
        "1300",
    ])
    .unwrap();
    block_on_in(&ns, || async {
        let nl = Netlink::new().unwrap();
        let wan = nl.link_by_name("aowan0").await.unwrap();
        let lookup = nl.route_to(ip("203.0.113.9")).await.unwrap();
        assert_eq!(lookup.oif, wan.index);
        assert_eq!(lookup.gateway, Some(ip("198.51.100.1")));
        assert_eq!(lookup.source, Some(ip("198.51.100.2")));
        assert_eq!(lookup.mtu, Some(1300));
        let on_link = nl.route_to(ip("198.51.100.50")).await.unwrap();
        assert_eq!(on_link.gateway, None);
        assert_eq!(on_link.mtu, Some(1500));
        assert!(matches!(
            nl.route_to(ip("2001:db8::1")).await,
            Err(netio::netlink::NetlinkError::Request(_))
        ));
    });
}
