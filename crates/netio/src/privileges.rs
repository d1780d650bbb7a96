//! Least privilege for the daemons. Capabilities are per thread on Linux and inherited by the
//! threads a thread creates, so the cut is made on the main thread before the runtime starts
//! its workers: from then on no thread of the process holds more than what is kept, nothing
//! can be regained through execve (bounding set, no_new_privs), and nothing is passed on
//! (inheritable and ambient sets empty).

use std::io;

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// What the process holds after [`limit_capabilities`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub effective: Vec<Capability>,
    /// Whether the bounding set could be cut too (it takes CAP_SETPCAP, which a process
    /// started with ambient capabilities only does not have; its bounding set then stays
    /// what the service manager set).
    pub bounding_cut: bool,
}

fn err(e: caps::errors::CapsError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Keeps only `keep` (those of them the process has) in the effective and permitted sets of
/// the calling thread, empties its inheritable and ambient sets, cuts the bounding set to
/// `keep` when allowed, and sets no_new_privs. Call before spawning any thread.
pub fn limit_capabilities(keep: &[Capability]) -> io::Result<Held> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    let effective = caps::read(None, CapSet::Effective).map_err(err)?;
    let bounding_cut = effective.contains(&Capability::CAP_SETPCAP);
    if bounding_cut {
        for cap in caps::read(None, CapSet::Bounding).map_err(err)? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    let held: CapsHashSet = caps::read(None, CapSet::Permitted)
        .map_err(err)?
        .intersection(&keep)
        .copied()
        .collect();
    caps::set(None, CapSet::Effective, &held).map_err(err)?;
    caps::set(None, CapSet::Permitted, &held).map_err(err)?;
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
    let mut effective: Vec<Capability> = held.into_iter().collect();
    effective.sort_by_key(|c| c.index());
    Ok(Held {
        effective,
        bounding_cut,
    })
}

/// The capability names, for logs (`CAP_NET_ADMIN,CAP_NET_BIND_SERVICE`).
pub fn names(list: &[Capability]) -> String {
    list.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether this process holds `cap` in its effective set now.
pub fn effective_has(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Run on a thread of its own (capabilities are per thread): after the cut the thread and
    /// a thread it starts hold exactly what was kept, and cannot raise anything else.
    #[test]
    fn a_thread_keeps_only_what_it_asked_for() {
        let root = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
        std::thread::spawn(move || {
            let held = limit_capabilities(&[Capability::CAP_NET_ADMIN]).unwrap();
            if root {
                assert_eq!(held.effective, [Capability::CAP_NET_ADMIN]);
                assert!(held.bounding_cut);
            }
            let child = std::thread::spawn(|| {
                (
                    caps::read(None, CapSet::Effective).unwrap(),
                    caps::read(None, CapSet::Bounding).unwrap(),
                    caps::raise(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).is_err(),
                )
            })
            .join()
            .unwrap();
            assert!(
                child.0.iter().all(|c| *c == Capability::CAP_NET_ADMIN),
                "{:?}",
                child.0
            );
            if root {
                assert_eq!(child.1.len(), 1, "{:?}", child.1);
            }
            assert!(child.2, "CAP_SYS_ADMIN could be raised again");
            let status = std::fs::read_to_string(format!(
                "/proc/self/task/{}/status",
                nix::unistd::gettid()
            ))
            .unwrap();
            assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        })
        .join()
        .unwrap();
    }
}
