//! A parsed certificate: the DER plus the fields IKE and validation need, extracted once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{KeyType, PkiError, Thumbprint, thumbprint::sha1};

/// OID of the IKE-intermediate EKU (id-kp-ipsecIKE... "IP security IKE intermediate"),
/// 1.3.6.1.5.5.8.2.2, which Windows accepts on gateway certificates.
pub const OID_EKU_IKE_INTERMEDIATE: &str = "1.3.6.1.5.5.8.2.2";
/// OID of the Microsoft User Principal Name otherName SAN, 1.3.6.1.4.1.311.20.2.3.
pub const OID_SAN_MS_UPN: &str = "1.3.6.1.4.1.311.20.2.3";

/// The extended key usages we care about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eku {
    /// id-kp-serverAuth 1.3.6.1.5.5.7.3.1
    pub server_auth: bool,
    /// id-kp-clientAuth 1.3.6.1.5.5.7.3.2
    pub client_auth: bool,
    /// IKE intermediate 1.3.6.1.5.5.8.2.2
    pub ike_intermediate: bool,
    /// anyExtendedKeyUsage 2.5.29.37.0
    pub any: bool,
}

/// An X.509 certificate: its DER and the fields we use, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    der: CertificateDer<'static>,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    spki_der: Vec<u8>,
    subject: String,
    issuer: String,
    dns_names: Vec<String>,
    rfc822_names: Vec<String>,
    upns: Vec<String>,
    organizations: Vec<String>,
    organizational_units: Vec<String>,
    ip_addrs: Vec<IpAddr>,
    eku: Option<Eku>,
    digital_signature: Option<bool>,
    is_ca: bool,
    key_type: Option<KeyType>,
    not_before: i64,
    not_after: i64,
}

impl Certificate {
    /// Parses one DER certificate (trailing bytes are an error).
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, x) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::BadEncoding(format!("X.509: {e}")))?;
        if !rest.is_empty() {
            return Err(PkiError::BadEncoding(
                "trailing bytes after certificate".into(),
            ));
        }
        let bad_ext = |e: x509_parser::error::X509Error| {
            PkiError::BadEncoding(format!("X.509 extension: {e}"))
        };
        let mut dns_names = Vec::new();
        let mut rfc822_names = Vec::new();
        let mut upns = Vec::new();
        let mut ip_addrs = Vec::new();
        if let Some(san) = x.subject_alternative_name().map_err(bad_ext)? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) => dns_names.push((*s).to_owned()),
                    GeneralName::RFC822Name(s) => rfc822_names.push((*s).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_octets(b) {
                            ip_addrs.push(ip);
                        }
                    }
                    GeneralName::OtherName(oid, value) if oid.to_id_string() == OID_SAN_MS_UPN => {
                        if let Some(upn) = parse_upn_value(value) {
                            upns.push(upn);
                        }
                    }
                    _ => {}
                }
            }
        }
        let eku = x.extended_key_usage().map_err(bad_ext)?.map(|ext| {
            let v = ext.value;
            Eku {
                server_auth: v.server_auth,
                client_auth: v.client_auth,
                ike_intermediate: v
                    .other
                    .iter()
                    .any(|o| o.to_id_string() == OID_EKU_IKE_INTERMEDIATE),
                any: v.any,
            }
        });
        let digital_signature = x
            .key_usage()
            .map_err(bad_ext)?
            .map(|ku| ku.value.digital_signature());
        let is_ca = x
            .basic_constraints()
            .map_err(bad_ext)?
            .is_some_and(|bc| bc.value.ca);
        let validity = x.validity();
        Ok(Self {
            der: CertificateDer::from(der.to_vec()),
            subject_der: x.subject().as_raw().to_vec(),
            issuer_der: x.issuer().as_raw().to_vec(),
            spki_der: x.public_key().raw.to_vec(),
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            dns_names,
            rfc822_names,
            upns,
            organizations: x
                .subject()
                .iter_organization()
                .filter_map(|a| a.as_str().ok().map(str::to_owned))
                .collect(),
            organizational_units: x
                .subject()
                .iter_organizational_unit()
                .filter_map(|a| a.as_str().ok().map(str::to_owned))
                .collect(),
            ip_addrs,
            eku,
            digital_signature,
            is_ca,
            key_type: public_key_type(x.public_key()),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// The certificate DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Subject Name as DER (the SEQUENCE), the value of an IKE ID_DER_ASN1_DN.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// Issuer Name as DER.
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-1 of the SubjectPublicKeyInfo: how IKE CERTREQ names a CA (RFC 7296 section 3.7).
    pub fn spki_sha1(&self) -> [u8; 20] {
        sha1(&self.spki_der)
    }

    /// SHA-1 thumbprint of the whole certificate (Windows/Azure form).
    pub fn thumbprint(&self) -> Thumbprint {
        Thumbprint::of_der(&self.der)
    }

    /// Subject in RFC 4514-like text, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Issuer in RFC 4514-like text, for logs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// dNSName subjectAltNames.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// rfc822Name (e-mail) subjectAltNames.
    pub fn rfc822_names(&self) -> &[String] {
        &self.rfc822_names
    }

    /// Microsoft UPN otherName subjectAltNames (1.3.6.1.4.1.311.20.2.3).
    pub fn upns(&self) -> &[String] {
        &self.upns
    }

    /// The subject's organization (O) values.
    pub fn organizations(&self) -> &[String] {
        &self.organizations
    }

    /// The subject's organizational unit (OU) values.
    pub fn organizational_units(&self) -> &[String] {
        &self.organizational_units
    }

    /// iPAddress subjectAltNames.
    pub fn ip_addrs(&self) -> &[IpAddr] {
        &self.ip_addrs
    }

    /// Extended key usage, or `None` when the extension is absent.
    pub fn eku(&self) -> Option<Eku> {
        self.eku
    }

    /// keyUsage digitalSignature bit, or `None` when keyUsage is absent.
    pub fn key_usage_digital_signature(&self) -> Option<bool> {
        self.digital_signature
    }

    /// The type of the certified public key, if it is one we can sign with.
    pub fn key_type(&self) -> Option<KeyType> {
        self.key_type
    }

    /// basicConstraints cA.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// Subject and issuer are the same name (a root, usually).
    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// notBefore.
    pub fn not_before(&self) -> SystemTime {
        unix_to_system_time(self.not_before)
    }

    /// notAfter.
    pub fn not_after(&self) -> SystemTime {
        unix_to_system_time(self.not_after)
    }

    /// The Azure "public certificate data" form: base64 of the DER on one line, no PEM armour.
    pub fn to_base64_line(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.der.as_ref())
    }

    /// PEM `CERTIFICATE` text.
    pub fn to_pem(&self) -> String {
        crate::load::pem_encode("CERTIFICATE", self.der.as_ref()).to_string()
    }
}

fn unix_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

pub(crate) fn ip_from_octets(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Some(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        None
    }
}

/// The UPN otherName value is `[0] EXPLICIT UTF8String`; x509-parser may hand us either the
/// explicit wrapper or the UTF8String inside, so peel what is there.
fn parse_upn_value(mut v: &[u8]) -> Option<String> {
    loop {
        let (&tag, rest) = v.split_first()?;
        let (len, rest) = der_len(rest)?;
        let body = rest.get(..len)?;
        match tag {
            0xa0 => v = body,
            0x0c => return std::str::from_utf8(body).ok().map(str::to_owned),
            _ => return None,
        }
    }
}

/// Reads a DER definite length; returns it and the rest.
fn der_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = b.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = rest.get(..n)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    Some((len, rest.get(n..)?))
}

/// RSA (with its size), ECDSA P-256 or P-384; `None` for any other key.
fn public_key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<KeyType> {
    use x509_parser::public_key::PublicKey;
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(k)) => u32::try_from(k.key_size()).ok().map(KeyType::Rsa),
            _ => None,
        },
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            match curve.to_id_string().as_str() {
                "1.2.840.10045.3.1.7" => Some(KeyType::EcdsaP256),
                "1.3.132.0.34" => Some(KeyType::EcdsaP384),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{der_len, parse_upn_value};
    use proptest::prelude::*;

    #[test]
    fn upn_value_forms() {
        // [0] { UTF8String "a@b" } and the bare UTF8String.
        assert_eq!(
            parse_upn_value(&[0xa0, 5, 0x0c, 3, b'a', b'@', b'b']).unwrap(),
            "a@b"
        );
        assert_eq!(
            parse_upn_value(&[0x0c, 3, b'a', b'@', b'b']).unwrap(),
            "a@b"
        );
        assert_eq!(
            parse_upn_value(&[0x0c, 4, b'a', b'@', b'b']),
            None,
            "length past the end"
        );
        assert_eq!(
            parse_upn_value(&[0x16, 1, b'a']),
            None,
            "IA5String is not a UPN"
        );
        assert_eq!(parse_upn_value(&[0x0c, 2, 0xff, 0xfe]), None, "not UTF-8");
        assert_eq!(der_len(&[0x82, 0x01, 0x00]), Some((256, &[][..])));
        assert_eq!(der_len(&[0x80]), None, "indefinite length is not DER");
    }

    proptest! {
        #[test]
        fn upn_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_upn_value(&data);
        }
    }
}
