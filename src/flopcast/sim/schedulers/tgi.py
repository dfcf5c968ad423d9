"""tgi: Hugging Face text-generation-inference's router (backends/v3/src/backend.rs `batching_task`,
queue.rs `next_batch`). A forward is either a prefill of new requests or a decode step of the whole
running batch; during a prefill the running sequences wait.

- With nothing running, the waiting requests are prefilled at once.
- With B sequences running, a prefill of waiting requests joins the batch only if at least
  floor(B x waiting_served_ratio) of them (1.2 by default) can be taken, or after max_waiting_tokens
  (20) decode steps since the last prefill, when any number goes.
- A prefill takes requests oldest first while their prompts fit max_batch_prefill_tokens (the token
  budget, 4096 by default; the first always goes) and their whole sequence (prompt + max new
  tokens) fits the KV tokens left (max_batch_total_tokens minus the running batch's): TGI reserves
  every request's full length when it enters the batch.
"""

from __future__ import annotations

import math

from flopcast.estimate.efficiency import serving_engine
from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import Chunks, ContinuousScheduler, Plan
from flopcast.sim.state import Replica, SimState


@SCHEDULERS.register("tgi")
class TgiScheduler(ContinuousScheduler):
    name = "tgi"

    def __init__(self, st: SimState):
        super().__init__(st)
        self.since_prefill = [0] * len(st.replicas)     # decode steps since the replica's last prefill
        engine = serving_engine(st.replicas[0].pool.ps.spec.engine) if st.replicas else None
        self.max_waiting = (engine.max_waiting_steps if engine and engine.max_waiting_steps else 20)
        self.ratio = (engine.waiting_served_ratio if engine and engine.waiting_served_ratio else 1.2)

    def plan(self, rep: Replica) -> Plan | None:
        chunks = self._prefill(rep)
        if chunks:
            self.since_prefill[rep.id] = 0
            return 0, chunks
        n_dec = len(rep.decoding)
        if not n_dec:
            return None
        self.since_prefill[rep.id] += 1
        return n_dec, []

    def _takeable(self, rep: Replica) -> int:
        """How many waiting requests the next prefill could take (queue order, token budget, KV
        tokens left, the sequence limit), without taking them."""
        st, pool = self.st, rep.pool
        left, kv, n = pool.budget, rep.kv_free, 0
        room = pool.max_seqs - rep.n_running
        for r in rep.waiting:
            if n >= room:
                break
            size = int(st.target[r])
            need = pool.kv_bytes(int(st.target[r] + st.out[r] - st.gen[r]))
            if (n and size > left) or need > kv:
                break
            n += 1
            left -= size
            kv -= need
        return n

    def _prefill(self, rep: Replica) -> Chunks:
        """The requests of the next prefill forward, admitted, or [] (decode instead)."""
        if not rep.waiting:
            return []
        running = len(rep.decoding)
        n = self._takeable(rep)
        forced = running == 0 or self.since_prefill[rep.id] >= self.max_waiting
        if n == 0 or (not forced and n < math.floor(running * self.ratio)):
            return []
        chunks: Chunks = []
        for _ in range(n):
            r = self.admit(rep, 0)
            if r is None:
                break
            chunks.append((r, int(self.st.target[r])))
        return chunks
