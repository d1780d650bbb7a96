use super::*;
use crate::require_root;
use std::net::UdpSocket;

fn ping(ns: &Netns, dest: Ipv4Addr) -> io::Result<Output> {
    ns.exec_ok(["ping", "-c", "1", "-W", "2", &dest.to_string()])
}

fn interfaces_inside(ns: &Netns) -> Vec<String> {
    let mut names: Vec<String> = ns.run(|| {
        nix::net::if_::if_nameindex()
            .expect("if_nameindex")
            .iter()
            .map(|i| i.name().to_string_lossy().into_owned())
            .collect()
    });
    names.sort();
    names
}

#[test]
fn persisted_namespace_outlives_its_handle_and_attach_takes_it_back() {
    crate::require_root();
    let name = unique_name("tkpers");
    let ns = Netns::new(name.clone()).unwrap();
    assert_eq!(ns.persist(), name);
    assert!(std::path::Path::new(NETNS_DIR).join(&name).exists());
    let again = Netns::attach(name.clone()).unwrap();
    drop(again);
    assert!(!std::path::Path::new(NETNS_DIR).join(&name).exists());
    assert!(Netns::attach(name).is_err());
}

#[test]
fn unique_names_fit_interface_names_and_differ() {
    let a = unique_name("averyveryverylongprefix");
    let b = unique_name("averyveryverylongprefix");
    assert!(a.len() <= MAX_IFNAME_LEN, "{a}");
    assert_ne!(a, b);
    let short = unique_name("t");
    assert!(short.starts_with('t'));
    assert!(short.contains(&format!("{:x}-", std::process::id())));
}

#[test]
fn run_sees_only_namespace_interfaces_and_sysctls() {
    require_root();
    let ns = Netns::new(unique_name("tkif")).unwrap();
    assert_eq!(interfaces_inside(&ns), vec!["lo".to_string()]);
    let rp = ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter"));
    assert_eq!(rp.unwrap().trim(), "0");
    // The test thread itself stays in the original namespace.
    let here = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    let inside = ns
        .run(|| std::fs::metadata("/proc/thread-self/ns/net"))
        .unwrap();
    assert_ne!(here.ino(), inside.ino());
    assert_eq!(inside.ino(), std::fs::metadata(ns.path()).unwrap().ino());
}

#[test]
fn veth_ping_and_socket_created_inside_stays_inside() {
    require_root();
    let a = Netns::new(unique_name("tkva")).unwrap();
    let b = Netns::new(unique_name("tkvb")).unwrap();
    veth(&a, "va", "198.51.100.2/24", &b, "vb", "198.51.100.1/24").unwrap();
    assert_eq!(
        interfaces_inside(&a),
        vec!["lo".to_string(), "va".to_string()]
    );
    assert_eq!(
        interfaces_inside(&b),
        vec!["lo".to_string(), "vb".to_string()]
    );
    ping(&a, Ipv4Addr::new(198, 51, 100, 1)).unwrap();

    // Sockets keep the namespace they were created in, whichever thread uses them later.
    let server = b.run(|| UdpSocket::bind("198.51.100.1:0")).unwrap();
    let port = server.local_addr().unwrap().port();
    a.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.send_to(b"hello", ("198.51.100.1", port))
    })
    .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.ip(), Ipv4Addr::new(198, 51, 100, 2));
}

#[test]
fn exec_ok_reports_stderr_on_failure() {
    require_root();
    let ns = Netns::new(unique_name("tkex")).unwrap();
    let out = ns.exec(["sh", "-c", "echo out; exit 3"]).unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    let err = ns
        .exec_ok(["sh", "-c", "echo boom >&2; exit 1"])
        .unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
}

#[test]
fn drop_stops_processes_and_deletes_namespace() {
    require_root();
    let ns = Netns::new(unique_name("tkdr")).unwrap();
    let path = ns.path();
    let mut child = ns.spawn(["sleep", "600"]).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    // `ip netns exec` execs sleep, which then shows up in the namespace under the child's pid.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ns.pids().unwrap().contains(&pid) {
        assert!(
            Instant::now() < deadline,
            "sleep never entered the namespace"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(path.exists());
    drop(ns);
    assert!(!path.exists(), "{} still exists", path.display());
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn drop_deletes_namespaces_when_the_test_panics() {
    require_root();
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let topo = Topology::routed("tkpn", true).unwrap();
        let mut n = names.lock().unwrap();
        n.push(topo.client.path());
        n.push(topo.gateway.path());
        n.push(topo.vnet.path());
        n.push(topo.internet.as_ref().unwrap().path());
        drop(n);
        panic!("deliberate panic with a live topology");
    });
    assert!(result.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 4);
    for p in names {
        assert!(!p.exists(), "{} survived the panic", p.display());
    }
}

fn udp_source_seen_by_gateway(topo: &Topology) -> Ipv4Addr {
    let gw = topo.gateway_wan();
    let server = topo.gateway.run(|| UdpSocket::bind((gw, 0))).unwrap();
    let port = server.local_addr().unwrap().port();
    topo.client
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.send_to(b"probe", (gw, port))
        })
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).unwrap();
    match from.ip() {
        std::net::IpAddr::V4(a) => a,
        other => panic!("unexpected source {other}"),
    }
}

#[test]
fn routed_topology_with_nat() {
    require_root();
    let topo = Topology::routed("tknat", true).unwrap();
    ping(&topo.client, topo.gateway_wan()).unwrap();
    ping(&topo.gateway, lab::VNET_HOST).unwrap();
    // vnet host reaches the gateway's public side via its default route.
    ping(&topo.vnet, topo.gateway_wan()).unwrap();
    let seen = udp_source_seen_by_gateway(&topo);
    assert_eq!(seen, lab::INTERNET_GATEWAY_SIDE);
    assert_eq!(seen, topo.client_as_seen_by_gateway());
}

#[test]
fn routed_topology_without_nat_keeps_client_address() {
    require_root();
    let topo = Topology::routed("tkrt", false).unwrap();
    ping(&topo.client, topo.gateway_wan()).unwrap();
    assert_eq!(udp_source_seen_by_gateway(&topo), lab::CLIENT_WAN);
}

#[test]
fn direct_topology() {
    require_root();
    let topo = Topology::direct("tkdi").unwrap();
    assert!(topo.internet.is_none());
    assert_eq!(topo.gateway_wan(), Ipv4Addr::new(198, 51, 100, 1));
    ping(&topo.client, topo.gateway_wan()).unwrap();
    ping(&topo.vnet, topo.gateway_wan()).unwrap();
    assert_eq!(udp_source_seen_by_gateway(&topo), lab::CLIENT_WAN);
}

#[test]
fn current_thread_tokio_runtime_inside_run() {
    require_root();
    let a = Netns::new(unique_name("tkrt")).unwrap();
    let b = Netns::new(unique_name("tkrt")).unwrap();
    veth(&a, "ta", "203.0.113.2/24", &b, "tb", "203.0.113.1/24").unwrap();
    let server = b
        .run(|| std::net::UdpSocket::bind("203.0.113.1:0"))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let sent = a.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // 203.0.113.2 exists only inside `a`: binding it proves the runtime's socket
            // was created there.
            let s = tokio::net::UdpSocket::bind("203.0.113.2:0").await.unwrap();
            s.send_to(b"tokio", ("203.0.113.1", port)).await.unwrap()
        })
    });
    assert_eq!(sent, 5);
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"tokio");
    assert_eq!(from.ip(), Ipv4Addr::new(203, 0, 113, 2));
    assert!(
        std::net::UdpSocket::bind("203.0.113.2:0").is_err(),
        "address leaked to host"
    );
}
