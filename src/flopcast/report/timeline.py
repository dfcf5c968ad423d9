"""The simulated pipeline schedule of one training step as a Gantt chart per rank (plain SVG text,
no plotting library) or as JSON events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

COLOURS = {"F": "#4c78a8", "B": "#54a24b", "Bi": "#8fd18a", "W": "#f58518", "FB": "#9467bd",
           "p2p": "#555555", "idle": "#eeeeee"}
LEGEND = (("F", "forward"), ("B", "backward (input and weights)"), ("Bi", "backward for input"),
          ("W", "backward for weights"), ("FB", "overlapped forward + backward"), ("p2p", "point-to-point send"),
          ("idle", "idle (bubble)"))
WIDTH_PX, ROW_PX, LEFT_PX, TOP_PX = 1200, 22, 70, 58


def event_dicts(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Each chunk as {rank, kind, micro_batch, stage, direction, start_s, end_s} (stage: the virtual
    stage; direction: DualPipe's pipeline, 0 otherwise)."""
    return [{"rank": e.rank, "kind": e.kind, "micro_batch": e.mb, "stage": e.stage, "direction": max(e.pipe, 0),
             "start_s": e.start_s, "end_s": e.end_s} for e in events]


def _sends(kind: str) -> int:
    return {"F": 1, "B": 1, "Bi": 1, "W": 0, "FB": 2}[kind]


def _ticks(step_s: float) -> list[float]:
    raw = step_s / 8
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    unit = next(k * mag for k in (1, 2, 5, 10) if k * mag >= raw)
    return [i * unit for i in range(int(step_s / unit) + 1)]


def _chunk(e: Any, x0: float, scale: float, y: float, transfer_s: float) -> list[str]:
    """One chunk: its compute part in the kind's colour, its sends dark at the end, the micro-batch
    number where it fits."""
    x, w = x0 + e.start_s * scale, (e.end_s - e.start_s) * scale
    send_w = min(w, _sends(e.kind) * transfer_s * scale)
    title = escape(f"rank {e.rank} {e.kind} micro-batch {e.mb} stage {e.stage}: "
                   f"{e.start_s * 1e3:.2f}-{e.end_s * 1e3:.2f} ms")
    out = [f'<g><title>{title}</title><rect x="{x:.2f}" y="{y:.1f}" width="{max(w - send_w, 0):.2f}" '
           f'height="{ROW_PX - 4}" fill="{COLOURS[e.kind]}" stroke="#ffffff" stroke-width="0.5"/>']
    if send_w > 0:
        out.append(f'<rect x="{x + w - send_w:.2f}" y="{y:.1f}" width="{send_w:.2f}" height="{ROW_PX - 4}" '
                   f'fill="{COLOURS["p2p"]}"/>')
    if e.mb >= 0 and w - send_w >= 7 * len(str(e.mb)) + 2:
        out.append(f'<text x="{x + (w - send_w) / 2:.2f}" y="{y + ROW_PX - 8:.1f}" font-size="10" '
                   f'text-anchor="middle" fill="#ffffff">{e.mb}</text>')
    out.append("</g>")
    return out


def gantt_svg(events: Sequence[Any], *, pp: int, step_s: float, transfer_s: float, title: str) -> str:
    """The SVG text: one row per rank, chunks by start and end time, a time axis in ms and a legend."""
    plot_w = WIDTH_PX - LEFT_PX - 20
    scale = plot_w / step_s if step_s > 0 else 1.0
    height = TOP_PX + pp * ROW_PX + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height}" '
           f'font-family="sans-serif" viewBox="0 0 {WIDTH_PX} {height}">',
           f'<rect width="{WIDTH_PX}" height="{height}" fill="#ffffff"/>',
           f'<text x="{LEFT_PX}" y="18" font-size="14">{escape(title)}</text>']
    lx = float(LEFT_PX)
    for kind, label in LEGEND:
        out.append(f'<rect x="{lx}" y="28" width="12" height="12" fill="{COLOURS[kind]}" stroke="#999999"/>'
                   f'<text x="{lx + 16}" y="38" font-size="11">{escape(label)}</text>')
        lx += 26 + 6.2 * len(label)
    for r in range(pp):
        y = TOP_PX + r * ROW_PX
        out.append(f'<text x="{LEFT_PX - 8}" y="{y + ROW_PX - 8}" font-size="11" text-anchor="end">rank {r}</text>'
                   f'<rect x="{LEFT_PX}" y="{y}" width="{plot_w}" height="{ROW_PX - 4}" fill="{COLOURS["idle"]}"/>')
    for e in events:
        out += _chunk(e, LEFT_PX, scale, TOP_PX + e.rank * ROW_PX, transfer_s)
    axis_y = TOP_PX + pp * ROW_PX + 4
    out.append(f'<line x1="{LEFT_PX}" y1="{axis_y}" x2="{LEFT_PX + plot_w}" y2="{axis_y}" stroke="#333333"/>')
    for t in _ticks(step_s):
        x = LEFT_PX + t * scale
        out.append(f'<line x1="{x:.2f}" y1="{axis_y}" x2="{x:.2f}" y2="{axis_y + 5}" stroke="#333333"/>'
                   f'<text x="{x:.2f}" y="{axis_y + 18}" font-size="10" text-anchor="middle">{t * 1e3:g} ms</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
