//! `[listen]`: where the gateway takes IKE and NAT-T/ESP.

use std::net::IpAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Local addresses for IKE (UDP 500) and NAT-T/ESP (UDP 4500).
    pub addresses: Vec<IpAddr>,
    #[serde(default = "default_ike_port")]
    pub ike_port: u16,
    #[serde(default = "default_natt_port")]
    pub natt_port: u16,
}

fn default_ike_port() -> u16 {
    500
}
fn default_natt_port() -> u16 {
    4500
}

impl Listen {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.addresses.is_empty() {
            return Err(("listen.addresses", "at least one address is needed".into()));
        }
        if self.addresses.len() > 1 {
            // One socket pair per daemon for now; a wildcard bind would also listen on
            // addresses nobody listed.
            return Err((
                "listen.addresses",
                "exactly one address for now (run one gateway per address)".into(),
            ));
        }
        if self.ike_port == 0 {
            return Err(("listen.ike_port", "port 0 is not a port".into()));
        }
        if self.natt_port == 0 || self.natt_port == self.ike_port {
            return Err((
                "listen.natt_port",
                "must be non-zero and differ from ike_port".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{GOOD, assert_each_names_its_field, field_of};

    #[test]
    fn each_listen_error_names_its_field() {
        assert_each_names_its_field(&[
            (
                "addresses = [\"203.0.113.1\"]",
                "addresses = []",
                "listen.addresses",
            ),
            ("[listen]", "[listen]\nnatt_port = 500", "listen.natt_port"),
            ("[listen]", "[listen]\nike_port = 0", "listen.ike_port"),
        ]);
    }

    #[test]
    fn one_listen_address_is_required() {
        let two = GOOD.replace(
            "addresses = [\"203.0.113.1\"]",
            "addresses = [\"203.0.113.1\", \"198.51.100.1\"]",
        );
        assert_eq!(field_of(&two), "listen.addresses");
    }
}
