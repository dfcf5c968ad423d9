"""Charts of a fleet report as standalone SVG (no plotting library): devices and facility MW over the
day (UTC) per region and in total, and the candidate deployments compared."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from flopcast.report.plots import COLORS, bar_chart_svg

WIDTH, PANEL_H = 760, 220
LEFT, RIGHT, TOP = 70, 150, 34


def _nice_max(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above x (axis top)."""
    if x <= 0:
        return 1.0
    import math

    k = 10 ** math.floor(math.log10(x))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= x)


def _panel(y0: float, title: str, series: list[tuple[str, list[float]]], fmt) -> list[str]:
    """One line panel: x = hour 0..23, one polyline per series, with a y axis of 5 ticks."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = PANEL_H - 50
    top = _nice_max(max((max(v) for _, v in series if v), default=1.0))
    out = [f'<text x="10" y="{y0 + 16}" font-size="13" font-weight="bold">{escape(title)}</text>']
    base = y0 + 26 + plot_h
    for i in range(6):
        y = base - plot_h * i / 5
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(top * i / 5))}</text>')
    for h in range(0, 24, 3):
        x = LEFT + plot_w * h / 23
        out.append(f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{h:02d}h</text>')
    for j, (name, values) in enumerate(series):
        color = "#222222" if name == "total" else COLORS[j % len(COLORS)]
        pts = " ".join(f"{LEFT + plot_w * h / 23:.1f},{base - plot_h * v / top:.1f}" for h, v in enumerate(values))
        dash = ' stroke-dasharray="5,3"' if name == "total" else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        ly = y0 + 40 + 16 * j
        out.append(f'<line x1="{WIDTH - RIGHT + 12}" y1="{ly - 4}" x2="{WIDTH - RIGHT + 30}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{WIDTH - RIGHT + 34}" y="{ly}">{escape(name)}</text>')
    return out


def day_chart_svg(d: dict[str, Any]) -> str:
    """Devices and facility MW per hour (UTC) for each region of the chosen fleet, and their sum."""
    regions = d["regions"]
    dev = [(r["name"], [float(x) for x in r["hourly"]["num_devices"]]) for r in regions]
    mw = [(r["name"], [x / 1e6 for x in r["hourly"]["power_facility_w"]]) for r in regions]
    if len(regions) > 1:
        dev.append(("total", [sum(v) for v in zip(*(s for _, s in dev), strict=True)]))
        mw.append(("total", [sum(v) for v in zip(*(s for _, s in mw), strict=True)]))
    height = 2 * PANEL_H + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="11">', f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    out += _panel(0, f"{d['name']}: devices per hour (UTC)", dev, lambda x: f"{x:,.0f}")
    out += _panel(PANEL_H, "facility power per hour (MW)", mw, lambda x: f"{x:,.1f}")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_fleet_plots(d: dict[str, Any], directory: str | Path) -> list[str]:
    """Write fleet-day.svg and, per compared quantity, fleet-candidates-*.svg; return the paths."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = [("fleet-day", day_chart_svg(d))]
    rows = [r for r in d["deployments"] if r["feasible"]]
    label = (lambda r: r["deployment"]) if len({r["model"] for r in rows}) <= 1 else \
        (lambda r: f"{r['model']}: {r['deployment']}")
    for key, title, fmt in (("num_devices_mean", "mean devices", lambda x: f"{x:,.0f}"),
                            ("cost_per_million_output_tokens_usd", "$ per million output tokens", lambda x: f"${x:,.3f}"),
                            ("emissions_operational_kgco2e_per_year", "operational tCO2e per year",
                             lambda x: f"{x / 1e3:,.0f} t")):
        items = [(label(r), r[key]) for r in rows if r[key] is not None]
        if items:
            charts.append((f"fleet-candidates-{key.split('_')[0] if key != 'num_devices_mean' else 'devices'}",
                           bar_chart_svg(f"candidates: {title}", items, fmt)))
    written = []
    for name, svg in charts:
        path = out_dir / f"{name}.svg"
        path.write_text(svg)
        written.append(str(path))
    return written
