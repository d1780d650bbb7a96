//! PKCS#12 (.pfx/.p12): the form Windows exports and imports a certificate with its key.

use p12_keystore::{
    EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive, PrivateKeyChain,
};

use crate::{Certificate, PkiError, PrivateKey};

/// A key with its certificate chain, as found in or written to a PKCS#12 file.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The private key.
    pub key: PrivateKey,
    /// The end-entity certificate first, then its issuers in order (as far as present).
    pub chain: Vec<Certificate>,
}

/// Encryption of a written PKCS#12 file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pkcs12Encryption {
    /// PBES2 with AES-256-CBC and an HMAC-SHA256 MAC: Windows 10 1709+/Server 2019+ and
    /// OpenSSL 3 default ("AES256-SHA256" in the Windows export dialog).
    #[default]
    Aes256Sha256,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC with an HMAC-SHA1 MAC: for old Windows and OpenSSL 1.x.
    Legacy3DesSha1,
}

impl Identity {
    /// Reads a PKCS#12 file. Both modern (PBES2/AES) and legacy (3DES, RC2-40) encryption are
    /// supported. The first private key is taken; its certificate is the one with the same
    /// localKeyId or, failing that, the one whose public key matches.
    pub fn from_pkcs12(data: &[u8], password: &str) -> Result<Self, PkiError> {
        let archive = Pkcs12Archive::from_pkcs12(data, password).map_err(map_p12_error)?;
        let key_bag = archive.keys.first().ok_or(PkiError::NoPrivateKey)?;
        let key = PrivateKey::from_pkcs8_der(key_bag.key.as_der())?;
        let key_spki = key.public_key_spki()?;
        let mut certs = Vec::with_capacity(archive.certs.len());
        let mut leaf = None;
        for bag in &archive.certs {
            let cert = Certificate::from_der(bag.cert.as_der())?;
            let id_match = match (&bag.local_key_id, &key_bag.local_key_id) {
                (Some(c), Some(k)) => c.as_slice() == k.as_ref(),
                _ => false,
            };
            if leaf.is_none() && (id_match || cert.spki_der() == key_spki.as_slice()) {
                leaf = Some(certs.len());
            }
            certs.push(cert);
        }
        let leaf_idx = leaf.ok_or(PkiError::NoCertificate)?;
        let leaf = certs.swap_remove(leaf_idx);
        if leaf.spki_der() != key_spki.as_slice() {
            return Err(PkiError::KeyMismatch);
        }
        let chain = order_chain(leaf, certs);
        Ok(Self { key, chain })
    }

    /// Writes a PKCS#12 file holding the key, the end-entity certificate and its chain, with
    /// the MAC and encryption keyed from `password`. The salt comes from the system RNG.
    pub fn to_pkcs12(
        &self,
        password: &str,
        encryption: Pkcs12Encryption,
    ) -> Result<Vec<u8>, PkiError> {
        let leaf = self.chain.first().ok_or(PkiError::NoCertificate)?;
        if leaf.spki_der() != self.key.public_key_spki()?.as_slice() {
            return Err(PkiError::KeyMismatch);
        }
        let key = p12_keystore::PrivateKey::from_der(self.key.pkcs8_der())
            .map_err(|e| PkiError::Pkcs12(e.to_string()))?;
        let certs = self
            .chain
            .iter()
            .map(|c| p12_keystore::Certificate::from_der(c.der().as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::Pkcs12(e.to_string()))?;
        // localKeyId = SHA-1 of the certificate, as OpenSSL and Windows write it.
        let local_key_id = leaf.thumbprint().0.to_vec();
        let alias = leaf
            .dns_names()
            .first()
            .cloned()
            .unwrap_or_else(|| leaf.subject().to_owned());
        let mut store = KeyStore::new();
        store.add_entry(
            &alias,
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
        );
        let (enc, mac) = match encryption {
            Pkcs12Encryption::Aes256Sha256 => (
                EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
                MacAlgorithm::HmacSha256,
            ),
            Pkcs12Encryption::Legacy3DesSha1 => (
                EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
                MacAlgorithm::HmacSha1,
            ),
        };
        store
            .writer(password)
            .encryption_algorithm(enc)
            .mac_algorithm(mac)
            .write()
            .map_err(|e| PkiError::Pkcs12(e.to_string()))
    }
}

/// Leaf first, then each issuer found among `others` (by issuer/subject name), stopping at a
/// self-issued certificate or when the next issuer is missing. Leftovers are dropped.
fn order_chain(leaf: Certificate, mut others: Vec<Certificate>) -> Vec<Certificate> {
    let mut chain = vec![leaf];
    while let Some(last) = chain.last() {
        if last.is_self_issued() {
            break;
        }
        let Some(pos) = others
            .iter()
            .position(|c| c.subject_der() == last.issuer_der())
        else {
            break;
        };
        chain.push(others.swap_remove(pos));
    }
    chain
}

fn map_p12_error(e: p12_keystore::error::Error) -> PkiError {
    use p12_keystore::error::Error as E;
    match e {
        // A wrong password fails the MAC; MAC-less files fail padding or PKCS#8 parsing instead.
        E::MacError(_) | E::UnpadError => PkiError::WrongPassword,
        E::DerError(_) | E::InvalidVersion | E::X509Error(_) | E::InvalidLength => {
            PkiError::BadEncoding(format!("PKCS#12: {e}"))
        }
        other => PkiError::Pkcs12(other.to_string()),
    }
}
