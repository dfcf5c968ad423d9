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
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flopcast import files
from flopcast.errors import InvalidScenario
from flopcast.specs import limits

# the traffic's specs and parsers live with the other scenario specs; imported here for the simulator
from flopcast.specs.traffic import (  # noqa: F401  (re-exported: flopcast.sim.workload names them)
    ARRIVAL_KEYS,
    DEFAULT_NUM_REQUESTS,
    DISAGG_KEYS,
    DISTS,
    LENGTH_KEYS,
    PROCESSES,
    SCHEDULERS,
    SLO,
    SLO_KEYS,
    WORKLOAD_KEYS,
    LengthDist,
    WorkloadSpec,
    scheduler_from_mapping,
    slo_from_mapping,
    workload_from_mapping,
)


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


Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]


def expected_count(w: WorkloadSpec) -> int:
    """How many requests `chunks(w, ...)` yields (a trace: its rows, up to num_requests)."""
    return len(_read_trace(w.trace)[0][: w.num_requests]) if w.trace is not None else w.num_requests


def chunks(w: WorkloadSpec, size: int) -> Iterator[Chunk]:
    """The requests of `w` in arrival order, `size` at a time, so that a long simulation never holds
    them all. A trace is read once and sliced; synthetic traffic draws each chunk from its own
    generator (children of w.seed: the same scenario always simulates the same requests, though
    not the ones `generate` draws in one piece)."""
    if w.trace is not None:
        t, i, o = generate(w)
        for lo in range(0, len(t), size):
            yield t[lo: lo + size], i[lo: lo + size], o[lo: lo + size]
        return
    rate = w.rate_per_s
    if w.process != "burst" and rate is None:
        raise InvalidScenario(f"inference.workload.arrival.rate_per_s: required for a {w.process} process")
    seeds = np.random.SeedSequence(w.seed)
    t0 = 0.0
    for lo in range(0, w.num_requests, size):
        rng = np.random.default_rng(seeds.spawn(1)[0])
        m = min(size, w.num_requests - lo)
        if w.process == "burst" or rate is None:
            t = np.zeros(m)
        elif w.process == "poisson" or w.cv == 1.0:
            t = t0 + np.cumsum(rng.exponential(1.0 / rate, size=m))
        else:
            shape = 1.0 / w.cv ** 2
            t = t0 + np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), size=m))
        t0 = float(t[-1])
        yield t, _draw(rng, w.input_tokens, m), _draw(rng, w.output_tokens, m)
