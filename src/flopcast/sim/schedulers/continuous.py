"""Continuous batching, the machinery vllm, sarathi and disaggregated share: admission of the
oldest waiting request when the admission limits and its KV pages allow, prompts built in chunks
(a FIFO whose completed chunks are always its head), decoding sequences advanced in lockstep (the
engine's module docstring: `gbase`, `step`, the finish heap), and the end of an iteration. A
subclass says what one iteration carries (`plan`)."""

from __future__ import annotations

import heapq
from abc import abstractmethod
from typing import Any

from flopcast.sim.schedulers.base import Scheduler
from flopcast.sim.state import Replica, SimState

_heappop, _heappush = heapq.heappop, heapq.heappush
Chunks = list[tuple[int, int]]          # (request, prompt tokens built in this iteration)
Plan = tuple[int, Chunks]               # (decoding sequences advanced, prompt chunks)


class ContinuousScheduler(Scheduler):
    """Iteration-level scheduling over one replica's prefilling and decoding sequences."""

    # reserve a request's whole sequence at admission (TensorRT-LLM guaranteed-no-evict); vllm
    # allocates pages on demand instead
    reserves_whole_sequence = True

    def __init__(self, st: SimState):
        super().__init__(st)
        # leave_decoding and join_decoding as defined here (vllm's extends them): finish inlines them
        self._plain_leave = type(self).leave_decoding is ContinuousScheduler.leave_decoding
        self._plain_join = type(self).join_decoding is ContinuousScheduler.join_decoding

    @abstractmethod
    def plan(self, rep: Replica) -> Plan | None:
        """(decoding sequences advanced, prompt chunks) of the next iteration, or None (idle)."""

    # --- admission ------------------------------------------------------------------------------
    def admit(self, rep: Replica, extra_tokens: int) -> int | None:
        """Admit the oldest waiting request if the replica runs fewer than its sequence limit and
        its pages fit: target + extra tokens, or (reserves_whole_sequence, except on a prefill
        replica) its whole sequence; its id or None."""
        st, pool, waiting = self.st, rep.pool, rep.waiting
        if not waiting or rep.n_running >= pool.max_seqs:
            return None
        r = waiting[0]
        role = rep.role
        if self.reserves_whole_sequence and role != "prefill":
            rest = st.out[r] - st.gen[r]
            if rest > extra_tokens:
                extra_tokens = rest
        tokens = st.target[r] + extra_tokens
        try:
            need = pool._kv_memo[tokens]         # pool.kv_bytes, its memo read inline
        except KeyError:
            need = pool.kv_bytes(tokens)
        if need > rep.kv_free:
            return None
        waiting.popleft()
        rep.n_running += 1
        st.adm_seq = a = st.adm_seq + 1
        st.adm[r] = a
        rep.kv_free -= need
        st.kv_held[r] = need
        if role == "decode":    # prefilled elsewhere: straight into decoding
            st.pre[r] = st.target[r]
            self.join_decoding(rep, r)
        else:
            rep.prefilling.append(r)
        return r

    def join_decoding(self, rep: Replica, r: int) -> None:
        st = self.st
        gb = st.gen[r] - rep.step
        st.gbase[r] = gb
        rep.decoding[r] = None
        rep.ctx_base += st.inp[r] + gb
        heapq.heappush(rep.fin, (st.out[r] - gb, st.adm[r], r))

    def leave_decoding(self, rep: Replica, r: int) -> float:
        """Remove decoding sequence r from the replica's aggregates; the KV bytes it held."""
        st = self.st
        del rep.decoding[r]
        gb = st.gbase[r]
        rep.ctx_base -= st.inp[r] + gb
        st.gen[r] = gb + rep.step
        return st.kv_held[r]

    def prompt_chunks(self, rep: Replica, left: int) -> Chunks:
        """Fill `left` tokens with prompt chunks: prompts already started first, then new admissions."""
        chunks = []
        pre, target = self.st.pre, self.st.target
        for r in rep.prefilling:
            if left <= 0:
                break
            c = target[r] - pre[r]
            if c > left:
                c = left
            chunks.append((r, c))
            left -= c
        if left > 0 and rep.waiting:
            admit, waiting = self.admit, rep.waiting
            while left > 0 and waiting:
                a = admit(rep, 0)
                if a is None:
                    break
                c = target[a]
                if c > left:
                    c = left
                chunks.append((a, c))
                left -= c
        return chunks

    # --- one iteration ----------------------------------------------------------------------------
    def start(self, rep: Replica, now: float) -> None:
        plan = self.plan(rep)
        if plan is None:
            rep.busy = False
            return
        st = self.st
        n_dec, chunks = plan
        n_pre = finishing = 0
        keys = 0.0
        if chunks:
            pre, target = st.pre, st.target
            for r, c in chunks:
                n_pre += c
                keys += c * (pre[r] + c / 2)
                if pre[r] + c >= target[r]:
                    finishing += 1
        ctx_sum = float(n_dec * rep.step + rep.ctx_base) if n_dec else 0.0
        dt = rep.pool.cost.time_s(n_dec, ctx_sum, n_pre, keys, n_dec + finishing)
        if st.trace is not None:
            st.trace_start(rep, now, {*(rep.decoding if n_dec else ()), *(r for r, _ in chunks)})
        st.launch(rep, now, dt, n_dec + n_pre, plan)

    def finish(self, rep: Replica, now: float, plan: Any) -> None:
        n_dec, chunks = plan
        if n_dec:
            rep.step += 1
        fin = rep.fin
        ended = self._decoded_to_the_end(rep) if fin and fin[0][0] <= rep.step else []
        handover = self._built(rep, chunks, now, ended) if chunks else []
        if ended:
            if len(ended) > 1:
                ended.sort()
            self._retire(rep, ended, now)
        if handover:
            self.hand_over(rep, handover, now)

    def _retire(self, rep: Replica, ended: list[tuple[int, int]], now: float) -> None:
        """`complete` of each ended (admission, request), in that order, done for all at once: the
        decoding ones leave the aggregates (leave_decoding, inline unless a subclass extends it), then
        every one is released (SimState.release_all)."""
        st = self.st
        decoding = rep.decoding
        rs = [r for _, r in ended]
        if not self._plain_leave:
            held = [self.leave_decoding(rep, r) if r in decoding else st.kv_held[r] for r in rs]
            st.release_all(rep, rs, now, held)
            return
        inp, gbase, gen, step = st.inp, st.gbase, st.gen, rep.step
        ctx = 0
        for r in rs:
            if r in decoding:          # leave_decoding, inline (the KV bytes it returns are kv_held's)
                del decoding[r]
                gb = gbase[r]
                ctx += inp[r] + gb
                gen[r] = gb + step
        rep.ctx_base -= ctx
        st.release_all(rep, rs, now)

    def _decoded_to_the_end(self, rep: Replica) -> list[tuple[int, int]]:
        """(admission, request) of the decoding sequences whose last token this iteration made."""
        adm, fin, step, decoding = self.st.adm, rep.fin, rep.step, rep.decoding
        ended = []
        while fin and fin[0][0] <= step:
            _, a, r = _heappop(fin)
            if adm[r] == a and r in decoding:      # else preempted since (a stale entry)
                ended.append((a, r))
        return ended

    def _built(self, rep: Replica, chunks: Chunks, now: float, ended: list[tuple[int, int]]) -> list[int]:
        """Add the chunks to their prompts; a prompt built makes its first token (colocated: out at
        once; a prefill replica's goes out with the KV cache) and then ends, decodes here, or (a
        prefill replica) goes to the returned hand-over list."""
        st = self.st
        pre, target, gen, first, out, adm = st.pre, st.target, st.gen, st.first, st.out, st.adm
        done_prefill = 0
        handover: list[int] = []
        joining: list[int] = []
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
                    joining.append(r)
                else:
                    handover.append(r)
        if done_prefill:
            del rep.prefilling[:done_prefill]
        if joining:
            self._join_all(rep, joining)
        return handover

    def _join_all(self, rep: Replica, rs: list[int]) -> None:
        """join_decoding of each request in order (inline unless a subclass extends it)."""
        if not self._plain_join:
            for r in rs:
                self.join_decoding(rep, r)
            return
        st = self.st
        gen, gbase, inp, out, adm = st.gen, st.gbase, st.inp, st.out, st.adm
        decoding, fin, step = rep.decoding, rep.fin, rep.step
        ctx = 0
        for r in rs:
            gb = gen[r] - step
            gbase[r] = gb
            decoding[r] = None
            ctx += inp[r] + gb
            _heappush(fin, (out[r] - gb, adm[r], r))
        rep.ctx_base += ctx

    def hand_over(self, rep: Replica, requests: list[int], now: float) -> None:
        """Prefilled requests leave a prefill replica (disaggregated serving only: reaching this on
        another scheduler is a bug in the engine)."""
        raise RuntimeError(f"scheduler {self.name} has no prefill replicas")

    def complete(self, rep: Replica, r: int, now: float) -> None:
        self._retire(rep, [(0, r)], now)
