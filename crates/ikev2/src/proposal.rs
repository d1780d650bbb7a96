//! IKE and ESP proposals: strongSwan-notation parsing, wire conversion and selection.
//!
//! Notation (strongSwan `proposals` / `esp_proposals`): algorithm tokens joined by `-`, several
//! tokens of one kind form alternatives, e.g. `aes256gcm16-aes128gcm16-prfsha384-ecp384-x25519`.
//! IKE: encryption, integrity (`sha256` also implies the PRF when no `prf*` token is given; for
//! AEAD ciphers `sha*` tokens name PRFs), PRF, DH group (mandatory). ESP: encryption, integrity
//! (not with AEAD), optional DH groups (PFS, used only by CREATE_CHILD_SA) and `esn`/`noesn`.

use std::fmt;
use std::str::FromStr;

use ike_wire::{EncrId, EsnId, IntegId, PrfId, Proposal, ProtocolId, Transform, TransformId};
use ipsec_crypto::{DhGroup, EncrAlg, IntegAlg, PrfAlg};

/// Why a proposal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The string (or one `-`-separated part) is empty.
    #[error("empty proposal")]
    Empty,
    /// A token that names no algorithm.
    #[error("unknown algorithm token {0:?}")]
    UnknownToken(String),
    /// A known algorithm that this implementation cannot use in this kind of proposal.
    #[error("algorithm {0:?} is not supported here")]
    Unsupported(String),
    /// A weak algorithm (modp1024, 3des, sha1 in IKE) without `allow_legacy`.
    #[error("legacy algorithm {0:?} needs allow_legacy")]
    Legacy(String),
    /// No encryption algorithm.
    #[error("proposal has no encryption algorithm")]
    MissingEncryption,
    /// A CBC cipher without an integrity algorithm.
    #[error("proposal has a non-AEAD cipher but no integrity algorithm")]
    MissingIntegrity,
    /// IKE proposal without PRF (and no integrity token to derive one from).
    #[error("IKE proposal has no PRF")]
    MissingPrf,
    /// IKE proposal without DH group.
    #[error("IKE proposal has no key exchange (DH) group")]
    MissingDh,
    /// AEAD and non-AEAD ciphers in one proposal.
    #[error("AEAD and non-AEAD ciphers cannot share a proposal; write two proposals")]
    MixedAead,
    /// An integrity algorithm together with an AEAD cipher in an ESP proposal.
    #[error("integrity algorithm {0:?} with an AEAD cipher")]
    IntegrityWithAead(String),
}

/// An IKE SA proposal: alternatives per transform type, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption algorithms.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms (empty for AEAD ciphers).
    pub integ: Vec<IntegAlg>,
    /// Pseudo-random functions.
    pub prf: Vec<PrfAlg>,
    /// DH groups.
    pub dh: Vec<DhGroup>,
}

/// An ESP (Child SA) proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption algorithms.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms (empty for AEAD ciphers).
    pub integ: Vec<IntegAlg>,
    /// DH groups for PFS (ignored in IKE_AUTH, which never carries KE).
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers offered/accepted, in preference order (`false` = no ESN).
    pub esn: Vec<bool>,
}

/// The algorithms negotiated for an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeAlgorithms {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (`None` for AEAD).
    pub integ: Option<IntegAlg>,
    /// PRF.
    pub prf: PrfAlg,
    /// DH group.
    pub dh: DhGroup,
}

/// The algorithms negotiated for a Child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspAlgorithms {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (`None` for AEAD).
    pub integ: Option<IntegAlg>,
    /// Extended sequence numbers.
    pub esn: bool,
}

enum Token {
    Encr(EncrAlg),
    Integ(IntegAlg, PrfAlg),
    Prf(PrfAlg),
    Dh(DhGroup),
    Esn(bool),
}

fn token(t: &str) -> Result<Token, ProposalError> {
    use Token::*;
    let unsupported = || Err(ProposalError::Unsupported(t.to_owned()));
    Ok(match t {
        "aes128" | "aes128cbc" => Encr(EncrAlg::AesCbc128),
        "aes192" | "aes192cbc" => Encr(EncrAlg::AesCbc192),
        "aes256" | "aes256cbc" | "aes" => Encr(EncrAlg::AesCbc256),
        "3des" => Encr(EncrAlg::TripleDesCbc),
        "aes128gcm16" | "aes128gcm128" => Encr(EncrAlg::AesGcm16_128),
        "aes256gcm16" | "aes256gcm128" => Encr(EncrAlg::AesGcm16_256),
        "chacha20poly1305" => Encr(EncrAlg::ChaCha20Poly1305),
        "sha1" | "sha" | "sha1_96" => Integ(IntegAlg::HmacSha1_96, PrfAlg::HmacSha1),
        "sha256" | "sha2_256" | "sha256_128" => Integ(IntegAlg::HmacSha256_128, PrfAlg::HmacSha256),
        "sha384" | "sha2_384" | "sha384_192" => Integ(IntegAlg::HmacSha384_192, PrfAlg::HmacSha384),
        "sha512" | "sha2_512" | "sha512_256" => Integ(IntegAlg::HmacSha512_256, PrfAlg::HmacSha512),
        "prfsha1" => Prf(PrfAlg::HmacSha1),
        "prfsha256" => Prf(PrfAlg::HmacSha256),
        "prfsha384" => Prf(PrfAlg::HmacSha384),
        "prfsha512" => Prf(PrfAlg::HmacSha512),
        "modp1024" => Dh(DhGroup::Modp1024),
        "modp2048" => Dh(DhGroup::Modp2048),
        "ecp256" => Dh(DhGroup::EcpP256),
        "ecp384" => Dh(DhGroup::EcpP384),
        "x25519" | "curve25519" => Dh(DhGroup::Curve25519),
        "esn" => Esn(true),
        "noesn" => Esn(false),
        "aes192gcm16" | "aes128gcm8" | "aes128gcm12" | "aes256gcm8" | "aes256gcm12"
        | "aes128ccm16" | "aes256ccm16" | "aes128ctr" | "aes256ctr" | "md5" | "aesxcbc"
        | "aescmac" | "prfmd5" | "prfaesxcbc" | "modp768" | "modp1536" | "modp3072"
        | "modp4096" | "modp6144" | "modp8192" | "ecp521" | "ecp224" | "ecp192" | "x448"
        | "curve448" | "ecp256bp" | "ecp384bp" | "ecp512bp" | "null" | "des" | "blowfish"
        | "camellia128" | "camellia256" => return unsupported(),
        _ => return Err(ProposalError::UnknownToken(t.to_owned())),
    })
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn split_tokens(s: &str) -> Result<Vec<&str>, ProposalError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ProposalError::Empty);
    }
    let parts: Vec<&str> = s.split('-').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ProposalError::Empty);
    }
    Ok(parts)
}

fn check_aead_mix(encr: &[EncrAlg]) -> Result<bool, ProposalError> {
    let aead = encr.iter().filter(|e| e.is_aead()).count();
    if aead != 0 && aead != encr.len() {
        return Err(ProposalError::MixedAead);
    }
    Ok(aead != 0)
}

impl IkeProposal {
    /// Parses strongSwan notation, e.g. `aes256gcm16-prfsha384-ecp384`. `allow_legacy` admits
    /// modp1024, 3des and SHA-1 (what Windows proposes by default).
    pub fn parse(s: &str, allow_legacy: bool) -> Result<Self, ProposalError> {
        let mut p = IkeProposal {
            encr: Vec::new(),
            integ: Vec::new(),
            prf: Vec::new(),
            dh: Vec::new(),
        };
        let mut implied_prf = Vec::new();
        for t in split_tokens(s)? {
            let tok = token(t)?;
            let legacy = matches!(
                tok,
                Token::Encr(EncrAlg::TripleDesCbc)
                    | Token::Dh(DhGroup::Modp1024)
                    | Token::Integ(IntegAlg::HmacSha1_96, _)
                    | Token::Prf(PrfAlg::HmacSha1)
            );
            if legacy && !allow_legacy {
                return Err(ProposalError::Legacy(t.to_owned()));
            }
            match tok {
                Token::Encr(e) => push_unique(&mut p.encr, e),
                Token::Integ(i, prf) => {
                    push_unique(&mut p.integ, i);
                    push_unique(&mut implied_prf, prf);
                }
                Token::Prf(prf) => push_unique(&mut p.prf, prf),
                Token::Dh(g) => push_unique(&mut p.dh, g),
                Token::Esn(_) => return Err(ProposalError::Unsupported(t.to_owned())),
            }
        }
        if p.encr.is_empty() {
            return Err(ProposalError::MissingEncryption);
        }
        let aead = check_aead_mix(&p.encr)?;
        if aead {
            // With AEAD, `sha*` tokens name PRFs (strongSwan does the same).
            p.integ.clear();
        } else if p.integ.is_empty() {
            return Err(ProposalError::MissingIntegrity);
        }
        if p.prf.is_empty() {
            p.prf = implied_prf;
        }
        if p.prf.is_empty() {
            return Err(ProposalError::MissingPrf);
        }
        if p.dh.is_empty() {
            return Err(ProposalError::MissingDh);
        }
        Ok(p)
    }

    /// Parses a comma-separated list of proposals.
    pub fn parse_list(s: &str, allow_legacy: bool) -> Result<Vec<Self>, ProposalError> {
        s.split(',').map(|p| Self::parse(p, allow_legacy)).collect()
    }

    /// The default IKE proposals: aes256gcm16-prfsha384-ecp384, aes256gcm16-prfsha256-x25519,
    /// aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048, aes128-sha256-x25519,
    /// aes256-sha256-ecp256.
    pub fn defaults() -> Vec<Self> {
        DEFAULT_IKE
            .iter()
            .filter_map(|s| Self::parse(s, false).ok())
            .collect()
    }

    /// True if this proposal uses an algorithm that needs `allow_legacy`.
    pub fn is_legacy(&self) -> bool {
        self.encr.contains(&EncrAlg::TripleDesCbc)
            || self.dh.contains(&DhGroup::Modp1024)
            || self.integ.contains(&IntegAlg::HmacSha1_96)
            || self.prf.contains(&PrfAlg::HmacSha1)
    }

    /// The wire form with the given proposal number.
    pub fn to_wire(&self, number: u8) -> Proposal {
        let mut transforms: Vec<Transform> = self.encr.iter().map(|e| encr_transform(*e)).collect();
        transforms.extend(
            self.prf
                .iter()
                .map(|p| Transform::new(TransformId::Prf(PrfId(p.iana())))),
        );
        transforms.extend(
            self.integ
                .iter()
                .map(|i| Transform::new(TransformId::Integ(IntegId(i.iana())))),
        );
        transforms.extend(self.dh.iter().map(|g| dh_transform(*g)));
        Proposal {
            number,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms,
        }
    }

    /// The first acceptable combination of this (our) proposal with a peer's wire proposal:
    /// our preference order wins. Returns the algorithms and the acceptable DH groups (ours
    /// that the peer also offered, in our order); `None` when something does not match.
    pub fn select(&self, peer: &Proposal) -> Option<(IkeAlgorithms, Vec<DhGroup>)> {
        if peer.protocol != ProtocolId::IKE || has_unknown_types(peer) {
            return None;
        }
        let encr = *self.encr.iter().find(|e| offers_encr(peer, **e))?;
        let integ = if encr.is_aead() {
            if offers_real_integ(peer) {
                return None;
            }
            None
        } else {
            Some(*self.integ.iter().find(|i| offers_integ(peer, **i))?)
        };
        let prf = *self.prf.iter().find(|p| {
            peer.transforms
                .iter()
                .any(|t| t.id == TransformId::Prf(PrfId(p.iana())))
        })?;
        let dh: Vec<DhGroup> = self
            .dh
            .iter()
            .copied()
            .filter(|g| offers_dh(peer, *g))
            .collect();
        let first = *dh.first()?;
        Some((
            IkeAlgorithms {
                encr,
                integ,
                prf,
                dh: first,
            },
            dh,
        ))
    }
}

impl IkeAlgorithms {
    /// The single-transform wire proposal a responder returns.
    pub fn to_wire(&self, number: u8) -> Proposal {
        IkeProposal {
            encr: vec![self.encr],
            integ: self.integ.into_iter().collect(),
            prf: vec![self.prf],
            dh: vec![self.dh],
        }
        .to_wire(number)
    }

    /// Reads a responder's single-transform reply; `None` if it is not exactly one of each.
    pub fn from_wire(p: &Proposal) -> Option<Self> {
        if p.protocol != ProtocolId::IKE {
            return None;
        }
        let mut encr = None;
        let mut integ = None;
        let mut prf = None;
        let mut dh = None;
        for t in &p.transforms {
            match t.id {
                TransformId::Encr(id) => {
                    set_once(&mut encr, EncrAlg::from_iana(id.0, t.key_length())?)?
                }
                TransformId::Integ(IntegId::NONE) => {}
                TransformId::Integ(id) => set_once(&mut integ, IntegAlg::from_iana(id.0)?)?,
                TransformId::Prf(id) => set_once(&mut prf, PrfAlg::from_iana(id.0)?)?,
                TransformId::Ke(g) => set_once(&mut dh, DhGroup::from_iana(g.0)?)?,
                _ => return None,
            }
        }
        Some(Self {
            encr: encr?,
            integ,
            prf: prf?,
            dh: dh?,
        })
    }

    /// The suite for the crypto layer.
    pub fn suite(&self) -> ipsec_crypto::IkeSuite {
        ipsec_crypto::IkeSuite {
            encr: self.encr,
            integ: self.integ,
            prf: self.prf,
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

impl EspProposal {
    /// Parses strongSwan ESP notation, e.g. `aes256gcm16`, `aes256-sha256`, `aes128-sha1-esn`.
    pub fn parse(s: &str, allow_legacy: bool) -> Result<Self, ProposalError> {
        let mut p = EspProposal {
            encr: Vec::new(),
            integ: Vec::new(),
            dh: Vec::new(),
            esn: Vec::new(),
        };
        for t in split_tokens(s)? {
            let tok = token(t)?;
            let legacy = matches!(
                tok,
                Token::Encr(EncrAlg::TripleDesCbc) | Token::Dh(DhGroup::Modp1024)
            );
            if legacy && !allow_legacy {
                return Err(ProposalError::Legacy(t.to_owned()));
            }
            match tok {
                Token::Encr(e) => push_unique(&mut p.encr, e),
                Token::Integ(i, _) => push_unique(&mut p.integ, i),
                Token::Prf(_) => return Err(ProposalError::Unsupported(t.to_owned())),
                Token::Dh(g) => push_unique(&mut p.dh, g),
                Token::Esn(e) => push_unique(&mut p.esn, e),
            }
        }
        if p.encr.is_empty() {
            return Err(ProposalError::MissingEncryption);
        }
        if check_aead_mix(&p.encr)? {
            if let Some(i) = p.integ.first() {
                return Err(ProposalError::IntegrityWithAead(format!("{i:?}")));
            }
        } else if p.integ.is_empty() {
            return Err(ProposalError::MissingIntegrity);
        }
        if p.esn.is_empty() {
            p.esn = vec![false];
        }
        Ok(p)
    }

    /// Parses a comma-separated list of proposals.
    pub fn parse_list(s: &str, allow_legacy: bool) -> Result<Vec<Self>, ProposalError> {
        s.split(',').map(|p| Self::parse(p, allow_legacy)).collect()
    }

    /// The default ESP proposals: aes256gcm16, aes128gcm16, aes256-sha256, chacha20poly1305.
    pub fn defaults() -> Vec<Self> {
        DEFAULT_ESP
            .iter()
            .filter_map(|s| Self::parse(s, false).ok())
            .collect()
    }

    /// The wire form with proposal number and our inbound SPI. DH transforms are left out
    /// when `with_dh` is false (IKE_AUTH).
    pub fn to_wire(&self, number: u8, spi: u32, with_dh: bool) -> Proposal {
        let mut transforms: Vec<Transform> = self.encr.iter().map(|e| encr_transform(*e)).collect();
        transforms.extend(
            self.integ
                .iter()
                .map(|i| Transform::new(TransformId::Integ(IntegId(i.iana())))),
        );
        if with_dh {
            transforms.extend(self.dh.iter().map(|g| dh_transform(*g)));
        }
        transforms.extend(self.esn.iter().map(|e| {
            Transform::new(TransformId::Esn(if *e {
                EsnId::ESN
            } else {
                EsnId::NO_ESN
            }))
        }));
        Proposal {
            number,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    /// Selects against a peer's ESP proposal (KE transforms are ignored: IKE_AUTH carries no
    /// KE). Returns the algorithms and the peer's SPI.
    pub fn select(&self, peer: &Proposal) -> Option<(EspAlgorithms, u32)> {
        if peer.protocol != ProtocolId::ESP || has_unknown_types(peer) {
            return None;
        }
        let spi = u32::from_be_bytes(peer.spi.as_slice().try_into().ok()?);
        let encr = *self.encr.iter().find(|e| offers_encr(peer, **e))?;
        let integ = if encr.is_aead() {
            if offers_real_integ(peer) {
                return None;
            }
            None
        } else {
            Some(*self.integ.iter().find(|i| offers_integ(peer, **i))?)
        };
        let peer_esn: Vec<bool> = peer
            .transforms
            .iter()
            .filter_map(|t| match t.id {
                TransformId::Esn(EsnId::ESN) => Some(true),
                TransformId::Esn(EsnId::NO_ESN) => Some(false),
                _ => None,
            })
            .collect();
        let esn = if peer_esn.is_empty() {
            // No ESN transform means no ESN.
            self.esn.contains(&false).then_some(false)?
        } else {
            *self.esn.iter().find(|e| peer_esn.contains(e))?
        };
        Some((EspAlgorithms { encr, integ, esn }, spi))
    }
}

impl EspAlgorithms {
    /// The single-transform reply proposal.
    pub fn to_wire(&self, number: u8, spi: u32) -> Proposal {
        EspProposal {
            encr: vec![self.encr],
            integ: self.integ.into_iter().collect(),
            dh: Vec::new(),
            esn: vec![self.esn],
        }
        .to_wire(number, spi, false)
    }

    /// Reads a responder's reply proposal and its SPI.
    pub fn from_wire(p: &Proposal) -> Option<(Self, u32)> {
        if p.protocol != ProtocolId::ESP {
            return None;
        }
        let spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
        let mut encr = None;
        let mut integ = None;
        let mut esn = None;
        for t in &p.transforms {
            match t.id {
                TransformId::Encr(id) => {
                    set_once(&mut encr, EncrAlg::from_iana(id.0, t.key_length())?)?
                }
                TransformId::Integ(IntegId::NONE) => {}
                TransformId::Integ(id) => set_once(&mut integ, IntegAlg::from_iana(id.0)?)?,
                TransformId::Esn(e) => set_once(&mut esn, e == EsnId::ESN)?,
                TransformId::Ke(_) => {}
                _ => return None,
            }
        }
        let encr = encr?;
        if encr.is_aead() == integ.is_some() {
            return None;
        }
        Some((
            Self {
                encr,
                integ,
                esn: esn.unwrap_or(false),
            },
            spi,
        ))
    }
}

const DEFAULT_IKE: &[&str] = &[
    "aes256gcm16-prfsha384-ecp384",
    "aes256gcm16-prfsha256-x25519",
    "aes128gcm16-prfsha256-x25519",
    "aes256-sha256-modp2048",
    "aes128-sha256-x25519",
    "aes256-sha256-ecp256",
];

const DEFAULT_ESP: &[&str] = &[
    "aes256gcm16",
    "aes128gcm16",
    "aes256-sha256",
    "chacha20poly1305",
];

fn encr_transform(e: EncrAlg) -> Transform {
    Transform::encr(EncrId(e.iana()), e.key_length_attr())
}

fn dh_transform(g: DhGroup) -> Transform {
    Transform::new(TransformId::Ke(ike_wire::DhGroup(g.iana())))
}

fn offers_encr(peer: &Proposal, e: EncrAlg) -> bool {
    peer.transforms.iter().any(|t| match t.id {
        TransformId::Encr(id) => EncrAlg::from_iana(id.0, t.key_length()) == Some(e),
        _ => false,
    })
}

fn offers_integ(peer: &Proposal, i: IntegAlg) -> bool {
    peer.transforms
        .iter()
        .any(|t| t.id == TransformId::Integ(IntegId(i.iana())))
}

fn offers_real_integ(peer: &Proposal) -> bool {
    let any = peer
        .transforms
        .iter()
        .any(|t| matches!(t.id, TransformId::Integ(_)));
    let none = peer
        .transforms
        .iter()
        .any(|t| t.id == TransformId::Integ(IntegId::NONE));
    any && !none
}

fn offers_dh(peer: &Proposal, g: DhGroup) -> bool {
    peer.transforms
        .iter()
        .any(|t| t.id == TransformId::Ke(ike_wire::DhGroup(g.iana())))
}

/// Transform types we do not understand (e.g. RFC 9370 additional key exchanges) make a
/// proposal unacceptable unless they offer NONE (id 0).
fn has_unknown_types(peer: &Proposal) -> bool {
    peer.transforms
        .iter()
        .any(|t| matches!(t.id, TransformId::Other(_, id) if id != 0))
}

fn fmt_list<T: Copy>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    name: impl Fn(T) -> &'static str,
    first: &mut bool,
) -> fmt::Result {
    for i in items {
        if !*first {
            f.write_str("-")?;
        }
        *first = false;
        f.write_str(name(*i))?;
    }
    Ok(())
}

/// strongSwan token of an encryption algorithm.
pub fn encr_name(e: EncrAlg) -> &'static str {
    match e {
        EncrAlg::TripleDesCbc => "3des",
        EncrAlg::AesCbc128 => "aes128",
        EncrAlg::AesCbc192 => "aes192",
        EncrAlg::AesCbc256 => "aes256",
        EncrAlg::AesGcm16_128 => "aes128gcm16",
        EncrAlg::AesGcm16_256 => "aes256gcm16",
        EncrAlg::ChaCha20Poly1305 => "chacha20poly1305",
    }
}

fn integ_name(i: IntegAlg) -> &'static str {
    match i {
        IntegAlg::HmacSha1_96 => "sha1",
        IntegAlg::HmacSha256_128 => "sha256",
        IntegAlg::HmacSha384_192 => "sha384",
        IntegAlg::HmacSha512_256 => "sha512",
    }
}

fn implied_prf(i: IntegAlg) -> PrfAlg {
    match i {
        IntegAlg::HmacSha1_96 => PrfAlg::HmacSha1,
        IntegAlg::HmacSha256_128 => PrfAlg::HmacSha256,
        IntegAlg::HmacSha384_192 => PrfAlg::HmacSha384,
        IntegAlg::HmacSha512_256 => PrfAlg::HmacSha512,
    }
}

fn prf_name(p: PrfAlg) -> &'static str {
    match p {
        PrfAlg::HmacSha1 => "prfsha1",
        PrfAlg::HmacSha256 => "prfsha256",
        PrfAlg::HmacSha384 => "prfsha384",
        PrfAlg::HmacSha512 => "prfsha512",
    }
}

fn dh_name(g: DhGroup) -> &'static str {
    match g {
        DhGroup::Modp1024 => "modp1024",
        DhGroup::Modp2048 => "modp2048",
        DhGroup::EcpP256 => "ecp256",
        DhGroup::EcpP384 => "ecp384",
        DhGroup::Curve25519 => "x25519",
    }
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        fmt_list(f, &self.encr, encr_name, &mut first)?;
        fmt_list(f, &self.integ, integ_name, &mut first)?;
        // `aes256-sha256-...` already implies prfsha256; print the PRF only when it differs.
        let implied: Vec<PrfAlg> = self.integ.iter().map(|i| implied_prf(*i)).collect();
        if self.integ.is_empty() || implied != self.prf {
            fmt_list(f, &self.prf, prf_name, &mut first)?;
        }
        fmt_list(f, &self.dh, dh_name, &mut first)
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        fmt_list(f, &self.encr, encr_name, &mut first)?;
        fmt_list(f, &self.integ, integ_name, &mut first)?;
        fmt_list(f, &self.dh, dh_name, &mut first)?;
        if self.esn != [false] {
            fmt_list(
                f,
                &self.esn,
                |e| if e { "esn" } else { "noesn" },
                &mut first,
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for IkeAlgorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(encr_name(self.encr))?;
        if let Some(i) = self.integ {
            write!(f, "-{}", integ_name(i))?;
        }
        write!(f, "-{}-{}", prf_name(self.prf), dh_name(self.dh))
    }
}

impl FromStr for IkeProposal {
    type Err = ProposalError;
    /// Parses without legacy algorithms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, false)
    }
}

impl FromStr for EspProposal {
    type Err = ProposalError;
    /// Parses without legacy algorithms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, false)
    }
}

#[cfg(test)]
mod tests;
