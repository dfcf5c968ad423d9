"""Streaming statistics of a long simulation (more than STREAM_ABOVE requests): memory bounded
whatever the number of requests, so 10^7 requests simulate in well under 1 GiB.

A request's figures are recorded when it finishes (sim/state.py `release`) into a small buffer
that is folded, FLUSH requests at a time and with numpy, into:
- log-spaced histograms (bins REL_WIDTH = 0.2% wide from LO_S to HI_S) of TTFT, TPOT and end-to-end
  latency for each of SEGMENTS equal slices of the run by arrival order: a percentile is read to
  within 0.1% of its exact value, and the steady state (run/steady.py) cuts the warm-up at a slice
  boundary;
- the sums and counts of TTFT and TPOT per batch of consecutive arrivals (at most MAX_BATCHES
  batches): the MSER warm-up rule runs on these batch means;
- the output tokens generated per time bin (each request's first token at its first_token_s, the
  others spread evenly until done_s), from which the achieved throughput of any window is read;
- counts, sums, the SLO attainment and the KV-transfer histogram.
Per-request lists are not kept (`flopcast simulate --requests` needs at most STREAM_ABOVE requests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STREAM_ABOVE = 1_000_000      # requests above which a simulation streams its statistics
LO_S, HI_S = 1e-7, 1e6        # histogram range of a latency (clipped to it)
REL_WIDTH = 0.002             # relative width of a histogram bin
N_BINS = int(math.ceil(math.log(HI_S / LO_S) / math.log1p(REL_WIDTH))) + 1
SEGMENTS = 64                 # slices of the run by arrival order (histograms per slice)
MAX_BATCHES = 1 << 16         # batch means kept for the MSER warm-up rule
FLUSH = 1 << 16               # finished requests folded into the statistics at a time
TIME_BINS = 1 << 16           # time bins over the expected span (the array grows past it)
MAX_TIME_BINS = 1 << 18       # beyond: bins twice as wide
_LOG_STEP = math.log1p(REL_WIDTH)


def _bins(x: np.ndarray) -> np.ndarray:
    """Histogram bin of each latency (s)."""
    return np.clip((np.log(np.clip(x, LO_S, HI_S) / LO_S) / _LOG_STEP).astype(np.int64), 0, N_BINS - 1)


def bin_value(b: int) -> float:
    """The geometric middle of histogram bin b (s)."""
    return LO_S * math.exp((b + 0.5) * _LOG_STEP)


def percentile(hist: np.ndarray, q: float) -> float | None:
    """The q-th percentile (0..100) of the values counted in `hist` (bin middle; None when empty)."""
    total = int(hist.sum())
    if total == 0:
        return None
    rank = q / 100 * (total - 1)
    return bin_value(int(np.searchsorted(np.cumsum(hist), rank, side="right")))


@dataclass(slots=True)
class TimeBins:
    """Output tokens generated per time bin of `width_s` (a growing array)."""

    width_s: float
    point: np.ndarray          # tokens counted in a bin outright (first tokens, partial bins)
    rate_step: np.ndarray      # changes of the token rate (tokens/s) at a bin's start

    def _coarsen(self) -> None:
        """Twice as wide bins: each new bin holds the tokens of the two it replaces (exact)."""
        per_bin = self.point + np.cumsum(self.rate_step) * self.width_s
        if len(per_bin) % 2:
            per_bin = np.append(per_bin, 0.0)
        self.point = per_bin[0::2] + per_bin[1::2]
        self.rate_step = np.zeros(len(self.point))
        self.width_s *= 2

    def _grow(self, top: int) -> None:
        if top >= len(self.point):
            size = max(min(2 * len(self.point), MAX_TIME_BINS), top + 1)
            self.point = np.concatenate([self.point, np.zeros(size - len(self.point))])
            self.rate_step = np.concatenate([self.rate_step, np.zeros(size - len(self.rate_step))])

    def add(self, first: np.ndarray, done: np.ndarray, out: np.ndarray) -> None:
        """Each request's first token at `first`; its other out - 1 spread evenly over (first, done]."""
        while float(done.max()) / self.width_s >= MAX_TIME_BINS - 1:
            self._coarsen()
        w = self.width_s
        bf, be = (first / w).astype(np.int64), (done / w).astype(np.int64)
        self._grow(int(be.max()) + 1)
        size = len(self.point)
        rest = np.maximum(out - 1, 0).astype(float)
        span = done - first
        same = (bf == be) | (span <= 0)
        self.point += np.bincount(bf, weights=1.0 + np.where(same, rest, 0.0), minlength=size)
        m = ~same
        rate = rest[m] / span[m]
        f, e, i, j = first[m], done[m], bf[m], be[m]
        self.point += np.bincount(i, weights=rate * ((i + 1) * w - f), minlength=size)
        self.point += np.bincount(j, weights=rate * (e - j * w), minlength=size)
        self.rate_step += np.bincount(i + 1, weights=rate, minlength=size) - np.bincount(j, weights=rate, minlength=size)

    def tokens_between(self, t0: float, t1: float) -> float:
        """Tokens generated in [t0, t1] (edge bins pro rata)."""
        per_bin = self.point + np.cumsum(self.rate_step) * self.width_s
        a, b = t0 / self.width_s, t1 / self.width_s
        i, j = int(a), int(b)
        if i >= len(per_bin):
            return 0.0
        if i == j:
            return float(per_bin[i] * (b - a))
        total = float(per_bin[i] * (i + 1 - a))
        total += float(per_bin[i + 1: min(j, len(per_bin))].sum())
        if j < len(per_bin):
            total += float(per_bin[j] * (b - j))
        return total


class StreamRecorder:
    """The statistics of a simulation of `n` requests, fed one finished request at a time
    (module docstring); `span_guess_s`, the expected arrival span, sets the time bins' width."""

    def __init__(self, n: int, span_guess_s: float, slo_ttft_s: float | None, slo_tpot_s: float | None):
        self.n = n
        self.slo = (slo_ttft_s, slo_tpot_s)
        self.buf: list[tuple[int, float, float, float, int, float]] = []
        self.hist = np.zeros((3, SEGMENTS, N_BINS), dtype=np.int64)    # ttft, tpot, e2e
        self.xfer = np.zeros(N_BINS, dtype=np.int64)
        self.batch = max(5, -(-n // MAX_BATCHES))
        nb = -(-n // self.batch)
        self.batch_sum = np.zeros((2, nb))
        self.batch_count = np.zeros((2, nb))
        self.batch_arrival = np.full(nb, np.inf)
        self.seg_arrival = np.full(SEGMENTS, np.inf)
        self.seg_out = np.zeros(SEGMENTS)
        self.time = TimeBins(max(span_guess_s, 1e-3) / TIME_BINS, np.zeros(TIME_BINS), np.zeros(TIME_BINS))
        self.completed = self.rejected = self.good = 0
        self.out_done = 0.0
        self.in_sum = self.out_sum = 0.0        # every request's lengths, as it arrives
        self.last_arrival_s = 0.0

    def arrived(self, arrival_s: np.ndarray, inp: np.ndarray, out: np.ndarray) -> None:
        """A chunk of requests (every one arrives, or is rejected, in the run): their lengths."""
        if len(arrival_s):
            self.in_sum += float(inp.sum())
            self.out_sum += float(out.sum())
            self.last_arrival_s = float(arrival_s[-1])

    def finished(self, k: int, arrival_s: float, first_s: float, done_s: float, out: int, transfer_s: float) -> None:
        self.buf.append((k, arrival_s, first_s, done_s, out, transfer_s))
        if len(self.buf) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        """Fold the buffered requests into the statistics."""
        if not self.buf:
            return
        k, a, f, e, o, x = (np.array(c) for c in zip(*self.buf, strict=True))
        self.buf.clear()
        k = k.astype(np.int64)
        ttft, e2e = f - a, e - a
        tpot_all = (e - f) / np.maximum(o - 1, 1)
        multi = o > 1
        seg = k * SEGMENTS // self.n
        flat = self.hist.reshape(3, -1)
        for row, (vals, sel) in enumerate(((ttft, None), (tpot_all, multi), (e2e, None))):
            idx = seg * N_BINS + _bins(vals)
            flat[row] += np.bincount(idx if sel is None else idx[sel], minlength=flat.shape[1])
        xs = x[~np.isnan(x)]
        if len(xs):
            self.xfer += np.bincount(_bins(xs), minlength=N_BINS)
        b = k // self.batch
        nb = self.batch_sum.shape[1]
        self.batch_sum[0] += np.bincount(b, weights=ttft, minlength=nb)
        self.batch_count[0] += np.bincount(b, minlength=nb)
        self.batch_sum[1] += np.bincount(b[multi], weights=tpot_all[multi], minlength=nb)
        self.batch_count[1] += np.bincount(b[multi], minlength=nb)
        np.minimum.at(self.batch_arrival, b, a)
        np.minimum.at(self.seg_arrival, seg, a)
        self.seg_out += np.bincount(seg, weights=o, minlength=SEGMENTS)
        self.time.add(f, e, o)
        self.completed += len(k)
        self.out_done += float(o.sum())
        good = np.ones(len(k), dtype=bool)
        if self.slo[0] is not None:
            good &= ttft <= self.slo[0]
        if self.slo[1] is not None:
            good &= tpot_all <= self.slo[1]
        self.good += int(good.sum())

    def latency(self, metric: int, segments: slice = slice(None)) -> np.ndarray:
        """The histogram of metric 0 (TTFT), 1 (TPOT) or 2 (end-to-end) over a range of segments."""
        return self.hist[metric, segments].sum(axis=0)
