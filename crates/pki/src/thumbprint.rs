//! SHA-1 certificate thumbprints, the form Azure and Windows use to name certificates.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;

use crate::PkiError;

/// SHA-1 of a whole certificate DER (Windows "Thumbprint", Azure's revoked-certificate key).
///
/// Displays as 40 uppercase hex digits without separators, as the Azure portal shows it.
/// Parsing accepts either case, ':' or space separators, and the invisible U+200E/U+200F marks
/// that the Windows certificate dialog puts in front of copied thumbprints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(pub [u8; 20]);

impl Thumbprint {
    /// Thumbprint of a DER certificate.
    pub fn of_der(cert_der: &[u8]) -> Self {
        Self(sha1(cert_der))
    }
}

/// SHA-1 digest; used for thumbprints and for CERTREQ CA-key hashes (RFC 7296 3.7).
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    let mut out = [0u8; 20];
    // SHA-1 output is always 20 bytes.
    out.copy_from_slice(d.as_ref());
    out
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

impl FromStr for Thumbprint {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s
            .chars()
            .filter(|c| !matches!(c, ':' | ' ' | '\t' | '\u{200e}' | '\u{200f}' | '\u{feff}'))
            .collect();
        let mut out = [0u8; 20];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| PkiError::BadThumbprint(s.into()))?;
        Ok(Self(out))
    }
}
