//! AUTH payload helpers (RFC 7296 2.15).

use crate::keys::{SecretBytes, prf};
use crate::transforms::PrfAlg;

/// The octets a peer signs (or MACs) for its AUTH payload (RFC 7296 2.15):
/// `RealMessage ‖ peer's Nonce data ‖ prf(SK_p, RestOfIDPayload)`.
///
/// * `real_message`: our whole IKE_SA_INIT message as sent (initiator: message 1; responder:
///   message 2), IKE header included.
/// * `peer_nonce`: the Nonce payload data of the other side's IKE_SA_INIT message.
/// * `sk_p`: our SK_pi (initiator) or SK_pr (responder).
/// * `rest_of_id_payload`: our IDi/IDr payload body after the 4-byte generic header
///   (ID Type ‖ 3 reserved bytes ‖ identification data).
pub fn auth_signed_octets(
    prf_alg: PrfAlg,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    rest_of_id_payload: &[u8],
) -> Vec<u8> {
    let maced_id = prf(prf_alg, sk_p, &[rest_of_id_payload]);
    let mut out = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced_id.len());
    out.extend_from_slice(real_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(maced_id.as_bytes());
    out
}

/// The AUTH data for the shared-key method (2) and for EAP, where `secret` is the PSK or the
/// EAP MSK: `prf(prf(secret, "Key Pad for IKEv2"), signed_octets)` (RFC 7296 2.15, 2.16).
/// Compare a received value in constant time (e.g. `subtle::ConstantTimeEq`).
pub fn shared_key_auth(prf_alg: PrfAlg, secret: &[u8], signed_octets: &[u8]) -> SecretBytes {
    let pad_key = prf(prf_alg, secret, &[b"Key Pad for IKEv2"]);
    prf(prf_alg, pad_key.as_bytes(), &[signed_octets])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_octets_concatenate_message_nonce_and_maced_id() {
        let out = auth_signed_octets(
            PrfAlg::HmacSha256,
            b"MSG",
            b"NONCE",
            b"skp",
            b"\x02\0\0\0id",
        );
        assert_eq!(&out[..8], b"MSGNONCE");
        assert_eq!(
            &out[8..],
            prf(PrfAlg::HmacSha256, b"skp", &[b"\x02\0\0\0id"]).as_bytes()
        );
        assert_eq!(out.len(), 8 + 32);
    }

    #[test]
    fn shared_key_auth_uses_the_key_pad() {
        let got = shared_key_auth(PrfAlg::HmacSha1, b"psk", b"octets");
        let inner = prf(PrfAlg::HmacSha1, b"psk", &[b"Key Pad for IKEv2"]);
        assert_eq!(got, prf(PrfAlg::HmacSha1, inner.as_bytes(), &[b"octets"]));
        assert_ne!(got, shared_key_auth(PrfAlg::HmacSha1, b"psk2", b"octets"));
    }
}
