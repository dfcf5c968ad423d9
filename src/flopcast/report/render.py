"""Human renderings (rich tables) of reports. Numbers are shown with units; JSON stays in SI."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, JustifyMethod
from rich.table import Table

from flopcast.units import format_bytes, format_count, format_si


def _kv_table(title: str, rows: list[tuple[str, str]], *, note: str | None = None) -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    if note:
        t.caption = note
    return t


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _value(name: str, value: Any) -> str:
    """An assumption's value for people: a number named in bytes or watts gets its unit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if name.endswith("_bytes"):
            return format_bytes(value)
        if name.endswith("_bytes_per_s"):
            return format_si(value, "B/s")
        if name.endswith("_w") or name.endswith("_w_per_device"):
            return format_si(value, "W")
        if isinstance(value, float) and value.is_integer():
            return f"{value:,.0f}"
    return str(value)


def _assumptions(d: dict[str, Any]) -> Table:
    return _kv_table("Assumptions", [(a["name"], f"{_value(a['name'], a['value'])} ({a['why']})")
                                     for a in d["assumptions"]])


def _comparison(title: str, columns: tuple[str, ...], rows: list[dict[str, Any]], cells) -> tuple[Table, list]:
    """A predicted-vs-measured table of the used rows, and the (id, reason) of the skipped ones."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("id", "model", "hardware") else "right")
    skipped = []
    for r in rows:
        if r["skipped"]:
            skipped.append((r["id"], r["skipped"]))
        else:
            t.add_row(*cells(r))
    return t, skipped


def model_tables(d: dict[str, Any]) -> Group:
    arch = d["architecture"]
    rows = [("family", arch["family"]), ("layers", str(arch["num_layers"])),
            ("hidden", str(arch["hidden_size"])), ("vocab", str(arch["vocab_size"])),
            ("attention", f"{arch['attention']}, {arch['num_heads']} heads"
             + (f", {arch['num_kv_heads']} kv heads x {arch['head_dim']}" if "num_kv_heads" in arch else
                f", kv_lora {arch.get('kv_lora_rank')} + rope {arch.get('qk_rope_head_dim')}"))]
    if "num_experts" in arch:
        rows.append(("experts", f"{arch['experts_per_token']} of {arch['num_experts']} routed "
                     f"(width {arch['expert_ffn_hidden_size']}), shared width {arch['shared_ffn_hidden_size']}, "
                     f"{arch['num_moe_layers']} MoE layers"))
    if "ffn_hidden_size" in arch:
        rows.append(("dense FFN width", str(arch["ffn_hidden_size"])))
    if "sliding_window" in arch:
        rows.append(("sliding window", f"{arch['sliding_window']} on {arch['num_sliding_layers']} layers"))
    rows.append(("embeddings", "tied" if arch["tie_embeddings"] else "untied"))
    rows += [
        ("params total", f"{d['params_total']:,} ({format_count(d['params_total'])})"),
        ("params active / token", f"{d['params_active']:,} ({format_count(d['params_active'])})"),
    ]
    if d.get("reported_params"):
        rows.append(("reported (model card)", format_count(d["reported_params"])))
    af = d["attention_flops_per_token"]
    rows += [
        (f"forward FLOP/token @ {d['seq_len']}",
         f"{format_si(d['forward_flops_per_token'], 'FLOP')} ({d['forward_flops_convention']} attention)"),
        ("  matmul", format_si(d["matmul_flops_per_token"], "FLOP")),
        ("  attention causal / full", f"{format_si(af['causal'], 'FLOP')} / {format_si(af['full'], 'FLOP')}"),
        (f"KV cache / token ({d['kv_dtype']})",
         f"{d['kv_cache_bytes_per_token']:,.0f} B ({format_bytes(d['kv_cache_bytes_per_token'])})"),
        (f"KV cache / {d['seq_len']}-token sequence", format_bytes(d["kv_cache_bytes_per_sequence"])),
        ("weights bf16 / fp8 / fp4", " / ".join(format_bytes(d["weights_bytes"][k]) for k in ("bf16", "fp8", "fp4"))),
    ]
    main = _kv_table(f"Model {d['name']}", rows)
    bd = Table(title="Parameters by component", title_justify="left")
    bd.add_column("component/sub")
    bd.add_column("params", justify="right")
    bd.add_column("share", justify="right")
    total = d["params_total"]
    for k, v in d["params_breakdown"].items():
        bd.add_row(k, f"{v:,}", f"{100 * v / total:.1f}%")
    parts: list[Any] = [main, bd]
    notes = []
    for u in d.get("unmodeled_fields", []):
        notes.append(f"not modeled: {u['field']}: {u['why']}")
    for a in d.get("assumptions", []):
        notes.append(f"assumed {a['name']} = {a['value']} ({a['why']})")
    if notes:
        parts.append(_kv_table("Notes", [("-", n) for n in notes]))
    return Group(*parts)


def hardware_rows(h: dict[str, Any]) -> list[tuple[str, str]]:
    peaks = ", ".join(f"{k} {format_si(v, 'FLOP/s')}" for k, v in h["peak_flops_per_s"].items())

    def opt(v, f):
        return f(v) if v is not None else "n/a"

    return [
        ("name", f"{h['name']} ({h['vendor']}, {h['status']})"),
        ("memory", f"{format_bytes(h['hbm_capacity_bytes'])} {h['memory_kind']}, "
                   f"{format_si(h['hbm_bandwidth_bytes_per_s'], 'B/s')}"),
        ("dense peaks", peaks),
        ("scale-up", f"{opt(h['scale_up_bandwidth_bytes_per_s'], lambda v: format_si(v, 'B/s'))} per direction, "
                     f"domain {h['scale_up_domain']}"),
        ("scale-out", f"{opt(h['scale_out_bandwidth_bytes_per_s'], lambda v: format_si(v * 8, 'b/s'))} per device"),
        ("node", f"{h['node_size']} devices, host memory "
                 f"{opt(h['host_memory_bytes_per_node'], format_bytes)}"),
        ("TDP", opt(h["tdp_w"], lambda v: f"{v:,.0f} W")),
        *([("measured power", f"{h['power_idle_w'] or 0:,.0f} W idle, {h['power_max_w']:,.0f} W max")]
          if h.get("power_max_w") else []),
    ]


def hardware_table(h: dict[str, Any]) -> Group:
    src = _kv_table("Sources", [(k, v) for k, v in h["sources"].items()])
    return Group(_kv_table(f"Hardware {h['id']}", hardware_rows(h)), src)


def models_list_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Models (exact counts, as transformers builds them)", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("id", "left"), ("family", "left"), ("attention", "left"), ("layers", "right"), ("params", "right"),
        ("active", "right"))
    for c, j in columns:
        t.add_column(c, justify=j)
    for r in rows:
        t.add_row(r["id"], r["family"], r["attention"], str(r["num_layers"]),
                  format_count(r["params_total"]), format_count(r["params_active"]))
    return t


def hardware_list_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Accelerators (dense peaks, per-direction links)", title_justify="left")
    t.caption = "* announced, not shipping; 16-bit peak is bf16, or fp16 (f) where bf16 is absent"
    for c in ("id", "memory", "mem BW", "16-bit", "fp8", "int8", "scale-up/dir", "domain", "TDP"):
        t.add_column(c, justify="left" if c == "id" else "right", no_wrap=True)
    for h in rows:
        p = h["peak_flops_per_s"]
        su = h["scale_up_bandwidth_bytes_per_s"]
        half = (format_si(p["bf16"], "FLOP/s") if "bf16" in p else
                format_si(p["fp16"], "FLOP/s") + " f" if "fp16" in p else "-")
        t.add_row(
            h["id"] + ("*" if h["status"] == "announced" else ""), format_bytes(h["hbm_capacity_bytes"]),
            format_si(h["hbm_bandwidth_bytes_per_s"], "B/s"), half,
            format_si(p["fp8"], "FLOP/s") if "fp8" in p else "-",
            format_si(p["int8"], "OP/s") if "int8" in p else "-",
            format_si(su, "B/s") if su else "-", str(h["scale_up_domain"]),
            f"{h['tdp_w']:,.0f} W" if h["tdp_w"] else "-",
        )
    return t


def _merged_assumptions(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's assumptions and its sections', each (name, value) once, in first-seen order."""
    seen, out = set(), []
    for part in (d, d.get("training") or {}, d.get("serving") or {}, d.get("simulation") or {}):
        for a in part.get("assumptions", []):
            key = (a["name"], str(a["value"]))
            if key not in seen:
                seen.add(key)
                out.append(a)
    return out


def verdict_table(d: dict[str, Any]) -> Group:
    """The briefing's first block: a headline sentence and the findings (fit, time, cost, power, carbon)."""
    from flopcast.report.briefing import headline, verdict

    mark = {True: "yes", False: "NO", None: ""}
    t = Table(title="Verdict", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")
    for f in verdict(d):
        t.add_row(f.label, mark[f.ok], f.value)
    return Group(headline(d), t)


def plan_tables(d: dict[str, Any]) -> Group:
    """A plan as a briefing: the verdict first, then the sections, then the inputs (model, hardware,
    cluster), then every assumption once."""
    c = d["cluster"]
    hw = d["hardware"]
    cl_rows = [
        ("devices", f"{c['num_devices']:,} x {hw['id']} in {c['num_nodes']:,} nodes of {c['devices_per_node']}"),
        ("peak bf16", format_si(c["peak_flops_per_s"].get("bf16", 0), "FLOP/s")),
        ("memory", f"{format_bytes(c['hbm_capacity_bytes'])}, {format_si(c['hbm_bandwidth_bytes_per_s'], 'B/s')}"),
        ("TDP", format_si(c["tdp_w"], "W") if c["tdp_w"] else "n/a"),
        ("devices for weights alone", ", ".join(f"{k} {v}" for k, v in c["min_devices_for_weights"].items())),
    ]
    parts: list[Any] = [verdict_table(d)]
    if d.get("training"):
        parts.append(training_tables(d["training"], with_assumptions=False))
    if d.get("serving"):
        parts.append(serving_tables(d["serving"], with_assumptions=False))
    if d.get("simulation"):
        parts.append(simulation_tables(d["simulation"], with_assumptions=False))
    parts += [_kv_table("Cluster", cl_rows), model_tables(d["model"]),
              _kv_table(f"Hardware {hw['id']}", hardware_rows(hw))]
    if d["pending_sections"]:
        parts.append(_kv_table("Not yet estimated by this version",
                               [("-", ", ".join(d["pending_sections"]))]))
    merged = _merged_assumptions(d)
    if merged:
        parts.append(_assumptions({"assumptions": merged}))
    if d.get("catalog_revision"):
        parts.append(f"flopcast {d['flopcast_version']}, catalog revision {d['catalog_revision']}")
    return Group(*parts)


def _secs(s: float) -> str:
    """A time for a table cell: 3.79 s, 142 ms, 0.457 ms."""
    return f"{s:.3g} s" if s >= 1 else f"{s * 1e3:.3g} ms"


def print_renderable(obj: Any) -> None:
    import os
    import sys

    # A terminal's tables are sized to its width; piped output honours COLUMNS, else gets 140 columns
    # rather than rich's 80, so tables do not wrap.
    # markup off: catalog sources contain [brackets]; highlight off: it costs ~50 ms per report.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    Console(width=width, markup=False, highlight=False, emoji=False).print(obj)


def memory_verdict_text(d: dict[str, Any]) -> str:
    """fits / marginal / DOES NOT FIT, with the memory error band where it decides."""
    verdict = d.get("memory_verdict", "fits" if d["fits"] else "does not fit")
    band = d.get("memory_band_frac")
    if verdict == "fits":
        return "fits"
    text = "marginal" if verdict == "marginal" else "DOES NOT FIT"
    return f"{text}, memory error band ±{100 * band:.0f}%" if band else text


def rank_memory_table(d: dict[str, Any]) -> Table:
    """Memory of each pipeline rank by part (first, last and the worst when there are more than 8)."""
    ranks = d["memory_per_rank"]
    if len(ranks) > 8:
        worst = max(ranks, key=lambda r: r["total_bytes"])
        ranks = sorted({r["rank"]: r for r in (ranks[0], worst, ranks[-1])}.values(), key=lambda r: r["rank"])
    t = Table(title="Memory per pipeline rank", title_justify="left")
    cols = ("weights", "gradients", "optimizer", "activations", "comm_buffers", "workspace", "fragmentation")
    for c in ("rank", *cols, "total"):
        t.add_column(c, justify="right")
    for r in ranks:
        t.add_row(str(r["rank"]), *(format_bytes(r[f"{c}_bytes"]) for c in cols), format_bytes(r["total_bytes"]))
    return t


def pipeline_table(pipe: dict[str, Any], m: int) -> Table:
    """Per pipeline rank: its stage work, point-to-point sends and idle time (the bubble) over the
    simulated step's pipelined part; past 16 ranks the first two, the middle, the last two and the
    rank with the largest bubble."""
    ranks = pipe["ranks"]
    total = pipe["pipelined_s"]
    shown = list(range(len(ranks)))
    if len(ranks) > 16:
        idlest = max(shown, key=lambda r: ranks[r]["bubble_s"])
        shown = sorted({0, 1, len(ranks) // 2, len(ranks) - 2, len(ranks) - 1, idlest})
    t = Table(title=f"Pipeline ({pipe['schedule']}, {m} micro-batches): {_secs(total)} per step, by rank",
              title_justify="left")
    for col in ("rank", "stage work", "p2p sends", "bubble", "bubble share"):
        t.add_column(col, justify="left" if col == "rank" else "right")
    for r in shown:
        row = ranks[r]
        t.add_row(str(r), _secs(row["busy_s"]), _secs(row["p2p_s"]), _secs(row["bubble_s"]),
                  f"{100 * row['bubble_s'] / total:.1f}%" if total else "-")
    return t


def training_tables(d: dict[str, Any], *, with_assumptions: bool = True) -> Group:
    mem = d["memory_breakdown_bytes"]
    total = d["memory_per_device_bytes"]
    title = (f"Memory per device ({memory_verdict_text(d)}: "
             f"{format_bytes(total)} of {format_bytes(d['memory_capacity_bytes'])})")
    m = Table(title=title, title_justify="left", min_width=len(title))
    m.add_column("part")
    m.add_column("bytes", justify="right")
    m.add_column("share", justify="right")
    for k, v in mem.items():
        m.add_row(k, format_bytes(v), f"{100 * v / total:.1f}%")
    st = d["step_time_s"]
    t = Table(title=f"Step time {st:.3f} s", title_justify="left")
    t.add_column("part")
    t.add_column("time", justify="right")
    t.add_column("share", justify="right")
    for k, v in d["step_time_breakdown_s"].items():
        if v:
            t.add_row(k, _secs(v), f"{100 * v / st:.1f}%")
            if k == "compute":
                for sub, sv in d.get("compute_breakdown_s", {}).items():
                    if sv:
                        t.add_row(f"  {sub}", _secs(sv), f"{100 * sv / st:.1f}%", style="dim")
    p = d["parallel"]
    rows = [
        ("plan", f"{plan_text(p)} ({d['num_microbatches']} micro-batches per step)"),
        ("throughput", f"{d['tokens_per_s']:,.0f} tokens/s, {d['tokens_per_s_per_device']:,.0f} per device"),
        ("MFU / HFU", f"{100 * d['mfu']:.1f}% / {100 * d['hfu']:.1f}%"),
        ("model FLOPs / step", format_si(d["model_flops_per_step"], "FLOP")),
    ]
    if d.get("phases"):
        rows.insert(0, ("main phase", f"{d['main_phase']} (the most tokens): the plan, memory, step and power shown "
                                      "are its; times, energy and cost are sums over the phases"))
    if d["time_to_train_s"] is not None:
        rows.append(("time to train", f"{d['time_to_train_s'] / 86400:,.1f} days, "
                                      f"{d['device_hours']:,.0f} device-hours"
                                      + (f" ({len(d['phases'])} phases)" if d.get("phases") else "")))
    if d.get("host_memory_per_node_bytes"):
        rows.append(("host memory (offload)", format_bytes(d["host_memory_per_node_bytes"]) + " per node"))
    if d.get("nvme_per_device_bytes"):
        rows.append(("NVMe (offload)", format_bytes(d["nvme_per_device_bytes"]) + " per device"))
    if d.get("infeasible_reason"):
        rows.append(("does not fit", d["infeasible_reason"]))
    parts: list[Any] = [_kv_table("Training", rows)]
    if d.get("phases"):
        parts.append(phases_table(d))
    parts += [m]
    if len(d.get("memory_per_rank") or ()) > 1:
        parts.append(rank_memory_table(d))
    parts.append(t)
    if d.get("pipeline"):
        parts.append(pipeline_table(d["pipeline"], d["num_microbatches"]))
    if "power_it_w" in d:
        parts.append(datacenter_table(d, "run" if d.get("datacenter_period") == "run" else "hour of training"))
    if with_assumptions and d.get("assumptions"):
        parts.append(_assumptions(d))
    return Group(*parts)


def phases_table(d: dict[str, Any]) -> Table:
    """A multi-phase run, one row per phase and the run's totals (the sums of the JSON)."""
    from flopcast.report.briefing import duration, energy, money

    t = Table(title=f"Phases (main: {d['main_phase']})", title_justify="left")
    for c in ("phase", "seq", "batch", "tokens", "plan", "memory", "step", "MFU", "time", "device-h", "energy", "cost"):
        t.add_column(c, justify="left" if c in ("phase", "plan") else "right", no_wrap=True)

    def plan(p: dict[str, Any]) -> str:
        return " ".join(f"{k}{p[k]}" for k in ("tp", "pp", "dp", "cp", "ep") if k in ("tp", "pp", "dp") or p[k] > 1)

    def fit(ok: bool, text: str) -> str:
        return text if ok else f"{text} NO"

    for p in d["phases"]:
        t.add_row(p["name"] + (" *" if p["main"] else ""), f"{p['seq_len']:,}", format_count(p["tokens_per_step"]),
                  format_count(p["total_tokens"]), plan(p["parallel"]),
                  fit(p["fits"], format_bytes(p["memory_per_device_bytes"])), _secs(p["step_time_s"]),
                  f"{100 * p['mfu']:.1f}%", duration(p["time_to_train_s"]), format_count(p["device_hours"]),
                  energy(p["energy_facility_j"]) if "energy_facility_j" in p else "-",
                  money(p.get("cost_usd")) if "cost_usd" in p else "-")
    t.add_row("total", "", "", format_count(d["total_tokens"]), "", "all fit" if d["fits"] else "NO", "", "",
              duration(d["time_to_train_s"]), format_count(d["device_hours"]),
              energy(d["energy_facility_j"]) if "energy_facility_j" in d else "-",
              money(d.get("cost_usd")) if "cost_usd" in d else "-", style="bold")
    t.caption = ("* the main phase (the most tokens); batch in tokens; time without failures and checkpoints "
                 "(effective time under Datacenter); energy at the facility")
    return t


def validation_tables(d: dict[str, Any]) -> Group:
    t, skipped = _comparison(
        "Training step time: predicted vs measured",
        ("id", "model", "hardware", "devices", "measured s", "predicted s", "error", "fits"), d["rows"],
        lambda r: (r["id"], r["model"], r["hardware"], str(r["num_devices"]), f"{r['measured_step_s']:.4g}",
                   f"{r['predicted_step_s']:.4g}", f"{100 * r['error_frac']:+.1f}%", "yes" if r["fits"] else "no"))
    s = d["summary"]
    summ = _kv_table("Summary", [
        ("rows used / skipped", f"{s['num_used']} / {s['num_skipped']}"),
        ("KORTH-E2E mean / max |error|", f"{_pct(s['korth_e2e_mean_abs_error'])} / {_pct(s['korth_e2e_max_abs_error'])}"),
        ("all rows median / max |error|", f"{_pct(s['median_abs_error'])} / {_pct(s['max_abs_error'])} ({s['worst_row']})"),
    ])
    return Group(t, summ, _kv_table("Skipped", skipped))


def _layout(p: dict[str, Any]) -> str:
    """A plan's pipeline layout as written in `parallel.pipeline_layout` (even: the default split)."""
    layout = p.get("pipeline_layout")
    if layout is None:
        return "even"
    return layout if isinstance(layout, str) else ",".join(map(str, layout))


def _offload(p: dict[str, Any]) -> str:
    """The offload column: `offload`, or the ZeRO-Infinity placement when its keys are set."""
    if "offload_param" not in p:
        return str(p["offload"])
    opt = p.get("offload_optimizer") or p["offload"]
    return f"param {p['offload_param']}, optimizer {opt}" + (f", tiling {p['tiling']}" if p.get("tiling", 1) > 1 else "")


def _plan_cols(p: dict[str, Any]) -> list[str]:
    """Every key that makes the plan: a row copied into `parallel:` gives the same figures."""
    return [str(p["tp"]), str(p["pp"]), str(p["dp"]), str(p["cp"]), str(p["ep"]), str(p.get("etp") or p["tp"]),
            "y" if p["sp"] else "n", str(p["vpp"]), p.get("pp_schedule", "1f1b"), _layout(p), str(p["zero_stage"]),
            str(p.get("shard_group") or "all"), p["recompute"], "+".join(p.get("recompute_modules") or []) or "-",
            str(p["microbatch_seqs"]), _offload(p), f"{p.get('activation_offload') or 0:g}",
            "y" if p.get("ep_comm_overlap") else "n"]


# the table header of each `parallel` key, in _plan_cols' order
PLAN_KEYS = {"tp": "tp", "pp": "pp", "dp": "dp", "cp": "cp", "ep": "ep", "etp": "etp", "sp": "sp", "vpp": "vpp",
             "schedule": "pp_schedule", "layout": "pipeline_layout", "zero": "zero_stage", "shard": "shard_group",
             "recompute": "recompute", "modules": "recompute_modules", "mb": "microbatch_seqs", "offload": "offload",
             "act offload": "activation_offload", "ep overlap": "ep_comm_overlap"}
PLAN_HEADERS = tuple(PLAN_KEYS)


def plan_text(p: dict[str, Any]) -> str:
    """The plan in one line, every key that makes it (as `parallel:` takes them)."""
    return " ".join(f"{h} {v}" for h, v in zip(PLAN_HEADERS, _plan_cols(p), strict=True))


def trim_front(front: list[dict[str, Any]], *, max_rows: int, min_frac: float = 0.5) -> list[dict[str, Any]]:
    """The Pareto points a person reads: those within `min_frac` of the front's best throughput, at most
    `max_rows` of them spread evenly along the front (its first and last kept point included)."""
    if not front:
        return []
    best = max(p["tokens_per_s_per_device"] for p in front)
    kept = [p for p in front if p["tokens_per_s_per_device"] >= min_frac * best]
    if len(kept) <= max_rows:
        return kept
    step = (len(kept) - 1) / (max_rows - 1)
    return [kept[round(i * step)] for i in range(max_rows)]


def _search_band(p: dict[str, Any]) -> str:
    lo, hi = p["step_time_s_band"]
    return f"{lo:.3g}-{hi:.3g} s"


def _search_note(p: dict[str, Any]) -> str:
    """A searched plan's flags: ties the best, marginal memory, mechanisms with little validation."""
    notes = ["tie" if p["within_error_of_best"] else ""]
    if p["marginal"]:
        notes.append("marginal")
    if p["little_validated_mechanisms"]:
        notes.append("few runs: " + ", ".join(p["little_validated_mechanisms"]))
    return "; ".join(n for n in notes if n)


def search_tables(d: dict[str, Any]) -> Group:
    def table(title: str, rows: list[dict[str, Any]], caption: str | None = None) -> Table:
        cols = [(h, i) for i, h in enumerate(PLAN_HEADERS)]
        same = [h for h, i in cols if len({_plan_cols(p)[i] for p in rows}) == 1]
        shown = [(h, i) for h, i in cols if h not in same or h in ("tp", "pp", "dp")]
        if rows and same:
            title += " (all: " + ", ".join(f"{h} {_plan_cols(rows[0])[i]}" for h, i in cols
                                          if h in same and h not in ("tp", "pp", "dp")) + ")"
        t = Table(title=title, title_justify="left", caption=caption)
        t.add_column("#", justify="right")
        for h, _ in shown:
            t.add_column(h, justify="right")
        for h in ("step", "band", "tokens/s/dev", "MFU", "memory", "headroom", "note"):
            t.add_column(h, justify="right", no_wrap=h != "note")
        for i, p in enumerate(rows, 1):
            plan = _plan_cols(p)
            t.add_row(str(i), *(plan[j] for _, j in shown), f"{p['step_time_s']:.3g} s", _search_band(p),
                      f"{p['tokens_per_s_per_device']:,.0f}", f"{100 * p['mfu']:.1f}%",
                      format_bytes(p["memory_per_device_bytes"]),
                      f"{format_bytes(p['memory_capacity_bytes'] - p['memory_per_device_bytes'])} "
                      f"({100 * p['memory_headroom_frac']:.0f}%)", _search_note(p))
        return t

    rows = [
        ("plans evaluated", f"{d['num_evaluated']:,} ({d['num_fitting']:,} fit in memory)"),
        ("objective", d["objective"]), ("backend", d["backend"]),
        ("order", f"plans within the step-time band (+{_pct(d['time_band_frac'])}) of the fastest tie; ties "
                  "go to fewer little-validated mechanisms, then memory headroom, then fewer mechanisms; "
                  f"a plan within the memory band ({_pct(d['memory_band_frac'])}) of capacity is marginal and "
                  "comes after those with headroom"),
    ]
    for a in d.get("assumptions", []):
        if a["name"] in ("phase", "fixed"):
            rows.append((a["name"], f"{a['value']} ({a['why']})"))
    summary = _kv_table("Search", rows)
    front = trim_front(d["pareto"], max_rows=max(len(d["plans"]), 5))
    left = len(d["pareto"]) - len(front)
    parts: list[Any] = [summary, table("Best plans", d["plans"]),
                        table("Pareto front: throughput vs memory headroom", front,
                              f"{left} more points of the front (under half the best throughput, or between these) "
                              "in --json" if left else None)]
    if d["plans"]:
        best = d["plans"][0]
        bd = Table(title="Best plan: step-time breakdown", title_justify="left", min_width=30)
        bd.add_column("part")
        bd.add_column("time", justify="right")
        for k, v in best["step_time_breakdown_s"].items():
            if v:
                bd.add_row(k, _secs(v))
        parts.append(bd)
    return Group(*parts)


_SWEEP_CELLS: dict[str, tuple[str, Any]] = {
    "sp": ("sp", lambda v: "y" if v else "n"), "zero_stage": ("zero", str), "microbatch_seqs": ("mb", str),
    "step_time_s": ("step", lambda v: f"{v:.3g} s"), "tokens_per_s": ("tokens/s", lambda v: f"{v:,.0f}"),
    "tokens_per_s_per_device": ("per device", lambda v: f"{v:,.0f}"), "mfu": ("MFU", lambda v: f"{100 * v:.1f}%"),
    "memory_per_device_bytes": ("memory", format_bytes), "num_evaluated": ("plans", lambda v: f"{v:,}"),
    "fits": ("fits", lambda v: "yes" if v else "no"), "batch_size": ("batch", str),
    "output_tokens_per_s": ("out tok/s", lambda v: f"{v:,.0f}"),
    "cost_per_million_output_tokens_usd": ("$/Mtok", lambda v: f"{v:,.3g}"),
    "slo_met": ("SLO met", lambda v: "yes" if v else "no"), "slo_batch_size": ("batch @SLO", str),
    "slo_output_tokens_per_s": ("out tok/s @SLO", lambda v: f"{v:,.0f}"),
    "slo_output_tokens_per_s_per_device": ("per device @SLO", lambda v: f"{v:,.0f}"),
    "slo_tpot_s": ("TPOT @SLO", lambda v: f"{v * 1e3:,.1f} ms"),
    "slo_cost_per_million_output_tokens_usd": ("$/Mtok @SLO", lambda v: f"{v:,.3g}"),
}


def sweep_table(d: dict[str, Any]) -> Group:
    """One row per combination; short headers, numbers for people, columns equal in every row folded into
    the title (everything is in --json and --out)."""
    cols = [c for c in d["columns"] if c != "num_fitting" and (c != "error" or any(r.get(c) for r in d["rows"]))]

    def cell(c: str, v: Any) -> str:
        if v is None:
            return ""
        fmt = _SWEEP_CELLS.get(c, (c, None))[1]
        return fmt(v) if fmt else (f"{v:.4g}" if isinstance(v, float) else str(v))

    plan_keys = {"cp", "ep", "sp", "vpp", "zero_stage", "recompute", "microbatch_seqs", "offload"}
    same = [c for c in cols if len(d["rows"]) > 1 and c in plan_keys and len({cell(c, r.get(c)) for r in d["rows"]}) == 1]
    title = ("Sweep: serving per combination, cheapest per token at the SLO first" if "slo_met" in d["columns"]
             else "Sweep: best plan per combination")
    if same:
        title += " (all: " + ", ".join(f"{_SWEEP_CELLS.get(c, (c,))[0]} {cell(c, d['rows'][0].get(c))}"
                                       for c in same) + ")"
    t = Table(title=title, title_justify="left")
    shown = [c for c in cols if c not in same]
    for c in shown:
        t.add_column(_SWEEP_CELLS.get(c, (c.split(".")[-1],))[0], justify="left" if c == "error" else "right",
                     no_wrap=c != "error", overflow="fold")
    for r in d["rows"]:
        t.add_row(*(cell(c, r.get(c)) for c in shown))
    parts: list[Any] = [t]
    if d.get("written"):
        parts.append(_kv_table("Written", [("-", w) for w in d["written"]]))
    return Group(*parts)


def serving_tables(d: dict[str, Any], *, with_assumptions: bool = True) -> Group:
    s = d["inference"]
    rows = [
        ("configuration", f"tp {s['tp']} pp {s['pp']} dp {s['dp']} ep {s['ep']}, weights {s['weights_dtype']}, "
                          f"KV {s['kv_dtype']}, {s['input_tokens']} in / {s['output_tokens']} out"),
        ("batch", f"{d['batch_size']} sequences per replica (memory allows {d['max_batch_size']})"),
        ("KV cache / token", f"{d['kv_cache_bytes_per_token']:,.0f} B"),
        ("TTFT loaded / unloaded", f"{d['ttft_s'] * 1e3:,.1f} ms / {d['ttft_unloaded_s'] * 1e3:,.1f} ms"),
        ("TPOT", f"{d['tpot_s'] * 1e3:,.2f} ms ({1 / d['tpot_s']:,.1f} tokens/s per sequence)"),
        ("output tokens/s", f"{d['output_tokens_per_s']:,.0f} ({d['output_tokens_per_s_per_device']:,.0f} per device)"),
        ("total tokens/s", f"{d['total_tokens_per_s']:,.0f}"),
    ]
    if d.get("output_tokens_per_j"):
        rows.append(("output tokens / J (at TDP)", f"{d['output_tokens_per_j']:,.3f}"))
    if d.get("infeasible_reason"):
        rows.append(("does not fit", d["infeasible_reason"]))
    if d.get("at_slo"):
        rows.append(("at the SLO", slo_point(d["at_slo"])))
    mem = Table(title="Memory per device", title_justify="left")
    mem.add_column("part")
    mem.add_column("bytes", justify="right")
    for k, v in d["memory_breakdown_bytes"].items():
        mem.add_row(k, format_bytes(v))
    ops = Table(title="One iteration by op (ms): decode step vs prefill chunk", title_justify="left")
    ops.add_column("op")
    ops.add_column("decode", justify="right")
    ops.add_column("prefill", justify="right")
    for k in d["decode_step_breakdown_s"]:
        ops.add_row(k, f"{d['decode_step_breakdown_s'][k] * 1e3:.3f}", f"{d['prefill_breakdown_s'][k] * 1e3:.3f}")
    parts: list[Any] = [_kv_table("Serving", rows), mem, ops]
    if "power_it_w" in d:
        parts.append(datacenter_table(d, "hour of serving"))
    if with_assumptions and d.get("assumptions"):
        parts.append(_assumptions(d))
    return Group(*parts)


def steady_line(st: dict[str, Any]) -> str:
    """The simulation's steady state in one line (its `steady_state`)."""
    rate = st.get("achieved_output_tokens_per_s")
    cost = st.get("cost_per_million_output_tokens_usd")
    line = (f"after {st['warmup_requests']:,} warm-up requests: "
            + (f"{rate:,.0f} output tokens/s" if rate is not None else "no throughput (requests rejected)")
            + (f", ${cost:,.3f} per million output tokens" if cost is not None else ""))
    return line + ("" if st["settled"] else "; NOT SETTLED: the run is too short, simulate more requests")


def slo_point(a: dict[str, Any]) -> str:
    """The operating point at the SLO in one line (infer's `at_slo`)."""
    target = ", ".join(f"{k} {v * 1e3:,.0f} ms" for k, v in (("TTFT", a["ttft_p99_target_s"]),
                                                              ("TPOT", a["tpot_p99_target_s"])) if v is not None)
    if not a["met"]:
        return f"missed ({target}): {a['reason']}"
    cost = a.get("cost_per_million_output_tokens_usd")
    return (f"batch {a['batch_size']} of {a['largest_batch_size']} ({target}): {a['output_tokens_per_s']:,.0f} output "
            f"tokens/s, {a['output_tokens_per_s_per_sequence']:,.1f} per sequence, TPOT {a['tpot_s'] * 1e3:,.1f} ms"
            + (f", ${cost:,.3g} per million output tokens" if cost is not None else ""))


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:,.1f} ms"


def simulation_tables(d: dict[str, Any], *, with_assumptions: bool = True) -> Group:
    rows = [
        ("requests", f"{d['num_completed']:,} completed, {d['num_rejected']:,} rejected of {d['num_requests']:,} "
                     f"in {d['simulated_s']:,.1f} s ({d['scheduler']}, {d['num_replicas']} replicas)"),
        ("throughput", f"{d['output_tokens_per_s']:,.0f} output tokens/s, {d['requests_per_s']:,.2f} requests/s "
                       f"(analytic maximum {d['analytic_max_output_tokens_per_s']:,.0f} output tokens/s)"),
        ("engine", f"{d['num_iterations']:,} iterations, {d['mean_tokens_per_iteration']:,.1f} tokens per iteration, "
                   f"{d['num_preemptions']:,} preemptions"),
    ]
    pools = d.get("pools") or []
    if len(pools) > 1:
        rows.append(("pools", "; ".join(
            f"{p['role']} {p['replicas']} x {p['hardware']} (tp {p['tp']}" + (f", pp {p['pp']}" if p["pp"] > 1 else "")
            + (f", ep {p['ep']}" if p["ep"] > 1 else "") + f"), {100 * p['busy_frac']:.0f}% busy" for p in pools)
            + (f"; KV transfer p50 {_ms(d['kv_transfer_p50_s'])}, p99 {_ms(d['kv_transfer_p99_s'])}"
               if d.get("kv_transfer_p50_s") is not None else "")))
    if d.get("infeasible_reason"):
        rows.append(("does not fit", d["infeasible_reason"]))
    if d.get("power_facility_w") is not None and d.get("energy_per_output_token_j") is not None:
        cost = d.get("cost_per_million_output_tokens_usd")
        rows.append(("datacenter", f"{100 * d['busy_frac']:.0f}% busy, facility {d['power_facility_w'] / 1e3:,.1f} kW, "
                                   f"{d['energy_per_output_token_j']:,.2f} J per output token"
                                   + (f", ${cost:,.3f} per million output tokens" if cost is not None else "")))
    if d["slo_attainment_frac"] is not None:
        rows.append(("SLO", f"{100 * d['slo_attainment_frac']:.1f}% of requests meet it; goodput "
                            f"{d['goodput_requests_per_s']:,.2f} requests/s"))
    st = d.get("steady_state")
    if st:
        rows.append(("steady state", steady_line(st)))
    lat = Table(title="Latency (all requests | after the warm-up)" if st else "Latency", title_justify="left")
    for col in ("", "p50", "p99") + (("steady p50", "steady p99") if st else ()):
        lat.add_column(col, justify="right" if col else "left")
    lat.add_row("TTFT", _ms(d["ttft_p50_s"]), _ms(d["ttft_p99_s"]),
                *((_ms(st["ttft_p50_s"]), _ms(st["ttft_p99_s"])) if st else ()))
    lat.add_row("TPOT", _ms(d["tpot_p50_s"]), _ms(d["tpot_p99_s"]),
                *((_ms(st["tpot_p50_s"]), _ms(st["tpot_p99_s"])) if st else ()))
    lat.add_row("end to end", _ms(d["e2e_p50_s"]), _ms(d["e2e_p99_s"]), *(("", "") if st else ()))
    parts: list[Any] = [_kv_table("Simulation", rows), lat]
    if with_assumptions and d.get("assumptions"):
        parts.append(_assumptions(d))
    return Group(*parts)


def audit_table(d: dict[str, Any]) -> Group:
    t = Table(title=f"Claims audit ({d['source']})", title_justify="left", show_lines=True)
    for col in ("id", "claim", "claimed", "flopcast", "verdict", "why"):
        t.add_column(col, overflow="fold")
    style = {"consistent": "green", "inconsistent": "red", "unverifiable": "yellow"}
    for c in d["claims"]:
        t.add_row(c["id"], c["claim_text"], c["claimed"], c["flopcast"] or "-", c["verdict"], c["explanation"],
                  style=None if c["verdict"] == "consistent" else style[c["verdict"]])
    s = d["summary"]
    return Group(t, f"{s['consistent']} consistent, {s['inconsistent']} inconsistent, {s['unverifiable']} unverifiable")


def _tokens(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fleet_tables(d: dict[str, Any]) -> Group:
    slo = d["slo"]
    target = ", ".join(f"{k.replace('_s', '')} <= {_ms(v)}" for k, v in slo.items() if v is not None)
    if d["meets_slo"]:
        fleet = f"{d['replicas']:,} replicas = {d['num_devices']:,} devices"
        if d.get("prefill_replicas") is not None:
            fleet += f" ({d['prefill_replicas']:,} prefill + {d['decode_replicas']:,} decode)"
        if d.get("cost_per_hour_usd") is not None:
            fleet += f", ${d['cost_per_hour_usd']:,.2f} per hour"
    else:
        fleet = d["reason"]
    rows = [("SLO", target), ("fleet", fleet),
            ("analytic estimate", f"{d['analytic_min_replicas']:,} replicas (offered load over one unit's analytic "
                                  "maximum, per pool)")]
    for p in d.get("pools") or []:
        if p["unit_replicas"] > 1 or p["role"] != "both":
            rows.append((f"{p['role']} pool", f"{p['hardware']} tp {p['tp']} pp {p['pp']} ep {p['ep']}; unit "
                                              f"{p['unit_replicas']} replicas = {p['unit_devices']} devices"
                                              + (f"; {p['replicas']:,} replicas" if p["replicas"] else "")))
    st = d.get("steady_state") or {}
    if st.get("num_requests"):
        rows.append(("steady state", f"{st['num_requests']:,} requests simulated, first {st['warmup_requests']:,} "
                                     f"excluded as warm-up, {'settled' if st['settled'] else 'NOT settled'}"))
    if d.get("plot"):
        rows.append(("plot", d["plot"]))
    t = Table(title="Latency-throughput curve (steady state)", title_justify="left")
    for col in ("replicas", "devices", "offered tok/s", "achieved tok/s", "TTFT p50", "TTFT p99", "TPOT p50",
                "TPOT p99", "settled", "meets SLO"):
        t.add_column(col, justify="right")
    for r in d.get("curve") or d["trials"]:
        label = (f"{r['prefill_replicas']}P+{r['decode_replicas']}D" if "prefill_replicas" in r
                 else f"{r['replicas']:,}")
        t.add_row(label, f"{r['num_devices']:,}", _tokens(r.get("offered_output_tokens_per_s")),
                  _tokens(r.get("achieved_output_tokens_per_s")), _ms(r.get("ttft_p50_s")), _ms(r["ttft_p99_s"]),
                  _ms(r.get("tpot_p50_s")), _ms(r["tpot_p99_s"]), "yes" if r.get("settled", True) else "no",
                  "yes" if r["meets_slo"] else "no")
    parts: list[Any] = [_kv_table("Fleet sizing", rows), t]
    if d["simulation"]:
        parts.append(simulation_tables(d["simulation"]))
    return Group(*parts)


def inference_validation_tables(d: dict[str, Any]) -> Group:
    t, skipped = _comparison(
        "Serving throughput: predicted vs measured (output tokens/s)",
        ("id", "hardware", "devices", "batch", "measured", "predicted", "error"), d["rows"],
        lambda r: (r["id"], r["hardware"], str(r["num_devices"]), str(r["batch_size"]), f"{r['measured']:,.0f}",
                   f"{r['predicted']:,.0f}", f"{100 * r['error_frac']:+.1f}%"))
    s = d["summary"]
    summ = _kv_table("Summary", [("rows used / skipped", f"{s['num_used']} / {s['num_skipped']}"),
                                 ("median / max |error|", f"{_pct(s['median_abs_error'])} / {_pct(s['max_abs_error'])} "
                                                          f"({s['worst_row']})")])
    return Group(t, summ, _kv_table("Skipped", skipped))


def budget_table(d: dict[str, Any]) -> Group:
    if "deadline_s" in d:
        return deadline_table(d)
    rows = [
        ("devices", f"{d['num_devices']:,} x {d['hardware']} for {d['days']:g} days at {d['site']}"),
        ("facility power", format_si(d["power_facility_w"], "W")),
        ("facility energy", f"{d['energy_facility_j'] / 3.6e12:,.1f} GWh"),
        ("cost (device-hours)", "n/a" if d["cost_usd"] is None else f"${d['cost_usd']:,.0f}"),
        ("compute", format_si(d["compute_flops"], "FLOP")),
        ("compute-optimal model",
         f"{format_count(d['optimal_params'])} parameters on {format_count(d['optimal_tokens'])} tokens"),
        ("PUE", f"{d['pue']:.2f} ({d['cooling']}-cooled systems)"),
        ("emissions operational / embodied", f"{_mass(d['emissions_operational_kgco2e'])} / "
         + ("n/a" if d["emissions_embodied_kgco2e"] is None else _mass(d["emissions_embodied_kgco2e"])) + " CO2e"),
    ]
    return Group(_kv_table("Budget", rows), _assumptions(d))


def deadline_table(d: dict[str, Any]) -> Group:
    """`flopcast budget --deadline`: the chosen plan, then every hardware's fewest devices."""
    def money(x):
        return "n/a" if x is None else f"${x:,.0f}"

    rows = [
        ("run", f"{d['model']} on {format_count(d['tokens'])} tokens ({format_si(d['compute_flops'], 'FLOP')}) "
                f"within {d['deadline_s'] / 86400:g} days"),
        ("fewest devices", f"{d['num_devices']:,} x {d['hardware']} (limited by {d['limited_by']}), done in "
                           f"{d['time_to_train_s'] / 86400:.1f} days at goodput {d['goodput_frac']:.1%}"),
        ("cost (device-hours)", money(d["cost_usd"])),
        ("facility power / energy", f"{format_si(d['power_facility_w'], 'W')} / {_energy(d['energy_facility_j'])} "
                                    f"(PUE {d['pue']:.2f}, {d['cooling']}-cooled)"),
        ("emissions operational / embodied", f"{_mass(d['emissions_operational_kgco2e'])} / "
         + ("n/a" if d["emissions_embodied_kgco2e"] is None else _mass(d["emissions_embodied_kgco2e"])) + " CO2e"),
    ]
    t = Table(title="Every option (cheapest first)", title_justify="left")
    for c in ("hardware", "devices", "days", "cost", "PUE"):
        t.add_column(c, justify="left" if c == "hardware" else "right")
    for o in d["options"]:
        t.add_row(o["hardware"], f"{o['num_devices']:,}", f"{o['time_to_train_s'] / 86400:.1f}", money(o["cost_usd"]),
                  f"{o['pue']:.2f}")
    return Group(_kv_table("Deadline", rows), t, _assumptions(d))


def sites_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Sites (location-based grid carbon, industrial electricity price, typical PUE)", title_justify="left")
    for c in ("id", "gCO2e/kWh", "$/kWh", "PUE", "cooling", "year"):
        t.add_column(c, justify="left" if c == "id" else "right")
    for r in rows:
        t.add_row(r["id"], f"{r['grid_intensity_gco2e_per_kwh']:.0f}", f"{r['electricity_price_usd_per_kwh']:.3f}",
                  f"{r['pue']:.2f}", r["cooling"], str(r["year"] or ""))
    return t


def datacenter_table(d: dict[str, Any], period: str) -> Table:
    """Power, energy, emissions, cost (and reliability for training)."""
    pb = d["power_breakdown_w"]

    def money(x):
        return "n/a" if x is None else f"${x:,.0f}"

    rows = [
        ("power (IT / facility)", f"{format_si(d['power_it_w'], 'W')} / {format_si(d['power_facility_w'], 'W')} "
                                  f"(devices {format_si(pb['devices_w'], 'W')}, hosts {format_si(pb['hosts_w'], 'W')}, "
                                  f"network {format_si(pb['network_w'], 'W')})"),
        (f"energy per {period} (facility)", _energy(d["energy_facility_j"])),
        ("emissions operational / embodied",
         f"{_mass(d['emissions_operational_kgco2e'])} / "
         + ("n/a" if d["emissions_embodied_kgco2e"] is None else _mass(d["emissions_embodied_kgco2e"])) + " CO2e"),
        (f"cost per {period}", money(d["cost_usd"])),
    ]
    if "goodput_frac" in d:
        rows += [("goodput", f"{100 * d['goodput_frac']:.1f}% (MTBF {d['mtbf_s'] / 3600:.2f} h, checkpoint every "
                             f"{d['checkpoint_interval_s'] / 60:.1f} min, "
                             f"{d['expected_interruptions']:,.0f} interruptions)")]
        if d.get("effective_time_to_train_s"):
            rows.append(("effective time to train", f"{d['effective_time_to_train_s'] / 86400:,.1f} days"))
    if d.get("energy_per_output_token_j") is not None:
        rows.append(("energy per output token", f"{d['energy_per_output_token_j']:.3g} J"))
    if d.get("cost_per_million_output_tokens_usd") is not None:
        rows.append(("cost per million output tokens", f"${d['cost_per_million_output_tokens_usd']:.3f}"))
    note = (f"power: the main phase's ({d['main_phase']}; the highest phase draws "
            f"{format_si(d['power_facility_peak_w'], 'W')}); energy, emissions, cost: sums over the phases"
            if d.get("phases") and "power_facility_peak_w" in d else None)
    return _kv_table("Datacenter", rows, note=note)


def _energy(j: float) -> str:
    kwh = j / 3.6e6
    return f"{kwh / 1e3:,.1f} MWh" if kwh >= 1000 else f"{kwh:,.2f} kWh"


def _mass(kg: float) -> str:
    return f"{kg / 1e3:,.1f} t" if kg >= 1000 else f"{kg:,.2f} kg"


def _md_cell(x: Any) -> str:
    text = x.plain if hasattr(x, "plain") else str(x)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def to_markdown(obj: Any) -> str:
    """The same report as Markdown: each table becomes a heading and a pipe table (key-value tables
    get `item | value` headers)."""
    if isinstance(obj, Group):
        return "\n".join(to_markdown(r) for r in obj.renderables)
    if isinstance(obj, Table):
        cols = obj.columns
        header = [_md_cell(c.header) for c in cols] if obj.show_header else (
            ["item", "value"] if len(cols) == 2 else [f"col{i + 1}" for i in range(len(cols))])
        lines = [f"### {_md_cell(obj.title)}", ""] if obj.title else []
        lines += ["| " + " | ".join(h or " " for h in header) + " |", "|" + "---|" * len(cols)]
        for row in zip(*(c._cells for c in cols), strict=True):
            lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
        if obj.caption:
            lines += ["", f"*{_md_cell(obj.caption)}*"]
        return "\n".join(lines) + "\n"
    return _md_cell(obj) + "\n"


def fit_validation_tables(d: dict[str, Any]) -> Group:
    """`flopcast validate`: predicted vs measured per row (and cross-validated), then the figures."""
    cv = "cv_median_abs_error_frac" in d
    t = Table(title=f"{d['kind'].capitalize()}: predicted vs measured", title_justify="left")
    cols = ["id", "source", "model", "hardware", "quantity", "measured", "predicted", "error"]
    if cv:
        cols.append("cv error")
    for c in cols:
        t.add_column(c, justify="right" if c in ("measured", "predicted", "error", "cv error") else "left")
    for r in d["rows"]:
        cells = [r["id"], r["source"], str(r["model"])[:28], r["hardware"], r["quantity"], f"{r['measured']:.4g}",
                 f"{r['predicted']:.4g}", f"{100 * r['error_frac']:+.1f}%"]
        if cv:
            cells.append("n/a" if r.get("cv_error_frac") is None else f"{100 * r['cv_error_frac']:+.1f}%")
        t.add_row(*cells)
    rows = [("rows", str(d["num_rows"])),
            ("profile", f"{d['profile_source']}"),
            ("in-sample median / max |error|", f"{_pct(d['median_abs_error_frac'])} / {_pct(d['max_abs_error_frac'])}")]
    if cv:
        method = d.get("cv_method", "source")
        rows.append((f"leave-one-{method}-out median / max |error|",
                     f"{_pct(d['cv_median_abs_error_frac'])} / {_pct(d['cv_max_abs_error_frac'])} "
                     f"over {d.get('num_cv_groups', d['num_sources'])} {method}s"))
    fs = d.get("first_seen")
    if fs:
        rows.append(("prospective (first-seen) median |error|",
                     f"{_pct(fs['median_abs_error_frac'])} over {fs['num_known']} rows "
                     f"({d['num_rows'] - fs['num_known']} unknown: added with the code that predicts them)"))
    if "baseline_median_abs_error_frac" in d:
        rows.append(("one-parameter baseline: efficiency, median |error|",
                     f"{d['baseline_efficiency']:.3f}, {_pct(d['baseline_median_abs_error_frac'])}"))
        if "baseline_cv_median_abs_error_frac" in d:
            rows.append(("baseline leave-one-source-out median / max |error|",
                         f"{_pct(d['baseline_cv_median_abs_error_frac'])} / {_pct(d['baseline_cv_max_abs_error_frac'])}"))
    skipped = [(s["id"], s["why"]) for s in d.get("skipped", [])]
    return Group(t, _kv_table("Summary", rows), _by_class_table(d), _kv_table("Skipped", skipped))


def _by_class_table(d: dict[str, Any]) -> Table:
    """`flopcast validate`: rows, in-sample and cross-validated median / max |error| and signed mean per class."""
    t = Table(title="By class", title_justify="left")
    heads = ["class", "rows", "median |error|", "cv median |error|", "cv max |error|", "cv signed mean",
             "first-seen median"]
    for h in heads:
        t.add_column(h, justify="left" if h == "class" else "right")
    for name, c in d.get("by_class", {}).items():
        signed = c.get("cv_signed_mean_error_frac")
        t.add_row(name, str(c["num_rows"]), _pct(c["median_abs_error_frac"]), _pct(c.get("cv_median_abs_error_frac")),
                  _pct(c.get("cv_max_abs_error_frac")), "n/a" if signed is None else f"{100 * signed:+.1f}%",
                  _pct(c.get("first_seen_median_abs_error_frac")))
    return t


def simulation_validation_tables(d: dict[str, Any]) -> Group:
    """`flopcast validate simulation`: simulated vs measured latency per run and statistic, then the
    figures per metric, by class and against the targets."""
    cv = "cv_median_abs_error_frac" in d
    t = Table(title="Simulation: latency under load, simulated vs measured", title_justify="left")
    cols = ["id", "load", "metric", "measured s", "simulated s", "error", *(["cv error"] if cv else [])]
    for c in cols:
        t.add_column(c, justify="left" if c in ("id", "load", "metric") else "right", no_wrap=c == "id")
    for r in d["rows"]:
        load = ", ".join(f"{k} {v}" for k, v in r["load"].items())
        for i, (m, v) in enumerate(r["measured"].items()):
            p, e = r["predicted"].get(m), r["error_frac"].get(m)
            cells = [r["id"] if i == 0 else "", load if i == 0 else "", m, f"{v:.4g}",
                     "n/a" if p is None else f"{p:.4g}", "n/a" if e is None else f"{100 * e:+.1f}%"]
            if cv:
                ce = r.get("cv_error_frac", {}).get(m)
                cells.append("n/a" if ce is None else f"{100 * ce:+.1f}%")
            t.add_row(*cells)
    m = Table(title="By metric and class", title_justify="left")
    for h in ("group", "rows", "values", "median |error|", "max |error|", "signed mean", "cv median |error|"):
        m.add_column(h, justify="left" if h == "group" else "right")
    for name, g in [*d["by_metric"].items(), *d["by_class"].items()]:
        signed = g.get("signed_mean_error_frac")
        m.add_row(name, str(g["num_rows"]), str(g["num_values"]), _pct(g["median_abs_error_frac"]),
                  _pct(g["max_abs_error_frac"]), "n/a" if signed is None else f"{100 * signed:+.1f}%",
                  _pct(g.get("cv_median_abs_error_frac")))
    rows = [("runs / statistics / source families", f"{d['num_rows']} / {d['num_values']} / {d['num_sources']}"),
            ("median / max |error|", f"{_pct(d['median_abs_error_frac'])} / {_pct(d['max_abs_error_frac'])}")]
    if cv:
        rows.append((f"leave-one-{d['cv_method']}-out median / max |error|",
                     f"{_pct(d['cv_median_abs_error_frac'])} / {_pct(d['cv_max_abs_error_frac'])}"))
    for part, g in d["targets"].items():
        key = "cv_median_abs_error_frac" if cv else "median_abs_error_frac"
        rows.append((f"target {part} ({', '.join(g['metrics'])}) <= {_pct(g['target_frac'])}",
                     f"{_pct(g.get(key))} over {g['num_values']} values: {'met' if g['met'] else 'not met'}"))
    fs = d.get("first_seen") or {}
    rows.append(("prospective (first-seen) median |error|",
                 f"{_pct(fs.get('median_abs_error_frac'))} over {fs.get('num_known', 0)} statistics"))
    return Group(t, m, _kv_table("Summary", rows))


def memory_validation_tables(d: dict[str, Any]) -> Group:
    """`flopcast validate memory`: the peak-memory rows, then the fits verdict on the training runs."""
    v = d["fits_verdict"]
    rows = [("fragmentation (of allocated)", _pct(d["fragmentation_frac"])),
            ("memory error band", f"±{_pct(d['memory_band_frac'])} of capacity"),
            ("training validation runs: fits or marginal", f"{v['num_fits_or_marginal']} / {v['num_runs']}"),
            ("does not fit", ", ".join(v["does_not_fit"]) or "none")]
    return Group(fit_validation_tables(d), _kv_table("Memory verdict", rows))


def calibration_tables(d: dict[str, Any]) -> Group:
    """`flopcast calibrate`: fitted parameters with their rows, and the error before / after / cross-validated."""
    parts = []
    for kind in ("training", "inference"):
        k = d.get(kind)
        if not k:
            continue
        t = Table(title=f"{kind.capitalize()} calibration ({k['num_rows']} runs)", title_justify="left")
        t.add_column("parameter")
        t.add_column("value", justify="right")
        t.add_column("runs", justify="right")
        for name, v in k["parameters"].items():
            t.add_row(name, f"{v:.4f}", str(len(k["rows_per_parameter"][name])))
        parts.append(t)
        parts.append(_kv_table("Error", [
            ("median |error| before", _pct(k["median_abs_error_frac_before"])),
            ("median / max |error| after",
             f"{_pct(k['median_abs_error_frac_after'])} / {_pct(k['max_abs_error_frac_after'])}"),
            ("leave-one-source-out median / max",
             f"{_pct(k['cv_median_abs_error_frac'])} / {_pct(k['cv_max_abs_error_frac'])}"),
        ]))
    if d.get("written"):
        parts.append(_kv_table("Written", [("profile", d["written"])]))
    return Group(*parts)


def ranking_validation_tables(d: dict[str, Any]) -> Group:
    """`flopcast validate ranking`: each group's plans, measured and predicted, then the figures."""
    t = Table(title="Ranking: plans of one job, measured vs predicted", title_justify="left")
    for c in ("group", "plan", "measured s", "predicted s", "error", "measured best", "predicted best"):
        t.add_column(c, justify="right" if c.endswith((" s", "error")) else "left")
    for g in d["groups"]:
        for i, p in enumerate(g["plans"]):
            plan = p["id"].removeprefix(g["id"] + "/")
            marks = ["yes" if g[k] == p["id"] else "" for k in ("measured_best", "predicted_best")]
            t.add_row(g["id"] if i == 0 else "", plan, f"{p['measured_step_s']:.4g}", f"{p['predicted_step_s']:.4g}",
                      f"{100 * p['error_frac']:+.1f}%", *marks)
    gap = _pct(d["gap_frac"])
    rows = [("groups / plans / source families", f"{d['num_groups']} / {d['num_plans']} / {d['num_families']}"),
            (f"top plan measured best or within {gap}", f"{d['num_top_ok']}/{d['num_groups']} = {_pct(d['top_plan_frac'])}"),
            (f"  of groups with a plan measured over {gap} slower",
             f"{d['num_top_ok_decided']}/{d['num_groups_decided']} = {_pct(d['top_plan_frac_decided'])}"),
            (f"pairs ordered right (measured gap > {gap})",
             f"{d['num_pairs_right']}/{d['num_pairs']} = {_pct(d['pairwise_frac'])}"),
            ("target (both)", _pct(d["target_frac"])),
            ("profile", d["profile_source"])]
    skipped = [(s["id"], s["why"]) for s in d.get("skipped", [])]
    return Group(t, _kv_table("Summary", rows), _kv_table("Skipped", skipped))
