"""The pipeline schedule: micro-batches in flight per rank, the pipelined step with its bubble (both
from flopcast.estimate.pipeline's simulated timeline), and the point-to-point traffic between
stages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flopcast.estimate import comm, pipeline
from flopcast.estimate.training.constants import ACT_BYTES
from flopcast.estimate.training.stage import StageTimes
from flopcast.specs.parallel import ParallelPlan


def schedule_name(plan: ParallelPlan) -> str:
    """The simulator's schedule for a plan: 1f1b (and interleaved) is interleaved exactly when vpp > 1;
    one stage runs 1f1b (no pipeline)."""
    if plan.pp <= 1:
        return "1f1b"
    if plan.pp_schedule in ("1f1b", "interleaved"):
        return "interleaved" if plan.vpp > 1 else "1f1b"
    return plan.pp_schedule


def pipeline_refusal(plan: ParallelPlan, m: int) -> str | None:
    """Why the plan's schedule cannot run m micro-batches (the published constraints), or None."""
    if plan.pp <= 1:
        return None
    return pipeline.refusal(schedule_name(plan), plan.pp, plan.vpp, m)


@lru_cache(maxsize=4096)
def _uniform_inflight(schedule: str, pp: int, vpp: int, m: int) -> tuple[float, ...]:
    if pipeline.refusal(schedule, pp, vpp, m):
        schedule, vpp = "1f1b", 1          # a refused plan does not run; its memory is 1F1B's
    m = min(m, _steady_m(schedule, pp))   # the peaks are reached within the warm-up
    return pipeline.peak_inflight(schedule, pp, vpp, m)   # the simulated timeline's, without timing


def inflight_microbatches(plan: ParallelPlan, m: int, rank: int) -> float:
    """Micro-batches whose activations rank `rank` holds at its peak: the most chunks between their
    forward and their backward-for-input on the simulated timeline of the plan's schedule (stages of
    equal F, B and W: the orders fix the counts, except where zero bubble W fill moves), over the
    rank's chunks per micro-batch. 1F1B: min(m, pp - rank); interleaved rank 0: 2(p - 1) + (v - 1)p
    + 1 chunks (Korthikanti et al. 2022, sec. 4.2.3), at most all m v; DualPipe pp + 1 (DeepSeek-V3
    report, Table 2)."""
    if plan.pp <= 1:
        return 1.0
    return _uniform_inflight(schedule_name(plan), plan.pp, plan.vpp, m)[rank]


def stage_fbw(st: StageTimes) -> tuple[float, float, float]:
    """One micro-batch on a stage as forward, backward-for-input and backward-for-weights times: the
    stage's exposed total split as its forward and backward compute windows, with the weight-gradient
    GEMMs (a third of all GEMM time: forward, input-gradient and weight-gradient GEMMs have equal
    FLOPs) as W."""
    total = st.total_s
    windows = st.fwd_s + st.bwd_s
    f = total * st.fwd_s / windows if windows > 0 else total / 3
    w = min(st.parts_s.get("gemm", 0.0) / 3, total - f)
    return f, total - f - w, w


@dataclass(frozen=True, slots=True)
class PipelineTimes:
    """The pipelined part of a step (every micro-batch's stage work and transfers, with the bubble),
    per rank its busy (stage work), transfer and idle time, and the simulator's inputs (each rank's
    F, B, W of one micro-batch, a transfer) to draw the timeline again."""

    schedule: str
    pp: int
    vpp: int
    m: int
    step_s: float
    busy_s: tuple[float, ...]
    p2p_s: tuple[float, ...]
    idle_s: tuple[float, ...]
    fbw_s: tuple[tuple[float, float, float], ...]
    transfer_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "pipelined_s": self.step_s,
                "ranks": [{"rank": r, "busy_s": self.busy_s[r], "p2p_s": self.p2p_s[r], "bubble_s": self.idle_s[r]}
                          for r in range(self.pp)]}

    def events(self) -> tuple[pipeline.Event, ...]:
        """Every chunk of the simulated step, with the exact stage times (for the Gantt chart)."""
        split = _split_w(self.schedule)
        f = [x[0] for x in self.fbw_s]
        b = [x[1] if split else x[1] + x[2] for x in self.fbw_s]
        w = [x[2] if split else 0.0 for x in self.fbw_s]
        return pipeline.simulate(self.schedule, self.pp, self.vpp, self.m, f, b, w, self.transfer_s,
                                 events=True).events


_GRID = 16      # the cached timeline's stage times: 16ths of the slowest stage's


def _period(schedule: str, pp: int) -> int:
    """Micro-batches a schedule's order repeats over in its steady state."""
    return pp if schedule == "interleaved" else 2 if schedule == "dualpipe" else 1


def _steady_m(schedule: str, pp: int) -> int:
    """A micro-batch count past every schedule's warm-up (2 pp, a whole number of periods)."""
    q = _period(schedule, pp)
    return -(-2 * pp // q) * q


@lru_cache(maxsize=1 << 16)
def _simulated(schedule: str, pp: int, vpp: int, m: int, f: tuple[float, ...], b: tuple[float, ...],
               w: tuple[float, ...], p2p: float) -> pipeline.Timeline:
    return pipeline.simulate(schedule, pp, vpp, m, f, b, w, p2p)


@lru_cache(maxsize=1 << 16)
def _steady(schedule: str, pp: int, vpp: int, f: tuple[float, ...], b: tuple[float, ...], w: tuple[float, ...],
            p2p: float) -> tuple[pipeline.Timeline, pipeline.Timeline] | None:
    """The timelines of m1 and m1 + q micro-batches (q: the period), if one more period adds exactly
    q times the busiest rank's micro-batch (the steady state, where that rank never waits)."""
    q = _period(schedule, pp)
    m1 = _steady_m(schedule, pp)
    t1 = pipeline.simulate(schedule, pp, vpp, m1, f, b, w, p2p)
    t2 = pipeline.simulate(schedule, pp, vpp, m1 + q, f, b, w, p2p)
    n = pipeline.chunks_per_rank(schedule, vpp)
    busiest = max(f[r] + b[r] + w[r] for r in range(pp)) + 2 * n * p2p
    return (t1, t2) if abs(t2.step_s - t1.step_s - q * busiest) <= 1e-9 * t2.step_s else None


def _timeline(schedule: str, pp: int, vpp: int, m: int, f: tuple[float, ...], b: tuple[float, ...],
              w: tuple[float, ...], p2p: float) -> pipeline.Timeline:
    """The timeline of m micro-batches; past the warm-up and in the steady state (see _steady), the
    step and its critical path grow linearly in m from two shorter ones, shared by every m."""
    q = _period(schedule, pp)
    m1 = _steady_m(schedule, pp)
    steady = _steady(schedule, pp, vpp, f, b, w, p2p) if m > m1 + 2 * q else None
    if steady is None:
        return _simulated(schedule, pp, vpp, m, f, b, w, p2p)
    t1, t2 = steady
    k = (m - m1) / q

    def grow(a: tuple[float, ...], c: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(x + k * (y - x) for x, y in zip(a, c, strict=True))

    return pipeline.Timeline(t1.step_s + k * (t2.step_s - t1.step_s), t2.peak_inflight, grow(t1.path_f, t2.path_f),
                             grow(t1.path_b, t2.path_b), grow(t1.path_w, t2.path_w),
                             round(t1.path_sends + k * (t2.path_sends - t1.path_sends)))


def _split_w(schedule: str) -> bool:
    return schedule in ("zero_bubble", "zb_h2", "dualpipe", "dualpipev")


def pipeline_times(plan: ParallelPlan, m: int, per_stage: Sequence[StageTimes], p2p_s: float) -> PipelineTimes:
    """Simulate the plan's schedule over m micro-batches with each rank's own F, B, W times and p2p_s a
    transfer. The timeline is cached in units of the slowest rank's micro-batch time, rounded to
    16ths; its critical path (counts of each rank's F, B, W and of transfers) is then summed
    with the exact times. Raises ValueError for a schedule pipeline_refusal refuses."""
    schedule = schedule_name(plan)
    pp = plan.pp
    fbw = [stage_fbw(st) for st in per_stage]
    n = pipeline.chunks_per_rank(schedule, plan.vpp)
    busy = tuple(m * st.total_s for st in per_stage)
    p2p = (2 * m * n * p2p_s if pp > 1 else 0.0,) * pp
    args = (schedule, pp, plan.vpp, m)
    if pp <= 1:
        return PipelineTimes(*args, busy[0], busy, p2p, (0.0,), tuple(fbw), 0.0)
    scale = max(busy) / m or 1.0
    split = _split_w(schedule)
    key_f = tuple(round(f / scale * _GRID) for f, _, _ in fbw)
    key_b = tuple(round((b if split else b + w) / scale * _GRID) for _, b, w in fbw)
    key_w = tuple(round(w / scale * _GRID) for _, _, w in fbw) if split else (0,) * pp
    t = _timeline(schedule, pp, plan.vpp, m, key_f, key_b, key_w, round(p2p_s / scale * _GRID))
    step = t.path_sends * p2p_s + sum(t.path_f[r] * fbw[r][0] + t.path_b[r] * fbw[r][1] + t.path_w[r] * fbw[r][2]
                                      for r in range(pp))
    step = max(step, max(busy) + p2p[0])
    return PipelineTimes(*args, step, busy, p2p, tuple(step - busy[r] - p2p[r] for r in range(pp)), tuple(fbw),
                         p2p_s)


def pp_comm_per_microbatch_s(plan: ParallelPlan, mb_tokens: float, hidden: int, links: comm.Links,
                             devices_per_node: int) -> float:
    """Pipeline point-to-point: activations (scatter/gather over tp) forward and gradients backward,
    once per virtual stage boundary; neighbouring stages share a node only if the whole pipeline
    fits in one."""
    if plan.pp <= 1:
        return 0.0
    inside = plan.num_devices <= devices_per_node
    msg = mb_tokens * hidden * ACT_BYTES / plan.tp
    return 2 * plan.vpp * comm.p2p_s(msg, links, inside)
