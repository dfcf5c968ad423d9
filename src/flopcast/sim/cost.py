"""The simulator's iteration cost: the narrow interface the engine times every iteration through
(`IterationCost.time_s`), and its implementations: the analytic serving model (`AnalyticCost`,
estimate/serving.py's per-op roofline, memoised; `SpeculativeCost` when the deployment decodes
speculatively; `iteration_cost` picks one) and a fixed service time per iteration (`FixedCost`, for
queueing tests whose oracle is textbook queueing theory)."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from flopcast.estimate import serving as sv_mod

CTX_BUCKET = 8       # iteration costs are memoised with contexts rounded to 8 tokens (< 0.1% of a cost)
SHARED_TABLES = 8    # deployments whose filled cost tables are kept for the next simulation of the process


class IterationCost(Protocol):
    """Seconds one engine iteration of a replica takes."""

    def time_s(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        """An iteration that advances `n_dec` decoding sequences by one token (their contexts summing
        to `ctx_sum` tokens) and builds `n_pre` prompt tokens (attending `keys_sum` keys in all:
        a chunk of c tokens after p built ones attends c (p + c / 2)), and samples `n_sampled`
        tokens."""
        ...


@dataclass(frozen=True, slots=True)
class FixedCost:
    """Every iteration takes `service_s`, whatever it carries (a deterministic server)."""

    service_s: float

    def time_s(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        return self.service_s


class AnalyticCost:
    """Iteration times of one prepared serving model (estimate/serving.py `iteration_breakdown_s`,
    summed), with the decode context and the prompt length rounded to CTX_BUCKET tokens.

    A time depends on (decoding sequences n, their mean context c, prompt tokens m, their mean
    attended prompt p, sampled tokens s); memoising that 5-tuple alone misses on most iterations of
    a long run (every batch composition is new), and each miss costs a full per-op evaluation. The
    serving model is a sum over op classes in which, with one pipeline stage and no two-batch
    overlap, the projections, FFN, norms and collectives depend on the iteration's tokens T = n + m
    only, decode attention is linear in n at a given c, prompt attention linear in m at a given p
    (plus the eager-launch cost of an iteration that carries prompt tokens), and the LM head and
    sampling depend on s. So the time is assembled as
        t(n, c, m, p, s) = base(T) + n dec(c) + [m pre(p) + launch] + head(s)
    from four small tables, each filled from the public function with the other inputs zero. This
    holds exactly (to rounding, ~1e-15 relative) for dense, MoE, expert-parallel and sliding-window
    models; it is checked against direct evaluation at construction on a fixed set of shapes, and a
    model where it does not hold (MLA's absorbed decode projections, pipeline stages, two-batch
    overlap) is timed by direct evaluation of each distinct 5-tuple."""

    N0 = 64            # sequences / tokens at which the linear terms are read off
    CHECK_REL = 1e-9

    def __init__(self, sv: sv_mod._Serve, budget: int, max_seqs: int):
        self.sv = sv
        self.memo: dict[tuple[int, int, int, int, int], float] = {}
        self.base: dict[int, float] = {}
        self.dec: dict[int, float] = {}
        self.pre: dict[int, tuple[float, float]] = {}
        self.head: dict[int, float] = {}
        cases = self._check_cases(budget, max_seqs)
        direct = [self._sum(n, c * CTX_BUCKET, m, p * CTX_BUCKET, s) for n, c, m, p, s in cases]
        if _adopt(self, sv, budget, max_seqs, direct):
            return
        s = sv.spec
        self.separable = (s.pp == 1 and not (s.two_batch_overlap and s.ep > 1)
                          and self._check(cases, direct))
        _keep(self, sv, budget, max_seqs, direct)

    def _sum(self, n_dec: int, ctx: int, n_pre: int, prompt: int, n_sampled: int) -> float:
        return sum(sv_mod.iteration_breakdown_s(self.sv, n_dec, ctx, n_pre, prompt, n_sampled).values())

    def _base(self, tokens: int) -> float:
        t = self.base.get(tokens)
        if t is None:
            t = self.base[tokens] = self._sum(tokens, 0, 0, 0, 0)
        return t

    def _dec(self, ctx_b: int) -> float:
        t = self.dec.get(ctx_b)
        if t is None:
            n = self.N0
            t = self.dec[ctx_b] = (self._sum(n, ctx_b * CTX_BUCKET, 0, 0, 0) - self._base(n)) / n
        return t

    def _pre(self, prompt_b: int) -> tuple[float, float]:
        t = self.pre.get(prompt_b)
        if t is None:
            n, p = self.N0, prompt_b * CTX_BUCKET
            a = self._sum(0, 0, n, p, 0) - self._base(n)
            b = self._sum(0, 0, 2 * n, p, 0) - self._base(2 * n)
            slope = (b - a) / n
            t = self.pre[prompt_b] = (slope, a - n * slope)
        return t

    def _head(self, n_sampled: int) -> float:
        t = self.head.get(n_sampled)
        if t is None:
            t = self.head[n_sampled] = self._sum(0, 0, 0, 0, n_sampled) - self._base(0)
        return t

    def _split(self, n_dec: int, ctx_b: int, n_pre: int, prompt_b: int, n_sampled: int) -> float:
        t = self._base(n_dec + n_pre)
        if n_dec:
            t += n_dec * self._dec(ctx_b)
        if n_pre:
            slope, launch = self._pre(prompt_b)
            t += n_pre * slope + launch
        return t + self._head(n_sampled)

    @staticmethod
    def _check_cases(budget: int, max_seqs: int) -> list[tuple[int, int, int, int, int]]:
        """The fixed shapes (n, context bucket, m, prompt bucket, s) the separable form is checked on."""
        rng = random.Random(12)
        cases = [(1, 1, 0, 0, 1), (0, 0, 1, 1, 1), (3, 64, 0, 0, 3), (0, 0, budget, 256, 1)]
        for _ in range(6):
            n = rng.randint(1, max(1, min(max_seqs, 2048)))
            m = rng.randint(1, max(1, budget))
            cases.append((n, rng.randint(1, 2048), m, rng.randint(1, 2048), n + rng.randint(0, 4)))
        return cases

    def _check(self, cases: list[tuple[int, int, int, int, int]], direct: list[float]) -> bool:
        """The separable form equals direct evaluation (`direct`, of `cases`) to CHECK_REL."""
        for (n, c, m, p, s), d in zip(cases, direct, strict=True):
            if not math.isfinite(d) or abs(self._split(n, c, m, p, s) - d) > self.CHECK_REL * abs(d):
                return False
        return True

    def time_s(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        ctx = round(ctx_sum / n_dec / CTX_BUCKET) if n_dec else 0
        prompt = round(2 * keys_sum / n_pre / CTX_BUCKET) if n_pre else 0
        if not self.separable:
            key = (n_dec, ctx, n_pre, prompt, n_sampled)
            t = self.memo.get(key)
            if t is None:
                t = self.memo[key] = self._sum(n_dec, ctx * CTX_BUCKET, n_pre, prompt * CTX_BUCKET, n_sampled)
            return t
        try:            # _split, inlined on filled table entries (this runs once per simulated iteration)
            t = self.base[n_dec + n_pre]
            if n_dec:
                t += n_dec * self.dec[ctx]
            if n_pre:
                slope, launch = self.pre[prompt]
                t += n_pre * slope + launch
            return t + self.head[n_sampled]
        except KeyError:    # an entry to fill: the same sums, through the filling lookups
            return self._split(n_dec, ctx, n_pre, prompt, n_sampled)


class SpeculativeCost:
    """Iteration times of a deployment that decodes speculatively (inference.speculative). The
    simulator advances every decoding sequence one token per iteration; a speculative step
    (estimate/serving.py `speculative_step_s`: the verify forward over 1 + k query tokens per
    sequence, the draft, the exposed host time) yields `acceptance_length` tokens per sequence, so a
    simulated iteration with decoding sequences is 1 / acceptance_length of a step, and the prompt
    chunk it carries is that share of the step's:

        t(n, c, m, p) = step(n, c, acceptance_length m, p) / acceptance_length     (n > 0)

    the time per token of the analytic estimate's speculative iteration (`_decode_iteration`), so the
    two agree at low load and at saturation. An iteration of prompt tokens alone costs what it costs
    without speculation (AnalyticCost). Leaves out: the spread of accepted tokens per step (every
    sequence gets the mean), and the k draft tokens per sequence that an engine counts against its
    token budget. Memoised on (n, context and prompt rounded to CTX_BUCKET tokens, m)."""

    def __init__(self, sv: sv_mod._Serve, budget: int, max_seqs: int):
        sp = sv.spec.speculative
        if sp is None or sp.acceptance_length is None:
            raise ValueError("SpeculativeCost: the deployment has no speculative acceptance length")
        self.sv = sv
        self.acceptance = float(sp.acceptance_length)
        self.plain = AnalyticCost(sv, budget, max_seqs)
        self.memo: dict[tuple[int, int, int, int], float] = {}

    def time_s(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        if not n_dec:
            return self.plain.time_s(n_dec, ctx_sum, n_pre, keys_sum, n_sampled)
        ctx = round(ctx_sum / n_dec / CTX_BUCKET)
        prompt = round(2 * keys_sum / n_pre / CTX_BUCKET) if n_pre else 0
        key = (n_dec, ctx, n_pre, prompt)
        t = self.memo.get(key)
        if t is None:
            a = self.acceptance
            t = self.memo[key] = sv_mod.speculative_step_s(
                self.sv, n_dec, ctx * CTX_BUCKET, a * n_pre, prompt * CTX_BUCKET) / a
        return t


def iteration_cost(sv: sv_mod._Serve, budget: int, max_seqs: int) -> IterationCost:
    """The analytic iteration cost of a deployment: SpeculativeCost when it decodes speculatively,
    else AnalyticCost (the simulator's default cost factory)."""
    if sv.spec.speculative is not None:
        return SpeculativeCost(sv, budget, max_seqs)
    return AnalyticCost(sv, budget, max_seqs)


# Filled cost tables shared between simulations of one deployment in a process (fleet sizing runs a
# dozen simulations of one layout that differ only in the replica count, and filling the tables is
# most of a short simulation's time). A deployment is its model and hardware (the same objects), its
# serving spec and admission limits; the replica count dp is left out of the key when ep == 1, where
# a replica's iteration cost does not depend on how many replicas there are (with ep > 1, dp is the
# attention-data-parallel group the cost model balances, so it stays in the key). Tables are adopted
# only when the direct evaluations of the check shapes are bitwise equal to the stored ones, so a
# cost model that came to depend on dp would not share them: the numbers are those of fresh tables.
_SHARED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_SHARED_LOCK = threading.Lock()


def _share_key(sv: sv_mod._Serve, budget: int, max_seqs: int) -> tuple[Any, ...]:
    spec = sv.spec if sv.spec.ep > 1 else dataclasses.replace(sv.spec, dp=1)
    return id(sv.model), id(sv.hw), spec, budget, max_seqs


def _adopt(cost: AnalyticCost, sv: sv_mod._Serve, budget: int, max_seqs: int, direct: list[float]) -> bool:
    """Take the shared tables of the same deployment when its check evaluations are bitwise equal."""
    with _SHARED_LOCK:
        entry = _SHARED.get(_share_key(sv, budget, max_seqs))
    if entry is None:
        return False
    model, hw, stored, tables = entry
    if model is not sv.model or hw is not sv.hw or stored != direct:
        return False
    cost.memo, cost.base, cost.dec, cost.pre, cost.head, cost.separable = tables
    return True


def _keep(cost: AnalyticCost, sv: sv_mod._Serve, budget: int, max_seqs: int, direct: list[float]) -> None:
    """Share the (still filling) tables of `cost` with later simulations of its deployment."""
    with _SHARED_LOCK:
        if len(_SHARED) >= SHARED_TABLES:
            del _SHARED[next(iter(_SHARED))]
        _SHARED[_share_key(sv, budget, max_seqs)] = (
            sv.model, sv.hw, direct, (cost.memo, cost.base, cost.dec, cost.pre, cost.head, cost.separable))
