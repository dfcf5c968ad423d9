// flopcast planner page: builds a scenario from the form (or takes pasted YAML), calls the JSON API
// (POST /api/plan, /api/search, /api/infer), and shows the answer as a briefing: verdict first, then
// charts (inline SVG drawn here, no library, no CDN) and tables, assumptions one click away.
// The JSON stays in SI base units; numbers are formatted for people only here.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};

// ---------- numbers for people ----------
const GiB = 2 ** 30;
function fmtBytes(n) {
  for (const [u, f] of [["TiB", 2 ** 40], ["GiB", GiB], ["MiB", 2 ** 20], ["KiB", 1024]]) {
    if (Math.abs(n) >= f) return `${+(n / f).toPrecision(3)} ${u}`;
  }
  return `${Math.round(n)} B`;
}
function fmtSI(x, unit) {
  for (const [p, f] of [["E", 1e18], ["P", 1e15], ["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]]) {
    if (Math.abs(+x.toPrecision(3)) >= f) return `${+(x / f).toPrecision(3)} ${p}${unit}`;
  }
  return `${+x.toPrecision(3)} ${unit}`;
}
function fmtDuration(s) {
  if (s == null) return "n/a";
  if (s >= 2 * 86400) return `${(s / 86400).toLocaleString("en-US", {maximumFractionDigits: 1})} days`;
  if (s >= 2 * 3600) return `${(s / 3600).toFixed(1)} h`;
  if (s >= 120) return `${Math.round(s / 60)} min`;
  if (s >= 1) return `${+s.toPrecision(3)} s`;
  return `${+(s * 1e3).toPrecision(3)} ms`;
}
function fmtMoney(usd) {
  if (usd == null) return "n/a";
  for (const [p, f] of [["B", 1e9], ["M", 1e6], ["k", 1e3]]) if (Math.abs(usd) >= f) return `$${+(usd / f).toPrecision(3)}${p}`;
  return Math.abs(usd) < 1 ? `$${+usd.toPrecision(3)}` : `$${usd.toFixed(2)}`;
}
const fmtInt = (x) => Math.round(x).toLocaleString("en-US");
const fmtPct = (x) => `${(100 * x).toFixed(1)}%`;
function fmtMass(kg) {
  if (kg >= 1e4) return `${fmtInt(kg / 1e3)} t`;
  if (kg >= 1e3) return `${(kg / 1e3).toFixed(1)} t`;
  return `${kg.toFixed(2)} kg`;
}

// ---------- the form and the shareable URL ----------
const form = $("#scenario-form");

function formState() {
  const state = {};
  for (const e of form.elements) {
    if (!e.name) continue;
    if (e.type === "radio") { if (e.checked) state[e.name] = e.value; }
    else if (e.type === "checkbox") state[e.name] = e.checked;
    else state[e.name] = e.value;
  }
  return state;
}

function setFormState(state) {
  for (const e of form.elements) {
    if (!e.name || !(e.name in state)) continue;
    if (e.type === "radio") e.checked = state[e.name] === e.value;
    else if (e.type === "checkbox") e.checked = !!state[e.name];
    else {
      if (e.tagName === "SELECT" && ![...e.options].some((o) => o.value === state[e.name])) {
        e.append(el("option", {value: state[e.name]}, state[e.name]));
      }
      e.value = state[e.name];
    }
  }
  showMode();
}

const toB64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64 = (s) => new TextDecoder().decode(Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")),
                                                                (c) => c.charCodeAt(0)));

function shareURL(state) {
  const keep = {...state};
  if (keep.mode === "yaml") { for (const k of Object.keys(keep)) if (k !== "mode" && k !== "yaml") delete keep[k]; }
  else delete keep.yaml;
  return `${location.origin}${location.pathname}#s=${toB64(JSON.stringify(keep))}`;
}

function stateFromURL() {
  const m = location.hash.match(/^#s=([A-Za-z0-9_-]+)$/);
  if (!m) return null;
  try { return JSON.parse(fromB64(m[1])); } catch { return null; }
}

function showMode() {
  const yaml = formState().mode === "yaml";
  $("#form-mode").hidden = yaml;
  $("#yaml-mode").hidden = !yaml;
}

const num = (v) => (v === "" || v == null ? undefined : Number(v));

function scenarioFromForm(st) {
  const sc = {name: "web-plan", model: st.model, hardware: st.hardware, cluster: {num_devices: num(st.num_devices)}};
  if (st.site) sc.site = st.site;
  if (st.train_on) {
    sc.training = {seq_len: num(st.seq_len), global_batch_seqs: num(st.global_batch_seqs), precision: st.precision};
    if (st.total_tokens) sc.training.total_tokens = Number(st.total_tokens);
    if (st.plan_mode === "set") {
      sc.parallel = {tp: num(st.tp), pp: num(st.pp), dp: num(st.dp), zero_stage: num(st.zero_stage),
                     recompute: st.recompute};
    }
  }
  if (st.serve_on) {
    const inf = {tp: num(st.inf_tp), dp: num(st.inf_dp), weights_dtype: st.weights_dtype, kv_dtype: st.kv_dtype,
                 input_tokens: num(st.input_tokens), output_tokens: num(st.output_tokens),
                 batch_size: st.batch_size === "max" ? "max" : num(st.batch_size)};
    if (num(st.rate_per_s) > 0) {
      inf.workload = {num_requests: num(st.num_requests), arrival: {process: "poisson", rate_per_s: num(st.rate_per_s)},
                      seed: 0};
    }
    const slo = {};
    if (num(st.ttft_ms) > 0) slo.ttft_p99 = `${st.ttft_ms} ms`;
    if (num(st.tpot_ms) > 0) slo.tpot_p99 = `${st.tpot_ms} ms`;
    if (Object.keys(slo).length) inf.slo = slo;
    sc.inference = inf;
  }
  return sc;
}

// ---------- API ----------
async function post(kind, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const r = await fetch(`/api/${kind}`, {method: "POST", headers: {"Content-Type": "application/yaml"}, body: text});
  let d = await r.json();
  if (!r.ok) throw new Error(d.error || `HTTP ${r.status}`);
  while (r.status === 202 && d.status === "running") {   // a long search runs as a job: poll it
    await new Promise((ok) => setTimeout(ok, 1000));
    d = await (await fetch(d.poll)).json();
    if (d.status === "done") return d.result;
    if (d.status === "error") throw new Error(d.error);
  }
  return d;
}

async function loadCatalog() {
  const [models, hardware, sites] = await Promise.all(
    ["models", "hardware", "sites"].map((k) => fetch(`/api/${k}`).then((r) => r.json())));
  fill($("#model"), models.models.map((m) => [m.id, `${m.id} (${fmtCount(m.params_total)})`]), "llama-3.1-8b");
  fill($("#hardware"), hardware.hardware.map((h) => [h.id, `${h.id} (${fmtBytes(h.hbm_capacity_bytes)})`]), "h100-sxm");
  fill($("#site"), [["", "default"], ...sites.sites.map((s) => [s.id, s.id])], "");
  SITES = Object.fromEntries(sites.sites.map((s) => [s.id, s]));
}
let SITES = {};

function fmtCount(n) {
  for (const [p, f] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
    if (Math.abs(+n.toPrecision(3)) >= f) return `${+(n / f).toPrecision(3)}${p}`;
  }
  return String(n);
}

function fill(select, items, preferred) {
  const current = select.value || preferred;
  select.replaceChildren(...items.map(([v, label]) => el("option", {value: v}, label)));
  select.value = items.some(([v]) => v === current) ? current : items[0][0];
}

// ---------- the verdict ----------
function verdict(d) {
  const out = [];
  const devices = `${fmtInt(d.cluster.num_devices)} x ${d.hardware.id}`;
  const tr = d.training;
  if (tr) {
    out.push({label: "training fits", ok: tr.fits,
              value: tr.fits ? `${fmtBytes(tr.memory_per_device_bytes)} of ${fmtBytes(tr.memory_capacity_bytes)} per device on ${devices}`
                             : tr.infeasible_reason});
    const p = tr.parallel;
    out.push({label: "plan", value: `tp ${p.tp} pp ${p.pp} dp ${p.dp}${p.cp > 1 ? ` cp ${p.cp}` : ""}${p.ep > 1 ? ` ep ${p.ep}` : ""}${p.vpp > 1 ? ` vpp ${p.vpp}` : ""}${p.pp > 1 ? ` (${p.pp_schedule}${p.pipeline_layout != null ? `, layout ${p.pipeline_layout}` : ""})` : ""}, ZeRO ${p.zero_stage}, recompute ${p.recompute}; step ${fmtDuration(tr.step_time_s)}, MFU ${fmtPct(tr.mfu)}`});
    if (tr.time_to_train_s != null) {
      out.push({label: "time to train", value: fmtDuration(tr.time_to_train_s) +
                (tr.effective_time_to_train_s ? ` (${fmtDuration(tr.effective_time_to_train_s)} with failures and checkpoints)` : "")});
    } else out.push({label: "throughput", value: `${fmtInt(tr.tokens_per_s)} tokens/s (give total tokens for a run time)`});
    const per = tr.datacenter_period === "run" ? "run" : "hour";
    if (tr.power_facility_w != null) {
      out.push({label: `cost per ${per}`, value: fmtMoney(tr.cost_usd)});
      out.push({label: "power", value: `${fmtSI(tr.power_facility_w, "W")} facility (${fmtSI(tr.power_it_w, "W")} IT), ${fmtSI(tr.energy_facility_j / 3600, "Wh")} per ${per}`});
      out.push({label: `carbon per ${per}`, value: `${fmtMass(tr.emissions_operational_kgco2e)} CO2e operational` +
                (tr.emissions_embodied_kgco2e != null ? ` + ${fmtMass(tr.emissions_embodied_kgco2e)} embodied` : "")});
    }
  }
  const sv = d.serving;
  if (sv) {
    out.push({label: "serving fits", ok: sv.fits,
              value: sv.fits ? `batch ${sv.batch_size} per replica on ${devices}` : sv.infeasible_reason});
    if (sv.fits) {
      out.push({label: "latency", value: `TTFT ${fmtDuration(sv.ttft_s)}, TPOT ${fmtDuration(sv.tpot_s)} (steady state)`});
      out.push({label: "throughput", value: `${fmtInt(sv.output_tokens_per_s)} output tokens/s`});
    }
    const a = sv.at_slo;   // the largest batch meeting inference.slo (as report/briefing.py)
    if (a) {
      out.push({label: "at the SLO", ok: a.met, value: a.met
        ? `batch ${a.batch_size}: ${fmtInt(a.output_tokens_per_s)} output tokens/s, ${fmtMoney(a.cost_per_million_output_tokens_usd)} per million output tokens (the figures here are at batch ${sv.batch_size}${sv.batch_size > a.batch_size ? ", which misses the SLO" : ""})`
        : `missed even at batch 1: ${a.reason}`});
    }
    if (sv.cost_per_million_output_tokens_usd != null) {
      out.push({label: "cost", value: `${fmtMoney(sv.cost_per_million_output_tokens_usd)} per million output tokens, ${fmtMoney(sv.cost_usd)} per hour`});
    }
    if (sv.power_facility_w != null) {
      out.push({label: "power", value: `${fmtSI(sv.power_facility_w, "W")} facility` +
                (sv.energy_per_output_token_j != null ? `, ${+sv.energy_per_output_token_j.toPrecision(3)} J per output token` : "")});
      out.push({label: "carbon per hour", value: `${fmtMass(sv.emissions_operational_kgco2e)} CO2e operational`});
    }
  }
  const sim = d.simulation;
  if (sim) {
    const lat = sim.ttft_p99_s != null ? `p99 TTFT ${fmtDuration(sim.ttft_p99_s)}, p99 TPOT ${fmtDuration(sim.tpot_p99_s)}` : "no request completed";
    if (sim.slo_attainment_frac == null) out.push({label: "simulated load", value: lat});
    else out.push({label: "SLO", ok: sim.slo_attainment_frac >= 0.99, value: `${fmtPct(sim.slo_attainment_frac)} of requests meet it (${lat})`});
  }
  if (!out.length) {  // nothing planned: do the weights alone fit the cluster? (as report/briefing.py)
    const w = d.cluster.min_devices_for_weights.bf16;
    out.push({label: "weights", ok: w <= d.cluster.num_devices ? null : false,
              value: `${d.model.name} needs at least ${w} x ${d.hardware.id} for bf16 weights alone (the cluster has ${fmtInt(d.cluster.num_devices)})`});
    out.push({label: "to plan", value: "add a training or inference section"});
  }
  return out;
}

function renderVerdict(d) {
  const findings = verdict(d);
  const problems = findings.filter((f) => f.ok === false).map((f) => ({
    "training fits": "training does not fit in memory", "serving fits": "serving does not fit in memory",
    "SLO": "the simulated load misses the SLO", "weights": "the weights alone do not fit the cluster"}[f.label] || f.label));
  const planned = [d.training && "training", d.serving && "serving"].filter(Boolean).join(" and ");
  const what = planned || "planning";
  const fine = planned ? "fits and works as planned" : "nothing to plan (no training or inference section)";
  const head = `${what[0].toUpperCase()}${what.slice(1)} ${d.model.name} on ${fmtInt(d.cluster.num_devices)} x ${d.hardware.id}: ` +
               (problems.length ? problems.join("; ") : fine) + ".";
  const box = $("#verdict");
  box.className = problems.length ? "bad" : "good";
  const dl = el("dl");
  for (const f of findings) {
    dl.append(el("dt", {}, f.label),
              el("dd", {class: f.ok === false ? "no" : f.ok === true ? "yes" : ""},
                 f.ok == null ? "" : el("b", {}, f.ok ? "yes " : "NO "), f.value));
  }
  box.replaceChildren(el("h2", {id: "headline"}, head), dl);
}

// ---------- charts: inline SVG ----------
const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"];
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function figure(id, title, note) {
  const fig = el("figure", {class: "chart", id: `chart-${id}`, "data-chart": id});
  fig.append(el("figcaption", {}, title));
  if (note) fig.append(el("p", {class: "note"}, note));
  $("#charts").append(fig);
  return fig;
}

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// Horizontal bars (one per item) with value labels; optional reference line (e.g. capacity).
function barChart(fig, items, fmt, ref) {
  items = items.filter(([, v]) => v > 0);
  const W = 520, labelW = 170, valueW = 80, rowH = 24, top = 8;
  const H = top + rowH * items.length + 26;
  const peak = Math.max(...items.map(([, v]) => v), ref ? ref.value : 0) || 1;
  const x = (v) => labelW + (W - labelW - valueW) * v / peak;
  const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
  const total = items.reduce((a, [, v]) => a + v, 0);
  items.forEach(([label, v], i) => {
    const y = top + i * rowH;
    s.append(svg("text", {x: labelW - 6, y: y + 16, "text-anchor": "end", class: "label"}, label));
    const bar = svg("rect", {x: labelW, y: y + 4, width: Math.max(2, x(v) - labelW), height: rowH - 8,
                             fill: COLORS[i % COLORS.length], "data-label": label, "data-value": v, class: "bar"});
    bar.append(svg("title", {}, `${label}: ${fmt(v)} (${fmtPct(v / total)})`));
    s.append(bar);
    s.append(svg("text", {x: Math.max(2, x(v) - labelW) + labelW + 5, y: y + 16, class: "value"}, fmt(v)));
  });
  if (ref) {
    const rx = x(ref.value);
    s.append(svg("line", {x1: rx, x2: rx, y1: 2, y2: H - 18, class: "ref", "data-ref": ref.label, "data-value": ref.value}));
    s.append(svg("text", {x: Math.min(rx, W - 4), y: H - 5, "text-anchor": "end", class: "ref-label"}, `${ref.label} ${fmt(ref.value)}`));
  }
  fig.append(s);
}

// One stacked bar of parts against a capacity line: memory per device against device memory.
function stackedCapacity(fig, parts, capacity) {
  parts = parts.filter(([, v]) => v > 0);
  const W = 520, H = 96, left = 10, right = 20, barY = 14, barH = 30;
  const total = parts.reduce((a, [, v]) => a + v, 0);
  const peak = Math.max(total, capacity) * 1.02;
  const x = (v) => left + (W - left - right) * v / peak;
  const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
  let acc = 0;
  parts.forEach(([label, v], i) => {
    const r = svg("rect", {x: x(acc), y: barY, width: Math.max(1, x(acc + v) - x(acc)), height: barH,
                           fill: COLORS[i % COLORS.length], class: "bar", "data-label": label, "data-value": v});
    r.append(svg("title", {}, `${label}: ${fmtBytes(v)}`));
    s.append(r);
    acc += v;
  });
  const cx = x(capacity);
  s.append(svg("line", {x1: cx, x2: cx, y1: 4, y2: barY + barH + 10, class: total > capacity ? "ref over" : "ref",
                        "data-ref": "capacity", "data-value": capacity}));
  s.append(svg("text", {x: Math.min(cx, W - 2), y: barY + barH + 24, "text-anchor": cx > W / 2 ? "end" : "start",
                        class: "ref-label"}, `capacity ${fmtBytes(capacity)}; used ${fmtBytes(total)}`));
  fig.append(s);
  const legend = el("ul", {class: "legend"});
  parts.forEach(([label, v], i) => legend.append(el("li", {}, el("i", {style: `background:${COLORS[i % COLORS.length]}`}),
                                                     `${label} ${fmtBytes(v)}`)));
  fig.append(legend);
}

// A scatter/line chart with axes. series: [{name, points: [[x, y, info]], line, color}]; hlines: [{y, label}]
function xyChart(fig, {series, xlabel, ylabel, xfmt, yfmt, hlines = [], vlines = [], logY = false}) {
  const W = 520, H = 300, L = 64, R = 12, T = 12, B = 44;
  const pts = series.flatMap((s) => s.points);
  const xs = pts.map((p) => p[0]).concat(vlines.map((v) => v.x));
  const ys = pts.map((p) => p[1]).concat(hlines.map((h) => h.y));
  let [x0, x1] = [Math.min(0, ...xs), Math.max(...xs) * 1.05 || 1];
  let [y0, y1] = logY ? [Math.min(...ys) / 1.5, Math.max(...ys) * 1.5] : [Math.min(0, ...ys), Math.max(...ys) * 1.1 || 1];
  const fx = (v) => L + (W - L - R) * (v - x0) / (x1 - x0);
  const fy = logY ? (v) => T + (H - T - B) * (1 - Math.log(v / y0) / Math.log(y1 / y0))
                  : (v) => T + (H - T - B) * (1 - (v - y0) / (y1 - y0));
  const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
  s.append(svg("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}));
  s.append(svg("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}));
  for (const t of niceTicks(x0, x1)) {
    s.append(svg("line", {x1: fx(t), x2: fx(t), y1: T, y2: H - B, class: "grid"}));
    s.append(svg("text", {x: fx(t), y: H - B + 14, "text-anchor": "middle", class: "tick"}, xfmt(t)));
  }
  const yt = logY ? [...Array(12).keys()].map((k) => 10 ** (Math.floor(Math.log10(y0)) + k)).filter((t) => t >= y0 && t <= y1)
                  : niceTicks(y0, y1);
  for (const t of yt) {
    s.append(svg("line", {x1: L, x2: W - R, y1: fy(t), y2: fy(t), class: "grid"}));
    s.append(svg("text", {x: L - 4, y: fy(t) + 4, "text-anchor": "end", class: "tick"}, yfmt(t)));
  }
  s.append(svg("text", {x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", class: "axis-label"}, xlabel));
  s.append(svg("text", {x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis-label",
                        transform: `rotate(-90 12 ${(T + H - B) / 2})`}, ylabel));
  for (const h of hlines) {
    s.append(svg("line", {x1: L, x2: W - R, y1: fy(h.y), y2: fy(h.y), class: "ref", "data-ref": h.label, "data-value": h.y}));
    s.append(svg("text", {x: L + 4, y: fy(h.y) - 4, "text-anchor": "start", class: "ref-label"}, h.label));
  }
  for (const v of vlines) {
    s.append(svg("line", {x1: fx(v.x), x2: fx(v.x), y1: T, y2: H - B, class: "ref", "data-ref": v.label, "data-value": v.x}));
    s.append(svg("text", {x: fx(v.x) - 4, y: T + 10, "text-anchor": "end", class: "ref-label"}, v.label));
  }
  series.forEach((ser, i) => {
    const color = ser.color || COLORS[i % COLORS.length];
    if (ser.line && ser.points.length > 1) {
      s.append(svg("polyline", {points: ser.points.map((p) => `${fx(p[0])},${fy(p[1])}`).join(" "), fill: "none",
                                stroke: color, "stroke-width": 2}));
    }
    for (const p of ser.points) {
      const c = svg("circle", {cx: fx(p[0]), cy: fy(p[1]), r: ser.r || 3.5, fill: color, class: "point",
                               "data-series": ser.name, "data-x": p[0], "data-y": p[1]});
      c.append(svg("title", {}, p[2] || `${ser.name}: ${xfmt(p[0])}, ${yfmt(p[1])}`));
      s.append(c);
    }
  });
  fig.append(s);
  const legend = el("ul", {class: "legend"});
  series.forEach((ser, i) => legend.append(el("li", {}, el("i", {style: `background:${ser.color || COLORS[i % COLORS.length]}`}), ser.name)));
  fig.append(legend);
}

// ---------- tables ----------
function kvTable(title, rows) {
  const t = el("table", {class: "kv"});
  t.append(el("caption", {}, title));
  for (const [k, v] of rows) t.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  return t;
}

function gridTable(title, headers, rows, id) {
  const t = el("table", {class: "grid", ...(id ? {id} : {})});
  t.append(el("caption", {}, title));
  t.append(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
  return t;
}

// ---------- the report ----------
function renderReport(d) {
  $("#report").hidden = false;
  renderVerdict(d);
  $("#charts").replaceChildren();
  $("#tables").replaceChildren();
  const tr = d.training, sv = d.serving, sim = d.simulation;
  if (tr) {
    stackedCapacity(figure("training-memory", "Training memory per device against capacity"),
                    Object.entries(tr.memory_breakdown_bytes), tr.memory_capacity_bytes);
    const parts = Object.entries(tr.step_time_breakdown_s).filter(([k]) => k !== "compute");
    const comp = Object.entries(tr.compute_breakdown_s || {}).map(([k, v]) => [`compute: ${k}`, v]);
    barChart(figure("step-time", `Training step time ${fmtDuration(tr.step_time_s)} by part`),
             [...(comp.length ? comp : [["compute", tr.step_time_breakdown_s.compute]]), ...parts], fmtDuration);
    if (d.inputs.training) figure("pareto", "Pareto front of plans: throughput against memory per device", "searching every valid plan…");
    $("#tables").append(kvTable("Training", [
      ["throughput", `${fmtInt(tr.tokens_per_s)} tokens/s (${fmtInt(tr.tokens_per_s_per_device)} per device)`],
      ["MFU / HFU", `${fmtPct(tr.mfu)} / ${fmtPct(tr.hfu)}`],
      ["step time", `${fmtDuration(tr.step_time_s)} (${tr.num_microbatches} micro-batches)`],
      ["model FLOPs per step", fmtSI(tr.model_flops_per_step, "FLOP")],
      ["time to train", tr.time_to_train_s != null ? `${fmtDuration(tr.time_to_train_s)}, ${fmtInt(tr.device_hours)} device-hours` : "n/a"],
      ...(tr.goodput_frac != null ? [["goodput", `${fmtPct(tr.goodput_frac)}, ${fmtInt(tr.expected_interruptions)} interruptions expected`]] : []),
    ]));
  }
  if (sv) {
    stackedCapacity(figure("serving-memory", "Serving memory per device against capacity"),
                    Object.entries(sv.memory_breakdown_bytes), d.hardware.hbm_capacity_bytes);
    if (sv.fits) figure("latency", "Latency against throughput (analytic, by batch size) with the SLO", "computing…");
    $("#tables").append(kvTable("Serving (steady state)", [
      ["batch", `${sv.batch_size} sequences per replica (memory allows ${sv.max_batch_size})`],
      ["TTFT / TPOT", `${fmtDuration(sv.ttft_s)} / ${fmtDuration(sv.tpot_s)}`],
      ["output tokens/s", `${fmtInt(sv.output_tokens_per_s)} (${fmtInt(sv.output_tokens_per_s_per_device)} per device)`],
      ["KV cache per token", fmtBytes(sv.kv_cache_bytes_per_token)],
    ]));
  }
  datacenterCharts(d, tr || sv, tr ? "training" : "serving");
  if (sim) {
    $("#tables").append(gridTable("Simulated latency", ["", "p50", "p99"], [
      ["TTFT", fmtDuration(sim.ttft_p50_s), fmtDuration(sim.ttft_p99_s)],
      ["TPOT", fmtDuration(sim.tpot_p50_s), fmtDuration(sim.tpot_p99_s)],
      ["end to end", fmtDuration(sim.e2e_p50_s), fmtDuration(sim.e2e_p99_s)],
    ]));
  }
  const details = $("#assumptions");
  const seen = new Set(), rows = [];
  for (const part of [d, tr || {}, sv || {}, sim || {}]) {
    for (const a of part.assumptions || []) {
      const key = `${a.name}=${JSON.stringify(a.value)}`;
      if (!seen.has(key)) { seen.add(key); rows.push([a.name, String(a.value), a.why]); }
    }
  }
  details.querySelector("summary").textContent = `Assumptions (${rows.length}): every default flopcast filled in`;
  details.querySelector("div").replaceChildren(gridTable("", ["name", "value", "why"], rows));
}

// The scenario of a report (its echoed sections plus the resolved cluster), for the follow-up calls
// (search, the latency curve) of a pasted YAML scenario.
function echoedScenario(d) {
  const c = d.cluster;
  const cluster = {num_devices: c.num_devices, devices_per_node: c.devices_per_node};
  if (c.scale_out_bandwidth_bytes_per_s != null) cluster.scale_out_bandwidth = c.scale_out_bandwidth_bytes_per_s;
  return {...d.inputs, cluster};
}

function datacenterCharts(d, est, what) {
  const pb = est && est.power_breakdown_w;
  if (!pb) return;
  barChart(figure("power", `Power of the ${what} cluster (facility ${fmtSI(est.power_facility_w, "W")})`),
           [["accelerators", pb.devices_w], ["hosts", pb.hosts_w], ["network", pb.network_w],
            ["cooling and losses", est.power_facility_w - est.power_it_w]], (v) => fmtSI(v, "W"));
  const siteId = (d.inputs && typeof d.inputs.site === "string") ? d.inputs.site : "us-average";
  const site = SITES[siteId];
  const per = est.datacenter_period === "run" ? "run" : "hour";
  if (est.cost_usd != null) {
    const items = [["device-hours", est.cost_usd]];
    if (site) items.push(["of which electricity", est.energy_facility_j / 3.6e6 * site.electricity_price_usd_per_kwh]);
    barChart(figure("cost", `Cost per ${per}`, site ? `electricity at ${siteId}'s $${site.electricity_price_usd_per_kwh}/kWh, included in the device-hour price` : ""),
             items, fmtMoney);
  }
}

async function paretoChart(inputs, chosen) {
  const fig = $("#chart-pareto");
  try {
    const res = await post("search", {...inputs, parallel: undefined});
    if (!res.pareto.length) {
      fig.querySelector(".note").textContent = `${fmtInt(res.num_evaluated)} plans evaluated; none fits in memory`;
      return;
    }
    fig.querySelector(".note").textContent =
      `${fmtInt(res.num_evaluated)} plans evaluated, ${fmtInt(res.num_fitting)} fit; the front trades throughput for memory headroom`;
    const pt = (p) => [p.memory_per_device_bytes / GiB, p.tokens_per_s_per_device,
                       `tp ${p.tp} pp ${p.pp} dp ${p.dp} ZeRO ${p.zero_stage} ${p.recompute}: ${fmtInt(p.tokens_per_s_per_device)} tokens/s/device, ${fmtBytes(p.memory_per_device_bytes)}`];
    const series = [{name: "Pareto front", points: res.pareto.map(pt).sort((a, b) => a[0] - b[0]), line: true},
                    {name: "best plans", points: res.plans.map(pt), color: "#dd8452"}];
    if (chosen) series.push({name: "this plan", points: [pt({...chosen.parallel, ...chosen})], color: "#c44e52", r: 6});
    xyChart(fig, {series, xlabel: "memory per device (GiB)", ylabel: "tokens/s per device",
                  xfmt: (v) => `${+v.toPrecision(3)}`, yfmt: (v) => fmtInt(v),
                  vlines: [{x: chosen.memory_capacity_bytes / GiB, label: "capacity"}]});
    $("#tables").append(gridTable("Best plans", ["#", "tp", "pp", "dp", "cp", "ep", "ZeRO", "recompute", "step", "tokens/s/device", "MFU", "memory"],
      res.plans.map((p, i) => [i + 1, p.tp, p.pp, p.dp, p.cp, p.ep, p.zero_stage, p.recompute, fmtDuration(p.step_time_s),
                               fmtInt(p.tokens_per_s_per_device), fmtPct(p.mfu), fmtBytes(p.memory_per_device_bytes)]), "best-plans"));
  } catch (e) {
    fig.querySelector(".note").textContent = `search: ${e.message}`;
  }
}

async function latencyChart(inputs, d) {
  const sv = d.serving, sim = d.simulation;
  const fig = $("#chart-latency");
  const maxB = Math.max(1, sv.max_batch_size);
  const sizes = [...new Set([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048].filter((b) => b < maxB).concat([maxB]))];
  const inf = {...inputs.inference};
  delete inf.workload;
  const results = await Promise.all(sizes.map((b) =>
    post("infer", {...inputs, inference: {...inf, batch_size: b}}).catch(() => null)));
  const ok = results.map((r, i) => [r, sizes[i]]).filter(([r]) => r && r.fits);
  if (!ok.length) { fig.querySelector(".note").textContent = "no batch size fits"; return; }
  const slo = (inputs.inference || {}).slo || {};
  const hl = [];
  const ms = (q) => (typeof q === "number" ? q * 1e3 : parseFloat(q) * ({ms: 1, s: 1e3, us: 1e-3}[String(q).trim().split(/\s+/)[1]] || 1));
  if (slo.tpot_p99 != null) hl.push({y: ms(slo.tpot_p99), label: `TPOT SLO ${slo.tpot_p99}`});
  if (slo.ttft_p99 != null) hl.push({y: ms(slo.ttft_p99), label: `TTFT SLO ${slo.ttft_p99}`});
  const series = [
    {name: "TPOT", points: ok.map(([r, b]) => [r.output_tokens_per_s, r.tpot_s * 1e3, `batch ${b}: TPOT ${fmtDuration(r.tpot_s)}, ${fmtInt(r.output_tokens_per_s)} tokens/s`]), line: true},
    {name: "TTFT", points: ok.map(([r, b]) => [r.output_tokens_per_s, r.ttft_s * 1e3, `batch ${b}: TTFT ${fmtDuration(r.ttft_s)}, ${fmtInt(r.output_tokens_per_s)} tokens/s`]), line: true},
  ];
  if (sim && sim.tpot_p99_s != null) {
    series.push({name: "simulated p99 TPOT", points: [[sim.output_tokens_per_s, sim.tpot_p99_s * 1e3]], color: "#c44e52", r: 6});
    series.push({name: "simulated p99 TTFT", points: [[sim.output_tokens_per_s, sim.ttft_p99_s * 1e3]], color: "#8172b3", r: 6});
  }
  fig.querySelector(".note").textContent = `each point a batch size from 1 to ${maxB} per replica; lines at the p99 targets`;
  xyChart(fig, {series, xlabel: "output tokens/s (all replicas)", ylabel: "latency (ms, log)", logY: true,
                xfmt: (v) => fmtSI(v, "").trim(), yfmt: (v) => `${+v.toPrecision(3)}`, hlines: hl});
}

async function run(ev) {
  if (ev) ev.preventDefault();
  const st = formState();
  const body = st.mode === "yaml" ? st.yaml : scenarioFromForm(st);
  const url = shareURL(st);
  history.replaceState(null, "", url);
  const share = $("#share");
  share.href = url;
  share.hidden = false;
  const status = $("#status");
  status.textContent = "planning…";
  status.className = "";
  $("#run").disabled = true;
  try {
    const d = await post("plan", body);
    renderReport(d);
    $("#scenario-echo pre").textContent = typeof body === "string" ? body : JSON.stringify(body, null, 2);
    const base = typeof body === "string" ? echoedScenario(d) : body;
    const extra = [];
    if (d.training && base.training) extra.push(paretoChart(base, d.training));
    if (d.serving && d.serving.fits) extra.push(latencyChart(base, d));
    await Promise.all(extra);
    status.textContent = "done";
    document.body.dataset.state = "done";
  } catch (e) {
    status.textContent = `error: ${e.message}`;
    status.className = "error";
    document.body.dataset.state = "error";
  } finally {
    $("#run").disabled = false;
  }
}

form.addEventListener("submit", run);
for (const r of form.querySelectorAll("input[name=mode]")) r.addEventListener("change", () => {
  if (formState().mode === "yaml" && !$("#yaml").value.trim()) $("#yaml").value = JSON.stringify(scenarioFromForm(formState()), null, 2);
  showMode();
});

(async () => {
  try { await loadCatalog(); } catch (e) { $("#status").textContent = `catalog: ${e.message}`; }
  const st = stateFromURL();
  if (st) { setFormState(st); run(); }
  document.body.dataset.ready = "true";
})();
