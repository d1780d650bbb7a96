//! Writing profiles back out: canonical ProfileXML (XSD element order), the escaped string form and
//! an MDM SyncML Add.

use std::fmt::Write as _;

use crate::model::*;
use crate::parse::CspUri;
use crate::text::escape;

struct Out {
    s: String,
    depth: usize,
}

impl Out {
    fn open(&mut self, name: &str) {
        let _ = writeln!(self.s, "{:w$}<{name}>", "", w = self.depth * 2);
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        let _ = writeln!(self.s, "{:w$}</{name}>", "", w = self.depth * 2);
    }

    fn leaf(&mut self, name: &str, value: &str) {
        let _ = writeln!(
            self.s,
            "{:w$}<{name}>{}</{name}>",
            "",
            escape(value),
            w = self.depth * 2
        );
    }

    fn opt<T: ToString>(&mut self, name: &str, value: Option<T>) {
        if let Some(v) = value {
            self.leaf(name, &v.to_string());
        }
    }

    fn list(&mut self, name: &str, values: &[String]) {
        if !values.is_empty() {
            self.leaf(name, &values.join(","));
        }
    }

    fn raw(&mut self, raw: &RawXml) {
        let _ = writeln!(self.s, "{:w$}{}", "", raw.0, w = self.depth * 2);
    }
}

fn joined<T: ToString>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn port_ranges(r: &[PortRange]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|p| {
            if p.first == p.last {
                p.first.to_string()
            } else {
                format!("{}-{}", p.first, p.last)
            }
        })
        .collect();
    parts.join(",")
}

fn address_ranges(r: &[AddressRange]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|a| match a {
            AddressRange::Prefix(p) => p.to_string(),
            AddressRange::Range(a, b) => format!("{a}-{b}"),
        })
        .collect();
    parts.join(",")
}

/// Canonical ProfileXML for a profile: the published XSD order, two-space indentation, Windows'
/// canonical value spellings. Windows-only subtrees and `<Eap>` are written verbatim.
pub fn to_profile_xml(p: &VpnProfile) -> String {
    let mut o = Out {
        s: String::new(),
        depth: 0,
    };
    o.open("VPNProfile");
    o.opt("ProfileName", p.profile_name.as_deref());
    o.opt("EdpModeId", p.edp_mode_id.as_deref());
    o.opt("RememberCredentials", p.remember_credentials);
    o.opt("AlwaysOn", p.always_on);
    o.opt("AlwaysOnActive", p.always_on_active);
    o.list("DnsSuffix", &p.dns_suffix);
    o.list("TrustedNetworkDetection", &p.trusted_network_detection);
    o.opt(
        "DisableAdvancedOptionsEditButton",
        p.disable_advanced_options_edit_button,
    );
    o.opt("DisableDisconnectButton", p.disable_disconnect_button);
    o.opt("LockDown", p.lock_down);
    o.opt("DeviceTunnel", p.device_tunnel);
    o.opt("RegisterDNS", p.register_dns);
    o.opt("ByPassForLocal", p.by_pass_for_local);
    o.opt("RequireVpnClientAppUI", p.require_vpn_client_app_ui);
    o.opt("DataEncryption", p.data_encryption);
    o.opt("DisableIKEv2Fragmentation", p.disable_ikev2_fragmentation);
    o.opt("IPv4InterfaceMetric", p.ipv4_interface_metric);
    o.opt("IPv6InterfaceMetric", p.ipv6_interface_metric);
    o.opt("NetworkOutageTime", p.network_outage_time);
    o.opt("PrivateNetwork", p.private_network);
    o.opt("UseRasCredentials", p.use_ras_credentials);
    if let Some(proxy) = &p.proxy {
        o.open("Proxy");
        o.opt("AutoConfigUrl", proxy.auto_config_url.as_deref());
        if let Some(server) = &proxy.manual_server {
            o.open("Manual");
            o.leaf("Server", server);
            o.close("Manual");
        }
        o.close("Proxy");
    }
    for raw in &p.windows_only {
        o.raw(raw);
    }
    for id in &p.app_triggers {
        o.open("AppTrigger");
        o.open("App");
        o.leaf("Id", id);
        o.close("App");
        o.close("AppTrigger");
    }
    for d in &p.domain_name_information {
        o.open("DomainNameInformation");
        o.leaf("DomainName", &d.domain_name);
        if !d.dns_servers.is_empty() {
            o.leaf("DnsServers", &joined(&d.dns_servers));
        }
        o.opt("WebProxyServers", d.web_proxy_servers.as_deref());
        o.opt("AutoTrigger", d.auto_trigger);
        o.opt("Persistent", d.persistent);
        o.close("DomainNameInformation");
    }
    for f in &p.traffic_filters {
        o.open("TrafficFilter");
        if let Some(id) = &f.app_id {
            o.open("App");
            o.leaf("Id", id);
            o.close("App");
        }
        o.opt("Claims", f.claims.as_deref());
        o.opt("Protocol", f.protocol);
        for (name, r) in [
            ("LocalPortRanges", &f.local_port_ranges),
            ("RemotePortRanges", &f.remote_port_ranges),
        ] {
            if !r.is_empty() {
                o.leaf(name, &port_ranges(r));
            }
        }
        for (name, r) in [
            ("LocalAddressRanges", &f.local_address_ranges),
            ("RemoteAddressRanges", &f.remote_address_ranges),
        ] {
            if !r.is_empty() {
                o.leaf(name, &address_ranges(r));
            }
        }
        o.opt("RoutingPolicyType", f.routing_policy_type);
        o.opt("Direction", f.direction);
        o.close("TrafficFilter");
    }
    if let Some(n) = &p.native_profile {
        native_profile(&mut o, n);
    }
    for r in &p.routes {
        o.open("Route");
        o.leaf("Address", &r.address.to_string());
        o.leaf("PrefixSize", &r.prefix_size.to_string());
        o.opt("ExclusionRoute", r.exclusion_route);
        o.opt("Metric", r.metric);
        o.close("Route");
    }
    o.close("VPNProfile");
    o.s
}

fn native_profile(o: &mut Out, n: &NativeProfile) {
    o.open("NativeProfile");
    let servers: Vec<String> = n
        .servers
        .iter()
        .map(|s| match &s.friendly_name {
            Some(f) => format!("{};{f}", s.host),
            None => s.host.clone(),
        })
        .collect();
    o.leaf("Servers", &servers.join(","));
    o.opt("RoutingPolicyType", n.routing_policy_type);
    o.opt("NativeProtocolType", n.native_protocol_type);
    if let Some(list) = &n.protocol_list {
        o.open("ProtocolList");
        for p in &list.protocols {
            o.open("NativeProtocol");
            o.leaf("Type", p.as_str());
            o.close("NativeProtocol");
        }
        o.opt("RetryTimeInHours", list.retry_time_in_hours);
        o.close("ProtocolList");
    }
    o.opt("L2tpPsk", n.l2tp_psk.as_deref());
    o.opt(
        "DisableClassBasedDefaultRoute",
        n.disable_class_based_default_route,
    );
    o.opt("PlumbIKEv2TSAsRoutes", n.plumb_ikev2_ts_as_routes);
    if let Some(s) = &n.cryptography_suite {
        o.open("CryptographySuite");
        o.opt(
            "AuthenticationTransformConstants",
            s.authentication_transform_constants,
        );
        o.opt("CipherTransformConstants", s.cipher_transform_constants);
        o.opt("PfsGroup", s.pfs_group);
        o.opt("DHGroup", s.dh_group);
        o.opt("IntegrityCheckMethod", s.integrity_check_method);
        o.opt("EncryptionMethod", s.encryption_method);
        o.close("CryptographySuite");
    }
    let a = &n.authentication;
    o.open("Authentication");
    o.opt("UserMethod", a.user_method);
    o.opt("MachineMethod", a.machine_method);
    if let Some(eap) = &a.eap {
        o.raw(eap);
    }
    if let Some(cert) = &a.certificate {
        o.raw(cert);
    }
    o.close("Authentication");
    o.close("NativeProfile");
}

/// The XML-escaped string form (what the WMI bridge's `ProfileXML` property and SyncML `<Data>`
/// carry).
pub fn to_escaped(profile_xml: &str) -> String {
    escape(profile_xml)
}

/// An MDM SyncML message that adds the profile, in an `<Atomic>` block as the CSP requires.
pub fn to_syncml(name: &str, scope: Option<Scope>, profile_xml: &str) -> String {
    format!(
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n  <SyncBody>\n    <Atomic>\n      <CmdID>1</CmdID>\n      \
         <Add>\n        <CmdID>2</CmdID>\n        <Item>\n          <Target>\n            \
         <LocURI>{}</LocURI>\n          </Target>\n          <Data>{}</Data>\n        </Item>\n      \
         </Add>\n    </Atomic>\n    <Final/>\n  </SyncBody>\n</SyncML>\n",
        escape(&CspUri::to_uri(scope, name)),
        escape(profile_xml)
    )
}
