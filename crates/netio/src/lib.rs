//! Linux I/O shell for aovpn: everything in the data plane and the daemons that talks to the
//! kernel. The protocol crates stay sans-IO; this crate owns the syscalls.
//!
//! - [`tun`]: TUN devices (IFF_NO_PI, optional multi-queue and virtio offload) via tun-rs.
//! - [`netlink`]: links, addresses, routes (with a teardown record) and change monitoring.
//! - [`udp`]: IKE/ESP UDP sockets with recvmmsg/GRO and GSO batching via quinn-udp.
//! - [`dns`]: per-interface DNS via systemd-resolved, or a resolv.conf fallback.
//! - [`clock`]: suspend-aware monotonic clock and resume detection.
//! - [`peer`]: the credentials of a Unix socket's peer (uid, groups).
//! - [`fs`]: state and status files replaced whole, never through a planted symlink.
//! - [`privileges`]: a daemon's capabilities cut to what it needs, before any thread starts.
//!
//! Everything that opens a kernel object (TUN fd, netlink or UDP socket) acts in the network
//! namespace of the calling thread and must run inside a tokio runtime.
//!
//! ```no_run
//! # async fn setup() -> Result<(), Box<dyn std::error::Error>> {
//! use netio::netlink::{IfAddress, Netlink, Route};
//! use netio::tun::{self, TunConfig};
//!
//! let nl = Netlink::new()?;
//! let gateway = "203.0.113.1".parse()?;
//! // The path MTU to the gateway; the tunnel's MTU is that less the ESP-in-UDP framing
//! // (`esp::framing::inner_mtu`).
//! let path_mtu = nl.route_to(gateway).await?.mtu.unwrap_or(1500);
//! let dev = tun::create(&TunConfig::new("aovpn0", u16::try_from(path_mtu - 62)?))?;
//! let mut installed = nl.session();
//! installed.add_address(IfAddress::new(dev.index, "172.16.201.5".parse()?, 32)).await?;
//! installed.add_route(Route::via_dev("10.1.0.0".parse()?, 16, dev.index)).await?;
//! // … run the tunnel on dev.queues …
//! installed.teardown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! May depend on: nothing of ours: the only crate that talks to the kernel.
//! Start reading: `udp.rs`, `tun.rs`, `netlink.rs`.

pub mod clock;
pub mod control;
pub mod dns;
pub mod firewall;
pub mod fs;
pub mod netlink;
pub mod peer;
pub mod privileges;
pub mod resolved;
pub mod tun;
pub mod udp;
