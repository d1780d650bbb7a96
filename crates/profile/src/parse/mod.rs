//! Reading a profile from any of its three delivery forms: plain ProfileXML, the escaped string
//! devicecert.ps1 hands to the WMI bridge, and an MDM SyncML envelope.

use std::collections::HashMap;

use roxmltree::{Document, Node, ParsingOptions};

use crate::error::{ErrorKind, Pos, ProfileError, ProfileErrors, ProfileWarning};
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

mod elements;
mod reader;

pub(crate) use elements::is_host;
use reader::{Cx, is};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
