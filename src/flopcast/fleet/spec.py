"""The `fleet` section of a scenario: regions with their demand, a model mix, SLOs, candidate
deployments and the headroom/failover policy, parsed into frozen specs.

Every bad value is one line naming the field (`fleet.regions[1].demand.peak_to_mean`) and what is
accepted; unknown keys and names get a did-you-mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flopcast import units
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.efficiency import inference_engines
from flopcast.specs import limits
from flopcast.specs.fields import check_keys, choice

HOURS = 24
FLEET_KEYS = ("regions", "models", "slo", "deployments", "policy")
REGION_KEYS = ("name", "site", "demand", "power_cap", "neighbours")
# one rate key; requests or output tokens per s / day / week
RATE_KEYS = ("requests_per_s", "requests_per_day", "output_tokens_per_s", "output_tokens_per_day",
             "output_tokens_per_week")
INPUT_RATE_KEYS = ("input_tokens_per_s", "input_tokens_per_day", "input_tokens_per_week")
DEMAND_KEYS = RATE_KEYS + INPUT_RATE_KEYS + ("input_tokens", "output_tokens", "prefix_cache_hit_frac",
                                             "profile", "peak_to_mean", "peak_hour_utc")
LENGTH_KEYS = ("dist", "value", "mean", "cv", "min", "max")
MODEL_MIX_KEYS = ("model", "share")
SLO_KEYS = limits.SLO_KEYS   # ttft_p99, tpot_p99 with units, or _ms / _s keys
DEPLOYMENT_KEYS = ("name", "hardware", "engine", "model", "inference", "prefill", "decode", "devices_per_node")
POLICY_KEYS = ("spare_replicas", "target_utilisation", "failover", "scaling", "objective")
FAILOVER = ("none", "neighbours")
SCALING = ("hourly", "static")
OBJECTIVES = ("cost", "carbon", "devices")
ENGINES = inference_engines()     # catalog/frameworks.yaml inference engines
MIN_RATE_PER_S = 1e-3       # a demand of fewer than ~86 tokens (or requests) a day is a unit slip
MAX_TOKENS_PER_S = 1e12     # a fleet's demand (~1,000x the largest public services' ~1e15 tokens a month)
_PER = {"s": 1.0, "day": units.DAY_S, "week": 7 * units.DAY_S}


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """One region's traffic: mean requests per second over the day, mean lengths per request, the
    share of prompt tokens served from a prefix cache, and 24 hourly weights of mean 1 (UTC)."""

    requests_per_s: float
    input_tokens: float
    output_tokens: float
    prefix_cache_hit_frac: float
    profile: tuple[float, ...]          # HOURS weights, mean 1
    lengths: Mapping[str, Any] = field(default_factory=dict)   # the distributions as given (for the simulator)


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    name: str
    site: Any                           # a catalog id or a mapping (resolved by specs.site)
    demand: Demand
    power_cap_w: float | None
    neighbours: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """A candidate way to serve: hardware plus a colocated `inference` layout, or separate `prefill`
    and `decode` unit layouts (disaggregated). Layouts are `inference` sections without dp replicas
    counting toward the fleet: each is one unit (tp * pp * dp devices) that the fleet replicates."""

    name: str
    hardware: Any
    model: str | None                   # restricted to one model of the mix, or None for all
    engine: str | None
    inference: Mapping[str, Any] | None
    prefill: Mapping[str, Any] | None
    decode: Mapping[str, Any] | None
    devices_per_node: int | None

    @property
    def disaggregated(self) -> bool:
        return self.prefill is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    spare_replicas: int = 0             # N + k: k spare units per region and pool
    target_utilisation: float = 1.0     # units are added before the analytic capacity is exceeded
    failover: str = "none"              # neighbours: each region can absorb its share of a failed neighbour's load
    scaling: str = "hourly"             # hourly: devices follow the load; static: provisioned at the region's peak
    objective: str = "cost"             # which deployment the fleet's headline figures use


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    regions: tuple[Region, ...]
    models: tuple[tuple[str, float], ...]          # (model ref, share of every region's demand)
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    deployments: tuple[Deployment, ...]
    policy: Policy
    assumptions: tuple[tuple[str, Any, str], ...] = ()


def _mapping(value: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidScenario(f"{where}: expected a mapping of {what}, got {value!r}")
    return value


def _number(value: Any, where: str, *, lo: float = 0.0, hi: float = math.inf, lo_open: bool = False) -> float:
    if isinstance(value, bool) or value is None:
        raise InvalidScenario(f"{where}: expected a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidScenario(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo):
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
        raise InvalidScenario(f"{where}: expected a number {bound}, got {value!r}")
    return x


def _length(value: Any, where: str) -> tuple[float, Any]:
    """A mean length per request: a number, or a distribution mapping (fixed value or mean)."""
    if isinstance(value, Mapping):
        check_keys(value, where, LENGTH_KEYS)
        key = "mean" if "mean" in value else "value" if "value" in value else None
        if key is None:
            raise InvalidScenario(f"{where}: a length distribution needs `mean` (or `value` for fixed)")
        return _number(value[key], f"{where}.{key}", lo=1.0, hi=limits.MAX_TOKENS_PER_REQUEST), dict(value)
    return _number(value, where, lo=1.0, hi=limits.MAX_TOKENS_PER_REQUEST), value


def _profile(d: Mapping[str, Any], where: str) -> tuple[tuple[float, ...], str]:
    if "profile" in d and "peak_to_mean" in d:
        raise InvalidScenario(f"{where}: give either profile (24 hourly weights) or peak_to_mean, not both")
    if "profile" in d:
        p = d["profile"]
        if not isinstance(p, list) or len(p) != HOURS:
            raise InvalidScenario(f"{where}.profile: expected a list of {HOURS} hourly weights (UTC hours 0-23), "
                                  f"got {p!r}")
        w = [_number(x, f"{where}.profile[{i}]", hi=1e9) for i, x in enumerate(p)]
        mean = sum(w) / HOURS
        if mean <= 0:
            raise InvalidScenario(f"{where}.profile: the weights sum to zero; give relative load per hour")
        return tuple(x / mean for x in w), "given hourly weights, scaled to mean 1"
    ratio = _number(d.get("peak_to_mean", 1.0), f"{where}.peak_to_mean", lo=1.0, hi=2.0)
    peak = _number(d.get("peak_hour_utc", 0), f"{where}.peak_hour_utc", hi=23.999)
    # a cosine of period one day: mean 1, maximum `ratio` at peak_hour_utc, minimum 2 - ratio >= 0;
    # each hour takes the cosine's average over that hour (so the 24 weights have mean 1 exactly)
    amp = ratio - 1.0
    w = []
    for h in range(HOURS):
        a, b = 2 * math.pi * (h - peak) / HOURS, 2 * math.pi * (h + 1 - peak) / HOURS
        w.append(1.0 + amp * (math.sin(b) - math.sin(a)) / (b - a))
    why = ("flat load" if amp == 0 else
           f"cosine over the day, peak {ratio:g}x the mean near {peak:g}:00 UTC (hourly averages)")
    return tuple(w), why


def demand_from_mapping(data: Any, where: str) -> tuple[Demand, list[tuple[str, Any, str]]]:
    d = _mapping(data, where, "a rate (e.g. output_tokens_per_day), lengths and a daily profile")
    check_keys(d, where, DEMAND_KEYS)
    notes: list[tuple[str, Any, str]] = []
    given = [k for k in RATE_KEYS if k in d]
    if len(given) != 1:
        raise InvalidScenario(f"{where}: give exactly one rate of {', '.join(RATE_KEYS)}"
                              + (f" (got {', '.join(given)})" if given else ""))
    key = given[0]
    period_s = _PER[key.rsplit("_per_", 1)[1]]
    rate = _number(d[key], f"{where}.{key}", lo=MIN_RATE_PER_S * period_s, hi=MAX_TOKENS_PER_S * period_s) / period_s
    if "output_tokens" in d:
        out_len, out_given = _length(d["output_tokens"], f"{where}.output_tokens")
    else:
        out_len, out_given = 256.0, 256
        notes.append((f"{where}.output_tokens", 256, "mean output tokens per request not given"))
    req_per_s = rate if key.startswith("requests") else rate / out_len
    in_rates = [k for k in INPUT_RATE_KEYS if k in d]
    if len(in_rates) + ("input_tokens" in d) > 1:
        raise InvalidScenario(f"{where}: give one of input_tokens (mean per request), {', '.join(INPUT_RATE_KEYS)}")
    if in_rates:
        k = in_rates[0]
        period_s = _PER[k.rsplit("_per_", 1)[1]]
        per_s = _number(d[k], f"{where}.{k}", lo=MIN_RATE_PER_S * period_s, hi=MAX_TOKENS_PER_S * period_s) / period_s
        in_len, in_given = per_s / req_per_s, None
        if in_len > limits.MAX_TOKENS_PER_REQUEST:
            raise InvalidScenario(f"{where}.{k}: {in_len:.3g} prompt tokens per request (over the request rate) is "
                                  f"past the limit of {limits.MAX_TOKENS_PER_REQUEST:,}")
        notes.append((f"{where}.input_tokens", round(in_len, 1), f"mean prompt length: {k} over the request rate"))
    elif "input_tokens" in d:
        in_len, in_given = _length(d["input_tokens"], f"{where}.input_tokens")
    else:
        in_len, in_given = 1024.0, 1024
        notes.append((f"{where}.input_tokens", 1024, "mean prompt tokens per request not given"))
    hit = _number(d.get("prefix_cache_hit_frac", 0.0), f"{where}.prefix_cache_hit_frac", hi=1.0)
    if hit >= 1.0:
        raise InvalidScenario(f"{where}.prefix_cache_hit_frac: expected a fraction below 1, got {hit!r}")
    profile, why = _profile(d, where)
    notes.append((f"{where}.profile", "given" if "profile" in d else d.get("peak_to_mean", 1.0), why))
    lengths = {k: v for k, v in (("input_tokens", in_given), ("output_tokens", out_given)) if v is not None}
    return Demand(requests_per_s=req_per_s, input_tokens=in_len, output_tokens=out_len,
                  prefix_cache_hit_frac=hit, profile=profile, lengths=lengths), notes


def _layout(value: Any, where: str) -> Mapping[str, Any]:
    lay = _mapping(value, where, "inference keys (tp, dp, ep, weights_dtype, ...)")
    for k in ("input_tokens", "output_tokens", "workload", "slo"):
        if k in lay:
            raise InvalidScenario(f"{where}.{k}: lengths, workload and SLO come from the fleet's demand and slo, "
                                  "not from a deployment")
    from flopcast.specs.serving import inference_from_mapping

    try:           # every layout key read now (a bad one made every cell of the deployment infeasible)
        inference_from_mapping(lay)
    except (InvalidScenario, UnknownName) as e:
        msg = str(e).replace("inference.", f"{where}.", 1) if "inference." in str(e) else f"{where}: {e}"
        if isinstance(e, UnknownName):
            raise UnknownName(e.kind, e.name, e.known, message=msg) from None
        raise InvalidScenario(msg) from None
    return dict(lay)


def deployment_from_mapping(data: Any, where: str, default_hardware: Any) -> Deployment:
    d = _mapping(data, where, "name, hardware and an inference layout (or prefill and decode layouts)")
    check_keys(d, where, DEPLOYMENT_KEYS)
    if "name" not in d:
        raise InvalidScenario(f"{where}.name: missing; every deployment needs a name")
    hw = d.get("hardware", default_hardware)
    if hw is None:
        raise InvalidScenario(f"{where}.hardware: missing; give a catalog id (see `flopcast hardware`) or a mapping")
    has_pd = ("prefill" in d, "decode" in d)
    if has_pd[0] != has_pd[1]:
        raise InvalidScenario(f"{where}: a disaggregated deployment needs both prefill and decode layouts")
    if has_pd[0] and "inference" in d:
        raise InvalidScenario(f"{where}: give either inference (colocated) or prefill and decode (disaggregated)")
    engine = None
    if "engine" in d:
        engine = choice(d, where, "engine", "vllm", ENGINES)
    dpn = None
    if "devices_per_node" in d:
        dpn = int(_number(d["devices_per_node"], f"{where}.devices_per_node", lo=1.0, hi=4096))
    return Deployment(
        name=str(d["name"]), hardware=hw, model=None if d.get("model") is None else str(d["model"]), engine=engine,
        inference=None if has_pd[0] else _layout(d.get("inference", {}), f"{where}.inference"),
        prefill=_layout(d["prefill"], f"{where}.prefill") if has_pd[0] else None,
        decode=_layout(d["decode"], f"{where}.decode") if has_pd[0] else None,
        devices_per_node=dpn)


def policy_from_mapping(data: Any) -> Policy:
    if data is None:
        return Policy()
    d = _mapping(data, "fleet.policy", ", ".join(POLICY_KEYS))
    check_keys(d, "fleet.policy", POLICY_KEYS)
    k = _number(d.get("spare_replicas", 0), "fleet.policy.spare_replicas", hi=limits.MAX_FLEET_REPLICAS)
    if k != int(k):
        raise InvalidScenario(f"fleet.policy.spare_replicas: expected a whole number of units, got {d['spare_replicas']!r}")
    return Policy(
        spare_replicas=int(k),
        target_utilisation=_number(d.get("target_utilisation", 1.0), "fleet.policy.target_utilisation",
                                   lo=0.01, hi=1.0),
        failover=choice(d, "fleet.policy", "failover", "none", FAILOVER),
        scaling=choice(d, "fleet.policy", "scaling", "hourly", SCALING),
        objective=choice(d, "fleet.policy", "objective", "cost", OBJECTIVES))


def _model_mix(f: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[tuple[Any, float], ...]:
    """fleet.models (model, share of the demand) or the scenario's one model."""
    mix_raw = f.get("models")
    if mix_raw is None:
        if "model" not in data:
            raise InvalidScenario("model: missing; give a catalog id (or fleet.models, a list of {model, share})")
        return ((data["model"], 1.0),)
    if not isinstance(mix_raw, list) or not mix_raw:
        raise InvalidScenario("fleet.models: expected a list of {model, share} (shares of the demand summing to 1)")
    models_l = []
    for i, m in enumerate(mix_raw):
        w = f"fleet.models[{i}]"
        m = _mapping(m, w, "model, share")
        check_keys(m, w, MODEL_MIX_KEYS)
        if "model" not in m:
            raise InvalidScenario(f"{w}.model: missing")
        models_l.append((m["model"], _number(m.get("share", 1.0 / len(mix_raw)), f"{w}.share", hi=1.0)))
    total = sum(s for _, s in models_l)
    if abs(total - 1.0) > 1e-6:
        raise InvalidScenario(f"fleet.models: the shares sum to {total:g}; they must sum to 1")
    refs = [str(m) for m, _ in models_l]
    if len(set(refs)) != len(refs):
        raise InvalidScenario("fleet.models: a model is listed twice")
    return tuple(models_l)


def _region(r: Any, w: str, data: Mapping[str, Any], notes: list[tuple[str, Any, str]]) -> Region:
    r = _mapping(r, w, ", ".join(REGION_KEYS))
    check_keys(r, w, REGION_KEYS)
    if "name" not in r:
        raise InvalidScenario(f"{w}.name: missing")
    if "demand" not in r:
        raise InvalidScenario(f"{w}.demand: missing; give e.g. output_tokens_per_day, lengths and a profile")
    site = r.get("site", data.get("site"))
    if site is None:
        site = "us-average"
        notes.append((f"{w}.site", site, "no site for the region or the scenario"))
    demand, dn = demand_from_mapping(r["demand"], f"{w}.demand")
    notes += dn
    cap = None
    if r.get("power_cap") is not None:
        cap = limits.facility_power_w(r["power_cap"], field=f"{w}.power_cap")
    nb = r.get("neighbours", [])
    if not isinstance(nb, list):
        raise InvalidScenario(f"{w}.neighbours: expected a list of region names")
    return Region(name=str(r["name"]), site=site, demand=demand, power_cap_w=cap,
                  neighbours=tuple(str(x) for x in nb))


def _regions(f: Mapping[str, Any], data: Mapping[str, Any], notes: list[tuple[str, Any, str]]) -> list[Region]:
    regions_raw = f.get("regions")
    if not isinstance(regions_raw, list) or not regions_raw:
        raise InvalidScenario("fleet.regions: expected a list of regions, each with name, site and demand")
    regions = [_region(r, f"fleet.regions[{i}]", data, notes) for i, r in enumerate(regions_raw)]
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise InvalidScenario(f"fleet.regions: duplicate region names in {names}")
    for i, r in enumerate(regions):
        for n in r.neighbours:
            if n not in names or n == r.name:
                raise UnknownName(f"fleet.regions[{i}].neighbours entry", n, [x for x in names if x != r.name])
    return regions


def _deployments(f: Mapping[str, Any], data: Mapping[str, Any], refs: list[str]) -> tuple[Deployment, ...]:
    deps_raw = f.get("deployments")
    if not isinstance(deps_raw, list) or not deps_raw:
        raise InvalidScenario("fleet.deployments: expected a list of candidate deployments (name, hardware, "
                              "inference or prefill + decode)")
    deps = tuple(deployment_from_mapping(x, f"fleet.deployments[{i}]", data.get("hardware"))
                 for i, x in enumerate(deps_raw))
    dnames = [x.name for x in deps]
    if len(set(dnames)) != len(dnames):
        raise InvalidScenario(f"fleet.deployments: duplicate names in {dnames}")
    for i, dep in enumerate(deps):
        if dep.model is not None and dep.model not in refs:
            raise UnknownName(f"fleet.deployments[{i}].model", dep.model, refs)
    for m in refs:
        if not any(dep.model in (None, m) for dep in deps):
            raise InvalidScenario(f"fleet.deployments: no deployment serves model {m!r}")
    return deps


def fleet_from_scenario(data: Mapping[str, Any]) -> FleetSpec:
    """The fleet section of a loaded scenario mapping (top-level model, hardware and site are the
    defaults of the model mix, the deployments and the regions)."""
    if "fleet" not in data:
        raise InvalidScenario("fleet: missing; give regions (with demand), deployments and optionally models, slo, "
                              "policy (see docs/fleet.md)")
    f = _mapping(data["fleet"], "fleet", ", ".join(FLEET_KEYS))
    check_keys(f, "fleet", FLEET_KEYS)
    notes: list[tuple[str, Any, str]] = []
    models = _model_mix(f, data)
    regions = _regions(f, data, notes)
    slo = f.get("slo") or {}
    slo = _mapping(slo, "fleet.slo", "ttft_p99, tpot_p99")
    check_keys(slo, "fleet.slo", SLO_KEYS)
    slo_s = limits.slo_seconds(slo, "fleet.slo")
    if not slo_s:
        notes.append(("fleet.slo", "none", "no latency target: decode batches are as large as memory allows"))
    deps = _deployments(f, data, [str(m) for m, _ in models])
    return FleetSpec(regions=tuple(regions), models=models, slo_ttft_s=slo_s.get("ttft_p99"),
                     slo_tpot_s=slo_s.get("tpot_p99"), deployments=deps,
                     policy=policy_from_mapping(f.get("policy")), assumptions=tuple(notes))
