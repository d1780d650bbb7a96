//! `[crypto]`: proposals, lifetimes, liveness checks and IKE fragmentation.

use serde::Deserialize;

/// Smallest accepted IKE / Child SA lifetime.
pub const MIN_LIFETIME_SECS: u64 = 10;

/// Longest lifetime or liveness interval accepted: 30 days.
pub const MAX_TIMER_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crypto {
    /// IKE proposals in strongSwan notation, most preferred first; empty = built-in defaults.
    #[serde(default)]
    pub ike_proposals: Vec<String>,
    /// ESP proposals in strongSwan notation; empty = built-in defaults.
    #[serde(default)]
    pub esp_proposals: Vec<String>,
    /// Accept the stock Windows set (3DES/AES-CBC, SHA-1, MODP-1024) when offered.
    #[serde(default)]
    pub allow_legacy: bool,
    /// Azure's defaults: IKE SA 28800 s, IPsec SA 27000 s.
    #[serde(default = "default_ike_lifetime")]
    pub ike_lifetime_secs: u64,
    #[serde(default = "default_child_lifetime")]
    pub child_lifetime_secs: u64,
    /// Liveness check interval; 0 disables it.
    #[serde(default = "default_dpd")]
    pub dpd_interval_secs: u64,
    /// IKE messages larger than this are fragmented (RFC 7383) when the peer supports it.
    #[serde(default = "default_fragment_mtu")]
    pub fragment_mtu: u16,
}

impl Default for Crypto {
    fn default() -> Self {
        Self {
            ike_proposals: Vec::new(),
            esp_proposals: Vec::new(),
            allow_legacy: false,
            ike_lifetime_secs: default_ike_lifetime(),
            child_lifetime_secs: default_child_lifetime(),
            dpd_interval_secs: default_dpd(),
            fragment_mtu: default_fragment_mtu(),
        }
    }
}

fn default_ike_lifetime() -> u64 {
    28_800
}
fn default_child_lifetime() -> u64 {
    27_000
}
fn default_dpd() -> u64 {
    30
}
fn default_fragment_mtu() -> u16 {
    1280
}

impl Crypto {
    /// The proposals themselves are parsed with the responder configuration, where the
    /// engine's parser is.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        // Short lifetimes are for tests; a rekey needs a few round trips of headroom.
        // Upper bounds keep every timer the engine derives far from overflowing `Instant`.
        for (field, value) in [
            ("crypto.ike_lifetime_secs", self.ike_lifetime_secs),
            ("crypto.child_lifetime_secs", self.child_lifetime_secs),
        ] {
            if !(MIN_LIFETIME_SECS..=MAX_TIMER_SECS).contains(&value) {
                return Err((
                    field,
                    format!("must be between {MIN_LIFETIME_SECS} and {MAX_TIMER_SECS} seconds"),
                ));
            }
        }
        if self.dpd_interval_secs > MAX_TIMER_SECS {
            return Err((
                "crypto.dpd_interval_secs",
                format!("must be at most {MAX_TIMER_SECS} seconds (0 disables it)"),
            ));
        }
        if !(576..=9000).contains(&self.fragment_mtu) {
            return Err(("crypto.fragment_mtu", "must be between 576 and 9000".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{GOOD, assert_each_names_its_field, field_of, load};

    #[test]
    fn each_crypto_error_names_its_field() {
        assert_each_names_its_field(&[
            (
                "[network]",
                "[crypto]\nfragment_mtu = 100\n[network]",
                "crypto.fragment_mtu",
            ),
            (
                "[network]",
                "[crypto]\nike_lifetime_secs = 5\n[network]",
                "crypto.ike_lifetime_secs",
            ),
        ]);
    }

    #[test]
    fn lifetimes_down_to_ten_seconds_are_accepted_for_rekey_tests() {
        let text = GOOD.replace(
            "[network]",
            "[crypto]\nike_lifetime_secs = 10\nchild_lifetime_secs = 10\n[network]",
        );
        let c = load(&text).unwrap();
        assert_eq!(
            (c.crypto.ike_lifetime_secs, c.crypto.child_lifetime_secs),
            (10, 10)
        );
        let text = GOOD.replace("[network]", "[crypto]\nchild_lifetime_secs = 9\n[network]");
        assert_eq!(field_of(&text), "crypto.child_lifetime_secs");
        let text = GOOD.replace("[network]", "[crypto]\nike_lifetime_secs = 9\n[network]");
        assert_eq!(field_of(&text), "crypto.ike_lifetime_secs");
    }

    #[test]
    fn timers_are_bounded() {
        let huge = GOOD.replace(
            "[network]",
            "[crypto]\nike_lifetime_secs = 18446744073709551615\n[network]",
        );
        assert_eq!(field_of(&huge), "crypto.ike_lifetime_secs");
        let huge = GOOD.replace(
            "[network]",
            "[crypto]\ndpd_interval_secs = 99999999999\n[network]",
        );
        assert_eq!(field_of(&huge), "crypto.dpd_interval_secs");
    }
}
