use super::*;

#[test]
fn parses_the_brief_examples() {
    let p = IkeProposal::parse("aes256gcm16-prfsha384-ecp384", false).unwrap();
    assert_eq!(p.encr, [EncrAlg::AesGcm16_256]);
    assert!(p.integ.is_empty());
    assert_eq!(p.prf, [PrfAlg::HmacSha384]);
    assert_eq!(p.dh, [DhGroup::EcpP384]);

    let p = IkeProposal::parse("aes256-sha256-modp2048", false).unwrap();
    assert_eq!(p.integ, [IntegAlg::HmacSha256_128]);
    assert_eq!(p.prf, [PrfAlg::HmacSha256]);
    assert_eq!(p.dh, [DhGroup::Modp2048]);

    let p = IkeProposal::parse("aes128-sha256-x25519", false).unwrap();
    assert_eq!(p.encr, [EncrAlg::AesCbc128]);
    assert_eq!(p.dh, [DhGroup::Curve25519]);

    assert_eq!(
        IkeProposal::parse("aes256-sha1-modp1024", false),
        Err(ProposalError::Legacy("sha1".into()))
    );
    let legacy = IkeProposal::parse("aes256-sha1-modp1024", true).unwrap();
    assert!(legacy.is_legacy());
    assert_eq!(legacy.prf, [PrfAlg::HmacSha1]);

    let e = EspProposal::parse("aes256gcm16", false).unwrap();
    assert_eq!(e.encr, [EncrAlg::AesGcm16_256]);
    assert_eq!(e.esn, [false]);
    let e = EspProposal::parse("aes256-sha256", false).unwrap();
    assert_eq!(e.integ, [IntegAlg::HmacSha256_128]);
    let e = EspProposal::parse("aes128-sha1", false).unwrap();
    assert_eq!(e.integ, [IntegAlg::HmacSha1_96]);
}

#[test]
fn refuses_bad_strings_with_clear_errors() {
    assert_eq!(
        IkeProposal::parse("aes256-sha256-modp9999", false),
        Err(ProposalError::UnknownToken("modp9999".into()))
    );
    assert_eq!(
        IkeProposal::parse("aes256-sha256", false),
        Err(ProposalError::MissingDh)
    );
    assert_eq!(
        IkeProposal::parse("aes256gcm16-ecp384", false),
        Err(ProposalError::MissingPrf)
    );
    assert_eq!(
        IkeProposal::parse("aes256-ecp384", false),
        Err(ProposalError::MissingIntegrity)
    );
    assert_eq!(
        IkeProposal::parse("aes256gcm16-aes256-sha256-ecp384", false),
        Err(ProposalError::MixedAead)
    );
    assert_eq!(
        IkeProposal::parse("aes256--ecp384", false),
        Err(ProposalError::Empty)
    );
    assert_eq!(
        EspProposal::parse("aes256gcm16-sha256", false),
        Err(ProposalError::IntegrityWithAead("HmacSha256_128".into()))
    );
    assert_eq!(
        EspProposal::parse("aes192gcm16", false),
        Err(ProposalError::Unsupported("aes192gcm16".into()))
    );
    assert_eq!(EspProposal::parse("", false), Err(ProposalError::Empty));
}

#[test]
fn defaults_parse_and_display_round_trips() {
    assert_eq!(IkeProposal::defaults().len(), DEFAULT_IKE.len());
    assert_eq!(EspProposal::defaults().len(), DEFAULT_ESP.len());
    for (p, s) in IkeProposal::defaults().iter().zip(DEFAULT_IKE) {
        assert_eq!(p.to_string(), *s);
    }
    for (p, s) in EspProposal::defaults().iter().zip(DEFAULT_ESP) {
        assert_eq!(p.to_string(), *s);
    }
}

#[test]
fn selection_prefers_our_order_and_honours_key_length() {
    let peer = IkeProposal::parse("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp384", false)
        .unwrap()
        .to_wire(1);
    let ours = IkeProposal::parse("aes256gcm16-prfsha256-ecp384-x25519", false).unwrap();
    let (alg, groups) = ours.select(&peer).unwrap();
    assert_eq!(alg.encr, EncrAlg::AesGcm16_256);
    assert_eq!(groups, [DhGroup::EcpP384, DhGroup::Curve25519]);
    let only128 = IkeProposal::parse("aes128-sha256-x25519", false).unwrap();
    let peer256 = IkeProposal::parse("aes256-sha256-x25519", false)
        .unwrap()
        .to_wire(1);
    assert!(only128.select(&peer256).is_none());
    // Reply round trip.
    let back = IkeAlgorithms::from_wire(&alg.to_wire(1)).unwrap();
    assert_eq!(back, alg);
}

#[test]
fn esp_selection_reads_spi_and_esn() {
    let peer = EspProposal::parse("aes256-sha256-esn-noesn", false)
        .unwrap()
        .to_wire(1, 0xc000_0001, false);
    let ours = EspProposal::parse("aes256-sha256", false).unwrap();
    let (alg, spi) = ours.select(&peer).unwrap();
    assert_eq!(spi, 0xc000_0001);
    assert!(!alg.esn);
    let (back, spi2) = EspAlgorithms::from_wire(&alg.to_wire(1, 7)).unwrap();
    assert_eq!((back, spi2), (alg, 7));
    let gcm = EspProposal::parse("aes256gcm16", false).unwrap();
    assert!(gcm.select(&peer).is_none());
}
