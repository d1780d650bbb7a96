//! `aovpn lab up`: namespaces, PKI, the gateway, the corporate DNS server, the agent and
//! alice's key helper, then waits for both tunnels and shows the lab working.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use labnet::netns::{Topology, lab as addr};

use crate::down::down;
use crate::files::{corp_dns, device_profile, user_profile};
use crate::processes::{
    aovpn, self_exe, spawn_daemon, spawn_daemon_as, spawn_program, start_agent, start_gateway,
};
use crate::status::status;
use crate::{
    ALICE_UID, APP_HOST, CORP_DNS, CORP_DOMAIN, DEVICE_HOST, DEVICE_PROFILE, GATEWAY_NAME,
    MACHINE_NAME, MGMT_HOSTS, PREFIX, STATE_DIR, USER_NAME, USER_PROFILE, client_etc, ns_name,
    socket, state,
};

pub(crate) fn up(iperf_secs: u32) -> Result<u8> {
    down().context("removing the previous lab")?;
    let dir = state();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("== building namespaces");
    let topo = Topology::builder(PREFIX)
        .routed(true)
        .exact_names()
        .build()
        .context("building the lab namespaces")?;
    for host in [MGMT_HOSTS[1], APP_HOST, CORP_DNS] {
        topo.vnet
            .ip(["addr", "add", &format!("{host}/24"), "dev", addr::VNET_IF])
            .context("adding vnet host addresses")?;
    }
    // The client resolves the gateway's name like a real one would: `ip netns exec` binds
    // /etc/netns/NAME/hosts over /etc/hosts.
    let hosts_dir = PathBuf::from("/etc/netns").join(topo.client.name());
    fs::create_dir_all(&hosts_dir)?;
    fs::write(
        hosts_dir.join("hosts"),
        format!(
            "127.0.0.1 localhost\n{} {GATEWAY_NAME}\n",
            topo.gateway_wan()
        ),
    )?;
    let gateway_wan = topo.gateway_wan();
    topo.persist();

    println!("== issuing certificates with aovpn pki");
    let pki = dir.join("pki");
    let p = |s: &str| pki.join(s).display().to_string();
    aovpn(&["pki", "init", "--out", &p("ca"), "--name", "aolab Root CA"])?;
    for (kind, name) in [
        ("gateway", GATEWAY_NAME),
        ("machine", MACHINE_NAME),
        ("user", USER_NAME),
    ] {
        aovpn(&[
            "pki",
            "issue",
            "--ca",
            &p("ca"),
            "--kind",
            kind,
            "--name",
            name,
            "--out",
            &p(kind),
        ])?;
    }
    let ca_crt = p("ca/ca.crt");
    let cert = |kind: &str, name: &str| {
        (
            p(&format!("{kind}/{name}.crt")),
            p(&format!("{kind}/{name}.key")),
        )
    };

    println!("== starting the gateway in {}", ns_name("gw"));
    let (gw_crt, gw_key) = cert("gateway", GATEWAY_NAME);
    let gw_conf = dir.join("gateway.toml");
    // The admin page's token: 16 random bytes, hex, readable by root only.
    let web_token = dir.join("web.token");
    let mut random = [0u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(&web_token, format!("{token}\n"))?;
    set_mode(&web_token, 0o600)?;
    fs::write(
        &gw_conf,
        format!(
            r#"# aovpn lab gateway
state_dir = "{state}/gateway"
[admin]
socket = "{state}/gateway/admin.sock"
[listen]
addresses = ["{gateway_wan}"]
[identity]
certificate = "{gw_crt}"
key = "{gw_key}"
id = "{GATEWAY_NAME}"
[clients]
root_ca_files = ["{ca_crt}"]
pool_v4 = "{pool}"
[network]
routes = ["{vnet}"]
dns = ["10.1.0.53"]
[tunnel]
interface = "aovpn-gw"
[metrics]
listen = "127.0.0.1:9477"
[web]
listen = "127.0.0.1:9478"
token_file = "{token_file}"
"#,
            state = dir.display(),
            token_file = web_token.display(),
            pool = addr::CLIENT_POOL,
            vnet = addr::VNET_TS,
        ),
    )?;
    start_gateway()?;

    println!(
        "== starting the agent and alice's key helper in {}",
        ns_name("cl")
    );
    let device_xml = dir.join("device-tunnel.xml");
    fs::write(&device_xml, device_profile())?;
    let user_xml = dir.join("user-tunnel.xml");
    fs::write(&user_xml, user_profile())?;
    for file in [&device_xml, &user_xml] {
        aovpn(&["profile", "validate", &file.display().to_string()])?;
    }
    // The client machine's system store: the device tunnel profile, the machine certificate,
    // the root it trusts for the gateway.
    let etc = client_etc();
    for sub in ["ca", "machine"] {
        fs::create_dir_all(etc.join(sub))?;
    }
    fs::copy(&ca_crt, etc.join("ca").join("aolab-root.pem"))?;
    let (m_crt, m_key) = cert("machine", MACHINE_NAME);
    fs::copy(&m_crt, etc.join("machine").join("certificate.pem"))?;
    fs::copy(&m_key, etc.join("machine").join("key.pem"))?;
    set_mode(&etc.join("machine").join("key.pem"), 0o600)?;
    // No logind in a namespace: a user counts as logged in while their key helper runs.
    fs::write(
        etc.join("agent.toml"),
        format!(
            "sessions = \"helpers\"\nbackoff_cap_secs = 10\n\n\
             [register_dns]\nhost_name = \"{DEVICE_HOST}\"\nzone = \"{CORP_DOMAIN}\"\n"
        ),
    )?;
    fs::write(dir.join("client-resolv.conf"), "nameserver 192.0.2.53\n")?;
    aovpn(&[
        "profile",
        "--system-dir",
        &etc.display().to_string(),
        "add",
        "--system",
        "--name",
        DEVICE_PROFILE,
        &device_xml.display().to_string(),
    ])?;
    spawn_daemon("cl", "netmgr", &["lab", "netmgr"])?;
    println!("== starting the corporate DNS server (BIND 9) at {CORP_DNS}");
    // The zone takes updates signed with a key the device holds (RegisterDNS).
    let key = labnet::bind::tsig_keygen().context("making the TSIG key (tsig-keygen, bind9)")?;
    let key_file = etc.join(agent::register_dns::KEY_FILE);
    fs::write(&key_file, &key)?;
    set_mode(&key_file, 0o600)?;
    let named_args = corp_dns(key).write()?;
    let named_args: Vec<&str> = named_args.iter().skip(1).map(String::as_str).collect();
    spawn_program("vn", "corp-dns", Path::new("named"), None, &named_args)?;
    start_agent()?;

    // alice: her home (hers alone), her certificate and key, her profile in her own store.
    let home = dir.join("home-alice");
    let user_dir = home.join("aovpn").join("user");
    fs::create_dir_all(&user_dir)?;
    let (u_crt, u_key) = cert("user", USER_NAME);
    fs::copy(&u_crt, user_dir.join("certificate.pem"))?;
    fs::copy(&u_key, user_dir.join("key.pem"))?;
    set_mode(&user_dir.join("key.pem"), 0o600)?;
    fs::copy(&user_xml, home.join("user-tunnel.xml"))?;
    chown_tree(&home, ALICE_UID)?;
    set_mode(&dir, 0o755)?;
    as_alice(&[
        "profile",
        "add",
        "--scope",
        "user",
        "--name",
        USER_PROFILE,
        &home.join("user-tunnel.xml").display().to_string(),
    ])?;
    spawn_daemon_as(
        "cl",
        "helper",
        Some(ALICE_UID),
        &[
            "user-helper",
            "--config-dir",
            &home.join("aovpn").display().to_string(),
            "--socket",
            &socket().display().to_string(),
        ],
    )?;
    for profile in [DEVICE_PROFILE, USER_PROFILE] {
        wait_connected(profile, Duration::from_secs(30)).with_context(|| {
            format!("the {profile} tunnel did not connect; see {STATE_DIR}/agent.log")
        })?;
    }
    // The device registers its name once its tunnel is up (and named has started).
    wait_registered(Duration::from_secs(20));
    let ok = status(Some(iperf_secs))?;
    println!();
    println!("lab is up. Try:");
    println!(
        "  aovpn lab exec client -- ip link set cl-wan down; sleep 5; aovpn lab exec client -- ip link set cl-wan up"
    );
    println!("  aovpn lab restart gateway");
    println!("  aovpn lab status      (the tunnels are back by themselves)");
    println!("  aovpn lab down        (removes everything)");
    Ok(if ok { 0 } else { 1 })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    let id = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(path, id, gid).with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// `aovpn ARGS` as the lab user alice.
fn as_alice(args: &[&str]) -> Result<String> {
    let home = state().join("home-alice");
    let out = Command::new("setpriv")
        .arg(format!("--reuid={ALICE_UID}"))
        .arg(format!("--regid={ALICE_UID}"))
        .arg("--clear-groups")
        .env("XDG_CONFIG_HOME", &home)
        .env("HOME", &home)
        .arg(self_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running setpriv")?;
    if !out.status.success() {
        bail!(
            "aovpn {} (as alice) failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The agent's list as JSON (every profile: the lab asks as root).
fn agent_list() -> Result<Vec<serde_json::Value>> {
    let reply = agent::control::call(&socket(), &agent::control::Request::List)?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_default());
    }
    Ok(reply
        .profiles
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect())
}

/// Until the device tunnel's name is registered, or `timeout` (the status then says why not).
fn wait_registered(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let reply = agent::control::call(
            &socket(),
            &agent::control::Request::Status {
                name: Some(DEVICE_PROFILE.into()),
                user: None,
            },
        );
        let registered = reply.ok().is_some_and(|r| {
            r.profiles.iter().any(|p| {
                p.tunnel
                    .as_ref()
                    .and_then(|t| t.dns_registration.as_ref())
                    .is_some_and(|d| d.state == "registered")
            })
        });
        if registered {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn wait_connected(profile: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = agent_list().unwrap_or_default();
        let state = list
            .iter()
            .find(|p| p["name"] == profile)
            .map(|p| p["state"]["state"].as_str().unwrap_or_default().to_owned());
        if state.as_deref() == Some("connected") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{profile}: {}",
                state.unwrap_or_else(|| "not known to the agent".into())
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}
