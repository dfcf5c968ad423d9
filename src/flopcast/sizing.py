"""Fleet sizing by simulation (`flopcast simulate --size-fleet`): the fewest replicas meeting a p99 SLO."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flopcast import api  # the facade re-exports this module; api.X is read at call time
from flopcast.errors import InvalidScenario
from flopcast.specs.scenario import resolve


def size_fleet(scenario: str | Path | Mapping[str, Any], *, max_replicas: int = 1024) -> dict[str, Any]:
    """`flopcast simulate --size-fleet`: the fewest replicas (dp) whose simulated p99 TTFT and p99
    TPOT meet the inference section's `slo` under its workload, found by doubling from the analytic
    lower bound (offered output tokens/s over one replica's analytic maximum) and then bisecting;
    with the simulation, power and cost per million output tokens at that size."""

    from flopcast.sim.workload import slo_from_mapping

    rs = resolve(scenario)
    section = rs.sections.get("inference")
    if not isinstance(section, Mapping):
        raise InvalidScenario("inference: missing; give tp, weights_dtype, lengths, a workload and an slo")
    slo = slo_from_mapping(section.get("slo"))
    if slo.ttft_s is None and slo.tpot_s is None:
        raise InvalidScenario('inference.slo: fleet sizing needs a target, e.g. {ttft_p99: "1 s", tpot_p99: "50 ms"}')
    arrival = (section.get("workload") or {}).get("arrival") or {}
    if "trace" not in (section.get("workload") or {}) and arrival.get("process", "poisson") == "burst":
        raise InvalidScenario("inference.workload.arrival: fleet sizing needs an arrival rate (poisson or gamma) "
                              "or a trace, not a burst")
    from flopcast.specs import limits

    if not isinstance(max_replicas, int) or max_replicas < 1:
        raise InvalidScenario(f"max_replicas: expected a positive integer, got {max_replicas!r}")
    limits.check_count(max_replicas, limits.MAX_FLEET_REPLICAS, field="max_replicas")
    from flopcast.specs.serving import inference_from_mapping, validate_inference

    one = inference_from_mapping(dict(section) | {"dp": 1})     # validates the section's fields
    per_replica = one.tp * one.pp
    validate_inference(one, rs.model, num_devices=per_replica)
    trials: dict[int, Any] = {}

    def run(n: int):
        if n not in trials:
            sec = dict(section) | {"dp": n}
            cl = dataclasses.replace(rs.cluster, num_devices=n * per_replica)
            trials[n] = api._simulate_serving_resolved(dataclasses.replace(
                rs, cluster=cl, sections=dict(rs.sections) | {"inference": sec},
                inference=dataclasses.replace(rs.inference, dp=n)))
        return trials[n]

    def meets(res) -> bool:
        return (res.num_rejected == 0 and res.ttft_p99_s is not None
                and (slo.ttft_s is None or res.ttft_p99_s <= slo.ttft_s)
                and (slo.tpot_s is None or res.tpot_p99_s is None or res.tpot_p99_s <= slo.tpot_s))

    from flopcast.estimate.serving import estimate_serving as _analytic
    from flopcast.sim.workload import generate, workload_from_mapping

    arrivals, _, outs = generate(workload_from_mapping(section.get("workload"), input_tokens=one.input_tokens,
                                                       output_tokens=one.output_tokens))
    span = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    per_replica_max = _analytic(rs.model, rs.hardware, one).output_tokens_per_s
    offered = len(arrivals) / span * float(outs.mean()) if span > 0 else 0.0
    lo_bound = max(1, math.ceil(offered / per_replica_max)) if per_replica_max > 0 else 1
    lo, hi = 0, None
    n = min(lo_bound, max_replicas)
    while hi is None:
        if meets(run(n)):
            hi = n
        elif n >= max_replicas:
            break
        else:
            lo, n = n, min(2 * n, max_replicas)
    if hi is None:
        best = None
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if meets(run(mid)):
                hi = mid
            else:
                lo = mid
        best = trials[hi]
    rows = [{"replicas": k, "num_devices": k * per_replica, "ttft_p99_s": v.ttft_p99_s, "tpot_p99_s": v.tpot_p99_s,
             "meets_slo": meets(v)} for k, v in sorted(trials.items())]
    return {
        "replicas": hi, "num_devices": hi * per_replica if hi else None,
        "meets_slo": hi is not None,
        "reason": None if hi else f"no fleet of up to {max_replicas} replicas meets the SLO (a single replica's "
                                  "latency at low load may already exceed it; see the trials)",
        "slo": {"ttft_p99_s": slo.ttft_s, "tpot_p99_s": slo.tpot_s},
        "analytic_min_replicas": lo_bound,
        "simulation": best.to_dict() if best else None,
        "trials": rows,
    }

