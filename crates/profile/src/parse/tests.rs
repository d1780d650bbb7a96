use super::*;

const MINIMAL: &str = "<VPNProfile><NativeProfile><Servers>gw.example.net</Servers>\
        <Authentication><MachineMethod>Certificate</MachineMethod></Authentication>\
        </NativeProfile></VPNProfile>";

#[test]
fn utf16_file_with_its_declaration_parses() {
    // What PowerShell's Out-File writes by default: UTF-16LE with a BOM.
    let text = format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>\r\n{MINIMAL}");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let parsed = ParsedProfile::parse("utf16.xml", &bytes).unwrap();
    assert_eq!(parsed.profile.servers()[0].host, "gw.example.net");
    assert_eq!(parsed.form, SourceForm::ProfileXml);
}

#[test]
fn csp_uris() {
    let uri = CspUri::parse("./Device/Vendor/MSFT/VPNv2/Corp%20Device%20Tunnel/ProfileXML");
    assert_eq!(
        uri,
        Ok(CspUri {
            scope: Some(Scope::Device),
            name: "Corp Device Tunnel".into()
        })
    );
    let uri = CspUri::parse("./user/vendor/msft/vpnv2/A%2Fb%C3%A9/profilexml");
    assert_eq!(
        uri,
        Ok(CspUri {
            scope: Some(Scope::User),
            name: "A/bé".into()
        })
    );
    assert_eq!(
        CspUri::parse("./Vendor/MSFT/VPNv2/X/ProfileXML"),
        Ok(CspUri {
            scope: None,
            name: "X".into()
        })
    );
    assert_eq!(CspUri::parse("./Vendor/MSFT/VPNv2/X/AlwaysOn"), Err(true));
    assert_eq!(
        CspUri::parse("./Vendor/MSFT/VPNv2/X%2/ProfileXML"),
        Err(true)
    );
    assert_eq!(
        CspUri::parse("./Vendor/MSFT/RootCATrustedCertificates/Root"),
        Err(false)
    );
    let name = "Corp VPN é/%";
    let uri = CspUri::to_uri(Some(Scope::User), name);
    assert_eq!(
        uri,
        "./User/Vendor/MSFT/VPNv2/Corp%20VPN%20%C3%A9%2F%25/ProfileXML"
    );
    assert_eq!(CspUri::parse(&uri).unwrap().name, name);
}

#[test]
fn escaped_positions_point_into_the_original_file() {
    // devicecert.ps1 output; the bad value sits on line 3 of the escaped file.
    let escaped = "&lt;VPNProfile&gt;\n&lt;AlwaysOn&gt;true&lt;/AlwaysOn&gt;\n  \
                       &lt;RegisterDNS&gt;sure&lt;/RegisterDNS&gt;\n&lt;/VPNProfile&gt;\n";
    let e = ParsedProfile::parse_str("p.txt", escaped).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p.txt:3:3: VPNProfile/RegisterDNS: \"sure\" is not a boolean (expected true or false)"
    );
    // A malformed escaped document: the position is that of the offending text in the file.
    let e = ParsedProfile::parse_str("q.txt", "&lt;VPNProfile&gt;\n  &lt;/Route&gt;").unwrap_err();
    assert_eq!(e.0[0].pos, Pos { line: 2, col: 3 });
}

#[test]
fn powershell_escaping_keeps_ampersands() {
    // devicecert.ps1 does not escape '&', so "&amp;" in the XML stays "&amp;" in its output.
    let xml = MINIMAL.replace(
        "</NativeProfile>",
        "</NativeProfile><Proxy><AutoConfigUrl>http://p/x?a=1&amp;b=2</AutoConfigUrl></Proxy>",
    );
    let ps = xml.replace('<', "&lt;").replace('>', "&gt;");
    let parsed = ParsedProfile::parse_str("ps.txt", &ps).unwrap();
    let url = parsed.profile.proxy.unwrap().auto_config_url.unwrap();
    assert_eq!(url, "http://p/x?a=1&b=2");
}
