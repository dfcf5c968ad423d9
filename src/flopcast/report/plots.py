"""Charts of a report as standalone SVG files (no plotting library: a few horizontal bar charts).

`write_plots(report_dict, directory)` writes one chart per breakdown the report has: parameters by
component, training memory and step time, serving memory and iteration ops, simulated latency
percentiles. It returns the paths written.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from flopcast.units import format_bytes, format_count

WIDTH = 720
ROW_H = 22
LABEL_W = 190
VALUE_W = 110
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def bar_chart_svg(title: str, items: list[tuple[str, float]], fmt: Callable[[float], str]) -> str:
    """A horizontal bar chart: one bar per (label, value), scaled to the largest value."""
    items = [(k, float(v)) for k, v in items if v is not None and v > 0]
    top = 34
    height = top + ROW_H * max(1, len(items)) + 12
    peak = max((v for _, v in items), default=1.0)
    span = WIDTH - LABEL_W - VALUE_W - 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = top + i * ROW_H
        w = max(1.0, span * value / peak)
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 6}" '
                   f'fill="{COLORS[i % len(COLORS)]}"/>')
        out.append(f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 15}">{escape(fmt(value))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _seconds(x: float) -> str:
    return f"{x * 1e3:,.2f} ms" if x < 1 else f"{x:,.3f} s"


def _charts(d: dict[str, Any]) -> list[tuple[str, str]]:
    charts: list[tuple[str, str]] = []
    model = d.get("model")
    if model:
        by_component: dict[str, float] = {}
        for key, n in model["params_breakdown"].items():
            comp = key.split("/")[0]
            by_component[comp] = by_component.get(comp, 0) + n
        charts.append(("params", bar_chart_svg(f"{model['name']}: parameters by component",
                                               list(by_component.items()), format_count)))
    tr = d.get("training")
    if tr:
        charts.append(("training-memory", bar_chart_svg("Training memory per device",
                                                        list(tr["memory_breakdown_bytes"].items()), format_bytes)))
        parts = [(k, v) for k, v in tr["step_time_breakdown_s"].items() if k != "compute"]
        parts = list(tr.get("compute_breakdown_s", {}).items()) + parts
        charts.append(("training-step", bar_chart_svg(f"Training step time {tr['step_time_s']:.3f} s", parts,
                                                      _seconds)))
    sv = d.get("serving")
    if sv:
        charts.append(("serving-memory", bar_chart_svg("Serving memory per device",
                                                       list(sv["memory_breakdown_bytes"].items()), format_bytes)))
        charts.append(("serving-decode", bar_chart_svg("One decode iteration by op",
                                                       list(sv["decode_step_breakdown_s"].items()), _seconds)))
    sim = d.get("simulation")
    if sim:
        rows = [(f"{name} {q}", sim[f"{key}_{q}_s"]) for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"),
                                                                      ("end to end", "e2e")) for q in ("p50", "p99")]
        charts.append(("simulation-latency", bar_chart_svg("Simulated latency", rows, _seconds)))
    return charts


def write_plots(d: dict[str, Any], directory: str | Path) -> list[str]:
    """Write the report's charts as SVG files into `directory` (created); the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, svg in _charts(d):
        path = out / f"{name}.svg"
        path.write_text(svg)
        written.append(str(path))
    return written
