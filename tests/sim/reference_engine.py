"""A deliberately plain serving simulator, the oracle for flopcast.sim.engine's fast representation.

It keeps every running sequence's generated count explicitly and rescans the running list on every
iteration (what flopcast.sim.engine did before it kept lockstep offsets and running sums), for the
colocated schedulers (static, vllm, sarathi), with the engine's event order and scheduling rules
(module docstring of flopcast.sim.engine). Every iteration is timed by summing the serving model's
`iteration_breakdown_s` directly (the engine assembles the same time from memoised tables). It
shares no simulation code with the engine; it returns (first_token_s, done_s, preemptions)."""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from flopcast.estimate import serving as sv_mod
from flopcast.sim.workload import generate

CTX_BUCKET = 8


def simulate(model, hw, spec, workload, scheduler: str):
    sv = sv_mod.prepare(model, hw, spec)
    budget = spec.max_tokens_per_iteration
    max_seqs = spec.batch_size or budget
    if spec.max_batch_size is not None:          # the engine's cap on concurrent sequences
        max_seqs = min(max_seqs, spec.max_batch_size)
    free = max(sv_mod.memory_split(sv)[3], 0.0)
    groups = sv_mod.kv_page_groups(sv)
    arrival, inp, out = (a.tolist() for a in generate(workload))
    n = len(arrival)
    gen, target, pre, held = [0] * n, [0] * n, [0] * n, [0.0] * n
    first, done = [math.nan] * n, [math.nan] * n
    memo: dict = {}
    reps = [{"id": i, "waiting": deque(), "running": [], "busy": False, "batch": None, "kv_free": free}
            for i in range(spec.dp)]
    events: list = []
    seq = [0]
    preemptions = [0]

    def kv(tokens):
        return sv_mod.kv_bytes_per_sequence(sv, tokens, groups)

    def cost(n_dec, ctx_sum, n_pre, keys_sum, n_sampled):
        ctx = round(ctx_sum / n_dec / CTX_BUCKET) if n_dec else 0
        prompt = round(2 * keys_sum / n_pre / CTX_BUCKET) if n_pre else 0
        key = (n_dec, ctx, n_pre, prompt, n_sampled)
        if key not in memo:
            memo[key] = sum(sv_mod.iteration_breakdown_s(sv, n_dec, ctx * CTX_BUCKET, n_pre, prompt * CTX_BUCKET,
                                                         n_sampled).values())
        return memo[key]

    def admit(rep, extra):
        if not rep["waiting"] or len(rep["running"]) >= max_seqs:
            return None
        r = rep["waiting"][0]
        if scheduler != "vllm":
            extra = max(extra, out[r] - gen[r])
        need = kv(target[r] + extra)
        if need > rep["kv_free"]:
            return None
        rep["waiting"].popleft()
        rep["running"].append(r)
        rep["kv_free"] -= need
        held[r] = need
        return r

    def grow(rep, decoding):
        if scheduler != "vllm":
            return decoding
        while decoding:
            need = [max(kv(inp[r] + gen[r] + 1), held[r]) for r in decoding]
            extra = float(np.sum(np.array(need) - np.array([held[r] for r in decoding])))
            if extra <= rep["kv_free"]:
                rep["kv_free"] -= extra
                for r, b in zip(decoding, need, strict=True):
                    held[r] = b
                return decoding
            victim = decoding.pop()
            rep["running"].remove(victim)
            rep["kv_free"] += held[victim]
            held[victim] = 0.0
            target[victim] = inp[victim] + gen[victim]
            pre[victim] = 0
            rep["waiting"].appendleft(victim)
            preemptions[0] += 1
        return decoding

    def chunks_for(rep, left):
        chunks = []
        for r in rep["running"]:
            if left <= 0:
                break
            if pre[r] < target[r]:
                c = min(left, target[r] - pre[r])
                chunks.append((r, c))
                left -= c
        while left > 0:
            r = admit(rep, 0)
            if r is None:
                break
            c = min(left, target[r])
            chunks.append((r, c))
            left -= c
        return chunks

    def plan(rep):
        if scheduler == "static":
            if rep["batch"] is None:
                batch = []
                while rep["waiting"] and len(batch) < max_seqs:
                    r = rep["waiting"][0]
                    need = kv(inp[r] + out[r])
                    if need > rep["kv_free"]:
                        break
                    rep["waiting"].popleft()
                    rep["running"].append(r)
                    rep["kv_free"] -= need
                    held[r] = need
                    batch.append(r)
                if not batch:
                    return None
                rep["batch"] = batch
            pending = [r for r in rep["batch"] if pre[r] < target[r]]
            if pending:
                chunks, left = [], budget
                for r in pending:
                    if left <= 0:
                        break
                    c = min(left, target[r] - pre[r])
                    chunks.append((r, c))
                    left -= c
                return [], chunks, 0
            live = [r for r in rep["batch"] if gen[r] < out[r]]
            return (live, [], len(rep["batch"])) if live else None
        decoding = [r for r in rep["running"] if pre[r] >= target[r]]
        if scheduler == "vllm":
            chunks, left = [], budget
            while rep["waiting"] and len(rep["running"]) < max_seqs:
                r = rep["waiting"][0]
                if chunks and target[r] > left:
                    break
                if admit(rep, 0) is None:
                    break
                chunks.append((r, target[r]))
                left -= target[r]
            if chunks:
                return [], chunks, 0
            decoding = grow(rep, decoding)
            return (decoding, [], len(decoding)) if decoding else None
        chunks = chunks_for(rep, budget - len(decoding))
        if not decoding and not chunks:
            return None
        return decoding, chunks, len(decoding)

    def start(rep, now):
        p = plan(rep)
        if p is None:
            return
        decoding, chunks, n_dec = p
        ctx_sum = float(sum(inp[r] + gen[r] for r in decoding))
        if scheduler == "static" and decoding:
            ctx_sum = ctx_sum * n_dec / len(decoding)
        finishing = sum(1 for r, c in chunks if pre[r] + c >= target[r])
        dt = cost(n_dec, ctx_sum, sum(c for _, c in chunks), sum(c * (pre[r] + c / 2) for r, c in chunks),
                  len(decoding) + finishing)
        rep["busy"] = True
        seq[0] += 1
        heapq.heappush(events, (now + dt, seq[0], rep["id"], (decoding, chunks)))

    def complete(rep, r, now):
        if done[r] != done[r]:
            done[r] = now
            if first[r] != first[r]:
                first[r] = now
        rep["running"].remove(r)
        rep["kv_free"] += held[r]
        held[r] = 0.0

    def finish(rep, now, data):
        decoding, chunks = data
        for r in decoding:
            gen[r] += 1
        for r, c in chunks:
            pre[r] += c
            if pre[r] >= target[r] and (scheduler != "static" or gen[r] == 0):
                gen[r] += 1
                if first[r] != first[r]:
                    first[r] = now
        if scheduler == "static":
            batch = rep["batch"]
            if all(pre[r] >= target[r] for r in batch) and all(gen[r] >= out[r] for r in batch):
                for r in batch:
                    complete(rep, r, now)
                rep["batch"] = None
            return
        for r in [r for r in rep["running"] if gen[r] >= out[r] and pre[r] >= target[r]]:
            complete(rep, r, now)

    nxt = 0
    while nxt < n or events:
        now = min(arrival[nxt] if nxt < n else math.inf, events[0][0] if events else math.inf)
        woken = set()
        while nxt < n and arrival[nxt] <= now:
            r = nxt
            nxt += 1
            if kv(inp[r] + out[r]) > free:
                continue
            rep = min(reps, key=lambda x: (len(x["waiting"]) + len(x["running"]), x["id"]))
            target[r] = inp[r]
            rep["waiting"].append(r)
            woken.add(rep["id"])
        while events and events[0][0] <= now:
            _, _, rid, data = heapq.heappop(events)
            finish(reps[rid], now, data)
            reps[rid]["busy"] = False
            woken.add(rid)
        for rid in sorted(woken):
            if not reps[rid]["busy"]:
                start(reps[rid], now)
    return np.array(first), np.array(done), preemptions[0]
