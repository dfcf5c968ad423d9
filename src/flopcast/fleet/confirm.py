"""The simulator's check of the analytic sizing at each region's binding hour.

The binding hour of a pool is the hour where each unit carries the most load (its highest
utilisation). There, a few units (at most CONFIRM_UNITS) are simulated by flopcast's discrete-event
simulator (`api.simulate_serving`) with Poisson arrivals at that hour's per-unit request rate, the
region's length distributions and the batch the analytic sizing chose; the p99 TTFT and TPOT are
compared with fleet.slo. Colocated pools only: the simulator's disaggregated scheduler runs one layout
for both roles, while a fleet's prefill and decode units have their own.
"""

from __future__ import annotations

from typing import Any

from flopcast.errors import InvalidScenario

CONFIRM_UNITS = 4
CONFIRM_REQUESTS = 1000
CONFIRM_SEED = 0


def confirm_pool(model: Any, dep, pool: dict[str, Any], demand, slo_ttft_s: float | None,
                 slo_tpot_s: float | None, context: Any = None) -> dict[str, Any]:
    """Simulate the pool's binding hour; a dict with the hour, what was simulated and whether the
    simulated p99s meet the SLO (None when there is no SLO)."""
    from flopcast import api
    from flopcast.fleet.capacity import accepted_keys

    util = pool["hourly_utilisation_frac"]
    hour = max(range(len(util)), key=lambda h: util[h])
    units = pool["hourly_units"][hour]
    base = {"hour_utc": hour, "utilisation_frac": util[hour]}
    if pool["role"] != "colocated":
        return base | {"simulated": False, "why": "disaggregated pools have their own layouts; the simulator's "
                                                  "disaggregated scheduler runs one"}
    if units == 0 or util[hour] <= 0:
        return base | {"simulated": False, "why": "no load"}
    n = min(units, CONFIRM_UNITS)
    ok = accepted_keys()     # the layout's keys were checked by the capacity call; drop what it dropped
    layout = {k: v for k, v in dict(dep.inference).items() if k in ok}
    dp = int(layout.get("dp", 1))
    per_unit_out_tps = util[hour] * pool["tokens_per_s_per_unit"]
    rate = n * per_unit_out_tps / demand.output_tokens
    lengths = {k: v for k, v in demand.lengths.items()}
    workload = {"num_requests": CONFIRM_REQUESTS, "arrival": {"process": "poisson", "rate_per_s": rate},
                "seed": CONFIRM_SEED}
    for key in ("input_tokens", "output_tokens"):
        v = lengths.get(key)
        if isinstance(v, dict):
            workload[key] = {k: (round(x) if k in ("value", "min", "max") else x) for k, x in v.items()}
        else:
            workload[key] = round(demand.input_tokens if key == "input_tokens" else demand.output_tokens)
    slo = {k: v for k, v in (("ttft_p99", slo_ttft_s), ("tpot_p99", slo_tpot_s)) if v is not None}
    inference = layout | {"dp": dp * n, "batch_size": pool["batch_size"], "workload": workload,
                          "input_tokens": round(demand.input_tokens), "output_tokens": round(demand.output_tokens)}
    if slo:
        inference["slo"] = slo
    if demand.prefix_cache_hit_frac > 0 and "prefix_cache_hit_frac" in ok:
        inference["prefix_cache_hit_frac"] = demand.prefix_cache_hit_frac
    devices = pool["unit_devices"] * n
    try:
        res = api.simulate_serving(dict(context or {}) | {
            "model": model, "hardware": dep.hardware, "cluster": {"num_devices": devices}, "inference": inference})
    except InvalidScenario as e:
        return base | {"simulated": False, "why": str(e)}
    meets = None
    if slo:
        meets = bool(res.num_rejected == 0 and res.ttft_p99_s is not None
                     and (slo_ttft_s is None or res.ttft_p99_s <= slo_ttft_s)
                     and (slo_tpot_s is None or res.tpot_p99_s is None or res.tpot_p99_s <= slo_tpot_s))
    return base | {"simulated": True, "units_simulated": n, "num_requests": CONFIRM_REQUESTS,
                   "rate_per_s": rate, "ttft_p99_s": res.ttft_p99_s, "tpot_p99_s": res.tpot_p99_s,
                   "num_rejected": res.num_rejected, "meets_slo": meets}
