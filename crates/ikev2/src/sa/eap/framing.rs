//! EAP (RFC 3748) and EAP-TLS (RFC 5216 3) framing: packet codes, method types, flags,
//! how big a fragment and a reassembled flight may be, and their parsers and encoders.

pub(super) const CODE_REQUEST: u8 = 1;
pub(super) const CODE_RESPONSE: u8 = 2;
pub(super) const CODE_SUCCESS: u8 = 3;
pub(super) const CODE_FAILURE: u8 = 4;
/// EAP method types (IANA "Method Types").
pub(in crate::sa) const TYPE_IDENTITY: u8 = 1;
pub(super) const TYPE_NOTIFICATION: u8 = 2;
pub(super) const TYPE_NAK: u8 = 3;
pub(super) const TYPE_TLS: u8 = 13;

pub(super) const FLAG_LENGTH: u8 = 0x80;
pub(super) const FLAG_MORE: u8 = 0x40;
pub(super) const FLAG_START: u8 = 0x20;

/// TLS bytes per EAP-TLS request, small enough for one unfragmented IKE message.
pub(super) const FRAGMENT_LEN: usize = 1000;
/// Upper bound of one reassembled TLS flight from the peer (a client certificate flight with a
/// long RSA chain is well below; the peer has not authenticated yet).
pub(super) const MAX_TLS_MESSAGE: usize = 24 * 1024;

/// A malformed or unexpected EAP message, or a TLS failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EapError {
    /// A packet whose lengths do not add up.
    #[error("truncated or inconsistent EAP packet")]
    Malformed,
    /// A well-formed packet the conversation did not expect here (named in the text).
    #[error("unexpected EAP message: {0}")]
    Unexpected(&'static str),
    /// A TLS flight larger than a peer that has not authenticated may send.
    #[error("EAP-TLS message too large")]
    TooLarge,
    /// rustls refused the handshake or our settings (its words).
    #[error("TLS: {0}")]
    Tls(String),
}

/// A parsed EAP packet (RFC 3748 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sa) struct EapPacket<'a> {
    pub code: u8,
    pub identifier: u8,
    /// Method type (requests and responses only).
    pub method: Option<u8>,
    /// Type-Data.
    pub data: &'a [u8],
}

impl<'a> EapPacket<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EapError> {
        let [code, identifier, l0, l1, rest @ ..] = bytes else {
            return Err(EapError::Malformed);
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if len != bytes.len() {
            return Err(EapError::Malformed);
        }
        match (*code, rest) {
            (CODE_REQUEST | CODE_RESPONSE, [method, data @ ..]) => Ok(Self {
                code: *code,
                identifier: *identifier,
                method: Some(*method),
                data,
            }),
            (CODE_SUCCESS | CODE_FAILURE, []) => Ok(Self {
                code: *code,
                identifier: *identifier,
                method: None,
                data: &[],
            }),
            _ => Err(EapError::Malformed),
        }
    }
}

pub(super) fn encode(code: u8, identifier: u8, method: Option<u8>, data: &[u8]) -> Vec<u8> {
    let len = 4 + usize::from(method.is_some()) + data.len();
    let mut out = Vec::with_capacity(len);
    out.push(code);
    out.push(identifier);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(method);
    out.extend_from_slice(data);
    out
}

/// An EAP-Request of `method`.
pub(in crate::sa) fn request(identifier: u8, method: u8, data: &[u8]) -> Vec<u8> {
    encode(CODE_REQUEST, identifier, Some(method), data)
}

/// EAP-Success.
pub(in crate::sa) fn success(identifier: u8) -> Vec<u8> {
    encode(CODE_SUCCESS, identifier, None, &[])
}

/// EAP-Failure.
pub(in crate::sa) fn failure(identifier: u8) -> Vec<u8> {
    encode(CODE_FAILURE, identifier, None, &[])
}

/// An EAP-TLS message (RFC 5216 3.1): flags, optional total length, TLS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TlsFragment<'a> {
    pub flags: u8,
    pub total_len: Option<u32>,
    pub data: &'a [u8],
}

impl<'a> TlsFragment<'a> {
    pub fn parse(type_data: &'a [u8]) -> Result<Self, EapError> {
        let [flags, rest @ ..] = type_data else {
            return Err(EapError::Malformed);
        };
        if flags & FLAG_LENGTH == 0 {
            return Ok(Self {
                flags: *flags,
                total_len: None,
                data: rest,
            });
        }
        let [a, b, c, d, data @ ..] = rest else {
            return Err(EapError::Malformed);
        };
        Ok(Self {
            flags: *flags,
            total_len: Some(u32::from_be_bytes([*a, *b, *c, *d])),
            data,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        if let Some(l) = self.total_len {
            out.extend_from_slice(&l.to_be_bytes());
        }
        out.extend_from_slice(self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic_and_requests_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            id in any::<u8>(),
            method in any::<u8>(),
        ) {
            let _ = EapPacket::parse(&bytes);
            let _ = TlsFragment::parse(&bytes);
            let r = request(id, method, &bytes);
            let p = EapPacket::parse(&r).unwrap();
            prop_assert_eq!((p.code, p.identifier, p.method, p.data), (1, id, Some(method), &bytes[..]));
        }
    }

    #[test]
    fn eap_codec_round_trips_and_rejects_bad_lengths() {
        let r = request(7, TYPE_TLS, &[FLAG_START]);
        assert_eq!(r, [1, 7, 0, 6, 13, 0x20]);
        let p = EapPacket::parse(&r).unwrap();
        assert_eq!((p.code, p.identifier, p.method), (1, 7, Some(13)));
        assert_eq!(p.data, [0x20]);
        assert_eq!(success(9), [3, 9, 0, 4]);
        assert_eq!(failure(9), [4, 9, 0, 4]);
        assert_eq!(EapPacket::parse(&[2, 1, 0, 9, 1]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[2, 1, 0]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[3, 1, 0, 5, 1]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[2, 1, 0, 4]), Err(EapError::Malformed));
    }

    #[test]
    fn tls_fragment_flags_and_length() {
        let f = TlsFragment::parse(&[0xc0, 0, 0, 7, 208, 1, 2]).unwrap();
        assert_eq!(f.total_len, Some(2000));
        assert_eq!(f.data, [1, 2]);
        assert_eq!(f.encode(), [0xc0, 0, 0, 7, 208, 1, 2]);
        assert_eq!(TlsFragment::parse(&[0x80, 0, 0]), Err(EapError::Malformed));
        assert_eq!(TlsFragment::parse(&[]), Err(EapError::Malformed));
    }
}
