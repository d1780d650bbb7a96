//! Linux I/O shell for aovpn: everything in the data plane and the daemons that talks to the
//! kernel. The protocol crates stay sans-IO; this crate owns the syscalls.
//!
//! - [`tun`]: TUN devices (IFF_NO_PI, optional multi-queue and virtio offload) via tun-rs.
//! - [`netlink`]: links, addresses, routes (with a teardown record) and change monitoring.
//! - [`udp`]: IKE/ESP UDP sockets with recvmmsg/GRO and GSO batching via quinn-udp.
//! - [`mtu`]: inner MTU from an outer MTU and the ESP-in-UDP overhead (pure).
//! - [`dns`]: per-interface DNS via systemd-resolved, or a resolv.conf fallback.
//! - [`clock`]: suspend-aware monotonic clock and resume detection.

pub mod clock;
pub mod dns;
pub mod mtu;
pub mod netlink;
pub mod tun;
pub mod udp;
