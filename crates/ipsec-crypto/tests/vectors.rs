//! Published test vectors, copied as data with their sources named.
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use ipsec_crypto::{
    ChildSaKeys, CryptoError, DhGroup, DhPrivateKey, PrfAlg, prf, prf_plus, rekey_skeyseed,
    skeyseed,
};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// One positive case of OpenSSL's evpkdf_ikev2.txt.
#[derive(Default, Debug)]
struct KdfCase {
    digest: String,
    ni: Vec<u8>,
    nr: Vec<u8>,
    secret: Option<Vec<u8>>,
    spii: Option<Vec<u8>>,
    spir: Option<Vec<u8>>,
    seed: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    mode: u8,
    output: Vec<u8>,
}

fn parse_kdf_file(text: &str) -> Vec<KdfCase> {
    let mut cases = Vec::new();
    for block in text.split("\n\n") {
        let mut case = KdfCase::default();
        let mut is_case = false;
        for line in block.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(" = ") else {
                continue;
            };
            // "Ctrl.x = hexx:VALUE" / "Ctrl.digest = digest:SHA256" / "Output = VALUE"
            let value = value.split_once(':').map_or(value, |(_, v)| v);
            match name {
                "Ctrl.digest" => case.digest = value.to_string(),
                "Ctrl.hexni" | "Ctrl.ni" => case.ni = h(value),
                "Ctrl.hexnr" | "Ctrl.nr" => case.nr = h(value),
                "Ctrl.hexsecret" | "Ctrl.secret" => case.secret = Some(h(value)),
                "Ctrl.hexspii" | "Ctrl.spii" => case.spii = Some(h(value)),
                "Ctrl.hexspir" | "Ctrl.spir" => case.spir = Some(h(value)),
                "Ctrl.hexseed" | "Ctrl.seed" => case.seed = Some(h(value)),
                "Ctrl.hexkey" | "Ctrl.key" => case.key = Some(h(value)),
                "Ctrl.mode" => case.mode = value.parse().unwrap(),
                "Output" => {
                    case.output = h(value);
                    is_case = true;
                }
                _ => {}
            }
        }
        if is_case {
            cases.push(case);
        }
    }
    cases
}

#[test]
fn openssl_ikev2_kdf_vectors() {
    let text = include_str!("data/evpkdf_ikev2_subset.txt");
    let cases = parse_kdf_file(text);
    assert_eq!(cases.len(), 9);
    for (i, c) in cases.iter().enumerate() {
        let prf_alg = match c.digest.as_str() {
            "SHA1" => PrfAlg::HmacSha1,
            "SHA256" => PrfAlg::HmacSha256,
            "SHA384" => PrfAlg::HmacSha384,
            "SHA512" => PrfAlg::HmacSha512,
            other => panic!("digest {other}"),
        };
        let got = match (c.mode, &c.seed, &c.key) {
            (0, _, _) => skeyseed(prf_alg, &c.ni, &c.nr, c.secret.as_ref().unwrap()),
            // IKE SA keying material: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
            (1, Some(seed), _) => {
                let (spii, spir) = (c.spii.as_ref().unwrap(), c.spir.as_ref().unwrap());
                prf_plus(prf_alg, seed, &[&c.ni, &c.nr, spii, spir], c.output.len()).unwrap()
            }
            // Child SA KEYMAT through the public API, with and without PFS.
            (1, None, Some(sk_d)) => {
                let half = c.output.len() / 2;
                let k = ChildSaKeys::derive(
                    prf_alg,
                    sk_d,
                    c.secret.as_deref(),
                    &c.ni,
                    &c.nr,
                    half - 7,
                    7,
                )
                .unwrap();
                let mut joined = Vec::new();
                for part in [&k.encr_i, &k.integ_i, &k.encr_r, &k.integ_r] {
                    joined.extend_from_slice(part.as_bytes());
                }
                assert_eq!(joined.len(), c.output.len());
                ipsec_crypto::SecretBytes::new(joined)
            }
            (2, _, Some(sk_d)) => {
                rekey_skeyseed(prf_alg, sk_d, c.secret.as_ref().unwrap(), &c.ni, &c.nr)
            }
            other => panic!("case {i}: unexpected shape {other:?}"),
        };
        assert_eq!(
            hex::encode(got.as_bytes()),
            hex::encode(&c.output),
            "case {i} {c:?}"
        );
    }
}

/// RFC 4868 2.7.1 (PRF-HMAC-SHA-256/384/512 test cases 1 and 2, same data as RFC 4231) and
/// RFC 2202 3 test case 1 for PRF_HMAC_SHA1.
#[test]
fn rfc4868_prf_vectors() {
    let cases: [(PrfAlg, &[u8], &[u8], &str); 5] = [
        (
            PrfAlg::HmacSha256,
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            PrfAlg::HmacSha384,
            &[0x0b; 20],
            b"Hi There",
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
             faea9ea9076ede7f4af152e8b2fa9cb6",
        ),
        (
            PrfAlg::HmacSha512,
            &[0x0b; 20],
            b"Hi There",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            PrfAlg::HmacSha256,
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            PrfAlg::HmacSha1,
            &[0x0b; 20],
            b"Hi There",
            "b617318655057264e28bc0b6fb378c8ef146be00",
        ),
    ];
    for (alg, key, data, expected) in cases {
        let expected: String = expected.split_whitespace().collect();
        assert_eq!(
            hex::encode(prf(alg, key, &[data]).as_bytes()),
            expected,
            "{alg:?}"
        );
    }
}

/// RFC 5903 8.1 (group 19) and 8.2 (group 20): i, g^i, r, g^r, g^ir (x only). Wire format is
/// x ‖ y.
#[test]
fn rfc5903_ecp_vectors() {
    let cases = [
        (
            DhGroup::EcpP256,
            "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
            "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
            "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
        ),
        (
            DhGroup::EcpP384,
            "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655\
             E35B538041E649EE3FAEF896783AB194",
            "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6\
             DE3AC808ACB4BDB4C88732AEE95F41AA\
             9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38E\
             EB9FCFF3C2C947DAE69B4C634573A81C",
            "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942\
             E0308312916B8ED2960E4BD55A7448FC",
            "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D\
             0D1AC43A0336DEF96FDA41D0774A3571\
             DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FF\
             F83FA40142209DFF5EAAD96DB9E6386C",
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4\
             D603135569B9E9D09CF5D4A270F59746",
        ),
    ];
    for (group, i, gi, r, gr, gir) in cases {
        let ki = DhPrivateKey::from_private_bytes(group, &h(i)).unwrap();
        let kr = DhPrivateKey::from_private_bytes(group, &h(r)).unwrap();
        assert_eq!(ki.public_value(), h(gi), "{group:?} g^i");
        assert_eq!(kr.public_value(), h(gr), "{group:?} g^r");
        assert_eq!(
            ki.agree(&h(gr)).unwrap().as_bytes(),
            h(gir),
            "{group:?} g^ir"
        );
        assert_eq!(
            kr.agree(&h(gi)).unwrap().as_bytes(),
            h(gir),
            "{group:?} g^ri"
        );
    }
}

/// RFC 7748 6.1 (X25519 Diffie-Hellman) Alice/Bob vector.
#[test]
fn rfc7748_x25519_vector() {
    let alice = DhPrivateKey::from_private_bytes(
        DhGroup::Curve25519,
        &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
    )
    .unwrap();
    let bob = DhPrivateKey::from_private_bytes(
        DhGroup::Curve25519,
        &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
    )
    .unwrap();
    assert_eq!(
        alice.public_value(),
        h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_value(),
        h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(alice.agree(bob.public_value()).unwrap().as_bytes(), k);
    assert_eq!(bob.agree(alice.public_value()).unwrap().as_bytes(), k);
}

/// With exponents 2 and 3 the MODP public values are g^2 = 4 and g^3 = 8, left-padded to the
/// prime length; a small peer value y = 0x1234 gives y^2 = 0x014b5a90. Checks padding and byte
/// order. Exponents 0 and 1 are refused.
#[test]
fn modp_small_exponents_give_known_values() {
    for (group, exp_len) in [(DhGroup::Modp1024, 32), (DhGroup::Modp2048, 40)] {
        let len = group.public_len();
        let padded = |tail: &[u8], total: usize| {
            let mut v = vec![0u8; total - tail.len()];
            v.extend_from_slice(tail);
            v
        };
        let k2 = DhPrivateKey::from_private_bytes(group, &padded(&[2], exp_len)).unwrap();
        assert_eq!(k2.public_value(), padded(&[4], len));
        assert_eq!(
            k2.agree(&padded(&[0x12, 0x34], len)).unwrap().as_bytes(),
            padded(&[0x01, 0x4b, 0x5a, 0x90], len)
        );
        let k3 = DhPrivateKey::from_private_bytes(group, &padded(&[3], exp_len)).unwrap();
        assert_eq!(k3.public_value(), padded(&[8], len));
        for bad in [0u8, 1] {
            assert_eq!(
                DhPrivateKey::from_private_bytes(group, &padded(&[bad], exp_len)).unwrap_err(),
                CryptoError::KeyRejected("DH private")
            );
        }
        assert_eq!(
            DhPrivateKey::from_private_bytes(group, &[1; 8]).unwrap_err(),
            CryptoError::KeyLength {
                what: "DH private",
                expected: exp_len,
                got: 8
            }
        );
    }
}

/// MODP groups 2 and 14: the generated test vectors of strongSwan's test-vectors plugin
/// (`src/libstrongswan/plugins/test_vectors/test_vectors/modp.c`, `modp1024` and `modp2048`;
/// strongSwan notes there that no published vectors exist for these groups). Data only: the
/// two private exponents, both public values and the shared secret.
#[test]
fn strongswan_modp_vectors() {
    let cases = [
        (
            DhGroup::Modp1024,
            "e53c205da0d8e4bfb4174944320fc6e4ea66fe44e3c931ac5da1450aea47ebcf",
            "7f9af721eb7cd2a900a36e399ebc5c65eecce6629c8e1c5a7ff33293645fd3e3",
            concat!(
                "66617c9bbe91ee9900d806415b7384ecb0b6b80a39bd5b070396ee32375a8f68",
                "376b352b97baf32f95c4d18c06ab96bfe3f3752df1e3c55741b6f4244117eebd",
                "a1015983c6ba008fe89fe51cf4c9692592ebf742436c393df61a60ccc64fd790",
                "7a6d26267c0f1556230c3e332b2e11d118a6982589793a2f6d66b86676bae47a",
            ),
            concat!(
                "7b9010609ebf2c497017458afaab4202885d25de7b5e5ce9b05bd442a3e97b52",
                "cea760d7dbcb21dd71d80cd4347caa9edfbc2df4c1cdc1669b8ad244eb345b33",
                "1d875492883df04a3d0b1a8b8927d50991fe03e7357eb6bdfce3d8c684c9861b",
                "c5ce03962ffb87bf05dabd5a3727994ddee5d3c6ecc589859991b93255761fd5",
            ),
            concat!(
                "95790f5c46ae7ca1a471dd786aa8e444073ecec9695d004620cd7c9d3609a697",
                "3c89a230750935638b86d1e65b27b7848881f9013abd036280d1862bb03ca60b",
                "a90b70f9ae7edf71ff80f5a7eefbe26729b5bbb1bb1feb0d240e53c9d74b4fe9",
                "d262b53bd5d8a7383f90f01e359647d04802d74a4f753b294a96503f2605d3f1",
            ),
        ),
        (
            DhGroup::Modp2048,
            concat!(
                "af3bfd3862caa11774ce2b74840807c1de5cd6a7619bb3a0c7af39eedaa6eb89",
                "e2e9c144b3625b2731879cb58fa3766d",
            ),
            concat!(
                "77a48e4772e23e284ce4af81399dcd589beb7cefbcc9d196f06dcfdfc3a88e3b",
                "4c1c82befec0e64ba495ccde329936ce",
            ),
            concat!(
                "1a27c5a7237ae8fe0a71c0af6494faeccdd4a5031d47a1a6b7162dfcdf03bb17",
                "b7bb089bd652a5f31b3661bb114d7c48d83d244f46db64870c9c8327f1a830ab",
                "f531e518dd521a2e94e7061e944209ba5331012b3dff00849eaab58c7c7af152",
                "65210fbcf0f87b9dd932f8ba4e9a9f91b63294530a1200b88b3a03e1a0c7fd34",
                "deec6fad501ede06ce7ec9e291d47b69b3a4b61bb08763b6d46bfbdab97bdece",
                "a0ff09a872221fb4b6ccca6b5c6faad8eb873b9a2f39b63e62cfadd47607e68e",
                "2c290583f7268fb43fc00a7dc8810ecdac1a59bd1b477aaf41cb4b24ada3e5f7",
                "b8cb986f1ae476afc7677aa62570a1b1838dda26be7863ee2f40b5e538a4e181",
            ),
            concat!(
                "667282318d65cb05cd323c25091e664cc75a3a20c014b2f6389d3b27f5c1e908",
                "e0d40ff8552bd587752550302285b49f75f8ffaec937fb2e69c8150f88d6508b",
                "f0fb1f16e9676f5ecf718f874f3d8de3c8688749dbcf1affd4d62ff9ea5d9e30",
                "35b2ce4a6eae281c408fc8084ae235d998a037610a8cb48c878cd0635fa1369f",
                "c90b864c532367384597fdeefdb6742b006adedae2015bc4ce2f9c5451c9636a",
                "16ed7d10b4e40d825b50aa7633a0e8fb813bebc049f7ff6a71ecfb14e880f509",
                "d38b571a809808a496b451b5b5567a3608b01a22e4998355f181b879de262304",
                "f29de142ff5e52cc564f3a2d1e84a0c33d8f3da7bf6412b3f018e00d90fa5b94",
            ),
            concat!(
                "26f9e8457cf2d7d56dd819c2a867d7c3a90aa2b944e20b8bded3a5bf91aa1ff8",
                "1a7ea89d524c365f3823510835cd8644c4d5dacf893e610d2c1a140616d1c8c1",
                "d35f46de2c5faad9aecec6b677acd984098142a8aa0c8542e9ac98b3bc7b577c",
                "59b8ec53346e1567a90039ac92b224635ab216731b06353925642c330a201ba4",
                "b31284a9515860f35e9308f5515a779984fbd9f5ce4177db78d1cb0384b63c73",
                "9c6d744ad7a700b95a531b29f3b744ed38e69aee67072c45a91cee6b14215e04",
                "f27c31358c86dce448d60a223bdc554edaa3e4072ef603a0f4619f8db39cec29",
                "1c860174155d8abf9e1082931df58ed9ee9c1215dd2393de02f5c1767f070e28",
            ),
        ),
    ];
    for (group, i, r, gi, gr, gir) in cases {
        let ki = DhPrivateKey::from_private_bytes(group, &h(i)).unwrap();
        let kr = DhPrivateKey::from_private_bytes(group, &h(r)).unwrap();
        assert_eq!(ki.public_value(), h(gi), "{group:?} g^i");
        assert_eq!(kr.public_value(), h(gr), "{group:?} g^r");
        assert_eq!(
            ki.agree(&h(gr)).unwrap().as_bytes(),
            h(gir),
            "{group:?} g^ir"
        );
        assert_eq!(
            kr.agree(&h(gi)).unwrap().as_bytes(),
            h(gir),
            "{group:?} g^ri"
        );
    }
}
