//! `aovpn bench memory`: the responder's resident memory per connected idle client. A fresh
//! responder (ours, then strongSwan's charon, each in a lab of its own) is warmed up with one
//! handshake, its VmRSS read, then N clients with distinct certificates establish IKE and
//! Child SAs from the in-process initiator and stay idle while VmRSS is read again.

use std::fmt::Write as _;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ikev2::InitiatorConfig;
use labnet::netns::Topology;

use super::common::{
    BenchPki, IKE_SUITES, Limits, Scratch, add_client_sources, ike_server, read_status,
    start_charon_gateway, start_our_gateway, vm_rss_bytes,
};
use super::ike::in_client;
use super::initiator::{hold_many, initiator_config, one_handshake};
use super::report::{Table, num, ratio};

/// Handshakes in flight while the clients connect.
const PARALLEL: usize = 8;
/// Largest N: the /24 client pool has 254 addresses; one is kept for the warm-up.
pub const MAX_CLIENTS: usize = 250;

struct Held {
    before: u64,
    after: u64,
    up: usize,
    seen_by_responder: Option<usize>,
}

impl Held {
    fn per_client(&self) -> Option<f64> {
        (self.up > 0).then(|| (self.after as f64 - self.before as f64) / self.up as f64)
    }
}

fn hold(
    topo: &Topology,
    pid: u32,
    configs: &[Arc<InitiatorConfig>],
    warmup: &Arc<InitiatorConfig>,
    count_sas: impl FnOnce() -> Option<usize> + Send,
) -> Result<Held> {
    let sources = add_client_sources(topo, PARALLEL)?;
    let server = ike_server(topo);
    let cfg = warmup.clone();
    let src = sources[0];
    in_client(topo, move || {
        Box::pin(async move { one_handshake(&cfg, src, server).await })
    })
    .context("warm-up handshake")?;
    thread::sleep(Duration::from_secs(1));
    let before = vm_rss_bytes(pid)?;
    let configs = configs.to_vec();
    let (reading, up) = in_client(topo, move || {
        Box::pin(async move {
            hold_many(&configs, &sources, server, PARALLEL, |_up| {
                // Let the responder settle (status writes, lazily freed buffers) first.
                thread::sleep(Duration::from_secs(2));
                (vm_rss_bytes(pid), count_sas())
            })
            .await
        })
    })?;
    let (after, seen) = reading;
    Ok(Held {
        before,
        after: after?,
        up,
        seen_by_responder: seen,
    })
}

/// Runs the benchmark and returns the report section.
pub fn run(clients: usize) -> Result<String> {
    if clients == 0 || clients > MAX_CLIENTS {
        bail!("--clients must be 1..={MAX_CLIENTS} (the client pool is a /24)");
    }
    let suite = IKE_SUITES[0];
    let scratch = Scratch::new("mem")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    let trust = pki.trust()?;
    eprintln!("bench memory: issuing {clients} client certificates");
    let mut configs = Vec::with_capacity(clients);
    for i in 0..clients {
        let name = format!("mem-{i}.bench.example");
        configs.push(initiator_config(
            &pki.client(&name)?,
            &name,
            trust.clone(),
            suite,
        )?);
    }
    let warm_name = "mem-warmup.bench.example";
    let warmup = initiator_config(&pki.client(warm_name)?, warm_name, trust, suite)?;

    eprintln!("bench memory: {clients} idle clients on aovpn gateway");
    let ours = {
        let topo = Topology::builder("aobmo").routed(false).build()?;
        let (gw, status) = start_our_gateway(
            &topo,
            &scratch.path().join("aovpn"),
            &pki,
            &[suite],
            true,
            Limits::OutOfTheWay,
        )?;
        let held = hold(&topo, gw.pid(), &configs, &warmup, move || {
            status
                .as_deref()
                .and_then(read_status)
                .and_then(|v| v.get("clients").and_then(|c| c.as_array()).map(Vec::len))
        })?;
        drop(gw);
        drop(topo);
        held
    };
    eprintln!("bench memory: {clients} idle clients on strongSwan charon");
    let swan = {
        let topo = Topology::builder("aobms").routed(false).build()?;
        let charon = start_charon_gateway(
            &topo,
            &scratch.path().join("charon"),
            &pki,
            &[suite],
            Limits::OutOfTheWay,
        )?;
        let charon_ref = &charon;
        let held = hold(&topo, charon.pid(), &configs, &warmup, move || {
            charon_ref.list_sas().ok().map(|s| s.len())
        })?;
        drop(charon);
        drop(topo);
        held
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "== memory: responder VmRSS before/after {clients} idle clients (distinct ECDSA P-256 certificates, {suite}, ESP aes256gcm16)"
    );
    let mut t = Table::new(&[
        "responder",
        "clients up",
        "responder saw",
        "RSS before KiB",
        "after KiB",
        "bytes/client",
    ]);
    for (label, h) in [("aovpn gateway", &ours), ("strongSwan charon", &swan)] {
        t.row(vec![
            label.to_owned(),
            h.up.to_string(),
            h.seen_by_responder
                .map_or("?".to_owned(), |n| n.to_string()),
            (h.before / 1024).to_string(),
            (h.after / 1024).to_string(),
            num(h.per_client(), 0),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "   ratio aovpn/strongSwan bytes per client: {}",
        ratio(ours.per_client(), swan.per_client())
    );
    Ok(out)
}
