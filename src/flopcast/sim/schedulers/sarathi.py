"""sarathi: continuous batching with chunked prefill (Sarathi-Serve, vLLM v1, TensorRT-LLM in-flight
batching): every iteration decodes every running sequence and fills the rest of the token budget
with prompt chunks, oldest first."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import ContinuousScheduler, Plan
from flopcast.sim.state import Replica


@SCHEDULERS.register("sarathi")
class SarathiScheduler(ContinuousScheduler):
    name = "sarathi"

    def plan(self, rep: Replica) -> Plan | None:
        n_dec = len(rep.decoding)
        chunks = self.prompt_chunks(rep, rep.pool.budget - n_dec) if rep.prefilling or rep.waiting else []
        if not n_dec and not chunks:
            return None
        return n_dec, chunks

