"""Discrete-event simulation of a serving fleet: requests arrive, replicas run engine iterations,
every iteration's duration comes from the analytic serving model (estimate/serving.py), so the
simulator and the estimator share one cost model and can be checked against each other (at low load
the simulated TTFT is the analytic unloaded prefill time; at saturation the simulated throughput is
the analytic steady state).

Replicas come in pools (`PoolSpec`): each pool has its own hardware and layout (tp x pp devices per
replica, its engine, dtypes and limits) and so its own prepared serving model. A colocated run has
one pool; a disaggregated run a prefill pool and a decode pool. A router sends each new request to
the replica of the entry pool with the fewest outstanding requests. A replica holds a paged KV cache
(the bytes estimate_serving leaves free, pages of block_size tokens per layer) and runs one iteration
at a time; requests that arrive during an iteration join at the next one. Schedulers:

- static: a batch of up to batch_size waiting requests whose whole sequences fit is prefilled (in
  chunks of the token budget), then decoded together until its longest output is done (finished
  sequences keep their slot: padding); only then is the next batch formed.
- vllm: continuous batching with prefill priority (vLLM v0): an iteration either prefills whole new
  prompts (up to the token budget, FIFO, if their KV pages fit) or decodes every running sequence.
- sarathi: continuous batching with chunked prefill (Sarathi-Serve, vLLM v1, TensorRT-LLM in-flight
  batching): every iteration decodes every running sequence and fills the rest of the token budget
  with prompt chunks, oldest first.
- disaggregated: prefill replicas run prefill-only iterations; each prompt's KV cache then moves to
  the decode replica with the fewest outstanding requests (`kv_transfer_s`), which decodes
  continuously. The first token is computed by the prefill replica and reaches the client with the
  KV cache, through the decode replica (SGLang, Dynamo and vLLM's P/D connectors stream the output
  from the decode instance), so TTFT includes the transfer.
When the KV cache cannot hold the next token of every running sequence, the newest sequence is
preempted and later recomputed (its prompt plus the tokens generated so far are prefilled again),
as vLLM does. Requests whose whole sequence can never fit one replica are rejected.

The concurrency limit per replica is batch_size, or the token budget when batch_size is `max`.

Event order (total and deterministic): the simulation advances instant by instant. At one instant it
takes (1) every arrival at that time, in arrival order, each routed as it comes; then (2) every
engine event due at that time (`end` of an iteration, `kv_ready`, `kv_sent`) in the order they were
scheduled (the heap key is (time_s, seq) with a per-simulation counter); and only then (3) each idle
replica touched at that instant starts its next iteration, in replica order. So requests that arrive
together, or that arrive just as an iteration ends, join one iteration; none is served first merely
because of tie order. `simulate(..., trace=[])` records the events in this order for tests.

How it stays fast (work per iteration independent of the batch). Decoding sequences advance in
lockstep: every decode iteration of a replica gives each of its decoding sequences one token. So a
replica counts its decode iterations (`step`) and a decoding sequence stores only the offset
`gbase = generated - step` from when it joined; its generated count is `gbase + step`, the
replica's summed decode context is `n_dec * step + sum(input + gbase)` (kept as a running sum), and
the step at which it finishes (`output - gbase`) sits in a heap. Prompts being prefilled form a FIFO
whose completed chunks are always its head. Under vllm's on-demand paging a sequence needs a new page
of a layer group exactly when its next token is 1 mod block_size (within the group's window), so the
pages one decode iteration needs are counts of decoding sequences by (input + gbase) mod block_size,
kept per replica. Iteration times are memoised (see `_Cost`). Per iteration the simulator does O(1)
work plus O(1) per request that joins, finishes or changes phase; per-sequence lists are never scanned.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario
from flopcast.estimate import serving as sv_mod
from flopcast.sim.workload import SLO, WorkloadSpec, generate
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.serving import InferenceSpec

PROGRESS_EVERY = 1024  # instants between progress calls
CTX_BUCKET = 8       # iteration costs are memoised with contexts rounded to 8 tokens (< 0.1% of a cost)
NAN = float("nan")
ROLES = ("both", "prefill", "decode")


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSpec:
    """Identical replicas of one role: their hardware, the layout each runs (`spec`: tp, pp, ep,
    dtypes, engine, limits; its dp is the one the cost model sees, the attention-data-parallel group
    of an EP deployment), how many replicas the pool has, and the per-device scale-out bandwidth the
    KV cache leaves or arrives over (None: the hardware's)."""

    role: str                   # both | prefill | decode
    hw: AcceleratorSpec
    spec: InferenceSpec
    replicas: int
    scale_out_bandwidth_bytes_per_s: float | None = None

    @property
    def devices_per_replica(self) -> int:
        return self.spec.tp * self.spec.pp

    @property
    def num_devices(self) -> int:
        return self.replicas * self.devices_per_replica


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationResult:
    num_requests: int
    num_completed: int
    num_rejected: int
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    e2e_p50_s: float | None
    e2e_p99_s: float | None
    output_tokens_per_s: float
    requests_per_s: float
    slo_attainment_frac: float | None
    goodput_requests_per_s: float | None
    simulated_s: float
    scheduler: str
    num_replicas: int
    num_iterations: int
    num_preemptions: int
    mean_tokens_per_iteration: float
    busy_frac: float                 # share of the simulated time the replicas spend in iterations
    infeasible_reason: str | None
    analytic_max_output_tokens_per_s: float
    num_devices: int = 0
    # per pool: role, hardware, layout, replicas, devices, busy_frac, iterations, analytic maximum
    pools: tuple[dict[str, Any], ...] = ()
    kv_transfer_p50_s: float | None = None     # disaggregated: KV-cache transfer per request
    kv_transfer_p99_s: float | None = None
    datacenter: dict[str, Any] | None = None
    assumptions: tuple[Assumption, ...] = field(default=())
    # per request (arrival order): arrival_s, input_tokens, output_tokens, first_token_s, done_s (NaN when
    # rejected), replica; not part of the JSON report (`flopcast simulate --requests FILE` writes it)
    requests: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.datacenter or {})
        d.update({k: getattr(self, k) for k in self.__slots__ if k not in ("assumptions", "datacenter", "requests")})
        d["pools"] = [dict(p) for p in self.pools]
        d["assumptions"] = [a.to_dict() for a in self.assumptions]
        return d


class _Cost:
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

    def __init__(self, sv, budget: int, max_seqs: int):
        self.sv = sv
        self.memo: dict[tuple, float] = {}
        self.base: dict[int, float] = {}
        self.dec: dict[int, float] = {}
        self.pre: dict[int, tuple[float, float]] = {}
        self.head: dict[int, float] = {}
        s = sv.spec
        self.separable = s.pp == 1 and not (s.two_batch_overlap and s.ep > 1) and self._check(budget, max_seqs)

    def _sum(self, n_dec, ctx, n_pre, prompt, n_sampled) -> float:
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

    def _head(self, n_sampled) -> float:
        t = self.head.get(n_sampled)
        if t is None:
            t = self.head[n_sampled] = self._sum(0, 0, 0, 0, n_sampled) - self._base(0)
        return t

    def _split(self, n_dec, ctx_b, n_pre, prompt_b, n_sampled) -> float:
        t = self._base(n_dec + n_pre)
        if n_dec:
            t += n_dec * self._dec(ctx_b)
        if n_pre:
            slope, launch = self._pre(prompt_b)
            t += n_pre * slope + launch
        return t + self._head(n_sampled)

    def _check(self, budget: int, max_seqs: int) -> bool:
        rng = random.Random(12)
        cases = [(1, 1, 0, 0, 1), (0, 0, 1, 1, 1), (3, 64, 0, 0, 3), (0, 0, budget, 256, 1)]
        for _ in range(6):
            n = rng.randint(1, max(1, min(max_seqs, 2048)))
            m = rng.randint(1, max(1, budget))
            cases.append((n, rng.randint(1, 2048), m, rng.randint(1, 2048), n + rng.randint(0, 4)))
        for n, c, m, p, s in cases:
            direct = self._sum(n, c * CTX_BUCKET, m, p * CTX_BUCKET, s)
            if not math.isfinite(direct) or abs(self._split(n, c, m, p, s) - direct) > self.CHECK_REL * abs(direct):
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
        # _split, inlined (this runs once per simulated iteration)
        t = self.base.get(n_dec + n_pre)
        if t is None:
            t = self._base(n_dec + n_pre)
        if n_dec:
            d = self.dec.get(ctx)
            t += n_dec * (self._dec(ctx) if d is None else d)
        if n_pre:
            p = self.pre.get(prompt)
            slope, launch = self._pre(prompt) if p is None else p
            t += n_pre * slope + launch
        h = self.head.get(n_sampled)
        return t + (self._head(n_sampled) if h is None else h)


class _Pool:
    """A pool's shared state: its prepared serving model, cost table, limits and KV layout."""

    def __init__(self, model: ModelSpec, ps: PoolSpec, index: int):
        self.ps, self.role, self.index = ps, ps.role, index
        spec, hw = ps.spec, ps.hw
        self.sv = sv_mod.prepare(model, hw, spec)
        self.budget = spec.max_tokens_per_iteration
        self.max_seqs = spec.batch_size or self.budget
        _, _, _, free = sv_mod.memory_split(self.sv)
        self.infeasible_reason = None
        if free <= 0:   # infeasible is a value: every request is rejected, with the reason
            where = "" if ps.role == "both" else f" (the {ps.role} pool)"
            self.infeasible_reason = (
                f"the weights, workspace and reserve leave no memory for a KV cache on {hw.id} at tp {spec.tp}, "
                f"pp {spec.pp}{where}; `flopcast infer` says what would fit")
            free = 0.0
        self.kv_capacity = free
        self.kv_groups = sv_mod.kv_page_groups(self.sv)
        self.block = spec.block_size
        self.cost = _Cost(self.sv, self.budget, self.max_seqs)
        self._kv_memo: dict[int, float] = {}
        # vllm's on-demand pages: layer groups without a window merge into one page size; each
        # windowed group keeps its own (it stops growing past its window)
        glob = [b for b, w in self.kv_groups if not w]
        self.page_groups: list[tuple[float, int | None]] = ([(sum(b for b in glob) * self.block, None)]
                                                            if glob else [])
        self.page_groups += [(b * self.block, w) for b, w in self.kv_groups if w]
        link = ps.scale_out_bandwidth_bytes_per_s or hw.scale_out_bandwidth_bytes_per_s \
            or hw.scale_up_bandwidth_bytes_per_s or 1e9
        self.nic_bytes_per_s = link * self.devices_per_replica
        self.busy_s = 0.0
        self.iterations = 0
        self.tokens = 0.0

    @property
    def devices_per_replica(self) -> int:
        return self.ps.devices_per_replica

    def kv_bytes(self, tokens: int) -> float:
        """KV bytes per device of a sequence of `tokens` tokens in whole pages (memoised)."""
        b = self._kv_memo.get(tokens)
        if b is None:
            b = self._kv_memo[tokens] = sv_mod.kv_bytes_per_sequence(self.sv, tokens, self.kv_groups)
        return b


_LOAD = attrgetter("load")


class _Replica:
    __slots__ = ("id", "pool", "role", "waiting", "n_running", "prefilling", "decoding", "step", "ctx_base",
                 "fin", "busy", "batch", "kv_free", "incoming", "pending", "cnt", "expire", "s_built", "s_order", "s_live",
                 "s_inp", "s_gen", "load")

    def __init__(self, rid: int, pool: _Pool):
        self.id, self.pool, self.role, self.kv_free = rid, pool, pool.role, pool.kv_capacity
        self.waiting: deque[int] = deque()
        self.n_running = 0
        self.prefilling: list[int] = []          # running, prompt not yet built (admission order)
        self.decoding: dict[int, None] = {}      # running, decoding (admission order)
        self.step = 0                            # decode iterations done
        self.ctx_base = 0                        # sum of input + gbase over decoding
        self.fin: list[tuple[int, int, int]] = []   # (finish step, admission, request)
        self.busy = False
        self.batch: list[int] | None = None      # static batching: the batch being served
        self.s_built = 0                         # static: prompts of the batch fully built (a prefix)
        self.s_order: list[tuple[int, int, int]] = []   # static: (output, position, request), shortest first
        self.s_live = 0                          # static: first still-decoding entry of s_order
        self.s_inp = 0                           # static: input tokens of the live sequences
        self.s_gen = 0                           # static: tokens generated by each live sequence
        self.incoming = 0                        # disaggregated: KV caches on their way here
        self.load = 0                            # outstanding requests: waiting + running + incoming
        self.pending: dict[int, None] = {}       # vllm: decoding, first page reservation not yet made
        self.cnt = [[0] * pool.block for _ in pool.page_groups]   # vllm: decoding by (input + gbase) % block
        self.expire: dict[int, list[tuple[int, int, int]]] = {}   # vllm: step -> (request, group, admission)


class _Sim:
    """State of one simulation; `run` drives it."""

    def __init__(self, model: ModelSpec, pools: tuple[PoolSpec, ...], workload: WorkloadSpec, scheduler: str):
        self.model, self.scheduler = model, scheduler
        self.pools = [_Pool(model, ps, i) for i, ps in enumerate(pools)]
        self.vllm = scheduler == "vllm"
        self.static = scheduler == "static"
        # Per-request state in plain lists: the event loop reads and writes single entries, which
        # lists do several times faster than numpy arrays; numpy views are built once at the end.
        self.arrival_arr, self.inp_arr, self.out_arr = generate(workload)
        n = len(self.arrival_arr)
        self.arrival = self.arrival_arr.tolist()
        self.inp = self.inp_arr.tolist()
        self.out = self.out_arr.tolist()
        self.gen = [0] * n                 # tokens generated so far (for a decoding sequence: gbase + step)
        self.gbase = [0] * n
        self.target = [0] * n              # tokens whose KV a (re)admission must build
        self.pre = [0] * n                 # of which built so far
        self.adm = [0] * n                 # admission counter of its current admission
        self.first = [NAN] * n
        self.done = [NAN] * n
        self.rejected = [False] * n
        self.replica_of = [-1] * n
        self.kv_held = [0.0] * n           # bytes of KV held on its current replica (reserved at admission)
        self.kv_groups_of: dict[int, list[int]] = {}   # vllm: the page groups a decoding sequence is counted in
        self.transfer_s = [NAN] * n
        self.replicas: list[_Replica] = []
        for pool in self.pools:
            self.replicas += [_Replica(len(self.replicas) + i, pool) for i in range(pool.ps.replicas)]
        self.by_role = {role: [r for r in self.replicas if r.role == role] for role in ROLES}
        self.entry_role = "prefill" if self.by_role["prefill"] else "both"
        self.infeasible_reason = next((p.infeasible_reason for p in self.pools if p.infeasible_reason), None)
        self.disagg = bool(self.by_role["prefill"])
        if self.disagg:
            pre, dec = self.by_role["prefill"][0].pool, self.by_role["decode"][0].pool
            self.kv_link_bytes_per_s = min(pre.nic_bytes_per_s, dec.nic_bytes_per_s) * _kv_transfer()["bandwidth_frac"]
            self.kv_latency_s = _kv_transfer()["latency_s"]
            self.kv_dtype = dec.ps.spec.kv_dtype
            self._xfer_memo: dict[int, float] = {}
        self.events: list[tuple[float, int, str, int, Any]] = []
        self.seq = 0
        self.adm_seq = 0
        self.iterations = 0
        self.busy_s = 0.0
        self.preemptions = 0
        self.batch_tokens = 0.0
        self.trace: list[tuple[float, str, int, Any]] | None = None
        self.progress = None

    # --- disaggregated KV transfer ------------------------------------------------------------
    def kv_transfer_s(self, tokens: int) -> float:
        """Time to move a prompt's KV cache from its prefill replica to its decode replica: the
        sequence's KV bytes (model-wide, in the decode pool's kv dtype) over the slower side's
        scale-out NICs (tp x pp per replica, the sequence's attention rank) at the measured
        point-to-point efficiency, plus a per-transfer latency (catalog/efficiency.yaml kv_transfer)."""
        t = self._xfer_memo.get(tokens)
        if t is None:
            from flopcast.estimate.counts import kv_cache_bytes_per_sequence

            nbytes = kv_cache_bytes_per_sequence(self.model, tokens, self.kv_dtype)
            t = self._xfer_memo[tokens] = self.kv_latency_s + nbytes / self.kv_link_bytes_per_s
        return t

    # --- events -----------------------------------------------------------------------------
    def push(self, t: float, kind: str, rid: int, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, rid, data))

    def route(self, role: str) -> _Replica:
        """The replica of `role` with the fewest outstanding requests (waiting, running, KV on its way),
        the lowest id on a tie."""
        return min(self.by_role[role], key=_LOAD)

    def _fit_limits(self) -> tuple[float, float]:
        """The longest sequence (input + output) a decode or colocated replica's KV cache can ever hold
        and the longest prompt a prefill replica's can (KV bytes grow with the tokens, so a request fits
        iff it is within both)."""
        from flopcast.specs.limits import MAX_TOKENS_PER_REQUEST

        def longest(pool: _Pool) -> float:
            if pool.kv_bytes(MAX_TOKENS_PER_REQUEST) <= pool.kv_capacity:
                return math.inf
            lo, hi = 0, MAX_TOKENS_PER_REQUEST        # kv(lo) fits (or lo = 0), kv(hi) does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if pool.kv_bytes(mid) <= pool.kv_capacity else (lo, mid)
            return lo

        seq = min((longest(p) for p in self.pools if p.role != "prefill"), default=math.inf)
        prompt = min((longest(p) for p in self.pools if p.role == "prefill"), default=math.inf)
        return seq, prompt

    def run(self) -> float:
        """Advance instant by instant (the event order of the module docstring) to the last event."""
        n = len(self.arrival)
        nxt = 0
        now = 0.0
        entry = self.by_role[self.entry_role]
        single = entry[0] if len(entry) == 1 else None
        route = self.route
        max_seq, max_prompt = self._fit_limits()
        trace, progress = self.trace, self.progress
        arrival, inp, out, target = self.arrival, self.inp, self.out, self.target
        events, replicas, replica_of, first = self.events, self.replicas, self.replica_of, self.first
        steps = 0
        inf = math.inf
        heappop = heapq.heappop
        start = self.start_static if self.static else self.start
        finish = self.finish_static if self.static else self.finish
        entry_role = self.entry_role
        while nxt < n or events:
            steps += 1
            if progress is not None and steps % PROGRESS_EVERY == 0:
                progress(nxt, n)
            a = arrival[nxt] if nxt < n else inf
            e = events[0][0] if events else inf
            now = a if a < e else e
            woken = []                   # replicas that may start an iteration once the instant is processed
            while nxt < n and arrival[nxt] <= now:
                r = nxt
                nxt += 1
                if inp[r] + out[r] > max_seq or inp[r] > max_prompt:    # can never fit: rejected
                    self.rejected[r] = True
                    if trace is not None:
                        trace.append((now, "reject", -1, r))
                    continue
                rep = single or route(entry_role)
                replica_of[r] = rep.id
                target[r] = inp[r]
                rep.waiting.append(r)
                rep.load += 1
                if not rep.busy:        # a busy replica is woken by its own `end` event
                    woken.append(rep.id)
                if trace is not None:
                    trace.append((now, "arrive", rep.id, r))
            while events and events[0][0] <= now:
                _, _, kind, rid, data = heappop(events)
                rep = replicas[rid]
                if trace is not None:
                    trace.append((now, kind, rid, data if kind == "kv_ready" else None))
                if kind == "end":
                    finish(rep, now, data)
                    rep.busy = False
                elif kind == "kv_ready":     # a prefilled request reaches its decode replica: first token out
                    rep.incoming -= 1
                    rep.waiting.append(data)
                    if first[data] != first[data]:
                        first[data] = now
                elif kind == "kv_sent":      # the prefill replica frees the pages it sent
                    rep.kv_free += data
                woken.append(rid)
            if len(woken) > 1:
                woken = sorted(set(woken))
            for rid in woken:
                rep = replicas[rid]
                if not rep.busy:
                    start(rep, now)
        if progress is not None:
            progress(n, n)
        return now

    # --- continuous batching (vllm, sarathi, disaggregated) -------------------------------------
    def _admit(self, rep: _Replica, extra_tokens: int) -> int | None:
        """Admit the oldest waiting request if its pages fit: target + extra tokens (vllm: pages on
        demand, preempting when they run out), or its whole sequence (the others: TensorRT-LLM's
        guaranteed-no-evict policy, which reserves max_tokens at admission); its id or None."""
        pool = rep.pool
        if not rep.waiting or rep.n_running >= pool.max_seqs:
            return None
        r = rep.waiting[0]
        if not self.vllm and rep.role != "prefill":
            extra_tokens = max(extra_tokens, int(self.out[r] - self.gen[r]))
        need = pool.kv_bytes(self.target[r] + extra_tokens)
        if need > rep.kv_free:
            return None
        rep.waiting.popleft()
        rep.n_running += 1
        self.adm_seq += 1
        self.adm[r] = self.adm_seq
        rep.kv_free -= need
        self.kv_held[r] = need
        if rep.role == "decode":    # prefilled elsewhere: straight into decoding
            self.pre[r] = self.target[r]
            self._join_decoding(rep, r)
        else:
            rep.prefilling.append(r)
        return r

    def _join_decoding(self, rep: _Replica, r: int) -> None:
        gb = self.gen[r] - rep.step
        self.gbase[r] = gb
        rep.decoding[r] = None
        rep.ctx_base += self.inp[r] + gb
        heapq.heappush(rep.fin, (self.out[r] - gb, self.adm[r], r))
        if self.vllm:
            rep.pending[r] = None

    def _leave_decoding(self, rep: _Replica, r: int) -> float:
        """Remove decoding sequence r from the replica's aggregates; the KV bytes it held."""
        del rep.decoding[r]
        gb = self.gbase[r]
        rep.ctx_base -= self.inp[r] + gb
        self.gen[r] = gb + rep.step
        if not self.vllm:
            return self.kv_held[r]
        if r in rep.pending:
            del rep.pending[r]
            return self.kv_held[r]
        a = self.inp[r] + gb
        for g in self.kv_groups_of.pop(r):
            rep.cnt[g][a % rep.pool.block] -= 1
        return rep.pool.kv_bytes(a + rep.step)

    def _grow(self, rep: _Replica) -> int:
        """vllm: reserve the next token's pages for every decoding sequence, preempting the newest
        ones (back to the head of the queue, to be recomputed) until they fit; the decoding count."""
        pool, s = rep.pool, rep.step
        block = pool.block
        inp, gbase, kv_held = self.inp, self.gbase, self.kv_held
        for r, g, a in rep.expire.pop(s, ()):      # past a sliding window: no more pages in that group
            groups = self.kv_groups_of.get(r)
            if self.adm[r] == a and r in rep.decoding and groups is not None and g in groups:
                groups.remove(g)
                rep.cnt[g][(inp[r] + gbase[r]) % block] -= 1
        rho = (-s) % block
        while rep.decoding:
            first = {}
            for r in rep.pending:      # first decode step after (re)prefill: from the admission reservation
                held = kv_held[r]
                first[r] = max(pool.kv_bytes(inp[r] + gbase[r] + s + 1), held) - held
            extra = sum(page * rep.cnt[g][rho] for g, (page, _) in enumerate(pool.page_groups)) + sum(first.values())
            if extra <= rep.kv_free:
                rep.kv_free -= extra
                for r in rep.pending:      # from now on, one page per group every block tokens
                    a = inp[r] + gbase[r]
                    kv_held[r] = first[r] + kv_held[r]
                    groups = []
                    for g, (_, w) in enumerate(pool.page_groups):
                        if w is None or a + s + 2 <= w:
                            rep.cnt[g][a % block] += 1
                            groups.append(g)
                            if w is not None:
                                rep.expire.setdefault(w - a, []).append((r, g, self.adm[r]))
                    self.kv_groups_of[r] = groups
                rep.pending.clear()
                return len(rep.decoding)
            victim = next(reversed(rep.decoding))
            rep.kv_free += self._leave_decoding(rep, victim)
            rep.n_running -= 1
            self.kv_held[victim] = 0.0
            self.target[victim] = self.inp[victim] + self.gen[victim]
            self.pre[victim] = 0
            rep.waiting.appendleft(victim)
            self.preemptions += 1
        return 0

    def _prompt_chunks(self, rep: _Replica, left: int) -> list[tuple[int, int]]:
        """Fill `left` tokens with prompt chunks: prompts already started first, then new admissions."""
        chunks = []
        pre, target = self.pre, self.target
        for r in rep.prefilling:
            if left <= 0:
                break
            c = int(min(left, target[r] - pre[r]))
            chunks.append((r, c))
            left -= c
        while left > 0 and rep.waiting:
            r = self._admit(rep, 0)
            if r is None:
                break
            c = int(min(left, target[r]))
            chunks.append((r, c))
            left -= c
        return chunks

    def _plan(self, rep: _Replica):
        """(decoding sequences advanced, prompt chunks) of the next iteration, or None (idle)."""
        role = rep.role
        if role == "prefill":
            chunks = self._prompt_chunks(rep, rep.pool.budget)
            return (0, chunks) if chunks else None
        if role == "decode":
            while self._admit(rep, 1) is not None:
                pass
            n_dec = len(rep.decoding)
            return (n_dec, []) if n_dec else None
        if self.vllm:   # prefill priority: whole prompts while they fit, else one decode step for all
            chunks = []
            left = rep.pool.budget
            while rep.waiting and rep.n_running < rep.pool.max_seqs:
                r = rep.waiting[0]
                size = int(self.target[r])
                if chunks and size > left:
                    break
                if self._admit(rep, 0) is None:
                    break
                chunks.append((r, size))
                left -= size
            if chunks:
                return 0, chunks
            n_dec = self._grow(rep)
            return (n_dec, []) if n_dec else None
        # sarathi: decode everything, fill the budget with prompt chunks (in progress first)
        n_dec = len(rep.decoding)
        chunks = self._prompt_chunks(rep, rep.pool.budget - n_dec)
        if not n_dec and not chunks:
            return None
        return n_dec, chunks

    def start(self, rep: _Replica, now: float) -> None:
        """Form the next iteration of `rep` and schedule its end (or leave it idle)."""
        plan = self._plan(rep)
        if plan is None:
            rep.busy = False
            return
        n_dec, chunks = plan
        n_pre = keys = finishing = 0
        if chunks:
            pre, target = self.pre, self.target
            for r, c in chunks:
                n_pre += c
                keys += c * (pre[r] + c / 2)
                if pre[r] + c >= target[r]:
                    finishing += 1
        ctx_sum = float(n_dec * rep.step + rep.ctx_base) if n_dec else 0.0
        pool = rep.pool
        dt = pool.cost.time_s(n_dec, ctx_sum, n_pre, keys, n_dec + finishing)
        rep.busy = True
        if self.trace is not None:
            ids = {*(rep.decoding if n_dec else ()), *(r for r, _ in chunks)}
            self.trace.append((now, "start", rep.id, tuple(sorted(ids))))
        self._launch(rep, pool, now, dt, n_dec + n_pre, plan)

    def _launch(self, rep: _Replica, pool, now: float, dt: float, tokens: int, plan) -> None:
        """Account one iteration of `dt` seconds and `tokens` tokens; its `end` event at now + dt."""
        self.iterations += 1
        self.busy_s += dt
        self.batch_tokens += tokens
        pool.iterations += 1
        pool.busy_s += dt
        pool.tokens += tokens
        self.seq += 1
        heapq.heappush(self.events, (now + dt, self.seq, "end", rep.id, plan))

    def finish(self, rep: _Replica, now: float, data) -> None:
        n_dec, chunks = data
        pre, target, gen, first, out, adm = self.pre, self.target, self.gen, self.first, self.out, self.adm
        if n_dec:
            rep.step += 1
        ended = []
        fin, step, decoding = rep.fin, rep.step, rep.decoding
        while fin and fin[0][0] <= step:
            _, a, r = heapq.heappop(fin)
            if adm[r] == a and r in decoding:      # else preempted since (a stale entry)
                ended.append((a, r))
        done_prefill = 0
        handover = []
        role = rep.role
        for r, c in chunks:
            pre[r] += c
            if pre[r] >= target[r]:
                done_prefill += 1
                gen[r] += 1
                if role == "both" and first[r] != first[r]:     # NaN: no token yet
                    first[r] = now
                if gen[r] >= out[r]:
                    ended.append((adm[r], r))
                elif role == "both":
                    self._join_decoding(rep, r)
                else:
                    handover.append(r)
        if done_prefill:
            del rep.prefilling[:done_prefill]
        if ended:
            if len(ended) > 1:
                ended.sort()
            for _, r in ended:
                self._complete(rep, r, now)
        for r in handover:   # prefilled: hand over to the decode replica with the fewest outstanding requests
            rep.n_running -= 1
            rep.load -= 1
            dest = self.route("decode")
            dest.incoming += 1
            dest.load += 1
            self.replica_of[r] = dest.id
            target[r] = self.inp[r] + gen[r]
            sent = self.kv_held[r]
            self.kv_held[r] = 0.0
            t_send = self.kv_transfer_s(self.inp[r])
            self.transfer_s[r] = t_send
            self.push(now + t_send, "kv_ready", dest.id, r)
            self.push(now + t_send, "kv_sent", rep.id, sent)

    def _complete(self, rep: _Replica, r: int, now: float) -> None:
        if self.done[r] != self.done[r]:
            self.done[r] = now
            if self.first[r] != self.first[r]:
                self.first[r] = now
        rep.n_running -= 1
        rep.load -= 1
        held = self._leave_decoding(rep, r) if r in rep.decoding else self.kv_held[r]
        rep.kv_free += held
        self.kv_held[r] = 0.0

    # --- static batching ----------------------------------------------------------------------
    # A batch is prefilled in order (the prompts done are a prefix of it), then decoded in lockstep:
    # every live sequence holds the same number of generated tokens g, and the live ones are those with
    # more than g outputs (the batch sorted by output length, a pointer past the finished).
    def _plan_static(self, rep: _Replica):
        pool = rep.pool
        if rep.batch is None:
            batch = []
            while rep.waiting and len(batch) < pool.max_seqs:
                r = rep.waiting[0]
                need = pool.kv_bytes(self.inp[r] + self.out[r])
                if need > rep.kv_free:
                    break
                rep.waiting.popleft()
                rep.n_running += 1
                rep.kv_free -= need
                self.kv_held[r] = need
                batch.append(r)
            if not batch:
                return None
            rep.batch = batch
            rep.s_built = 0              # prompts of the batch fully built (a prefix of it)
            rep.s_order = []             # decode phase: (output, position, request), shortest first
        batch = rep.batch
        if rep.s_built < len(batch):   # prefill the whole batch in budget-sized pieces before any decoding
            chunks, left = [], pool.budget
            pre, target = self.pre, self.target
            for r in batch[rep.s_built:]:
                if left <= 0:
                    break
                c = int(min(left, target[r] - pre[r]))
                chunks.append((r, c))
                left -= c
            return False, chunks
        return (True, []) if rep.s_live < len(rep.s_order) else None

    def start_static(self, rep: _Replica, now: float) -> None:
        plan = self._plan_static(rep)
        if plan is None:
            rep.busy = False
            return
        decode, chunks = plan
        n_pre = keys = finishing = 0
        pre, target = self.pre, self.target
        for r, c in chunks:
            n_pre += c
            keys += c * (pre[r] + c / 2)
            if pre[r] + c >= target[r]:
                finishing += 1
        n_dec = n_live = 0
        ctx_sum = 0.0
        if decode:
            n_dec = len(rep.batch)                       # finished sequences keep their slot (padding)
            n_live = len(rep.s_order) - rep.s_live
            ctx_sum = float(rep.s_inp + n_live * rep.s_gen) * n_dec / n_live
        pool = rep.pool
        dt = pool.cost.time_s(n_dec, ctx_sum, n_pre, keys, n_live + finishing)
        rep.busy = True
        if self.trace is not None:
            live = [r for _, _, r in rep.s_order[rep.s_live:]] if decode else []
            self.trace.append((now, "start", rep.id, tuple(sorted({*live, *(r for r, _ in chunks)}))))
        self._launch(rep, pool, now, dt, n_dec + n_pre, plan)

    def finish_static(self, rep: _Replica, now: float, data) -> None:
        decode, chunks = data
        gen, pre, target, first, inp, out = self.gen, self.pre, self.target, self.first, self.inp, self.out
        batch = rep.batch
        if decode:
            rep.s_gen += 1
            g, order = rep.s_gen, rep.s_order
            while rep.s_live < len(order) and order[rep.s_live][0] <= g:
                rep.s_inp -= inp[order[rep.s_live][2]]
                rep.s_live += 1
        for r, c in chunks:
            pre[r] += c
            if pre[r] >= target[r] and gen[r] == 0:
                gen[r] += 1
                if first[r] != first[r]:
                    first[r] = now
        if chunks:
            while rep.s_built < len(batch) and pre[batch[rep.s_built]] >= target[batch[rep.s_built]]:
                rep.s_built += 1
            if rep.s_built == len(batch):      # every prompt built: one token each, decode the rest in lockstep
                rep.s_gen = 1
                rep.s_order = sorted((out[r], i, r) for i, r in enumerate(batch))
                rep.s_live = sum(1 for o, _, _ in rep.s_order if o <= 1)
                rep.s_inp = sum(inp[r] for _, _, r in rep.s_order[rep.s_live:])
        if rep.s_built == len(batch) and rep.s_live == len(rep.s_order):
            for r in batch:
                if self.done[r] != self.done[r]:
                    self.done[r] = now
                    if first[r] != first[r]:
                        first[r] = now
                rep.n_running -= 1
                rep.load -= 1
                rep.kv_free += self.kv_held[r]
                self.kv_held[r] = 0.0
            rep.batch = None
            rep.s_order, rep.s_live, rep.s_inp, rep.s_built = [], 0, 0, 0


_KV_TRANSFER: dict | None = None


def _kv_transfer() -> dict:
    """catalog/efficiency.yaml `kv_transfer`: point-to-point bandwidth fraction and per-transfer latency."""
    global _KV_TRANSFER
    if _KV_TRANSFER is None:
        from flopcast.catalog import CATALOG_DIR, _read_yaml

        d = _read_yaml(CATALOG_DIR / "efficiency.yaml")["kv_transfer"]
        _KV_TRANSFER = {"bandwidth_frac": float(d["bandwidth_frac"]), "latency_s": float(d["latency_s"]),
                        "source": str(d["source"])}
    return _KV_TRANSFER


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def colocated_pools(hw: AcceleratorSpec, spec: InferenceSpec, scheduler: str, prefill_replicas: int | None,
                    scale_out_bandwidth_bytes_per_s: float | None = None) -> tuple[PoolSpec, ...]:
    """The pools of spec.dp identical replicas: one colocated pool, or (disaggregated) a prefill and a
    decode pool that share the layout (prefill_replicas of them prefill; default half)."""
    if scheduler != "disaggregated":
        return (PoolSpec(role="both", hw=hw, spec=spec, replicas=spec.dp,
                         scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s),)
    if spec.dp < 2:
        raise InvalidScenario("inference.scheduler: disaggregated serving needs dp >= 2 replicas "
                              "(at least one prefill and one decode replica)")
    n_pre = prefill_replicas or max(1, spec.dp // 2)
    if n_pre >= spec.dp:
        raise InvalidScenario(f"inference.scheduler.prefill_replicas: {n_pre} leaves no decode replica "
                              f"out of dp = {spec.dp}")
    return (PoolSpec(role="prefill", hw=hw, spec=spec, replicas=n_pre,
                     scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s),
            PoolSpec(role="decode", hw=hw, spec=spec, replicas=spec.dp - n_pre,
                     scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s))


def _analytic(model: ModelSpec, pools: list[_Pool], mean_in: float, mean_out: float) -> tuple[float, list[float]]:
    """Analytic maximum output tokens/s of the pools at the mean lengths, and per pool its maximum in
    its own unit (colocated and decode: output tokens/s; prefill: prompt tokens/s)."""
    per_pool = []
    for p in pools:
        spec = p.ps.spec
        s = InferenceSpec(**{k: getattr(spec, k) for k in spec.__slots__} | {
            "input_tokens": max(1, round(mean_in)), "output_tokens": max(1, round(mean_out)), "pool": p.role})
        a = sv_mod.estimate_serving(model, p.ps.hw, s)
        rate = (a.input_tokens_per_s if p.role == "prefill" else a.output_tokens_per_s) if a.fits else 0.0
        per_pool.append(rate if p.ps.replicas == spec.dp else rate / spec.dp * p.ps.replicas)   # it counts spec.dp
    if len(pools) == 1:
        return per_pool[0], per_pool
    pre = next(r for p, r in zip(pools, per_pool, strict=True) if p.role == "prefill")
    dec = next(r for p, r in zip(pools, per_pool, strict=True) if p.role == "decode")
    return min(dec, pre * mean_out / max(mean_in, 1e-9)), per_pool


def simulate(model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec, workload: WorkloadSpec, *,
             scheduler: str = "sarathi", slo: SLO = SLO(), prefill_replicas: int | None = None,
             pools: tuple[PoolSpec, ...] | None = None, assumptions: tuple[Assumption, ...] = (), progress=None,
             trace: list | None = None) -> SimulationResult:
    """Simulate every request of `workload` on spec.dp replicas (or on `pools`: one colocated pool, or a
    prefill and a decode pool with their own hardware and layouts); latency percentiles and rates.
    `progress(arrived, total)` is called every PROGRESS_EVERY instants (it may raise to stop the run);
    `trace`, a list, receives every event as (time_s, kind, replica, detail) in processing order."""
    if pools is None:
        pools = colocated_pools(hw, spec, scheduler, prefill_replicas)
    roles = sorted(p.role for p in pools)
    if roles not in (["both"], ["decode", "prefill"]):
        raise InvalidScenario("inference: a simulation runs one colocated pool, or one prefill and one decode pool")
    if (roles != ["both"]) != (scheduler == "disaggregated"):
        raise InvalidScenario("inference.scheduler: prefill and decode pools need scheduler disaggregated, "
                              "and disaggregated needs them")
    sim = _Sim(model, pools, workload, scheduler)
    sim.trace, sim.progress = trace, progress
    end = sim.run()
    arrival, out = sim.arrival_arr, sim.out_arr
    first, done = np.array(sim.first, dtype=float), np.array(sim.done, dtype=float)
    ok = ~np.isnan(done)
    ttft = (first - arrival)[ok]
    e2e = (done - arrival)[ok]
    multi = ok & (out > 1)
    tpot = ((done - first) / np.maximum(out - 1, 1))[multi]
    span = max(end - float(arrival[0]) if len(arrival) else 0.0, 1e-12)
    completed = int(ok.sum())
    attain = goodput = None
    if slo.ttft_s is not None or slo.tpot_s is not None:
        good = np.ones(completed, dtype=bool)
        if slo.ttft_s is not None:
            good &= ttft <= slo.ttft_s
        if slo.tpot_s is not None:
            tp_all = ((done - first) / np.maximum(out - 1, 1))[ok]
            good &= tp_all <= slo.tpot_s
        attain = float(good.mean()) if completed else 0.0
        goodput = float(good.sum()) / span
    mean_in, mean_out = float(np.mean(sim.inp_arr)), float(np.mean(out))
    analytic, per_pool = _analytic(model, sim.pools, mean_in, mean_out)
    n_replicas = sum(p.ps.replicas for p in sim.pools)
    pool_rows = []
    for p, cap in zip(sim.pools, per_pool, strict=True):
        s = p.ps.spec
        pool_rows.append({
            "role": p.role, "hardware": p.ps.hw.id, "replicas": p.ps.replicas, "tp": s.tp, "pp": s.pp, "ep": s.ep,
            "engine": s.engine, "weights_dtype": s.weights_dtype, "kv_dtype": s.kv_dtype,
            "devices_per_replica": p.devices_per_replica, "num_devices": p.ps.num_devices,
            "busy_frac": min(1.0, p.busy_s / (p.ps.replicas * span)), "num_iterations": p.iterations,
            "mean_tokens_per_iteration": p.tokens / max(p.iterations, 1),
            "analytic_max_tokens_per_s": cap,
            "analytic_tokens": "prompt" if p.role == "prefill" else "output"})
    xfer = np.array(sim.transfer_s, dtype=float)
    xfer = xfer[~np.isnan(xfer)]
    return SimulationResult(
        num_requests=len(arrival), num_completed=completed, num_rejected=sum(sim.rejected),
        ttft_p50_s=_pct(ttft, 50), ttft_p99_s=_pct(ttft, 99), tpot_p50_s=_pct(tpot, 50), tpot_p99_s=_pct(tpot, 99),
        e2e_p50_s=_pct(e2e, 50), e2e_p99_s=_pct(e2e, 99),
        output_tokens_per_s=float(out[ok].sum()) / span, requests_per_s=completed / span,
        slo_attainment_frac=attain, goodput_requests_per_s=goodput, simulated_s=span, scheduler=scheduler,
        num_replicas=n_replicas, num_iterations=sim.iterations, num_preemptions=sim.preemptions,
        mean_tokens_per_iteration=sim.batch_tokens / max(sim.iterations, 1),
        busy_frac=min(1.0, sim.busy_s / (n_replicas * span)), infeasible_reason=sim.infeasible_reason,
        analytic_max_output_tokens_per_s=analytic, num_devices=sum(p.ps.num_devices for p in sim.pools),
        pools=tuple(pool_rows), kv_transfer_p50_s=_pct(xfer, 50), kv_transfer_p99_s=_pct(xfer, 99),
        assumptions=assumptions,
        requests={"arrival_s": arrival, "input_tokens": sim.inp_arr, "output_tokens": out,
                  "first_token_s": first, "done_s": done, "replica": np.array(sim.replica_of)},
    )


def write_requests_csv(result: SimulationResult, path: str) -> None:
    """One row per request: arrival, lengths, TTFT, TPOT, end-to-end latency (empty when rejected)."""
    import csv

    r = result.requests or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request", "arrival_s", "input_tokens", "output_tokens", "replica", "ttft_s", "tpot_s", "e2e_s"])
        for i in range(len(r.get("arrival_s", ()))):
            a, first, done, out = r["arrival_s"][i], r["first_token_s"][i], r["done_s"][i], r["output_tokens"][i]
            ok = not np.isnan(done)
            w.writerow([i, f"{a:.6f}", int(r["input_tokens"][i]), int(out), int(r["replica"][i]),
                        f"{first - a:.6f}" if ok else "", f"{(done - first) / max(out - 1, 1):.6f}" if ok else "",
                        f"{done - a:.6f}" if ok else ""])
