"""A discrete-event pipeline-schedule simulator: each rank runs its schedule's fixed order of forward
(F), backward-for-input (B) and backward-for-weights (W) chunks; a chunk starts when the rank is free
and its input is there (F after the previous stage's F of that micro-batch, B after the next stage's B,
or after this stage's F on the last stage). One timeline gives the step, each rank's busy time, idle
time (the bubble), point-to-point time and its peak count of micro-batches whose activations it holds.

Schedules and the orders they run (published constraints refused by `refusal`):
- gpipe: every forward, then every backward (Huang et al. 2019).
- 1f1b: pp - r - 1 warm-up forwards on rank r, then one forward and one backward alternately
  (Narayanan et al. SC'21; Megatron-LM `forward_backward_pipelining_without_interleaving`).
- interleaved: vpp model chunks per rank, virtual stage c*pp + r on rank r, micro-batches in groups of
  pp per chunk, 2(pp - r - 1) + (vpp - 1) pp warm-up chunks, at most all of them (Megatron-Core
  `forward_backward_pipelining_with_interleaving`; Megatron-LM's older versions ran all of them on
  every rank when m = pp, and raise unless m % pp == 0).
- zero_bubble (ZB-H1) and zb_h2: the 1F1B order of F and B with W split off; a W runs in an idle gap it
  fits in, before a forward that would exceed the activation limit (pp micro-batches on every rank for
  ZB-H1, 1F1B's peak; 2 pp - 1 for ZB-H2, whose warm-up is 2(pp - r - 1) forwards), and at the end (Qi et al., "Zero
  Bubble Pipeline Parallelism", ICLR 2024, sec. 3). ZB-H2's optimizer post-validation is left out.
- dualpipe: two pipelines in opposite directions, half the micro-batches each, rank r runs stage r of
  one and stage pp-1-r of the other; the eight phases of `DualPipe.step` in deepseek-ai/DualPipe
  (dualpipe/dualpipe.py), with overlapped forward-backward chunks as one chunk that starts when both
  inputs are there; asserts pp even, m even and m >= 2 pp.
- dualpipev: the V-shaped "cut-in-half" DualPipe (deepseek-ai/DualPipe dualpipe/dualpipev.py): 2 pp
  stages on pp ranks, rank r holds stages r and 2pp-1-r; asserts m >= 2 pp.

Point-to-point transfers are charged to the sending chunk (each F and B chunk occupies its rank for its
compute plus one transfer), as the estimator always has; W chunks send nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zero_bubble", "zb_h2", "dualpipe", "dualpipev")
F, B, BI, W, FB = 0, 1, 2, 3, 4          # chunk kinds: forward, full backward, input-only backward, weights, fused
KIND_NAMES = ("F", "B", "B", "W", "FB")

Item = tuple[int, int, int]              # (kind, key, key of the fused backward or -1)


def chunks_per_rank(schedule: str, vpp: int) -> int:
    """Model chunks each rank holds: vpp interleaved, 2 for DualPipeV, 1 otherwise."""
    return vpp if schedule == "interleaved" else 2 if schedule == "dualpipev" else 1


def refusal(schedule: str, pp: int, vpp: int, m: int) -> str | None:
    """Why `schedule` cannot run pp ranks (vpp chunks each) over m micro-batches, or None."""
    if schedule not in SCHEDULES:
        return f"unknown pipeline schedule {schedule!r}; known: {', '.join(SCHEDULES)}"
    if m < 1:
        return f"{m} micro-batches: a step needs at least one"
    if schedule == "interleaved" and m % pp:
        return (f"interleaved 1F1B runs micro-batches in groups of pp = {pp}; {m} micro-batches is not a "
                f"multiple (Megatron-LM forward_backward_pipelining_with_interleaving)")
    if schedule == "dualpipe" and (pp % 2 or m % 2 or m < 2 * pp):
        return (f"DualPipe needs an even pp and an even number of micro-batches >= 2 pp = {2 * pp}; "
                f"got pp {pp}, {m} micro-batches (deepseek-ai/DualPipe, DualPipe.step)")
    if schedule == "dualpipev" and m < 2 * pp:
        return (f"DualPipeV needs at least 2 pp = {2 * pp} micro-batches, got {m} "
                f"(deepseek-ai/DualPipe, DualPipeV.step)")
    return None


# --------------------------------------------------------------------------- orders
@dataclass(frozen=True, slots=True)
class Shape:
    """The chain of stages a micro-batch passes: `pipes` independent pipelines of `stages` stages,
    `mbs` micro-batches in each, and the rank of every (pipe, stage)."""

    pipes: int
    stages: int
    mbs: int
    rank_of: tuple[tuple[int, ...], ...]

    def key(self, pipe: int, stage: int, mb: int) -> int:
        return (pipe * self.stages + stage) * self.mbs + mb


def _linear_orders(pp: int, m: int, warmup: Sequence[int], backward: int) -> list[list[Item]]:
    """1F1B-shaped orders: warmup[r] forwards, then forward and backward alternately, then backwards."""
    out = []
    for r in range(pp):
        w = min(warmup[r], m)
        order: list[Item] = [(F, r * m + i, -1) for i in range(w)]
        for i in range(m - w):
            order += [(F, r * m + w + i, -1), (backward, r * m + i, -1)]
        order += [(backward, r * m + i, -1) for i in range(m - w, m)]
        out.append(order)
    return out


def _interleaved_orders(pp: int, vpp: int, m: int) -> list[list[Item]]:
    total = m * vpp

    def seq(k: int, reverse: bool) -> tuple[int, int]:
        group, within = divmod(k, pp * vpp)
        chunk = within // pp
        return (vpp - 1 - chunk if reverse else chunk), group * pp + within % pp

    out = []
    for r in range(pp):
        w = min(2 * (pp - r - 1) + (vpp - 1) * pp, total)
        fk = [(c * pp + r) * m + mb for c, mb in (seq(k, False) for k in range(total))]
        bk = [(c * pp + r) * m + mb for c, mb in (seq(k, True) for k in range(total))]
        order: list[Item] = [(F, k, -1) for k in fk[:w]]
        for i in range(total - w):
            order += [(F, fk[w + i], -1), (B, bk[i], -1)]
        order += [(B, k, -1) for k in bk[total - w:]]
        out.append(order)
    return out


class _Phases:
    """The chunk calls of DualPipe.step / DualPipeV.step on one rank, as order items."""

    def __init__(self, shape: Shape, where: tuple[tuple[int, int], tuple[int, int]]):
        self.shape, self.where = shape, where            # (pipe, stage) of phase 0 and phase 1
        self.nf, self.nb = [0, 0], [0, 0]
        self.order: list[Item] = []

    def _key(self, phase: int, counter: list[int]) -> int:
        pipe, stage = self.where[phase]
        k = self.shape.key(pipe, stage, counter[phase])
        counter[phase] += 1
        return k

    def f(self, phase: int) -> None:
        self.order.append((F, self._key(phase, self.nf), -1))

    def b(self, phase: int, zb: bool = False) -> None:
        self.order.append((BI if zb else B, self._key(phase, self.nb), -1))

    def w(self) -> None:
        self.order.append((W, -1, -1))

    def fb(self, phase0: int, phase1: int) -> None:
        self.order.append((FB, self._key(phase0, self.nf), self._key(phase1, self.nb)))


def _dual_orders(shape: Shape, n: int, chunks: int, v_shape: bool) -> list[list[Item]]:
    """The eight phases of DualPipe.step (n ranks seen as halves, `chunks` micro-batches per
    direction) or DualPipeV.step (n ranks, `chunks` micro-batches); `half` is the rank's position."""
    out = []
    ranks = n if v_shape else 2 * n
    for r in range(ranks):
        half = r if v_shape else min(r, ranks - 1 - r)
        if v_shape:
            where = ((0, r), (0, 2 * n - 1 - r))
        else:
            first, second = (0, r), (1, ranks - 1 - r)
            where = (first, second) if r < n else (second, first)
        ph = _Phases(shape, where)
        middle = half == n - 1
        for _ in range(2 * (n - half - 1)):
            ph.f(0)
        for _ in range(half + 1):
            ph.f(0)
            ph.f(1)
        for _ in range(n - half - 1):
            ph.b(1, zb=True)
            ph.w()
            ph.f(1)
        for i in range(chunks - 2 * n + half + 1):
            if i == 0 and middle:
                ph.f(0)
                ph.b(1)
            else:
                ph.fb(0, 1)
            ph.fb(1, 0)
        for _ in range(n - half - 1):
            ph.b(1)
            ph.fb(1, 0)
        _dual_tail(ph, n, half)
        out.append(ph.order)
    return out


def _dual_tail(ph: _Phases, n: int, half: int) -> None:
    """Steps 6 to 8 of DualPipe.step: backwards of both phases (the second half with W deferred),
    then the deferred weight chunks."""
    zb = False
    for i in range(half + 1):
        if i == (half + 1) // 2 and half % 2 == 1:
            zb = True
        ph.b(1, zb)
        if i == (half + 1) // 2 and half % 2 == 0:
            zb = True
        ph.b(0, zb)
    for _ in range(n - half - 1):
        ph.w()
        ph.b(0, zb=True)
    for _ in range(half + 1):
        ph.w()


@lru_cache(maxsize=256)
def orders(schedule: str, pp: int, vpp: int, m: int) -> tuple[Shape, tuple[tuple[Item, ...], ...]]:
    """The chain of stages and each rank's order of chunks (refused schedules raise ValueError)."""
    why = refusal(schedule, pp, vpp, m)
    if why:
        raise ValueError(why)
    one_pipe = (tuple(range(pp)),)
    if schedule == "interleaved":
        shape = Shape(1, pp * vpp, m, (tuple(s % pp for s in range(pp * vpp)),))
        return shape, tuple(map(tuple, _interleaved_orders(pp, vpp, m)))
    if schedule == "dualpipe":
        shape = Shape(2, pp, m // 2, (tuple(range(pp)), tuple(range(pp - 1, -1, -1))))
        return shape, tuple(map(tuple, _dual_orders(shape, pp // 2, m // 2, False)))
    if schedule == "dualpipev":
        shape = Shape(1, 2 * pp, m, (tuple(list(range(pp)) + list(range(pp - 1, -1, -1))),))
        return shape, tuple(map(tuple, _dual_orders(shape, pp, m, True)))
    shape = Shape(1, pp, m, one_pipe)
    if schedule == "gpipe":
        return shape, tuple(tuple([(F, r * m + i, -1) for i in range(m)] + [(B, r * m + i, -1) for i in range(m)])
                            for r in range(pp))
    if schedule == "1f1b":
        return shape, tuple(map(tuple, _linear_orders(pp, m, [pp - r - 1 for r in range(pp)], B)))
    h2 = schedule == "zb_h2"
    warm = [2 * (pp - r - 1) if h2 else pp - r - 1 for r in range(pp)]
    return shape, tuple(map(tuple, _linear_orders(pp, m, warm, BI)))


def activation_limit(schedule: str, pp: int, rank: int) -> int | None:
    """The chunks of activations a zero-bubble rank may hold before it must run a W first."""
    if schedule == "zero_bubble":
        return pp
    if schedule == "zb_h2":
        return 2 * pp - 1
    return None


@lru_cache(maxsize=4096)
def peak_inflight(schedule: str, pp: int, vpp: int, m: int) -> tuple[float, ...]:
    """Each rank's peak count of micro-batches whose activations it holds, exactly `simulate`'s
    Timeline.peak_inflight for any stage times: the count moves only along the rank's own order (a
    forward or fused chunk adds one, a backward or the fused chunk's backward half removes one, a W
    chunk neither), so it needs no timing. Over chunks per rank, as the timeline's."""
    _, rank_orders = orders(schedule, pp, vpp, m)
    n = chunks_per_rank(schedule, vpp)
    out = []
    for order in rank_orders:
        live = peak = 0
        for kind, _, _ in order:
            if kind == F or kind == FB:
                live += 1
                peak = max(peak, live)
                if kind == FB:
                    live -= 1
            elif kind != W:
                live -= 1
        out.append(peak / n)
    return tuple(out)


# --------------------------------------------------------------------------- the timeline
@dataclass(frozen=True, slots=True)
class Event:
    """One chunk on one rank: kind F, B (the whole backward), Bi (input only), W or FB (overlapped);
    stage is the (virtual) stage and pipe the direction (DualPipe) it belongs to."""

    rank: int
    kind: str
    mb: int
    stage: int
    pipe: int
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Timeline:
    """One simulated step: its length, per rank the peak number of micro-batches whose activations
    the rank holds (chunks between F and B, over chunks per rank), and the critical path as counts of
    each rank's F, B and W chunks and of transfers along it (so the step of other times with the same
    critical path is their weighted sum)."""

    step_s: float
    peak_inflight: tuple[float, ...]
    path_f: tuple[float, ...]
    path_b: tuple[float, ...]
    path_w: tuple[float, ...]
    path_sends: int
    events: tuple[Event, ...] = ()


_SENDS = (1, 1, 1, 0, 2)


class _Run:
    """The state of one simulation: when and by which chunk every F and B of a (pipe, stage,
    micro-batch) ends, each rank's clock and counters, and each chunk's binding predecessor."""

    def __init__(self, shape: Shape, schedule: str, durations: tuple[Sequence[float], ...], p2p_s: float):
        self.shape, self.p2p_s = shape, p2p_s
        self.f_s, self.b_s, self.w_s = durations
        n = shape.pipes * shape.stages * shape.mbs
        self.f_end, self.b_end = [-1.0] * n, [-1.0] * n
        self.f_idx, self.b_idx = [-1] * n, [-1] * n
        pp = len(self.f_s)
        self.clock, self.last = [0.0] * pp, [-1] * pp
        self.pending, self.held, self.live, self.peak = [0] * pp, [0] * pp, [0] * pp, [0] * pp
        self.limit = [activation_limit(schedule, pp, r) for r in range(pp)]
        self.log: list[tuple[int, int, int, float, float, int]] = []   # rank, kind, key, start, end, pred
        # per rank, each kind's busy time; per kind, its transfers' time (computed once, as _run did)
        self.busy = [(f, b + w, b, w, f + b + w) for f, b, w in zip(self.f_s, self.b_s, self.w_s, strict=True)]
        self.send_s = tuple(k * p2p_s for k in _SENDS)

    def ready(self, kind: int, key: int, key_b: int) -> tuple[float, int]:
        """When the chunk's inputs are there and the chunk that delivers the last one (time -1 if an
        input is not yet scheduled, index -1 if none)."""
        mbs, stages = self.shape.mbs, self.shape.stages
        at, idx = 0.0, -1
        if kind == W:
            return at, idx
        if kind == F or kind == FB:
            if (key // mbs) % stages > 0:
                at, idx = self.f_end[key - mbs], self.f_idx[key - mbs]
            if kind == F or at < 0:
                return at, idx
            key = key_b
        if (key // mbs) % stages < stages - 1:
            dep = key + mbs
            b_at, b_idx = self.b_end[dep], self.b_idx[dep]
        else:
            b_at, b_idx = self.f_end[key], self.f_idx[key]
        if b_at < 0:
            return -1.0, -1
        return (b_at, b_idx) if b_at >= at else (at, idx)

    def _run(self, r: int, kind: int, key: int, ready: tuple[float, int]) -> tuple[float, int]:
        busy = self.busy[r][kind]
        clock = self.clock[r]
        start, pred = ready if ready[0] > clock else (clock, self.last[r])
        end = start + busy + self.send_s[kind]
        self.clock[r] = end
        self.last[r] = len(self.log)
        self.log.append((r, kind, key, start, end, pred))
        return end, self.last[r]

    def weight(self, r: int) -> None:
        self._run(r, W, -1, (0.0, -1))
        self.pending[r] -= 1
        self.held[r] -= 1

    def fill(self, r: int, kind: int, ready_s: float) -> None:
        """Zero-bubble W placement: forced before a forward past the activation limit, then in the
        idle gap before the chunk where a whole W fits."""
        limit = self.limit[r]
        if limit is None:
            return
        while kind == F and self.pending[r] and self.held[r] >= limit:
            self.weight(r)
        while self.pending[r] and self.clock[r] + self.w_s[r] <= ready_s:
            self.weight(r)

    def chunk(self, r: int, kind: int, key: int, key_b: int, ready: tuple[float, int]) -> None:
        if kind == W:
            self.weight(r)
            return
        if self.limit[r] is not None:
            self.fill(r, kind, ready[0])
        if kind == F or kind == FB:
            self.held[r] += 1
            self.live[r] += 1
            self.peak[r] = max(self.peak[r], self.live[r])
        end, idx = self._run(r, kind, key, ready)
        if kind == F or kind == FB:
            self.f_end[key], self.f_idx[key] = end, idx
        if kind == FB:
            key = key_b
        if kind != F:
            self.b_end[key], self.b_idx[key] = end, idx
            self.live[r] -= 1
            if kind == BI:
                self.pending[r] += 1
            else:
                self.held[r] -= 1


def _drive(run: _Run, rank_orders: tuple[tuple[Item, ...], ...], label: str) -> None:
    """Advance every rank through its order while its next chunk's inputs are scheduled."""
    pp = len(rank_orders)
    pos = [0] * pp
    left = sum(len(o) for o in rank_orders)
    ready_of, chunk = run.ready, run.chunk
    while left:
        progress = False
        for r in range(pp):
            order = rank_orders[r]
            i, n = pos[r], len(order)
            while i < n:
                kind, key, key_b = order[i]
                ready = ready_of(kind, key, key_b)
                if ready[0] < 0:
                    break
                chunk(r, kind, key, key_b, ready)
                i += 1
            if i > pos[r]:
                left -= i - pos[r]
                pos[r] = i
                progress = True
        if not progress:
            raise RuntimeError(f"pipeline simulator: {label} deadlocked")
    for r in range(pp):
        while run.pending[r]:
            run.weight(r)


def _events(run: _Run) -> tuple[Event, ...]:
    shape = run.shape
    out = []
    for r, kind, key, start, end, _ in run.log:
        mb, stage, pipe = -1, -1, -1
        if key >= 0:
            pipe, rest = divmod(key, shape.stages * shape.mbs)
            stage, mb = divmod(rest, shape.mbs)
        out.append(Event(r, ("F", "B", "Bi", "W", "FB")[kind], mb, stage, pipe, start, end))
    return tuple(sorted(out, key=lambda e: (e.rank, e.start_s)))


def simulate(schedule: str, pp: int, vpp: int, m: int, f_s: Sequence[float], b_s: Sequence[float],
             w_s: Sequence[float], p2p_s: float, *, events: bool = False) -> Timeline:
    """Run one step. f_s, b_s, w_s: each rank's forward, backward-for-input and backward-for-weights
    time of one micro-batch over all its chunks (a chunk takes 1/chunks_per_rank of it); p2p_s: one
    transfer between stages. Raises ValueError for a schedule `refusal` refuses."""
    shape, rank_orders = orders(schedule, pp, vpp, m)
    n = chunks_per_rank(schedule, vpp)
    run = _Run(shape, schedule, tuple([x / n for x in d] for d in (f_s, b_s, w_s)), p2p_s)
    _drive(run, rank_orders, f"{schedule} (pp {pp}, vpp {vpp}, m {m})")
    path = [[0.0] * pp for _ in range(3)]
    sends = 0
    i = max(range(len(run.log)), key=lambda j: run.log[j][4])
    step = run.log[i][4]
    while i >= 0:
        r, kind, _, _, _, pred = run.log[i]
        for part, count in zip(path, ((1, 0, 0), (0, 1, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1))[kind], strict=True):
            part[r] += count / n
        sends += _SENDS[kind]
        i = pred
    return Timeline(step, tuple(k / n for k in run.peak), tuple(path[0]), tuple(path[1]), tuple(path[2]),
                    sends, _events(run) if events else ())
