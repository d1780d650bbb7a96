//! Names: each server's name resolves, and the split DNS servers answer for their namespace.

use std::net::SocketAddr;

use super::{Check, Verdict, bad, ok};
use crate::connection::resolve;

/// Each server's name resolves; the addresses found (in the profile's order).
pub async fn check_servers(servers: &[String]) -> (Vec<Check>, Vec<(String, SocketAddr)>) {
    let mut checks = Vec::new();
    let mut found = Vec::new();
    for server in servers {
        match resolve(server).await {
            Ok((name, addr)) => {
                checks.push(ok(&format!("dns {server}"), addr.to_string()));
                found.push((name, addr));
            }
            Err(e) => checks.push(bad(
                &format!("dns {server}"),
                Verdict::Problem,
                e.to_string(),
                "check the name in the profile's Servers and this machine's DNS",
            )),
        }
    }
    (checks, found)
}

/// The DNS servers of the profile's DomainNameInformation answer for their namespace (asked
/// for its SOA; through the tunnel while it is up, as the stub or resolved would ask).
pub async fn check_split_dns(rules: &[profile::plan::SplitDns]) -> Vec<Check> {
    let mut out = Vec::new();
    for rule in rules {
        let zone = rule.domain.trim_start_matches('.');
        let zone = if zone.is_empty() { "." } else { zone };
        let Ok(name) =
            hickory_proto::rr::Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
        else {
            continue;
        };
        for server in &rule.servers {
            let mut query = hickory_proto::op::Message::query();
            query.add_query(hickory_proto::op::Query::query(
                name.clone(),
                hickory_proto::rr::RecordType::SOA,
            ));
            let Ok(bytes) = query.to_vec() else { continue };
            let check = format!("dns {} @{server}", rule.domain);
            let answer = crate::split_dns::ask_udp(&bytes, &[SocketAddr::new(*server, 53)])
                .await
                .and_then(|a| hickory_proto::op::Message::from_vec(&a).ok());
            out.push(match answer {
                Some(a) => ok(&check, format!("answers ({})", a.metadata.response_code)),
                None => bad(
                    &check,
                    Verdict::Problem,
                    "no answer",
                    "the server must be reachable through the tunnel: a Route (or the gateway's pushed routes) must cover it",
                ),
            });
        }
    }
    out
}
