//! gateway.toml as an operator (or a broken editor) might write it: loading never panics,
//! a refusal names a field or carries toml's position, and what loads is usable (paths made
//! absolute, limits in range, revocation list parsed).
#![no_main]

use std::path::Path;

use gateway::config::{ConfigError, GatewayConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match GatewayConfig::from_toml(text, Path::new("/etc/aovpn/gateway.toml"), Path::new("/etc/aovpn")) {
        Ok(config) => {
            assert!(config.identity.certificate.is_absolute());
            assert!(config.state_dir.is_absolute());
            assert_eq!(config.listen.addresses.len(), 1);
            assert!(config.limits.half_open_per_source <= config.limits.half_open_limit);
            assert_eq!(config.revoked().len() <= config.clients.revoked_thumbprints.len(), true);
        }
        Err(ConfigError::Invalid { field, .. }) => assert!(!field.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
