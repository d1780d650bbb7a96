//! Text plumbing: byte-order marks, XML entity/CDATA decoding with an offset map, and byte offsets
//! to line/column, so positions inside an escaped profile point into the file the admin wrote.

use crate::error::Pos;

/// Decode a file's bytes: UTF-8 (with or without BOM) or UTF-16 with a BOM (what PowerShell's
/// `Out-File` writes). `None` when the bytes are neither.
pub fn decode_bytes(bytes: &[u8]) -> Option<String> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8(rest.to_vec()).ok();
    }
    let utf16 = |rest: &[u8], le: bool| -> Option<String> {
        if !rest.len().is_multiple_of(2) {
            return None;
        }
        let units = rest.chunks_exact(2).map(|c| {
            let pair = [c[0], c[1]];
            if le {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .ok()
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    String::from_utf8(bytes.to_vec()).ok()
}

/// Line starts of a text, to turn byte offsets into 1-based line/column (columns in characters).
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: saturating_u32(col + 1),
        }
    }

    /// Inverse of [`LineIndex::pos`]: the byte offset of a 1-based row/column.
    pub fn offset(&self, line: u32, col: u32) -> usize {
        let Some(&start) = self.starts.get((line as usize).saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = self.text.get(start..).unwrap_or("");
        let skip = (col as usize).saturating_sub(1);
        start + rest.char_indices().nth(skip).map_or(rest.len(), |(i, _)| i)
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Which entities [`unescape`] decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entities {
    /// Every XML entity and CDATA section (correct XML escaping, e.g. SyncML `<Data>`).
    All,
    /// Only `&lt;`, `&gt;` and `&quot;`: what devicecert.ps1 replaces, leaving `&amp;` alone.
    PowerShellScript,
}

/// Text decoded from an escaped form, with the byte offset in the original text of every byte.
#[derive(Debug, Clone)]
pub struct Unescaped {
    pub text: String,
    /// `origin[i]` = offset in the original of decoded byte `i`; one extra entry for the end.
    pub origin: Vec<usize>,
}

/// Decode `raw` (which starts at `base` in the original text). Unknown or malformed entities are
/// kept literally so the inner XML parser reports them at the right place.
pub fn unescape(raw: &str, base: usize, entities: Entities) -> Unescaped {
    let mut text = String::with_capacity(raw.len());
    let mut origin = Vec::with_capacity(raw.len() + 1);
    let mut push = |text: &mut String, s: &str, at: usize| {
        text.push_str(s);
        origin.extend(std::iter::repeat_n(at, s.len()));
    };
    let mut i = 0;
    while i < raw.len() {
        let rest = raw.get(i..).unwrap_or("");
        if entities == Entities::All
            && let Some(body) = rest.strip_prefix("<![CDATA[")
        {
            let len = body.find("]]>").unwrap_or(body.len());
            let content = body.get(..len).unwrap_or("");
            for (j, c) in content.char_indices() {
                let mut buf = [0u8; 4];
                push(&mut text, c.encode_utf8(&mut buf), base + i + 9 + j);
            }
            i += 9 + len + 3.min(body.len() - len);
            continue;
        }
        if rest.starts_with('&')
            && let Some((decoded, used)) = entity(rest, entities)
        {
            let mut buf = [0u8; 4];
            push(&mut text, decoded.encode_utf8(&mut buf), base + i);
            i += used;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        let mut buf = [0u8; 4];
        push(&mut text, c.encode_utf8(&mut buf), base + i);
        i += c.len_utf8();
    }
    origin.push(base + raw.len());
    Unescaped { text, origin }
}

fn entity(s: &str, entities: Entities) -> Option<(char, usize)> {
    let end = s.get(..12.min(s.len())).unwrap_or(s).find(';')?;
    let name = s.get(1..end)?;
    let c = match (name, entities) {
        ("lt", _) => '<',
        ("gt", _) => '>',
        ("quot", _) => '"',
        ("amp", Entities::All) => '&',
        ("apos", Entities::All) => '\'',
        (n, Entities::All) if n.starts_with("#x") => {
            char::from_u32(u32::from_str_radix(n.get(2..)?, 16).ok()?)?
        }
        (n, Entities::All) if n.starts_with('#') => char::from_u32(n.get(1..)?.parse().ok()?)?,
        _ => return None,
    };
    Some((c, end + 1))
}

/// Escape text for an XML text node or attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unescape_maps_offsets_back() {
        let raw = "x&lt;A&gt;\n&amp;<![CDATA[<b>]]>z";
        let u = unescape(raw, 10, Entities::All);
        assert_eq!(u.text, "x<A>\n&<b>z");
        assert_eq!(u.origin[1], 11); // '<' came from "&lt;" at raw offset 1
        assert_eq!(u.origin[2], 15); // 'A'
        assert_eq!(u.origin[6], 10 + 16 + 9); // '<' inside CDATA
        assert_eq!(*u.origin.last().unwrap(), 10 + raw.len());
    }

    #[test]
    fn powershell_form_keeps_amp() {
        let u = unescape("&lt;a&gt;&amp;&lt;/a&gt;", 0, Entities::PowerShellScript);
        assert_eq!(u.text, "<a>&amp;</a>");
    }

    #[test]
    fn line_index_round_trips() {
        let t = "ab\nçd\n\nx";
        let idx = LineIndex::new(t);
        for off in [0, 1, 3, 5, 6, 7, 8] {
            let p = idx.pos(off);
            assert_eq!(idx.offset(p.line, p.col), off, "offset {off} -> {p:?}");
        }
        assert_eq!(idx.pos(6), Pos { line: 2, col: 3 });
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<a/>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_bytes(&bytes).as_deref(), Some("<a/>"));
        assert_eq!(decode_bytes(&[0xFF, 0xFE, 0x00]), None);
    }
}
