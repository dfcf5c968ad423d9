"""sglang: SGLang's default scheduler (python/sglang/srt/managers/scheduler.py
`get_next_batch_to_run`): prefill first. Whenever a prefill batch can be formed (the prompt being
chunked continues first, then waiting requests while the running-request cap and the KV pool allow,
up to the chunk size `chunked_prefill_size`, the pool's token budget here; the last prompt may be
split), the iteration is that prefill batch alone; the running requests decode only in iterations
when no prompt can be admitted. Prefill and decode are not mixed in one batch unless
`--enable-mixed-chunk` (off by default; the sarathi scheduler is that mixed form).

KV admission (`PrefillAdder`): pages are allocated on demand, and a request is admitted when the
free pool covers its prompt plus new_token_ratio times the remaining output of every running
request and of its own, so admission is optimistic about how much the running requests will still
write. new_token_ratio starts at 0.7 (global_config default_init_new_token_ratio, times
schedule_conservativeness 1) and falls by (0.7 - 0.7 x 0.14) / 600 per decode step to 0.098; when a
decode step finds no free page, requests are retracted (`retract_decode`: freed, back to the queue,
their prompt and output so far prefilled again) and the ratio goes back up. Here the retracted
request is the newest one (sim/schedulers/vllm.py `_preempt_newest`, whose on-demand page
bookkeeping this reuses) and the ratio returns to 0.7, where SGLang sorts the victims by output
length and re-estimates the ratio from the retracted requests. Under a load past capacity this makes
SGLang's TTFT stay short (prompts keep being admitted first) while the end-to-end latency grows."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import Plan
from flopcast.sim.schedulers.vllm import VllmScheduler
from flopcast.sim.state import Replica, SimState

INIT_NEW_TOKEN_RATIO = 0.7           # sglang global_config.default_init_new_token_ratio
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14    # default_min_new_token_ratio_factor
NEW_TOKEN_RATIO_DECAY_STEPS = 600    # default_new_token_ratio_decay_steps
PER_TOKEN_SAMPLE = 1 << 14           # tokens over which a replica's KV bytes per token are averaged


class _Reserve:
    """A replica's admission state: the new-token ratio and the running requests' remaining outputs
    (prefilling ones summed directly, decoding ones as sum(output - gbase) - n_decoding x step)."""

    __slots__ = ("ratio", "prefilling", "decoding", "per_token_bytes")

    def __init__(self, rep: Replica):
        self.ratio = INIT_NEW_TOKEN_RATIO
        self.prefilling = 0.0
        self.decoding = 0.0
        self.per_token_bytes = rep.pool.kv_bytes(PER_TOKEN_SAMPLE) / PER_TOKEN_SAMPLE


@SCHEDULERS.register("sglang")
class SglangScheduler(VllmScheduler):
    name = "sglang"

    def __init__(self, st: SimState):
        super().__init__(st)
        self.reserve = [_Reserve(rep) for rep in st.replicas]
        self.remaining: dict[int, float] = {}      # prefilling request -> remaining output counted at admission

    def plan(self, rep: Replica) -> Plan | None:
        """A prefill-only batch when any prompt chunk can run, else one decode step for all."""
        chunks = self.prompt_chunks(rep, rep.pool.budget)
        if chunks:
            return 0, chunks
        n_dec = self._grow(rep) if rep.decoding else 0
        if not n_dec:
            chunks = self.prompt_chunks(rep, rep.pool.budget)     # everything was retracted
            return (0, chunks) if chunks else None
        res = self.reserve[rep.id]
        floor = INIT_NEW_TOKEN_RATIO * MIN_NEW_TOKEN_RATIO_FACTOR
        res.ratio = max(floor, res.ratio - (INIT_NEW_TOKEN_RATIO - floor) / NEW_TOKEN_RATIO_DECAY_STEPS)
        return n_dec, []

    def admit(self, rep: Replica, extra_tokens: int) -> int | None:
        """Admit the oldest waiting request when the free pool covers its prompt plus the ratio of
        every running request's remaining output and of its own (pages for the prompt only)."""
        if not rep.waiting or rep.n_running >= rep.pool.max_seqs:
            return None
        st, res = self.st, self.reserve[rep.id]
        r = rep.waiting[0]
        future = res.prefilling + res.decoding - len(rep.decoding) * rep.step + (st.out[r] - st.gen[r])
        if rep.pool.kv_bytes(int(st.target[r])) + res.ratio * future * res.per_token_bytes > rep.kv_free:
            return None
        a = super().admit(rep, 0)
        if a is not None:
            self.remaining[a] = float(st.out[a] - st.gen[a])
            res.prefilling += self.remaining[a]
        return a

    def join_decoding(self, rep: Replica, r: int) -> None:
        super().join_decoding(rep, r)
        res = self.reserve[rep.id]
        res.prefilling -= self.remaining.pop(r, 0.0)
        res.decoding += self.st.out[r] - self.st.gbase[r]

    def leave_decoding(self, rep: Replica, r: int) -> float:
        self.reserve[rep.id].decoding -= self.st.out[r] - self.st.gbase[r]
        return super().leave_decoding(rep, r)

    def complete(self, rep: Replica, r: int, now: float) -> None:
        if r in self.remaining:        # ended with its prompt (one output token): never decoded
            self.reserve[rep.id].prefilling -= self.remaining.pop(r)
        super().complete(rep, r, now)

    def _preempt_newest(self, rep: Replica) -> None:
        super()._preempt_newest(rep)
        self.reserve[rep.id].ratio = INIT_NEW_TOKEN_RATIO
