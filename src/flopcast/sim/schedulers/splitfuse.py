"""splitfuse: DeepSpeed-FastGen's Dynamic SplitFuse (microsoft/DeepSpeed blogs/deepspeed-fastgen,
sec. 3B): every forward runs a fixed token budget (DeepSpeed-MII's max_ragged_batch_size, 768 by
default): one token for every decoding sequence first, then prompt tokens to fill the budget
exactly: long prompts split into chunks across forwards (only the last chunk generates), short
prompts composed together, and even a short prompt split so that the budget is met. A forward holds
at most max_ragged_sequence_count sequences (the pool's sequence limit, 512 by default).

Composition is Sarathi-Serve's; the difference lies in the engine (a small fixed budget, eager
kernels, its own KV accounting: estimate/serving.py kv_capacity_bytes) and in the per-forward
sequence cap: a prompt chunk takes a sequence slot of the forward, so decodes plus chunks never
exceed the limit."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import ContinuousScheduler, Plan
from flopcast.sim.state import Replica


@SCHEDULERS.register("splitfuse")
class SplitFuseScheduler(ContinuousScheduler):
    name = "splitfuse"

    def plan(self, rep: Replica) -> Plan | None:
        """Decodes first, then prompt chunks filling the rest of the fixed budget."""
        n_dec = len(rep.decoding)
        left = rep.pool.budget - n_dec
        chunks = self.prompt_chunks(rep, left) if left > 0 else []
        if not n_dec and not chunks:
            return None
        return n_dec, chunks
