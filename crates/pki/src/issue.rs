//! Issuing certificates: root and intermediate CAs, gateway, machine and user certificates.
//!
//! Keys come from the system RNG (aws-lc); serial numbers are 127-bit random.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::{Certificate, Identity, KeyAlgorithm, PkiError, PrivateKey};

/// OID arcs of the IKE-intermediate EKU, 1.3.6.1.5.5.8.2.2.
const IKE_INTERMEDIATE_ARCS: &[u64] = &[1, 3, 6, 1, 5, 5, 8, 2, 2];
/// OID arcs of the Microsoft UPN otherName, 1.3.6.1.4.1.311.20.2.3.
const MS_UPN_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

/// The end-entity certificate profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// VPN gateway: EKU serverAuth + IKE-intermediate, SAN dNSName = name (plus iPAddress
    /// when the name is an IP literal), CN = name.
    Gateway,
    /// Device-tunnel machine: EKU clientAuth, SAN dNSName = machine FQDN, CN = name.
    Machine,
    /// User-tunnel user: EKU clientAuth, SAN rfc822Name and Microsoft UPN = user@domain,
    /// CN = name.
    User,
}

/// A certificate's validity period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl Validity {
    /// From `start` for `days` days.
    pub fn days_from(start: SystemTime, days: u32) -> Self {
        Self {
            not_before: start,
            not_after: start + Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

/// A CA that can issue: its certificate, its key and the certificates above it.
#[derive(Clone, Debug)]
pub struct CertificateAuthority {
    /// This CA's certificate first, then its issuers up to and including the root.
    chain: Vec<Certificate>,
    key: PrivateKey,
}

impl CertificateAuthority {
    /// Creates a self-signed root CA: basicConstraints cA:TRUE, keyUsage keyCertSign+cRLSign.
    pub fn new_root(
        common_name: &str,
        alg: KeyAlgorithm,
        validity: Validity,
    ) -> Result<Self, PkiError> {
        let key = PrivateKey::generate(alg)?;
        let kp = key.rcgen_key_pair()?;
        let mut params = base_params(common_name, validity)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&kp)?;
        Ok(Self {
            chain: vec![Certificate::from_der(cert.der())?],
            key,
        })
    }

    /// Reassembles a CA from its certificate chain (this CA first, then its issuers) and key.
    /// Checks the first certificate is a CA and the key belongs to it.
    pub fn from_parts(chain: Vec<Certificate>, key: PrivateKey) -> Result<Self, PkiError> {
        let ca = chain.first().ok_or(PkiError::NoCertificate)?;
        if !ca.is_ca() {
            return Err(PkiError::NotCa(ca.subject().to_owned()));
        }
        if ca.spki_der() != key.public_key_spki()?.as_slice() {
            return Err(PkiError::KeyMismatch);
        }
        Ok(Self { chain, key })
    }

    /// This CA's certificate.
    pub fn cert(&self) -> &Certificate {
        // `chain` is never empty: every constructor puts the CA certificate first.
        &self.chain[0]
    }

    /// This CA's certificate followed by its issuers.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// This CA's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Issues a subordinate CA (pathLenConstraint 0: it may issue only end entities).
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        alg: KeyAlgorithm,
        validity: Validity,
    ) -> Result<Self, PkiError> {
        let key = PrivateKey::generate(alg)?;
        let mut params = base_params(common_name, validity)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = self.sign(&params, &key)?;
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        Ok(Self { chain, key })
    }

    /// Issues an end-entity certificate of `kind` for `name` with a fresh key. The returned
    /// identity's chain is the new certificate followed by this CA's chain (up to the root).
    pub fn issue(
        &self,
        kind: CertKind,
        name: &str,
        alg: KeyAlgorithm,
        validity: Validity,
    ) -> Result<Identity, PkiError> {
        let key = PrivateKey::generate(alg)?;
        let mut params = base_params(name, validity)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key.key_type().is_rsa() {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let ia5 = |s: &str| {
            s.try_into()
                .map_err(|_| PkiError::Issue(format!("name {s:?} is not ASCII")))
        };
        match kind {
            CertKind::Gateway => {
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::Other(IKE_INTERMEDIATE_ARCS.to_vec()),
                ];
                // Windows matches an IP it dialled against dNSName SANs, others use iPAddress.
                params.subject_alt_names.push(SanType::DnsName(ia5(name)?));
                if let Ok(ip) = name.parse::<IpAddr>() {
                    params.subject_alt_names.push(SanType::IpAddress(ip));
                }
            }
            CertKind::Machine => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                params.subject_alt_names.push(SanType::DnsName(ia5(name)?));
            }
            CertKind::User => {
                if !name.contains('@') {
                    return Err(PkiError::Issue(format!(
                        "user name {name:?} is not user@domain"
                    )));
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                params
                    .subject_alt_names
                    .push(SanType::Rfc822Name(ia5(name)?));
                params
                    .subject_alt_names
                    .push(SanType::OtherName((MS_UPN_ARCS.to_vec(), name.into())));
            }
        }
        let cert = self.sign(&params, &key)?;
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        Ok(Identity { key, chain })
    }

    fn sign(&self, params: &CertificateParams, key: &PrivateKey) -> Result<Certificate, PkiError> {
        let subject_key: KeyPair = key.rcgen_key_pair()?;
        let issuer = Issuer::from_ca_cert_der(self.cert().der(), self.key.rcgen_key_pair()?)?;
        let cert = params.signed_by(&subject_key, &issuer)?;
        Certificate::from_der(cert.der())
    }
}

/// Subject CN, validity, random serial, key identifiers.
fn base_params(common_name: &str, validity: Validity) -> Result<CertificateParams, PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::Issue("empty name".into()));
    }
    if validity.not_after <= validity.not_before {
        return Err(PkiError::Issue("notAfter must be after notBefore".into()));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::from(validity.not_before);
    params.not_after = time::OffsetDateTime::from(validity.not_after);
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Issue("RNG failure".into()))?;
    // Positive and minimal: top bit clear, first octet non-zero.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}
