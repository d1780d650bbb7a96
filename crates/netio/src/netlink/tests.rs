use super::*;

#[test]
fn constructors_outside_a_runtime_fail_cleanly() {
    assert!(Netlink::new().is_err());
    assert!(NetworkMonitor::new().is_err());
}

#[test]
fn peer_address_roundtrips_through_message() {
    let a = IfAddress {
        index: 7,
        local: "172.16.201.5".parse().unwrap(),
        prefix_len: 32,
        peer: Some("172.16.201.1".parse().unwrap()),
    };
    assert_eq!(IfAddress::from_message(&a.to_message()), Some(a));
    let plain = IfAddress::new(7, "2001:db8::5".parse().unwrap(), 64);
    assert_eq!(IfAddress::from_message(&plain.to_message()), Some(plain));
}

#[test]
fn route_roundtrips_through_message() {
    let r = Route {
        destination: "10.1.0.0".parse().unwrap(),
        prefix_len: 16,
        oif: Some(3),
        gateway: None,
        source: Some("172.16.201.5".parse().unwrap()),
        metric: Some(50),
        table: Some(1000),
    };
    let back = Route::from_message(&r.to_message().unwrap()).unwrap();
    assert_eq!(back, r);
    assert!(back.matches(&r));
    let main = Route {
        table: Some(254),
        ..r
    };
    let back = Route::from_message(&main.to_message().unwrap()).unwrap();
    assert_eq!(back.table, None);
    assert!(back.matches(&main));
    assert!(!back.matches(&r));
}

#[test]
fn invalid_prefixes_are_rejected() {
    let r = Route::via_dev("10.0.0.0".parse().unwrap(), 33, 1);
    assert!(matches!(
        r.to_message(),
        Err(NetlinkError::InvalidPrefix(_, 33))
    ));
    let mut r = Route::via_dev("10.0.0.0".parse().unwrap(), 8, 1);
    r.gateway = Some("2001:db8::1".parse().unwrap());
    assert!(r.to_message().is_err());
    let a = IfAddress {
        index: 1,
        local: "10.0.0.1".parse().unwrap(),
        prefix_len: 32,
        peer: Some("::1".parse().unwrap()),
    };
    assert!(a.validate().is_err());
}
