"""Discrete-event simulation of a serving fleet: requests arrive, replicas run engine iterations,
every iteration's duration comes from the analytic serving model (estimate/serving.py), so the
simulator and the estimator share one cost model and can be checked against each other (at low load
the simulated TTFT is the analytic unloaded prefill time; at saturation the simulated throughput is
the analytic steady state).

Replicas (the section's dp, each tp x pp devices) take requests from a router that sends each new
request to the replica with the fewest outstanding requests. A replica holds a paged KV cache (the
bytes estimate_serving leaves free, pages of block_size tokens per layer) and runs one iteration at a
time; requests that arrive during an iteration join at the next one. Schedulers:

- static: a batch of up to batch_size waiting requests whose whole sequences fit is prefilled (in
  chunks of the token budget), then decoded together until its longest output is done (finished
  sequences keep their slot: padding); only then is the next batch formed.
- vllm: continuous batching with prefill priority (vLLM v0): an iteration either prefills whole new
  prompts (up to the token budget, FIFO, if their KV pages fit) or decodes every running sequence.
- sarathi: continuous batching with chunked prefill (Sarathi-Serve, vLLM v1, TensorRT-LLM in-flight
  batching): every iteration decodes every running sequence and fills the rest of the token budget
  with prompt chunks, oldest first.
- disaggregated: prefill replicas run prefill-only iterations; each prompt's KV cache then moves to
  the decode replica with the fewest outstanding requests over the scale-out network (tp x pp NICs in
  parallel), which decodes continuously. The first token comes from the prefill replica.
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
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flopcast.errors import InvalidScenario
from flopcast.estimate import serving as sv_mod
from flopcast.report import Assumption
from flopcast.sim.workload import SLO, WorkloadSpec, generate
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.serving import InferenceSpec

PROGRESS_EVERY = 1024  # instants between progress calls
CTX_BUCKET = 8       # iteration costs are memoised with contexts rounded to 8 tokens (< 0.1% of a cost)
NAN = float("nan")


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
    datacenter: dict[str, Any] | None = None
    assumptions: tuple[Assumption, ...] = field(default=())
    # per request (arrival order): arrival_s, input_tokens, output_tokens, first_token_s, done_s (NaN when
    # rejected), replica; not part of the JSON report (`flopcast simulate --requests FILE` writes it)
    requests: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.datacenter or {})
        d.update({k: getattr(self, k) for k in self.__slots__ if k not in ("assumptions", "datacenter", "requests")})
        d["assumptions"] = [a.to_dict() for a in self.assumptions]
        return d


class _Replica:
    __slots__ = ("id", "role", "waiting", "running", "busy", "batch", "kv_free", "incoming")

    def __init__(self, rid: int, role: str, kv_free: float):
        self.id, self.role, self.kv_free = rid, role, kv_free
        self.waiting: deque[int] = deque()
        self.running: list[int] = []     # admission order
        self.busy = False
        self.batch: list[int] | None = None   # static batching: the batch being served
        self.incoming = 0                     # disaggregated: KV caches on their way here

    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running) + self.incoming


class _Sim:
    """State of one simulation; `run` drives it."""

    def __init__(self, model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec, workload: WorkloadSpec,
                 scheduler: str, prefill_replicas: int | None):
        self.sv = sv_mod.prepare(model, hw, spec)
        self.spec, self.scheduler = spec, scheduler
        self.budget = spec.max_tokens_per_iteration
        self.max_seqs = spec.batch_size or self.budget
        _, _, _, free = sv_mod.memory_split(self.sv)
        self.infeasible_reason = None
        if free <= 0:   # infeasible is a value: every request is rejected, with the reason
            self.infeasible_reason = (
                f"the weights, workspace and reserve leave no memory for a KV cache on {hw.id} at tp {spec.tp}, "
                f"pp {spec.pp}; `flopcast infer` says what would fit")
            free = 0.0
        self.kv_capacity = free
        self.kv_groups = sv_mod.kv_page_groups(self.sv)
        # Per-request state in plain lists: the event loop reads and writes single entries, which
        # lists do several times faster than numpy arrays; numpy views are built once at the end.
        self.arrival_arr, self.inp_arr, self.out_arr = generate(workload)
        n = len(self.arrival_arr)
        self.arrival = self.arrival_arr.tolist()
        self.inp = self.inp_arr.tolist()
        self.out = self.out_arr.tolist()
        self.gen = [0] * n                 # tokens generated so far
        self.target = [0] * n              # tokens whose KV a (re)admission must build
        self.pre = [0] * n                 # of which built so far
        self.first = [NAN] * n
        self.done = [NAN] * n
        self.rejected = [False] * n
        self.replica_of = [-1] * n
        self.kv_held = [0.0] * n           # bytes of KV held on its current replica
        roles = ["both"] * spec.dp
        if scheduler == "disaggregated":
            if spec.dp < 2:
                raise InvalidScenario("inference.scheduler: disaggregated serving needs dp >= 2 replicas "
                                      "(at least one prefill and one decode replica)")
            n_pre = prefill_replicas or max(1, spec.dp // 2)
            if n_pre >= spec.dp:
                raise InvalidScenario(f"inference.scheduler.prefill_replicas: {n_pre} leaves no decode replica "
                                      f"out of dp = {spec.dp}")
            roles = ["prefill"] * n_pre + ["decode"] * (spec.dp - n_pre)
        self.replicas = [_Replica(i, r, free) for i, r in enumerate(roles)]
        self.events: list[tuple[float, int, str, int, Any]] = []
        self.seq = 0
        self.cost_cache: dict[tuple, float] = {}
        self.iterations = 0
        self.busy_s = 0.0
        self.preemptions = 0
        self.batch_tokens = 0.0
        link = (hw.scale_out_bandwidth_bytes_per_s or hw.scale_up_bandwidth_bytes_per_s or 1e9)
        self.kv_link_bytes_per_s = link * self.sv.ctx.eff.scale_out_frac
        self.trace: list[tuple[float, str, int, Any]] | None = None
        self.progress = None

    # --- cost model -------------------------------------------------------------------------
    def kv_bytes(self, tokens):
        return sv_mod.kv_bytes_per_sequence(self.sv, tokens, self.kv_groups)

    def cost(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        ctx = round(ctx_sum / n_dec / CTX_BUCKET) if n_dec else 0
        prompt = round(2 * keys_sum / n_pre / CTX_BUCKET) if n_pre else 0
        key = (n_dec, ctx, n_pre, prompt, n_sampled)
        t = self.cost_cache.get(key)
        if t is None:
            it = sv_mod.iteration_breakdown_s(self.sv, n_dec, ctx * CTX_BUCKET, n_pre, prompt * CTX_BUCKET, n_sampled)
            t = self.cost_cache[key] = sum(it.values())
        return t

    # --- events -----------------------------------------------------------------------------
    def push(self, t: float, kind: str, rid: int, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, rid, data))

    def route(self, role: str) -> _Replica:
        return min((r for r in self.replicas if r.role == role), key=lambda r: (r.outstanding(), r.id))

    def run(self) -> float:
        """Advance instant by instant (the event order of the module docstring) to the last event."""
        n = len(self.arrival)
        nxt = 0
        now = 0.0
        entry_role = "prefill" if self.scheduler == "disaggregated" else "both"
        trace, progress = self.trace, self.progress
        steps = 0
        while nxt < n or self.events:
            steps += 1
            if progress is not None and steps % PROGRESS_EVERY == 0:
                progress(nxt, n)
            now = min(self.arrival[nxt] if nxt < n else math.inf, self.events[0][0] if self.events else math.inf)
            woken: set[int] = set()      # replicas that may start an iteration once the instant is processed
            while nxt < n and self.arrival[nxt] <= now:
                r = nxt
                nxt += 1
                if self.kv_bytes(self.inp[r] + self.out[r]) > self.kv_capacity:
                    self.rejected[r] = True
                    if trace is not None:
                        trace.append((now, "reject", -1, r))
                    continue
                rep = self.route(entry_role)
                self.replica_of[r] = rep.id
                self.target[r] = self.inp[r]
                rep.waiting.append(r)
                woken.add(rep.id)
                if trace is not None:
                    trace.append((now, "arrive", rep.id, r))
            while self.events and self.events[0][0] <= now:
                _, _, kind, rid, data = heapq.heappop(self.events)
                rep = self.replicas[rid]
                if trace is not None:
                    trace.append((now, kind, rid, data if kind == "kv_ready" else None))
                if kind == "end":
                    self.finish(rep, now, data)
                    rep.busy = False
                elif kind == "kv_ready":     # a prefilled request reaches its decode replica
                    rep.incoming -= 1
                    rep.waiting.append(data)
                elif kind == "kv_sent":      # the prefill replica frees the pages it sent
                    rep.kv_free += data
                woken.add(rid)
            for rid in sorted(woken):
                rep = self.replicas[rid]
                if not rep.busy:
                    self.start(rep, now)
        if progress is not None:
            progress(n, n)
        return now

    # --- scheduling ---------------------------------------------------------------------------
    def _admit(self, rep: _Replica, extra_tokens: int) -> int | None:
        """Admit the oldest waiting request if its pages fit: target + extra tokens (vllm: pages on
        demand, preempting when they run out), or its whole sequence (the others: TensorRT-LLM's
        guaranteed-no-evict policy, which reserves max_tokens at admission); its id or None."""
        if not rep.waiting or len(rep.running) >= self.max_seqs:
            return None
        r = rep.waiting[0]
        if self.scheduler != "vllm" and rep.role != "prefill":
            extra_tokens = max(extra_tokens, int(self.out[r] - self.gen[r]))
        need = self.kv_bytes(self.target[r] + extra_tokens)
        if need > rep.kv_free:
            return None
        rep.waiting.popleft()
        rep.running.append(r)
        rep.kv_free -= need
        self.kv_held[r] = need
        return r

    def _grow(self, rep: _Replica, decoding: list[int]) -> list[int]:
        """Reserve the next token's pages for every decoding sequence, preempting the newest ones
        (back to the head of the queue, to be recomputed) until they fit. Only vllm allocates on
        demand; the other schedulers reserved whole sequences at admission."""
        if self.scheduler != "vllm":
            return decoding
        while decoding:
            held = np.array([self.kv_held[r] for r in decoding])
            lengths = np.array([self.inp[r] + self.gen[r] + 1 for r in decoding])
            need = np.maximum(self.kv_bytes(lengths), held)
            extra = float(np.sum(need - held))
            if extra <= rep.kv_free:
                rep.kv_free -= extra
                for r, b in zip(decoding, need.tolist(), strict=True):
                    self.kv_held[r] = b
                return decoding
            victim = decoding.pop()
            rep.running.remove(victim)
            rep.kv_free += self.kv_held[victim]
            self.kv_held[victim] = 0.0
            self.target[victim] = self.inp[victim] + self.gen[victim]
            self.pre[victim] = 0
            rep.waiting.appendleft(victim)
            self.preemptions += 1
        return decoding

    def start(self, rep: _Replica, now: float) -> None:
        """Form the next iteration of `rep` and schedule its end (or leave it idle)."""
        plan = getattr(self, "_plan_" + ("static" if self.scheduler == "static" else rep.role))(rep)
        if plan is None:
            rep.busy = False
            return
        decoding, chunks, n_sampled_dec = plan
        n_pre = sum(c for _, c in chunks)
        keys = sum(c * (self.pre[r] + c / 2) for r, c in chunks)
        inp, gen = self.inp, self.gen
        ctx_sum = float(sum(inp[r] + gen[r] for r in decoding))
        n_dec = n_sampled_dec if self.scheduler == "static" else len(decoding)
        if self.scheduler == "static" and len(decoding):
            ctx_sum = ctx_sum * n_dec / len(decoding)
        finishing = sum(1 for r, c in chunks if self.pre[r] + c >= self.target[r])
        dt = self.cost(n_dec, ctx_sum, n_pre, keys, len(decoding) + finishing)
        rep.busy = True
        if self.trace is not None:
            self.trace.append((now, "start", rep.id, tuple(sorted({*decoding, *(r for r, _ in chunks)}))))
        self.iterations += 1
        self.busy_s += dt
        self.batch_tokens += n_dec + n_pre
        self.push(now + dt, "end", rep.id, (decoding, chunks))

    def _plan_both(self, rep: _Replica):
        decoding = [r for r in rep.running if self.pre[r] >= self.target[r]]
        if self.scheduler == "vllm":
            chunks = []
            left = self.budget
            while rep.waiting and len(rep.running) < self.max_seqs:
                r = rep.waiting[0]
                size = int(self.target[r])
                if chunks and size > left:
                    break
                if self._admit(rep, 0) is None:
                    break
                chunks.append((r, size))
                left -= size
            if chunks:
                return [], chunks, 0
            decoding = self._grow(rep, decoding)
            return (decoding, [], len(decoding)) if decoding else None
        # sarathi: decode everything, fill the budget with prompt chunks (in progress first)
        decoding = self._grow(rep, decoding)
        chunks = self._prompt_chunks(rep, self.budget - len(decoding))
        if not decoding and not chunks:
            return None
        return decoding, chunks, len(decoding)

    def _prompt_chunks(self, rep: _Replica, left: int) -> list[tuple[int, int]]:
        """Fill `left` tokens with prompt chunks: prompts already started first, then new admissions."""
        chunks = []
        for r in rep.running:
            if left <= 0:
                break
            if self.pre[r] < self.target[r]:
                c = int(min(left, self.target[r] - self.pre[r]))
                chunks.append((r, c))
                left -= c
        while left > 0:
            r = self._admit(rep, 0)
            if r is None:
                break
            c = int(min(left, self.target[r]))
            chunks.append((r, c))
            left -= c
        return chunks

    def _plan_prefill(self, rep: _Replica):
        chunks = self._prompt_chunks(rep, self.budget)
        return ([], chunks, 0) if chunks else None

    def _plan_decode(self, rep: _Replica):
        while self._admit(rep, 1) is not None:    # prefilled elsewhere: admitted straight into decoding
            pass
        for r in rep.running:
            self.pre[r] = self.target[r]
        decoding = self._grow(rep, list(rep.running))
        return (decoding, [], len(decoding)) if decoding else None

    def _plan_static(self, rep: _Replica):
        if rep.batch is None:
            batch = []
            while rep.waiting and len(batch) < self.max_seqs:
                r = rep.waiting[0]
                need = self.kv_bytes(self.inp[r] + self.out[r])
                if need > rep.kv_free:
                    break
                rep.waiting.popleft()
                rep.running.append(r)
                rep.kv_free -= need
                self.kv_held[r] = need
                batch.append(r)
            if not batch:
                return None
            rep.batch = batch
        batch = rep.batch
        pending = [r for r in batch if self.pre[r] < self.target[r]]
        if pending:   # prefill the whole batch in budget-sized pieces before any decoding
            chunks, left = [], self.budget
            for r in pending:
                if left <= 0:
                    break
                c = int(min(left, self.target[r] - self.pre[r]))
                chunks.append((r, c))
                left -= c
            return [], chunks, 0
        live = [r for r in batch if self.gen[r] < self.out[r]]
        return (live, [], len(batch)) if live else None

    # --- iteration end ----------------------------------------------------------------------
    def finish(self, rep: _Replica, now: float, data) -> None:
        decoding, chunks = data
        gen, pre, target, out, first = self.gen, self.pre, self.target, self.out, self.first
        for r in decoding:
            gen[r] += 1
        for r, c in chunks:
            pre[r] += c
            if pre[r] >= target[r] and (self.scheduler != "static" or gen[r] == 0):
                gen[r] += 1
                if first[r] != first[r]:     # NaN: no token yet
                    first[r] = now
        if self.scheduler == "static":
            batch = rep.batch or []
            if batch and not any(pre[r] < target[r] for r in batch) and all(gen[r] >= out[r] for r in batch):
                for r in batch:
                    self._complete(rep, r, now)
                rep.batch = None
            return
        ended = [r for r in rep.running if gen[r] >= out[r] and pre[r] >= target[r]]
        for r in ended:
            self._complete(rep, r, now)
        if rep.role != "prefill":
            return
        for r in [r for r in rep.running if pre[r] >= target[r]]:   # prefilled: hand over to decode
            rep.running.remove(r)
            dest = self.route("decode")
            dest.incoming += 1
            self.replica_of[r] = dest.id
            target[r] = self.inp[r] + gen[r]
            sent = self.kv_held[r]
            self.kv_held[r] = 0.0
            t_send = self.kv_bytes(target[r]) / self.kv_link_bytes_per_s
            self.push(now + t_send, "kv_ready", dest.id, r)
            self.push(now + t_send, "kv_sent", rep.id, sent)

    def _complete(self, rep: _Replica, r: int, now: float) -> None:
        if self.done[r] != self.done[r]:
            self.done[r] = now
            if self.first[r] != self.first[r]:
                self.first[r] = now
        if r in rep.running:
            rep.running.remove(r)
        rep.kv_free += self.kv_held[r]
        self.kv_held[r] = 0.0


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def simulate(model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec, workload: WorkloadSpec, *,
             scheduler: str = "sarathi", slo: SLO = SLO(), prefill_replicas: int | None = None,
             assumptions: tuple[Assumption, ...] = (), progress=None,
             trace: list | None = None) -> SimulationResult:
    """Simulate every request of `workload` on spec.dp replicas; latency percentiles and rates.
    `progress(arrived, total)` is called every PROGRESS_EVERY instants (it may raise to stop the run);
    `trace`, a list, receives every event as (time_s, kind, replica, detail) in processing order."""
    sim = _Sim(model, hw, spec, workload, scheduler, prefill_replicas)
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
    analytic_spec = InferenceSpec(**{k: getattr(spec, k) for k in spec.__slots__} | {
        "input_tokens": max(1, round(mean_in)), "output_tokens": max(1, round(mean_out))})
    analytic = sv_mod.estimate_serving(model, hw, analytic_spec)
    return SimulationResult(
        num_requests=len(arrival), num_completed=completed, num_rejected=sum(sim.rejected),
        ttft_p50_s=_pct(ttft, 50), ttft_p99_s=_pct(ttft, 99), tpot_p50_s=_pct(tpot, 50), tpot_p99_s=_pct(tpot, 99),
        e2e_p50_s=_pct(e2e, 50), e2e_p99_s=_pct(e2e, 99),
        output_tokens_per_s=float(out[ok].sum()) / span, requests_per_s=completed / span,
        slo_attainment_frac=attain, goodput_requests_per_s=goodput, simulated_s=span, scheduler=scheduler,
        num_replicas=spec.dp, num_iterations=sim.iterations, num_preemptions=sim.preemptions,
        mean_tokens_per_iteration=sim.batch_tokens / max(sim.iterations, 1),
        busy_frac=min(1.0, sim.busy_s / (spec.dp * span)), infeasible_reason=sim.infeasible_reason,
        analytic_max_output_tokens_per_s=analytic.output_tokens_per_s if analytic.fits else 0.0,
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
