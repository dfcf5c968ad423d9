"""The simulator's check of the analytic sizing at each region's binding hour.

The binding hour of a pool is the hour where each unit carries the most load (its highest
utilisation). There, a few units (at most CONFIRM_UNITS) are simulated by flopcast's discrete-event
simulator (`flopcast.run.serving.simulate_serving`) with Poisson arrivals at that hour's per-unit request rate, the
region's length distributions and the batch the analytic sizing chose; the p99 TTFT and TPOT are
compared with fleet.slo. A disaggregated deployment is simulated as one system at its decode pool's
binding hour: a few decode units and the prefill units in the hour's proportion (at least one), each
pool with its own layout (`inference.prefill` / `inference.decode`), the KV cache moving between them.
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
    from flopcast.fleet.capacity import accepted_keys

    util = pool["hourly_utilisation_frac"]
    hour = max(range(len(util)), key=lambda h: util[h])
    units = pool["hourly_units"][hour]
    base = {"hour_utc": hour, "utilisation_frac": util[hour]}
    if pool["role"] != "colocated":
        return base | {"simulated": False, "why": "a pool of a disaggregated deployment: confirm_disaggregated "
                                                  "simulates it with its partner pool"}
    if units == 0 or util[hour] <= 0:
        return base | {"simulated": False, "why": "no load"}
    n = min(units, CONFIRM_UNITS)
    ok = accepted_keys()     # the layout's keys were checked by the capacity call; drop what it dropped
    layout = {k: v for k, v in dict(dep.inference).items() if k in ok}
    dp = int(layout.get("dp", 1))
    rate = n * util[hour] * pool["tokens_per_s_per_unit"] / demand.output_tokens
    inference = layout | {"dp": dp * n, "batch_size": pool["batch_size"]} | _traffic(demand, rate, ok, slo_ttft_s,
                                                                                     slo_tpot_s)
    return base | _run(model, dep, pool["unit_devices"] * n, inference, slo_ttft_s, slo_tpot_s, context,
                       {"units_simulated": n, "rate_per_s": rate})


def confirm_disaggregated(model: Any, dep, prefill: dict[str, Any], decode: dict[str, Any], demand,
                          slo_ttft_s: float | None, slo_tpot_s: float | None, context: Any = None) -> dict[str, Any]:
    """Simulate a prefill + decode deployment at its decode pool's binding hour: at most
    CONFIRM_UNITS decode units and the prefill units in that hour's proportion (at least one)."""
    from flopcast.specs.serving import POOL_KEYS

    util = decode["hourly_utilisation_frac"]
    hour = max(range(len(util)), key=lambda h: util[h])
    units_dec, units_pre = decode["hourly_units"][hour], prefill["hourly_units"][hour]
    base = {"hour_utc": hour, "utilisation_frac": util[hour]}
    if units_dec == 0 or util[hour] <= 0:
        return base | {"simulated": False, "why": "no load"}
    n_dec = min(units_dec, CONFIRM_UNITS)
    n_pre = max(1, round(units_pre * n_dec / units_dec))
    rate = n_dec * util[hour] * decode["tokens_per_s_per_unit"] / demand.output_tokens

    def pool_section(layout, n: int, batch: int) -> dict[str, Any]:
        sec = {k: v for k, v in dict(layout).items() if k in POOL_KEYS}
        return sec | {"dp": int(sec.get("dp", 1)) * n} | ({"batch_size": batch} if batch else {})

    inference = {"prefill": pool_section(dep.prefill, n_pre, 0),
                 "decode": pool_section(dep.decode, n_dec, decode["batch_size"])} | _traffic(
        demand, rate, ("prefix_cache_hit_frac",), slo_ttft_s, slo_tpot_s)
    devices = prefill["unit_devices"] * n_pre + decode["unit_devices"] * n_dec
    return base | _run(model, dep, devices, inference, slo_ttft_s, slo_tpot_s, context,
                       {"units_simulated": {"prefill": n_pre, "decode": n_dec}, "rate_per_s": rate})


def _traffic(demand, rate: float, ok, slo_ttft_s, slo_tpot_s) -> dict[str, Any]:
    """The inference keys of the simulated hour: Poisson arrivals at `rate`, the region's lengths, the SLO."""
    workload = {"num_requests": CONFIRM_REQUESTS, "arrival": {"process": "poisson", "rate_per_s": rate},
                "seed": CONFIRM_SEED}
    for key in ("input_tokens", "output_tokens"):
        v = demand.lengths.get(key)
        if isinstance(v, dict):
            workload[key] = {k: (round(x) if k in ("value", "min", "max") else x) for k, x in v.items()}
        else:
            workload[key] = round(demand.input_tokens if key == "input_tokens" else demand.output_tokens)
    out = {"workload": workload, "input_tokens": round(demand.input_tokens),
           "output_tokens": round(demand.output_tokens)}
    slo = {k: v for k, v in (("ttft_p99", slo_ttft_s), ("tpot_p99", slo_tpot_s)) if v is not None}
    if slo:
        out["slo"] = slo
    if demand.prefix_cache_hit_frac > 0 and "prefix_cache_hit_frac" in ok:
        out["prefix_cache_hit_frac"] = demand.prefix_cache_hit_frac
    return out


def _run(model, dep, devices: int, inference: dict[str, Any], slo_ttft_s, slo_tpot_s, context,
         what: dict[str, Any]) -> dict[str, Any]:
    from flopcast.run.serving import simulate_serving

    try:
        res = simulate_serving(dict(context or {}) | {
            "model": model, "hardware": dep.hardware, "cluster": {"num_devices": devices}, "inference": inference})
    except InvalidScenario as e:
        return {"simulated": False, "why": str(e)}
    slo = slo_ttft_s is not None or slo_tpot_s is not None
    meets = None
    if slo:
        meets = bool(res.num_rejected == 0 and res.ttft_p99_s is not None
                     and (slo_ttft_s is None or res.ttft_p99_s <= slo_ttft_s)
                     and (slo_tpot_s is None or res.tpot_p99_s is None or res.tpot_p99_s <= slo_tpot_s))
    return {"simulated": True, **what, "num_requests": CONFIRM_REQUESTS, "ttft_p99_s": res.ttft_p99_s,
            "tpot_p99_s": res.tpot_p99_s, "num_rejected": res.num_rejected, "meets_slo": meets}
