//! TrustedNetworkDetection: the DNS suffixes of the network the machine is on (not those our
//! tunnels add). With systemd-resolved they are the search domains of every link but ours (and
//! the global ones); without it, the `search`/`domain` entries of the original resolv.conf,
//! which is where DHCP clients put the network's domain.

use netio::dns::DnsBackend;

use crate::dns::SharedDns;

#[zbus::proxy(
    default_service = "org.freedesktop.resolve1",
    default_path = "/org/freedesktop/resolve1",
    interface = "org.freedesktop.resolve1.Manager"
)]
trait Resolve1Manager {
    /// (ifindex, domain, routing-only); ifindex 0 for global domains.
    #[zbus(property)]
    fn domains(&self) -> zbus::Result<Vec<(i32, String, bool)>>;
}

/// The network's DNS suffixes (lower case, no trailing dot), excluding links in `ours`.
pub async fn network_suffixes(dns: &SharedDns, ours: &[u32]) -> Vec<String> {
    match dns.backend() {
        DnsBackend::Resolved(_) => match resolved_domains(ours).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("systemd-resolved domains: {e}");
                Vec::new()
            }
        },
        DnsBackend::ResolvConf(_) => dns.network_search_domains(),
    }
}

async fn resolved_domains(ours: &[u32]) -> zbus::Result<Vec<String>> {
    let connection = zbus::Connection::system().await?;
    let manager = Resolve1ManagerProxy::new(&connection).await?;
    let mut out: Vec<String> = Vec::new();
    for (ifindex, domain, routing_only) in manager.domains().await? {
        let ours = u32::try_from(ifindex).is_ok_and(|i| ours.contains(&i));
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if !routing_only && !ours && !d.is_empty() && !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}
