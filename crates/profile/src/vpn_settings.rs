//! `Generic/VpnSettings.xml`, the gateway description inside Azure's VPN client configuration
//! package (and ours): root `<VpnProfile>` with `<VpnServer>` (the gateway's name, dialled and
//! expected as its IKE identity), `<VpnType>` (the tunnel types enabled, `IkeV2` among them when
//! the package has a Generic folder at all) and `<Routes>` (the prefixes behind the gateway).
//! Azure also writes `<ServerCertRootCn>` and `<ServerCertIssuerCn>`; anything else is kept by
//! name so the importer can say what it did not use. Elements are matched without regard to
//! case or namespace: the file is generated, not written by hand, and its schema is not published.

use std::net::IpAddr;

use crate::error::Pos;
use crate::model::Prefix;
use crate::text::{LineIndex, decode_bytes, escape};

/// What a VpnSettings.xml says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VpnSettings {
    pub vpn_server: String,
    /// `VpnType`, split on commas (`IkeV2`, `OpenVPN`, `SSTP`).
    pub vpn_types: Vec<String>,
    pub routes: Vec<Prefix>,
    pub server_cert_root_cn: Option<String>,
    pub server_cert_issuer_cn: Option<String>,
    /// Elements read but not used, by name.
    pub ignored: Vec<String>,
}

/// Why a VpnSettings.xml was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {message}", pos.line, pos.col)]
pub struct SettingsError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl VpnSettings {
    /// Read a VpnSettings.xml (UTF-8 or UTF-16 with BOM); `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<VpnSettings, SettingsError> {
        let err = |pos: Pos, message: String| SettingsError {
            file: file.to_owned(),
            pos,
            message,
        };
        let text = decode_bytes(bytes)
            .ok_or_else(|| err(Pos::default(), "not UTF-8 or UTF-16 text".into()))?;
        let lines = LineIndex::new(&text);
        let doc = roxmltree::Document::parse(&text).map_err(|e| {
            let p = e.pos();
            err(
                Pos {
                    line: p.row,
                    col: p.col,
                },
                format!("malformed XML: {e}"),
            )
        })?;
        let root = doc.root_element();
        let at = |node: roxmltree::Node| lines.pos(node.range().start);
        if !root.tag_name().name().eq_ignore_ascii_case("VpnProfile") {
            return Err(err(
                at(root),
                format!(
                    "the document is <{}>, expected <VpnProfile>",
                    root.tag_name().name()
                ),
            ));
        }
        let mut settings = VpnSettings::default();
        let mut server = None;
        for child in root.children().filter(|n| n.is_element()) {
            let name = child.tag_name().name();
            let value = child.text().unwrap_or("").trim();
            match name.to_ascii_lowercase().as_str() {
                "vpnserver" => {
                    // The same rule as a profile's <Servers>: the name becomes one.
                    if !crate::parse::is_host(value) {
                        return Err(err(
                            at(child),
                            format!("<VpnServer> \"{value}\" is not a DNS name or IP address"),
                        ));
                    }
                    server = Some(value.to_owned());
                }
                "vpntype" => {
                    settings.vpn_types = value
                        .split([',', ';', ' '])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "routes" => {
                    for item in value.split([',', ';', ' ', '\n', '\r', '\t']) {
                        if item.is_empty() {
                            continue;
                        }
                        let prefix = parse_prefix(item).ok_or_else(|| {
                            err(
                                at(child),
                                format!("<Routes> entry \"{item}\" is not an address/length"),
                            )
                        })?;
                        settings.routes.push(prefix);
                    }
                }
                "servercertrootcn" => settings.server_cert_root_cn = Some(value.to_owned()),
                "servercertissuercn" => settings.server_cert_issuer_cn = Some(value.to_owned()),
                _ => settings.ignored.push(name.to_owned()),
            }
        }
        settings.vpn_server = server
            .ok_or_else(|| err(at(root), "required element <VpnServer> is missing".into()))?;
        Ok(settings)
    }

    /// Whether the gateway offers IKEv2 (an absent `VpnType` is taken as yes: the Generic
    /// folder exists only when it does).
    pub fn offers_ikev2(&self) -> bool {
        self.vpn_types.is_empty()
            || self
                .vpn_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case("IkeV2"))
    }

    /// The file, in the shape Azure writes it.
    pub fn to_xml(&self) -> String {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<VpnProfile xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\r\n",
        );
        let mut element = |name: &str, value: &str| {
            out.push_str(&format!("  <{name}>{}</{name}>\r\n", escape(value)));
        };
        element("VpnServer", &self.vpn_server);
        element("VpnType", &self.vpn_types.join(","));
        let routes: Vec<String> = self.routes.iter().map(Prefix::to_string).collect();
        element("Routes", &routes.join(","));
        if let Some(cn) = &self.server_cert_root_cn {
            element("ServerCertRootCn", cn);
        }
        if let Some(cn) = &self.server_cert_issuer_cn {
            element("ServerCertIssuerCn", cn);
        }
        out.push_str("</VpnProfile>\r\n");
        out
    }
}

fn parse_prefix(item: &str) -> Option<Prefix> {
    let (addr, len) = item.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= Prefix::max_len(addr)).then_some(Prefix { addr, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURE: &str = "\u{feff}<?xml version=\"1.0\"?>\r\n<VpnProfile xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\r\n  <VpnServer>azuregateway-0b1c.vpn.azure.com</VpnServer>\r\n  <VpnType>IkeV2,OpenVPN</VpnType>\r\n  <Routes>10.1.0.0/16,10.2.0.0/24</Routes>\r\n  <ServerCertRootCn>DigiCert Global Root CA</ServerCertRootCn>\r\n  <ServerCertIssuerCn>DigiCert Global Root CA</ServerCertIssuerCn>\r\n  <CustomDnsServers>10.1.0.53</CustomDnsServers>\r\n</VpnProfile>\r\n";

    #[test]
    fn azures_fields_are_read_and_the_rest_named() {
        let s = VpnSettings::parse("VpnSettings.xml", AZURE.as_bytes()).unwrap();
        assert_eq!(s.vpn_server, "azuregateway-0b1c.vpn.azure.com");
        assert_eq!(s.vpn_types, ["IkeV2", "OpenVPN"]);
        assert!(s.offers_ikev2());
        let routes: Vec<String> = s.routes.iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["10.1.0.0/16", "10.2.0.0/24"]);
        assert_eq!(
            s.server_cert_root_cn.as_deref(),
            Some("DigiCert Global Root CA")
        );
        assert_eq!(s.ignored, ["CustomDnsServers"]);
    }

    #[test]
    fn what_we_write_reads_back_the_same() {
        let mut s = VpnSettings::parse("a", AZURE.as_bytes()).unwrap();
        s.ignored.clear();
        assert_eq!(VpnSettings::parse("b", s.to_xml().as_bytes()).unwrap(), s);
    }

    #[test]
    fn errors_say_where() {
        let bad = "<VpnProfile>\n<VpnServer>gw.example</VpnServer>\n<Routes>10.0.0.0/33</Routes></VpnProfile>";
        let e = VpnSettings::parse("s.xml", bad.as_bytes()).unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.to_string().starts_with("s.xml:3:1: <Routes>"), "{e}");
        let e = VpnSettings::parse("s.xml", b"<VpnProfile><Routes/></VpnProfile>").unwrap_err();
        assert!(e.message.contains("<VpnServer> is missing"), "{e}");
        let e = VpnSettings::parse(
            "s.xml",
            b"<VpnProfile><VpnServer>a b</VpnServer></VpnProfile>",
        )
        .unwrap_err();
        assert!(e.message.contains("not a DNS name"), "{e}");
        let e = VpnSettings::parse("s.xml", b"<Other/>").unwrap_err();
        assert!(e.message.contains("expected <VpnProfile>"), "{e}");
        let e = VpnSettings::parse("s.xml", b"<VpnProfile>\n  <VpnServer>gw</Vpn></VpnProfile>")
            .unwrap_err();
        assert_eq!(e.pos.line, 2, "{e}");
    }

    #[test]
    fn a_package_without_ikev2_says_so() {
        let s = VpnSettings::parse(
            "s",
            b"<VpnProfile><VpnServer>gw</VpnServer><VpnType>OpenVPN</VpnType></VpnProfile>",
        )
        .unwrap();
        assert!(!s.offers_ikev2());
    }
}
