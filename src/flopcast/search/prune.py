"""The search's evaluation of one task with pruning: every plan is sized (memory, verdict), every
fitting plan gets a cheap lower bound on its step time, and only the plans the bound cannot rule
out are timed (the pipeline schedule simulated), lowest bound first. This module holds the queue's
rules (`Fastest`, `Front`, `_ruled_out`); search/vector.py runs the queue over blocks of plans
sized as arrays.

A fitting plan is skipped, never timed, when its lower bound proves that it is in none of what the
task returns (search.evaluate_groups):
- not among the `top` fastest fitting plans, nor (with the default headroom) among the `top`
  fastest roomy ones: its bound exceeds the `top`-th fastest step already timed (of roomy plans
  for a roomy plan; the plans timed later can only lower that threshold), and
- not on the Pareto front (step time vs memory): a plan already timed is faster than its bound
  and needs no more memory (then that plan, or one on the front that dominates it, excludes it
  from the front whatever its exact step time; search.pareto keeps a plan only if no faster or
  equally fast plan with a smaller sort key needs as little memory).
The bound (estimate.training.step.step_lower_bound_s) is the busiest rank's work with its
transfers (the cheap bound every fitting plan gets) plus what the step adds after the pipelined
part (the plans the cheap bound does not rule out, in the order of their cheap bound); plans are
timed in the order of their whole bound (a best-first queue); the exact
step equals it up to rounding when the bubble is zero, so it is compared with a relative margin
of ROUNDING_FRAC.
The plans counted (evaluated, fitting) are exactly those of the exhaustive pass: every plan is
still sized.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right

# relative margin for rounding between the bound's sum and the step's (both sums of the same
# positive terms in another order: a few ulps apart; the margin is a million times that)
ROUNDING_FRAC = 1e-9

Key = tuple[float, float, int, int]


class Front:
    """The non-dominated (step time, memory) points timed so far: steps ascending, memory strictly
    descending."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.mems: list[float] = []

    def dominated(self, step_s: float, memory_bytes: float) -> bool:
        """Whether a point strictly faster than `step_s` needs at most `memory_bytes`."""
        i = bisect_left(self.steps, step_s) - 1
        return i >= 0 and self.mems[i] <= memory_bytes

    def add(self, step_s: float, memory_bytes: float) -> None:
        j = bisect_right(self.steps, step_s) - 1
        if j >= 0 and self.mems[j] <= memory_bytes:
            return
        i = bisect_left(self.steps, step_s)
        k = i
        while k < len(self.steps) and self.mems[k] >= memory_bytes:
            k += 1
        self.steps[i:k] = [step_s]
        self.mems[i:k] = [memory_bytes]


class Fastest:
    """The `top` fastest step times seen; `threshold_s` is the `top`-th (inf until there are `top`)."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.heap: list[float] = []     # negated steps

    @property
    def threshold_s(self) -> float:
        return -self.heap[0] if len(self.heap) >= self.top else float("inf")

    def add(self, step_s: float) -> None:
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, -step_s)
        elif step_s < -self.heap[0]:
            heapq.heapreplace(self.heap, -step_s)


def _ruled_out(bound_s: float, memory_bytes: float, fastest: Fastest, front: Front) -> bool:
    """Whether a plan whose step is at least `bound_s` (to rounding) is neither among the fastest
    (`fastest`: of all plans, or of roomy plans for a roomy one) nor on the Pareto front."""
    low_s = bound_s * (1 - ROUNDING_FRAC)
    return low_s > fastest.threshold_s and front.dominated(low_s, memory_bytes)
