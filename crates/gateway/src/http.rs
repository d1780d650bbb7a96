//! The gateway's tiny HTTP/1.1 listener, for the metrics and the admin page on local
//! addresses: one request per connection, the head parsed by `httparse` and bounded, a body
//! only with Content-Length and small, short timeouts, a few connections at a time. Each
//! request goes to the gateway's loop over a channel with the way back for its response, so
//! the loop, which owns the sessions, answers it; nothing is shared or locked.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Longest request head.
const MAX_HEAD: usize = 8 * 1024;
/// Longest request body (a form or a small JSON object).
const MAX_BODY: usize = 4 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const SLOTS: usize = 8;
const MAX_HEADERS: usize = 32;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: &'static str, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn text(status: &'static str, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn encode(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {}\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A request on its way to the loop, with the way back.
#[derive(Debug)]
pub struct Exchange {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Parses a request head (through the blank line); `None` when it is not a whole, valid head.
/// Returns the request without its body and the body's length.
pub fn parse_head(bytes: &[u8]) -> Option<(Request, usize, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = req.parse(bytes).ok()? else {
        return None;
    };
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let body_len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.trim().parse::<usize>().ok())?;
    Some((
        Request {
            method: req.method?.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: Vec::new(),
        },
        head_len,
        body_len,
    ))
}

/// Listens on `addr` and hands each request to the returned channel. Must be called inside a
/// tokio runtime.
pub async fn listen(
    addr: SocketAddr,
) -> std::io::Result<(mpsc::Receiver<Exchange>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (tx, rx) = mpsc::channel(SLOTS);
    let task = tokio::spawn(async move {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(SLOTS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: not a busy loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                serve(stream, tx).await;
            });
        }
    });
    Ok((rx, task))
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Result<Request, Response> {
    let mut data = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        if let Some((mut request, head_len, body_len)) = parse_head(&data) {
            if body_len > MAX_BODY {
                return Err(Response::text("413 Payload Too Large", "too large\n"));
            }
            while data.len() < head_len + body_len {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        return Err(Response::text("400 Bad Request", "short body\n"));
                    }
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
            request.body = data[head_len..head_len + body_len].to_vec();
            return Ok(request);
        }
        if data.len() > MAX_HEAD || data.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(Response::text("400 Bad Request", "bad request\n"));
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Err(Response::text("400 Bad Request", "bad request\n")),
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

async fn serve(mut stream: tokio::net::TcpStream, exchanges: mpsc::Sender<Exchange>) {
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => return,
        Ok(Err(refused)) => refused,
        Ok(Ok(request)) => {
            let (tx, rx) = oneshot::channel();
            let stopping = Response::text("503 Service Unavailable", "stopping\n");
            match exchanges.send(Exchange { request, reply: tx }).await {
                Ok(()) => rx.await.unwrap_or(stopping),
                Err(_) => stopping,
            }
        }
    };
    // A client that does not read its answer does not hold a slot for long.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let _ = stream.write_all(&response.encode()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_with_query_cookies_and_body_length() {
        let raw = b"POST /api/disconnect?x=1 HTTP/1.1\r\nHost: a\r\nCookie: a=1; aovpn_admin=tok\r\nContent-Length: 12\r\n\r\n{\"target\":1}";
        let (r, head, body) = parse_head(raw).unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("POST", "/api/disconnect", "x=1")
        );
        assert_eq!(r.cookie("aovpn_admin"), Some("tok"));
        assert_eq!(r.header("host"), Some("a"));
        assert_eq!(&raw[head..head + body], b"{\"target\":1}");
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_none());
        assert!(parse_head(b"\x00\x01 garbage\r\n\r\n").is_none());
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = Response::text("200 OK", "hi").with("X-A", "b").encode();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("X-A: b\r\n") && text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\nhi"));
    }
}
