//! RegisterDNS: which name, zone and server to register with once the tunnel is up.

use std::net::SocketAddr;

use super::Connection;
use crate::register_dns::{InvalidRegistration, Registrar, Registration, RegistrationStatus};

impl Connection {
    /// RegisterDNS: the name under the configured zone, else the profile's first suffix, else
    /// the gateway's first internal domain; sent to the configured server, else the first
    /// pushed one the tunnel has an address for. Without either, the status says so.
    pub(super) fn start_registration(&mut self, child: &tunnel::ChildInfo) {
        let Some(settings) = self.options.register_dns.clone() else {
            return;
        };
        let zone = settings
            .zone
            .clone()
            .or_else(|| self.options.dns_suffixes.first().cloned())
            .or_else(|| child.dns_domains.first().cloned());
        let host = settings
            .host_name
            .clone()
            .or_else(crate::register_dns::host_name);
        let server = settings.server.or_else(|| {
            child
                .dns_servers
                .iter()
                .find(|s| child.virtual_ips.iter().any(|v| v.is_ipv4() == s.is_ipv4()))
                .copied()
        });
        let planned = (|| {
            let zone = zone.ok_or(
                "no zone: the profile has no DNSSuffix and the gateway pushes no internal domain",
            )?;
            let host = host.ok_or("this machine has no host name")?;
            let server = server.ok_or("no DNS server to send the update to")?;
            let source = child
                .virtual_ips
                .iter()
                .find(|v| v.is_ipv4() == server.is_ipv4())
                .copied()
                .ok_or("the tunnel has no address of the DNS server's family")?;
            let registration = Registration::new(
                &host,
                &zone,
                child.virtual_ips.clone(),
                &crate::register_dns::machine_id(),
                settings.ttl,
            )?;
            Ok::<_, InvalidRegistration>((registration, server, source))
        })();
        match planned {
            Ok((registration, server, source)) => {
                let target = crate::register_dns::Target {
                    server: SocketAddr::new(server, 53),
                    source,
                    interface: self.status.interface.clone(),
                };
                self.registrar = Some(Registrar::start(settings, registration, target));
            }
            Err(why) => {
                tracing::warn!("RegisterDNS not done: {why}");
                self.status.dns_registration = Some(RegistrationStatus {
                    state: "failed".into(),
                    detail: Some(why.to_string()),
                    ..RegistrationStatus::default()
                });
            }
        }
    }
}
