"""Which layers each pipeline rank holds: the default split, an explicit `pipeline_layout`, or the
balanced one that evens out the stages' work."""

from __future__ import annotations

from collections.abc import Sequence

from flopcast.specs.parallel import ParallelPlan


def stage_layer_counts(num_layers: int, chunks: int) -> list[int]:
    """The default split of layers over virtual stages: even where it divides; else the remainder
    goes to the middle stages, so that the first and last stages, which also hold the embedding and
    the loss, get fewer (Llama 3.1 405B: 126 layers over 16 stages = 7, 8 x 14, 7, as Meta ran it)."""
    base, extra = divmod(num_layers, chunks)
    counts = [base] * chunks
    if extra:
        first = (chunks - extra) // 2
        for i in range(first, first + extra):
            counts[i] += 1
    return counts


def _fill(work_s: Sequence[float], chunks: int, first_extra_s: float, last_extra_s: float,
          bound: float) -> list[int] | None:
    """Layers per stage filled greedily up to `bound`, or None where the bound is too tight. When
    there are at least as many layers as stages, every stage keeps at least one layer: a stage stops
    taking layers where the rest are needed one each by the stages after it, and a stage that cannot
    take its one layer within the bound makes the bound infeasible."""
    n = len(work_s)
    nonempty = n >= chunks
    counts, i = [], 0
    for c in range(chunks):
        load = first_extra_s if c == 0 else 0.0
        last = c == chunks - 1
        stop = n - (chunks - 1 - c) if nonempty else n      # layers this stage may reach up to
        k = 0
        while i < stop and (last or load + work_s[i] <= bound):
            load += work_s[i]
            i += 1
            k += 1
        if (nonempty and k == 0) or (last and load + last_extra_s > bound):
            return None
        counts.append(k)
    return counts if i == n else None


def balanced_layer_counts(work_s: list[float], chunks: int, first_extra_s: float, last_extra_s: float) -> list[int]:
    """Contiguous layers per virtual stage minimising the largest stage's work, the first stage also
    doing `first_extra_s` (embedding) and the last `last_extra_s` (head, loss, MTP modules): the
    smallest feasible bound by bisection, each stage filled greedily up to it. No stage is left
    empty when there are at least as many layers as stages."""
    lo = max(first_extra_s, last_extra_s, max(work_s, default=0.0))
    hi = first_extra_s + last_extra_s + sum(work_s)
    for _ in range(60):
        mid = (lo + hi) / 2
        if _fill(work_s, chunks, first_extra_s, last_extra_s, mid) is None:
            lo = mid
        else:
            hi = mid
    return _fill(work_s, chunks, first_extra_s, last_extra_s, hi) or stage_layer_counts(len(work_s), chunks)


def layer_counts(plan: ParallelPlan, num_layers: int, balance: tuple[list[float], float, float] | None) -> list[int]:
    """Layers per virtual stage from parallel.pipeline_layout or the default split; `balance` =
    (per-layer work, first-stage extra, last-stage extra) for pipeline_layout: balanced."""
    chunks = plan.pp * plan.vpp
    if isinstance(plan.pipeline_layout, tuple):
        return list(plan.pipeline_layout)
    if plan.pipeline_layout == "balanced" and balance is not None:
        return balanced_layer_counts(balance[0], chunks, balance[1], balance[2])
    return stage_layer_counts(num_layers, chunks)


def rank_layers(sizes: Sequence[int], pp: int) -> list[list[int]]:
    """Layer indices held by each pipeline rank: virtual stage c runs on rank c mod pp (interleaved
    chunks when there are more stages than ranks)."""
    bounds, start = [], 0
    for n in sizes:
        bounds.append(range(start, start + n))
        start += n
    return [[i for c in range(rank, len(sizes), pp) for i in bounds[c]] for rank in range(pp)]
