//! `aovpn lab down`: stops the lab's processes and removes its namespaces and files.

use std::fs;
use std::path::PathBuf;

use anyhow::Result;
use labnet::netns::Netns;

use crate::processes::terminate;
use crate::{PROCESSES, ns_name, state};

pub(crate) fn down() -> Result<()> {
    // Clients first, so that they can say goodbye (IKE Delete) to a gateway that still runs.
    for name in PROCESSES {
        terminate(name);
    }
    for role in ["cl", "in", "gw", "vn"] {
        if let Ok(ns) = Netns::attach(ns_name(role)) {
            drop(ns); // stops anything left inside and deletes the namespace
        }
    }
    let hosts_dir = PathBuf::from("/etc/netns").join(ns_name("cl"));
    if hosts_dir.exists() {
        fs::remove_dir_all(&hosts_dir)?;
    }
    if state().exists() {
        fs::remove_dir_all(state())?;
    }
    Ok(())
}
