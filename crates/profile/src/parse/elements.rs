//! One reader per ProfileXML element (VPNProfile, NativeProfile, Route, TrafficFilter,
//! DomainNameInformation, Proxy, ...), each building its part of the model.

use std::net::IpAddr;

use roxmltree::Node;

use crate::error::ErrorKind;
use crate::model::*;

use super::reader::{Cx, is};

impl Cx<'_> {
    pub(super) fn vpn_profile(&mut self, root: Node<'_, '_>) -> VpnProfile {
        let path = "VPNProfile";
        self.record(root, path);
        let mut p = VpnProfile::default();
        let repeated = [
            "DomainNameInformation",
            "TrafficFilter",
            "AppTrigger",
            "Route",
        ];
        for (node, key, cp) in self.children(root, path, &repeated) {
            let cp = cp.as_str();
            match key.as_str() {
                "profilename" => p.profile_name = self.string(node, cp),
                "edpmodeid" => {
                    p.edp_mode_id = self.string(node, cp);
                    self.windows_only(node, cp);
                }
                "remembercredentials" => p.remember_credentials = self.boolean(node, cp),
                "alwayson" => p.always_on = self.boolean(node, cp),
                "alwaysonactive" => p.always_on_active = self.boolean(node, cp),
                "dnssuffix" => p.dns_suffix = self.dns_names(node, cp),
                "trustednetworkdetection" => p.trusted_network_detection = self.dns_names(node, cp),
                "disableadvancedoptionseditbutton" => {
                    p.disable_advanced_options_edit_button = self.boolean(node, cp);
                    self.windows_only(node, cp);
                }
                "disabledisconnectbutton" => {
                    p.disable_disconnect_button = self.boolean(node, cp);
                    self.windows_only(node, cp);
                }
                "lockdown" => p.lock_down = self.boolean(node, cp),
                "devicetunnel" => p.device_tunnel = self.boolean(node, cp),
                "registerdns" => p.register_dns = self.boolean(node, cp),
                "bypassforlocal" => p.by_pass_for_local = self.boolean(node, cp),
                "requirevpnclientappui" => {
                    p.require_vpn_client_app_ui = self.boolean(node, cp);
                    self.windows_only(node, cp);
                }
                "dataencryption" => p.data_encryption = self.name(node, cp),
                "disableikev2fragmentation" => {
                    p.disable_ikev2_fragmentation = self.boolean(node, cp)
                }
                "ipv4interfacemetric" => p.ipv4_interface_metric = self.u32(node, cp, 1, 9999),
                "ipv6interfacemetric" => p.ipv6_interface_metric = self.u32(node, cp, 1, 9999),
                "networkoutagetime" => p.network_outage_time = self.u32(node, cp, 0, u32::MAX),
                "privatenetwork" => {
                    p.private_network = self.boolean(node, cp);
                    self.windows_only(node, cp);
                }
                "userascredentials" => {
                    p.use_ras_credentials = self.boolean(node, cp);
                    self.windows_only(node, cp);
                }
                "proxy" => p.proxy = Some(self.proxy(node, cp)),
                "domainnameinformation" => {
                    if let Some(d) = self.domain_name_information(node, cp) {
                        p.domain_name_information.push(d);
                    }
                }
                // The CSP's own SyncML example wraps the rules in a list element.
                "domainnameinformationlist" => {
                    for (child, ckey, ccp) in self.children(node, cp, &["DomainNameInformation"]) {
                        if ckey == "domainnameinformation" {
                            if let Some(d) = self.domain_name_information(child, &ccp) {
                                p.domain_name_information.push(d);
                            }
                        } else {
                            self.unknown(child, &ccp);
                        }
                    }
                }
                "trafficfilter" => p.traffic_filters.push(self.traffic_filter(node, cp)),
                "apptrigger" => {
                    self.windows_only(node, cp);
                    if let Some(id) = self.app_trigger(node, cp) {
                        p.app_triggers.push(id);
                    }
                }
                "nativeprofile" => p.native_profile = self.native_profile(node, cp),
                "route" => {
                    if let Some(r) = self.route(node, cp) {
                        p.routes.push(r);
                    }
                }
                "apnbinding" | "devicecompliance" | "pluginprofile" => {
                    self.windows_only(node, cp);
                    p.windows_only.push(self.raw(node));
                }
                _ => self.unknown(node, cp),
            }
        }
        p
    }

    pub(super) fn proxy(&mut self, node: Node<'_, '_>, path: &str) -> Proxy {
        let mut proxy = Proxy::default();
        for (child, key, cp) in self.children(node, path, &[]) {
            match key.as_str() {
                "autoconfigurl" => proxy.auto_config_url = self.string(child, &cp),
                "manual" => {
                    let servers = self.children(child, &cp, &[]);
                    let mut found = false;
                    for (s, skey, scp) in servers {
                        if skey == "server" {
                            found = true;
                            proxy.manual_server = self.string(s, &scp);
                        } else {
                            self.unknown(s, &scp);
                        }
                    }
                    if !found {
                        self.missing(child, &cp, "Server");
                    }
                }
                _ => self.unknown(child, &cp),
            }
        }
        proxy
    }

    pub(super) fn domain_name_information(
        &mut self,
        node: Node<'_, '_>,
        path: &str,
    ) -> Option<DomainNameInformation> {
        let mut domain = None;
        let mut d = DomainNameInformation {
            domain_name: String::new(),
            dns_servers: vec![],
            web_proxy_servers: None,
            auto_trigger: None,
            persistent: None,
        };
        for (child, key, cp) in self.children(node, path, &[]) {
            match key.as_str() {
                "domainname" => {
                    // Present but unusable still counts as present: one error is enough.
                    domain = Some(String::new());
                    let Some(v) = self.leaf(child, &cp) else {
                        continue;
                    };
                    if v == "." || is_dns_name(v.trim_start_matches('.')) {
                        domain = Some(v);
                    } else {
                        self.error(child, &cp, ErrorKind::InvalidDnsName { value: v });
                    }
                }
                "dnsservers" => {
                    let v = self.leaf(child, &cp).unwrap_or_default();
                    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if let Some(a) = self.address(child, &cp, s) {
                            d.dns_servers.push(a);
                        }
                    }
                }
                "webproxyservers" => d.web_proxy_servers = self.string(child, &cp),
                "autotrigger" => d.auto_trigger = self.boolean(child, &cp),
                "persistent" => d.persistent = self.boolean(child, &cp),
                _ => self.unknown(child, &cp),
            }
        }
        match domain {
            Some(name) => {
                d.domain_name = name;
                Some(d)
            }
            None => {
                self.missing(node, path, "DomainName");
                None
            }
        }
    }

    pub(super) fn traffic_filter(&mut self, node: Node<'_, '_>, path: &str) -> TrafficFilter {
        let mut f = TrafficFilter::default();
        for (child, key, cp) in self.children(node, path, &[]) {
            let cp = cp.as_str();
            match key.as_str() {
                "app" => f.app_id = self.app_id(child, cp),
                "claims" => f.claims = self.string(child, cp),
                "protocol" => {
                    f.protocol = self
                        .number(child, cp, 0, 255)
                        .and_then(|n| u8::try_from(n).ok())
                }
                "localportranges" => f.local_port_ranges = self.port_ranges(child, cp),
                "remoteportranges" => f.remote_port_ranges = self.port_ranges(child, cp),
                "localaddressranges" => f.local_address_ranges = self.address_ranges(child, cp),
                "remoteaddressranges" => f.remote_address_ranges = self.address_ranges(child, cp),
                "routingpolicytype" => f.routing_policy_type = self.name(child, cp),
                "direction" => f.direction = self.name(child, cp),
                _ => self.unknown(child, cp),
            }
        }
        f
    }

    /// `App/Id` (the 2018 XSD had `App` as plain text; both are accepted).
    pub(super) fn app_id(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        if !node.children().any(|c| c.is_element()) {
            return self.string(node, path);
        }
        let mut id = None;
        for (child, key, cp) in self.children(node, path, &[]) {
            if key == "id" {
                id = self.string(child, &cp);
            } else {
                self.unknown(child, &cp);
            }
        }
        if id.is_none() {
            self.missing(node, path, "Id");
        }
        id
    }

    pub(super) fn app_trigger(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        let mut id = None;
        let mut seen_app = false;
        for (child, key, cp) in self.children(node, path, &[]) {
            if key == "app" {
                seen_app = true;
                id = self.app_id(child, &cp);
            } else {
                self.unknown(child, &cp);
            }
        }
        if !seen_app {
            self.missing(node, path, "App");
        }
        id
    }

    pub(super) fn port_ranges(&mut self, node: Node<'_, '_>, path: &str) -> Vec<PortRange> {
        let v = self.leaf(node, path).unwrap_or_default();
        let mut out = Vec::new();
        for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                (Ok(first), Ok(last)) if first <= last => out.push(PortRange { first, last }),
                _ => {
                    let value = part.to_owned();
                    self.error(node, path, ErrorKind::InvalidPortRange { value });
                }
            }
        }
        out
    }

    pub(super) fn address_ranges(&mut self, node: Node<'_, '_>, path: &str) -> Vec<AddressRange> {
        let v = self.leaf(node, path).unwrap_or_default();
        let mut out = Vec::new();
        for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match parse_address_range(part) {
                Some(r) => out.push(r),
                None => self.error(
                    node,
                    path,
                    ErrorKind::InvalidAddress {
                        value: part.to_owned(),
                    },
                ),
            }
        }
        out
    }

    pub(super) fn route(&mut self, node: Node<'_, '_>, path: &str) -> Option<Route> {
        let mut address = None;
        let mut prefix = None;
        let mut saw = (false, false);
        let mut exclusion_route = None;
        let mut metric = None;
        for (child, key, cp) in self.children(node, path, &[]) {
            let cp = cp.as_str();
            match key.as_str() {
                "address" => {
                    saw.0 = true;
                    let v = self.leaf(child, cp).unwrap_or_default();
                    address = self.address(child, cp, &v);
                }
                "prefixsize" => {
                    saw.1 = true;
                    prefix = self
                        .number(child, cp, 0, 255)
                        .and_then(|n| u8::try_from(n).ok());
                }
                "exclusionroute" => exclusion_route = self.boolean(child, cp),
                "metric" => metric = self.u32(child, cp, 0, u32::MAX),
                _ => self.unknown(child, cp),
            }
        }
        if !saw.0 {
            self.missing(node, path, "Address");
        }
        if !saw.1 {
            self.missing(node, path, "PrefixSize");
        }
        Some(Route {
            address: address?,
            prefix_size: prefix?,
            exclusion_route,
            metric,
        })
    }

    pub(super) fn native_profile(
        &mut self,
        node: Node<'_, '_>,
        path: &str,
    ) -> Option<NativeProfile> {
        let mut servers = None;
        let mut authentication = None;
        let mut n = NativeProfile {
            servers: vec![],
            routing_policy_type: None,
            native_protocol_type: None,
            protocol_list: None,
            l2tp_psk: None,
            disable_class_based_default_route: None,
            plumb_ikev2_ts_as_routes: None,
            cryptography_suite: None,
            authentication: Authentication::default(),
        };
        for (child, key, cp) in self.children(node, path, &[]) {
            let cp = cp.as_str();
            match key.as_str() {
                "servers" => servers = Some(self.servers(child, cp)),
                "routingpolicytype" => n.routing_policy_type = self.name(child, cp),
                "nativeprotocoltype" => n.native_protocol_type = self.name(child, cp),
                "protocollist" => n.protocol_list = Some(self.protocol_list(child, cp)),
                "l2tppsk" => n.l2tp_psk = self.string(child, cp),
                "disableclassbaseddefaultroute" => {
                    n.disable_class_based_default_route = self.boolean(child, cp)
                }
                "plumbikev2tsasroutes" => n.plumb_ikev2_ts_as_routes = self.boolean(child, cp),
                "cryptographysuite" => n.cryptography_suite = Some(self.crypto_suite(child, cp)),
                "authentication" => authentication = Some(self.authentication(child, cp)),
                _ => self.unknown(child, cp),
            }
        }
        match servers {
            Some(s) => n.servers = s,
            None => self.missing(node, path, "Servers"),
        }
        match authentication {
            Some(a) => n.authentication = a,
            None => self.missing(node, path, "Authentication"),
        }
        Some(n)
    }

    pub(super) fn servers(&mut self, node: Node<'_, '_>, path: &str) -> Vec<Server> {
        let v = self.leaf(node, path).unwrap_or_default();
        let mut out = Vec::new();
        for entry in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, friendly) = match entry.split_once(';') {
                Some((h, f)) => (h.trim(), Some(f.trim()).filter(|f| !f.is_empty())),
                None => (entry, None),
            };
            if is_host(host) {
                out.push(Server {
                    host: host.to_owned(),
                    friendly_name: friendly.map(str::to_owned),
                });
            } else {
                self.error(
                    node,
                    path,
                    ErrorKind::InvalidServer {
                        value: entry.to_owned(),
                    },
                );
            }
        }
        if out.is_empty() && self.errors.iter().all(|e| e.element != path) {
            self.error(node, path, ErrorKind::InvalidServer { value: v });
        }
        out
    }

    pub(super) fn protocol_list(&mut self, node: Node<'_, '_>, path: &str) -> ProtocolList {
        let mut list = ProtocolList::default();
        for (child, key, cp) in self.children(node, path, &["NativeProtocol"]) {
            match key.as_str() {
                "nativeprotocol" => {
                    let mut ty = None;
                    for (t, tkey, tcp) in self.children(child, &cp, &[]) {
                        if tkey == "type" {
                            ty = self.name::<ListedProtocol>(t, &tcp);
                        } else {
                            self.unknown(t, &tcp);
                        }
                    }
                    match ty {
                        Some(t) => list.protocols.push(t),
                        None if !child.children().any(|c| is(&c, "Type")) => {
                            self.missing(child, &cp, "Type")
                        }
                        None => {}
                    }
                }
                "retrytimeinhours" => list.retry_time_in_hours = self.u32(child, &cp, 0, 500_000),
                _ => self.unknown(child, &cp),
            }
        }
        list
    }

    pub(super) fn crypto_suite(&mut self, node: Node<'_, '_>, path: &str) -> CryptographySuite {
        let mut s = CryptographySuite::default();
        for (child, key, cp) in self.children(node, path, &[]) {
            let cp = cp.as_str();
            match key.as_str() {
                "authenticationtransformconstants" => {
                    s.authentication_transform_constants = self.name(child, cp)
                }
                "ciphertransformconstants" => s.cipher_transform_constants = self.name(child, cp),
                "pfsgroup" => s.pfs_group = self.name(child, cp),
                "dhgroup" => s.dh_group = self.name(child, cp),
                "integritycheckmethod" => s.integrity_check_method = self.name(child, cp),
                "encryptionmethod" => s.encryption_method = self.name(child, cp),
                _ => self.unknown(child, cp),
            }
        }
        s
    }

    pub(super) fn authentication(&mut self, node: Node<'_, '_>, path: &str) -> Authentication {
        let mut a = Authentication::default();
        for (child, key, cp) in self.children(node, path, &[]) {
            let cp = cp.as_str();
            match key.as_str() {
                "usermethod" => a.user_method = self.name(child, cp),
                "machinemethod" => a.machine_method = self.name(child, cp),
                "eap" => {
                    if !child.children().any(|c| is(&c, "Configuration")) {
                        self.missing(child, cp, "Configuration");
                    }
                    a.eap = Some(self.raw(child));
                }
                "certificate" => {
                    self.windows_only(child, cp);
                    a.certificate = Some(self.raw(child));
                }
                _ => self.unknown(child, cp),
            }
        }
        a
    }
}

fn parse_address_range(s: &str) -> Option<AddressRange> {
    if let Some((a, len)) = s.split_once('/') {
        let addr: IpAddr = a.trim().parse().ok()?;
        let len: u8 = len.trim().parse().ok()?;
        return (len <= Prefix::max_len(addr))
            .then_some(AddressRange::Prefix(Prefix { addr, len }));
    }
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a.trim().parse().ok()?;
        let b: IpAddr = b.trim().parse().ok()?;
        return (a.is_ipv4() == b.is_ipv4() && a <= b).then_some(AddressRange::Range(a, b));
    }
    let addr: IpAddr = s.parse().ok()?;
    Some(AddressRange::Prefix(Prefix::host(addr)))
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, 1..=63 bytes each.
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A server: an IP address (IPv6 optionally in brackets) or a DNS name.
pub(crate) fn is_host(s: &str) -> bool {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>().is_ok() || is_dns_name(s)
}
