"""The latency-throughput curve a fleet sizing explored (`flopcast simulate --size-fleet --plot FILE`),
as one standalone SVG (no plotting library, like the fleet charts): two panels, steady-state p99 TTFT
and p99 TPOT (log scale) against the achieved output tokens/s per device, one point per trial
labelled with its replicas (prefill+decode for a disaggregated fleet), green where the trial meets
the SLO and red where it does not, the SLO as a dashed line and the chosen fleet ringed."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

WIDTH, PANEL_H = 760, 260
LEFT, RIGHT, TOP = 80, 30, 36
MEETS, FAILS = "#2e8b57", "#c44e52"


def _label(r: dict[str, Any]) -> str:
    if "prefill_replicas" in r:
        return f"{r['prefill_replicas']}P+{r['decode_replicas']}D"
    return str(r["replicas"])


def _fmt_s(x: float) -> str:
    return f"{x * 1e3:,.3g} ms" if x < 1 else f"{x:,.3g} s"


def _panel(y0: float, title: str, pts: list[tuple[float, float, str, bool, bool]], target: float | None,
           x_max: float) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PANEL_H - 70
    base = y0 + TOP + plot_h
    out = [f'<text x="10" y="{y0 + 20}" font-size="13" font-weight="bold">{escape(title)}</text>']
    ys = [y for _, y, *_ in pts if y and y > 0] + ([target] if target else [])
    if not ys:
        return out + [f'<text x="{LEFT}" y="{y0 + 60}">no data</text>']
    lo, hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    hi = max(hi, lo + 1)

    def ypos(v: float) -> float:
        return base - plot_h * (math.log10(v) - lo) / (hi - lo)

    def xpos(v: float) -> float:
        return LEFT + plot_w * v / x_max

    for e in range(lo, hi + 1):
        y = ypos(10.0 ** e)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt_s(10.0 ** e))}</text>')
    for i in range(6):
        v = x_max * i / 5
        out.append(f'<text x="{xpos(v):.1f}" y="{base + 16}" text-anchor="middle">{v:,.0f}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{base + 32}" text-anchor="middle">achieved output tokens/s per '
               'device (steady state)</text>')
    if target:
        y = ypos(target)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#555" '
                   'stroke-dasharray="6,4"/>')
        out.append(f'<text x="{LEFT + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end">SLO {escape(_fmt_s(target))}'
                   '</text>')
    for x, y, label, ok, chosen in pts:
        if not y or y <= 0:
            continue
        cx, cy = xpos(x), ypos(y)
        color = MEETS if ok else FAILS
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}"/>')
        if chosen:
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" stroke="#222" stroke-width="1.5"/>')
        out.append(f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" font-size="10">{escape(label)}</text>')
    return out


def curve_svg(d: dict[str, Any]) -> str:
    """The two-panel SVG of a size_fleet result's curve."""
    curve = d.get("curve") or []
    chosen = d.get("num_devices")
    rows = []
    for r in curve:
        per_dev = (r.get("achieved_output_tokens_per_s") or 0.0) / max(r["num_devices"], 1)
        rows.append((per_dev, r, d.get("meets_slo") and r["num_devices"] == chosen and r["meets_slo"]
                     and r["replicas"] == d.get("replicas")))
    x_max = max((x for x, _, _ in rows), default=1.0) * 1.15 or 1.0
    height = 2 * PANEL_H + 20
    slo = d.get("slo") or {}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    for i, (key, name) in enumerate((("ttft", "TTFT"), ("tpot", "TPOT"))):
        pts = [(x, r.get(f"{key}_p99_s"), _label(r), bool(r["meets_slo"]), bool(c)) for x, r, c in rows]
        out += _panel(i * PANEL_H, f"fleet sizing: p99 {name} at steady state vs throughput per device "
                      "(labels: replicas; green meets the SLO)", pts, slo.get(f"{key}_p99_s"), x_max)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_curve_svg(d: dict[str, Any], path: str | Path) -> str:
    p = Path(path)
    p.write_text(curve_svg(d))
    return str(p)
