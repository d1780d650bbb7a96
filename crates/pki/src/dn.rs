//! Distinguished names compared the way RFC 5280 section 7.1 says: attribute by attribute,
//! with the directory string types transcoded to Unicode and prepared per RFC 4518 (mapped,
//! case folded, NFKC-normalised, insignificant spaces removed). A strongSwan client configured
//! with `id = "CN=pc1.corp.example"` sends the DN as UTF8String while the CA may have written
//! PrintableString: byte comparison says they differ, X.500 says they are the same name.

use unicode_normalization::UnicodeNormalization;
use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// The canonical DER of a Name: every directory string re-encoded as the prepared UTF8String,
/// the attributes of each RDN in DER SET OF order. Two names match (RFC 5280 7.1) exactly when
/// their canonical forms are equal. `None` when `der` is not a Name.
pub fn canonical_dn(der: &[u8]) -> Option<Vec<u8>> {
    let (rest, name) = X509Name::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let mut attributes: Vec<Vec<u8>> = Vec::new();
        for atv in rdn.iter() {
            let mut body = Vec::new();
            tlv(&mut body, &[0x06], atv.attr_type().as_bytes());
            canonical_value(&mut body, atv.attr_value())?;
            let mut attribute = Vec::new();
            tlv(&mut attribute, &[0x30], &body);
            attributes.push(attribute);
        }
        attributes.sort();
        let mut set = Vec::new();
        tlv(&mut set, &[0x31], &attributes.concat());
        rdns.push(set);
    }
    let mut out = Vec::new();
    tlv(&mut out, &[0x30], &rdns.concat());
    Some(out)
}

/// Whether two DER Names are the same name (RFC 5280 7.1); malformed input matches nothing.
pub fn dn_equal(a: &[u8], b: &[u8]) -> bool {
    match (canonical_dn(a), canonical_dn(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Appends the canonical encoding of one attribute value.
fn canonical_value(out: &mut Vec<u8>, value: &Any<'_>) -> Option<()> {
    let data = value.as_bytes();
    if value.class() == Class::Universal
        && let Some(text) = directory_string(value.tag(), data)
    {
        tlv(out, &[0x0c], prepare(&text?).as_bytes());
        return Some(());
    }
    // Anything else (an unusual attribute syntax) compares as it was encoded.
    tlv(out, &identifier(value)?, data);
    Some(())
}

/// The text of a directory string type; `None` for other tags, `Some(None)` when the bytes
/// are not valid for the type.
fn directory_string(tag: Tag, data: &[u8]) -> Option<Option<String>> {
    let text = match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return Some(None);
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return Some(None);
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => return None,
    };
    Some(text)
}

/// RFC 4518 section 2 for caseIgnoreMatch: map (drop controls and invisible characters,
/// other white space to SPACE), fold case, normalise (NFKC), and treat runs of spaces as one
/// with none at either end.
fn prepare(text: &str) -> String {
    let mapped: String = text
        .chars()
        .filter_map(|c| match c {
            '\u{00AD}'
            | '\u{034F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180D}'
            | '\u{200B}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFFC}' => None,
            '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{85}' => Some(' '),
            c if c.is_control() => None,
            c if c.is_whitespace() => Some(' '),
            c => Some(c),
        })
        .flat_map(char::to_lowercase)
        .collect();
    let normal: String = mapped.nfkc().collect();
    normal
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The identifier octets of `value` as it was encoded.
fn identifier(value: &Any<'_>) -> Option<Vec<u8>> {
    let class = match value.class() {
        Class::Universal => 0u8,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    let tag = value.tag().0;
    if tag < 31 {
        return Some(vec![class | constructed | u8::try_from(tag).ok()?]);
    }
    // High tag number form: base-128, most significant group first.
    let mut groups = Vec::new();
    let mut t = tag;
    loop {
        groups.push(u8::try_from(t & 0x7f).ok()?);
        t >>= 7;
        if t == 0 {
            break;
        }
    }
    let mut out = vec![class | constructed | 0x1f];
    let last = groups.len() - 1;
    for (i, g) in groups.iter().rev().enumerate() {
        out.push(if i == last { *g } else { g | 0x80 });
    }
    Some(out)
}

/// Appends tag, DER length and content.
fn tlv(out: &mut Vec<u8>, tag: &[u8], content: &[u8]) {
    out.extend_from_slice(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name { RDN { CN = value (tag) } } with an optional second RDN O = "Corp" (PrintableString).
    fn name(cn_tag: u8, cn: &[u8], with_o: bool) -> Vec<u8> {
        let mut rdns = Vec::new();
        if with_o {
            let mut atv = Vec::new();
            tlv(&mut atv, &[0x06], &[0x55, 0x04, 0x0a]);
            tlv(&mut atv, &[0x13], b"Corp");
            let mut seq = Vec::new();
            tlv(&mut seq, &[0x30], &atv);
            tlv(&mut rdns, &[0x31], &seq);
        }
        let mut atv = Vec::new();
        tlv(&mut atv, &[0x06], &[0x55, 0x04, 0x03]);
        tlv(&mut atv, &[cn_tag], cn);
        let mut seq = Vec::new();
        tlv(&mut seq, &[0x30], &atv);
        tlv(&mut rdns, &[0x31], &seq);
        let mut out = Vec::new();
        tlv(&mut out, &[0x30], &rdns);
        out
    }

    fn bmp(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn string_types_case_and_spaces_do_not_matter() {
        let printable = name(0x13, b"WinPC.Corp.Example", true);
        let utf8 = name(0x0c, b"winpc.corp.example", true);
        let spaced = name(0x0c, b"  winpc.corp.example ", true);
        let bmp_name = name(0x1e, &bmp("WINPC.corp.example"), true);
        let teletex = name(0x14, b"winpc.CORP.example", true);
        for other in [&utf8, &spaced, &bmp_name, &teletex] {
            assert!(dn_equal(&printable, other));
        }
        assert_ne!(printable, utf8, "the encodings differ byte for byte");
        let inner = name(0x0c, b"win pc", false);
        assert!(dn_equal(&inner, &name(0x0c, b"Win \t  PC", false)));
        // NFKC: the ligature "ﬁ" is "fi".
        assert!(dn_equal(
            &name(0x0c, "\u{FB01}le".as_bytes(), false),
            &name(0x13, b"FILE", false)
        ));
    }

    #[test]
    fn different_names_differ() {
        let a = name(0x13, b"pc1", true);
        assert!(!dn_equal(&a, &name(0x13, b"pc2", true)));
        assert!(!dn_equal(&a, &name(0x13, b"pc1", false)), "RDN count");
        assert!(!dn_equal(&a, &name(0x13, b"pc 1", true)), "inner space");
        assert!(!dn_equal(&a, &[0x30, 0x03, 0x01, 0x02]), "malformed");
        assert!(!dn_equal(&[], &[]), "empty input is no name");
        let odd_bmp = name(0x1e, &[0x00, 0x41, 0x00], false);
        assert_eq!(canonical_dn(&odd_bmp), None);
    }

    #[test]
    fn canonical_form_is_a_name_that_renders() {
        let c = canonical_dn(&name(0x13, b"WinPC", true)).unwrap();
        assert_eq!(
            crate::distinguished_name_text(&c).as_deref(),
            Some("O=corp, CN=winpc")
        );
        assert_eq!(canonical_dn(&c), Some(c.clone()), "idempotent");
    }

    #[test]
    fn long_values_use_long_form_lengths() {
        let long = "x".repeat(300);
        let a = name(0x13, long.as_bytes(), true);
        let b = name(0x0c, long.to_uppercase().as_bytes(), true);
        assert!(dn_equal(&a, &b));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = canonical_dn(&bytes);
        }
    }
}
