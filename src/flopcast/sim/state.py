"""The simulation's state, shared by the event loop (sim/engine.py) and the schedulers
(sim/schedulers/): pools of identical replicas with their cost and KV layout, each replica's queue
and running sequences, every request's progress in plain lists, the event heap and the counters."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flopcast.estimate import admission
from flopcast.estimate import serving as sv_mod
from flopcast.sim.cost import IterationCost, iteration_cost
from flopcast.sim.stats import FLUSH, StreamRecorder
from flopcast.sim.workload import WorkloadSpec, generate
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.serving import InferenceSpec

NAN = float("nan")
_heappush = heapq.heappush
ROLES = ("both", "prefill", "decode")
# a pool's iteration cost from its prepared serving model, token budget and sequence limit
CostFactory = Callable[["sv_mod._Serve", int, int], IterationCost]


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


class Pool:
    """A pool's shared state: its prepared serving model, iteration cost, admission limits
    (estimate/admission.py, as the estimator reads them) and KV layout."""

    def __init__(self, model: ModelSpec, ps: PoolSpec, index: int, cost: CostFactory = iteration_cost):
        self.ps, self.role, self.index = ps, ps.role, index
        spec, hw = ps.spec, ps.hw
        self.sv = sv_mod.prepare(model, hw, spec)
        self.budget = admission.token_budget(spec)
        self.max_seqs = admission.concurrent_sequences(spec, unlimited=self.budget)
        _, _, _, free = sv_mod.memory_split(self.sv)
        self.infeasible_reason: str | None = None
        if free <= 0:   # infeasible is a value: every request is rejected, with the reason
            where = "" if ps.role == "both" else f" (the {ps.role} pool)"
            self.infeasible_reason = (
                f"the weights, workspace and reserve leave no memory for a KV cache on {hw.id} at tp {spec.tp}, "
                f"pp {spec.pp}{where}; `flopcast infer` says what would fit")
            free = 0.0
        self.kv_capacity = free
        self.kv_groups = sv_mod.kv_page_groups(self.sv)
        self.block = spec.block_size
        self.cost = cost(self.sv, self.budget, self.max_seqs)
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
            b = self._kv_memo[tokens] = float(sv_mod.kv_bytes_per_sequence(self.sv, tokens, self.kv_groups))
        return b

    def longest_sequence(self) -> float:
        """The most tokens one sequence's KV cache can ever hold on a replica (inf: any)."""
        from flopcast.specs.limits import MAX_TOKENS_PER_REQUEST

        if self.kv_bytes(MAX_TOKENS_PER_REQUEST) <= self.kv_capacity:
            return math.inf
        lo, hi = 0, MAX_TOKENS_PER_REQUEST        # kv(lo) fits (or lo = 0), kv(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.kv_bytes(mid) <= self.kv_capacity else (lo, mid)
        return lo


class Replica:
    """One replica: its queue, its running sequences (prompts being built, decoding sequences in
    lockstep: see the engine's module docstring) and its free KV bytes."""

    __slots__ = ("id", "pool", "role", "waiting", "n_running", "prefilling", "decoding", "step", "ctx_base",
                 "fin", "busy", "kv_free", "incoming", "loads", "ri")

    def __init__(self, rid: int, pool: Pool):
        self.id, self.pool, self.role, self.kv_free = rid, pool, pool.role, pool.kv_capacity
        self.waiting: deque[int] = deque()
        self.n_running = 0
        self.prefilling: list[int] = []          # running, prompt not yet built (admission order)
        self.decoding: dict[int, None] = {}      # running, decoding (admission order)
        self.step = 0                            # decode iterations done
        self.ctx_base = 0                        # sum of input + gbase over decoding
        self.fin: list[tuple[int, int, int]] = []   # (finish step, admission, request)
        self.busy = False
        self.incoming = 0                        # disaggregated: KV caches on their way here
        # outstanding requests (waiting + running + incoming) of every replica of its role, this one's
        # at index ri: the router takes the least of a plain list (SimState.route)
        self.loads: list[int] = [0]
        self.ri = 0

    @property
    def load(self) -> int:
        """Outstanding requests: waiting + running + incoming."""
        return self.loads[self.ri]


class SimState:
    """Everything one simulation changes: per-request state in plain lists (the event loop reads and
    writes single entries, which lists do several times faster than numpy arrays; numpy views are
    built once at the end), the replicas, the event heap (key (time_s, seq)) and the counters."""

    def __init__(self, model: ModelSpec, pools: tuple[PoolSpec, ...], workload: WorkloadSpec,
                 cost: CostFactory = iteration_cost, recorder: StreamRecorder | None = None):
        self.model = model
        self.pools = [Pool(model, ps, i, cost) for i, ps in enumerate(pools)]
        # streaming (sim/stats.py): requests arrive in chunks and take a free slot of the per-request
        # lists, given back when they finish; else the lists hold every request by arrival index
        self.recorder = recorder
        if recorder is None:
            self.arrival_arr, self.inp_arr, self.out_arr = generate(workload)
            n = len(self.arrival_arr)
            self.arrival: list[float] = self.arrival_arr.tolist()
            self.inp: list[int] = self.inp_arr.tolist()
            self.out: list[int] = self.out_arr.tolist()
        else:
            n = 0
            self.arrival, self.inp, self.out = [], [], []
        self.n = n if recorder is None else recorder.n
        self.free: list[int] = []
        self.index_of: list[int] = []      # streaming: a slot's request (arrival index)
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
        self.transfer_s = [NAN] * n
        self.replicas: list[Replica] = []
        for pool in self.pools:
            self.replicas += [Replica(len(self.replicas) + i, pool) for i in range(pool.ps.replicas)]
        self.by_role = {role: [r for r in self.replicas if r.role == role] for role in ROLES}
        self.loads_of: dict[str, list[int]] = {}
        for role, reps in self.by_role.items():
            loads = self.loads_of[role] = [0] * len(reps)
            for i, rep in enumerate(reps):
                rep.loads, rep.ri = loads, i
        self.entry_role = "prefill" if self.by_role["prefill"] else "both"
        self.infeasible_reason = next((p.infeasible_reason for p in self.pools if p.infeasible_reason), None)
        self.events: list[tuple[float, int, str, int, Any]] = []
        self.seq = 0
        self.adm_seq = 0
        self.busy_s = 0.0
        self.preemptions = 0
        self.trace: list[tuple[float, str, int, Any]] | None = None

    @property
    def iterations(self) -> int:
        """Iterations run by every replica (the pools' counts)."""
        return sum(p.iterations for p in self.pools)

    @property
    def batch_tokens(self) -> float:
        """Tokens carried by every iteration (the pools' sums: whole numbers, so exact in any order)."""
        return sum(p.tokens for p in self.pools)

    def reject(self, k: int, arrival_s: float, inp: int, out: int) -> None:
        """Request k can never fit a replica."""
        if self.recorder is None:
            self.rejected[k] = True
        else:
            self.recorder.rejected += 1

    def slot(self, k: int, arrival_s: float, inp: int, out: int) -> int:
        """Streaming: a slot of the per-request lists for arriving request k (a free one, or a new one).
        A recycled slot resets what is read before it is written again (its generated and built
        tokens, its admission, its times); target, replica, KV bytes and gbase are set before they are read."""
        if not self.free:
            self.arrival.append(arrival_s)
            self.inp.append(inp)
            self.out.append(out)
            self.index_of.append(k)
            for ints in (self.gen, self.gbase, self.target, self.pre, self.adm):
                ints.append(0)
            for floats, v in ((self.first, NAN), (self.done, NAN), (self.kv_held, 0.0), (self.transfer_s, NAN)):
                floats.append(v)
            self.rejected.append(False)
            self.replica_of.append(-1)
            return len(self.inp) - 1
        r = self.free.pop()
        self.arrival[r], self.inp[r], self.out[r], self.index_of[r] = arrival_s, inp, out, k
        self.gen[r] = self.pre[r] = self.adm[r] = 0
        self.first[r] = self.done[r] = self.transfer_s[r] = NAN
        return r

    def push(self, t: float, kind: str, rid: int, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, rid, data))

    def route(self, role: str) -> Replica:
        """The replica of `role` with the fewest outstanding requests (waiting, running, KV on its way),
        the lowest id on a tie."""
        loads = self.loads_of[role]
        return self.by_role[role][loads.index(min(loads))]

    def fit_limits(self) -> tuple[float, float]:
        """The longest sequence (input + output) a decode or colocated replica's KV cache can ever hold
        and the longest prompt a prefill replica's can (KV bytes grow with the tokens, so a request fits
        iff it is within both)."""
        seq = min((p.longest_sequence() for p in self.pools if p.role != "prefill"), default=math.inf)
        prompt = min((p.longest_sequence() for p in self.pools if p.role == "prefill"), default=math.inf)
        return seq, prompt

    def launch(self, rep: Replica, now: float, dt: float, tokens: int, plan: Any) -> None:
        """Account one iteration of `dt` seconds and `tokens` tokens; its `end` event at now + dt."""
        pool = rep.pool
        self.busy_s += dt
        pool.iterations += 1
        pool.busy_s += dt
        pool.tokens += tokens
        rep.busy = True
        self.seq += 1
        _heappush(self.events, (now + dt, self.seq, "end", rep.id, plan))

    def trace_start(self, rep: Replica, now: float, ids: Any) -> None:
        if self.trace is not None:
            self.trace.append((now, "start", rep.id, tuple(sorted(ids))))

    def release(self, rep: Replica, r: int, now: float, held: float) -> None:
        """Request r is done on `rep` (its last token at `now`, and its first if none came before):
        it leaves the replica and frees `held` KV bytes."""
        self.release_all(rep, [r], now, [held])

    def release_all(self, rep: Replica, rs: list[int], now: float, held: list[float] | None = None) -> None:
        """`release` of each request of `rs` in order (held: the KV bytes each frees; None: kv_held's)."""
        done, first, kv_held = self.done, self.first, self.kv_held
        kv_free = rep.kv_free
        new = []
        for i, r in enumerate(rs):
            if done[r] != done[r]:       # NaN: not done before
                done[r] = now
                if first[r] != first[r]:
                    first[r] = now
                new.append(r)
            kv_free += kv_held[r] if held is None else held[i]
            kv_held[r] = 0.0
        rep.kv_free = kv_free
        rep.n_running -= len(rs)
        rep.loads[rep.ri] -= len(rs)
        rec = self.recorder
        if rec is not None and new:         # streaming: record them (StreamRecorder.finished), give their slots back
            buf, index_of, arrival, out, transfer_s = rec.buf, self.index_of, self.arrival, self.out, self.transfer_s
            for r in new:
                buf.append((index_of[r], arrival[r], first[r], now, out[r], transfer_s[r]))
                if len(buf) >= FLUSH:
                    rec.flush()
            self.free += new
