//! `aovpn bench memory`: the responder's resident memory per connected idle client. A fresh
//! responder (ours, then strongSwan's charon, each in a lab of its own) is warmed up with one
//! handshake, its VmRSS read, then N clients with distinct certificates establish IKE and
//! Child SAs from the in-process initiator, a quarter of them at a time, and stay idle while
//! VmRSS is read again after each quarter.

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
use super::initiator::{distinct_clients, hold_many, initiator_config, one_handshake};
use super::report::{Table, num, ratio};
use super::results::{Figures, Memory, MemoryPoint, MemorySeries, Section};

/// Handshakes in flight while the clients connect.
const PARALLEL: usize = 8;
/// Largest N: the /24 client pool has 254 addresses; one is kept for the warm-up.
pub const MAX_CLIENTS: usize = 250;

/// A quarter of `n` at a time: the counts at which RSS is read.
pub fn checkpoints(n: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (1..=4).map(|q| (n * q).div_ceil(4)).collect();
    c.dedup();
    c
}

fn hold(
    responder: &str,
    topo: &Topology,
    pid: u32,
    configs: &[Arc<InitiatorConfig>],
    warmup: &Arc<InitiatorConfig>,
    count_sas: impl Fn() -> Option<usize> + Send,
) -> Result<MemorySeries> {
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
    let stages = checkpoints(configs.len());
    let configs = configs.to_vec();
    let held = in_client(topo, move || {
        Box::pin(async move {
            hold_many(
                &configs,
                &sources,
                server,
                PARALLEL,
                &stages,
                None,
                async |up, _last| point(pid, up, &count_sas).await,
            )
            .await
        })
    })?;
    Ok(MemorySeries {
        responder: responder.to_owned(),
        rss_before: before,
        points: held.readings.into_iter().collect::<Result<_>>()?,
    })
}

/// The responder's RSS with `up` clients held, once it has settled (status writes, lazily
/// freed buffers).
pub async fn point(
    pid: u32,
    up: usize,
    count_sas: &(impl Fn() -> Option<usize> + Send),
) -> Result<MemoryPoint> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    // RSS first: asking our gateway for its sessions makes it build the list.
    let rss = vm_rss_bytes(pid)?;
    Ok(MemoryPoint {
        clients: up,
        seen_by_responder: count_sas(),
        rss,
    })
}

/// Runs the benchmark and returns the report section.
pub fn run(clients: usize) -> Result<Section> {
    if clients == 0 || clients > MAX_CLIENTS {
        bail!("--clients must be 1..={MAX_CLIENTS} (the client pool is a /24)");
    }
    let suite = IKE_SUITES[0];
    let scratch = Scratch::new("mem")?;
    let pki = BenchPki::issue(&scratch.path().join("pki"))?;
    let trust = pki.trust()?;
    eprintln!("bench memory: issuing {clients} client certificates");
    let configs = distinct_clients(&pki, &trust, "mem", clients, suite)?;
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
        let held = hold(
            "aovpn gateway",
            &topo,
            gw.pid(),
            &configs,
            &warmup,
            move || {
                status
                    .as_deref()
                    .and_then(read_status)
                    .and_then(|v| v.get("clients").and_then(|c| c.as_array()).map(Vec::len))
            },
        )?;
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
        let held = hold(
            "strongSwan charon",
            &topo,
            charon.pid(),
            &configs,
            &warmup,
            move || charon_ref.list_sas().ok().map(|s| s.len()),
        )?;
        drop(charon);
        drop(topo);
        held
    };

    let figures = Memory {
        suite: suite.to_owned(),
        responders: vec![ours, swan],
    };
    Ok(Section {
        text: render(&figures),
        figures: Figures::Memory(figures),
    })
}

/// The text section: RSS at each checkpoint, bytes per client at the last.
fn render(figures: &Memory) -> String {
    let mut out = String::new();
    let clients = figures
        .responders
        .iter()
        .flat_map(|r| r.points.last())
        .map(|p| p.clients)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "== memory: responder VmRSS before/after up to {clients} idle clients, read after each quarter (distinct ECDSA P-256 certificates, {}, ESP aes256gcm16)",
        figures.suite
    );
    let mut t = Table::new(&[
        "responder",
        "clients up",
        "responder saw",
        "RSS before KiB",
        "after KiB",
        "bytes/client",
    ]);
    for r in &figures.responders {
        for p in &r.points {
            t.row(vec![
                r.responder.clone(),
                p.clients.to_string(),
                p.seen_by_responder
                    .map_or("?".to_owned(), |n| n.to_string()),
                (r.rss_before / 1024).to_string(),
                (p.rss / 1024).to_string(),
                num(r.per_client(p), 0),
            ]);
        }
    }
    out.push_str(&t.render());
    let last = |r: &MemorySeries| r.points.last().and_then(|p| r.per_client(p));
    if let [ours, swan] = figures.responders.as_slice() {
        let _ = writeln!(
            out,
            "   ratio aovpn/strongSwan bytes per client (all up): {}",
            ratio(last(ours), last(swan))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::checkpoints;

    #[test]
    fn quarters_end_at_n_without_repeats() {
        assert_eq!(checkpoints(200), vec![50, 100, 150, 200]);
        assert_eq!(checkpoints(10), vec![3, 5, 8, 10]);
        assert_eq!(checkpoints(2), vec![1, 2]);
        assert_eq!(checkpoints(1), vec![1]);
    }
}
