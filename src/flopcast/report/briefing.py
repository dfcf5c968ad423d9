"""The verdict of a plan report, for people: does it fit, how long, how much money, power and carbon.

`verdict(plan_dict)` turns the `flopcast plan --json` object into a few `Finding`s, the first lines
of every human rendering (terminal, HTML report); `headline(plan_dict)` is the one-sentence summary.
Numbers are formatted here and only here for the briefing; the JSON stays in SI base units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flopcast.units import format_bytes, format_si


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the verdict: `ok` is True (good), False (a problem) or None (information)."""

    label: str
    value: str
    ok: bool | None = None


def money(usd: float | None) -> str:
    """$85.9M, $12.3k, $0.063: three significant figures with a k/M/B suffix."""
    if usd is None:
        return "n/a"
    for suffix, f in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(usd) >= f:
            return f"${usd / f:.3g}{suffix}"
    return f"${usd:.3g}" if abs(usd) < 1 else f"${usd:,.2f}"


def duration(s: float | None) -> str:
    """81.1 days, 5.2 h, 14 min, 7.53 s, 12.9 ms."""
    if s is None:
        return "n/a"
    if s >= 2 * 86400:
        return f"{s / 86400:,.1f} days"
    if s >= 2 * 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.0f} min"
    if s >= 1:
        return f"{s:.3g} s"
    return f"{s * 1e3:.3g} ms"


def energy(j: float) -> str:
    """Energy in Wh multiples: 46.2 GWh, 16 kWh."""
    return format_si(j / 3600, "Wh")


def mass(kg: float) -> str:
    """CO2e mass: tonnes from 1 t up (17,043 t), else kg."""
    return f"{kg / 1e3:,.0f} t" if kg >= 1e4 else f"{kg / 1e3:,.1f} t" if kg >= 1e3 else f"{kg:,.2f} kg"


def _training(d: dict[str, Any], devices: str) -> list[Finding]:
    tr = d["training"]
    cap = tr["memory_capacity_bytes"]
    need = tr["memory_per_device_bytes"]
    fits = tr["fits"]
    marginal = tr.get("memory_verdict") == "marginal"
    band = f" (marginal: within the ±{100 * tr['memory_band_frac']:.0f}% memory error band)" if marginal else ""
    out = [Finding("training fits", f"{format_bytes(need)} of {format_bytes(cap)} per device on {devices}{band}" if fits
                   else tr.get("infeasible_reason") or f"needs {format_bytes(need)} of {format_bytes(cap)} per device",
                   None if marginal else fits)]
    p = tr["parallel"]
    plan = f"tp {p['tp']} pp {p['pp']} dp {p['dp']}" + "".join(f" {k} {p[k]}" for k in ("cp", "ep", "vpp") if p[k] > 1)
    if p["pp"] > 1:
        layout = p.get("pipeline_layout")
        plan += f" ({p.get('pp_schedule', '1f1b')}" + (f", layout {layout if isinstance(layout, str) else list(layout)}"
                                                      if layout is not None else "") + ")"
    phases = tr.get("phases") or []
    out.append(Finding("plan" + (f" ({tr['main_phase']})" if phases else ""),
                       f"{plan}, ZeRO {p['zero_stage']}, recompute {p['recompute']}; "
                       f"step {duration(tr['step_time_s'])}, MFU {100 * tr['mfu']:.1f}%"))
    if phases:
        out.append(Finding("phases", ", ".join(f"{ph['name']} {duration(ph['time_to_train_s'])}" for ph in phases)
                           + " (the main phase's plan above; the times, cost and carbon below are the run's)"))
    if tr.get("time_to_train_s") is not None:
        eff = tr.get("effective_time_to_train_s")
        out.append(Finding("time to train", duration(tr["time_to_train_s"])
                           + (f" ({duration(eff)} with failures and checkpoints)" if eff else "")))
    else:
        out.append(Finding("throughput", f"{tr['tokens_per_s']:,.0f} tokens/s (no total_tokens: no run time)"))
    period = "run" if tr.get("datacenter_period") == "run" else "hour"
    if "power_facility_w" in tr:
        out.append(Finding(f"cost per {period}", money(tr.get("cost_usd"))))
        peak = (f", up to {format_si(tr['power_facility_peak_w'], 'W')} in another phase"
                if phases and tr.get("power_facility_peak_w", 0) > tr["power_facility_w"] else "")
        out.append(Finding("power", f"{format_si(tr['power_facility_w'], 'W')} facility "
                                    f"({format_si(tr['power_it_w'], 'W')} IT{', main phase' if phases else ''}{peak}); "
                                    f"{energy(tr['energy_facility_j'])} per {period}"))
        emb = tr.get("emissions_embodied_kgco2e")
        out.append(Finding(f"carbon per {period}", f"{mass(tr['emissions_operational_kgco2e'])} CO2e operational"
                           + (f" + {mass(emb)} embodied" if emb is not None else "")))
    return out


def _serving(d: dict[str, Any], devices: str) -> list[Finding]:
    sv = d["serving"]
    fits = sv["fits"]
    mem = sum(sv["memory_breakdown_bytes"].values())
    out = [Finding("serving fits", f"batch {sv['batch_size']} per replica on {devices}" if fits
                   else sv.get("infeasible_reason") or "does not fit", fits)]
    if fits:
        out.append(Finding("latency", f"TTFT {duration(sv['ttft_s'])}, TPOT {duration(sv['tpot_s'])} "
                                      f"(steady state, {format_bytes(mem)} used per device)"))
        out.append(Finding("throughput", f"{sv['output_tokens_per_s']:,.0f} output tokens/s"))
    if sv.get("at_slo"):
        a = sv["at_slo"]
        out.append(Finding("at the SLO", f"batch {a['batch_size']}: {a['output_tokens_per_s']:,.0f} output tokens/s, "
                                         f"{money(a.get('cost_per_million_output_tokens_usd'))} per million output "
                                         f"tokens (the figures below are at batch {sv['batch_size']}"
                                         + (", which misses the SLO)" if sv["batch_size"] > a["batch_size"] else ")")
                           if a["met"]
                           else f"missed even at batch 1: {a['reason']}", a["met"]))
    if sv.get("cost_per_million_output_tokens_usd") is not None:
        out.append(Finding("cost", f"{money(sv['cost_per_million_output_tokens_usd'])} per million output tokens, "
                                   f"{money(sv.get('cost_usd'))} per hour"))
    if "power_facility_w" in sv:
        out.append(Finding("power", f"{format_si(sv['power_facility_w'], 'W')} facility, "
                                    f"{sv['energy_per_output_token_j']:.3g} J per output token"
                           if sv.get("energy_per_output_token_j") is not None
                           else f"{format_si(sv['power_facility_w'], 'W')} facility"))
        out.append(Finding("carbon per hour", f"{mass(sv['emissions_operational_kgco2e'])} CO2e operational"))
    return out


def _simulation(d: dict[str, Any]) -> list[Finding]:
    sim = d["simulation"]
    att = sim.get("slo_attainment_frac")
    lat = (f"p99 TTFT {duration(sim['ttft_p99_s'])}, p99 TPOT {duration(sim['tpot_p99_s'])}"
           if sim.get("ttft_p99_s") is not None else "no request completed")
    if att is None:
        return [Finding("simulated load", f"{lat}; {sim['num_completed']:,} of {sim['num_requests']:,} requests served")]
    return [Finding("SLO", f"{100 * att:.1f}% of requests meet it ({lat})", att >= 0.99)]


def verdict(d: dict[str, Any]) -> list[Finding]:
    """The findings of a plan report, most important first: fit, time, cost, power, carbon."""
    c = d["cluster"]
    devices = f"{c['num_devices']:,} x {d['hardware']['id']}"
    out: list[Finding] = []
    if d.get("training"):
        out += _training(d, devices)
    if d.get("serving"):
        out += _serving(d, devices)
    if d.get("simulation"):
        out += _simulation(d)
    return out or _nothing_planned(d)


def _nothing_planned(d: dict[str, Any]) -> list[Finding]:
    """Without a training or inference section: whether the weights fit the cluster at all (a
    problem when they do not)."""
    c = d["cluster"]
    w = c["min_devices_for_weights"].get("bf16")
    hw = d["hardware"]["id"]
    fits = w is not None and w <= c["num_devices"]
    out = [Finding("weights", f"{d['model']['name']} needs at least {w} x {hw} for bf16 weights alone "
                              f"(the cluster has {c['num_devices']:,})", None if fits else False)]
    out.append(Finding("to plan", "add a training or inference section"))
    return out


def headline(d: dict[str, Any]) -> str:
    """One sentence: what was planned and whether it works."""
    what = [w for w, key in (("training", "training"), ("serving", "serving")) if d.get(key)]
    subject = f"{' and '.join(what).capitalize() or 'Planning'} {d['model']['name']} on " \
              f"{d['cluster']['num_devices']:,} x {d['hardware']['id']}"
    phrases = {"training fits": "training does not fit in memory", "serving fits": "serving does not fit in memory",
               "SLO": "the simulated load misses the SLO", "weights": "the weights alone do not fit the cluster"}
    problems = [phrases.get(f.label, f.label) for f in verdict(d) if f.ok is False]
    fine = "fits and works as planned" if what else "nothing to plan (no training or inference section)"
    return f"{subject}: " + ("; ".join(problems) if problems else fine) + "."
