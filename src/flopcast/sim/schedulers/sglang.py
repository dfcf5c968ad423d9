"""sglang: SGLang's default scheduler (python/sglang/srt/managers/scheduler.py
`get_next_batch_to_run`): prefill first. Whenever a prefill batch can be formed (the prompt being
chunked continues first, then waiting requests while the running-request cap and the KV pool
allow, up to the chunk size `chunked_prefill_size`, the pool's token budget here; the last prompt
may be split), the iteration is that prefill batch alone; the running requests decode only in
iterations when no prompt can be admitted (none waits, or the KV pool or the request cap is full).
Prefill and decode are not mixed in one batch unless `--enable-mixed-chunk` (off by default; the
sarathi scheduler is that mixed form). Under a burst the running requests therefore wait for their
next token until the KV pool fills, which is what makes SGLang's end-to-end latency exceed its TTFT
by far more than the decode steps themselves take.

KV admission reserves the request's whole sequence (the ContinuousScheduler rule), where SGLang's
PrefillAdder reserves the prompt plus new_token_ratio (0.7 decaying to 0.1 per decode step) of each
request's remaining output and retracts requests when decode runs out of pages: the reservation
here is the conservative end of that rule and retraction is left out."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import ContinuousScheduler, Plan
from flopcast.sim.state import Replica


@SCHEDULERS.register("sglang")
class SglangScheduler(ContinuousScheduler):
    name = "sglang"

    def plan(self, rep: Replica) -> Plan | None:
        """A prefill-only batch when any prompt chunk can run, else one decode step for all."""
        chunks = self.prompt_chunks(rep, rep.pool.budget)
        if chunks:
            return 0, chunks
        n_dec = len(rep.decoding)
        return (n_dec, []) if n_dec else None
