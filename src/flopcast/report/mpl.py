"""Charts of a plan drawn with matplotlib (the `plots` extra): what a hand-written bar chart cannot show.

    memory_chart       memory per device, stacked by part, against the device's capacity
    step_time_chart    the training step by part (linear axis: bar lengths are the parts' shares)
    pareto_chart       the search's plans: throughput per device against memory per device, the front joined
    latency_chart      TTFT and TPOT against throughput as the batch grows, with the SLO lines
    cdf_chart          the simulated requests' TTFT and TPOT distributions with the SLO lines
    roofline_chart     the device roofline with each op of a layer placed at its arithmetic intensity
    power_cost_chart   where the power goes, and cost and energy accumulating over the run

Each function takes the plan dict (`flopcast plan --json`) and, where a chart needs more than the plan
holds, a `ChartData` from `gather(report, scenario)` (the search's plans, the analytic latency at several
batch sizes, the simulated requests); it returns a matplotlib `Figure` or None
when the plan has nothing to draw. Figures are made with `matplotlib.figure.Figure` (no pyplot, no global
state). This module is imported only when charts are asked for: the CLI's cold start never pays for it.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from flopcast.report.briefing import duration, money
from flopcast.units import GiB, format_bytes, format_si

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
SLO_COLOR = "#b3261e"


@dataclass(frozen=True, slots=True)
class ChartData:
    """What the charts need beyond the plan dict: the search's plans, the analytic latency at several
    batch sizes, and the simulated requests' latencies (seconds, completed requests only)."""

    search: dict[str, Any] | None = None                      # SearchResult.to_dict()
    latency_curve: tuple[dict[str, Any], ...] = ()           # {batch_size, ttft_s, tpot_s, output_tokens_per_s}
    ttft_s: tuple[float, ...] = ()
    tpot_s: tuple[float, ...] = ()
    slo_s: dict[str, float] = field(default_factory=dict)    # {"ttft_p99": s, "tpot_p99": s}


def _scenario_mapping(scenario: Any) -> dict[str, Any]:
    """The scenario as a plain mapping whose relative model path still resolves (as the sweep does)."""
    from flopcast.specs.scenario import load_scenario

    sc = copy.deepcopy(load_scenario(scenario))
    base = Path(sc.pop("_base_dir"))
    model = sc.get("model")
    if isinstance(model, str) and model.endswith(".json") and not Path(model).is_absolute():
        sc["model"] = str(base / model)
    return sc


def _batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... below the largest batch that fits, and that largest batch."""
    sizes = [b for b in (2 ** k for k in range(16)) if b < max_batch]
    return sizes + [max_batch]


def gather(report: Any, scenario: Any):
    """The ChartData of a PlanReport: search (when it trains), latency curve (when it serves and fits),
    the completed requests' TTFT and TPOT (when it simulates), the SLO in seconds."""
    import numpy as np

    from flopcast.run.search import search_training
    from flopcast.run.serving import estimate_serving
    from flopcast.sim.workload import slo_from_mapping

    sc = _scenario_mapping(scenario)
    search = None
    if report.training is not None:
        found = search_training({k: v for k, v in sc.items() if k != "parallel"}, top=10)
        search = found.to_dict()
    curve = []
    inference = sc.get("inference")
    if report.serving is not None and report.serving.fits and isinstance(inference, dict):
        base = {k: v for k, v in inference.items() if k != "workload"}
        for b in _batch_sizes(int(report.serving.max_batch_size)):
            est = estimate_serving(sc | {"inference": base | {"batch_size": b}}).to_dict()
            curve.append({k: est[k] for k in ("batch_size", "fits", "ttft_s", "tpot_s", "output_tokens_per_s")})
    ttft, tpot = (), ()
    sim = report.simulation
    if sim is not None and sim.requests:
        r = sim.requests
        done = ~np.isnan(np.asarray(r["done_s"], dtype=float))
        arrival, first = np.asarray(r["arrival_s"])[done], np.asarray(r["first_token_s"])[done]
        out = np.asarray(r["output_tokens"])[done]
        ttft = tuple((first - arrival).tolist())
        tpot = tuple(((np.asarray(r["done_s"])[done] - first) / np.maximum(out - 1, 1)).tolist())
    slo = slo_from_mapping(inference.get("slo") if isinstance(inference, dict) else None)
    slo_s = {k: v for k, v in (("ttft_p99", slo.ttft_s), ("tpot_p99", slo.tpot_s)) if v is not None}
    return ChartData(search=search, latency_curve=tuple(curve), ttft_s=ttft, tpot_s=tpot, slo_s=slo_s)


def _figure(width_in: float = 7.5, height_in: float = 3.6) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    return fig


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e6e8ec", linewidth=0.8)
    ax.set_axisbelow(True)


def _ms(x: float, _pos: Any = None) -> str:
    return f"{x * 1e3:.3g} ms" if x < 1 else f"{x:.3g} s"


def _log_axis(axis, fmt) -> None:
    """Log-scale ticks for people: 1, 2, 5 of each decade labelled, the other minor ticks not."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_minor_formatter(NullFormatter())


def to_svg(fig: Figure) -> str:
    """The figure as an SVG document without its XML prolog and doctype (ready to inline in HTML); text
    stays text (no embedded glyphs), no creation date (the same plan gives the same bytes)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def memory_chart(d: dict[str, Any]) -> Figure | None:
    """One stacked bar per section (training, serving): bytes by part, and the capacity line."""
    rows = []
    if d.get("training"):
        rows.append(("training", d["training"]["memory_breakdown_bytes"], d["training"]["memory_capacity_bytes"]))
    if d.get("serving"):
        rows.append(("serving", d["serving"]["memory_breakdown_bytes"], d["hardware"]["hbm_capacity_bytes"]))
    if not rows:
        return None
    fig = _figure(height_in=1.2 + 0.8 * len(rows))
    ax = fig.add_subplot()
    parts = list(dict.fromkeys(k for _, bd, _ in rows for k in bd))
    for i, (_name, bd, cap) in enumerate(rows):
        left = 0.0
        for j, part in enumerate(parts):
            v = bd.get(part, 0) / GiB
            if v > 0:
                ax.barh(i, v, left=left, color=COLORS[j % len(COLORS)], label=part if i == 0 or part not in rows[0][1]
                        else None, height=0.6)
                left += v
        ax.plot([cap / GiB] * 2, [i - 0.42, i + 0.42], color=SLO_COLOR, linewidth=2.5)
        over = left > cap / GiB
        ax.annotate(f"{format_bytes(left * GiB)} of {format_bytes(cap)}" + (" - does not fit" if over else ""),
                    (max(left, cap / GiB), i), xytext=(6, 0), textcoords="offset points", va="center",
                    color=SLO_COLOR if over else "#333333", fontsize=9)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("GiB per device (red line: device memory)")
    ax.set_xlim(0, max(max(sum(bd.values()), cap) for _, bd, cap in rows) / GiB * 1.35)
    fig.legend(ncols=min(6, len(parts)), fontsize=8, loc="outside lower center", frameon=False)
    _style(ax)
    return fig


def step_time_chart(d: dict[str, Any]) -> Figure | None:
    """The training step's parts on a linear axis (a bar's length is its share of the step), each
    labelled with its time and share, so a small part is read from its label, not its length."""
    tr = d.get("training")
    if not tr:
        return None
    parts = [(f"compute: {k}", v) for k, v in (tr.get("compute_breakdown_s") or {}).items()] or \
        [("compute", tr["step_time_breakdown_s"]["compute"])]
    parts += [(k, v) for k, v in tr["step_time_breakdown_s"].items() if k != "compute"]
    parts = [(k, v) for k, v in parts if v and v > 0]
    fig = _figure(height_in=0.9 + 0.32 * len(parts))
    ax = fig.add_subplot()
    step = tr["step_time_s"]
    ax.barh(range(len(parts)), [v for _, v in parts], color=[COLORS[i % len(COLORS)] for i in range(len(parts))])
    for i, (_, v) in enumerate(parts):
        ax.annotate(f"{duration(v)} ({100 * v / step:.1f}%)", (v, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(range(len(parts)), [k for k, _ in parts], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(v for _, v in parts) * 1.35)
    ax.xaxis.set_major_formatter(FuncFormatter(_ms))
    ax.set_xlabel("seconds per step")
    _style(ax)
    ax.set_title(f"Training step {duration(step)} by part", loc="left", fontsize=11)
    return fig


def pareto_chart(d: dict[str, Any], data: ChartData) -> Figure | None:
    """Every plan on the front (joined) and the best plans, throughput per device against memory per device;
    the plan of the report is ringed, the capacity is a vertical line."""
    if not data.search or not data.search.get("pareto"):
        return None
    s = data.search
    fig = _figure(height_in=3.8)
    ax = fig.add_subplot()
    front = sorted(s["pareto"], key=lambda p: p["memory_per_device_bytes"])
    ax.plot([p["memory_per_device_bytes"] / GiB for p in front], [p["tokens_per_s_per_device"] for p in front],
            "-o", color=COLORS[0], markersize=4, label=f"Pareto front ({len(front)} plans)")
    ax.scatter([p["memory_per_device_bytes"] / GiB for p in s["plans"]], [p["tokens_per_s_per_device"] for p in s["plans"]],
               color=COLORS[1], s=22, zorder=3, label=f"top {len(s['plans'])} by {s['objective']}")
    tr = d.get("training")
    if tr:
        ax.scatter([tr["memory_per_device_bytes"] / GiB], [tr["tokens_per_s_per_device"]], s=140, facecolors="none",
                   edgecolors=SLO_COLOR, linewidths=2, zorder=4, label="this plan")
        ax.axvline(tr["memory_capacity_bytes"] / GiB, color=SLO_COLOR, linestyle="--", linewidth=1.5)
        ax.annotate("device memory", (tr["memory_capacity_bytes"] / GiB, ax.get_ylim()[1]), xytext=(-4, -12),
                    textcoords="offset points", ha="right", color=SLO_COLOR, fontsize=8)
        best = front[-1]
        p = best
        ax.annotate(f"tp {p['tp']} pp {p['pp']} dp {p['dp']}", (p["memory_per_device_bytes"] / GiB,
                    p["tokens_per_s_per_device"]), xytext=(-8, 8), textcoords="offset points", ha="right", fontsize=8)
    ax.set_xlabel("memory per device (GiB)")
    ax.set_ylabel("tokens/s per device")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    _style(ax)
    ax.set_title(f"Plans: {s['num_evaluated']:,} evaluated, {s['num_fitting']:,} fit", loc="left", fontsize=11)
    return fig


def _slo_lines(ax, slo_s: dict[str, float], which: tuple[str, ...], vertical: bool) -> None:
    for key in which:
        if slo_s.get(key) is None:
            continue
        label = f"SLO {key.replace('_', ' ')} {_ms(slo_s[key])}"
        if vertical:
            ax.axvline(slo_s[key], color=SLO_COLOR, linestyle="--", linewidth=1.5)
            ax.annotate(label, (slo_s[key], 0.02), xycoords=("data", "axes fraction"), xytext=(4, 0),
                        textcoords="offset points", color=SLO_COLOR, fontsize=8)
        else:
            ax.axhline(slo_s[key], color=SLO_COLOR, linestyle="--", linewidth=1.5)
            ax.annotate(label, (0.01, slo_s[key]), xycoords=("axes fraction", "data"), xytext=(0, 4),
                        textcoords="offset points", color=SLO_COLOR, fontsize=8)


def latency_chart(d: dict[str, Any], data: ChartData) -> Figure | None:
    """TTFT and TPOT (log) against output tokens/s as the batch per replica grows, the SLO lines, and the
    simulated p99 point when the plan has a simulation."""
    pts = [p for p in data.latency_curve if p.get("fits")]
    if len(pts) < 2:
        return None
    fig = _figure(height_in=3.8)
    ax = fig.add_subplot()
    x = [p["output_tokens_per_s"] for p in pts]
    ax.plot(x, [p["tpot_s"] for p in pts], "-o", color=COLORS[0], markersize=4, label="TPOT (analytic)")
    ax.plot(x, [p["ttft_s"] for p in pts], "-o", color=COLORS[1], markersize=4, label="TTFT (analytic)")
    for p in (pts[0], pts[len(pts) // 2], pts[-1]):
        ax.annotate(f"batch {p['batch_size']}", (p["output_tokens_per_s"], p["tpot_s"]), xytext=(0, -14),
                    textcoords="offset points", ha="center", fontsize=7, color="#555555")
    sim = d.get("simulation")
    if sim and sim.get("tpot_p99_s") is not None:
        ax.scatter([sim["output_tokens_per_s"]] * 2, [sim["tpot_p99_s"], sim["ttft_p99_s"]], marker="D", s=40,
                   color=[COLORS[0], COLORS[1]], edgecolors="black", zorder=4, label="simulated p99 (TPOT, TTFT)")
    _slo_lines(ax, data.slo_s, ("ttft_p99", "tpot_p99"), vertical=False)
    ax.set_yscale("log")
    _log_axis(ax.yaxis, _ms)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_si(v, "").strip()))
    ax.set_xlabel("output tokens/s, all replicas")
    ax.set_ylabel("latency (log scale)")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0, 0.92))
    _style(ax)
    ax.set_title("Latency against throughput as the batch grows", loc="left", fontsize=11)
    return fig


def cdf_chart(d: dict[str, Any], data: ChartData) -> Figure | None:
    """The simulated requests' TTFT and TPOT as empirical CDFs (log x), with the p99 SLO lines."""
    if not data.ttft_s:
        return None
    fig = _figure(height_in=3.2)
    axes = fig.subplots(1, 2)
    for ax, values, key, name in ((axes[0], data.ttft_s, "ttft_p99", "TTFT"), (axes[1], data.tpot_s, "tpot_p99", "TPOT")):
        v = sorted(x for x in values if x > 0)
        if not v:
            continue
        ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", color=COLORS[0])
        ax.axhline(0.99, color="#999999", linewidth=0.8, linestyle=":")
        _slo_lines(ax, data.slo_s, (key,), vertical=True)
        ax.set_xscale("log")
        _log_axis(ax.xaxis, _ms)
        ax.set_xlabel(f"{name} per request (log scale)")
        ax.set_ylim(0, 1.02)
        _style(ax)
        ax.set_title(f"{name}: p50 {_ms(v[len(v) // 2])}, p99 {_ms(v[min(len(v) - 1, int(0.99 * len(v)))])}",
                     loc="left", fontsize=10)
    axes[0].set_ylabel("share of requests")
    fig.suptitle(f"Simulated requests ({len(data.ttft_s):,} completed)", x=0.01, ha="left", fontsize=11)
    return fig


def _label(row: dict[str, Any]) -> str:
    if row["kind"] == "attention":
        return "attention core"
    return "lm_head" if row["name"] == "head/logits" else row["name"].split("/")[-1]


def op_intensities(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The op rows of one layer of each kind (and the LM head) on one device, as roofline points: FLOPs
    and bytes moved, exactly as the estimators' own rows carry them (estimate/ops.py), no second model.

    Training: the report's `training.ops`, the forward of one micro-batch as the step timed it.
    Serving: the report's `serving.ops`, one decode iteration of `batch_size` sequences at the mean
    context (input + output / 2); attention's bytes there are the KV cache read.
    Leaves out: collectives, and rows that move no bytes (the layer's kernel tails)."""
    sections = [("training", (d.get("training") or {}).get("ops") or [])]
    sv = d.get("serving")
    if sv and sv.get("fits"):
        sections.append(("decode", sv.get("ops") or []))
    out = []
    for what, rows in sections:
        for r in rows:
            if r["kind"] == "comm" or not r.get("bytes_moved") or r.get("part", "layers") not in ("layers", "head"):
                continue
            out.append({"section": what, "op": _label(r), "flops": r["flops"], "bytes": r["bytes_moved"]})
    return out


def _roofline_points(d: dict[str, Any], peak: float, bw: float) -> list[tuple[str, float, float, float]]:
    """(label, FLOP per byte, FLOP/s, FLOPs) per op. Training ops (the training report's `ops`) sit at
    the FLOP/s the cost model achieves for them; serving ops at what their intensity allows."""
    timed = {o["name"]: o for o in (d.get("training") or {}).get("ops") or []}
    points = []
    for name, o in timed.items():
        x = o.get("arithmetic_intensity_flops_per_byte")
        if x and o.get("achieved_flops_per_s"):
            points.append((f"training: {name}", x, o["achieved_flops_per_s"], o["flops"]))
    for o in op_intensities(d):
        if o["section"] == "training":
            continue
        x = o["flops"] / o["bytes"]
        if x:
            points.append((f"{o['section']}: {o['op']}", x, min(peak, x * bw), o["flops"]))
    return points


def roofline_chart(d: dict[str, Any]) -> Figure | None:
    """The device roofline (bandwidth slope, dense peak) with each op at its arithmetic intensity: training
    ops at the FLOP/s flopcast's cost model achieves for them, serving ops at what their intensity allows;
    marker area follows the op's share of its section's FLOPs."""
    hw = d["hardware"]
    tr_prec = "bf16"
    if d.get("training") and str((d.get("inputs", {}).get("training") or {}).get("precision", "bf16")) == "fp8":
        tr_prec = "fp8"
    peak = hw["peak_flops_per_s"].get(tr_prec) or max(hw["peak_flops_per_s"].values())
    bw = hw["hbm_bandwidth_bytes_per_s"]
    points = _roofline_points(d, peak, bw)
    if not points:
        return None
    fig = _figure(height_in=3.9)
    ax = fig.add_subplot()
    intens = [x for _, x, _, _ in points]
    lo, hi = min(intens + [peak / bw]) / 4, max(intens + [peak / bw]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, x * bw) for x in xs], color="#333333", linewidth=1.5)
    ax.annotate(f"{format_si(peak, 'FLOP/s')} {tr_prec} peak", (hi, peak), xytext=(-4, 4), textcoords="offset points",
                ha="right", fontsize=8)
    ax.annotate(f"{format_si(bw, 'B/s')}", (lo * 2, lo * 2 * bw), xytext=(4, 6), textcoords="offset points", fontsize=8)
    totals: dict[str, float] = {}
    for label, _, _, flops in points:
        totals[label.split(":")[0]] = totals.get(label.split(":")[0], 0.0) + flops
    for i, (label, x, y, flops) in enumerate(points):
        section = label.split(":")[0]
        ax.scatter([x], [y], s=30 + 300 * flops / (totals[section] or 1), marker="o" if section == "training" else "s",
                   color=COLORS[i % len(COLORS)], alpha=0.85, edgecolors="white", zorder=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=peak * 2.5)
    ax.set_xlabel("arithmetic intensity (FLOP per byte of memory traffic)")
    ax.set_ylabel("FLOP/s per device")
    _log_axis(ax.yaxis, lambda v, _p: format_si(v, "").strip())
    ax.legend(fontsize=7, frameon=False, ncols=2, loc="lower right")
    _style(ax)
    ax.set_title(f"Roofline of {hw['id']}: the ops of one layer "
                 + ("(training: as the cost model times them)" if d.get("training", {}) and
                    (d["training"] or {}).get("ops") else ""), loc="left", fontsize=10)
    return fig


def power_cost_chart(d: dict[str, Any]) -> Figure | None:
    """Left: facility power by consumer. Right: cost and energy accumulating over the run (training with
    total_tokens: its effective duration; otherwise a day of steady operation)."""
    est = d.get("training") if (d.get("training") or {}).get("power_breakdown_w") else d.get("serving")
    if not est or not est.get("power_breakdown_w"):
        return None
    pb = est["power_breakdown_w"]
    fig = _figure(height_in=3.3)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.4))
    parts = [("accelerators", pb["devices_w"]), ("hosts", pb["hosts_w"]), ("network", pb["network_w"]),
             ("cooling, losses", est["power_facility_w"] - est["power_it_w"])]
    bottom = 0.0
    for i, (name, w) in enumerate(parts):
        left.bar([0], [w], bottom=bottom, color=COLORS[i], label=f"{name} {format_si(w, 'W')}", width=0.6)
        bottom += w
    left.set_xticks([])
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_si(v, "W")))
    left.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0.45, 1))
    left.set_xlim(-0.5, 2.2)
    _style(left)
    left.set_title(f"Facility power {format_si(est['power_facility_w'], 'W')}", loc="left", fontsize=10)
    if est.get("datacenter_period") == "run" and est.get("time_to_train_s"):
        run_s = est.get("effective_time_to_train_s") or est["time_to_train_s"]
        cost, energy_j = est.get("cost_usd"), est["energy_facility_j"]
        what = f"run ({duration(run_s)})"
    else:
        run_s = 86400.0
        hours = 24.0
        cost = est.get("cost_usd") * hours if est.get("cost_usd") is not None else None
        energy_j = est["energy_facility_j"] * hours
        what = "day of operation"
    days = [run_s / 86400 * i / 50 for i in range(51)]
    if cost is not None:
        right.plot(days, [cost * i / 50 for i in range(51)], color=COLORS[3])
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: money(v)))
        right.set_ylabel("cost so far")
    else:
        right.plot(days, [energy_j / 3.6e9 * i / 50 for i in range(51)], color=COLORS[2])
        right.set_ylabel("facility energy so far (MWh)")
    right.set_xlabel("days")
    _style(right)
    energy = f"{energy_j / 3.6e9:,.0f} MWh" if energy_j >= 3.6e10 else f"{energy_j / 3.6e6:,.1f} kWh" \
        if energy_j < 3.6e9 else f"{energy_j / 3.6e9:,.1f} MWh"
    right.set_title(f"Over the {what}: {money(cost)}, {energy}", loc="left", fontsize=10)
    return fig


CHARTS: tuple[tuple[str, str, Callable[..., Figure | None], bool], ...] = (
    # name, title, function, needs ChartData
    ("memory", "Memory per device against capacity", memory_chart, False),
    ("step-time", "Training step time by part", step_time_chart, False),
    ("pareto", "Pareto front of plans", pareto_chart, True),
    ("latency", "Latency against throughput, with the SLO", latency_chart, True),
    ("cdf", "TTFT and TPOT distributions, with the SLO", cdf_chart, True),
    ("roofline", "Roofline of the ops", roofline_chart, False),
    ("power-cost", "Power and cost over the run", power_cost_chart, False),
)


def figures(d: dict[str, Any], data: ChartData) -> list[tuple[str, str, Figure]]:
    """Every chart the plan has data for, in reading order: (name, title, figure)."""
    out = []
    for name, title, fn, needs_data in CHARTS:
        fig = fn(d, data) if needs_data else fn(d)
        if fig is not None:
            out.append((name, title, fig))
    return out


def write_plots(d: dict[str, Any], data: ChartData, directory: str | Path) -> list[str]:
    """Write every chart as DIR/NAME.svg (directory created); the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, _, fig in figures(d, data):
        path = out / f"{name}.svg"
        path.write_text(to_svg(fig))
        written.append(str(path))
    return written
