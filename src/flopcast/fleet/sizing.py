"""One cell of the fleet grid: a model's share of one region's demand served by one candidate
deployment, hour by hour over a day (UTC).

Per hour h and pool (colocated, or prefill and decode):
  load(h)   = share x requests/s x profile(h) x (O output tokens | I prompt tokens, for prefill pools;
              their capacity credits the prefix-cache hits: cached prompt tokens need no prefill compute)
  units(h)  = ceil((load(h) + failover(h)) / (capacity x target_utilisation)) + spare_replicas
  failover(h) = max over the neighbours n that list this region of load_n(h) / (number of n's neighbours)
                (the worst single region failure, its load spread evenly over its neighbours)
  static scaling holds units at their daily maximum; hourly scaling follows the load.
  utilisation(h) = load(h) / (units(h) x capacity); a device's compute share is utilisation x the
  unit's compute share at full load, which sets its power (estimate/datacenter.py).
Cost per hour comes from estimate/datacenter.py's cost_usd (hourly price or TCO) for the devices held
that hour; embodied carbon is amortised over the devices held on average (hourly) or at peak (static).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flopcast import files
from flopcast import units as u
from flopcast.fleet import capacity as cap
from flopcast.fleet.spec import HOURS, FleetSpec

_CAPACITY_CACHE: dict[str, tuple[cap.PoolCapacity, ...]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything a worker needs (picklable): the parsed fleet, model refs and pricing."""

    fleet: FleetSpec
    model_refs: tuple[Any, ...]        # as given, relative paths made absolute
    pricing: Any
    context: Any = None                # scenario sections every estimator call carries (calibration)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    model_index: int
    deployment_index: int
    region_index: int
    pools: tuple[cap.PoolCapacity, ...]
    units: tuple[tuple[int, ...], ...]               # per pool, per hour
    utilisation_frac: tuple[tuple[float, ...], ...]  # per pool, per hour
    num_devices: tuple[int, ...]                     # per hour
    power_it_w: tuple[float, ...]
    power_facility_w: tuple[float, ...]
    cost_usd: tuple[float, ...] | None               # per hour; None without a price
    cost_why: str
    output_tokens_per_s: tuple[float, ...]
    embodied_kgco2e_per_year: float | None
    grid_kgco2e_per_j: float

    @property
    def feasible(self) -> bool:
        return all(p.feasible for p in self.pools)


def pool_capacities(job: Job, mi: int, di: int, ri: int) -> tuple[cap.PoolCapacity, ...]:
    f = job.fleet
    dep, region = f.deployments[di], f.regions[ri]
    d = region.demand
    key = repr((job.model_refs[mi], dep, round(d.input_tokens), round(d.output_tokens), d.prefix_cache_hit_frac,
                f.slo_ttft_s, f.slo_tpot_s, job.context, files.current()))   # names mean files per policy
    if key not in _CAPACITY_CACHE:
        if len(_CAPACITY_CACHE) > 512:
            _CAPACITY_CACHE.clear()
        _CAPACITY_CACHE[key] = cap.pools(job.model_refs[mi], dep.hardware, dep, f"fleet.deployments[{di}]",
                                         d.input_tokens, d.output_tokens, d.prefix_cache_hit_frac,
                                         f.slo_ttft_s, f.slo_tpot_s, job.context)
    return _CAPACITY_CACHE[key]


def loads(job: Job, mi: int, ri: int) -> tuple[np.ndarray, np.ndarray]:
    """(output tokens/s, prompt tokens/s) of model mi in region ri, per hour."""
    share = job.fleet.models[mi][1]
    d = job.fleet.regions[ri].demand
    req = share * d.requests_per_s * np.asarray(d.profile)
    return req * d.output_tokens, req * d.input_tokens


def failover_loads(job: Job, mi: int, ri: int) -> tuple[np.ndarray, np.ndarray]:
    """Per hour, the largest load one failed neighbour shifts onto region ri."""
    out, pre = np.zeros(HOURS), np.zeros(HOURS)
    if job.fleet.policy.failover != "neighbours":
        return out, pre
    name = job.fleet.regions[ri].name
    for ni, n in enumerate(job.fleet.regions):
        if name in n.neighbours:
            o, p = loads(job, mi, ni)
            out = np.maximum(out, o / len(n.neighbours))
            pre = np.maximum(pre, p / len(n.neighbours))
    return out, pre


def size_cell(job: Job, mi: int, di: int, ri: int) -> Cell:
    """Units, devices, utilisation, power and cost per hour of one (model, deployment, region)."""
    from flopcast.estimate import datacenter as dc
    from flopcast.specs.scenario import resolve_hardware
    from flopcast.specs.site import resolve_site

    f = job.fleet
    pol = f.policy
    dep, region = f.deployments[di], f.regions[ri]
    hw = resolve_hardware(dep.hardware)
    site = resolve_site(region.site)
    pools = pool_capacities(job, mi, di, ri)
    out, pre = loads(job, mi, ri)
    fo_out, fo_pre = failover_loads(job, mi, ri)
    any_demand = bool(out.sum() > 0)
    units_l, util_l = [], []
    devices = np.zeros(HOURS)
    it_w, fac_w = np.zeros(HOURS), np.zeros(HOURS)
    for p in pools:
        own = pre if p.role == "prefill" else out
        shifted = fo_pre if p.role == "prefill" else fo_out
        if not p.feasible:
            n_units = np.zeros(HOURS)
            util = np.zeros(HOURS)
        else:
            n_units = cap.ceil_units(own + shifted, p.tokens_per_s, pol.target_utilisation)
            if any_demand:
                n_units = n_units + pol.spare_replicas
            if pol.scaling == "static":
                n_units = np.full(HOURS, n_units.max())
            util = np.divide(own, n_units * p.tokens_per_s, out=np.zeros(HOURS), where=n_units > 0)
        n_dev = n_units * p.unit_devices
        devices += n_dev
        for h in range(HOURS):
            if n_dev[h] >= 1:
                pw = dc.power(hw, int(n_dev[h]), float(util[h]) * p.busy_frac, site)
                it_w[h] += pw.it_w
                fac_w[h] += pw.facility_w
        units_l.append(tuple(int(x) for x in n_units))
        util_l.append(tuple(float(x) for x in util))
    hourly_usd: list[float] = []
    costs: list[float] | None = hourly_usd
    why = ""
    for h in range(HOURS):
        c, why = dc.cost_usd(hw, int(devices[h]), u.HOUR_S, float(fac_w[h]) * u.HOUR_S, site, job.pricing)
        if c is None:
            costs = None
            break
        hourly_usd.append(float(c))
    held = float(devices.max() if pol.scaling == "static" else devices.mean())
    emb, _ = dc.embodied_kgco2e(hw, held, u.YEAR_S)      # linear in the device count
    return Cell(model_index=mi, deployment_index=di, region_index=ri, pools=pools, units=tuple(units_l),
                utilisation_frac=tuple(util_l), num_devices=tuple(int(x) for x in devices),
                power_it_w=tuple(float(x) for x in it_w), power_facility_w=tuple(float(x) for x in fac_w),
                cost_usd=None if costs is None else tuple(costs), cost_why=why,
                output_tokens_per_s=tuple(float(x) for x in out), embodied_kgco2e_per_year=emb,
                grid_kgco2e_per_j=site.grid_intensity_kgco2e_per_j)


def size_cells(job: Job, cells: list[tuple[int, int, int]]) -> list[Cell]:
    """A batch of cells (one task of a backend)."""
    return [size_cell(job, *c) for c in cells]
