//! RADIUS packets (RFC 2865 3, 5): code, identifier, authenticator and attributes; the
//! Message-Authenticator (RFC 3579 3.2), the Response Authenticator and the MS-MPPE keys
//! (RFC 2548 2.4.2), all keyed by the shared secret.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCESS_CHALLENGE: u8 = 11;

pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const SERVICE_TYPE: u8 = 6;
pub const FRAMED_MTU: u8 = 12;
pub const FILTER_ID: u8 = 11;
pub const REPLY_MESSAGE: u8 = 18;
pub const STATE: u8 = 24;
pub const SESSION_TIMEOUT: u8 = 27;
pub const CLASS: u8 = 25;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const CALLED_STATION_ID: u8 = 30;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const NAS_PORT_TYPE: u8 = 61;
pub const EAP_MESSAGE: u8 = 79;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

/// Microsoft's vendor id and its MPPE key attributes (RFC 2548).
const VENDOR_MICROSOFT: u32 = 311;
const MS_MPPE_SEND_KEY: u8 = 16;
const MS_MPPE_RECV_KEY: u8 = 17;

const HEADER: usize = 20;
/// RFC 2865 3: packets are 20 to 4096 bytes.
pub const MAX_PACKET: usize = 4096;

type HmacMd5 = hmac::Hmac<Md5>;

/// Why a datagram is not an acceptable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("the Response Authenticator does not verify (wrong shared secret?)")]
    BadResponseAuthenticator,
    #[error("the Message-Authenticator is missing or does not verify")]
    BadMessageAuthenticator,
    #[error("too large for one RADIUS packet")]
    TooLarge,
}

/// A decoded packet: attributes in order, values borrowed from nothing (copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<(u8, Vec<u8>)>,
}

impl Packet {
    /// Every value of attribute `kind`, in order.
    pub fn all(&self, kind: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |(t, _)| *t == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of attribute `kind`.
    pub fn first(&self, kind: u8) -> Option<&[u8]> {
        self.all(kind).next()
    }

    /// The EAP-Message attributes joined (RFC 3579 3.1), if any.
    pub fn eap_message(&self) -> Option<Vec<u8>> {
        let parts: Vec<&[u8]> = self.all(EAP_MESSAGE).collect();
        (!parts.is_empty()).then(|| parts.concat())
    }

    /// Parses the header and attributes; authenticators are checked by [`verify_response`].
    pub fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
        if bytes.len() < HEADER {
            return Err(PacketError::Malformed("shorter than the header"));
        }
        let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if !(HEADER..=MAX_PACKET).contains(&length) || length > bytes.len() {
            return Err(PacketError::Malformed("bad length"));
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&bytes[4..HEADER]);
        let mut attributes = Vec::new();
        let mut rest = &bytes[HEADER..length];
        while !rest.is_empty() {
            let [kind, len, ..] = *rest else {
                return Err(PacketError::Malformed("truncated attribute"));
            };
            let len = usize::from(len);
            if len < 2 || len > rest.len() {
                return Err(PacketError::Malformed("bad attribute length"));
            }
            attributes.push((kind, rest[2..len].to_vec()));
            rest = &rest[len..];
        }
        Ok(Packet {
            code: bytes[0],
            identifier: bytes[1],
            authenticator,
            attributes,
        })
    }
}

/// Builds an Access-Request: `attributes` (values of at most 253 bytes; EAP-Message split by
/// the caller with [`eap_attributes`]) and a Message-Authenticator, keyed by `secret`.
pub fn access_request(
    identifier: u8,
    authenticator: [u8; 16],
    attributes: &[(u8, Vec<u8>)],
    secret: &[u8],
) -> Result<Vec<u8>, PacketError> {
    let mut out = vec![ACCESS_REQUEST, identifier, 0, 0];
    out.extend_from_slice(&authenticator);
    for (kind, value) in attributes {
        let len = u8::try_from(value.len() + 2).map_err(|_| PacketError::TooLarge)?;
        out.extend_from_slice(&[*kind, len]);
        out.extend_from_slice(value);
    }
    // RFC 3579 3.2: computed with its own value zeroed, over the whole packet.
    let ma_at = out.len() + 2;
    out.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    out.extend_from_slice(&[0u8; 16]);
    let length = u16::try_from(out.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_PACKET)
        .ok_or(PacketError::TooLarge)?;
    out[2..4].copy_from_slice(&length.to_be_bytes());
    let mac = hmac_md5(secret, &out);
    out[ma_at..ma_at + 16].copy_from_slice(&mac);
    Ok(out)
}

/// An EAP packet as EAP-Message attributes of at most 253 bytes each.
pub fn eap_attributes(eap: &[u8]) -> Vec<(u8, Vec<u8>)> {
    eap.chunks(253).map(|c| (EAP_MESSAGE, c.to_vec())).collect()
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length, so this does not fail; if it did, an all-zero MAC
    // verifies nothing and is refused by every server.
    let Ok(mut mac) = <HmacMd5 as KeyInit>::new_from_slice(secret) else {
        return [0; 16];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Checks an answer to the request that had `request_authenticator`: the Response
/// Authenticator (RFC 2865 3) and the Message-Authenticator (RFC 3579 3.2, required here:
/// every answer to an EAP request must carry one).
pub fn verify_response(
    bytes: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<Packet, PacketError> {
    let packet = Packet::parse(bytes)?;
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let bytes = &bytes[..length];
    let mut md5 = Md5::new();
    md5.update(&bytes[..4]);
    md5.update(request_authenticator);
    md5.update(&bytes[HEADER..]);
    md5.update(secret);
    let expected: [u8; 16] = md5.finalize().into();
    if !bool::from(expected.ct_eq(&packet.authenticator)) {
        return Err(PacketError::BadResponseAuthenticator);
    }
    // The Message-Authenticator over the packet with the request's authenticator in place
    // and its own value zeroed.
    let mut copy = bytes.to_vec();
    copy[4..HEADER].copy_from_slice(request_authenticator);
    let mut at = HEADER;
    let mut found = None;
    while at + 2 <= copy.len() {
        let (kind, len) = (copy[at], usize::from(copy[at + 1]));
        if kind == MESSAGE_AUTHENTICATOR && len == 18 && found.is_none() {
            let mut theirs = [0u8; 16];
            theirs.copy_from_slice(&copy[at + 2..at + 18]);
            copy[at + 2..at + 18].fill(0);
            found = Some(theirs);
        }
        at += len.max(2);
    }
    let theirs = found.ok_or(PacketError::BadMessageAuthenticator)?;
    if !bool::from(hmac_md5(secret, &copy).ct_eq(&theirs)) {
        return Err(PacketError::BadMessageAuthenticator);
    }
    Ok(packet)
}

/// The MSK from an Access-Accept's MS-MPPE-Recv-Key and MS-MPPE-Send-Key (RFC 2548 2.4.2,
/// decrypted with the secret and the request's authenticator): Recv-Key then Send-Key, as
/// RFC 3748's MSK is split between them (strongSwan's eap-radius joins them the same way).
pub fn mppe_msk(
    packet: &Packet,
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut recv = None;
    let mut send = None;
    for vsa in packet.all(VENDOR_SPECIFIC) {
        let Some((vendor, rest)) = vsa.split_first_chunk::<4>() else {
            continue;
        };
        if u32::from_be_bytes(*vendor) != VENDOR_MICROSOFT {
            continue;
        }
        let mut sub = rest;
        while let [kind, len, ..] = *sub {
            let len = usize::from(len);
            if len < 2 || len > sub.len() {
                break;
            }
            let value = &sub[2..len];
            match kind {
                MS_MPPE_RECV_KEY => recv = decrypt_mppe(value, request_authenticator, secret),
                MS_MPPE_SEND_KEY => send = decrypt_mppe(value, request_authenticator, secret),
                _ => {}
            }
            sub = &sub[len..];
        }
    }
    let (recv, send) = (recv?, send?);
    let mut msk = Zeroizing::new(Vec::with_capacity(recv.len() + send.len()));
    msk.extend_from_slice(&recv);
    msk.extend_from_slice(&send);
    Some(msk)
}

/// RFC 2548 2.4.2: salt (2 bytes, high bit set) then the key (its length first, padded to
/// 16) XORed with an MD5 chain of the secret, the request authenticator and the salt.
fn decrypt_mppe(
    value: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let (salt, cipher) = value.split_first_chunk::<2>()?;
    if cipher.is_empty() || cipher.len() % 16 != 0 || salt[0] & 0x80 == 0 {
        return None;
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(cipher.len()));
    let mut previous: Vec<u8> = [request_authenticator.as_slice(), salt].concat();
    for block in cipher.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(&previous);
        let b: [u8; 16] = md5.finalize().into();
        plain.extend(block.iter().zip(b).map(|(c, k)| c ^ k));
        previous = block.to_vec();
    }
    let len = usize::from(*plain.first()?);
    (len > 0 && len < plain.len()).then(|| Zeroizing::new(plain[1..=len].to_vec()))
}

/// Builds a server's answer (tests, and the fuzz target's valid inputs).
pub fn answer(
    code: u8,
    identifier: u8,
    request_authenticator: &[u8; 16],
    attributes: &[(u8, Vec<u8>)],
    secret: &[u8],
) -> Vec<u8> {
    let mut out = vec![code, identifier, 0, 0];
    out.extend_from_slice(request_authenticator);
    for (kind, value) in attributes {
        out.extend_from_slice(&[*kind, u8::try_from(value.len() + 2).unwrap_or(u8::MAX)]);
        out.extend_from_slice(value);
    }
    let ma_at = out.len() + 2;
    out.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    out.extend_from_slice(&[0u8; 16]);
    let length = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&length.to_be_bytes());
    let mac = hmac_md5(secret, &out);
    out[ma_at..ma_at + 16].copy_from_slice(&mac);
    let mut md5 = Md5::new();
    md5.update(&out);
    md5.update(secret);
    let auth: [u8; 16] = md5.finalize().into();
    out[4..HEADER].copy_from_slice(&auth);
    out
}

/// MS-MPPE-Recv-Key and -Send-Key as one Vendor-Specific attribute (tests and fuzzing).
pub fn mppe_attribute(
    recv: &[u8],
    send: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> (u8, Vec<u8>) {
    let mut v = VENDOR_MICROSOFT.to_be_bytes().to_vec();
    for (kind, key, salt) in [
        (MS_MPPE_RECV_KEY, recv, [0x80, 1]),
        (MS_MPPE_SEND_KEY, send, [0x80, 2]),
    ] {
        let enc = encrypt_mppe(key, salt, request_authenticator, secret);
        v.push(kind);
        v.push(u8::try_from(enc.len() + 2).unwrap_or(u8::MAX));
        v.extend_from_slice(&enc);
    }
    (VENDOR_SPECIFIC, v)
}

/// RFC 2548 2.4.2 the other way: what a server sends.
fn encrypt_mppe(
    key: &[u8],
    salt: [u8; 2],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Vec<u8> {
    let mut plain = vec![u8::try_from(key.len()).unwrap_or(u8::MAX)];
    plain.extend_from_slice(key);
    while plain.len() % 16 != 0 {
        plain.push(0);
    }
    let mut out = salt.to_vec();
    let mut previous: Vec<u8> = [request_authenticator.as_slice(), &salt].concat();
    for block in plain.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(&previous);
        let b: [u8; 16] = md5.finalize().into();
        let c: Vec<u8> = block.iter().zip(b).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&c);
        previous = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"xyzzy5461";

    #[test]
    fn answers_verify_only_with_the_secret_and_intact() {
        let auth = [7u8; 16];
        let eap = vec![1u8; 600];
        let mut attrs = eap_attributes(&eap);
        attrs.push((STATE, b"state-1".to_vec()));
        let bytes = answer(ACCESS_CHALLENGE, 9, &auth, &attrs, SECRET);
        let p = verify_response(&bytes, &auth, SECRET).unwrap();
        assert_eq!(p.code, ACCESS_CHALLENGE);
        assert_eq!(p.eap_message().unwrap(), eap);
        assert_eq!(p.first(STATE).unwrap(), b"state-1");
        assert!(verify_response(&bytes, &auth, b"other").is_err());
        assert!(verify_response(&bytes, &[8u8; 16], SECRET).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(verify_response(&bad, &auth, SECRET).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_request_carries_a_message_authenticator_over_itself() {
        let auth = [3u8; 16];
        let req = access_request(5, auth, &[(USER_NAME, b"alice".to_vec())], SECRET).unwrap();
        let p = Packet::parse(&req).unwrap();
        let ma = p.first(MESSAGE_AUTHENTICATOR).unwrap().to_vec();
        let mut zeroed = req.clone();
        let at = req.len() - 16;
        zeroed[at..].fill(0);
        assert_eq!(hmac_md5(SECRET, &zeroed).to_vec(), ma);
    }

    #[test]
    fn mppe_keys_decrypt_to_the_msk() {
        let auth = [0x42u8; 16];
        let recv = [0xaau8; 32];
        let send = [0x55u8; 32];
        let attrs = vec![mppe_attribute(&recv, &send, &auth, SECRET)];
        let bytes = answer(ACCESS_ACCEPT, 1, &auth, &attrs, SECRET);
        let p = verify_response(&bytes, &auth, SECRET).unwrap();
        let msk = mppe_msk(&p, &auth, SECRET).unwrap();
        assert_eq!(&msk[..32], &recv);
        assert_eq!(&msk[32..], &send);
        assert!(mppe_msk(&p, &auth, b"other").is_none_or(|m| m[..32] != recv));
        let enc = encrypt_mppe(&recv, [0x80, 9], &auth, SECRET);
        assert_eq!(&decrypt_mppe(&enc, &auth, SECRET).unwrap()[..], &recv);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(Packet::parse(&[1, 2, 3]).is_err());
        let mut p = answer(ACCESS_ACCEPT, 1, &[0; 16], &[], SECRET);
        p[21] = 1; // attribute length below 2
        assert!(Packet::parse(&p).is_err());
        let mut p = answer(ACCESS_ACCEPT, 1, &[0; 16], &[], SECRET);
        p[3] = 200; // length beyond the datagram
        assert!(Packet::parse(&p).is_err());
        let big = vec![(USER_NAME, vec![0u8; 253]); 20];
        assert_eq!(
            access_request(1, [0; 16], &big, SECRET),
            Err(PacketError::TooLarge)
        );
    }
}
