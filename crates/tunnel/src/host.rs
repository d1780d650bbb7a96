//! Choices both daemons make the same way about the machine they run on.

use std::path::Path;

use netio::tun::TunConfig;
use serde::Serialize;

/// The TUN device for a data plane: TCP segmentation offload on (the data plane then moves
/// 64 KiB super-packets: about twice the throughput and none of the transmit-queue drops
/// measured without it), and one queue per core on machines with more than two cores. On two
/// cores a second queue measured slower (the one UDP reader is the bottleneck there).
pub fn tun_config(name: &str, mtu: u16) -> TunConfig {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut config = TunConfig::new(name, mtu);
    config.offload = true;
    config.queues = if cores > 2 { cores.min(4) } else { 1 };
    config
}

/// Wall-clock seconds since the Unix epoch, for certificate validity and status files (the
/// engine's timers run on `Instant`; this is only ever handed in).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `value` as JSON with file mode `mode` so that readers (the lab, `aovpn status`)
/// never see half a file.
pub fn write_json_atomically(path: &Path, value: &impl Serialize, mode: u32) {
    let result = serde_json::to_vec_pretty(value)
        .map_err(std::io::Error::other)
        .and_then(|json| netio::fs::replace_file(path, &json, mode, false));
    if let Err(e) = result {
        tracing::warn!("status file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_are_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("aovpn-host-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.json");
        write_json_atomically(&path, &serde_json::json!({"state": "connecting"}), 0o644);
        write_json_atomically(&path, &serde_json::json!({"state": "connected"}), 0o644);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["state"], "connected");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tun_devices_use_offload() {
        let c = tun_config("aovpn0", 1400);
        assert!(c.offload);
        assert!(c.queues >= 1 && c.queues <= 4);
    }
}
