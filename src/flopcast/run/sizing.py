"""Fleet sizing by simulation (`flopcast simulate --size-fleet`, `api.size_fleet`): the cheapest fleet
whose steady-state p99 TTFT and p99 TPOT meet the inference section's SLO under its workload.

Unit. A colocated fleet grows by replicas (tp x pp devices each); with ep > 1 by expert-parallel
groups: ep attention-data-parallel ranks that share the experts (replicas = groups x ep). A
disaggregated fleet (`scheduler: disaggregated`, or `inference.prefill` / `inference.decode`) sizes
its prefill and decode pools independently, each in its own unit.

Analytic floor. Per pool, units >= offered load / one unit's analytic maximum (estimate/serving.py
at the workload's mean lengths): output tokens/s for a colocated or decode unit, prompt tokens/s
for a prefill unit. No fleet below it is tried as an answer: the steady state of fewer units would
be overloaded.

Steady state. A trial simulates N requests of the workload (its process, rate, lengths and seed;
N grows, the workload's own num_requests is the least) and judges the requests after the warm-up:
the warm-up cut, the convergence test and the verdict are run/steady.py's (its docstring states
them). A trial that has not settled runs again with N doubled, up to MAX_EXTENSION (8) x the first
run and the work limits (specs/limits.py: MAX_SIM_REQUESTS, MAX_SIM_TOKENS) or `max_requests`; a
trial still unsettled there (a load so close to capacity that its queues wander for longer) is
judged on what it has and marked `settled: false`.
The first N is the larger of the workload's num_requests, MIN_REQUESTS and FILL x the requests
arriving during one long request's life (arrival rate x the analytic TTFT plus the workload's p99
output length times the analytic TPOT, both capped at the SLO): the warm-up cut needs one lifetime
and must fall in the first half.

Search. Per pool: from the analytic floor, grow by GROWTH (x1.5, at least +1 unit) until the SLO is
met, then bisect down to the last failing size. Disaggregated: grow the prefill pool while TTFT fails
and the decode pool while TPOT fails, then shrink the prefill pool with the decode pool fixed and
then the decode pool (TTFT depends on the prefill pool and the transfer, TPOT on the decode pool, so
the per-pool minima are the cheapest combination; cost per hour by device-hour price where the
catalog has one, else devices). Every trial is returned as the latency-throughput curve.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flopcast.errors import InvalidScenario
from flopcast.estimate.datacenter import device_hour_price
from flopcast.estimate.serving import estimate_serving
from flopcast.inputs import writable_file
from flopcast.run.serving import simulate_serving_resolved
from flopcast.run.steady import SETTLE_TOL, WARMUP_RULE, steady_state
from flopcast.sim.pools import explicit_pools
from flopcast.sim.workload import SLO, WorkloadSpec, generate
from flopcast.specs import limits
from flopcast.specs.scenario import ResolvedScenario, resolve
from flopcast.specs.serving import InferenceSpec, validate_inference
from flopcast.specs.traffic import default_workload

MIN_REQUESTS = 1000
FILL = 2.5               # first run: at least FILL x the requests arriving in one p99 request lifetime
GROWTH = 1.5
MAX_TRIALS = 60
MAX_EXTENSION = 8        # a trial's run doubles up to 8 x its first run (and the work limits)
CONVERGENCE_RULE = (f"p99 of the two halves of the post-warm-up requests within {SETTLE_TOL:.0%} of the larger, or "
                    "both at most half / at least twice the target, for each SLO metric; else the run doubles, up to "
                    f"{MAX_EXTENSION} x the first run")



@dataclasses.dataclass(frozen=True, slots=True)
class _PoolPlan:
    role: str                # both | prefill | decode
    hw: Any
    spec: Any                # the layout at one unit (dp = unit)
    unit: int                # replicas per unit (ep, or 1)
    per_unit_max: float      # analytic maximum of one unit (output or prompt tokens/s)
    floor: int               # analytic minimum units
    price: float | None      # $ per device-hour (None: unknown)

    @property
    def unit_devices(self) -> int:
        return self.unit * self.spec.tp * self.spec.pp


def check_plot_path(plot: str | Path) -> None:
    """The curve's file: a writable .svg (checked before any simulation runs)."""
    if not str(plot).lower().endswith(".svg"):
        raise InvalidScenario(f"--plot: {str(plot)!r}; the latency-throughput curve is written as SVG (a .svg file)")
    writable_file(plot, what="--plot")


def _sizing_inputs(rs: ResolvedScenario, max_replicas: Any, max_requests: Any) -> tuple[InferenceSpec, SLO]:
    """The inference spec and its SLO, refused (one line) when fleet sizing cannot use them."""
    if rs.inference is None:
        raise InvalidScenario("inference: missing; give tp, weights_dtype, lengths, a workload and an slo")
    slo = rs.slo
    if slo.ttft_s is None and slo.tpot_s is None:
        raise InvalidScenario('inference.slo: fleet sizing needs a target, e.g. {ttft_p99: "1 s", tpot_p99: "50 ms"}')
    if rs.workload is not None and rs.workload.trace is None and rs.workload.process == "burst":
        raise InvalidScenario("inference.workload.arrival: fleet sizing needs an arrival rate (poisson or gamma) "
                              "or a trace, not a burst")
    if not isinstance(max_replicas, int) or isinstance(max_replicas, bool) or max_replicas < 1:
        raise InvalidScenario(f"max_replicas: expected a positive integer, got {max_replicas!r}")
    limits.check_count(max_replicas, limits.MAX_FLEET_REPLICAS, field="max_replicas")
    if max_requests is not None and (isinstance(max_requests, bool) or not isinstance(max_requests, int)
                                     or max_requests < 1):
        raise InvalidScenario(f"max_requests: expected a positive integer, got {max_requests!r}")
    return rs.inference, slo


@dataclasses.dataclass(frozen=True, slots=True)
class _Offered:
    """The workload's own sample: offered request rate, mean lengths, p99 output, the run limit."""

    rate_per_s: float
    mean_in: float
    mean_out: float
    p99_out: float
    num_arrivals: int
    n_limit: int


def _offered(workload: WorkloadSpec, max_requests: int | None) -> _Offered:
    """Offered load and the longest run from the workload's own sample (its num_requests, at least
    MIN_REQUESTS, within the work limits)."""
    n_limit = limits.MAX_SIZING_REQUESTS
    if workload.trace is None:
        mean_tokens = workload.input_tokens.mean + workload.output_tokens.mean
        n_limit = min(n_limit, int(limits.MAX_SIZING_TOKENS // max(mean_tokens, 1.0)))
    if max_requests is not None:
        n_limit = min(n_limit, max_requests)
    arrivals, ins, outs = generate(dataclasses.replace(workload, num_requests=min(max(workload.num_requests,
                                                                                      MIN_REQUESTS), n_limit))
                                   if workload.trace is None else workload)
    span = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    rate = (len(arrivals) - 1) / span if span > 0 else 0.0
    return _Offered(rate_per_s=rate, mean_in=float(ins.mean()), mean_out=float(outs.mean()),
                    p99_out=float(np.percentile(outs, 99)), num_arrivals=len(arrivals), n_limit=n_limit)


def _infeasible(plans: list[_PoolPlan], slo: SLO, max_replicas: int, rs: ResolvedScenario,
                explicit: bool) -> dict[str, Any] | None:
    """The report of a layout that does not fit its hardware at the mean lengths (infeasible is a
    value: no fleet of this layout, and why), else None."""
    infeasible = [p for p in plans if p.per_unit_max <= 0]
    if not infeasible:
        return None
    p = infeasible[0]
    out = _report(plans, {}, {}, None, slo, max_replicas, rs, explicit)
    out.pop("_steady")
    out["reason"] = (f"the {'' if p.role == 'both' else p.role + ' '}layout does not fit {p.hw.id} at the mean "
                     f"lengths (tp {p.spec.tp}, pp {p.spec.pp}); `flopcast infer` says what would fit")
    return out


def size_fleet(scenario: str | Path | Mapping[str, Any], *, max_replicas: int = 1024,
               max_requests: int | None = None, progress: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """`flopcast simulate --size-fleet`: the cheapest fleet whose steady-state p99 TTFT and p99 TPOT
    meet `inference.slo` under the workload (module docstring: unit, floor, steady state, search);
    the simulation at that size and every trial as a latency-throughput `curve`. `progress(done,
    total)` is called by every trial's simulation (the service stops the work from it)."""
    rs = resolve(scenario)
    spec, slo = _sizing_inputs(rs, max_replicas, max_requests)
    scheduler, prefill_replicas = rs.scheduler.name, rs.scheduler.prefill_replicas
    explicit = bool(rs.pools)
    workload = rs.workload or default_workload(input_tokens=spec.input_tokens, output_tokens=spec.output_tokens)
    plans = _pool_plans(rs, spec, scheduler, prefill_replicas, explicit)
    load = _offered(workload, max_requests)
    plans = [_with_floor(rs, p, load.rate_per_s, load.mean_in, load.mean_out) for p in plans]
    if (out := _infeasible(plans, slo, max_replicas, rs, explicit)) is not None:
        return out
    lifetime = _analytic_e2e_s(rs, plans, load.mean_in, load.mean_out, load.p99_out, slo)
    n_limit = load.n_limit
    n0 = max(workload.num_requests, MIN_REQUESTS, math.ceil(FILL * load.rate_per_s * lifetime))
    if workload.trace is not None:
        n0 = n_limit = load.num_arrivals if max_requests is None else min(load.num_arrivals, max_requests)
    n0 = min(n0, n_limit)

    trials: dict[tuple[int, ...], dict[str, Any]] = {}
    results: dict[tuple[int, ...], Any] = {}

    def run(units: tuple[int, ...]) -> dict[str, Any]:
        if units not in trials:
            trials[units], results[units] = _trial(rs, scheduler, plans, units, workload, slo, n0, n_limit, explicit,
                                                   progress)
        return trials[units]

    best = _search(run, plans, max_replicas)
    out = _report(plans, trials, results, best, slo, max_replicas, rs, explicit)
    out["steady_state"] = {"warmup_rule": WARMUP_RULE, "convergence_rule": CONVERGENCE_RULE,
                           "first_run_requests": n0, "max_run_requests": n_limit,
                           "offered_requests_per_s": load.rate_per_s, "mean_input_tokens": load.mean_in,
                           "mean_output_tokens": load.mean_out} | (out.pop("_steady") or {})
    return out


def _search(run: Callable[[tuple[int, ...]], dict[str, Any]], plans: list[_PoolPlan],
            max_replicas: int) -> tuple[int, ...] | None:
    """The cheapest units per pool meeting the SLO (_search_1d, or _search_2d for two pools)."""
    max_units = [max(1, max_replicas // p.unit) for p in plans]
    if any(p.floor > m for p, m in zip(plans, max_units, strict=True)):
        return None
    if len(plans) == 1:
        best = _search_1d(lambda k: run((k,)), plans[0].floor, max_units[0])
        return None if best is None else (best,)
    return _search_2d(run, plans, max_units)


def _pool_plans(rs: ResolvedScenario, spec: InferenceSpec, scheduler: str, prefill_replicas: int | None,
                explicit: bool) -> list[_PoolPlan]:
    """The pools to size, each at one unit, validated."""
    def price(hw) -> float | None:
        p, _ = device_hour_price(hw, rs.pricing)
        return p

    def unit_spec(s, role):
        unit = s.ep if s.ep > 1 else 1
        return dataclasses.replace(s, dp=unit, pool=role), unit

    if explicit:
        if prefill_replicas is not None:
            raise InvalidScenario("inference.scheduler.prefill_replicas: with inference.prefill the pools are sized "
                                  "by --size-fleet")
        if rs.scheduler.given and scheduler != "disaggregated":
            raise InvalidScenario(f"inference.scheduler: {scheduler}, but inference.prefill and inference.decode are "
                                  "disaggregated pools; drop scheduler or set it to disaggregated")
        out = []
        for p in explicit_pools(rs, rs.pools):
            s, unit = unit_spec(p.spec, p.role)
            out.append(_PoolPlan(role=p.role, hw=p.hw, spec=s, unit=unit, per_unit_max=0.0, floor=1,
                                 price=price(p.hw)))
        return out
    roles = ("prefill", "decode") if scheduler == "disaggregated" else ("both",)
    out = []
    for role in roles:
        s, unit = unit_spec(spec, role)
        validate_inference(s, rs.model, num_devices=s.num_devices)
        out.append(_PoolPlan(role=role, hw=rs.hardware, spec=s, unit=unit, per_unit_max=0.0, floor=1,
                             price=price(rs.hardware)))
    return out


def _estimate(rs: ResolvedScenario, p: _PoolPlan, mean_in: float, mean_out: float) -> Any:
    s = dataclasses.replace(p.spec, input_tokens=max(1, round(mean_in)), output_tokens=max(1, round(mean_out)))
    return estimate_serving(rs.model, p.hw, s)


def _with_floor(rs: ResolvedScenario, p: _PoolPlan, rate: float, mean_in: float, mean_out: float) -> _PoolPlan:
    """The pool with one unit's analytic maximum and the analytic minimum units for the offered load."""
    est = _estimate(rs, p, mean_in, mean_out)
    if not est.fits:
        return dataclasses.replace(p, per_unit_max=0.0)
    cap = est.input_tokens_per_s if p.role == "prefill" else est.output_tokens_per_s
    offered = rate * (mean_in if p.role == "prefill" else mean_out)
    return dataclasses.replace(p, per_unit_max=cap, floor=max(1, math.ceil(offered / cap - 1e-9)) if cap > 0 else 1)


def _analytic_e2e_s(rs: ResolvedScenario, plans: list[_PoolPlan], mean_in: float, mean_out: float, out_tokens: float,
                    slo: SLO) -> float:
    """The end-to-end latency of a request of `out_tokens` outputs in a fleet that meets the SLO: TTFT
    plus (out_tokens - 1) TPOTs of its pools at full load and the mean lengths (analytic), each at
    most its SLO target."""
    ests = {p.role: _estimate(rs, p, mean_in, mean_out) for p in plans}
    ttft, tpot = ((ests["both"].ttft_s, ests["both"].tpot_s) if "both" in ests
                  else (ests["prefill"].ttft_s, ests["decode"].tpot_s))
    ttft = min(ttft, slo.ttft_s) if slo.ttft_s is not None else ttft
    tpot = min(tpot, slo.tpot_s) if slo.tpot_s is not None else tpot
    return ttft + max(out_tokens - 1, 0) * tpot


def _trial(rs: ResolvedScenario, scheduler: str, plans: list[_PoolPlan],
           units: tuple[int, ...], workload: WorkloadSpec, slo: SLO, n0: int, n_limit: int,
           explicit: bool, progress: Callable[[int, int], Any] | None = None) -> tuple[dict[str, Any], Any]:
    """Simulate the fleet of `units` per pool until its steady state settles (or the run limit); the
    curve row and the last simulation."""
    n = n0
    while True:
        res = _simulate(rs, scheduler, plans, units, workload, n, explicit, progress)
        row = steady_state(res, slo)
        if row["settled"] or n >= min(n_limit, MAX_EXTENSION * n0) or workload.trace is not None:
            break
        n = min(2 * n, n_limit, MAX_EXTENSION * n0)
    devices = sum(k * p.unit_devices for k, p in zip(units, plans, strict=True))
    replicas = [k * p.unit for k, p in zip(units, plans, strict=True)]
    head: dict[str, Any] = {"replicas": sum(replicas), "num_devices": devices}
    if len(plans) > 1:
        head |= {f"{p.role}_replicas": r for p, r in zip(plans, replicas, strict=True)}
    if any(p.unit > 1 for p in plans):
        head |= {"units": units[0] if len(units) == 1 else {p.role: k for p, k in zip(plans, units, strict=True)}}
    head["cost_per_hour_usd"] = _cost_per_hour(plans, units)
    return head | row, res


def _cost_per_hour(plans: list[_PoolPlan], units: tuple[int, ...]) -> float | None:
    """Dollars per hour of the fleet by device-hour price (None when a pool's hardware has none)."""
    prices = [p.price for p in plans]
    if any(x is None for x in prices):
        return None
    return sum(k * p.unit_devices * (x or 0.0) for k, p, x in zip(units, plans, prices, strict=True))


def _simulate(rs: ResolvedScenario, scheduler: str, plans: list[_PoolPlan], units: tuple[int, ...],
              workload: WorkloadSpec, n: int, explicit: bool, progress: Callable[[int, int], Any] | None = None) -> Any:
    """One simulation of the fleet through the api (the same assumptions and datacenter keys as
    `flopcast simulate`), with n requests of the workload: the scenario with its pools' replicas
    replaced (dataclasses.replace of the resolved specs)."""
    if workload.trace is None:
        workload = dataclasses.replace(workload, num_requests=n)
    else:
        workload = dataclasses.replace(workload, num_requests=min(workload.num_requests, n))
    replicas = {p.role: k * p.unit for p, k in zip(plans, units, strict=True)}
    inference, pools, sched = rs.inference, rs.pools, rs.scheduler
    assert inference is not None          # _sizing_inputs refused a scenario without one
    if explicit:
        pools = tuple(dataclasses.replace(p, spec=dataclasses.replace(p.spec, dp=replicas[p.role])) for p in pools)
        devices = sum(k * p.unit_devices for p, k in zip(plans, units, strict=True))
    elif scheduler == "disaggregated":
        sched = dataclasses.replace(sched, prefill_replicas=replicas["prefill"], given=True)
        inference = dataclasses.replace(inference, dp=replicas["prefill"] + replicas["decode"])
        devices = inference.dp * plans[0].spec.tp * plans[0].spec.pp
    else:
        inference = dataclasses.replace(inference, dp=replicas["both"])
        devices = replicas["both"] * plans[0].spec.tp * plans[0].spec.pp
    cl = dataclasses.replace(rs.cluster, num_devices=devices)
    trial = dataclasses.replace(rs, cluster=cl, inference=inference, pools=pools, scheduler=sched,
                                assumptions=tuple(a for a in rs.assumptions if a.name != "cluster.num_devices"))
    return simulate_serving_resolved(trial, workload=workload, progress=progress)


def _search_1d(meets_at, floor: int, max_units: int) -> int | None:
    """The fewest units meeting the SLO: grow from the analytic floor by GROWTH until one meets, then
    bisect down to the last failing size; the floor is never undercut (one unit below it is
    simulated for the curve). None when max_units fails."""
    k, last_fail = floor, None
    while not (t := meets_at(k))["meets_slo"]:
        last_fail = k
        if k >= max_units or t["num_rejected"]:     # rejected requests never fit one replica, whatever the fleet
            return None
        k = min(max_units, max(k + 1, math.ceil(k * GROWTH)))
    hi = k
    if last_fail is None:
        if hi > 1:
            meets_at(hi - 1)     # below the analytic floor: recorded on the curve, never the answer
        return hi
    return _narrow(meets_at, last_fail, hi)


def _narrow(meets_at, lo: int, hi: int) -> int:
    """The fewest units meeting the SLO in (lo, hi], lo failing and hi meeting: the next size is
    interpolated from the two ends' distances to the target (regula falsi on the log p99 / target
    margin), kept strictly inside the bracket; bisection when a margin is unknown or an end has
    stayed put three times (the margin is convex in the fleet size, so the interpolation can stall)."""
    m_lo, m_hi = meets_at(lo).get("_margin"), meets_at(hi).get("_margin")
    stuck = [0, 0]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (m_lo is not None and m_hi is not None and m_lo > 0 >= m_hi and max(stuck) < 3):
            guess = lo + (hi - lo) * m_lo / (m_lo - m_hi)
            mid = min(hi - 1, max(lo + 1, round(guess)))
        t = meets_at(mid)
        if t["meets_slo"]:
            hi, m_hi = mid, t.get("_margin")
            stuck = [stuck[0] + 1, 0]
        else:
            lo, m_lo = mid, t.get("_margin")
            stuck = [0, stuck[1] + 1]
    return hi


def _search_2d(run, plans, max_units) -> tuple[int, int] | None:
    """Disaggregated: grow the prefill pool while TTFT fails and the decode pool while TPOT fails
    (from their floors), then shrink each pool with the other fixed; the per-pool minima."""
    ip = next(i for i, p in enumerate(plans) if p.role == "prefill")
    idd = 1 - ip

    def key(p_units, d_units):
        k = [0, 0]
        k[ip], k[idd] = p_units, d_units
        return tuple(k)

    p_units, d_units = plans[ip].floor, plans[idd].floor
    p_fail = d_fail = None
    for _ in range(MAX_TRIALS):
        t = run(key(p_units, d_units))
        if t["meets_slo"]:
            break
        if t["num_rejected"]:         # requests that never fit one replica, whatever the fleet
            return None
        ttft_bad = t["num_rejected"] > 0 or _fails(t, "ttft")
        tpot_bad = t["num_rejected"] > 0 or _fails(t, "tpot")
        if not ttft_bad and not tpot_bad:       # the whole-run verdict failed on neither metric alone
            ttft_bad = tpot_bad = True
        if (ttft_bad and p_units >= max_units[ip]) or (tpot_bad and d_units >= max_units[idd]):
            return None
        if ttft_bad:
            p_fail = p_units
            p_units = min(max_units[ip], max(p_units + 1, math.ceil(p_units * GROWTH)))
        if tpot_bad:
            d_fail = d_units
            d_units = min(max_units[idd], max(d_units + 1, math.ceil(d_units * GROWTH)))
    else:
        return None
    p_best = _shrink(lambda k: run(key(k, d_units)), p_fail, p_units)
    d_best = _shrink(lambda k: run(key(p_best, k)), d_fail, d_units)
    if not run(key(p_best, d_best))["meets_slo"]:
        return None
    for k in ((p_best - 1, d_best), (p_best, d_best - 1)):   # one fewer in either pool, for the curve
        if min(k) >= 1:
            run(key(*k))
    return key(p_best, d_best)


def _fails(t: dict[str, Any], metric: str) -> bool:
    return t.get(f"_{metric}_fails", False)


def _shrink(meets_at, last_fail: int | None, hi: int) -> int:
    """The fewest units meeting the SLO between the last failing size and hi (which meets); hi itself
    when nothing failed (the analytic floor; one below it is simulated for the curve)."""
    if last_fail is None:
        if hi > 1:
            meets_at(hi - 1)
        return hi
    return _narrow(meets_at, last_fail, hi)


def _unit_row(p: _PoolPlan, k: int | None) -> dict[str, Any]:
    """One pool of the report: its unit, analytic maximum and floor, and the units chosen (k)."""
    return {"role": p.role, "hardware": p.hw.id, "tp": p.spec.tp, "pp": p.spec.pp, "ep": p.spec.ep,
            "unit_replicas": p.unit, "unit_devices": p.unit_devices,
            "analytic_max_per_unit_tokens_per_s": p.per_unit_max,
            "analytic_tokens": "prompt" if p.role == "prefill" else "output",
            "analytic_min_replicas": p.floor * p.unit,
            "replicas": None if k is None else k * p.unit, "units": k,
            "num_devices": None if k is None else k * p.unit_devices}


def _no_fleet_reason(plans: list[_PoolPlan], trials: Mapping[tuple[int, ...], dict[str, Any]],
                     max_replicas: int) -> str:
    """Why no fleet meets the SLO: requests that never fit, the limit reached, or a floor past it."""
    if any(t["num_rejected"] for t in trials.values()):
        return ("some requests can never fit one replica's KV cache (rejected in every trial); a larger tp or a "
                "smaller max length is needed")
    if all(p.floor * p.unit <= max_replicas for p in plans):
        return (f"no fleet of up to {max_replicas} replicas per pool meets the SLO at steady state (a single unit's "
                "latency at low load may already exceed it; see the curve)")
    floor_replicas = sum(p.floor * p.unit for p in plans)
    return f"the analytic minimum ({floor_replicas} replicas) exceeds max_replicas {max_replicas}"


STEADY_KEYS = ("num_requests", "warmup_requests", "settled", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s")


def _report(plans: list[_PoolPlan], trials: dict[tuple[int, ...], dict[str, Any]], results: dict[tuple[int, ...], Any],
            best: tuple[int, ...] | None, slo: SLO, max_replicas: int, rs: ResolvedScenario,
            explicit: bool) -> dict[str, Any]:
    curve = sorted(({k: v for k, v in t.items() if not k.startswith("_")} for t in trials.values()),
                   key=lambda r: (r["num_devices"], r["replicas"]))
    rows = [{"replicas": r["replicas"], "num_devices": r["num_devices"], "ttft_p99_s": r["ttft_p99_s"],
             "tpot_p99_s": r["tpot_p99_s"], "meets_slo": r["meets_slo"]}
            | {k: r[k] for k in ("prefill_replicas", "decode_replicas") if k in r} for r in curve]
    chosen = trials.get(best) if best is not None else None
    res = results.get(best) if best is not None else None
    units: tuple[int | None, ...] = best if best is not None else (None,) * len(plans)
    picked = chosen or {}
    out = {
        "replicas": picked.get("replicas"),
        "num_devices": picked.get("num_devices"),
        "meets_slo": chosen is not None,
        "reason": None if chosen else _no_fleet_reason(plans, trials, max_replicas),
        "slo": {"ttft_p99_s": slo.ttft_s, "tpot_p99_s": slo.tpot_s},
        "analytic_min_replicas": sum(p.floor * p.unit for p in plans),
        "scheduler": "disaggregated" if len(plans) > 1 else None,
        "pools": [_unit_row(p, k) for p, k in zip(plans, units, strict=True)],
        "cost_per_hour_usd": picked.get("cost_per_hour_usd"),
        "simulation": res.to_dict() if res is not None else None,
        "trials": rows,
        "curve": curve,
        "_steady": {k: chosen[k] for k in STEADY_KEYS} if chosen else None,
    }
    if len(plans) > 1 and chosen:
        out |= {f"{p.role}_replicas": chosen[f"{p.role}_replicas"] for p in plans}
    if out["scheduler"] is None:
        del out["scheduler"]
    return out
