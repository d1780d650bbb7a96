//! The walk over one VPNProfile tree: where each element is, what it must hold (a leaf,
//! a boolean, a number in range, a name, an address), and the errors and warnings with their
//! positions. Every element the reader meets is recorded, so nothing is dropped silently.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use roxmltree::Node;

use crate::error::{ErrorKind, Pos, ProfileError, ProfileErrors, ProfileWarning, WarningKind};
use crate::model::*;
use crate::text::LineIndex;

use super::elements::is_dns_name;
use super::{CspUri, ParsedProfile, SourceForm, Spans, map_offset};

pub(super) fn is(n: &Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name)
}

/// Parsing state for one VPNProfile tree.
pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
    pub(super) lines: &'a LineIndex<'a>,
    pub(super) origin: Option<&'a [usize]>,
    pub(super) text: &'a str,
    pub(super) errors: Vec<ProfileError>,
    pub(super) warnings: Vec<ProfileWarning>,
    pub(super) spans: Spans,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
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

    pub(super) fn finish(
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

    pub(super) fn pos(&self, node: Node<'_, '_>) -> Pos {
        self.lines.pos(map_offset(self.origin, node.range().start))
    }

    pub(super) fn record(&mut self, node: Node<'_, '_>, path: &str) {
        let pos = self.pos(node);
        self.spans.0.insert(path.to_owned(), pos);
    }

    pub(super) fn error(&mut self, node: Node<'_, '_>, path: &str, kind: ErrorKind) {
        let pos = self.pos(node);
        self.errors.push(ProfileError {
            file: self.file.to_owned(),
            pos,
            element: path.to_owned(),
            kind,
        });
    }

    pub(super) fn warn(&mut self, node: Node<'_, '_>, path: &str, kind: WarningKind) {
        let pos = self.pos(node);
        self.warnings.push(ProfileWarning {
            file: self.file.to_owned(),
            pos,
            element: path.to_owned(),
            kind,
        });
    }

    pub(super) fn windows_only(&mut self, node: Node<'_, '_>, path: &str) {
        let name = node.tag_name().name().to_owned();
        self.warn(node, path, WarningKind::WindowsOnly { name });
    }

    pub(super) fn raw(&self, node: Node<'_, '_>) -> RawXml {
        RawXml(self.text.get(node.range()).unwrap_or("").to_owned())
    }

    /// The element children of `node`, each with its path; repeated names get `[n]`.
    pub(super) fn children<'n, 'i>(
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

    pub(super) fn unknown(&mut self, node: Node<'_, '_>, path: &str) {
        let parent = node
            .parent_element()
            .map_or("", |p| p.tag_name().name())
            .to_owned();
        let name = node.tag_name().name().to_owned();
        self.error(node, path, ErrorKind::UnknownElement { name, parent });
    }

    pub(super) fn missing(&mut self, parent: Node<'_, '_>, parent_path: &str, name: &str) {
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
    pub(super) fn leaf(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        if node.children().any(|c| c.is_element()) {
            let name = node.tag_name().name().to_owned();
            self.error(node, path, ErrorKind::UnexpectedChildElements { name });
            return None;
        }
        let text: String = node.children().filter_map(|c| c.text()).collect();
        Some(text.trim().to_owned())
    }

    pub(super) fn string(&mut self, node: Node<'_, '_>, path: &str) -> Option<String> {
        self.leaf(node, path).filter(|s| !s.is_empty())
    }

    pub(super) fn boolean(&mut self, node: Node<'_, '_>, path: &str) -> Option<bool> {
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

    pub(super) fn number(
        &mut self,
        node: Node<'_, '_>,
        path: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let v = self.leaf(node, path)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(node, path, ErrorKind::InvalidNumber { value: v, min, max });
                None
            }
        }
    }

    pub(super) fn u32(
        &mut self,
        node: Node<'_, '_>,
        path: &str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        self.number(node, path, min.into(), max.into())
            .and_then(|n| u32::try_from(n).ok())
    }

    pub(super) fn name<T: WindowsName>(&mut self, node: Node<'_, '_>, path: &str) -> Option<T> {
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

    pub(super) fn address(&mut self, node: Node<'_, '_>, path: &str, v: &str) -> Option<IpAddr> {
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

    pub(super) fn dns_names(&mut self, node: Node<'_, '_>, path: &str) -> Vec<String> {
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
}
