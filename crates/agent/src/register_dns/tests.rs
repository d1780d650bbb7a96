use super::*;

const KEY: &str = "# from tsig-keygen\nkey \"dev1-update\" {\n\talgorithm hmac-sha256;\n\
                   \tsecret \"q2Yb0Bq5zw8m2fPNxdGJkQZ8n4XA0rM8a1Wm0mJmQ3Y=\";\n};\n";

fn reg() -> Registration {
    Registration::new(
        "Dev1.localdomain",
        "corp.example.",
        vec!["172.16.201.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        b"machine",
        DEFAULT_TTL,
    )
    .unwrap()
}

#[test]
fn keys_in_bind_syntax_parse_and_bad_ones_say_why() {
    let k = parse_key(KEY).unwrap();
    assert_eq!(k.name.to_ascii(), "dev1-update.");
    assert_eq!(k.algorithm, TsigAlgorithm::HmacSha256);
    assert_eq!(k.secret.len(), 32);
    let commented = KEY.replace("algorithm", "/* c */ algorithm // x\n");
    assert!(parse_key(&commented).is_ok());
    for (text, why) in [
        ("", "expected `key"),
        (
            "key \"k\" { secret \"AAAAAAAAAAAAAAAAAAAAAA==\"; };",
            "no algorithm",
        ),
        ("key \"k\" { algorithm hmac-md5; };", "not supported"),
        (
            "key \"k\" { algorithm hmac-sha256; secret \"!!\"; };",
            "not base64",
        ),
        (
            "key \"k\" { algorithm hmac-sha256; secret \"AAAA\"; };",
            "shorter",
        ),
        ("key \"k\" { algorithm hmac-sha256 }", "expected `;`"),
        ("key \"k\" { algorithm hmac-sha256;", "not closed"),
        ("key \"k\" { secret \"unterminated", "unterminated"),
    ] {
        let e = parse_key(text).unwrap_err();
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}

proptest::proptest! {
    /// Any text, and any mangling of a real key, gives a key or an error, never a panic.
    #[test]
    fn key_parsing_never_panics(text in ".{0,200}", cut in 0usize..200, junk in "[{};\"/*# a-z=]{0,8}") {
        let _ = parse_key(&text);
        let cut = cut.min(KEY.len());
        let _ = parse_key(&format!("{}{junk}{}", &KEY[..cut], &KEY[cut..]));
    }
}

#[test]
fn a_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    std::fs::write(&path, KEY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_key(&path).unwrap_err().to_string();
    assert!(
        e.contains("readable by others") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load_key(&path).is_ok());
}

#[test]
fn names_are_the_host_label_under_the_zone_with_a_stable_owner_mark() {
    let r = reg();
    assert_eq!(r.display_name(), "dev1.corp.example");
    assert_eq!(r.zone.to_ascii(), "corp.example.");
    assert_eq!(r.owner, reg().owner);
    assert!(r.owner.starts_with("aovpn-owner=") && r.owner.len() == 12 + 32);
    let other =
        Registration::new("dev1", "corp.example", r.addresses.clone(), b"other", 60).unwrap();
    assert_ne!(other.owner, r.owner);
    for bad in ["", "-x", "a_b", "x y"] {
        assert!(Registration::new(bad, "corp.example", r.addresses.clone(), b"m", 60).is_err());
    }
    assert!(Registration::new("dev1", "corp.example", Vec::new(), b"m", 60).is_err());
    assert!(Registration::new("dev1", ".", r.addresses.clone(), b"m", 60).is_err());
}

#[test]
fn updates_carry_the_rfc2136_prerequisites() {
    let r = reg();
    let claim = update(&r, Step::Claim, 7);
    assert_eq!(claim.metadata.op_code, OpCode::Update);
    assert_eq!(claim.queries[0].query_type(), RecordType::SOA);
    assert_eq!(claim.queries[0].name(), &r.zone);
    // Name not in use: class NONE, type ANY, no data.
    assert_eq!(claim.answers.len(), 1);
    assert_eq!(claim.answers[0].dns_class, DNSClass::NONE);
    assert_eq!(claim.answers[0].record_type(), RecordType::ANY);
    let types: Vec<RecordType> = claim.authorities.iter().map(Record::record_type).collect();
    assert_eq!(types, [RecordType::A, RecordType::AAAA, RecordType::TXT]);
    assert!(claim.authorities.iter().all(|a| a.ttl == DEFAULT_TTL));

    let replace = update(&r, Step::Replace, 8);
    // Our mark, exactly (value-dependent): class IN, TTL 0.
    assert_eq!(replace.answers[0].dns_class, DNSClass::IN);
    assert_eq!(replace.answers[0].ttl, 0);
    assert_eq!(
        replace.answers[0].data,
        RData::TXT(TXT::new(vec![r.owner.clone()]))
    );
    let deletes: Vec<(DNSClass, RecordType)> = replace
        .authorities
        .iter()
        .map(|a| (a.dns_class, a.record_type()))
        .take(2)
        .collect();
    assert_eq!(
        deletes,
        [
            (DNSClass::ANY, RecordType::A),
            (DNSClass::ANY, RecordType::AAAA)
        ]
    );
    assert_eq!(replace.authorities.len(), 4);

    // Removal takes the addresses and our mark only: other records of the name stay.
    let remove = update(&r, Step::Remove, 9);
    let removed: Vec<(DNSClass, RecordType)> = remove
        .authorities
        .iter()
        .map(|a| (a.dns_class, a.record_type()))
        .collect();
    assert_eq!(
        removed,
        [
            (DNSClass::ANY, RecordType::A),
            (DNSClass::ANY, RecordType::AAAA),
            (DNSClass::NONE, RecordType::TXT)
        ]
    );
    assert_eq!(
        remove.authorities[2].data,
        RData::TXT(TXT::new(vec![r.owner.clone()]))
    );
    // Encodes and decodes as what it is.
    let back = Message::from_vec(&claim.to_vec().unwrap()).unwrap();
    assert_eq!(back.authorities.len(), 3);
}

#[test]
fn answers_mean_what_rfc2136_says_for_each_step() {
    assert_eq!(
        answer(Step::Claim, ResponseCode::NoError, None),
        Answer::Done
    );
    assert_eq!(
        answer(Step::Claim, ResponseCode::YXDomain, None),
        Answer::NameInUse
    );
    assert_eq!(
        answer(Step::Replace, ResponseCode::NXRRSet, None),
        Answer::NotOurs
    );
    assert_eq!(
        answer(Step::Remove, ResponseCode::NXRRSet, None),
        Answer::NotOurs
    );
    let Answer::Refused(why) = answer(Step::Claim, ResponseCode::NotAuth, Some(&TsigError::BadKey))
    else {
        panic!("BADKEY is a refusal")
    };
    assert!(why.contains("BADKEY"), "{why}");
    assert!(matches!(
        answer(Step::Claim, ResponseCode::Refused, None),
        Answer::Refused(_)
    ));
}

#[tokio::test]
async fn unsigned_or_forged_answers_are_not_believed() {
    // A "server" on loopback that answers NOERROR without a signature, then with a
    // signature under another key.
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let target = Target {
        server: addr,
        source: "127.0.0.1".parse().unwrap(),
        interface: "lo".into(),
    };
    let key = parse_key(KEY).unwrap();
    let forger = parse_key(&KEY.replace("q2Yb0Bq5", "Z2Yb0Bq5")).unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        for round in 0..2 {
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..n]).unwrap();
            let mut reply = Message::response(query.metadata.id, OpCode::Update);
            reply.add_query(query.queries[0].clone());
            if round == 1 {
                reply
                    .finalize(&forger.signer().unwrap(), tunnel::host::unix_now())
                    .unwrap();
            }
            server
                .send_to(&reply.to_vec().unwrap(), from)
                .await
                .unwrap();
        }
    });
    let r = reg();
    let e = exchange(&target, &key, &r, Step::Claim).await.unwrap_err();
    assert!(e.to_string().contains("not signed with our key"), "{e}");
    let e = exchange(&target, &key, &r, Step::Claim).await.unwrap_err();
    assert!(e.to_string().contains("TSIG check"), "{e}");
}
