//! Any bytes: parsing (all three forms), validation and planning must not panic, and a profile that
//! parsed must serialize to XML that parses back to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profile::{ParsedProfile, plan, serialize};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = ParsedProfile::parse("fuzz", data) else {
        return;
    };
    let _ = parsed.validate(None);
    let _ = plan::plan("fuzz", None, &parsed.profile);
    let xml = serialize::to_profile_xml(&parsed.profile);
    // Verbatim subtrees that use namespace prefixes declared on an ancestor cannot stand alone;
    // everything else must come back identical.
    if let Ok(again) = ParsedProfile::parse_str("fuzz", &xml) {
        assert_eq!(again.profile, parsed.profile, "{xml}");
    } else {
        assert!(
            xml.contains(':'),
            "serialized profile does not parse:\n{xml}"
        );
    }
    let escaped = ParsedProfile::parse_str("fuzz", &serialize::to_escaped(&parsed.profile_xml));
    if let Ok(e) = escaped {
        assert_eq!(e.profile, parsed.profile);
    }
});
