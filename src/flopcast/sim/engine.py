"""Discrete-event simulation of a serving fleet: requests arrive, replicas run engine iterations,
every iteration's duration comes from an iteration cost (sim/cost.py: by default the analytic serving
model of estimate/serving.py, so the simulator and the estimator share one cost model and can be
checked against each other: at low load the simulated TTFT is the analytic unloaded prefill time; at
saturation the simulated throughput is the analytic steady state; or a fixed service time, for
queueing tests).

Replicas come in pools (`PoolSpec`): each pool has its own hardware and layout (tp x pp devices per
replica, its engine, dtypes and limits) and so its own prepared serving model. A colocated run has
one pool; a disaggregated run a prefill pool and a decode pool. A router sends each new request to
the replica of the entry pool with the fewest outstanding requests. A replica holds a paged KV cache
(the bytes estimate_serving leaves free, pages of block_size tokens per layer) and runs one iteration
at a time; requests that arrive during an iteration join at the next one. What an iteration carries
is the scheduler's (sim/schedulers/, one class per file, by the name of `inference.scheduler`):

- static: batches formed and served to their longest output (padding), one at a time.
- vllm: continuous batching with prefill priority (vLLM v0) and KV pages on demand, preempting the
  newest sequence (recomputed later) when the next token of every running one does not fit.
- sarathi: continuous batching with chunked prefill (Sarathi-Serve, vLLM v1, TensorRT-LLM in-flight
  batching).
- disaggregated: prefill replicas prefill, the KV cache moves to a decode replica that decodes.
Requests whose whole sequence can never fit one replica are rejected.

Admission limits (estimate/admission.py, shared with the estimator): at most `max_num_tokens` tokens
per iteration, and per replica at most batch_size concurrent sequences (the token budget when
batch_size is `max`), never more than `max_batch_size`.

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
whose completed chunks are always its head. vllm's on-demand pages are counts by residue
(sim/schedulers/vllm.py). Analytic iteration times are memoised (sim/cost.py `AnalyticCost`). Per
iteration the simulator does O(1) work plus O(1) per request that joins, finishes or changes phase;
per-sequence lists are never scanned. The loop takes two shortcuts that change no number (an untraced
run; a traced one steps instant by instant, and tests/unit/test_sim_speed.py compares the two):
arrivals that only join busy replicas' queues are taken in one pass up to the next engine event or
the first arrival that wakes an idle replica, and an iteration's end alone at its instant starts the
replica's next iteration at once. Filled iteration-cost tables are shared between simulations of one
deployment (sim/cost.py: fleet sizing's trials).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario
from flopcast.estimate import serving as sv_mod
from flopcast.sim.cost import IterationCost, iteration_cost
from flopcast.sim.schedulers import SCHEDULERS, Scheduler
from flopcast.sim.state import CostFactory, Pool, PoolSpec, SimState
from flopcast.sim.stats import REL_WIDTH, SEGMENTS, STREAM_ABOVE, StreamRecorder, percentile
from flopcast.sim.workload import SLO, Chunk, WorkloadSpec, chunks, expected_count
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.serving import InferenceSpec

__all__ = ["PoolSpec", "SimulationResult", "colocated_pools", "simulate", "write_requests_csv"]

PROGRESS_EVERY = 1024  # instants between progress calls
CHUNK = 1 << 16        # requests drawn at a time when streaming
Progress = Callable[[int, int], None]


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
    # the requests after the warm-up (run/steady.py): percentiles, settled, throughput, $ and J per token
    steady_state: dict[str, Any] | None = None
    assumptions: tuple[Assumption, ...] = field(default=())
    # per request (arrival order): arrival_s, input_tokens, output_tokens, first_token_s, done_s (NaN when
    # rejected), replica; not part of the JSON report (`flopcast simulate --requests FILE` writes it)
    requests: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    # a streamed simulation's statistics instead (sim/stats.py)
    stream: StreamRecorder | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.datacenter or {})
        skip = ("assumptions", "datacenter", "requests", "stream")
        d.update({k: getattr(self, k) for k in self.__slots__ if k not in skip})
        d["pools"] = [dict(p) for p in self.pools]
        d["assumptions"] = [a.to_dict() for a in self.assumptions]
        return d


class _EventLoop:
    """Drives one simulation: arrivals, engine events and iteration starts, instant by instant (the
    event order of the module docstring)."""

    def __init__(self, st: SimState, sched: Scheduler, progress: Progress | None, source: Iterator[Chunk] | None = None):
        self.st, self.sched, self.progress = st, sched, progress
        self.max_seq, self.max_prompt = st.fit_limits()
        entry = st.by_role[st.entry_role]
        self.single = entry[0] if len(entry) == 1 else None
        # the pending arrivals: every request (its per-request lists), or streaming the current chunk
        self.source = source
        self.base = 0                    # arrival index of the chunk's first request
        self.pa: list[float] = st.arrival if source is None else []
        self.pi: list[int] = st.inp if source is None else []
        self.po: list[int] = st.out if source is None else []
        self.nxt = 0                     # next arrival, within the chunk

    def _refill(self) -> bool:
        """Streaming: the next chunk of arrivals (False when there is none)."""
        if self.source is None:
            return False
        chunk = next(self.source, None)
        if chunk is None:
            self.source = None
            return False
        self.base += len(self.pa)
        self.pa, self.pi, self.po = (c.tolist() for c in chunk)
        self.nxt = 0
        if self.st.recorder is not None:
            self.st.recorder.arrived(*chunk)
        return True

    def run(self) -> float:
        """Advance to the last event; the time it happens."""
        st, progress = self.st, self.progress
        n = st.n
        events, replicas = st.events, st.replicas
        start, finish, trace = self.sched.start, self.sched.finish, st.trace
        heappop = heapq.heappop
        now = 0.0
        steps = 0
        report_at = PROGRESS_EVERY
        inf = math.inf
        while True:
            if self.nxt < len(self.pa) or self._refill():
                a = self.pa[self.nxt]
            elif events:
                a = inf
            else:
                break
            steps += 1
            if progress is not None and steps >= report_at:
                progress(self.base + self.nxt, n)
                report_at = steps + PROGRESS_EVERY
            e = events[0][0] if events else inf
            woken: list[int] = []        # replicas that may start an iteration once the instant is processed
            if a < e:                    # instants of arrivals only, up to one that wakes a replica
                arrived = self.base + self.nxt
                now = self._arrivals(a, woken, e)
                steps += self.base + self.nxt - arrived - 1     # one instant per arrival (at most)
            elif a > e and events[0][2] == "end" and trace is None:    # iterations' ends, each alone or first
                rid = -1
                while rid < 0:
                    _, _, _, rid, plan = heappop(events)
                    rep = replicas[rid]
                    finish(rep, e, plan)
                    rep.busy = False
                    if events and events[0][0] <= e:    # not alone at its instant
                        break
                    start(rep, e)                       # alone: the replica goes on, and so on to the
                    rid = -1                            # next arrival or other engine event
                    if events and events[0][0] < a and events[0][2] == "end":
                        e = events[0][0]
                        steps += 1
                        continue
                    break
                now = e
                if rid < 0:
                    continue
                woken.append(rid)
                self._engine_events(now, woken)
            else:
                now = e
                if a == e:
                    self._arrivals(now, woken, now)
                self._engine_events(now, woken)
            if len(woken) > 1:
                woken = sorted(set(woken))
            for rid in woken:
                rep = replicas[rid]
                if not rep.busy:
                    start(rep, now)
        if progress is not None:
            progress(n, n)
        return now

    def _arrivals(self, now: float, woken: list[int], until: float) -> float:
        """Every arrival due at `now`, in arrival order: rejected if it can never fit, else routed. Then,
        while no replica was woken, the instants of the next arrivals before `until` (the next engine
        event) too: an instant at which requests only join busy replicas' queues changes nothing
        else, so it needs no pass of the event loop. Returns the last instant processed."""
        st = self.st
        trace, streaming = st.trace, st.recorder is not None
        max_seq, max_prompt, single = self.max_seq, self.max_prompt, self.single
        replica_of, target = st.replica_of, st.target
        entry, loads = st.by_role[st.entry_role], st.loads_of[st.entry_role]    # st.route, inline
        while True:
            arrival, inp, out = self.pa, self.pi, self.po
            n, nxt, base = len(arrival), self.nxt, self.base
            while nxt < n:
                t = arrival[nxt]
                if t > now:
                    if woken or t >= until:
                        break
                    now = t
                i, o = inp[nxt], out[nxt]
                k = base + nxt
                nxt += 1
                if i + o > max_seq or i > max_prompt:    # can never fit: rejected
                    st.reject(k, now, i, o)
                    if trace is not None:
                        trace.append((now, "reject", -1, k))
                    continue
                r = st.slot(k, t, i, o) if streaming else k
                rep = single or entry[loads.index(min(loads))]
                replica_of[r] = rep.id
                target[r] = i
                rep.waiting.append(r)
                loads[rep.ri] += 1
                if not rep.busy:        # a busy replica is woken by its own `end` event
                    woken.append(rep.id)
                if trace is not None:
                    trace.append((now, "arrive", rep.id, r))
            self.nxt = nxt
            if nxt < n or not self._refill():
                return now

    def _engine_events(self, now: float, woken: list[int]) -> None:
        """Every engine event due at `now`, in the order they were scheduled."""
        st, sched = self.st, self.sched
        events, replicas, trace = st.events, st.replicas, st.trace
        while events and events[0][0] <= now:
            _, _, kind, rid, data = heapq.heappop(events)
            rep = replicas[rid]
            if trace is not None:
                trace.append((now, kind, rid, data if kind == "kv_ready" else None))
            if kind == "end":
                sched.finish(rep, now, data)
                rep.busy = False
            else:
                sched.on_event(kind, rep, data, now)
            woken.append(rid)


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


def _analytic(model: ModelSpec, pools: list[Pool], mean_in: float, mean_out: float) -> tuple[float, list[float]]:
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
             pools: tuple[PoolSpec, ...] | None = None, assumptions: tuple[Assumption, ...] = (),
             progress: Progress | None = None, trace: list[Any] | None = None,
             cost: IterationCost | None = None, stream: bool | None = None) -> SimulationResult:
    """Simulate every request of `workload` on spec.dp replicas (or on `pools`: one colocated pool, or a
    prefill and a decode pool with their own hardware and layouts); latency percentiles and rates.
    `progress(arrived, total)` is called every PROGRESS_EVERY instants (it may raise to stop the run);
    `trace`, a list, receives every event as (time_s, kind, replica, detail) in processing order;
    `cost` times every iteration of every pool (None: each pool's analytic serving model); `stream`
    keeps statistics instead of per-request arrays (sim/stats.py; None: above STREAM_ABOVE requests)."""
    if pools is None:
        pools = colocated_pools(hw, spec, scheduler, prefill_replicas)
    roles = sorted(p.role for p in pools)
    if roles not in (["both"], ["decode", "prefill"]):
        raise InvalidScenario("inference: a simulation runs one colocated pool, or one prefill and one decode pool")
    if (roles != ["both"]) != (scheduler == "disaggregated"):
        raise InvalidScenario("inference.scheduler: prefill and decode pools need scheduler disaggregated, "
                              "and disaggregated needs them")
    policy = SCHEDULERS.get(scheduler)
    factory: CostFactory = iteration_cost if cost is None else (lambda sv, budget, max_seqs: cost)
    n = expected_count(workload)
    streaming = (n > STREAM_ABOVE if stream is None else stream) and trace is None
    recorder = StreamRecorder(n, _span_guess_s(workload, n), slo.ttft_s, slo.tpot_s) if streaming else None
    st = SimState(model, pools, workload, factory, recorder)
    st.trace = trace
    end = _EventLoop(st, policy(st), progress, chunks(workload, CHUNK) if streaming else None).run()
    if recorder is not None:
        recorder.flush()
        return _stream_result(model, st, recorder, end, scheduler, assumptions)
    return _result(model, st, end, scheduler, slo, assumptions)


def _span_guess_s(workload: WorkloadSpec, n: int) -> float:
    """The expected arrival span (sets the streaming time bins; they widen if it runs longer)."""
    rate = workload.rate_per_s
    return n / rate if rate and workload.trace is None and workload.process != "burst" else 1.0


def _slo(slo: SLO, ttft: np.ndarray, tpot_all: np.ndarray, completed: int, span: float,
         ) -> tuple[float | None, float | None]:
    """(share of completed requests within the SLO, their rate), or (None, None) without an SLO."""
    if slo.ttft_s is None and slo.tpot_s is None:
        return None, None
    good = np.ones(completed, dtype=bool)
    if slo.ttft_s is not None:
        good &= ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        good &= tpot_all <= slo.tpot_s
    return (float(good.mean()) if completed else 0.0), float(good.sum()) / span


def _pool_rows(st: SimState, per_pool: list[float], span: float) -> tuple[dict[str, Any], ...]:
    rows = []
    for p, cap in zip(st.pools, per_pool, strict=True):
        s = p.ps.spec
        rows.append({
            "role": p.role, "hardware": p.ps.hw.id, "replicas": p.ps.replicas, "tp": s.tp, "pp": s.pp, "ep": s.ep,
            "engine": s.engine, "weights_dtype": s.weights_dtype, "kv_dtype": s.kv_dtype,
            "devices_per_replica": p.devices_per_replica, "num_devices": p.ps.num_devices,
            "busy_frac": min(1.0, p.busy_s / (p.ps.replicas * span)), "num_iterations": p.iterations,
            "mean_tokens_per_iteration": p.tokens / max(p.iterations, 1),
            "analytic_max_tokens_per_s": cap,
            "analytic_tokens": "prompt" if p.role == "prefill" else "output"})
    return tuple(rows)


def _result(model: ModelSpec, st: SimState, end: float, scheduler: str, slo: SLO,
            assumptions: tuple[Assumption, ...]) -> SimulationResult:
    """Latency percentiles, rates and per-pool figures of a finished simulation."""
    arrival, out = st.arrival_arr, st.out_arr
    first, done = np.array(st.first, dtype=float), np.array(st.done, dtype=float)
    ok = ~np.isnan(done)
    ttft = (first - arrival)[ok]
    e2e = (done - arrival)[ok]
    multi = ok & (out > 1)
    tpot = ((done - first) / np.maximum(out - 1, 1))[multi]
    span = max(end - float(arrival[0]) if len(arrival) else 0.0, 1e-12)
    completed = int(ok.sum())
    attain, goodput = _slo(slo, ttft, ((done - first) / np.maximum(out - 1, 1))[ok], completed, span)
    mean_in, mean_out = float(np.mean(st.inp_arr)), float(np.mean(out))
    analytic, per_pool = _analytic(model, st.pools, mean_in, mean_out)
    n_replicas = sum(p.ps.replicas for p in st.pools)
    xfer = np.array(st.transfer_s, dtype=float)
    xfer = xfer[~np.isnan(xfer)]
    return SimulationResult(
        num_requests=len(arrival), num_completed=completed, num_rejected=sum(st.rejected),
        ttft_p50_s=_pct(ttft, 50), ttft_p99_s=_pct(ttft, 99), tpot_p50_s=_pct(tpot, 50), tpot_p99_s=_pct(tpot, 99),
        e2e_p50_s=_pct(e2e, 50), e2e_p99_s=_pct(e2e, 99),
        output_tokens_per_s=float(out[ok].sum()) / span, requests_per_s=completed / span,
        slo_attainment_frac=attain, goodput_requests_per_s=goodput, simulated_s=span, scheduler=scheduler,
        num_replicas=n_replicas, num_iterations=st.iterations, num_preemptions=st.preemptions,
        mean_tokens_per_iteration=st.batch_tokens / max(st.iterations, 1),
        busy_frac=min(1.0, st.busy_s / (n_replicas * span)), infeasible_reason=st.infeasible_reason,
        analytic_max_output_tokens_per_s=analytic, num_devices=sum(p.ps.num_devices for p in st.pools),
        pools=_pool_rows(st, per_pool, span), kv_transfer_p50_s=_pct(xfer, 50), kv_transfer_p99_s=_pct(xfer, 99),
        assumptions=assumptions,
        requests={"arrival_s": arrival, "input_tokens": st.inp_arr, "output_tokens": out,
                  "first_token_s": first, "done_s": done, "replica": np.array(st.replica_of)},
    )


def _stream_result(model: ModelSpec, st: SimState, rec: StreamRecorder, end: float, scheduler: str,
                   assumptions: tuple[Assumption, ...]) -> SimulationResult:
    """The figures of a streamed simulation (sim/stats.py: percentiles to within 0.1%)."""
    first_arrival = float(np.min(rec.seg_arrival)) if rec.completed else 0.0
    span = max(end - min(first_arrival, rec.last_arrival_s), 1e-12)
    n = rec.n
    mean_in, mean_out = rec.in_sum / max(n, 1), rec.out_sum / max(n, 1)
    analytic, per_pool = _analytic(model, st.pools, mean_in, mean_out)
    n_replicas = sum(p.ps.replicas for p in st.pools)
    ttft, tpot, e2e = rec.latency(0), rec.latency(1), rec.latency(2)
    has_slo = rec.slo != (None, None)
    note = Assumption("statistics", f"streamed over {n:,} requests",
                      f"more than {STREAM_ABOVE:,} requests: percentiles from histograms with {REL_WIDTH:.1%} "
                      f"bins, the warm-up cut at one of {SEGMENTS} slices by arrival (sim/stats.py)")
    return SimulationResult(
        num_requests=n, num_completed=rec.completed, num_rejected=rec.rejected,
        ttft_p50_s=percentile(ttft, 50), ttft_p99_s=percentile(ttft, 99), tpot_p50_s=percentile(tpot, 50),
        tpot_p99_s=percentile(tpot, 99), e2e_p50_s=percentile(e2e, 50), e2e_p99_s=percentile(e2e, 99),
        output_tokens_per_s=rec.out_done / span, requests_per_s=rec.completed / span,
        slo_attainment_frac=(rec.good / rec.completed if rec.completed else 0.0) if has_slo else None,
        goodput_requests_per_s=rec.good / span if has_slo else None, simulated_s=span, scheduler=scheduler,
        num_replicas=n_replicas, num_iterations=st.iterations, num_preemptions=st.preemptions,
        mean_tokens_per_iteration=st.batch_tokens / max(st.iterations, 1),
        busy_frac=min(1.0, st.busy_s / (n_replicas * span)), infeasible_reason=st.infeasible_reason,
        analytic_max_output_tokens_per_s=analytic, num_devices=sum(p.ps.num_devices for p in st.pools),
        pools=_pool_rows(st, per_pool, span), kv_transfer_p50_s=percentile(rec.xfer, 50),
        kv_transfer_p99_s=percentile(rec.xfer, 99), assumptions=(*assumptions, note), stream=rec)


def write_requests_csv(result: SimulationResult, path: str) -> None:
    """One row per request: arrival, lengths, TTFT, TPOT, end-to-end latency (empty when rejected)."""
    import csv

    if result.requests is None:
        raise InvalidScenario(f"--requests: one row per request is kept for runs of at most {STREAM_ABOVE:,} "
                              f"requests; this run streamed its statistics over {result.num_requests:,} "
                              f"(add --max-requests {STREAM_ABOVE})")
    r = result.requests
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request", "arrival_s", "input_tokens", "output_tokens", "replica", "ttft_s", "tpot_s", "e2e_s"])
        for i in range(len(r.get("arrival_s", ()))):
            a, first, done, out = r["arrival_s"][i], r["first_token_s"][i], r["done_s"][i], r["output_tokens"][i]
            ok = not np.isnan(done)
            w.writerow([i, f"{a:.6f}", int(r["input_tokens"][i]), int(out), int(r["replica"][i]),
                        f"{first - a:.6f}" if ok else "", f"{(done - first) / max(out - 1, 1):.6f}" if ok else "",
                        f"{done - a:.6f}" if ok else ""])
