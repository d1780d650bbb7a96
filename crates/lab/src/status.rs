//! `aovpn lab status` (and the end of `up`): processes, the gateway's sessions, the agent's
//! tunnels, routes, which tunnel carries which destination, split DNS, RegisterDNS with a
//! connection to the device by name, and optionally a throughput figure per tunnel.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::Netns;

use crate::processes::{live_pid, ns_exec};
use crate::{
    APP_HOST, CORP_DNS, CORP_DOMAIN, DEVICE_HOST, DEVICE_IF, GATEWAY_NAME, MGMT_HOSTS, PROCESSES,
    STATE_DIR, USER_PROFILE, ns_name, socket, state,
};

/// Prints the lab's state; with `iperf_secs`, also a throughput figure per tunnel. Returns
/// whether everything that should work works.
pub(crate) fn status(iperf_secs: Option<u32>) -> Result<bool> {
    if Netns::attach(ns_name("cl")).map(Netns::persist).is_err() {
        bail!("no lab is running (`aovpn lab up` builds one)");
    }
    let dir = state();
    let mut ok = true;
    println!();
    println!("== processes");
    for name in PROCESSES {
        match live_pid(name) {
            Some(pid) => println!("  {name:<8} pid {pid}"),
            None => {
                ok = false;
                println!("  {name:<8} NOT RUNNING (log: {STATE_DIR}/{name}.log)")
            }
        }
    }

    println!();
    let admin_socket = dir.join("gateway").join("admin.sock");
    println!(
        "== gateway {GATEWAY_NAME}: connected clients (`aovpn gateway sessions --socket {}`; metrics: `aovpn lab exec gateway -- curl -s 127.0.0.1:9477/metrics`)",
        admin_socket.display()
    );
    println!(
        "   admin page: http://127.0.0.1:9478 in the gateway's namespace, token in {} (e.g. `aovpn lab exec gateway -- sh -c 'curl -s -H \"Authorization: Bearer $(cat {})\" 127.0.0.1:9478/api/state'`)",
        dir.join("web.token").display(),
        dir.join("web.token").display()
    );
    match gateway::admin::call(&admin_socket, &gateway::admin::Request::Sessions) {
        Ok(reply) if reply.ok && !reply.sessions.is_empty() => {
            for s in &reply.sessions {
                println!(
                    "  {:<34} vip {:<15} from {:<21} {}  in {} / out {} packets",
                    s.identity,
                    s.virtual_ip
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.remote,
                    s.esp,
                    s.traffic.packets_in,
                    s.traffic.packets_out
                );
            }
        }
        Ok(reply) => {
            ok = false;
            println!(
                "  (none{})",
                reply.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        Err(e) => {
            ok = false;
            println!("  (the gateway's admin socket: {e})");
        }
    }

    println!();
    println!("== the agent's tunnels (`aovpn list` as root in the client namespace)");
    let reply = agent::control::call(
        &socket(),
        &agent::control::Request::Status {
            name: None,
            user: None,
        },
    );
    let profiles = match reply {
        Ok(r) if r.ok => r.profiles,
        Ok(r) => {
            ok = false;
            println!("  agent: {}", r.error.unwrap_or_default());
            Vec::new()
        }
        Err(e) => {
            ok = false;
            println!("  agent: {e}");
            Vec::new()
        }
    };
    let mut user_if = String::from("?");
    let mut device_vip = None;
    let mut registration = None;
    for p in &profiles {
        let connected = matches!(p.state, agent::supervisor::State::Connected { .. });
        ok &= connected;
        let owner = if p.device_tunnel {
            "device".to_owned()
        } else {
            p.owner.clone()
        };
        println!("  {:<16} {:<10} {}", p.name, owner, p.state);
        if let Some(t) = &p.tunnel {
            println!(
                "  {:<16} {:<10} {} vip {} ike {} esp {}",
                "",
                "",
                t.interface,
                t.virtual_ip
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                t.ike,
                t.esp
            );
            println!("  {:<16} {:<10} routes {}", "", "", t.routes.join(", "));
            if p.name == USER_PROFILE {
                user_if = t.interface.clone();
            }
            if p.device_tunnel {
                device_vip = t.virtual_ip;
                registration = t.dns_registration.clone();
            }
        }
    }
    if profiles.len() < 2 {
        ok = false;
    }

    println!();
    println!("== routes in the client namespace");
    for line in ns_exec("cl", &["ip", "-4", "route", "show", "table", "all"])?.lines() {
        if line.contains("aovpn") || line.starts_with("default") {
            println!("  {line}");
        }
    }

    println!();
    println!("== which tunnel carries which destination");
    let mut report = String::new();
    for (dest, expect_if) in [
        (MGMT_HOSTS[0], DEVICE_IF),
        (MGMT_HOSTS[1], DEVICE_IF),
        (APP_HOST, user_if.as_str()),
    ] {
        let route = ns_exec("cl", &["ip", "route", "get", &dest.to_string()]).unwrap_or_default();
        let dev = route
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("?")
            .to_owned();
        let good = dev == expect_if;
        ok &= good;
        let _ = write!(report, "  {dest:<12} -> {dev:<10}");
        let ping = ns_exec(
            "cl",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", &dest.to_string()],
        );
        match ping {
            Ok(out) => {
                let rtt = out
                    .lines()
                    .find(|l| l.contains("min/avg/max"))
                    .and_then(|l| l.split('=').nth(1))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                let _ = writeln!(report, " ping ok (min/avg/max/mdev {rtt})");
            }
            Err(_) => {
                ok = false;
                let _ = writeln!(report, " ping FAILED");
            }
        }
        if !good {
            let _ = writeln!(report, "    expected via {expect_if}");
        }
    }
    print!("{report}");

    println!();
    println!("== split DNS (the user profile's DomainNameInformation, through the agent's stub)");
    let stub = agent::split_dns::STUB_ADDRESS.to_string();
    for (name, expect) in [
        (format!("app.{CORP_DOMAIN}"), APP_HOST),
        (format!("mgmt.{CORP_DOMAIN}"), MGMT_HOSTS[0]),
    ] {
        let answer = ns_exec(
            "cl",
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{stub}"),
                &name,
            ],
        )
        .unwrap_or_default();
        let answer = answer.trim();
        let good = answer == expect.to_string();
        ok &= good;
        println!(
            "  {name:<26} -> {:<12} {}",
            if answer.is_empty() { "-" } else { answer },
            if good {
                format!("(from {CORP_DNS} through the tunnel)")
            } else {
                format!("expected {expect}")
            }
        );
    }

    println!();
    println!("== the device by name (RegisterDNS), reached from the vnet host (manage out)");
    let name = format!("{DEVICE_HOST}.{CORP_DOMAIN}");
    let answer = ns_exec(
        "vn",
        &[
            "dig",
            "+short",
            "+time=1",
            "+tries=1",
            &format!("@{CORP_DNS}"),
            &name,
        ],
    )
    .unwrap_or_default();
    let answer = answer.trim();
    let registered = device_vip.is_some_and(|v| v.to_string() == answer);
    ok &= registered;
    let agent_says = registration
        .map(|r| {
            format!(
                "{}{}",
                r.state,
                r.detail.map(|d| format!(": {d}")).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "  {name:<26} -> {:<12} (in BIND at {CORP_DNS}; the agent: {agent_says})",
        if answer.is_empty() { "-" } else { answer }
    );
    if let (true, Ok(target)) = (registered, answer.parse::<Ipv4Addr>()) {
        match manage_out(target) {
            Ok((peer, took)) => println!(
                "  tcp {peer} -> {name}: connected through the device tunnel, answered in {} ms",
                took.as_millis()
            ),
            Err(e) => {
                ok = false;
                println!("  tcp from the vnet host to {name}: FAILED: {e:#}");
            }
        }
    }

    if let Some(secs) = iperf_secs.filter(|s| *s > 0) {
        println!();
        println!("== throughput (iperf3 TCP, {secs} s, client -> vnet host)");
        for (label, dest) in [("device", MGMT_HOSTS[0]), ("user", APP_HOST)] {
            match iperf(dest, secs) {
                Ok(mbit) => println!("  {label:<6} tunnel to {dest:<12} {mbit:>8.0} Mbit/s"),
                Err(e) => {
                    ok = false;
                    println!("  {label:<6} tunnel to {dest:<12} FAILED: {e:#}");
                }
            }
        }
    }
    Ok(ok)
}

/// A TCP connection from the vnet host to a listener on the device's tunnel address `vip`:
/// who connected, and how long the exchange took.
fn manage_out(vip: Ipv4Addr) -> Result<(std::net::SocketAddr, Duration)> {
    use std::io::{Read, Write};
    let client = Netns::attach(ns_name("cl"))?;
    let vnet = Netns::attach(ns_name("vn"))?;
    let listener = client.try_run(|| std::net::TcpListener::bind((vip, 0)));
    client.persist();
    let listener = listener??;
    let port = listener.local_addr()?.port();
    let server = thread::spawn(move || -> std::io::Result<std::net::SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello)?;
        conn.write_all(b"device")?;
        Ok(peer)
    });
    let started = Instant::now();
    let reply = vnet.try_run(|| -> std::io::Result<String> {
        let target = std::net::SocketAddr::from((vip, port));
        let mut c = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        c.write_all(b"hello")?;
        let mut reply = String::new();
        c.read_to_string(&mut reply)?;
        Ok(reply)
    });
    vnet.persist();
    let reply = reply??;
    let took = started.elapsed();
    if reply != "device" {
        bail!("unexpected answer {reply:?}");
    }
    let peer = server
        .join()
        .map_err(|_| anyhow::anyhow!("the listener panicked"))??;
    Ok((peer, took))
}

/// One iperf3 run from the client namespace to `dest` in the vnet namespace.
fn iperf(dest: Ipv4Addr, secs: u32) -> Result<f64> {
    let vn = Netns::attach(ns_name("vn"))?;
    let mut server = vn
        .command(["iperf3", "-s", "-1", "-B", &dest.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    vn.persist();
    thread::sleep(Duration::from_millis(300));
    let result = ns_exec(
        "cl",
        &[
            "iperf3",
            "-c",
            &dest.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&result?)?;
    json.pointer("/end/sum_received/bits_per_second")
        .and_then(|v| v.as_f64())
        .map(|bps| bps / 1e6)
        .ok_or_else(|| anyhow!("iperf3 reported no result"))
}
