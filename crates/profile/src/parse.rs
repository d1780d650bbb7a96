//! Reading a profile from any of its three delivery forms: plain ProfileXML, the escaped string
//! devicecert.ps1 hands to the WMI bridge, and an MDM SyncML envelope.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use roxmltree::{Document, Node, ParsingOptions};

use crate::error::{ErrorKind, Pos, ProfileError, ProfileErrors, ProfileWarning, WarningKind};
use crate::model::*;
use crate::text::{self, Entities, LineIndex};

/// How the profile reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceForm {
    /// A plain `<VPNProfile>` document.
    ProfileXml,
    /// The XML-escaped string (`&lt;VPNProfile&gt;...`).
    Escaped,
    /// An MDM SyncML message with a `.../VPNv2/{name}/ProfileXML` item.
    SyncMl,
}

impl SourceForm {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceForm::ProfileXml => "profilexml",
            SourceForm::Escaped => "escaped",
            SourceForm::SyncMl => "syncml",
        }
    }

    pub fn parse(s: &str) -> Option<SourceForm> {
        [
            SourceForm::ProfileXml,
            SourceForm::Escaped,
            SourceForm::SyncMl,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// What a SyncML `LocURI` says: the scope (absent for `./Vendor/MSFT/VPNv2/...`) and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CspUri {
    pub scope: Option<Scope>,
    /// The profile name with `%XX` escapes decoded.
    pub name: String,
}

impl CspUri {
    /// Parse `./[Device|User/]Vendor/MSFT/VPNv2/{name}/ProfileXML`. `Err(true)` when it is a
    /// VPNv2 URI of another node, `Err(false)` when it is not VPNv2 at all.
    pub fn parse(uri: &str) -> Result<CspUri, bool> {
        let (scope, rest) = if let Some(r) = strip_prefix_ci(uri, "./Device/Vendor/MSFT/VPNv2/") {
            (Some(Scope::Device), r)
        } else if let Some(r) = strip_prefix_ci(uri, "./User/Vendor/MSFT/VPNv2/") {
            (Some(Scope::User), r)
        } else if let Some(r) = strip_prefix_ci(uri, "./Vendor/MSFT/VPNv2/") {
            (None, r)
        } else {
            return Err(false);
        };
        let (name, node) = rest.split_once('/').ok_or(true)?;
        if !node.eq_ignore_ascii_case("ProfileXML") || name.is_empty() {
            return Err(true);
        }
        Ok(CspUri {
            scope,
            name: percent_decode(name).ok_or(true)?,
        })
    }

    /// The URI for this name and scope, with the name `%`-encoded.
    pub fn to_uri(scope: Option<Scope>, name: &str) -> String {
        let root = match scope {
            Some(Scope::Device) => "./Device/Vendor/MSFT/VPNv2/",
            Some(Scope::User) => "./User/Vendor/MSFT/VPNv2/",
            None => "./Vendor/MSFT/VPNv2/",
        };
        format!("{root}{}/ProfileXML", percent_encode(name))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `%`-encode everything but unreserved characters (space becomes `%20`, as Windows expects).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where each element sits in the original file, by path (`VPNProfile/Route[2]/PrefixSize`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans(HashMap<String, Pos>);

impl Spans {
    /// The position of `path`, or of its nearest recorded ancestor, with the path found.
    pub fn locate<'p>(&self, path: &'p str) -> (&'p str, Pos) {
        let mut p = path;
        loop {
            if let Some(pos) = self.0.get(p) {
                return (p, *pos);
            }
            match p.rfind('/') {
                Some(i) => p = p.get(..i).unwrap_or(""),
                None => return (path, self.0.get("VPNProfile").copied().unwrap_or_default()),
            }
        }
    }
}

/// A parsed (not yet validated) profile.
#[derive(Debug, Clone)]
pub struct ParsedProfile {
    /// The file name used in diagnostics.
    pub file: String,
    pub profile: VpnProfile,
    pub form: SourceForm,
    /// Present for SyncML input.
    pub uri: Option<CspUri>,
    /// The plain ProfileXML text (the input itself for [`SourceForm::ProfileXml`]).
    pub profile_xml: String,
    pub warnings: Vec<ProfileWarning>,
    pub spans: Spans,
}

impl ParsedProfile {
    /// Parse a file's bytes in any supported form. Returns every error found.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<ParsedProfile, ProfileErrors> {
        let Some(text) = text::decode_bytes(bytes) else {
            return Err(one(file, Pos { line: 1, col: 1 }, "", ErrorKind::Encoding));
        };
        ParsedProfile::parse_str(file, &text)
    }

    /// Parse text in any supported form.
    pub fn parse_str(file: &str, input: &str) -> Result<ParsedProfile, ProfileErrors> {
        let lines = LineIndex::new(input);
        let trimmed = input.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if trimmed.starts_with("&lt;") {
            let base = input.len() - trimmed.len();
            let raw = input.get(base..).unwrap_or("");
            return parse_escaped(file, &lines, raw, base, SourceForm::Escaped, None);
        }
        let doc = Document::parse_with_options(input, parsing_options())
            .map_err(|e| xml_error(file, &lines, None, &e))?;
        let root = doc.root_element();
        match root.tag_name().name() {
            n if n.eq_ignore_ascii_case("VPNProfile") => {
                let mut cx = Cx::new(file, &lines, None, input);
                let profile = cx.vpn_profile(root);
                cx.finish(profile, SourceForm::ProfileXml, None, input.to_owned())
            }
            n if n.eq_ignore_ascii_case("SyncML") => parse_syncml(file, &lines, input, root),
            other => {
                let pos = lines.pos(root.range().start);
                Err(one(
                    file,
                    pos,
                    other,
                    ErrorKind::WrongRoot {
                        found: other.to_owned(),
                    },
                ))
            }
        }
    }
}

fn parsing_options<'a>() -> ParsingOptions<'a> {
    ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    }
}

fn one(file: &str, pos: Pos, element: &str, kind: ErrorKind) -> ProfileErrors {
    ProfileErrors(vec![ProfileError {
        file: file.to_owned(),
        pos,
        element: element.to_owned(),
        kind,
    }])
}

fn map_offset(origin: Option<&[usize]>, offset: usize) -> usize {
    match origin {
        Some(map) => map.get(offset).or(map.last()).copied().unwrap_or(0),
        None => offset,
    }
}

fn xml_error(
    file: &str,
    lines: &LineIndex<'_>,
    inner: Option<(&str, &[usize])>,
    e: &roxmltree::Error,
) -> ProfileErrors {
    let p = e.pos();
    let pos = match inner {
        Some((text, origin)) => {
            let off = LineIndex::new(text).offset(p.row, p.col);
            lines.pos(map_offset(Some(origin), off))
        }
        None => Pos {
            line: p.row,
            col: p.col,
        },
    };
    // roxmltree appends its own " at ROW:COL", which is wrong for escaped input; ours is in front.
    let message = e.to_string();
    let message = match message.rsplit_once(" at ") {
        Some((m, at)) if at.split(':').all(|n| n.parse::<u32>().is_ok()) => m.to_owned(),
        _ => message,
    };
    one(file, pos, "", ErrorKind::Xml(message))
}

fn parse_escaped(
    file: &str,
    lines: &LineIndex<'_>,
    raw: &str,
    base: usize,
    form: SourceForm,
    uri: Option<CspUri>,
) -> Result<ParsedProfile, ProfileErrors> {
    let full = text::unescape(raw, base, Entities::All);
    let first = match Document::parse_with_options(&full.text, parsing_options()) {
        Ok(_) => return parse_inner(file, lines, &full, form, uri),
        Err(e) => xml_error(file, lines, Some((&full.text, &full.origin)), &e),
    };
    // devicecert.ps1 escapes only < > " and leaves & alone; try that reading before giving up.
    let ps = text::unescape(raw, base, Entities::PowerShellScript);
    if ps.text != full.text && Document::parse_with_options(&ps.text, parsing_options()).is_ok() {
        return parse_inner(file, lines, &ps, form, uri);
    }
    Err(first)
}

fn parse_inner(
    file: &str,
    lines: &LineIndex<'_>,
    inner: &text::Unescaped,
    form: SourceForm,
    uri: Option<CspUri>,
) -> Result<ParsedProfile, ProfileErrors> {
    let doc = Document::parse_with_options(&inner.text, parsing_options())
        .map_err(|e| xml_error(file, lines, Some((&inner.text, &inner.origin)), &e))?;
    let root = doc.root_element();
    let name = root.tag_name().name();
    if !name.eq_ignore_ascii_case("VPNProfile") {
        let pos = lines.pos(map_offset(Some(&inner.origin), root.range().start));
        return Err(one(
            file,
            pos,
            name,
            ErrorKind::WrongRoot {
                found: name.to_owned(),
            },
        ));
    }
    let mut cx = Cx::new(file, lines, Some(&inner.origin), &inner.text);
    let profile = cx.vpn_profile(root);
    cx.finish(profile, form, uri, inner.text.clone())
}

fn parse_syncml(
    file: &str,
    lines: &LineIndex<'_>,
    input: &str,
    root: Node<'_, '_>,
) -> Result<ParsedProfile, ProfileErrors> {
    let mut found: Vec<(CspUri, Node<'_, '_>)> = Vec::new();
    let mut errors = Vec::new();
    for item in root.descendants().filter(|n| is(n, "Item")) {
        let Some(loc) = item
            .children()
            .filter(|n| is(n, "Target"))
            .flat_map(|t| t.children())
            .find(|n| is(n, "LocURI"))
        else {
            continue;
        };
        let uri = loc.text().unwrap_or("").trim();
        let data = item.children().find(|n| is(n, "Data"));
        match CspUri::parse(uri) {
            Ok(parsed) => match data {
                Some(d) => found.push((parsed, d)),
                None => errors.push(ProfileError {
                    file: file.to_owned(),
                    pos: lines.pos(item.range().start),
                    element: "SyncML/Item/Data".to_owned(),
                    kind: ErrorKind::MissingElement {
                        name: "Data".to_owned(),
                    },
                }),
            },
            // A Delete of a whole profile has no Data and is not a setting; other VPNv2 nodes are.
            Err(true) if data.is_some() => errors.push(ProfileError {
                file: file.to_owned(),
                pos: lines.pos(loc.range().start),
                element: "SyncML/Item/Target/LocURI".to_owned(),
                kind: ErrorKind::SyncMlPerNodeSetting {
                    uri: uri.to_owned(),
                },
            }),
            Err(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(ProfileErrors(errors));
    }
    let mut found = found.into_iter();
    let Some((uri, data)) = found.next() else {
        return Err(one(
            file,
            lines.pos(root.range().start),
            "SyncML",
            ErrorKind::SyncMlWithoutProfile,
        ));
    };
    if let Some((_, second)) = found.next() {
        let pos = lines.pos(second.range().start);
        return Err(one(
            file,
            pos,
            "SyncML/Item/Data",
            ErrorKind::SyncMlMultipleProfiles,
        ));
    }
    let (start, end) = inner_range(input, data.range());
    let raw = input.get(start..end).unwrap_or("");
    parse_escaped(file, lines, raw, start, SourceForm::SyncMl, Some(uri))
}

/// Byte range of an element's content, between its start and end tags, in the source text.
fn inner_range(input: &str, range: std::ops::Range<usize>) -> (usize, usize) {
    let slice = input.get(range.clone()).unwrap_or("");
    let mut quote = None;
    let mut start_tag_end = None;
    for (i, c) in slice.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => {
                start_tag_end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(gt) = start_tag_end else {
        return (range.end, range.end);
    };
    if slice.get(..gt).is_some_and(|s| s.ends_with('/')) {
        return (range.end, range.end);
    }
    let content_start = range.start + gt + 1;
    let content_end = slice.rfind("</").map_or(range.end, |i| range.start + i);
    (content_start, content_end.max(content_start))
}

fn is(n: &Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name)
}

/// Parsing state for one VPNProfile tree.
struct Cx<'a> {
    file: &'a str,
    lines: &'a LineIndex<'a>,
    origin: Option<&'a [usize]>,
    text: &'a str,
    errors: Vec<ProfileError>,
    warnings: Vec<ProfileWarning>,
    spans: Spans,
}

impl<'a> Cx<'a> {
    fn new(
        file: &'a str,
        lines: &'a LineIndex<'a>,
        origin: Option<&'a [usize]>,
        text: &'a str,
    ) -> Self {
        Cx {
            file,
            lines,
            origin,
            text,
            errors: vec![],
            warnings: vec![],
            spans: Spans::default(),
        }
    }

    fn finish(
        self,
        profile: VpnProfile,
        form: SourceForm,
        uri: Option<CspUri>,
        profile_xml: String,
    ) -> Result<ParsedProfile, ProfileErrors> {
        if !self.errors.is_empty() {
            let mut errors = self.errors;
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            return Err(ProfileErrors(errors));
        }
        Ok(ParsedProfile {
            file: self.file.to_owned(),
            profile,
            form,
            uri,
            profile_xml,
            warnings: self.warnings,
            spans: self.spans,
        })
    }

    fn pos(&self, node: Node<'_, '_>) -> Pos {
        self.lines.pos(map_offset(self.origin, node.range().start))
    }

    fn record(&mut self, node: Node<'_, '_>, path: &str) {
        let pos = self.pos(node);
        self.spans.0.insert(path.to_owned(), pos);
    }

    fn error(&mut self, node: Node<'_, '_>, path: &str, kind: ErrorKind) {
        let pos = self.pos(node);
        self.errors.push(ProfileError {
            file: self.file.to_owned(),
            pos,
            element: path.to_owned(),
            kind,
        });
    }

    fn warn(&mut self, node: Node<'_, '_>, path: &str, kind: WarningKind) {
        let pos = self.pos(node);
        self.warnings.push(ProfileWarning {
            file: self.file.to_owned(),
            pos,
            element: path.to_owned(),
            kind,
        });
    }

    fn windows_only(&mut self, node: Node<'_, '_>, path: &str) {
        let name = node.tag_name().name().to_owned();
        self.warn(node, path, WarningKind::WindowsOnly { name });
    }

    fn raw(&self, node: Node<'_, '_>) -> RawXml {
        RawXml(self.text.get(node.range()).unwrap_or("").to_owned())
    }

    /// The element children of `node`, each with its path; repeated names get `[n]`.
    fn children<'n, 'i>(
        &mut self,
        node: Node<'n, 'i>,
        path: &str,
        repeated: &[&str],
    ) -> Vec<(Node<'n, 'i>, String, String)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        for child in node.children().filter(Node::is_element) {
            let name = child.tag_name().name();
            let key = name.to_ascii_lowercase();
            let child_path = if repeated.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                let n = counts.entry(key.clone()).or_insert(0);
                *n += 1;
                format!("{path}/{name}[{n}]")
            } else {
                if !seen.insert(key.clone()) {
                    let parent = node.tag_name().name().to_owned();
                    let child_path = format!("{path}/{name}");
                    self.error(
                        child,
                        &child_path,
                        ErrorKind::DuplicateElement {
                            name: name.to_owned(),
                            parent,
                        },
                    );
                    continue;
                }
                format!("{path}/{name}")
            };
            self.record(child, &child_path);
            out.push((child, key, child_path));
        }
        out
    }

    fn unknown(&mut self, node: Node<'_, '_>, path: &str) {
        let parent = node
            .parent_element()
            .map_or("", |p| p.tag_name().name())
            .to_owned();
        let name = node.tag_name().name().to_owned();
        self.error(node, path, ErrorKind::UnknownElement { name, parent });
    }

    fn missing(&mut self, parent: Node<'_, '_>, parent_path: &str, name: &str) {
        let path = format!("{parent_path}/{name}");
        self.error(
            parent,
            &path,
            ErrorKind::MissingElement {
                name: name.to_owned(),
            },
        );
    }

    /// Text content, trimmed; child elements are an error.
    fn leaf(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        if node.children().any(|c| c.is_element()) {
            let name = node.tag_name().name().to_owned();
            self.error(node, path, ErrorKind::UnexpectedChildElements { name });
            return None;
        }
        let text: String = node.children().filter_map(|c| c.text()).collect();
        Some(text.trim().to_owned())
    }

    fn string(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        self.leaf(node, path).filter(|s| !s.is_empty())
    }

    fn boolean(&mut self, node: Node<'_, '_>, path: &str) -> Option<bool> {
        let v = self.leaf(node, path)?;
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => {
                self.error(node, path, ErrorKind::InvalidBool { value: v });
                None
            }
        }
    }

    fn number(&mut self, node: Node<'_, '_>, path: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.leaf(node, path)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(node, path, ErrorKind::InvalidNumber { value: v, min, max });
                None
            }
        }
    }

    fn u32(&mut self, node: Node<'_, '_>, path: &str, min: u32, max: u32) -> Option<u32> {
        self.number(node, path, min.into(), max.into())
            .and_then(|n| u32::try_from(n).ok())
    }

    fn name<T: WindowsName>(&mut self, node: Node<'_, '_>, path: &str) -> Option<T> {
        let v = self.leaf(node, path)?;
        let parsed = T::parse(&v);
        if parsed.is_none() {
            self.error(
                node,
                path,
                ErrorKind::InvalidValue {
                    value: v,
                    allowed: T::ALLOWED,
                },
            );
        }
        parsed
    }

    fn address(&mut self, node: Node<'_, '_>, path: &str, v: &str) -> Option<IpAddr> {
        let parsed = v.parse::<IpAddr>().ok();
        if parsed.is_none() {
            self.error(
                node,
                path,
                ErrorKind::InvalidAddress {
                    value: v.to_owned(),
                },
            );
        }
        parsed
    }

    fn dns_names(&mut self, node: Node<'_, '_>, path: &str) -> Vec<String> {
        let Some(v) = self.leaf(node, path) else {
            return vec![];
        };
        let mut out = Vec::new();
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if is_dns_name(name) {
                out.push(name.to_owned());
            } else {
                self.error(
                    node,
                    path,
                    ErrorKind::InvalidDnsName {
                        value: name.to_owned(),
                    },
                );
            }
        }
        out
    }

    fn vpn_profile(&mut self, root: Node<'_, '_>) -> VpnProfile {
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

    fn proxy(&mut self, node: Node<'_, '_>, path: &str) -> Proxy {
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

    fn domain_name_information(
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

    fn traffic_filter(&mut self, node: Node<'_, '_>, path: &str) -> TrafficFilter {
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
    fn app_id(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
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

    fn app_trigger(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
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

    fn port_ranges(&mut self, node: Node<'_, '_>, path: &str) -> Vec<PortRange> {
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

    fn address_ranges(&mut self, node: Node<'_, '_>, path: &str) -> Vec<AddressRange> {
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

    fn route(&mut self, node: Node<'_, '_>, path: &str) -> Option<Route> {
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

    fn native_profile(&mut self, node: Node<'_, '_>, path: &str) -> Option<NativeProfile> {
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

    fn servers(&mut self, node: Node<'_, '_>, path: &str) -> Vec<Server> {
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

    fn protocol_list(&mut self, node: Node<'_, '_>, path: &str) -> ProtocolList {
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

    fn crypto_suite(&mut self, node: Node<'_, '_>, path: &str) -> CryptographySuite {
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

    fn authentication(&mut self, node: Node<'_, '_>, path: &str) -> Authentication {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        let e =
            ParsedProfile::parse_str("q.txt", "&lt;VPNProfile&gt;\n  &lt;/Route&gt;").unwrap_err();
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
}
