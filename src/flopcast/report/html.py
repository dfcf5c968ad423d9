"""`flopcast plan --html FILE`: one self-contained HTML report a planner can forward.

The verdict first (the same findings as the terminal briefing), then the matplotlib charts inlined as
SVG, then the report's tables, then every assumption in a collapsed block. The file loads nothing: no
script, no stylesheet, font or image from anywhere (styles are inline, charts are inline SVG).

`render_html` is pure: a plan dict and chart SVGs -> one HTML string; `write_html` draws the charts
(`flopcast.report.mpl`) and writes the file.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from flopcast.report.briefing import headline, verdict

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;max-width:62rem;margin:1.5rem auto;
padding:0 1rem;line-height:1.4}
h1{font-size:1.4rem;margin:0 0 .2rem}.meta{color:#5b6475;font-size:.85rem;margin:0 0 1rem}
.verdict{border:1px solid #d9dde5;border-left:6px solid #1e7d46;border-radius:8px;padding:.5rem 1.2rem .8rem}
.verdict.bad{border-left-color:#b3261e}.verdict h2{font-size:1.1rem;margin:.3rem 0 .6rem}
.verdict table{border:0}.verdict th{color:#5b6475;text-align:left;padding:.15rem 1.2rem .15rem 0;border:0}
.verdict td{text-align:left;border:0;padding:.15rem 0}.yes{color:#1e7d46;font-weight:700}.no{color:#b3261e;font-weight:700}
figure{margin:1.2rem 0;border:1px solid #d9dde5;border-radius:8px;padding:.5rem}figure svg{max-width:100%;height:auto}
figcaption{font-weight:600;margin:0 0 .3rem .3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.8rem 0}caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #eef0f3;padding:.2rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}
details{margin:1rem 0;border:1px solid #d9dde5;border-radius:8px;padding:.5rem 1rem}summary{cursor:pointer;font-weight:600}
details td{text-align:left}
"""


def _table_html(table: Any) -> str:
    """A rich Table as an HTML table (the same cells the terminal shows)."""
    cols = table.columns
    head = "".join(f"<th>{escape(str(c.header))}</th>" for c in cols) if table.show_header else ""
    rows = []
    for row in zip(*(c._cells for c in cols), strict=True):
        rows.append("<tr>" + "".join(f"<td>{escape(getattr(x, 'plain', str(x)))}</td>" for x in row) + "</tr>")
    caption = f"<caption>{escape(str(table.title))}</caption>" if table.title else ""
    return f"<table>{caption}{'<tr>' + head + '</tr>' if head else ''}{''.join(rows)}</table>"


def _tables_html(group: Any) -> str:
    from rich.console import Group
    from rich.table import Table

    out = []
    for r in group.renderables if isinstance(group, Group) else [group]:
        if isinstance(r, Group):
            out.append(_tables_html(r))
        elif isinstance(r, Table):
            out.append(_table_html(r))
    return "\n".join(out)


def render_html(d: dict[str, Any], charts: list[tuple[str, str, str]]) -> str:
    """The report: title, verdict, charts (name, title, inline SVG), section tables, assumptions."""
    from flopcast.report import render

    findings = verdict(d)
    bad = any(f.ok is False for f in findings)
    rows = "".join(
        f"<tr><th>{escape(f.label)}</th><td>"
        + (f'<span class="{"yes" if f.ok else "no"}">{"yes" if f.ok else "NO"}</span> ' if f.ok is not None else "")
        + f"{escape(f.value)}</td></tr>" for f in findings)
    figs = "\n".join(f'<figure id="chart-{escape(name)}" data-chart="{escape(name)}"><figcaption>{escape(title)}'
                     f"</figcaption>{svg}</figure>" for name, title, svg in charts)
    sections = []
    if d.get("training"):
        sections.append(render.training_tables(d["training"], with_assumptions=False))
    if d.get("serving"):
        sections.append(render.serving_tables(d["serving"], with_assumptions=False))
    if d.get("simulation"):
        sections.append(render.simulation_tables(d["simulation"], with_assumptions=False))
    tables = "\n".join(_tables_html(s) for s in sections)
    assumptions = render._merged_assumptions(d)
    arows = "".join(f"<tr><td>{escape(a['name'])}</td><td>{escape(str(a['value']))}</td><td>{escape(a['why'])}</td></tr>"
                    for a in assumptions)
    inputs = _tables_html(render.model_tables(d["model"])) + _table_html(
        render._kv_table(f"Hardware {d['hardware']['id']}", render.hardware_rows(d["hardware"])))
    title = f"flopcast plan: {d['name']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">flopcast {escape(str(d.get('flopcast_version')))}, catalog revision {escape(str(d.get('catalog_revision')))}.
Numbers are estimates from the model, hardware and plan below; every default is listed under Assumptions.</p>
<section class="verdict{' bad' if bad else ''}" id="verdict"><h2>{escape(headline(d))}</h2><table>{rows}</table></section>
{figs}
<h2>Details</h2>
{tables}
<details id="assumptions"><summary>Assumptions ({len(assumptions)}): every default flopcast filled in</summary>
<table><tr><th>name</th><th>value</th><th>why</th></tr>{arows}</table></details>
<details id="inputs"><summary>Model and hardware</summary>{inputs}</details>
</body></html>
"""


def write_html(report: Any, scenario: Any, path: str | Path, data: Any = None) -> dict[str, Any]:
    """Draw the charts (gathering their data unless given) and write the report to `path`;
    returns {"path", "charts": [names]}."""
    from flopcast.report.mpl import figures, gather, to_svg

    d = report.to_dict()
    charts = [(name, title, to_svg(fig)) for name, title, fig in figures(d, data or gather(report, scenario))]
    Path(path).write_text(render_html(d, charts), encoding="utf-8")
    return {"path": str(path), "charts": [name for name, _, _ in charts]}
