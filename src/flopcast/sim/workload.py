"""The simulated traffic: arrivals, prompt and output lengths, the scheduler and the latency SLO
(the `workload`, `scheduler` and `slo` keys of a scenario's `inference` section).

Arrivals are a Poisson process (`process: poisson`, exponential gaps at `rate_per_s`), a gamma
renewal process with coefficient of variation `cv` (bursty when cv > 1; cv = 1 is Poisson), a
burst (`process: burst`: every request at t = 0, the saturation test) or a trace (`trace: path.csv`
in the workload or in its `arrival`, with columns arrival_s, input_tokens, output_tokens). Lengths are
`fixed` (`value`), `uniform` (`min`..`max`) or `lognormal` (`mean`, `cv` default 1, truncated to
`min`..`max`); a plain integer means fixed. Everything is drawn from one seeded generator, so a
scenario always simulates the same requests.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flopcast import files
from flopcast.errors import InvalidScenario
from flopcast.specs import limits
from flopcast.specs.fields import check_keys, choice

PROCESSES = ("poisson", "gamma", "burst")
DISTS = ("fixed", "uniform", "lognormal")
SCHEDULERS = ("static", "vllm", "sarathi", "disaggregated")
WORKLOAD_KEYS = ("num_requests", "arrival", "input_tokens", "output_tokens", "seed", "trace")
ARRIVAL_KEYS = ("process", "rate_per_s", "cv", "trace")
LENGTH_KEYS = ("dist", "value", "mean", "cv", "min", "max")
SLO_KEYS = limits.SLO_KEYS   # ttft_p99, tpot_p99 with units, or _ms / _s keys
DISAGG_KEYS = ("prefill_replicas",)
DEFAULT_NUM_REQUESTS = 1000


@dataclass(frozen=True, slots=True)
class LengthDist:
    dist: str = "fixed"
    value: int = 1024          # fixed
    mean: float = 1024.0       # lognormal
    cv: float = 1.0            # lognormal: standard deviation / mean before truncation
    min: int = 1
    max: int = 1 << 20


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    num_requests: int = DEFAULT_NUM_REQUESTS
    process: str = "poisson"
    rate_per_s: float | None = None
    cv: float = 1.0
    trace: str | None = None
    input_tokens: LengthDist = LengthDist()
    output_tokens: LengthDist = LengthDist(value=256, mean=256.0)
    seed: int = 0


@dataclass(frozen=True, slots=True)
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


def _draw(rng: np.random.Generator, d: LengthDist, n: int) -> np.ndarray:
    if d.dist == "fixed":
        x = np.full(n, d.value, dtype=float)
    elif d.dist == "uniform":
        x = rng.integers(d.min, d.max + 1, size=n).astype(float)
    else:
        sigma = math.sqrt(math.log1p(d.cv ** 2))
        x = rng.lognormal(math.log(d.mean) - sigma ** 2 / 2, sigma, size=n)
    return np.clip(np.rint(x), d.min, d.max).astype(np.int64)


def _read_trace(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from flopcast import inputs

    p = Path(path)
    if not p.exists():
        raise InvalidScenario(f"inference.workload.trace: no such file {path!r} (a CSV with columns "
                              "arrival_s, input_tokens, output_tokens)")
    with files.reading("inference.workload.trace", p, "request trace (CSV)"):    # generic errors on the service
        return _parse_trace(inputs.read_text(p, what="inference.workload.trace"), path)


def _parse_trace(text: str, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import io

    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    need = ("arrival_s", "input_tokens", "output_tokens")
    if not rows or any(k not in rows[0] for k in need):
        raise InvalidScenario(f"inference.workload.trace: {path!r} needs a header with {', '.join(need)}")
    try:
        t = np.array([float(r["arrival_s"]) for r in rows])
        i = np.array([int(r["input_tokens"]) for r in rows], dtype=np.int64)
        o = np.array([int(r["output_tokens"]) for r in rows], dtype=np.int64)
    except (ValueError, TypeError) as e:
        raise InvalidScenario(f"inference.workload.trace: {path!r}: {e}") from None
    if (t < 0).any() or (i < 1).any() or (o < 1).any() or not np.isfinite(t).all() \
            or (i + o > limits.MAX_TOKENS_PER_REQUEST).any():
        raise InvalidScenario(f"inference.workload.trace: {path!r}: arrival_s must be finite and >= 0, token counts "
                              f">= 1 and input + output at most {limits.MAX_TOKENS_PER_REQUEST:,}")
    order = np.argsort(t, kind="stable")
    return t[order], i[order], o[order]


def generate(w: WorkloadSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival times s, input tokens, output tokens) of every request, sorted by arrival."""
    if w.trace is not None:
        t, i, o = _read_trace(w.trace)
        return t[: w.num_requests], i[: w.num_requests], o[: w.num_requests]
    rng = np.random.default_rng(w.seed)
    n = w.num_requests
    rate = w.rate_per_s
    if w.process != "burst" and rate is None:
        raise InvalidScenario(f"inference.workload.arrival.rate_per_s: required for a {w.process} process")
    if w.process == "burst" or rate is None:
        t = np.zeros(n)
    elif w.process == "poisson" or w.cv == 1.0:
        t = np.cumsum(rng.exponential(1.0 / rate, size=n))
    else:   # gamma gaps with mean 1/rate and coefficient of variation cv
        shape = 1.0 / w.cv ** 2
        t = np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), size=n))
    return t, _draw(rng, w.input_tokens, n), _draw(rng, w.output_tokens, n)
