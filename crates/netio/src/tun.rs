//! TUN devices: layer 3, no packet-information header (IFF_NO_PI), optional multi-queue (one fd
//! per worker) and optional virtio offload (IFF_VNET_HDR + TSO/USO, so reads can be 64 KiB
//! super-packets that [`TunQueue::recv_batch`] splits, and [`TunQueue::send_batch`] coalesces).
//!
//! The device lives as long as at least one of its queues is open (non-persistent): dropping the
//! last [`TunQueue`] removes the interface and every address/route on it.

use std::io;

use tun_rs::{AsyncDevice, DeviceBuilder, ExpandBuffer, GROTable};

pub use tun_rs::{IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Headroom that buffers passed to [`TunQueue::send_batch`] must reserve in front of each packet
/// (room for the virtio header when offload is on; harmless when off).
pub const TUN_SEND_HEADROOM: usize = VIRTIO_NET_HDR_LEN;

/// Size of the scratch buffer [`TunBatch`] uses for one (possibly offloaded) read.
pub const TUN_MAX_READ: usize = VIRTIO_NET_HDR_LEN + 65_535;

/// How to create a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes, e.g. `aovpn0`).
    pub name: String,
    /// Interface MTU: the largest inner packet (the daemons size it with `esp::framing`).
    pub mtu: u16,
    /// Number of queues (fds); 1 means a single-queue device. More than 1 sets IFF_MULTI_QUEUE.
    pub queues: usize,
    /// Enable IFF_VNET_HDR with TCP/UDP segmentation offload.
    pub offload: bool,
    /// Bring the link up after creation.
    pub up: bool,
}

impl TunConfig {
    /// Single-queue device without offload, brought up.
    pub fn new(name: impl Into<String>, mtu: u16) -> Self {
        Self {
            name: name.into(),
            mtu,
            queues: 1,
            offload: false,
            up: true,
        }
    }
}

/// A created TUN device: its name, index and one [`TunQueue`] per requested queue.
#[derive(Debug)]
pub struct Tun {
    /// Interface name as the kernel reports it.
    pub name: String,
    /// Interface index (for routes and addresses).
    pub index: u32,
    /// The queues; move each into its own worker.
    pub queues: Vec<TunQueue>,
}

/// Creates a TUN device as described by `config`. Must be called inside a tokio runtime (the fds
/// are registered with its reactor).
pub fn create(config: &TunConfig) -> io::Result<Tun> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "tun::create must run inside a tokio runtime",
        ));
    }
    if config.queues == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TUN needs at least one queue",
        ));
    }
    // Opening an existing TUN by name attaches to it: a second tunnel would silently share
    // (and steal packets from) the first one's device. Refuse instead.
    if nix::net::if_::if_nametoindex(config.name.as_str()).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "interface {} already exists (another tunnel uses it?)",
                config.name
            ),
        ));
    }
    let multi_queue = config.queues > 1;
    let first = DeviceBuilder::new()
        .name(config.name.clone())
        .mtu(config.mtu)
        .packet_information(false)
        .offload(config.offload)
        .multi_queue(multi_queue)
        .enable(config.up)
        .build_async()?;
    let name = first.name()?;
    let index = first.if_index()?;
    let mut queues = Vec::with_capacity(config.queues);
    for _ in 1..config.queues {
        let dev = first.try_clone()?;
        queues.push(TunQueue::new(dev));
    }
    queues.insert(0, TunQueue::new(first));
    Ok(Tun {
        name,
        index,
        queues,
    })
}

/// One queue (fd) of a TUN device.
pub struct TunQueue {
    dev: AsyncDevice,
    gro: GROTable,
    offload: bool,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

impl TunQueue {
    fn new(dev: AsyncDevice) -> Self {
        let offload = dev.tcp_gso();
        Self {
            dev,
            gro: GROTable::new(),
            offload,
        }
    }

    /// Whether this queue carries virtio headers (offload on). Then use the batch calls: plain
    /// [`recv`](Self::recv)/[`send`](Self::send) would see/need the 10-byte virtio header.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Whether the kernel also segments/coalesces UDP through this queue (USO, Linux >= 6.2);
    /// TCP offload is on whenever [`offload`](Self::offload) is.
    pub fn udp_offload(&self) -> bool {
        self.dev.udp_gso()
    }

    /// Reads one packet (offload off). Returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf).await
    }

    /// Writes one IP packet (offload off).
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet).await
    }

    /// Reads at least one packet into `batch`, splitting an offloaded super-packet into
    /// MTU-sized IP packets (valid checksums). Returns the number of packets; read them with
    /// [`TunBatch::packet`]. Works with offload off too (then exactly one packet per call).
    pub async fn recv_batch(&self, batch: &mut TunBatch) -> io::Result<usize> {
        batch.count = 0;
        let TunBatch {
            scratch,
            bufs,
            sizes,
            ..
        } = batch;
        let n = self.dev.recv_multiple(scratch, bufs, sizes, 0).await?;
        batch.count = n;
        Ok(n)
    }

    /// Writes IP packets, each stored in `bufs[i][TUN_SEND_HEADROOM..]`. With offload on,
    /// consecutive TCP/UDP segments of one flow are coalesced into fewer writes (the buffers are
    /// modified in place). Returns the number of bytes written to the device.
    pub async fn send_batch<B: ExpandBuffer>(&mut self, bufs: &mut [B]) -> io::Result<usize> {
        if bufs.iter().any(|b| b.as_ref().len() <= TUN_SEND_HEADROOM) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "every buffer needs TUN_SEND_HEADROOM bytes before a non-empty packet",
            ));
        }
        self.dev
            .send_multiple(&mut self.gro, bufs, TUN_SEND_HEADROOM)
            .await
    }
}

/// Reusable receive buffers for [`TunQueue::recv_batch`].
#[derive(Debug)]
pub struct TunBatch {
    scratch: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
}

impl TunBatch {
    /// Room for `max_packets` packets of up to `packet_capacity` bytes each. With offload on,
    /// `max_packets * mtu` should cover a 64 KiB super-packet (e.g. [`IDEAL_BATCH_SIZE`]).
    pub fn new(max_packets: usize, packet_capacity: usize) -> Self {
        let max_packets = max_packets.max(1);
        Self {
            scratch: vec![0; TUN_MAX_READ],
            bufs: vec![vec![0; packet_capacity]; max_packets],
            sizes: vec![0; max_packets],
            count: 0,
        }
    }

    /// Number of packets from the last receive.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last receive produced no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Packet `i` of the last receive, `None` past the end.
    pub fn packet(&self, i: usize) -> Option<&[u8]> {
        if i >= self.count {
            return None;
        }
        let size = *self.sizes.get(i)?;
        self.bufs.get(i)?.get(..size)
    }

    /// Iterates over the packets of the last receive.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).filter_map(|i| self.packet(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_needs_a_runtime_and_a_queue() {
        let err = create(&TunConfig::new("aonotun", 1400)).unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = TunConfig {
            queues: 0,
            ..TunConfig::new("aonotun", 1400)
        };
        let err = rt.block_on(async { create(&cfg).unwrap_err() });
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn empty_batch_has_no_packets() {
        let batch = TunBatch::new(0, 1500);
        assert!(batch.is_empty());
        assert_eq!(batch.packet(0), None);
        assert_eq!(batch.packets().count(), 0);
    }
}
