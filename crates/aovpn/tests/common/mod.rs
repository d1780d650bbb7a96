//! What the `aovpn` binary's namespace tests share: the binary, and the routed lab (client --
//! internet router, optionally with NAT -- gateway -- vnet) with a PKI from `aovpn pki` and the
//! client's hosts entry for the gateway's name. Each test file adds its own methods.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use testkit::aovpn::{HostsFile, Pki, PkiOptions};
use testkit::netns::Topology;

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_aovpn"))
}

/// A routed topology, a PKI, the client's hosts file and a scratch directory; all removed on
/// drop (hosts file, then namespaces, then files).
pub struct Lab {
    pub _hosts: HostsFile,
    pub topo: Topology,
    pub pki: Pki,
    pub tmp: tempfile::TempDir,
}

impl Lab {
    /// The routed lab (`nat`: masquerade in the router), a PKI made with `pki`, and the client
    /// resolving `gateway_name` to the gateway.
    pub fn routed(prefix: &str, pki: PkiOptions, nat: bool, gateway_name: &str) -> Lab {
        testkit::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let topo = Topology::routed(prefix, nat).unwrap();
        let hosts =
            HostsFile::write(&topo.client, &[(topo.gateway_wan().into(), gateway_name)]).unwrap();
        let pki = Pki::issue(bin(), &tmp.path().join("pki"), &pki).unwrap();
        Lab {
            _hosts: hosts,
            topo,
            pki,
            tmp,
        }
    }

    /// A path in the scratch directory.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Prints a figure a test measured where CI shows it: straight to stderr, past the test
/// harness's output capture (which hides `eprintln!` of passing tests).
pub fn report(figure: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "FIGURE: {figure}");
}
