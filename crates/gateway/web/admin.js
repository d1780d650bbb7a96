// The admin page: GET /api/state every 5 s; a confirmed disconnect POSTs /api/disconnect.
"use strict";

function text(value) {
  return document.createTextNode(value === undefined || value === null ? "" : String(value));
}

function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement("td");
    td.appendChild(c instanceof Node ? c : text(c));
    tr.appendChild(td);
  }
  return tr;
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function ago(now, t) {
  const s = Math.max(0, now - t);
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
}

async function disconnect(identity) {
  if (!window.confirm("Disconnect " + identity + "? Its address stays its own.")) return;
  const r = await fetch("/api/disconnect", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ target: identity }),
  });
  const answer = await r.json();
  document.getElementById("updated").textContent = answer.ok ? answer.message : "refused: " + answer.error;
  refresh();
}

function chart(samples) {
  const svg = document.getElementById("chart");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = Math.max(1, samples[i].at - samples[i - 1].at);
    rates.push({
      at: samples[i].at,
      in: Math.max(0, samples[i].bytes_in - samples[i - 1].bytes_in) * 8 / dt,
      out: Math.max(0, samples[i].bytes_out - samples[i - 1].bytes_out) * 8 / dt,
    });
  }
  const peak = Math.max(1, ...rates.map((r) => Math.max(r.in, r.out)));
  document.getElementById("peak").textContent = "peak " + (peak / 1e6).toFixed(2) + " Mbit/s";
  const end = samples.length ? samples[samples.length - 1].at : 0;
  for (const dir of ["in", "out"]) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("class", dir);
    line.setAttribute("points", rates.map((r) => {
      const x = 720 - (end - r.at) / 5;
      const y = 155 - (r[dir] / peak) * 150;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    svg.appendChild(line);
  }
}

async function refresh() {
  const r = await fetch("/api/state");
  if (r.status === 401) { window.location = "/login"; return; }
  const s = await r.json();
  const sessions = document.querySelector("#sessions tbody");
  sessions.replaceChildren(...s.sessions.map((x) => {
    const b = document.createElement("button");
    b.className = "disconnect";
    b.textContent = "Disconnect";
    b.addEventListener("click", () => disconnect(x.identity));
    const tr = row([x.identity, x.group, (x.virtual_ips || []).join(", "), x.remote,
      ago(s.now, x.connected_since), x.auth, bytes(x.traffic.bytes_in), bytes(x.traffic.bytes_out), b], "session");
    tr.dataset.identity = x.identity;
    return tr;
  }));
  document.querySelector("#pools tbody").replaceChildren(...s.pools.map((p) =>
    row([p.group, p.leased, p.size, (100 * p.leased / Math.max(1, p.size)).toFixed(1) + " %"], "pool")));
  document.querySelector("#failures tbody").replaceChildren(...s.failures.map((f) =>
    row([ago(s.now, f.at), f.from, f.claims, f.reason, f.what_to_do], "failure")));
  chart(s.throughput);
  document.getElementById("updated").textContent =
    s.sessions.length + " session(s); updated " + new Date(s.now * 1000).toLocaleTimeString();
}

refresh();
setInterval(refresh, 5000);
