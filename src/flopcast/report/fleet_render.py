"""Rich tables of a fleet report (`flopcast fleet`): the chosen fleet, its regions, its pools, and the
candidate deployments side by side."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from flopcast.report.render import _assumptions, _kv_table, _mass, _ms
from flopcast.units import format_si


def _money(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"${x:,.{digits}f}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _twh(j: float | None) -> str:
    return "-" if j is None else f"{j / 3.6e15:,.3f} TWh" if j >= 3.6e15 else f"{j / 3.6e12:,.1f} GWh" \
        if j >= 3.6e12 else f"{j / 3.6e9:,.1f} MWh"


def _confirmation(c: dict[str, Any]) -> str:
    if not c["simulated"]:
        return f"not simulated: {c['why']}"
    verdict = "" if c["meets_slo"] is None else ("; meets the SLO" if c["meets_slo"] else "; MISSES the SLO")
    return f"{_ms(c['ttft_p99_s'])} / {_ms(c['tpot_p99_s'])} ({c['units_simulated']} units){verdict}"


def _summary_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The fleet's headline figures, one (label, value) row each."""
    chosen = ", ".join(f"{m}: {dep or 'none feasible'}" for m, dep in d["selected"].items())
    nodes = f" ({d['num_nodes_mean']:,.1f} nodes)" if d.get("num_nodes_mean") is not None else ""
    emb = d["emissions_embodied_kgco2e_per_year"]
    rows = [
        ("chosen (" + d["objective"] + ")", chosen),
        ("traffic", f"{format_si(d['output_tokens_per_day'], 'tokens')} output, "
                    f"{format_si(d['input_tokens_per_day'], 'tokens')} input per day"),
        ("devices peak / mean", f"{d['num_devices_peak']:,} / {d['num_devices_mean']:,.1f}{nodes}"),
        ("facility power peak / mean", f"{format_si(d['power_facility_w_peak'], 'W')} / "
                                       f"{format_si(d['power_facility_w_mean'], 'W')}"),
        ("energy per day / year", f"{_twh(d['energy_facility_j_per_day'])} / {_twh(d['energy_facility_j_per_year'])}"),
        ("cost per day", _money(d["cost_usd_per_day"])),
        ("cost per million output tokens", _money(d["cost_per_million_output_tokens_usd"], 3)),
        ("energy per output token", "-" if d["energy_per_output_token_j"] is None
         else f"{d['energy_per_output_token_j']:.3g} J"),
        ("tCO2e per year operational / embodied", f"{_mass(d['emissions_operational_kgco2e_per_year'])} / "
                                                  + ("n/a" if emb is None else _mass(emb))),
    ]
    if d.get("unserved_models"):
        rows.append(("unserved models", ", ".join(d["unserved_models"])))
    return rows


def _regions_table(d: dict[str, Any]) -> Table:
    reg = Table(title="Regions (chosen fleet)", title_justify="left")
    for c in ("region", "site", "devices peak", "devices mean", "MW peak", "MWh/day", "$/day", "power cap"):
        reg.add_column(c, justify="left" if c in ("region", "site") else "right")
    for r in d["regions"]:
        cap = "-" if r["power_cap_w"] is None else (f"{r['power_cap_w'] / 1e6:,.1f} MW "
                                                    + ("ok" if r["within_power_cap"] else "EXCEEDED"))
        reg.add_row(r["name"], r["site"], f"{r['num_devices_peak']:,}", f"{r['num_devices_mean']:,.1f}",
                    f"{r['power_facility_w_peak'] / 1e6:,.2f}", f"{r['energy_facility_j_per_day'] / 3.6e9:,.1f}",
                    _money(r["cost_usd_per_day"]), cap)
    return reg


def _pools_table(d: dict[str, Any]) -> Table:
    pools = Table(title="Pools (chosen fleet): one unit at full load", title_justify="left")
    for c in ("region", "deployment", "role", "devices/unit", "batch", "tokens/s/unit", "TTFT", "TPOT",
              "units peak", "units mean", "util. mean"):
        pools.add_column(c, justify="left" if c in ("region", "deployment", "role") else "right")
    for r in d["regions"]:
        for p in r["pools"]:
            pools.add_row(r["name"], p["deployment"], p["role"], str(p["unit_devices"]), str(p["batch_size"]),
                          f"{p['tokens_per_s_per_unit']:,.0f}", _ms(p["ttft_s"]), _ms(p["tpot_s"]),
                          str(p["units_peak"]), f"{p['units_mean']:,.1f}", f"{100 * p['utilisation_frac_mean']:.0f}%")
    return pools


def _simulated_table(d: dict[str, Any]) -> Table:
    sim = Table(title="Binding hours simulated (the hour of highest utilisation per unit)", title_justify="left")
    for c in ("region", "deployment", "role", "hour (UTC)", "utilisation", "simulated p99 TTFT / TPOT"):
        sim.add_column(c, justify="left" if c in ("region", "deployment", "role", "simulated p99 TTFT / TPOT")
                       else "right")
    for r in d["regions"]:
        for p in r["pools"]:
            c = p.get("confirmation")
            if c:
                sim.add_row(r["name"], p["deployment"], p["role"], f"{c['hour_utc']:02d}",
                            f"{100 * c['utilisation_frac']:.0f}%", _confirmation(c))
    return sim


def _candidate_note(d: dict[str, Any], r: dict[str, Any]) -> str:
    ch = d["choices"].get(r["model"], {})
    tags = [k.replace("_", " ") for k, v in ch.items() if v == r["deployment"]]
    note = ", ".join(tags) if r["feasible"] else f"infeasible: {r['infeasible_reason']}"
    if r["exceeds_power_cap"]:
        note += f"; exceeds the power cap of {', '.join(r['exceeds_power_cap'])}"
    return note


def _candidates_table(d: dict[str, Any]) -> Table:
    cand = Table(title="Candidate deployments compared (whole fleet)", title_justify="left")
    for c in ("model", "deployment", "hardware", "devices peak", "devices mean", "MW peak", "$/day", "$/Mtok out",
              "tCO2e/yr op+emb", "note"):
        cand.add_column(c, justify="left" if c in ("model", "deployment", "hardware", "note") else "right")
    for r in d["deployments"]:
        carbon = None if r["emissions_operational_kgco2e_per_year"] is None else \
            r["emissions_operational_kgco2e_per_year"] + (r["emissions_embodied_kgco2e_per_year"] or 0.0)
        cand.add_row(r["model"], r["deployment"], r["hardware"], _num(r["num_devices_peak"]),
                     _num(r["num_devices_mean"], ",.1f"),
                     "-" if r["power_facility_w_peak"] is None else f"{r['power_facility_w_peak'] / 1e6:,.2f}",
                     _money(r["cost_usd_per_day"]), _money(r["cost_per_million_output_tokens_usd"], 3),
                     "-" if carbon is None else f"{carbon / 1e3:,.0f}", _candidate_note(d, r))
    return cand


def fleet_plan_tables(d: dict[str, Any]) -> Group:
    """The fleet report as rich tables: summary, regions, pools, simulated binding hours (when any),
    candidates compared, assumptions."""
    parts = [_kv_table(f"Fleet: {d['name']}", _summary_rows(d)), _regions_table(d), _pools_table(d)]
    sim = _simulated_table(d)
    if sim.row_count:
        parts.append(sim)
    return Group(*parts, _candidates_table(d), _assumptions(d))
