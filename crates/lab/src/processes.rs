//! The lab's programs: `aovpn` run once or started as a daemon in a namespace (its log and pid
//! in the state directory), stopped by that pid; commands run in a namespace (`exec`); the
//! daemons restarted (`restart`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use labnet::netns::Netns;

use crate::{LabDaemon, LabNs, STATE_DIR, client_etc, ns_name, socket, state};

pub(crate) fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("locating the aovpn binary")
}

/// Runs `aovpn ARGS` (this binary) and fails with its stderr.
pub(crate) fn aovpn(args: &[&str]) -> Result<String> {
    let out = Command::new(self_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running aovpn {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "aovpn {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn start_agent() -> Result<()> {
    let dir = state();
    spawn_daemon(
        "cl",
        "agent",
        &[
            "agent",
            "--config-dir",
            &client_etc().display().to_string(),
            "--socket",
            &socket().display().to_string(),
            "--run-dir",
            &dir.join("client-run").display().to_string(),
            "--state-dir",
            &dir.join("client-state").display().to_string(),
            "--resolv-conf",
            &dir.join("client-resolv.conf").display().to_string(),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(socket()).is_err() {
        // (Right after the spawn the process may still be `ip netns exec`, not yet aovpn.)
        let gone = fs::read_to_string(dir.join("agent.pid"))
            .map(|pid| !Path::new(&format!("/proc/{}", pid.trim())).exists())
            .unwrap_or(true);
        if Instant::now() >= deadline || gone {
            bail!("the agent did not start; see {STATE_DIR}/agent.log");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub(crate) fn start_gateway() -> Result<()> {
    let dir = state();
    let status_file = dir.join("gateway.status.json");
    let _ = fs::remove_file(&status_file);
    spawn_daemon(
        "gw",
        "gateway",
        &[
            "gateway",
            "--config",
            &dir.join("gateway.toml").display().to_string(),
            "--status-file",
            &status_file.display().to_string(),
        ],
    )?;
    wait_for_status(&status_file, "running", Duration::from_secs(15))
        .context("the gateway did not start; see /run/aovpn-lab/gateway.log")
}

pub(crate) fn exec(namespace: LabNs, command: &[String]) -> Result<u8> {
    Netns::attach(ns_name(namespace.role()))
        .map(Netns::persist)
        .map_err(|_| anyhow!("no lab is running (`aovpn lab up` builds one)"))?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns_name(namespace.role())])
        .args(command)
        .status()
        .with_context(|| format!("running {}", command.join(" ")))?;
    Ok(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)))
}

pub(crate) fn restart(daemon: LabDaemon) -> Result<()> {
    match daemon {
        LabDaemon::Gateway => {
            terminate("gateway");
            start_gateway()?;
            println!(
                "gateway restarted; the agent brings the tunnels back by itself (`aovpn lab status`)"
            );
        }
        LabDaemon::Agent => {
            terminate("agent");
            start_agent()?;
            println!("agent restarted; it brings the tunnels back (`aovpn lab status`)");
        }
    }
    Ok(())
}

/// Starts `aovpn ARGS` inside the lab namespace `ns_role`, detached, logging to
/// `STATE/NAME.log`, its pid in `STATE/NAME.pid`. `ip netns exec` execs the command, so the
/// recorded pid is the daemon's own.
pub(crate) fn spawn_daemon(ns_role: &str, name: &str, args: &[&str]) -> Result<()> {
    spawn_daemon_as(ns_role, name, None, args)
}

/// Like [`spawn_daemon`], as user `uid` if given (through setpriv, which execs too).
pub(crate) fn spawn_daemon_as(
    ns_role: &str,
    name: &str,
    uid: Option<u32>,
    args: &[&str],
) -> Result<()> {
    spawn_program(ns_role, name, &self_exe()?, uid, args)
}

/// Starts `program` in a lab namespace, its log and pid in the state directory (so that
/// `lab down` stops it by pid).
pub(crate) fn spawn_program(
    ns_role: &str,
    name: &str,
    program: &Path,
    uid: Option<u32>,
    args: &[&str],
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = state();
    let log = fs::File::create(dir.join(format!("{name}.log")))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns_name(ns_role)]);
    if let Some(uid) = uid {
        cmd.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups");
    }
    let child = cmd
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

fn read_status(path: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn wait_for_status(path: &Path, wanted: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_status(path) {
            match v.get("state").and_then(|s| s.as_str()) {
                Some(s) if s == wanted => return Ok(()),
                Some("failed") => bail!(
                    "{}",
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("failed")
                ),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {}s waiting for state {wanted:?}",
                timeout.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The pid in `STATE/NAME.pid` if that process is still an aovpn.
pub(crate) fn live_pid(name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(state().join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid must still be the program started (not a reused pid of something else).
    let program = if name == "corp-dns" { "named" } else { "aovpn" };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == program).then_some(pid)
}

pub(crate) fn terminate(name: &str) {
    let Some(pid) = live_pid(name) else { return };
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        thread::sleep(Duration::from_millis(50));
    }
    if live_pid(name) == Some(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

pub(crate) fn ns_exec(role: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_name(role)])
        .args(argv)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(anyhow!(
            "{} failed: {}{}",
            argv.join(" "),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}
