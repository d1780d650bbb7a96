//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol through a pipe
//! (`--remote-debugging-pipe`: requests and answers as NUL-terminated JSON on fds 3 and 4),
//! so a test drives a real browser inside a network namespace without any port of its own.
//! Started in its own process group, stopped by that pid.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::netns::Netns;

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A running browser with one page.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    messages: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts `chromium --headless` in `ns` with its profile and log in `dir`.
    pub fn start(ns: &Netns, dir: &Path) -> io::Result<Browser> {
        std::fs::create_dir_all(dir)?;
        let (their_in, our_out) = nix::unistd::pipe().map_err(io::Error::from)?;
        let (our_in, their_out) = nix::unistd::pipe().map_err(io::Error::from)?;
        let log = std::fs::File::create(dir.join("chromium.log"))?;
        let (in_fd, out_fd) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut cmd = ns.command([
            "chromium".to_owned(),
            "--headless".to_owned(),
            // Root in a namespace: Chromium's own sandbox needs user namespaces it cannot have.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--remote-debugging-pipe".to_owned(),
            format!("--user-data-dir={}", dir.join("profile").display()),
            "about:blank".to_owned(),
        ]);
        cmd.stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, setpgid).
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(in_fd, 3), (out_fd, 4)] {
                    if nix::libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
                    .map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop((their_in, their_out));
        let (tx, messages) = mpsc::channel();
        let reader = std::fs::File::from(our_in);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            to_browser: std::fs::File::from(our_out),
            messages,
            next_id: 1,
            session: None,
        };
        browser.call("Browser.getVersion", json!({}))?;
        Ok(browser)
    }

    /// One DevTools call (on the page once [`Browser::open`] attached to it); its result.
    pub fn call(&mut self, method: &str, params: Value) -> io::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session
            && !method.starts_with("Target.")
            && !method.starts_with("Browser.")
        {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(io::Error::other)?;
        bytes.push(0);
        self.to_browser.write_all(&bytes)?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .messages
                .recv_timeout(left)
                .map_err(|_| io::Error::other(format!("{method}: no answer from chromium")))?;
            if answer["id"] == json!(id) {
                if let Some(e) = answer.get("error") {
                    return Err(io::Error::other(format!("{method}: {e}")));
                }
                return Ok(answer["result"].clone());
            }
        }
    }

    /// Opens `url` in a new page and attaches to it.
    pub fn open(&mut self, url: &str) -> io::Result<()> {
        let target = self.call("Target.createTarget", json!({ "url": url }))?;
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )?;
        self.session = attached["sessionId"].as_str().map(str::to_owned);
        self.call("Runtime.enable", json!({}))?;
        Ok(())
    }

    /// Evaluates `expression` in the page (promises awaited); its value.
    pub fn eval(&mut self, expression: &str) -> io::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(io::Error::other(format!("{expression}: {e}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expression` until it is true (or `timeout` passes: the last value and
    /// the page's text in the error).
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression).unwrap_or(Value::Null);
            if value == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{expression} stayed {value}; the page says:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group (renderers, zygote) by the browser's pid.
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
