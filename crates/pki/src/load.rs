//! Reading certificates from the forms they arrive in, and writing PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::{Certificate, PkiError};

/// Loads certificates from PEM (one or a bundle), a single DER certificate, or the Azure
/// "public certificate data" form (base64 of the DER without PEM armour, whitespace allowed).
/// Returns them in file order; an input with no certificate is an error.
pub fn load_certificates(data: &[u8]) -> Result<Vec<Certificate>, PkiError> {
    if looks_like_pem(data) {
        let mut out = Vec::new();
        for item in CertificateDer::pem_slice_iter(data) {
            let der = item.map_err(|e| PkiError::BadEncoding(format!("PEM: {e:?}")))?;
            out.push(Certificate::from_der(der.as_ref())?);
        }
        if out.is_empty() {
            return Err(PkiError::NoCertificate);
        }
        return Ok(out);
    }
    if data.first() == Some(&0x30) {
        return Ok(vec![Certificate::from_der(data)?]);
    }
    let text: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    let der = STANDARD
        .decode(&text)
        .map_err(|e| PkiError::BadEncoding(format!("neither PEM, DER nor base64: {e}")))?;
    Ok(vec![Certificate::from_der(&der)?])
}

/// Loads exactly the first certificate of [`load_certificates`].
pub fn load_certificate(data: &[u8]) -> Result<Certificate, PkiError> {
    load_certificates(data)?
        .into_iter()
        .next()
        .ok_or(PkiError::NoCertificate)
}

/// PEM text of several certificates, concatenated (a bundle).
pub fn certificates_to_pem(certs: &[Certificate]) -> String {
    certs.iter().map(Certificate::to_pem).collect()
}

pub(crate) fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// PEM armour with 64-column base64 lines; the buffer is wiped on drop (keys go through here).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
