use super::*;

fn spec(servers: &[&str], always_on: bool, device: bool) -> ProfileSpec {
    ProfileSpec {
        servers: servers.iter().map(|s| s.to_string()).collect(),
        always_on,
        device_tunnel: device,
        trusted_networks: vec!["corp.example".into()],
        problem: None,
        revision: 1,
    }
}

fn key(owner: Owner, name: &str) -> ProfileKey {
    ProfileKey {
        owner,
        name: name.into(),
    }
}

fn actions(s: &mut Supervisor) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn start(k: &ProfileKey, server: usize) -> Action {
    Action::Start {
        key: k.clone(),
        server,
    }
}

/// Runs the supervisor's clock to its next timer; returns the new time.
fn advance(s: &mut Supervisor, now: Instant) -> Instant {
    let at = s.poll_timeout().unwrap();
    assert!(at >= now);
    s.handle_timeout(at);
    at
}

/// The history `aovpn status` and the doctor show: the latest attempts newest first with
/// their servers and errors, bounded; failed rounds; the trusted-network match.
#[test]
fn history_keeps_the_latest_attempts_and_the_failed_rounds() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 7);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a", "b"], true, true))],
        t0,
    );
    let mut now = t0;
    for i in 0..4 {
        actions(&mut s);
        s.ended(&dev, Some(format!("no answer {i}a")), now);
        actions(&mut s);
        s.ended(&dev, Some(format!("no answer {i}b")), now);
        now = advance(&mut s, now);
    }
    let h = s.history(&dev, now + Duration::from_secs(3)).unwrap();
    assert_eq!(h.failed_rounds, 4);
    assert_eq!(h.attempts.len(), ATTEMPTS_KEPT);
    assert_eq!(h.attempts[0].server, "b");
    assert_eq!(h.attempts[0].error.as_deref(), Some("no answer 3b"));
    assert_eq!(h.attempts[1].error.as_deref(), Some("no answer 3a"));
    assert!(h.attempts[0].ago_secs >= 3);
    assert_eq!(h.trusted_network, None);
    // It comes up: recorded without an error, and the rounds start over.
    actions(&mut s);
    s.connected(&dev, now);
    let h = s.history(&dev, now).unwrap();
    assert_eq!((h.failed_rounds, h.attempts[0].error.clone()), (0, None));
    assert_eq!(h.attempts[0].server, "a");
    // A user tunnel on a trusted network says which suffix matched.
    let user = key(Owner::User(1000), "Corp");
    s.set_profiles(
        Owner::User(1000),
        vec![("Corp".into(), spec(&["a"], true, false))],
        now,
    );
    s.set_network_suffixes(vec!["corp.example".into()], now);
    let h = s.history(&user, now).unwrap();
    assert_eq!(h.trusted_network.as_deref(), Some("corp.example"));
}

#[test]
fn the_device_tunnel_starts_at_once_without_anyone_logged_in() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 7);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a"], true, true))],
        t0,
    );
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    s.connected(&dev, t0);
    assert!(matches!(s.states(t0)[0].1, State::Connected { .. }));
}

#[test]
fn user_tunnels_follow_login_and_logout_and_need_the_key_helper() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 7);
    let user = key(Owner::User(1000), "Corp");
    s.set_profiles(
        Owner::User(1000),
        vec![("Corp".into(), spec(&["a"], true, false))],
        t0,
    );
    assert!(actions(&mut s).is_empty());
    assert_eq!(s.states(t0)[0].1, State::WaitingForUser);
    s.set_session(1000, true, t0);
    assert!(actions(&mut s).is_empty(), "no helper yet");
    s.set_signer(1000, true, t0);
    assert_eq!(actions(&mut s), vec![start(&user, 0)]);
    s.connected(&user, t0);
    // Logout: the user tunnel goes; nobody else is touched.
    s.set_session(1000, false, t0);
    assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
    s.ended(&user, None, t0);
    assert!(actions(&mut s).is_empty());
    assert_eq!(s.states(t0)[0].1, State::WaitingForUser);
}

#[test]
fn failures_walk_the_servers_then_back_off_exponentially_up_to_the_cap() {
    let t0 = Instant::now();
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };
    let mut s = Supervisor::new(backoff, 42);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a", "b"], true, true))],
        t0,
    );
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    let mut now = t0;
    let mut waits = Vec::new();
    for round in 0..10 {
        // Server a fails: b is tried at once.
        s.ended(&dev, Some("timeout".into()), now);
        assert_eq!(actions(&mut s), vec![start(&dev, 1)], "round {round}");
        // b fails too: a full round, so a wait.
        s.ended(&dev, Some("timeout".into()), now);
        assert!(actions(&mut s).is_empty());
        let State::Waiting { last_error, .. } = &s.states(now)[0].1 else {
            panic!("not waiting");
        };
        assert_eq!(last_error.as_deref(), Some("timeout"));
        let next = advance(&mut s, now);
        waits.push(next - now);
        now = next;
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    }
    // Exponential: each wait lies between half and all of 1, 2, 4, ... s, capped at 60 s.
    for (i, w) in waits.iter().enumerate() {
        let exp = Duration::from_secs(1 << i.min(16)).min(Duration::from_secs(60));
        assert!(*w >= exp / 2 && *w <= exp, "wait {i}: {w:?} for {exp:?}");
    }
    assert!(waits[9] >= Duration::from_secs(30));
    // A network change resets the backoff: the next attempt is now.
    s.ended(&dev, Some("timeout".into()), now);
    assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
    s.ended(&dev, Some("timeout".into()), now);
    assert!(s.poll_timeout().unwrap() > now);
    s.network_changed(now);
    assert_eq!(s.poll_timeout(), Some(now));
    s.handle_timeout(now);
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
}

#[test]
fn the_next_round_starts_from_the_last_server_that_worked() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a", "b", "c"], true, true))],
        t0,
    );
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    s.ended(&dev, Some("down".into()), t0);
    assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
    s.connected(&dev, t0);
    // Up for an hour, then dropped: b again, at once.
    let later = t0 + Duration::from_secs(3600);
    s.ended(&dev, Some("gateway gone".into()), later);
    assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
    // b fails: c, then a, then (a round) wait and start again from b.
    s.ended(&dev, Some("x".into()), later);
    assert_eq!(actions(&mut s), vec![start(&dev, 2)]);
    s.ended(&dev, Some("x".into()), later);
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    s.ended(&dev, Some("x".into()), later);
    assert!(actions(&mut s).is_empty());
    advance(&mut s, later);
    assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
}

#[test]
fn a_tunnel_that_drops_at_once_counts_as_a_failure() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a"], true, true))],
        t0,
    );
    actions(&mut s);
    s.connected(&dev, t0);
    s.ended(&dev, Some("closed".into()), t0 + Duration::from_secs(1));
    assert!(actions(&mut s).is_empty(), "not re-dialled at once");
    assert!(s.poll_timeout().unwrap() > t0 + Duration::from_secs(1));
}

#[test]
fn trusted_networks_hold_always_on_user_tunnels_but_not_the_device_tunnel() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let dev = key(Owner::Device, "Device");
    let user = key(Owner::User(1000), "Corp");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a"], true, true))],
        t0,
    );
    s.set_profiles(
        Owner::User(1000),
        vec![("Corp".into(), spec(&["a"], true, false))],
        t0,
    );
    s.set_session(1000, true, t0);
    s.set_signer(1000, true, t0);
    assert_eq!(actions(&mut s), vec![start(&dev, 0), start(&user, 0)]);
    s.connected(&dev, t0);
    s.connected(&user, t0);
    s.set_network_suffixes(vec!["corp.example".into()], t0);
    assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
    s.ended(&user, None, t0);
    let states = s.states(t0);
    assert!(matches!(states[0].1, State::Connected { .. }), "{states:?}");
    assert_eq!(states[1].1, State::TrustedNetwork);
    // Leaving the trusted network brings it back.
    s.set_network_suffixes(vec!["home.example".into()], t0);
    assert_eq!(actions(&mut s), vec![start(&user, 0)]);
}

#[test]
fn a_user_disconnect_holds_until_the_user_connects_again() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let user = key(Owner::User(1000), "Corp");
    s.set_profiles(
        Owner::User(1000),
        vec![("Corp".into(), spec(&["a"], true, false))],
        t0,
    );
    s.set_session(1000, true, t0);
    s.set_signer(1000, true, t0);
    actions(&mut s);
    s.connected(&user, t0);
    assert!(s.disconnect(&user, t0));
    assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
    s.ended(&user, None, t0);
    // Network changes and logins do not bring it back.
    s.network_changed(t0);
    s.set_session(1000, false, t0);
    s.set_session(1000, true, t0);
    s.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(actions(&mut s).is_empty());
    assert_eq!(s.states(t0)[0].1, State::DisconnectedByUser);
    assert_eq!(s.held_by_user(), vec![user.clone()]);
    assert!(s.connect(&user, t0));
    assert_eq!(actions(&mut s), vec![start(&user, 0)]);
}

#[test]
fn a_changed_profile_restarts_its_tunnel_and_a_removed_one_stops() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let dev = key(Owner::Device, "Device");
    s.set_profiles(
        Owner::Device,
        vec![("Device".into(), spec(&["a"], true, true))],
        t0,
    );
    actions(&mut s);
    s.connected(&dev, t0);
    let mut changed = spec(&["b"], true, true);
    changed.revision = 2;
    s.set_profiles(Owner::Device, vec![("Device".into(), changed)], t0);
    assert_eq!(actions(&mut s), vec![Action::Stop { key: dev.clone() }]);
    s.ended(&dev, None, t0);
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    s.connected(&dev, t0);
    s.set_profiles(Owner::Device, Vec::new(), t0);
    assert_eq!(actions(&mut s), vec![Action::Stop { key: dev.clone() }]);
    s.ended(&dev, None, t0);
    assert!(s.states(t0).is_empty());
    assert!(actions(&mut s).is_empty());
}

#[test]
fn a_manual_profile_connects_when_asked_and_is_not_redialled() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let dev = key(Owner::Device, "Lab");
    s.set_profiles(
        Owner::Device,
        vec![("Lab".into(), spec(&["a"], false, false))],
        t0,
    );
    assert!(actions(&mut s).is_empty());
    assert!(matches!(s.states(t0)[0].1, State::Disconnected { .. }));
    s.connect(&dev, t0);
    assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    s.connected(&dev, t0);
    s.ended(&dev, Some("closed".into()), t0 + Duration::from_secs(100));
    assert!(actions(&mut s).is_empty());
    assert!(s.poll_timeout().is_none());
}

#[test]
fn a_profile_with_a_problem_is_listed_and_never_started() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(Backoff::default(), 1);
    let mut bad = spec(&["a"], true, true);
    bad.problem = Some("EAP method 25 is not supported".into());
    s.set_profiles(Owner::Device, vec![("Device".into(), bad)], t0);
    assert!(actions(&mut s).is_empty());
    assert_eq!(
        s.states(t0)[0].1,
        State::Disabled {
            reason: "EAP method 25 is not supported".into()
        }
    );
}
