"""`flopcast fleet`: size a serving fleet over regions and hours, for every candidate deployment,
and report the chosen fleet and the candidates side by side.

The grid is model x deployment x region (24 hours each, vectorised); its cells are independent
pure functions of the parsed scenario (fleet/sizing.py), run in this process (`local`) or as Ray
tasks (`ray`, one task per model and deployment), and gathered in the same order, so both backends
give the same report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flopcast import files
from flopcast import units as u
from flopcast.assumption import Assumption
from flopcast.errors import FlopcastError, InvalidScenario, UnknownName
from flopcast.fleet.confirm import confirm_disaggregated, confirm_pool
from flopcast.fleet.sizing import Cell, Job, size_cells
from flopcast.fleet.spec import HOURS, FleetSpec, fleet_from_scenario

BACKENDS = ("local", "ray")
CONTEXT_KEYS = ("calibration",)     # top-level sections passed to every serving-estimator call
DAYS_PER_YEAR = u.YEAR_S / u.DAY_S


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetReport:
    """The chosen fleet (per region and in total), the candidates compared, and the assumptions."""

    name: str
    backend: str
    objective: str
    selected: Mapping[str, str | None]          # model -> chosen deployment
    totals: Mapping[str, Any]
    regions: tuple[Mapping[str, Any], ...]
    deployments: tuple[Mapping[str, Any], ...]
    choices: Mapping[str, Mapping[str, str | None]]
    assumptions: tuple[Assumption, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "objective": self.objective,
                "hours": HOURS, "selected": dict(self.selected), **dict(self.totals),
                "regions": [dict(r) for r in self.regions], "deployments": [dict(d) for d in self.deployments],
                "choices": {k: dict(v) for k, v in self.choices.items()},
                "assumptions": [a.to_dict() for a in self.assumptions]}


def _totals(cells: list[Cell]) -> dict[str, Any]:
    """Fleet figures of a set of cells: coincident hourly sums, then peak, mean and daily totals."""
    dev = np.zeros(HOURS)
    fac = np.zeros(HOURS)
    out = np.zeros(HOURS)
    cost: np.ndarray | None = np.zeros(HOURS)
    op_kg_day = 0.0
    emb: float | None = 0.0
    for c in cells:
        dev += c.num_devices
        fac += c.power_facility_w
        out += c.output_tokens_per_s
        op_kg_day += float(np.sum(c.power_facility_w)) * u.HOUR_S * c.grid_kgco2e_per_j
        cost = None if cost is None or c.cost_usd is None else cost + c.cost_usd
        emb = None if emb is None or c.embodied_kgco2e_per_year is None else emb + c.embodied_kgco2e_per_year
    out_day = float(out.sum()) * u.HOUR_S
    e_day = float(fac.sum()) * u.HOUR_S
    cost_day = None if cost is None else float(cost.sum())
    return {
        "num_devices_peak": int(dev.max()), "num_devices_mean": float(dev.mean()),
        "power_facility_w_peak": float(fac.max()), "power_facility_w_mean": float(fac.mean()),
        "energy_facility_j_per_day": e_day, "energy_facility_j_per_year": e_day * DAYS_PER_YEAR,
        "output_tokens_per_day": out_day,
        "energy_per_output_token_j": e_day / out_day if out_day else None,
        "cost_usd_per_day": cost_day,
        "cost_per_million_output_tokens_usd": cost_day / out_day * 1e6 if cost_day is not None and out_day else None,
        "emissions_operational_kgco2e_per_year": op_kg_day * DAYS_PER_YEAR,
        "emissions_embodied_kgco2e_per_year": emb,
        "hourly": {"num_devices": [int(x) for x in dev], "power_facility_w": [float(x) for x in fac],
                   "output_tokens_per_s": [float(x) for x in out]},
    }


def _objective_value(t: Mapping[str, Any], objective: str) -> tuple[float, float]:
    inf = float("inf")
    match objective:
        case "cost":
            return (inf if t["cost_usd_per_day"] is None else t["cost_usd_per_day"], t["num_devices_mean"])
        case "carbon":
            return (t["emissions_operational_kgco2e_per_year"] + (t["emissions_embodied_kgco2e_per_year"] or 0.0),
                    t["num_devices_mean"])
        case "devices":
            return (t["num_devices_peak"], t["num_devices_mean"])
    raise ValueError(objective)


def _best(rows: list[dict[str, Any]], objective: str) -> str | None:
    """The deployment of the row with the smallest objective value (None for no rows)."""
    return min(rows, key=lambda r: _objective_value(r, objective))["deployment"] if rows else None


def _model_label(ref: Any) -> str:
    return ref if isinstance(ref, str) else str(ref.get("name") or ref.get("model_type") or "inline model")


def _check_names(spec: FleetSpec, job: Job) -> None:
    """Resolve every model, hardware and site once here, so that a bad name is one error naming its
    field (and never surfaces from inside a worker)."""
    from flopcast.specs.scenario import resolve_hardware, resolve_model
    from flopcast.specs.site import resolve_site

    def check(where: str, fn, value) -> None:
        try:
            fn(value)
        except UnknownName as e:
            raise UnknownName(e.kind, e.name, e.known, message=f"{where}: {e}") from None
        except InvalidScenario as e:
            raise InvalidScenario(f"{where}: {e}") from None

    for i, ref in enumerate(job.model_refs):
        check(f"fleet.models[{i}].model" if len(job.model_refs) > 1 else "model", resolve_model, ref)
    for i, dep in enumerate(spec.deployments):
        check(f"fleet.deployments[{i}].hardware", resolve_hardware, dep.hardware)
    for i, region in enumerate(spec.regions):
        check(f"fleet.regions[{i}].site", resolve_site, region.site)
    if (job.context or {}).get("calibration") is not None:   # a named profile: refused here, not as "infeasible"
        from flopcast.estimate.calibration import resolve_profile

        resolve_profile(job.context["calibration"], "inference")


def run_cells(job: Job, cells: list[tuple[int, int, int]], backend: str, ray_address: str | None) -> list[Cell]:
    """Size every cell on the chosen backend; results in the order of `cells`."""
    if backend == "local":
        return size_cells(job, cells)
    try:
        import ray
    except ImportError:
        raise InvalidScenario("backend: ray is not installed; install the extra: pip install 'flopcast[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for c in cells:
        groups.setdefault(c[:2], []).append(c)
    remote = ray.remote(size_cells)
    job_ref = ray.put(job)
    refs = [remote.remote(job_ref, g) for g in groups.values()]
    try:
        batches = ray.get(refs)
    except ray.exceptions.RayTaskError as e:      # bad input found by a worker: the same one-line error
        cause = getattr(e, "cause", None)
        if isinstance(cause, FlopcastError):
            raise cause from None
        raise
    done = {(c.model_index, c.deployment_index, c.region_index): c for batch in batches for c in batch}
    return [done[c] for c in cells]


def _relative_to(value: Any, base_dir: str) -> Any:
    """A file path given relative to the scenario file, made absolute (other values unchanged)."""
    if not files.current().local:    # the service: names are resolved in its data folder (flopcast.files)
        return value
    if isinstance(value, str) and not Path(value).is_absolute() and (Path(base_dir) / value).is_file():
        return str(Path(base_dir) / value)
    return value


def _absolute_model(ref: Any, base_dir: str) -> Any:
    if not files.current().local:    # the service: names are resolved in its data folder (flopcast.files)
        return ref
    if isinstance(ref, str) and ref.endswith(".json") and not Path(ref).is_absolute():
        return str(Path(base_dir) / ref)
    return ref


def _job(scenario: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], FleetSpec, Job]:
    """The scenario mapping, its fleet section and the job every cell is sized from (names checked)."""
    from flopcast.specs.scenario import load_scenario
    from flopcast.specs.site import pricing_from_mapping

    data = load_scenario(scenario)
    base_dir = data.pop("_base_dir")
    spec: FleetSpec = fleet_from_scenario(data)
    job = Job(fleet=spec, model_refs=tuple(_absolute_model(m, base_dir) for m, _ in spec.models),
              pricing=pricing_from_mapping(data.get("pricing")),
              context={k: _relative_to(data[k], base_dir) for k in CONTEXT_KEYS if k in data})
    _check_names(spec, job)
    return data, spec, job


def _candidate(spec: FleetSpec, label: str, di: int, cs: list[Cell]) -> dict[str, Any]:
    """One candidate (a model's deployment over every region): feasibility, power caps, fleet figures."""
    dep = spec.deployments[di]
    t = _totals(cs)
    reasons = sorted({f"{p.role}: {p.infeasible_reason}" for c in cs for p in c.pools if not p.feasible})
    over = [spec.regions[c.region_index].name for c in cs
            if spec.regions[c.region_index].power_cap_w is not None
            and max(c.power_facility_w) > spec.regions[c.region_index].power_cap_w]
    return {
        "model": label, "deployment": dep.name, "hardware": _hw_id(dep.hardware),
        "disaggregated": dep.disaggregated, "feasible": not reasons, "infeasible_reason": "; ".join(reasons) or None,
        "exceeds_power_cap": over,
        # an infeasible candidate has no fleet figures (a pool it cannot run would count as zero devices)
        **{k: (v if not reasons else None) for k, v in t.items() if k != "hourly"},
        "capacity": [{"region": spec.regions[c.region_index].name, "pools": [p.to_dict() for p in c.pools]}
                     for c in cs],
    }


def _choose(rows: list[dict[str, Any]], labels: list[str], objective: str
            ) -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
    """The deployment chosen per model (by the objective, among the feasible candidates within every
    power cap when one is), and the cheapest, lowest-carbon and fewest-device ones."""
    selected: dict[str, str | None] = {}
    choices: dict[str, dict[str, str | None]] = {}
    for label in labels:
        cand = [r for r in rows if r["model"] == label and r["feasible"]]
        within = [r for r in cand if not r["exceeds_power_cap"]] or cand
        priced = [r for r in within if r["cost_usd_per_day"] is not None]
        choices[label] = {"cheapest": _best(priced, "cost"), "lowest_carbon": _best(within, "carbon"),
                          "fewest_devices": _best(within, "devices")}
        selected[label] = _best(within, objective)       # unpriced rows rank last on cost
    return selected, choices


def _pool_rows(c: Cell, label: str, spec: FleetSpec) -> list[dict[str, Any]]:
    """The pools of one chosen cell, with their hourly units and utilisation."""
    return [{"model": label, "deployment": spec.deployments[c.deployment_index].name,
             "role": p.role, "unit_devices": p.unit_devices, "units_peak": max(units_h),
             "units_mean": sum(units_h) / HOURS, "tokens_per_s_per_unit": p.tokens_per_s,
             "batch_size": p.batch_size, "ttft_s": p.ttft_s, "tpot_s": p.tpot_s,
             "utilisation_frac_mean": sum(util_h) / HOURS,
             "hourly_units": list(units_h), "hourly_utilisation_frac": list(util_h)}
            for p, units_h, util_h in zip(c.pools, c.units, c.utilisation_frac, strict=True)]


def _confirm(mine: list[dict[str, Any]], c: Cell, spec: FleetSpec, job: Job, region: Any) -> None:
    """Simulate the binding hour of a cell's pools (a prefill + decode pair together) into each pool's
    `confirmation`."""
    dep = spec.deployments[c.deployment_index]
    model = job.model_refs[c.model_index]
    if {p["role"] for p in mine} == {"prefill", "decode"}:
        both = confirm_disaggregated(model, dep, next(p for p in mine if p["role"] == "prefill"),
                                     next(p for p in mine if p["role"] == "decode"), region.demand, spec.slo_ttft_s,
                                     spec.slo_tpot_s, job.context)
        for p in mine:
            p["confirmation"] = both
        return
    for p in mine:
        p["confirmation"] = confirm_pool(model, dep, p, region.demand, spec.slo_ttft_s, spec.slo_tpot_s, job.context)


def _region_rows(spec: FleetSpec, job: Job, labels: list[str], chosen: list[Cell], confirm: bool) -> list[dict[str, Any]]:
    """The chosen fleet per region: its figures, power cap and pools (confirmed by simulation)."""
    regions = []
    for ri, region in enumerate(spec.regions):
        rc = [c for c in chosen if c.region_index == ri]
        t = _totals(rc)
        pools: list[dict[str, Any]] = []
        for c in rc:
            mine = _pool_rows(c, labels[c.model_index], spec)
            pools += mine
            if confirm:
                _confirm(mine, c, spec, job, region)
        regions.append({"name": region.name, "site": _site_id(region.site), "power_cap_w": region.power_cap_w,
                        "within_power_cap": region.power_cap_w is None or t["power_facility_w_peak"] <= region.power_cap_w,
                        **t, "pools": pools})
    return regions


def _fleet_totals(spec: FleetSpec, chosen: list[Cell], selected: Mapping[str, str | None]) -> dict[str, Any]:
    """The chosen fleet's totals: the coincident sums, input tokens, nodes and unserved models."""
    totals = _totals(chosen)
    totals.pop("hourly")
    totals["input_tokens_per_day"] = sum(share * r.demand.requests_per_s * r.demand.input_tokens * u.DAY_S
                                         for _, share in spec.models for r in spec.regions)
    totals["num_nodes_mean"] = None
    node = {c.deployment_index: _node_size(spec.deployments[c.deployment_index]) for c in chosen}
    if len(set(node.values())) == 1:
        totals["num_nodes_mean"] = totals["num_devices_mean"] / next(iter(node.values()))
    totals["unserved_models"] = [m for m, d in selected.items() if d is None]
    return totals


def plan_fleet(scenario: str | Path | Mapping[str, Any], *, backend: str = "local",
               ray_address: str | None = None, confirm: bool = True) -> FleetReport:
    """`flopcast fleet`: a serving fleet over regions and hours from the scenario's `fleet` section:
    devices, utilisation, power, energy, cost and carbon per region and hour, for each candidate
    deployment, and the chosen one (see docs/fleet.md). backend: local | ray (same results); confirm:
    simulate each region's binding hour of the chosen pools (fleet/confirm.py)."""
    if backend not in BACKENDS:
        raise UnknownName("backend", backend, BACKENDS)
    data, spec, job = _job(scenario)
    labels = [_model_label(m) for m, _ in spec.models]
    grid = [(mi, di, ri) for mi in range(len(spec.models)) for di, dep in enumerate(spec.deployments)
            if dep.model in (None, str(spec.models[mi][0])) for ri in range(len(spec.regions))]
    cells = run_cells(job, grid, backend, ray_address)
    by_md: dict[tuple[int, int], list[Cell]] = {}
    for c in cells:
        by_md.setdefault((c.model_index, c.deployment_index), []).append(c)
    rows = [_candidate(spec, labels[mi], di, cs) for (mi, di), cs in by_md.items()]
    objective = spec.policy.objective
    selected, choices = _choose(rows, labels, objective)
    dep_index = {d.name: i for i, d in enumerate(spec.deployments)}
    chosen = [c for c in cells if selected[labels[c.model_index]] is not None
              and c.deployment_index == dep_index[selected[labels[c.model_index]]]]
    regions = _region_rows(spec, job, labels, chosen, confirm)
    return FleetReport(name=str(data.get("name") or "fleet"), backend=backend, objective=objective,
                       selected=selected, totals=_fleet_totals(spec, chosen, selected), regions=tuple(regions),
                       deployments=tuple(rows), choices=choices, assumptions=tuple(_assumptions(spec, rows, cells)))


def _hw_id(hw: Any) -> str:
    from flopcast.specs.scenario import resolve_hardware

    return resolve_hardware(hw).id


def _node_size(dep) -> int:
    from flopcast.specs.scenario import resolve_hardware

    return dep.devices_per_node or resolve_hardware(dep.hardware).node_size


def _site_id(site: Any) -> str:
    from flopcast.specs.site import resolve_site

    return resolve_site(site).id


def _assumptions(spec: FleetSpec, rows: list[dict[str, Any]], cells: list[Cell]) -> list[Assumption]:
    pol = spec.policy
    out = [Assumption(n, v, w) for n, v, w in spec.assumptions]
    out += [
        Assumption("capacity", "flopcast's serving estimator (flopcast infer), one call per pool and batch",
                   "colocated units: inference.pool both (steady-state output tokens/s with chunked prefill); "
                   "prefill units: pool prefill (prompt tokens/s at the iteration budget); decode units: pool "
                   "decode (output tokens/s, prompts arriving with their KV cache)"),
        Assumption("batch_size", "largest meeting fleet.slo" if spec.slo_ttft_s or spec.slo_tpot_s else
                   "largest that memory and the iteration budget allow",
                   "SLOs are applied to the analytic (mean) TTFT and TPOT; a deployment's own batch_size is kept "
                   "and checked"),
        Assumption("lengths", "means per request", "the analytic sizing uses mean prompt and output lengths; "
                   "distributions matter to the simulator only"),
        Assumption("prefix_cache", "cached prompt tokens need no prefill compute",
                   "the region's prefix_cache_hit_frac is passed to colocated and prefill units as "
                   "inference.prefix_cache_hit_frac (the estimator computes only the uncached share)"),
        Assumption("speculative_decoding", "as the serving estimator models it",
                   "inference.speculative is passed only if the estimator accepts it (else listed below as not "
                   "applied)"),
        Assumption("scaling", pol.scaling, "hourly: units follow the load and released devices do other work "
                   "(cost and embodied carbon count devices while held); static: each region holds its daily peak"),
        Assumption("headroom", f"N+{pol.spare_replicas} units per region and pool, at most "
                   f"{pol.target_utilisation:.0%} of a unit's analytic capacity", "fleet.policy"),
        Assumption("failover", pol.failover, "neighbours: every region also carries, each hour, the largest share "
                   "of a single failed neighbour's load (spread evenly over that neighbour's neighbours)"
                   if pol.failover == "neighbours" else "no region failure is planned for"),
        Assumption("power", "per device: idle + (full - idle) x utilisation x the unit's compute share",
                   "estimate/datacenter.py power model, facility = IT x site PUE"),
        Assumption("peak", "coincident", "fleet peaks are the largest hourly sum over regions (UTC), "
                   "not the sum of the regions' own peaks"),
    ]
    dropped = sorted({(spec.deployments[c.deployment_index].name, k) for c in cells for p in c.pools
                      for k in p.dropped_keys})
    for name, key in dropped:
        out.append(Assumption(f"{name}.{key}", "not applied",
                              f"the serving estimator does not accept inference.{key} yet (specs/serving.py)"))
    whys = sorted({c.cost_why for c in cells if c.cost_why})
    if whys:
        out.append(Assumption("cost", "; ".join(whys), "pricing (estimate/datacenter.py)"))
    for r in rows:
        if r["exceeds_power_cap"]:
            out.append(Assumption(f"{r['deployment']}.power_cap", ", ".join(r["exceeds_power_cap"]),
                                  "regions whose power cap this candidate exceeds; it is chosen only if no "
                                  "candidate fits every cap"))
    return out
