//! A Child SA negotiated by IKE, turned into the two ESP halves the data plane runs.

use esp::{
    AesKeyLen, DirectionKeys, InboundConfig, InboundSa, Integrity, OutboundConfig, Transform,
};
use ike_wire::TrafficSelector;
use ikev2::EspAlgorithms;
use std::net::IpAddr;

use ipnet::IpNet;
use ipsec_crypto::{EncrAlg, IntegAlg};

/// Why a negotiated Child SA cannot run in our data plane.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("ESP transform {0:?} is not implemented by the data plane")]
    Unsupported(EspAlgorithms),
    #[error("ESP keys: {0}")]
    Keys(#[from] esp::KeyError),
    #[error("extended sequence numbers are not supported by the data plane")]
    Esn,
}

/// The data-plane transform for negotiated ESP algorithms.
pub fn esp_transform(alg: &EspAlgorithms) -> Result<Transform, ChildError> {
    if alg.esn {
        return Err(ChildError::Esn);
    }
    let integ = |i: Option<IntegAlg>| match i {
        Some(IntegAlg::HmacSha1_96) => Some(Integrity::HmacSha1_96),
        Some(IntegAlg::HmacSha256_128) => Some(Integrity::HmacSha256_128),
        Some(IntegAlg::HmacSha384_192) => Some(Integrity::HmacSha384_192),
        Some(IntegAlg::HmacSha512_256) => Some(Integrity::HmacSha512_256),
        None => None,
    };
    let cbc = |len| integ(alg.integ).map(|i| Transform::AesCbc(len, i));
    let transform = match alg.encr {
        EncrAlg::AesGcm16_128 if alg.integ.is_none() => {
            Some(Transform::AesGcm16(AesKeyLen::Aes128))
        }
        EncrAlg::AesGcm16_256 if alg.integ.is_none() => {
            Some(Transform::AesGcm16(AesKeyLen::Aes256))
        }
        EncrAlg::ChaCha20Poly1305 if alg.integ.is_none() => Some(Transform::ChaCha20Poly1305),
        EncrAlg::AesCbc128 => cbc(AesKeyLen::Aes128),
        EncrAlg::AesCbc192 => cbc(AesKeyLen::Aes192),
        EncrAlg::AesCbc256 => cbc(AesKeyLen::Aes256),
        _ => None,
    };
    transform.ok_or(ChildError::Unsupported(*alg))
}

/// The negotiated ESP algorithms in strongSwan's notation (`AES_GCM_16-256`), for status output.
pub fn describe_esp(alg: &EspAlgorithms) -> String {
    match esp_transform(alg) {
        Ok(Transform::AesGcm16(k)) => format!("AES_GCM_16-{}", k.bytes() * 8),
        Ok(Transform::ChaCha20Poly1305) => "CHACHA20_POLY1305".to_owned(),
        Ok(Transform::AesCbc(k, i)) => {
            let integ = match i {
                Integrity::HmacSha1_96 => "HMAC_SHA1_96",
                Integrity::HmacSha256_128 => "HMAC_SHA2_256_128",
                Integrity::HmacSha384_192 => "HMAC_SHA2_384_192",
                Integrity::HmacSha512_256 => "HMAC_SHA2_512_256",
            };
            format!("AES_CBC-{}/{integ}", k.bytes() * 8)
        }
        Err(_) => format!("{alg:?}"),
    }
}

/// Inbound and outbound ESP state for a Child SA from the engine.
pub fn esp_pair(child: &ikev2::ChildSa) -> Result<(InboundSa, esp::OutboundSa), ChildError> {
    let transform = esp_transform(&child.algorithms)?;
    let keys_in = DirectionKeys::new(
        transform,
        child.encr_key_in.as_bytes(),
        child.integ_key_in.as_bytes(),
    )?;
    let keys_out = DirectionKeys::new(
        transform,
        child.encr_key_out.as_bytes(),
        child.integ_key_out.as_bytes(),
    )?;
    let inbound = InboundSa::with_config(child.spi_in, &keys_in, InboundConfig::default())?;
    let outbound =
        esp::OutboundSa::with_config(child.spi_out, &keys_out, OutboundConfig::default())?;
    Ok((inbound, outbound))
}

/// A traffic selector's address range as the prefixes that cover it exactly.
pub fn ts_prefixes(ts: &TrafficSelector) -> Vec<IpNet> {
    match ts {
        TrafficSelector::Ipv4(r) => ipnet::Ipv4Subnets::new(r.start, r.end, 0)
            .map(IpNet::V4)
            .collect(),
        TrafficSelector::Ipv6(r) => ipnet::Ipv6Subnets::new(r.start, r.end, 0)
            .map(IpNet::V6)
            .collect(),
        TrafficSelector::Other { .. } => Vec::new(),
    }
}

/// Traffic selectors as the data plane enforces them (an unknown selector type covers
/// nothing).
pub fn datapath_selectors(list: &[TrafficSelector]) -> Vec<datapath::Selector> {
    let selector =
        |start: IpAddr, end: IpAddr, r_protocol: u8, ports: (u16, u16)| datapath::Selector {
            start,
            end,
            protocol: r_protocol,
            start_port: ports.0,
            end_port: ports.1,
        };
    list.iter()
        .filter_map(|ts| match ts {
            TrafficSelector::Ipv4(r) => Some(selector(
                r.start.into(),
                r.end.into(),
                r.ip_protocol,
                (r.start_port, r.end_port),
            )),
            TrafficSelector::Ipv6(r) => Some(selector(
                r.start.into(),
                r.end.into(),
                r.ip_protocol,
                (r.start_port, r.end_port),
            )),
            TrafficSelector::Other { .. } => None,
        })
        .collect()
}

/// Which end of the tunnel a daemon is. It decides which routes a data-plane SA carries and
/// who sends RFC 3948 NAT keepalives (the client, behind the NAT, keeps its mapping open; the
/// gateway never needs to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Gateway,
    Client,
}

/// The data-plane SA: `routes` are the inner destinations sent through it (the gateway: the
/// client's virtual IP; the client: the networks it reaches through the tunnel); every packet
/// both ways must also fall within the negotiated traffic selectors.
pub fn datapath_sa(
    id: datapath::EspSaId,
    child: &ikev2::ChildSa,
    routes: Vec<IpNet>,
    side: Side,
) -> Result<datapath::EspSa, ChildError> {
    let (inbound, outbound) = esp_pair(child)?;
    Ok(datapath::EspSa {
        id,
        inbound,
        outbound,
        peer: child.remote,
        local: Some(child.local.ip()),
        routes,
        selectors: datapath::Selectors {
            local: datapath_selectors(&child.ts_local),
            remote: datapath_selectors(&child.ts_remote),
        },
        nat_keepalive: side == Side::Client && child.udp_encap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alg(encr: EncrAlg, integ: Option<IntegAlg>) -> EspAlgorithms {
        EspAlgorithms {
            encr,
            integ,
            esn: false,
        }
    }

    #[test]
    fn every_negotiable_esp_transform_maps_or_is_refused_clearly() {
        assert_eq!(
            esp_transform(&alg(EncrAlg::AesGcm16_256, None)).unwrap(),
            Transform::AesGcm16(AesKeyLen::Aes256)
        );
        assert_eq!(
            esp_transform(&alg(EncrAlg::ChaCha20Poly1305, None)).unwrap(),
            Transform::ChaCha20Poly1305
        );
        assert_eq!(
            esp_transform(&alg(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96))).unwrap(),
            Transform::AesCbc(AesKeyLen::Aes128, Integrity::HmacSha1_96)
        );
        assert!(matches!(
            esp_transform(&alg(EncrAlg::AesCbc256, None)),
            Err(ChildError::Unsupported(_))
        ));
        assert!(matches!(
            esp_transform(&alg(EncrAlg::TripleDesCbc, Some(IntegAlg::HmacSha1_96))),
            Err(ChildError::Unsupported(_))
        ));
        assert_eq!(
            describe_esp(&alg(EncrAlg::AesGcm16_256, None)),
            "AES_GCM_16-256"
        );
        assert_eq!(
            describe_esp(&alg(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128))),
            "AES_CBC-128/HMAC_SHA2_256_128"
        );
        let mut esn = alg(EncrAlg::AesGcm16_128, None);
        esn.esn = true;
        assert!(matches!(esp_transform(&esn), Err(ChildError::Esn)));
    }
}
