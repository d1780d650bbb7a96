//! PNG charts of a bench run, drawn from its [`Figures`] with plotters: throughput by path and
//! direction, IKE setups per second by suite (one panel per certificate type and concurrency),
//! responder memory per client by client count. The flood bench has no chart (its table is a
//! handful of rows).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::median;
use super::results::{Figures, Ike, MemorySeries, Throughput};

/// The one font the charts use (Debian's fonts-dejavu-core); read at run time rather than
/// compiled in, so that the binary does not carry 700 KB of font for an optional report.
pub const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";

const AOVPN: RGBColor = RGBColor(31, 119, 180);
const STRONGSWAN: RGBColor = RGBColor(255, 127, 14);
const PLAIN: RGBColor = RGBColor(127, 127, 127);
const OTHERS: [RGBColor; 3] = [
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn registered_font() -> Result<()> {
    static FONT_LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT_LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_FILE).map_err(|e| {
                format!("chart font {FONT_FILE}: {e} (Debian package fonts-dejavu-core)")
            })?;
            // plotters keeps fonts for the process's life; this happens once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("chart font {FONT_FILE}: not a TrueType font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

/// Draws the chart of `figures` as `<dir>/<name>.png`; `None` when the part has no chart or
/// nothing to draw.
pub fn draw(figures: &Figures, dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let path = dir.join(format!("{name}.png"));
    let drawn = match figures {
        Figures::Throughput(t) => throughput(t, &path)?,
        Figures::Ike(i) => ike(i, &path)?,
        Figures::Memory(m) => memory(
            &format!("Responder memory per idle client ({})", m.suite),
            &m.responders,
            &path,
        )?,
        Figures::Scale(s) => {
            let series: Vec<MemorySeries> = s.responders.iter().map(|r| r.memory.clone()).collect();
            memory(
                &format!("Responder memory per tunnel, up to {} tunnels", s.tunnels),
                &series,
                &path,
            )?
        }
        Figures::Flood(_) => false,
    };
    Ok(drawn.then_some(path))
}

fn path_color(path: &str, other: &mut usize) -> RGBColor {
    if path.starts_with("aovpn") {
        AOVPN
    } else if path.starts_with("strongSwan") {
        STRONGSWAN
    } else if path.starts_with("plain") {
        PLAIN
    } else {
        let c = OTHERS[*other % OTHERS.len()];
        *other += 1;
        c
    }
}

/// A series of bars, one value per group.
struct Bars {
    label: String,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

/// A grouped bar chart on `area`: one group per `groups` entry, one bar per series in each,
/// the value printed above each bar, a legend in the upper right.
fn grouped_bars(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Bars],
) -> Result<()> {
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0f64, f64::max);
    // Headroom above the tallest bar for its value and the legend.
    let y_max = if top > 0.0 { top * 1.45 } else { 1.0 };
    // Group i is centred on x = i, so that asking for as many x labels as groups puts one
    // label (a whole number) under each group.
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..y_max)
        .map_err(plot_error)?;
    let group_name = |x: &f64| {
        groups
            .get(x.round().max(0.0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&group_name)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(y_desc)
        .label_style((FONT, 12))
        .draw()
        .map_err(plot_error)?;
    let width = 0.8 / series.len().max(1) as f64;
    let value_style =
        TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (k, s) in series.iter().enumerate() {
        let color = s.color;
        let bars: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(g, v)| v.map(|v| (g as f64 - 0.4 + k as f64 * width, v)))
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x, v)| {
                    Rectangle::new([(x, 0.0), (x + width * 0.92, v)], color.filled())
                }),
            )
            .map_err(plot_error)?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                let text = if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                };
                Text::new(text, (x + width * 0.46, v), value_style.clone())
            }))
            .map_err(plot_error)?;
    }
    legend(&mut chart)?;
    Ok(())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The series' legend in the upper right, on a light box.
fn legend<'a>(chart: &mut Chart<'a, 'a>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// Throughput by load and direction (groups) and path (bars), medians: TCP Mbit/s above, and
/// below, when measured, UDP packets per second.
fn throughput(t: &Throughput, file: &Path) -> Result<bool> {
    if t.paths.is_empty() {
        return Ok(false);
    }
    registered_font()?;
    let udp_sizes: Vec<u32> = t
        .paths
        .iter()
        .flat_map(|p| p.udp.iter().map(|u| u.packet_bytes))
        .fold(Vec::new(), |mut sizes, s| {
            if !sizes.contains(&s) {
                sizes.push(s);
            }
            sizes
        });
    let height = if udp_sizes.is_empty() { 540 } else { 1080 };
    let root = BitMapBackend::new(file, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (tcp_area, udp_area) = root.split_vertically(540);
    let mut other = 0;
    let colors: Vec<_> = t
        .paths
        .iter()
        .map(|p| path_color(&p.path, &mut other))
        .collect();
    let with_streams = t.paths.iter().any(|p| !p.streams_up.mbit.is_empty());
    let tcp: Vec<Bars> = t
        .paths
        .iter()
        .zip(&colors)
        .map(|(p, color)| {
            let mut values = vec![median(&p.up.mbit), median(&p.down.mbit)];
            if with_streams {
                values.extend([median(&p.streams_up.mbit), median(&p.streams_down.mbit)]);
            }
            Bars {
                label: p.path.clone(),
                color: *color,
                values,
            }
        })
        .collect();
    let mut groups = vec![
        "up (client to host behind gateway)".to_owned(),
        "down (-R)".to_owned(),
    ];
    if with_streams {
        groups.push(format!("up, {} streams", t.streams));
        groups.push(format!("down, {} streams", t.streams));
    }
    grouped_bars(
        &tcp_area,
        &format!(
            "TCP through each path, iperf3, median of {} runs of {} s",
            t.runs, t.secs
        ),
        "Mbit/s",
        &groups,
        &tcp,
    )?;
    if !udp_sizes.is_empty() {
        let udp: Vec<Bars> = t
            .paths
            .iter()
            .zip(&colors)
            .map(|(p, color)| Bars {
                label: p.path.clone(),
                color: *color,
                values: udp_sizes
                    .iter()
                    .flat_map(|size| {
                        let u = p.udp.iter().find(|u| u.packet_bytes == *size);
                        [
                            u.and_then(|u| median(&u.up.kpps)),
                            u.and_then(|u| median(&u.down.kpps)),
                        ]
                    })
                    .collect(),
            })
            .collect();
        let groups: Vec<String> = udp_sizes
            .iter()
            .flat_map(|size| [format!("{size} B up"), format!("{size} B down")])
            .collect();
        grouped_bars(
            &udp_area,
            "UDP as fast as iperf3 sends: packets delivered per second, by IP packet size",
            "thousand packets/s",
            &groups,
            &udp,
        )?;
    }
    root.present().map_err(plot_error)?;
    Ok(true)
}

/// Short name of an IKE suite: its group (`aes256gcm16-prfsha256-ecp256` -> `ecp256`).
fn group_of(suite: &str) -> String {
    suite.rsplit('-').next().unwrap_or(suite).to_owned()
}

/// Setups per second by suite, aovpn against strongSwan; a panel per certificate type (rows)
/// and concurrency (columns).
fn ike(i: &Ike, file: &Path) -> Result<bool> {
    let mut certificates: Vec<&str> = Vec::new();
    let mut concurrencies: Vec<usize> = Vec::new();
    let mut suites: Vec<&str> = Vec::new();
    for c in &i.cells {
        if !certificates.contains(&c.certificates.as_str()) {
            certificates.push(&c.certificates);
        }
        if !concurrencies.contains(&c.concurrency) {
            concurrencies.push(c.concurrency);
        }
        if !suites.contains(&c.suite.as_str()) {
            suites.push(&c.suite);
        }
    }
    if i.cells.is_empty() {
        return Ok(false);
    }
    registered_font()?;
    let (rows, cols) = (certificates.len(), concurrencies.len());
    let root =
        BitMapBackend::new(file, (460 * cols as u32, 340 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root
        .titled(
            &format!(
                "IKE establish+delete per second by group, median of {} runs of {} s",
                i.repeats, i.secs
            ),
            (FONT, 20),
        )
        .map_err(plot_error)?;
    let panels = root.split_evenly((rows, cols));
    let groups: Vec<String> = suites.iter().map(|s| group_of(s)).collect();
    for (r, cert) in certificates.iter().enumerate() {
        for (k, &c) in concurrencies.iter().enumerate() {
            let cell = |suite: &str| {
                i.cells
                    .iter()
                    .find(|x| x.certificates == *cert && x.concurrency == c && x.suite == suite)
            };
            let series = [
                Bars {
                    label: "aovpn".to_owned(),
                    color: AOVPN,
                    values: suites
                        .iter()
                        .map(|s| cell(s).and_then(|x| x.aovpn.rate()))
                        .collect(),
                },
                Bars {
                    label: "strongSwan".to_owned(),
                    color: STRONGSWAN,
                    values: suites
                        .iter()
                        .map(|s| cell(s).and_then(|x| x.strongswan.rate()))
                        .collect(),
                },
            ];
            let Some(panel) = panels.get(r * cols + k) else {
                bail!("chart panel {r},{k} missing");
            };
            grouped_bars(
                panel,
                &format!("{cert}, {c} in flight"),
                "setups/s",
                &groups,
                &series,
            )?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(true)
}

/// Responder RSS per idle client (KiB) against the number of clients up.
fn memory(caption: &str, responders: &[MemorySeries], file: &Path) -> Result<bool> {
    let lines: Vec<(&str, Vec<(f64, f64)>)> = responders
        .iter()
        .map(|r| {
            let points = r
                .points
                .iter()
                .filter_map(|p| r.per_client(p).map(|b| (p.clients as f64, b / 1024.0)))
                .collect();
            (r.responder.as_str(), points)
        })
        .collect();
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let (x_max, y_max) = all.fold((0.0f64, 0.0f64), |(x, y), &(px, py)| (x.max(px), y.max(py)));
    if x_max <= 0.0 {
        return Ok(false);
    }
    registered_font()?;
    let root = BitMapBackend::new(file, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max * 1.05, 0f64..(y_max * 1.25).max(1.0))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("clients up")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("KiB RSS per client")
        .label_style((FONT, 12))
        .draw()
        .map_err(plot_error)?;
    let mut other = 0;
    for (name, points) in &lines {
        let color = path_color(name, &mut other);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(plot_error)?;
    }
    legend(&mut chart)?;
    root.present().map_err(plot_error)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{
        DirectionRuns, HandshakeRuns, IkeCell, LatencyRuns, Memory, MemoryPoint, MemorySeries,
        PathFigures, UdpFigures, UdpRuns,
    };

    /// Width and height from a PNG's IHDR, or None when `bytes` is not a PNG.
    fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
        if bytes.get(..8)? != SIGNATURE || bytes.get(12..16)? != b"IHDR" {
            return None;
        }
        let be = |r: std::ops::Range<usize>| {
            bytes
                .get(r)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
        };
        Some((be(16..20)?, be(20..24)?))
    }

    fn runs(rates: &[f64]) -> HandshakeRuns {
        HandshakeRuns {
            rates: rates.to_vec(),
            ..HandshakeRuns::default()
        }
    }

    fn path(name: &str, up: f64, down: f64) -> PathFigures {
        PathFigures {
            path: name.to_owned(),
            negotiated: String::new(),
            up: DirectionRuns {
                mbit: vec![up],
                cpu_s_per_gb: vec![],
            },
            down: DirectionRuns {
                mbit: vec![down],
                cpu_s_per_gb: vec![],
            },
            streams_up: DirectionRuns {
                mbit: vec![up * 1.5],
                cpu_s_per_gb: vec![],
            },
            streams_down: DirectionRuns {
                mbit: vec![down * 1.5],
                cpu_s_per_gb: vec![],
            },
            udp: [1400, 200]
                .into_iter()
                .map(|packet_bytes| UdpFigures {
                    packet_bytes,
                    up: UdpRuns {
                        kpps: vec![up / 10.0],
                        loss_percent: vec![5.0],
                    },
                    down: UdpRuns {
                        kpps: vec![down / 10.0],
                        loss_percent: vec![5.0],
                    },
                })
                .collect(),
            latency: LatencyRuns::default(),
        }
    }

    #[test]
    fn each_part_with_figures_gets_a_png_of_its_size() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let throughput = Figures::Throughput(Throughput {
            secs: 10,
            runs: 3,
            streams: 4,
            paths: vec![
                path("plain routed (no tunnel)", 9000.0, 9500.0),
                path("strongSwan 5.9 libipsec", 250.0, 300.0),
                path("aovpn", 2000.0, 1600.0),
                path("wireguard-go (userspace)", 280.0, 250.0),
            ],
            skipped: vec![],
        });
        let cells = ["RSA-2048", "ECDSA P-256"]
            .iter()
            .flat_map(|cert| {
                [1usize, 8, 64].into_iter().flat_map(move |c| {
                    [
                        "aes256gcm16-prfsha256-ecp256",
                        "aes256gcm16-prfsha256-x25519",
                    ]
                    .into_iter()
                    .map(move |suite| IkeCell {
                        certificates: (*cert).to_owned(),
                        suite: suite.to_owned(),
                        concurrency: c,
                        aovpn: runs(&[400.0, 420.0, 410.0]),
                        aovpn_tmpfs: runs(&[430.0]),
                        strongswan: runs(&[150.0]),
                    })
                })
            })
            .collect();
        let ike = Figures::Ike(Ike {
            secs: 3,
            repeats: 3,
            state_dir_fs: "tmpfs".to_owned(),
            cells,
        });
        let series = |name: &str, per_client: u64| MemorySeries {
            responder: name.to_owned(),
            rss_before: 10 << 20,
            points: [50usize, 100, 150, 200]
                .iter()
                .map(|&n| MemoryPoint {
                    clients: n,
                    seen_by_responder: Some(n),
                    rss: (10 << 20) + n as u64 * per_client,
                })
                .collect(),
        };
        let memory = Figures::Memory(Memory {
            suite: "aes256gcm16-prfsha384-ecp384".to_owned(),
            responders: vec![
                series("aovpn gateway", 12_000),
                series("strongSwan charon", 30_000),
            ],
        });
        for (figures, name, size) in [
            (throughput, "throughput", (960, 1080)),
            (ike, "ike", (460 * 3, 340 * 2 + 40)),
            (memory, "memory", (960, 540)),
        ] {
            let file = draw(&figures, dir.path(), name)?
                .ok_or_else(|| anyhow!("{name}: no chart drawn"))?;
            assert_eq!(file, dir.path().join(format!("{name}.png")));
            let bytes = std::fs::read(&file)?;
            assert_eq!(png_size(&bytes), Some(size), "{name}.png");
            // Bars, lines and text make a picture far from blank: a white PNG of this size
            // compresses to well under 10 KB.
            assert!(
                bytes.len() > 10_000,
                "{name}.png is only {} bytes",
                bytes.len()
            );
        }
        Ok(())
    }

    #[test]
    fn flood_and_empty_parts_have_no_chart() -> Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(draw(&Figures::Flood(vec![]), dir.path(), "flood")?, None);
        let empty = Figures::Memory(Memory {
            suite: String::new(),
            responders: vec![],
        });
        assert_eq!(draw(&empty, dir.path(), "memory")?, None);
        assert!(std::fs::read_dir(dir.path())?.next().is_none());
        Ok(())
    }

    #[test]
    fn suites_are_named_by_their_group() {
        assert_eq!(group_of("aes256gcm16-prfsha256-modp2048"), "modp2048");
        assert_eq!(group_of("x25519"), "x25519");
    }
}
