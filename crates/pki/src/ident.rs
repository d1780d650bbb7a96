//! Matching IKE identities (RFC 7296 section 3.5) against certificates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Certificate;

/// IKEv2 ID types (RFC 7296 section 3.5) that [`cert_matches_id`] understands.
pub mod id_type {
    /// ID_IPV4_ADDR: 4 octets.
    pub const IPV4_ADDR: u8 = 1;
    /// ID_FQDN: a DNS name, no terminator.
    pub const FQDN: u8 = 2;
    /// ID_RFC822_ADDR: an e-mail style name (also used for UPNs).
    pub const RFC822_ADDR: u8 = 3;
    /// ID_IPV6_ADDR: 16 octets.
    pub const IPV6_ADDR: u8 = 5;
    /// ID_DER_ASN1_DN: the DER of an X.500 Name; what Windows sends with machine certificates.
    pub const DER_ASN1_DN: u8 = 9;
}

/// Does the IKE identity (`id_type`, `id_data` from an IDi/IDr payload) name this certificate?
///
/// * FQDN: equals a dNSName SAN, ASCII case-insensitive (one trailing dot is ignored).
/// * RFC822: equals an rfc822Name or a Microsoft UPN SAN, case-insensitive.
/// * DER_ASN1_DN: the same name as the subject (RFC 5280 7.1, see [`crate::canonical_dn`]).
/// * IPv4/IPv6: equals an iPAddress SAN.
///
/// Any other type, or malformed data (wrong address length, non-UTF-8 names), does not match.
pub fn cert_matches_id(cert: &Certificate, id_type: u8, id_data: &[u8]) -> bool {
    match id_type {
        id_type::FQDN => match std::str::from_utf8(id_data) {
            Ok(name) => {
                // One trailing dot is the root label of a fully qualified name; more is not
                // a DNS name, and must not be a second spelling of this one.
                let name = name.strip_suffix('.').unwrap_or(name);
                !name.is_empty()
                    && cert
                        .dns_names()
                        .iter()
                        .any(|d| d.strip_suffix('.').unwrap_or(d).eq_ignore_ascii_case(name))
            }
            Err(_) => false,
        },
        id_type::RFC822_ADDR => match std::str::from_utf8(id_data) {
            Ok(name) => {
                !name.is_empty()
                    && cert
                        .rfc822_names()
                        .iter()
                        .chain(cert.upns())
                        .any(|r| r.eq_ignore_ascii_case(name))
            }
            Err(_) => false,
        },
        id_type::DER_ASN1_DN => crate::dn_equal(cert.subject_der(), id_data),
        id_type::IPV4_ADDR => match <[u8; 4]>::try_from(id_data) {
            Ok(a) => cert.ip_addrs().contains(&IpAddr::V4(Ipv4Addr::from(a))),
            Err(_) => false,
        },
        id_type::IPV6_ADDR => match <[u8; 16]>::try_from(id_data) {
            Ok(a) => cert.ip_addrs().contains(&IpAddr::V6(Ipv6Addr::from(a))),
            Err(_) => false,
        },
        _ => false,
    }
}

/// An ID_DER_ASN1_DN (a DER X.500 Name) as RFC 4514-like text (`CN=pc1, O=Corp`), for logs
/// and status output; `None` when the bytes are not a Name.
pub fn distinguished_name_text(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (rest, name) = x509_parser::x509::X509Name::from_der(der).ok()?;
    rest.is_empty().then(|| name.to_string())
}

#[cfg(test)]
mod dn_tests {
    use super::*;

    #[test]
    fn distinguished_names_render_as_text_and_garbage_does_not() {
        use std::time::{Duration, SystemTime};
        let v = crate::Validity::days_from(SystemTime::now() - Duration::from_secs(60), 1);
        let ca = crate::CertificateAuthority::new_root("Test Root", crate::KeyAlgorithm::P256, v)
            .unwrap();
        let text = distinguished_name_text(ca.cert().subject_der()).unwrap();
        assert!(text.contains("CN=Test Root"), "{text}");
        assert_eq!(distinguished_name_text(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(distinguished_name_text(&[]), None);
    }
}
