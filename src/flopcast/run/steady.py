"""The steady state of one simulation: which requests are warm-up, whether the run settled, and the
latency percentiles and throughput of the requests after the warm-up (`simulate`'s steady_state
block, and every trial of fleet sizing, run/sizing.py).

- warm-up: the requests that arrive before the system settles, the latest of three cuts, each within
  the first half of the run: one request lifetime (the run's p99 end-to-end latency) after the first
  arrival, since the requests in flight at time t arrived within one lifetime and so no longer
  reflect the empty start; and White's MSER-5 rule on the TTFT series and on the TPOT series in
  arrival order (batch means of 5 consecutive requests; truncate the d batches that minimise the
  squared standard error of the mean of the rest), which cuts a queue's build-up;
- settled: the post-warm-up requests are split in two halves by arrival; for each SLO metric the p99
  of the halves agree within SETTLE_TOL (10%) of the larger, or both lie at most half the target,
  or both at least twice it (the verdict cannot flip);
- verdict: no request rejected, and the p99 TTFT and p99 TPOT of the post-warm-up requests within
  the SLO.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flopcast.sim.workload import SLO

SETTLE_TOL = 0.10
MSER_BATCH = 5

WARMUP_RULE = ("the latest of: one p99 end-to-end latency after the first arrival; MSER-5 (White 1997) on the TTFT "
               "and on the TPOT series in arrival order; at most half the requests")



def mser_truncation(x: np.ndarray, batch: int = MSER_BATCH) -> int | None:
    """White's MSER-b truncation point of series x (in elements): the d (a multiple of b) minimising
    sum_{j>d} (z_j - mean)^2 / (m - d)^2 over the batch means z; None when it lies past the first half
    (the series has not settled in this run)."""
    m = len(x) // batch
    if m < 4:
        return 0
    z = x[: m * batch].reshape(m, batch).mean(axis=1)
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    n = np.arange(m, 0, -1, dtype=float)
    mse = np.maximum(s2 - s1 * s1 / n, 0.0) / (n * n)
    d = int(np.argmin(mse[: max(1, m - 2)]))
    return d * batch if d <= m // 2 else None


def _p(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def _warmup(arrival: np.ndarray, done: np.ndarray, ttft: np.ndarray, tpot: np.ndarray,
            out: np.ndarray) -> tuple[int, bool]:
    """The warm-up cut (requests) and whether every rule found one in the first half (module docstring).
    The batches fill over a request's lifetime: the requests in flight at time t arrived within the
    last end-to-end latency, so the population has forgotten the empty start one lifetime (the p99
    end-to-end latency of the run) after the first arrival."""
    n = len(arrival)
    life = float(np.percentile(done - arrival, 99))
    lifetime_cut = int(np.searchsorted(arrival, arrival[0] + life, side="left"))
    cuts = [lifetime_cut if lifetime_cut <= n // 2 else None, mser_truncation(ttft)]
    multi = np.flatnonzero(out > 1)
    if len(multi):
        c = mser_truncation(tpot[multi])
        cuts.append(None if c is None else int(multi[min(c, len(multi) - 1)]) if c else 0)
    warm_ok = all(c is not None for c in cuts)
    d = max((c for c in cuts if c is not None), default=0) if warm_ok else n // 2
    return d, warm_ok


def _judge(row: dict[str, Any], x: np.ndarray, d: int, name: str, target: float | None) -> tuple[bool, bool, bool]:
    """One SLO metric after the warm-up `d`: its p50/p99 (and pass/fail, margin) into `row`; whether
    it meets the target, whether its two halves agree, whether it fails on both halves robustly."""
    n = len(x)
    half = d + (n - d) // 2
    steady = x[d:]
    steady = steady[~np.isnan(steady)]
    p99 = _p(steady, 99)
    row[f"{name}_p50_s"], row[f"{name}_p99_s"] = _p(steady, 50), p99
    row[f"_{name}_fails"] = target is not None and p99 is not None and p99 > target
    if target is None:
        return True, True, False
    if p99 is not None and p99 > 0:
        # how far the steady p99 is from the target (log ratio; > 0 fails): guides the search
        row["_margin"] = max(row.get("_margin", -math.inf), math.log(p99 / target))
    meets = not row[f"_{name}_fails"]
    a, b = x[d:half], x[half:]
    pa, pb = _p(a[~np.isnan(a)], 99), _p(b[~np.isnan(b)], 99)
    if pa is None or pb is None:
        return meets, True, False
    lo, hi = min(pa, pb), max(pa, pb)
    agree = hi - lo <= SETTLE_TOL * hi or hi <= 0.5 * target or lo >= 2 * target
    return meets, agree, lo >= 2 * target     # failing on both halves, whatever more requests show


def _throughput(arrival: np.ndarray, first: np.ndarray, done: np.ndarray, out: np.ndarray,
                d: int) -> dict[str, float]:
    """Throughput over the steady-state window [first post-warm-up arrival, last arrival]: offered,
    the output tokens of the requests arriving in it; achieved, the tokens generated in it (each
    request's first token at first_token_s, the others spread evenly until done_s)."""
    t0, t1 = float(arrival[d]), float(arrival[-1])
    window = max(t1 - t0, 1e-12)
    arrived = (arrival >= t0) & (arrival <= t1)
    first_in = ((first >= t0) & (first <= t1)).astype(float)
    span = np.maximum(done - first, 1e-12)
    overlap = np.clip(np.minimum(done, t1) - np.maximum(first, t0), 0.0, None) / span
    generated = first_in + np.where(out > 1, (out - 1) * overlap, 0.0)
    return {"offered_output_tokens_per_s": float(out[arrived].sum()) / window,
            "achieved_output_tokens_per_s": float(generated.sum()) / window}


def steady_state(res: Any, slo: SLO) -> dict[str, Any]:
    """Warm-up cut, convergence and verdict of one simulation (module docstring): the p50/p99 TTFT and
    TPOT of the requests after the warm-up, whether the run settled, and the steady-state throughput."""
    if res.requests is None and res.stream is not None:
        return _steady_stream(res, slo)
    r = res.requests
    arrival, first, done, out = r["arrival_s"], r["first_token_s"], r["done_s"], r["output_tokens"]
    ok = ~np.isnan(done)
    ttft = first - arrival
    tpot = np.where(out > 1, (done - first) / np.maximum(out - 1, 1), np.nan)
    row: dict[str, Any] = {"num_requests": len(arrival), "num_rejected": int(res.num_rejected)}
    if res.num_rejected or not ok.all():
        return row | {"warmup_requests": 0, "settled": True, "meets_slo": False, "_ttft_fails": True, "_tpot_fails": True,
                      "ttft_p50_s": res.ttft_p50_s, "ttft_p99_s": res.ttft_p99_s, "tpot_p50_s": res.tpot_p50_s,
                      "tpot_p99_s": res.tpot_p99_s, "offered_output_tokens_per_s": None,
                      "achieved_output_tokens_per_s": res.output_tokens_per_s}
    d, warm_ok = _warmup(arrival, done, ttft, tpot, out)
    agree_all, fail_robust, verdict = True, False, True
    for name, x, target in (("ttft", ttft, slo.ttft_s), ("tpot", tpot, slo.tpot_s)):
        meets, agree, robust = _judge(row, x, d, name, target)
        verdict = verdict and meets
        agree_all = agree_all and agree
        fail_robust = fail_robust or robust
    settled = fail_robust or (warm_ok and agree_all)
    row |= {"warmup_requests": int(d), "settled": bool(settled), "meets_slo": bool(verdict)}
    return row | _throughput(arrival, first, done, out, d)


# --------------------------------------------------------------------------- streamed simulations
def _stream_warmup(rec: Any) -> tuple[int, bool]:
    """The warm-up cut of a streamed run (sim/stats.py), in slices by arrival: the same three rules,
    MSER on the recorded batch means (rec.batch requests each) instead of batches of 5."""
    from flopcast.sim.stats import SEGMENTS, percentile

    n, b = rec.n, rec.batch
    life = percentile(rec.latency(2), 99) or 0.0
    a0 = float(np.min(rec.batch_arrival))
    late = np.flatnonzero(rec.batch_arrival >= a0 + life)
    lifetime_cut = int(late[0]) * b if len(late) else n
    cuts = [lifetime_cut if lifetime_cut <= n // 2 else None]
    for metric in (0, 1):
        count = rec.batch_count[metric]
        keep = np.flatnonzero(count > 0)
        if len(keep):
            c = mser_truncation(rec.batch_sum[metric][keep] / count[keep], batch=1)
            cuts.append(None if c is None else int(keep[min(c, len(keep) - 1)]) * b if c else 0)
    warm_ok = all(c is not None for c in cuts)
    d = max((c for c in cuts if c is not None), default=0) if warm_ok else n // 2
    return min(-(-d * SEGMENTS // n), SEGMENTS // 2), warm_ok


def _stream_judge(row: dict[str, Any], rec: Any, metric: int, seg: int, name: str,
                  target: float | None) -> tuple[bool, bool, bool]:
    """_judge on the histograms of the slices from `seg` on (halves: the two halves of those slices)."""
    from flopcast.sim.stats import SEGMENTS, percentile

    half = seg + (SEGMENTS - seg) // 2
    p99 = percentile(rec.latency(metric, slice(seg, None)), 99)
    row[f"{name}_p50_s"], row[f"{name}_p99_s"] = percentile(rec.latency(metric, slice(seg, None)), 50), p99
    row[f"_{name}_fails"] = target is not None and p99 is not None and p99 > target
    if target is None:
        return True, True, False
    if p99 is not None and p99 > 0:
        row["_margin"] = max(row.get("_margin", -math.inf), math.log(p99 / target))
    pa = percentile(rec.latency(metric, slice(seg, half)), 99)
    pb = percentile(rec.latency(metric, slice(half, None)), 99)
    if pa is None or pb is None:
        return not row[f"_{name}_fails"], True, False
    lo, hi = min(pa, pb), max(pa, pb)
    agree = hi - lo <= SETTLE_TOL * hi or hi <= 0.5 * target or lo >= 2 * target
    return not row[f"_{name}_fails"], agree, lo >= 2 * target


def _steady_stream(res: Any, slo: SLO) -> dict[str, Any]:
    """steady_state of a streamed simulation: the same rules at the granularity of its slices."""
    from flopcast.sim.stats import SEGMENTS

    rec = res.stream
    row: dict[str, Any] = {"num_requests": rec.n, "num_rejected": int(rec.rejected)}
    if rec.rejected or rec.completed < rec.n:
        return row | {"warmup_requests": 0, "settled": True, "meets_slo": False, "_ttft_fails": True,
                      "_tpot_fails": True, "ttft_p50_s": res.ttft_p50_s, "ttft_p99_s": res.ttft_p99_s,
                      "tpot_p50_s": res.tpot_p50_s, "tpot_p99_s": res.tpot_p99_s,
                      "offered_output_tokens_per_s": None, "achieved_output_tokens_per_s": res.output_tokens_per_s}
    seg, warm_ok = _stream_warmup(rec)
    agree_all, fail_robust, verdict = True, False, True
    for metric, name, target in ((0, "ttft", slo.ttft_s), (1, "tpot", slo.tpot_s)):
        meets, agree, robust = _stream_judge(row, rec, metric, seg, name, target)
        verdict, agree_all, fail_robust = verdict and meets, agree_all and agree, fail_robust or robust
    t0, t1 = float(rec.seg_arrival[seg]), rec.last_arrival_s
    window = max(t1 - t0, 1e-12)
    row |= {"warmup_requests": seg * rec.n // SEGMENTS, "settled": bool(fail_robust or (warm_ok and agree_all)),
            "meets_slo": bool(verdict)}
    return row | {"offered_output_tokens_per_s": float(rec.seg_out[seg:].sum()) / window,
                  "achieved_output_tokens_per_s": rec.time.tokens_between(t0, t1) / window}
