//! `aovpn agent` and `aovpn user-helper` as processes: the always-on service with its
//! stores, control socket and D-Bus, and a user's key helper.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Daemon, path_str, run_aovpn};
use crate::netns::Netns;

/// How [`AgentProcess::start`] sets up the system store.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    /// Device-scope profiles: (name, ProfileXML file), added with `aovpn profile add --system`.
    pub profiles: Vec<(String, PathBuf)>,
    /// The machine certificate (chain) and key, copied to `etc/machine/`.
    pub machine: Option<(PathBuf, PathBuf)>,
    /// The gateway's root, copied to `etc/ca/`.
    pub ca: PathBuf,
    /// `sessions` in agent.toml (`helpers` by default: there is no logind in the namespaces).
    pub sessions: String,
    /// `admin_group` in agent.toml.
    pub admin_group: Option<u32>,
    /// `backoff_cap_secs` in agent.toml.
    pub backoff_cap_secs: Option<u64>,
    /// Extra environment of the agent (e.g. `DBUS_SYSTEM_BUS_ADDRESS` of a private bus).
    pub env: Vec<(String, String)>,
    /// Appended to agent.toml (tables such as `[register_dns]`).
    pub extra_toml: String,
    /// Files written into the store before the agent starts: (name under `etc/`, text),
    /// readable by root only.
    pub files: Vec<(String, String)>,
}

impl AgentOpts {
    /// A device tunnel profile with the machine certificate and the root.
    pub fn new(ca: &Path) -> Self {
        AgentOpts {
            profiles: Vec::new(),
            machine: None,
            ca: ca.to_owned(),
            sessions: "helpers".to_owned(),
            admin_group: None,
            backoff_cap_secs: None,
            env: Vec::new(),
            extra_toml: String::new(),
            files: Vec::new(),
        }
    }
}

/// `aovpn agent` running in a namespace with its own store, socket and state under
/// `workdir` (`etc/`, `run/`, `state/`, `resolv.conf`); dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct AgentProcess {
    bin: PathBuf,
    ns_name: String,
    daemon: Option<Daemon>,
    workdir: PathBuf,
    generation: u32,
    env: Vec<(String, String)>,
}

/// How long the agent gets to open its socket.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(15);

impl AgentProcess {
    /// Prepares the store (profiles, machine credentials, root, agent.toml) and starts the
    /// agent in `ns`; returns once its control socket answers.
    pub fn start(bin: &Path, ns: &Netns, workdir: &Path, opts: &AgentOpts) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let etc = workdir.join("etc");
        for dir in [
            etc.join("ca"),
            etc.join("machine"),
            workdir.join("run"),
            workdir.join("state"),
        ] {
            fs::create_dir_all(&dir)?;
        }
        // The socket must be reachable for unprivileged helpers and users.
        fs::set_permissions(workdir, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(workdir.join("run"), fs::Permissions::from_mode(0o755))?;
        fs::copy(&opts.ca, etc.join("ca").join("root.pem"))?;
        if let Some((cert, key)) = &opts.machine {
            fs::copy(cert, etc.join("machine").join("certificate.pem"))?;
            fs::copy(key, etc.join("machine").join("key.pem"))?;
            fs::set_permissions(
                etc.join("machine").join("key.pem"),
                fs::Permissions::from_mode(0o600),
            )?;
        }
        let mut toml = format!("sessions = \"{}\"\n", opts.sessions);
        if let Some(g) = opts.admin_group {
            toml.push_str(&format!("admin_group = \"{g}\"\n"));
        }
        if let Some(cap) = opts.backoff_cap_secs {
            toml.push_str(&format!("backoff_cap_secs = {cap}\n"));
        }
        toml.push_str(&opts.extra_toml);
        fs::write(etc.join("agent.toml"), toml)?;
        for (name, text) in &opts.files {
            let path = etc.join(name);
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
        fs::write(workdir.join("resolv.conf"), "nameserver 192.0.2.53\n")?;
        let mut agent = AgentProcess {
            bin: bin.to_owned(),
            ns_name: ns.name().to_owned(),
            daemon: None,
            workdir: workdir.to_owned(),
            generation: 0,
            env: opts.env.clone(),
        };
        for (name, file) in &opts.profiles {
            agent.add_profile(name, file)?;
        }
        agent.spawn(ns)?;
        Ok(agent)
    }

    /// `aovpn profile add --system FILE --name NAME` into this agent's store.
    pub fn add_profile(&self, name: &str, file: &Path) -> io::Result<Output> {
        self.profile(&["add", "--system", "--name", name, path_str(file)?])
    }

    /// `aovpn profile remove NAME` from this agent's store.
    pub fn remove_profile(&self, name: &str) -> io::Result<Output> {
        self.profile(&["remove", name])
    }

    /// `aovpn profile ARGS...` against this agent's store and socket.
    fn profile(&self, args: &[&str]) -> io::Result<Output> {
        let etc = self.workdir.join("etc");
        let socket = self.socket();
        let mut all = vec![
            "profile",
            "--system-dir",
            path_str(&etc)?,
            "--socket",
            path_str(&socket)?,
        ];
        all.extend_from_slice(args);
        run_aovpn(&self.bin, &all)
    }

    fn spawn(&mut self, ns: &Netns) -> io::Result<()> {
        self.generation += 1;
        let w = &self.workdir;
        let args: Vec<String> = [
            "agent",
            "--config-dir",
            path_str(&w.join("etc"))?,
            "--socket",
            path_str(&self.socket())?,
            "--run-dir",
            path_str(&w.join("run"))?,
            "--state-dir",
            path_str(&w.join("state"))?,
            "--resolv-conf",
            path_str(&w.join("resolv.conf"))?,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let log = w.join(format!("agent.{}.log", self.generation));
        self.daemon = Some(Daemon::spawn_with_env(
            ns,
            &self.bin,
            &args,
            log,
            "aovpn agent",
            &self.env,
        )?);
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(d) = self.daemon.as_mut()
                && let Some(status) = d.try_exited()?
            {
                return Err(io::Error::other(format!(
                    "aovpn agent exited during start-up ({status}):\n{}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "aovpn agent did not open its socket within {AGENT_START_TIMEOUT:?}:\n{}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent again (after [`Self::kill`] or [`Self::stop`]) with the same store.
    pub fn restart(&mut self, ns: &Netns) -> io::Result<()> {
        if let Some(mut d) = self.daemon.take() {
            d.stop()?;
        }
        self.spawn(ns)
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.workdir.join("run").join("agent.sock")
    }

    /// The store directory (`etc/`).
    pub fn config_dir(&self) -> PathBuf {
        self.workdir.join("etc")
    }

    /// The resolv.conf the agent manages.
    pub fn resolv_conf(&self) -> PathBuf {
        self.workdir.join("resolv.conf")
    }

    /// The agent's run directory (`--run-dir`).
    pub fn run_dir(&self) -> PathBuf {
        self.workdir.join("run")
    }

    /// The agent's state directory (`--state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join("state")
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.child.id())
    }

    /// `aovpn ARGS --socket SOCKET` as root (a control command); the output whatever the exit.
    pub fn control(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
    }

    /// The same as user `uid` (no passwd entry needed): what an unprivileged user may do.
    pub fn control_as(&self, uid: u32, args: &[&str]) -> io::Result<Output> {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
    }

    /// Everything every agent run logged so far.
    pub fn log(&self) -> String {
        (1..=self.generation)
            .map(|g| {
                fs::read_to_string(self.workdir.join(format!("agent.{g}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("---- agent restarted ----\n")
    }

    /// SIGTERM: every tunnel says goodbye and cleans up; waits.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        match self.daemon.as_mut() {
            Some(d) => d.stop(),
            None => Err(io::Error::other("not running")),
        }
    }

    /// SIGKILL: a crash, without goodbye or cleanup.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        match self.daemon.as_mut() {
            Some(d) => d.kill(),
            None => Err(io::Error::other("not running")),
        }
    }

    /// The namespace it runs in.
    pub fn namespace(&self) -> &str {
        &self.ns_name
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- testkit: agent logs ----\n{}---- end ----", self.log());
        }
    }
}

/// `aovpn user-helper` running as an unprivileged user (uid without a passwd entry) with its
/// own config directory; dropped = SIGTERM (then SIGKILL) by pid.
#[derive(Debug)]
pub struct UserHelperProcess {
    daemon: Daemon,
    config_dir: PathBuf,
}

impl UserHelperProcess {
    /// Creates `dir` owned by `uid` with the user's certificate and key (0600) and the given
    /// user profiles (added with `aovpn profile add --scope user` as that user), then starts
    /// the helper as `uid` in `ns`.
    pub fn start(
        bin: &Path,
        ns: &Netns,
        uid: u32,
        dir: &Path,
        cert_key: (&Path, &Path),
        profiles: &[(&str, &Path)],
        socket: &Path,
    ) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let config_dir = dir.join("aovpn");
        let user_dir = config_dir.join("user");
        fs::create_dir_all(&user_dir)?;
        fs::copy(cert_key.0, user_dir.join("certificate.pem"))?;
        fs::copy(cert_key.1, user_dir.join("key.pem"))?;
        fs::set_permissions(user_dir.join("key.pem"), fs::Permissions::from_mode(0o600))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        chown_tree(dir, uid)?;
        for (name, file) in profiles {
            let readable = dir.join(format!("{name}.xml"));
            fs::copy(file, &readable)?;
            chown_tree(&readable, uid)?;
            let out = Command::new("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .env("XDG_CONFIG_HOME", dir)
                .env("HOME", dir)
                .arg(bin)
                .args(["profile", "add", "--scope", "user", "--name", name])
                .arg(&readable)
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "adding user profile {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let setpriv = PathBuf::from("/usr/bin/setpriv");
        let args = vec![
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
            bin.display().to_string(),
            "user-helper".to_owned(),
            "--config-dir".to_owned(),
            config_dir.display().to_string(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--rescan-secs".to_owned(),
            "1".to_owned(),
        ];
        let log = dir.join("helper.log");
        let daemon = Daemon::spawn(
            ns,
            &setpriv,
            &args,
            log,
            &format!("aovpn user-helper (uid {uid})"),
        )?;
        Ok(UserHelperProcess { daemon, config_dir })
    }

    /// The user's aovpn directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Everything the helper logged.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// SIGTERM (the user logs out).
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.daemon.stop()
    }
}

fn chown_tree(path: &Path, uid: u32) -> io::Result<()> {
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    let group = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(path, owner, group).map_err(io::Error::from)?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}
