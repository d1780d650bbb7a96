//! `[tunnel]`: the gateway's TUN device.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Inner MTU of the TUN device; derived from the path and ESP overhead when absent.
    #[serde(default)]
    pub mtu: Option<u16>,
}

impl Default for Tunnel {
    fn default() -> Self {
        Self {
            interface: default_interface(),
            mtu: None,
        }
    }
}

fn default_interface() -> String {
    "aovpn0".to_owned()
}

impl Tunnel {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = &self.interface;
        if name.is_empty()
            || name.len() > 15
            || name
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c == ':')
        {
            return Err((
                "tunnel.interface",
                format!(
                    "{name:?} is not a valid interface name (1-15 chars, no '/', ':' or spaces)"
                ),
            ));
        }
        if self.mtu.is_some_and(|mtu| !(576..=9000).contains(&mtu)) {
            return Err(("tunnel.mtu", "must be between 576 and 9000".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_each_names_its_field;

    #[test]
    fn a_bad_interface_name_names_its_field() {
        assert_each_names_its_field(&[(
            "[network]",
            "[tunnel]\ninterface = \"a-very-long-interface-name\"\n[network]",
            "tunnel.interface",
        )]);
    }
}
