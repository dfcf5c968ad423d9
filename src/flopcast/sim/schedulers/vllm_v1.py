"""vllm-v1: vLLM's V1 scheduler (vllm/v1/core/sched/scheduler.py `Scheduler.schedule`, the engine of
vLLM >= 0.8): one token budget per step (max_num_batched_tokens), the running requests first, then
the waiting ones. Each running sequence gets its next token's KV pages on demand; when the pool
cannot hold them, the newest running request is preempted (its pages freed, back to the head of the
queue, recomputed later), as in V0 (sim/schedulers/vllm.py, whose page bookkeeping this reuses).
Prompt chunks then fill what is left of the budget: the prompt being prefilled first, then new
requests while the sequence cap and the KV pool allow; a step that preempted admits no new request.

Unlike sarathi (TensorRT-LLM's guaranteed-no-evict: a request's whole sequence reserved at
admission), admission reserves only the prompt, so more sequences run at once and preemption is
the price under memory pressure. Left out: V1 allocates a chunked prompt's pages chunk by chunk
(here all of the prompt's at admission), and the prefix cache (off in these simulations)."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import Chunks, Plan
from flopcast.sim.schedulers.vllm import VllmScheduler
from flopcast.sim.state import Replica


@SCHEDULERS.register("vllm-v1")
class VllmV1Scheduler(VllmScheduler):
    name = "vllm-v1"

    def plan(self, rep: Replica) -> Plan | None:
        """Decode pages on demand (preempting the newest when they do not fit), then prompt chunks."""
        before = self.st.preemptions
        n_dec = self._grow(rep) if rep.decoding else 0
        left = rep.pool.budget - n_dec
        chunks: Chunks = []
        if left > 0:
            chunks = self.prompt_chunks(rep, left) if self.st.preemptions == before else self._started(rep, left)
        if not n_dec and not chunks:
            return None
        return n_dec, chunks

    def _started(self, rep: Replica, left: int) -> Chunks:
        """Chunks of the prompts already being prefilled only (no admission in a step that preempted)."""
        chunks = []
        pre, target = self.st.pre, self.st.target
        for r in rep.prefilling:
            if left <= 0:
                break
            c = int(min(left, target[r] - pre[r]))
            chunks.append((r, c))
            left -= c
        return chunks
