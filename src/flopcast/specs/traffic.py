"""The served traffic as a scenario states it: arrivals, prompt and output lengths, the scheduler and
the latency SLO (the `workload`, `scheduler` and `slo` keys of a scenario's `inference` section),
parsed into frozen specs. The simulator (flopcast.sim.workload) draws requests from them.

Arrivals are a Poisson process (`process: poisson`, exponential gaps at `rate_per_s`), a gamma
renewal process with coefficient of variation `cv` (bursty when cv > 1; cv = 1 is Poisson), a
burst (`process: burst`: every request at t = 0, the saturation test) or a trace (`trace: path.csv`
in the workload or in its `arrival`, with columns arrival_s, input_tokens, output_tokens). Lengths are
`fixed` (`value`), `uniform` (`min`..`max`) or `lognormal` (`mean`, `cv` default 1, truncated to
`min`..`max`); a plain integer means fixed. Lengths are in tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast import files
from flopcast.errors import InvalidScenario
from flopcast.specs import limits
from flopcast.specs.fields import check_keys, choice

PROCESSES = ("poisson", "gamma", "burst")
DISTS = ("fixed", "uniform", "lognormal")
SCHEDULERS = ("static", "vllm", "vllm-v1", "sarathi", "disaggregated", "splitfuse", "tgi", "sglang")
WORKLOAD_KEYS = ("num_requests", "arrival", "input_tokens", "output_tokens", "seed", "trace")
ARRIVAL_KEYS = ("process", "rate_per_s", "cv", "trace")
LENGTH_KEYS = ("dist", "value", "mean", "cv", "min", "max")
SLO_KEYS = limits.SLO_KEYS   # ttft_p99, tpot_p99 with units, or _ms / _s keys
DISAGG_KEYS = ("prefill_replicas",)
DEFAULT_NUM_REQUESTS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthDist:
    dist: str = "fixed"
    value: int = 1024          # fixed
    mean: float = 1024.0       # lognormal
    cv: float = 1.0            # lognormal: standard deviation / mean before truncation
    min: int = 1
    max: int = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    num_requests: int = DEFAULT_NUM_REQUESTS
    process: str = "poisson"
    rate_per_s: float | None = None
    cv: float = 1.0
    trace: str | None = None
    input_tokens: LengthDist = LengthDist()
    output_tokens: LengthDist = LengthDist(value=256, mean=256.0)
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SLO:
    ttft_s: float | None = None    # a request meets the SLO when its TTFT and its mean TPOT are
    tpot_s: float | None = None    # within these; the p99 of each is reported against them


def _positive(v: Any, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise InvalidScenario(f"{field}: expected a positive number, got {v!r}")
    return float(v)


def _positive_int(v: Any, field: str) -> int:
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
            or not float(v).is_integer()):
        raise InvalidScenario(f"{field}: expected a positive integer, got {v!r}")
    return int(v)


def _length(data: Any, field: str, default: int) -> LengthDist:
    if data is None:
        return LengthDist(value=default, mean=float(default))
    if not isinstance(data, Mapping):
        n = _positive_int(data, field)
        limits.check_count(n, limits.MAX_TOKENS_PER_REQUEST, field=field, hint="tokens per simulated request")
        return LengthDist(value=n, mean=float(n))
    check_keys(data, field, LENGTH_KEYS)
    dist = choice(data, field, "dist", "lognormal" if "mean" in data else "fixed", DISTS)
    lo = _positive_int(data.get("min", 1), f"{field}.min")
    hi = _positive_int(data.get("max", 1 << 20), f"{field}.max")
    limits.check_count(max(lo, hi), limits.MAX_TOKENS_PER_REQUEST, field=f"{field}.max",
                       hint="tokens per simulated request; see docs/limits.md")
    if lo > hi:
        raise InvalidScenario(f"{field}: min {lo} exceeds max {hi}")
    if dist == "fixed":
        n = _positive_int(data.get("value", default), f"{field}.value")
        limits.check_count(n, limits.MAX_TOKENS_PER_REQUEST, field=f"{field}.value", hint="tokens per simulated request")
        return LengthDist(value=n, mean=float(n), min=lo, max=hi)
    if dist == "uniform":
        if "min" not in data or "max" not in data:
            raise InvalidScenario(f"{field}: a uniform distribution needs min and max")
        return LengthDist(dist="uniform", mean=(lo + hi) / 2, min=lo, max=hi)
    mean = _positive(data.get("mean", default), f"{field}.mean")
    cv = _positive(data.get("cv", 1.0), f"{field}.cv")
    limits.check_count(mean, limits.MAX_TOKENS_PER_REQUEST, field=f"{field}.mean", hint="tokens per simulated request")
    if cv > 100:
        raise InvalidScenario(f"{field}.cv: {cv:g} is above 100; expected a coefficient of variation in (0, 100]")
    return LengthDist(dist="lognormal", mean=mean, cv=cv, min=lo, max=hi)


def workload_from_mapping(data: Mapping[str, Any] | None, *, input_tokens: int, output_tokens: int) -> WorkloadSpec:
    """Parse `inference.workload`; lengths default to the section's input_tokens / output_tokens. No
    workload at all means a burst of the default number of fixed-length requests (the saturation case)."""
    if data is not None and not isinstance(data, Mapping):
        raise InvalidScenario("inference.workload: expected a mapping such as {num_requests: 1000, arrival: "
                              "{process: poisson, rate_per_s: 20}}")
    if not data:
        return WorkloadSpec(process="burst", input_tokens=_length(None, "", input_tokens),
                            output_tokens=_length(None, "", output_tokens))
    data = dict(data)
    check_keys(data, "inference.workload", WORKLOAD_KEYS)
    arrival = data.get("arrival") or {}
    if not isinstance(arrival, Mapping):
        raise InvalidScenario("inference.workload.arrival: expected a mapping such as {process: poisson, rate_per_s: 20}")
    check_keys(arrival, "inference.workload.arrival", ARRIVAL_KEYS)
    trace = data.get("trace", arrival.get("trace"))   # workload.trace or workload.arrival.trace (SCENARIO.md)
    if trace is not None:
        limits.check_trace_keys(data, arrival)
    process = choice(arrival, "inference.workload.arrival", "process", "poisson", PROCESSES)
    rate = None
    if trace is None and process != "burst":
        if "rate_per_s" not in arrival:
            raise InvalidScenario(
                f"inference.workload.arrival.rate_per_s: required for a {process} process (requests per second), "
                "or use process: burst, or a trace")
        rate = _positive(arrival["rate_per_s"], "inference.workload.arrival.rate_per_s")
        if not 1e-6 <= rate <= 1e9:
            raise InvalidScenario(f"inference.workload.arrival.rate_per_s: {rate:g} requests/s is outside 1e-6..1e9")
    cv = _positive(arrival.get("cv", 1.0), "inference.workload.arrival.cv")
    if cv > 100:
        raise InvalidScenario(f"inference.workload.arrival.cv: {cv:g} is above 100; expected a coefficient of "
                              "variation in (0, 100]")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidScenario(f"inference.workload.seed: expected a non-negative integer, got {seed!r}")
    return WorkloadSpec(
        num_requests=_positive_int(data.get("num_requests", DEFAULT_NUM_REQUESTS), "inference.workload.num_requests"),
        process=process, rate_per_s=rate, cv=cv,
        trace=None if trace is None else files.permitted(str(trace), field="inference.workload.trace"),
        input_tokens=_length(data.get("input_tokens"), "inference.workload.input_tokens", input_tokens),
        output_tokens=_length(data.get("output_tokens"), "inference.workload.output_tokens", output_tokens),
        seed=seed,
    )


def slo_from_mapping(data: Mapping[str, Any] | None) -> SLO:
    if not data:
        return SLO()
    if not isinstance(data, Mapping):
        raise InvalidScenario('inference.slo: expected a mapping such as {ttft_p99: "1 s", tpot_p99: "50 ms"}')
    check_keys(data, "inference.slo", SLO_KEYS)
    out = limits.slo_seconds(data, "inference.slo")
    return SLO(ttft_s=out.get("ttft_p99"), tpot_s=out.get("tpot_p99"))


def scheduler_from_mapping(value: Any) -> tuple[str, int | None]:
    """`scheduler: vllm` or `scheduler: {name: disaggregated, prefill_replicas: 2}`."""
    if isinstance(value, Mapping):
        check_keys(value, "inference.scheduler", ("name",) + DISAGG_KEYS)
        name = choice(value, "inference.scheduler", "name", "sarathi", SCHEDULERS)
        n = value.get("prefill_replicas")
        return name, None if n is None else _positive_int(n, "inference.scheduler.prefill_replicas")
    return choice({"scheduler": value} if value is not None else {}, "inference", "scheduler", "sarathi",
                  SCHEDULERS), None


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSpec:
    """`inference.scheduler`: the batching policy a simulation runs (`name`), the prefill replicas of a
    disaggregated split of the section's replicas, and whether the scenario named it (`given`; else
    the default, recorded as an Assumption where it is used)."""

    name: str = "sarathi"
    prefill_replicas: int | None = None
    given: bool = False


def scheduler_spec(value: Any, *, pools: bool = False, default: str = "sarathi") -> SchedulerSpec:
    """`inference.scheduler` as a spec; with prefill and decode pools (`pools`) and no scheduler
    given, the scheduler is disaggregated, else `default` (the engine's own policy)."""
    name, prefill_replicas = scheduler_from_mapping(value)
    if value is None:
        name = "disaggregated" if pools else default
    return SchedulerSpec(name=name, prefill_replicas=prefill_replicas, given=value is not None)


def default_workload(*, input_tokens: int, output_tokens: int) -> WorkloadSpec:
    """The workload of an `inference` section without one: a burst of DEFAULT_NUM_REQUESTS requests of
    the section's fixed lengths (the saturated server)."""
    return workload_from_mapping(None, input_tokens=input_tokens, output_tokens=output_tokens)
