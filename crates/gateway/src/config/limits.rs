//! `[limits]`: what unauthenticated hosts may make the gateway hold, and how many SAs one
//! client identity may keep.

use serde::Deserialize;

/// What one unauthenticated host, or all of them together, may make the gateway hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Half-open IKE SAs above which every new initiator must echo a COOKIE (0 = always).
    #[serde(default = "default_cookie_threshold")]
    pub cookie_threshold: u32,
    /// Half-open IKE SAs above which new IKE_SA_INIT requests are dropped.
    #[serde(default = "default_half_open_limit")]
    pub half_open_limit: u32,
    /// Half-open IKE SAs one source (IPv4 address, IPv6 /64) may hold before it must echo a
    /// COOKIE, and with one (strongSwan's block_threshold).
    #[serde(default = "default_half_open_per_source")]
    pub half_open_per_source: u32,
    /// Largest datagram taken from a peer before it has authenticated, in bytes.
    #[serde(default = "default_max_unauthenticated_message")]
    pub max_unauthenticated_message: u32,
    /// Established IKE SAs one client identity may hold at once; the oldest is closed when a
    /// new one authenticates beyond this.
    #[serde(default = "default_max_sas_per_identity")]
    pub max_sas_per_identity: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cookie_threshold: default_cookie_threshold(),
            half_open_limit: default_half_open_limit(),
            half_open_per_source: default_half_open_per_source(),
            max_unauthenticated_message: default_max_unauthenticated_message(),
            max_sas_per_identity: default_max_sas_per_identity(),
        }
    }
}

fn default_cookie_threshold() -> u32 {
    10
}
fn default_half_open_limit() -> u32 {
    4096
}
fn default_half_open_per_source() -> u32 {
    5
}
fn default_max_unauthenticated_message() -> u32 {
    10_000
}
fn default_max_sas_per_identity() -> u32 {
    4
}

impl Limits {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1_000_000).contains(&self.half_open_limit) {
            return Err((
                "limits.half_open_limit",
                "must be between 1 and 1000000".into(),
            ));
        }
        if self.cookie_threshold > self.half_open_limit {
            return Err((
                "limits.cookie_threshold",
                format!(
                    "{} is above limits.half_open_limit ({}): COOKIEs would never be asked for",
                    self.cookie_threshold, self.half_open_limit
                ),
            ));
        }
        if !(1..=self.half_open_limit).contains(&self.half_open_per_source) {
            return Err((
                "limits.half_open_per_source",
                "must be between 1 and limits.half_open_limit".into(),
            ));
        }
        // An IKE_SA_INIT with RSA-4096 certificate requests and a MODP-8192 KE stays well
        // under 2,000 bytes; IKE_AUTH beyond a few kilobytes is fragmented.
        if !(2_000..=65_535).contains(&self.max_unauthenticated_message) {
            return Err((
                "limits.max_unauthenticated_message",
                "must be between 2000 and 65535 bytes".into(),
            ));
        }
        if !(1..=64).contains(&self.max_sas_per_identity) {
            return Err((
                "limits.max_sas_per_identity",
                "must be between 1 and 64".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_each_names_its_field;

    #[test]
    fn each_limits_error_names_its_field() {
        assert_each_names_its_field(&[
            (
                "[network]",
                "[limits]\nhalf_open_limit = 0\n[network]",
                "limits.half_open_limit",
            ),
            (
                "[network]",
                "[limits]\ncookie_threshold = 5000\n[network]",
                "limits.cookie_threshold",
            ),
            (
                "[network]",
                "[limits]\nhalf_open_per_source = 0\n[network]",
                "limits.half_open_per_source",
            ),
            (
                "[network]",
                "[limits]\nmax_unauthenticated_message = 100\n[network]",
                "limits.max_unauthenticated_message",
            ),
            (
                "[network]",
                "[limits]\nmax_sas_per_identity = 0\n[network]",
                "limits.max_sas_per_identity",
            ),
        ]);
    }
}
