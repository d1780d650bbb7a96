//! INTERNAL_DNS_DOMAIN (RFC 8598 4.1): a domain whose names the tunnel's DNS servers resolve,
//! carried as its presentation form (`corp.example`, A-labels, no terminating NUL).

use ike_wire::{CfgAttribute, CfgAttributeType};

/// At most this many domains are taken from one reply: each becomes a resolver setting.
pub const MAX_DOMAINS: usize = 32;

/// The attribute that pushes `domain`.
pub fn attribute(domain: &str) -> CfgAttribute {
    CfgAttribute::Other {
        attr_type: CfgAttributeType::INTERNAL_DNS_DOMAIN,
        value: domain.as_bytes().to_vec(),
    }
}

/// The domain an INTERNAL_DNS_DOMAIN attribute carries, in lower case without a trailing dot;
/// `None` for other attributes, the empty request form, and anything that is not a plain
/// DNS name (these end up in resolver settings: no spaces, no control characters, no
/// options).
pub fn from_attribute(a: &CfgAttribute) -> Option<String> {
    let CfgAttribute::Other { attr_type, value } = a else {
        return None;
    };
    if *attr_type != CfgAttributeType::INTERNAL_DNS_DOMAIN || value.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    is_domain(&name).then_some(name)
}

/// A DNS name of two labels or more (a single label such as `com` would route a whole
/// top-level domain to the tunnel): letters, digits, hyphens and underscores, labels of 1 to
/// 63 octets that do not start with a hyphen, 253 octets at most.
pub fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.contains('.')
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_round_trip_and_junk_is_refused() {
        assert_eq!(
            from_attribute(&attribute("Corp.Example.")),
            Some("corp.example".to_owned())
        );
        for junk in [
            &b""[..],
            b"corp example",
            b"corp.example\nnameserver 1.2.3.4",
            b"-rf.example",
            b"com",
            b"a..b",
            b"\xff\xfe",
        ] {
            let a = CfgAttribute::Other {
                attr_type: CfgAttributeType::INTERNAL_DNS_DOMAIN,
                value: junk.to_vec(),
            };
            assert_eq!(from_attribute(&a), None, "{junk:?}");
        }
        let other = CfgAttribute::Other {
            attr_type: CfgAttributeType(26),
            value: b"corp.example".to_vec(),
        };
        assert_eq!(from_attribute(&other), None);
    }
}
