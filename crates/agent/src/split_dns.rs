//! Split DNS (a profile's DomainNameInformation, Windows' NRPT) where systemd-resolved does not
//! run: a small forwarding stub on loopback that resolv.conf points at. A query goes to the
//! servers of the most specific rule whose namespace covers its name, every other query to
//! the servers the machine would have used anyway; a query with nowhere to go is answered
//! SERVFAIL at once (never sent elsewhere). Queries and answers pass unchanged; only the
//! question is read (with hickory-proto), and an answer is taken only from the server asked,
//! on a socket opened for that query, with the ID we gave the query upstream and its question.
//!
//! The sockets are bound when the agent starts, while it may still bind port 53.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Where the stub listens (a loopback address of its own, beside resolved's 127.0.0.53).
pub const STUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 53, 1);

/// How long one server gets to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest DNS message over UDP.
const MAX_UDP: usize = 65_535;

/// UDP queries relayed at once; beyond that, new ones are dropped (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 256;

/// TCP clients served at once, apart from UDP: idle connections cannot starve UDP.
const MAX_TCP_CLIENTS: usize = 64;

/// How long a TCP client may take to send a query.
const TCP_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One namespace and its servers, from DomainNameInformation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRule {
    /// `.corp.example` (the domain and every name under it), `host.corp.example` (that name
    /// only) or `.` (every name), lower case.
    pub namespace: String,
    pub servers: Vec<IpAddr>,
}

/// The rules of every tunnel, and the servers for everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitRules {
    pub rules: Vec<SplitRule>,
    pub default: Vec<IpAddr>,
}

impl SplitRules {
    /// The servers for `name` (with or without its trailing dot, any case): the longest
    /// namespace that covers it, else the default. A covering rule without servers gives
    /// none: its names must not go to the default servers.
    pub fn servers_for(&self, name: &str) -> &[IpAddr] {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<(usize, &SplitRule)> = None;
        for rule in &self.rules {
            let specificity = match covers(&rule.namespace, &name) {
                Some(s) => s,
                None => continue,
            };
            if best.is_none_or(|(b, _)| specificity > b) {
                best = Some((specificity, rule));
            }
        }
        match best {
            Some((_, rule)) => &rule.servers,
            None => &self.default,
        }
    }
}

/// A DomainNameInformation name as a namespace: `.` (everything), `.suffix` or an exact name,
/// lower case, one leading dot at most, no trailing dot; `None` for names with empty labels.
pub fn namespace(domain: &str) -> Option<String> {
    let d = domain.trim().to_ascii_lowercase();
    if d == "." {
        return Some(d);
    }
    let (suffix, rest) = match d.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, d.as_str()),
    };
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.is_empty() || rest.split('.').any(str::is_empty) {
        return None;
    }
    Some(if suffix {
        format!(".{rest}")
    } else {
        rest.to_owned()
    })
}

/// How specific a match of `namespace` on `name` is (longer is more specific; an exact name
/// beats a suffix of the same length), or `None`.
fn covers(namespace: &str, name: &str) -> Option<usize> {
    if namespace == "." {
        return Some(0);
    }
    if let Some(suffix) = namespace.strip_prefix('.') {
        let under = name.len() > suffix.len()
            && name.ends_with(suffix)
            && name.as_bytes()[name.len() - suffix.len() - 1] == b'.';
        return (name == suffix || under).then_some(2 * suffix.len());
    }
    (name == namespace.trim_end_matches('.')).then_some(2 * namespace.len() + 1)
}

/// The stub's listening sockets, bound before the agent gives up the right to bind port 53.
#[derive(Debug)]
pub struct StubSockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

impl StubSockets {
    /// Binds UDP and TCP port 53 on [`STUB_ADDRESS`].
    pub fn bind() -> io::Result<Self> {
        let addr = SocketAddr::from((STUB_ADDRESS, 53));
        let udp = std::net::UdpSocket::bind(addr)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok(Self { udp, tcp })
    }
}

/// Serves queries with the current `rules` until the task is dropped.
pub async fn serve(sockets: StubSockets, rules: Arc<RwLock<SplitRules>>) -> io::Result<()> {
    let udp = Arc::new(UdpSocket::from_std(sockets.udp)?);
    let tcp = TcpListener::from_std(sockets.tcp)?;
    let udp_budget = Arc::new(tokio::sync::Semaphore::new(MAX_UDP_IN_FLIGHT));
    let tcp_budget = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CLIENTS));
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        tokio::select! {
            received = udp.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!("split DNS stub: {e}");
                        continue;
                    }
                };
                let Ok(permit) = udp_budget.clone().try_acquire_owned() else {
                    continue;
                };
                let query = buf[..n].to_vec();
                let rules = rules.clone();
                let udp = udp.clone();
                tokio::spawn(async move {
                    if let Some(answer) = resolve(&query, &rules, Transport::Udp).await {
                        let _ = udp.send_to(&answer, client).await;
                    }
                    drop(permit);
                });
            }
            accepted = tcp.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: do not spin on it.
                        tracing::debug!("split DNS stub: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = tcp_budget.clone().try_acquire_owned() else {
                    continue;
                };
                let rules = rules.clone();
                tokio::spawn(async move {
                    let _ = relay_tcp(stream, &rules).await;
                    drop(permit);
                });
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// The answer to one query: from its servers, or SERVFAIL when it has none or none answered;
/// nothing for what is not a DNS query.
async fn resolve(
    query: &[u8],
    rules: &RwLock<SplitRules>,
    transport: Transport,
) -> Option<Vec<u8>> {
    let message = hickory_proto::op::Message::from_vec(query).ok()?;
    let question = message.queries.first()?.clone();
    let servers: Vec<SocketAddr> = {
        let rules = rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rules
            .servers_for(&question.name().to_ascii())
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect()
    };
    // Upstream the query carries an ID of ours, not the client's (which may be guessable):
    // an off-path forger must match a random ID and port both.
    let upstream_id = ipsec_crypto::Provider::system()
        .random_array::<2>()
        .unwrap_or([query[0] ^ 0x5a, query[1] ^ 0xa5]);
    let mut upstream = query.to_vec();
    upstream[..2].copy_from_slice(&upstream_id);
    let answer = match transport {
        Transport::Udp => ask_udp(&upstream, &servers).await,
        Transport::Tcp => ask_tcp(&upstream, &servers).await,
    };
    let answers_the_query = |a: &Vec<u8>| {
        hickory_proto::op::Message::from_vec(a).is_ok_and(|m| {
            m.metadata.id == u16::from_be_bytes(upstream_id) && m.queries.first() == Some(&question)
        })
    };
    match answer {
        Some(mut a) if answers_the_query(&a) => {
            a[..2].copy_from_slice(&query[..2]);
            Some(a)
        }
        _ => {
            let mut fail = hickory_proto::op::Message::error_msg(
                message.metadata.id,
                message.metadata.op_code,
                hickory_proto::op::ResponseCode::ServFail,
            );
            fail.add_query(question);
            fail.to_vec().ok()
        }
    }
}

/// Asks each server in turn over UDP; the first answer from the server asked that carries the
/// query's ID.
pub(crate) async fn ask_udp(query: &[u8], servers: &[SocketAddr]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for server in servers {
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(socket) = UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.connect(server).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_UDP];
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            if buf.get(..2) == Some(id) {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// One TCP client: length-prefixed queries, each relayed over TCP to its servers.
async fn relay_tcp(mut client: TcpStream, rules: &RwLock<SplitRules>) -> io::Result<()> {
    loop {
        let read = async {
            let len = usize::from(client.read_u16().await?);
            let mut query = vec![0u8; len];
            client.read_exact(&mut query).await?;
            io::Result::Ok(query)
        };
        let Ok(Ok(query)) = tokio::time::timeout(TCP_READ_TIMEOUT, read).await else {
            return Ok(());
        };
        let Some(answer) = resolve(&query, rules, Transport::Tcp).await else {
            return Ok(());
        };
        let len = u16::try_from(answer.len()).map_err(io::Error::other)?;
        client.write_u16(len).await?;
        client.write_all(&answer).await?;
    }
}

async fn ask_tcp(query: &[u8], servers: &[SocketAddr]) -> Option<Vec<u8>> {
    let len = u16::try_from(query.len()).ok()?;
    for server in servers {
        let attempt = async {
            let mut s = TcpStream::connect(server).await?;
            s.write_u16(len).await?;
            s.write_all(query).await?;
            let n = usize::from(s.read_u16().await?);
            let mut answer = vec![0u8; n];
            s.read_exact(&mut answer).await?;
            io::Result::Ok(answer)
        };
        if let Ok(Ok(answer)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await
            && answer.get(..2) == query.get(..2)
        {
            return Some(answer);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_most_specific_namespace_wins() {
        let rules = SplitRules {
            rules: vec![
                SplitRule {
                    namespace: ".corp.example".into(),
                    servers: vec![ip("10.1.0.53")],
                },
                SplitRule {
                    namespace: ".lab.corp.example".into(),
                    servers: vec![ip("10.2.0.53")],
                },
                SplitRule {
                    namespace: "intranet.lab.corp.example".into(),
                    servers: vec![ip("10.3.0.53")],
                },
            ],
            default: vec![ip("192.0.2.53")],
        };
        assert_eq!(rules.servers_for("www.corp.example."), [ip("10.1.0.53")]);
        assert_eq!(rules.servers_for("CORP.example"), [ip("10.1.0.53")]);
        assert_eq!(rules.servers_for("x.lab.corp.example"), [ip("10.2.0.53")]);
        assert_eq!(
            rules.servers_for("intranet.lab.corp.example"),
            [ip("10.3.0.53")]
        );
        assert_eq!(rules.servers_for("notcorp.example"), [ip("192.0.2.53")]);
        assert_eq!(rules.servers_for("www.public.example"), [ip("192.0.2.53")]);
        let everything = SplitRules {
            rules: vec![SplitRule {
                namespace: ".".into(),
                servers: vec![ip("10.1.0.53")],
            }],
            default: vec![ip("192.0.2.53")],
        };
        assert_eq!(
            everything.servers_for("anything.example"),
            [ip("10.1.0.53")]
        );
    }

    #[test]
    fn namespaces_are_normalised_and_junk_refused() {
        assert_eq!(
            namespace(".Corp.Example.").as_deref(),
            Some(".corp.example")
        );
        assert_eq!(
            namespace("host.corp.example").as_deref(),
            Some("host.corp.example")
        );
        assert_eq!(namespace(".").as_deref(), Some("."));
        for junk in ["", "..corp.example", "a..b", ".."] {
            assert_eq!(namespace(junk), None, "{junk:?}");
        }
    }

    /// A query whose rule has no servers gets SERVFAIL at once, not the default servers;
    /// what is not a query gets nothing.
    #[tokio::test]
    async fn nowhere_to_go_is_servfail_not_the_default() {
        let rules = RwLock::new(SplitRules {
            rules: vec![SplitRule {
                namespace: ".corp.example".into(),
                servers: Vec::new(),
            }],
            default: vec![ip("192.0.2.53")],
        });
        let mut query = hickory_proto::op::Message::query();
        query.metadata.id = 4242;
        query.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("intranet.corp.example.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        let bytes = query.to_vec().unwrap();
        let answer = resolve(&bytes, &rules, Transport::Udp).await.unwrap();
        let answer = hickory_proto::op::Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.id, 4242);
        assert_eq!(
            answer.metadata.response_code,
            hickory_proto::op::ResponseCode::ServFail
        );
        assert_eq!(answer.queries, query.queries);
        assert!(
            resolve(b"\x00\x01garbage", &rules, Transport::Udp)
                .await
                .is_none()
        );
    }
}
