"""Datacenter figures of a report: power, energy, cost and carbon of a training run, an hour of
serving or a simulated load, from the scenario's site and pricing (estimate/datacenter.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from flopcast.assumption import Assumption
from flopcast.estimate import counts
from flopcast.specs.scenario import ResolvedScenario

# (scenario, report) -> (datacenter keys, their assumptions)
DatacenterKeys = Callable[[ResolvedScenario, Any], tuple[dict[str, Any], list[Assumption]]]


def simulation_datacenter(rs: ResolvedScenario, res: Any) -> tuple[dict[str, Any], list[Assumption]]:
    """Power at the simulated utilisation, and energy, emissions and cost over the simulated time."""

    return serving_energy_cost(rs, rs.cluster.num_devices, res.busy_frac, res.simulated_s,
                                res.output_tokens_per_s, "simulated time")


def with_datacenter(rs: ResolvedScenario, est: Any, fn: DatacenterKeys) -> Any:
    """Attach the datacenter keys when the hardware states a power; otherwise say why not."""

    from flopcast.estimate.datacenter import has_power

    if not has_power(rs.hardware):
        note = Assumption("datacenter", "not estimated", f"{rs.hardware.id} has no published power (tdp)")
        return dataclasses.replace(est, assumptions=est.assumptions + (note,))
    extra, notes = fn(rs, est)
    return dataclasses.replace(est, datacenter=extra, assumptions=est.assumptions + tuple(notes))


def with_pools_datacenter(rs: ResolvedScenario, res: Any, pools: Sequence[Any]) -> Any:
    """The datacenter keys of a simulation on pools with their own hardware: power, energy, emissions
    and cost summed over the pools (each at its own devices and busy share), per output token from the sums."""
    from flopcast.estimate.datacenter import has_power

    missing = [p.hw.id for p in pools if not has_power(p.hw)]
    if missing:
        note = Assumption("datacenter", "not estimated", f"{', '.join(sorted(set(missing)))} has no published power (tdp)")
        return dataclasses.replace(res, assumptions=res.assumptions + (note,))
    total: dict[str, Any] = {}
    notes: list[Assumption] = []
    for p, row in zip(pools, res.pools, strict=True):
        part, why = serving_energy_cost(dataclasses.replace(rs, hardware=p.hw), p.num_devices, row["busy_frac"],
                                         res.simulated_s, res.output_tokens_per_s, "simulated time")
        for a in why:
            named = Assumption(f"{p.role}.{a.name}", a.value, a.why) if len(set(q.hw.id for q in pools)) > 1 else a
            if named not in notes:
                notes.append(named)
        for k, v in part.items():
            if k == "power_breakdown_w":
                acc = total.setdefault(k, {})
                for kk, vv in v.items():
                    acc[kk] = acc.get(kk, 0.0) + vv if isinstance(vv, (int, float)) else vv
            elif k in ("datacenter_period", "energy_per_output_token_j", "cost_per_million_output_tokens_usd"):
                total[k] = v
            elif k in total and (total[k] is None or v is None):
                total[k] = None
            else:
                total[k] = total.get(k, 0.0) + v if v is not None else None
    tokens = res.output_tokens_per_s * res.simulated_s
    total["energy_per_output_token_j"] = total["energy_facility_j"] / tokens if tokens else None
    cost = total.get("cost_usd")
    total["cost_per_million_output_tokens_usd"] = cost / tokens * 1e6 if cost is not None and tokens else None
    return dataclasses.replace(res, datacenter=total, assumptions=res.assumptions + tuple(notes))


def site_of(rs: ResolvedScenario) -> tuple[Any, list[Assumption]]:
    """The scenario's site (its `site` section, else the catalog's us-average) and the assumption that says so."""
    from flopcast.specs.site import resolve_site, site_registry

    if rs.site is not None:
        return rs.site, []
    default = "us-average" if "us-average" in site_registry() else None
    if default is None:
        from flopcast.specs.site import site_from_mapping

        site = site_from_mapping({"id": "default", "grid_intensity": 400, "electricity_price": 0.08, "cooling": "air"})
        return site, [Assumption("site", "built-in default", "no site catalog entry found")]
    return resolve_site(default), [Assumption("site", default, "no site given")]


def training_datacenter(rs: ResolvedScenario, est: Any) -> tuple[dict[str, Any], list[Assumption]]:
    from flopcast.estimate import datacenter as dc

    site, assumptions = site_of(rs)
    hw, n = rs.hardware, est.plan.num_devices
    busy = est.step_time_breakdown_s["compute"] / est.step_time_s
    pw = dc.power(hw, n, busy, site)
    rel = dc.reliability(counts.params_total(rs.model), n, rs.cluster.devices_per_node, given=rs.reliability)
    assumptions += dc.power_assumptions(hw, site) + dc.reliability_assumptions(rel)
    if est.time_to_train_s is not None:
        seconds = est.time_to_train_s / rel.goodput_frac
        period = "run"
    else:
        seconds = 3600.0
        period = "hour"
        assumptions.append(Assumption("datacenter_period", "one hour", "no training.total_tokens: energy, cost and "
                                      "emissions are for one hour of training"))
    e_it = pw.it_w * seconds
    e_fac = pw.facility_w * seconds
    cost, why = dc.cost_usd(hw, n, seconds, e_fac, site, rs.pricing)
    emb, emb_why = dc.embodied_kgco2e(hw, n, seconds)
    assumptions += [Assumption("cost", why, "pricing"), Assumption("embodied_carbon", emb_why, "catalog/prices.yaml")]
    out = {
        "power_it_w": pw.it_w, "power_facility_w": pw.facility_w, "power_breakdown_w": pw.to_dict(),
        "energy_it_j": e_it, "energy_facility_j": e_fac,
        "emissions_operational_kgco2e": e_fac * site.grid_intensity_kgco2e_per_j,
        "emissions_embodied_kgco2e": emb, "cost_usd": cost, "datacenter_period": period,
        "goodput_frac": rel.goodput_frac, "checkpoint_interval_s": rel.interval_s,
        "checkpoint_write_s": rel.checkpoint_write_s, "mtbf_s": rel.mtbf_s,
        "expected_interruptions": seconds / rel.mtbf_s,
        "effective_time_to_train_s": seconds if period == "run" else None,
    }
    return out, assumptions


def serving_datacenter(rs: ResolvedScenario, est: Any) -> tuple[dict[str, Any], list[Assumption]]:
    bd = est.decode_step_breakdown_s
    total = sum(bd.values())
    busy = (total - bd["tp_comm"] - bd["ep_comm"] - bd["pp_comm"]) / total if total else 1.0
    return serving_energy_cost(rs, est.spec.num_devices, busy, 3600.0, est.output_tokens_per_s, "hour")


def serving_energy_cost(rs: ResolvedScenario, n: int, busy: float, seconds: float, output_tokens_per_s: float,
                         period: str) -> tuple[dict[str, Any], list[Assumption]]:
    """Power of n serving devices at `busy`, and energy, emissions and cost over `seconds`, per output token."""
    from flopcast.estimate import datacenter as dc

    site, assumptions = site_of(rs)
    hw = rs.hardware
    pw = dc.power(hw, n, busy, site)
    cost, why = dc.cost_usd(hw, n, seconds, pw.facility_w * seconds, site, rs.pricing)
    emb, emb_why = dc.embodied_kgco2e(hw, n, seconds)
    assumptions += dc.power_assumptions(hw, site) + [Assumption("cost", why, "pricing"),
                                                     Assumption("embodied_carbon", emb_why, "catalog/prices.yaml")]
    tokens = output_tokens_per_s * seconds
    out = {
        "power_it_w": pw.it_w, "power_facility_w": pw.facility_w, "power_breakdown_w": pw.to_dict(),
        "energy_it_j": pw.it_w * seconds, "energy_facility_j": pw.facility_w * seconds,
        "emissions_operational_kgco2e": pw.facility_w * seconds * site.grid_intensity_kgco2e_per_j,
        "emissions_embodied_kgco2e": emb, "cost_usd": cost, "datacenter_period": period,
        "energy_per_output_token_j": pw.facility_w * seconds / tokens if tokens else None,
        "cost_per_million_output_tokens_usd": cost / tokens * 1e6 if cost is not None and tokens else None,
    }
    return out, assumptions

