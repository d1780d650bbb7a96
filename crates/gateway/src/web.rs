//! The admin page (`[web]`, off by default): the sessions, pool use per group, recent
//! failures with their reasons and the last hour's throughput as a chart, and a disconnect
//! button behind a confirmation. Served on a loopback address (reach it over an SSH tunnel)
//! to whoever shows the token from `token_file`: the login form gives a random session id
//! (8 hours) in an HttpOnly, SameSite=Strict cookie, so another site can neither read the
//! page nor post a disconnect (which also requires a JSON body, something a cross-site form
//! cannot send); requests naming another Host (DNS rebinding) are refused; wrong tokens are
//! rate-limited.
//!
//! Routing and the page's data are here; the gateway's loop supplies the sessions and does
//! the disconnects.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::admin::Session;
use crate::config::FileError;
use crate::http::{Request, Response};

/// Failures kept for the page.
const MAX_FAILURES: usize = 50;
/// Throughput samples kept: an hour at one per 5 s.
const MAX_SAMPLES: usize = 720;
/// Shortest token accepted from the token file.
const MIN_TOKEN: usize = 16;
const COOKIE: &str = "aovpn_admin";
/// How long a login lasts, and how many may be open at once (the oldest goes).
const SESSION_SECS: u64 = 8 * 3600;
const MAX_SESSIONS: usize = 16;
/// Wrong tokens allowed per minute before every login is refused for the rest of it.
const MAX_WRONG_PER_MINUTE: u32 = 10;

const PAGE: &str = include_str!("../web/admin.html");
const SCRIPT: &str = include_str!("../web/admin.js");
const STYLE: &str = include_str!("../web/admin.css");
const LOGIN: &str = include_str!("../web/login.html");

/// A client that could not connect, as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// Unix time.
    pub at: u64,
    pub from: String,
    pub claims: String,
    pub reason: String,
    pub what_to_do: String,
}

/// The data plane's byte totals at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub at: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A pool's use.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUse {
    pub group: String,
    pub size: i64,
    pub leased: i64,
}

/// What the page shows, as `GET /api/state` returns it.
#[derive(Debug, Serialize)]
pub struct State<'a> {
    pub now: u64,
    pub sessions: Vec<Session>,
    pub pools: Vec<PoolUse>,
    pub failures: &'a VecDeque<FailureRecord>,
    pub throughput: &'a VecDeque<Sample>,
}

/// What a request needs from the gateway.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered here.
    Respond(Response),
    /// The page's data: answer with [`AdminPage::state_response`].
    State,
    /// End this client's sessions, then answer with [`AdminPage::disconnect_response`].
    Disconnect { target: String },
}

#[derive(Deserialize)]
struct DisconnectBody {
    target: String,
}

/// The page's own state: its token and the history the gateway feeds it.
pub struct AdminPage {
    /// SHA-256 of the token: compared digest to digest, so the time taken says nothing
    /// about its length or contents.
    token_digest: [u8; 32],
    /// Login sessions: (SHA-256 of the session id, expiry in unix seconds).
    sessions: VecDeque<([u8; 32], u64)>,
    /// Wrong tokens in the current minute: (minute, count).
    wrong: (u64, u32),
    /// The Host values the page answers to (its listen address, `localhost` on its port).
    hosts: Vec<String>,
    failures: VecDeque<FailureRecord>,
    throughput: VecDeque<Sample>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

impl std::fmt::Debug for AdminPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPage")
            .field("failures", &self.failures.len())
            .field("samples", &self.throughput.len())
            .finish_non_exhaustive()
    }
}

impl AdminPage {
    /// Reads the token (the file's first line; at least 16 characters; the file not readable
    /// by every user).
    pub fn load(token_file: &Path) -> Result<AdminPage, FileError> {
        use std::os::unix::fs::MetadataExt as _;
        let io = |source| FileError::Io {
            path: token_file.to_owned(),
            source,
        };
        let invalid = |why| FileError::Invalid {
            path: token_file.to_owned(),
            why,
        };
        let meta = std::fs::metadata(token_file).map_err(io)?;
        // Like the gateway's key: its group (the service's) may read it, nobody else.
        if meta.mode() & 0o007 != 0 {
            return Err(invalid(format!(
                "readable by every user (mode {:o}): chmod 640 it",
                meta.mode() & 0o777
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(token_file).map_err(io)?);
        let token = text.lines().next().unwrap_or("").trim();
        if token.len() < MIN_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "the token must be at least {MIN_TOKEN} printable characters"
            )));
        }
        Ok(AdminPage::with_token(token))
    }

    pub fn with_token(token: &str) -> AdminPage {
        AdminPage {
            token_digest: digest(token.as_bytes()),
            sessions: VecDeque::new(),
            wrong: (0, 0),
            hosts: Vec::new(),
            failures: VecDeque::new(),
            throughput: VecDeque::new(),
        }
    }

    /// The page answers only requests naming this address (or `localhost` on its port) as
    /// Host: another name pointing at 127.0.0.1 is a DNS rebinding attack.
    pub fn answering_as(mut self, listen: std::net::SocketAddr) -> AdminPage {
        self.hosts = vec![listen.to_string(), format!("localhost:{}", listen.port())];
        self
    }

    pub fn note_failure(&mut self, failure: FailureRecord) {
        if self.failures.len() == MAX_FAILURES {
            self.failures.pop_back();
        }
        self.failures.push_front(failure);
    }

    pub fn sample(&mut self, sample: Sample) {
        if self.throughput.len() == MAX_SAMPLES {
            self.throughput.pop_front();
        }
        self.throughput.push_back(sample);
    }

    /// A login session's cookie, or the token itself as a bearer (scripts).
    fn authorized(&self, request: &Request, now: u64) -> bool {
        if let Some(id) = request.cookie(COOKIE) {
            let id = digest(id.as_bytes());
            return self
                .sessions
                .iter()
                .any(|(s, until)| bool::from(s.ct_eq(&id)) && *until > now);
        }
        request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| bool::from(digest(t.as_bytes()).ct_eq(&self.token_digest)))
    }

    /// What to do with a request at `now` (unix seconds); `random` makes session ids.
    pub fn route(
        &mut self,
        request: &Request,
        now: u64,
        random: impl FnOnce() -> [u8; 16],
    ) -> Route {
        if !self.hosts.is_empty()
            && !request
                .header("host")
                .is_some_and(|h| self.hosts.iter().any(|ours| ours.eq_ignore_ascii_case(h)))
        {
            return Route::Respond(secured(Response::text(
                "421 Misdirected Request",
                "not this host\n",
            )));
        }
        let method = request.method.as_str();
        let path = request.path.as_str();
        match (method, path) {
            ("GET", "/login") => return Route::Respond(html(LOGIN)),
            ("POST", "/login") => return Route::Respond(self.login(request, now, random)),
            ("GET", "/admin.css") => {
                return Route::Respond(secured(Response::new("200 OK", "text/css", STYLE)));
            }
            _ => {}
        }
        if !self.authorized(request, now) {
            return Route::Respond(match method {
                "GET" if path == "/" => {
                    Response::text("303 See Other", "log in\n").with("Location", "/login")
                }
                _ => secured(Response::text("401 Unauthorized", "log in at /login\n")),
            });
        }
        match (method, path) {
            ("GET", "/") => Route::Respond(html(PAGE)),
            ("GET", "/admin.js") => {
                Route::Respond(secured(Response::new("200 OK", "text/javascript", SCRIPT)))
            }
            ("GET", "/api/state") => Route::State,
            ("POST", "/api/disconnect") => {
                let json = request
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json"));
                match serde_json::from_slice::<DisconnectBody>(&request.body) {
                    Ok(body) if json && !body.target.trim().is_empty() => Route::Disconnect {
                        target: body.target,
                    },
                    _ => Route::Respond(secured(Response::text(
                        "400 Bad Request",
                        "a JSON body {\"target\": IDENTITY or ADDRESS}\n",
                    ))),
                }
            }
            ("GET", _) => Route::Respond(secured(Response::text("404 Not Found", "not here\n"))),
            _ => Route::Respond(secured(Response::text("405 Method Not Allowed", "no\n"))),
        }
    }

    fn login(
        &mut self,
        request: &Request,
        now: u64,
        random: impl FnOnce() -> [u8; 16],
    ) -> Response {
        let minute = now / 60;
        if self.wrong.0 == minute && self.wrong.1 >= MAX_WRONG_PER_MINUTE {
            return secured(Response::text(
                "429 Too Many Requests",
                "too many wrong tokens: wait a minute\n",
            ));
        }
        let token = Zeroizing::new(
            String::from_utf8_lossy(&request.body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(percent_decode)
                .unwrap_or_default(),
        );
        if !bool::from(digest(token.as_bytes()).ct_eq(&self.token_digest)) {
            if self.wrong.0 != minute {
                self.wrong = (minute, 0);
            }
            self.wrong.1 += 1;
            if self.wrong.1 == 1 || self.wrong.1 == MAX_WRONG_PER_MINUTE {
                tracing::warn!(
                    wrong_this_minute = self.wrong.1,
                    "admin page: a wrong token"
                );
            }
            return secured(Response::text("403 Forbidden", "wrong token\n"));
        }
        let id: String = random().iter().map(|b| format!("{b:02x}")).collect();
        self.sessions.retain(|(_, until)| *until > now);
        if self.sessions.len() == MAX_SESSIONS {
            self.sessions.pop_front();
        }
        self.sessions
            .push_back((digest(id.as_bytes()), now + SESSION_SECS));
        secured(Response::text("303 See Other", "logged in\n"))
            .with("Location", "/")
            .with(
                "Set-Cookie",
                format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECS}"),
            )
    }

    /// The page's data.
    pub fn state_response(
        &self,
        now: u64,
        sessions: Vec<Session>,
        pools: Vec<PoolUse>,
    ) -> Response {
        let state = State {
            now,
            sessions,
            pools,
            failures: &self.failures,
            throughput: &self.throughput,
        };
        match serde_json::to_vec(&state) {
            Ok(body) => secured(Response::new("200 OK", "application/json", body)),
            Err(e) => secured(Response::text("500 Internal Server Error", &e.to_string())),
        }
    }

    /// The answer to a disconnect: what the admin socket would have said.
    pub fn disconnect_response(reply: &crate::admin::Reply) -> Response {
        let body = serde_json::json!({
            "ok": reply.ok,
            "message": reply.message,
            "error": reply.error,
        });
        let status = if reply.ok { "200 OK" } else { "404 Not Found" };
        secured(Response::new(status, "application/json", body.to_string()))
    }
}

/// No caching, no framing, no referrer, and only this origin's own script and style.
fn secured(response: Response) -> Response {
    response
        .with("Cache-Control", "no-store")
        .with("X-Frame-Options", "DENY")
        .with("X-Content-Type-Options", "nosniff")
        .with("Referrer-Policy", "no-referrer")
        .with(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        )
}

fn html(page: &str) -> Response {
    secured(Response::new("200 OK", "text/html; charset=utf-8", page))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";
    const NOW: u64 = 1_000_000;

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn route_at(page: &mut AdminPage, r: &Request, now: u64) -> Route {
        page.route(r, now, || [7; 16])
    }

    fn route(page: &mut AdminPage, r: &Request) -> Route {
        route_at(page, r, NOW)
    }

    fn status(route: Route) -> &'static str {
        match route {
            Route::Respond(r) => r.status,
            Route::State => "state",
            Route::Disconnect { .. } => "disconnect",
        }
    }

    /// Logs in; the cookie header to send afterwards.
    fn log_in(page: &mut AdminPage) -> String {
        let Route::Respond(r) = route(
            page,
            &request("POST", "/login", &[], &format!("token={TOKEN}")),
        ) else {
            panic!("no response");
        };
        assert_eq!(r.status, "303 See Other");
        let set = r
            .headers
            .iter()
            .find(|(n, _)| *n == "Set-Cookie")
            .unwrap()
            .1
            .clone();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(
            !set.contains(TOKEN),
            "the token itself went into the cookie: {set}"
        );
        set.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn nothing_but_the_login_form_without_a_login() {
        let mut page = AdminPage::with_token(TOKEN);
        assert_eq!(
            status(route(&mut page, &request("GET", "/", &[], ""))),
            "303 See Other"
        );
        assert_eq!(
            status(route(&mut page, &request("GET", "/api/state", &[], ""))),
            "401 Unauthorized"
        );
        // The token itself is not a session.
        let raw = format!("{COOKIE}={TOKEN}");
        assert_eq!(
            status(route(
                &mut page,
                &request("GET", "/api/state", &[("cookie", &raw)], "")
            )),
            "401 Unauthorized"
        );
        assert_eq!(
            status(route(&mut page, &request("GET", "/login", &[], ""))),
            "200 OK"
        );
        let refused = route(&mut page, &request("POST", "/login", &[], "token=guess"));
        assert_eq!(status(refused), "403 Forbidden");
    }

    #[test]
    fn a_login_is_a_session_that_ends() {
        let mut page = AdminPage::with_token(TOKEN);
        let cookie = log_in(&mut page);
        let state = request("GET", "/api/state", &[("cookie", &cookie)], "");
        assert_eq!(route(&mut page, &state), Route::State);
        assert_eq!(
            status(route_at(&mut page, &state, NOW + SESSION_SECS + 1)),
            "401 Unauthorized"
        );
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            route(
                &mut page,
                &request("GET", "/api/state", &[("authorization", &bearer)], "")
            ),
            Route::State
        );
    }

    #[test]
    fn wrong_tokens_are_limited_per_minute() {
        let mut page = AdminPage::with_token(TOKEN);
        let wrong = request("POST", "/login", &[], "token=guess");
        for _ in 0..MAX_WRONG_PER_MINUTE {
            assert_eq!(status(route(&mut page, &wrong)), "403 Forbidden");
        }
        let right = request("POST", "/login", &[], &format!("token={TOKEN}"));
        assert_eq!(status(route(&mut page, &right)), "429 Too Many Requests");
        assert_eq!(
            status(route_at(&mut page, &right, NOW + 60)),
            "303 See Other"
        );
    }

    #[test]
    fn another_host_name_is_refused() {
        let listen: std::net::SocketAddr = "127.0.0.1:9478".parse().unwrap();
        let mut page = AdminPage::with_token(TOKEN).answering_as(listen);
        let login = request("GET", "/login", &[("host", "127.0.0.1:9478")], "");
        assert_eq!(status(route(&mut page, &login)), "200 OK");
        let login = request("GET", "/login", &[("host", "localhost:9478")], "");
        assert_eq!(status(route(&mut page, &login)), "200 OK");
        let rebound = request("GET", "/login", &[("host", "attacker.example:9478")], "");
        assert_eq!(
            status(route(&mut page, &rebound)),
            "421 Misdirected Request"
        );
        let none = request("GET", "/login", &[], "");
        assert_eq!(status(route(&mut page, &none)), "421 Misdirected Request");
    }

    #[test]
    fn a_disconnect_needs_a_login_and_a_json_body() {
        let mut page = AdminPage::with_token(TOKEN);
        let cookie = log_in(&mut page);
        let body = r#"{"target":"alice@corp.example"}"#;
        assert_eq!(
            route(
                &mut page,
                &request(
                    "POST",
                    "/api/disconnect",
                    &[("cookie", &cookie), ("content-type", "application/json")],
                    body
                )
            ),
            Route::Disconnect {
                target: "alice@corp.example".into()
            }
        );
        // What a cross-site form could send: no JSON content type.
        assert_eq!(
            status(route(
                &mut page,
                &request(
                    "POST",
                    "/api/disconnect",
                    &[
                        ("cookie", &cookie),
                        ("content-type", "application/x-www-form-urlencoded")
                    ],
                    body
                )
            )),
            "400 Bad Request"
        );
        assert_eq!(
            status(route(
                &mut page,
                &request(
                    "POST",
                    "/api/disconnect",
                    &[("content-type", "application/json")],
                    body
                )
            )),
            "401 Unauthorized"
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut page = AdminPage::with_token(TOKEN);
        for i in 0..1000 {
            page.sample(Sample {
                at: i,
                bytes_in: i,
                bytes_out: i,
            });
            page.note_failure(FailureRecord {
                at: i,
                from: String::new(),
                claims: String::new(),
                reason: format!("{i}"),
                what_to_do: String::new(),
            });
        }
        assert_eq!(page.throughput.len(), MAX_SAMPLES);
        assert_eq!(page.failures.len(), MAX_FAILURES);
        assert_eq!(page.failures[0].reason, "999");
    }

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%zz%4"), "a+b c%zz%4");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
