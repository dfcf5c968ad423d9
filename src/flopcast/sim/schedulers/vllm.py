"""vllm: continuous batching with prefill priority (vLLM v0): an iteration either prefills whole new
prompts (up to the token budget, FIFO, if their KV pages fit) or decodes every running sequence.
KV pages are allocated on demand: when the cache cannot hold the next token of every running
sequence, the newest sequence is preempted and later recomputed (its prompt plus the tokens
generated so far are prefilled again), as vLLM does.

On-demand paging stays O(1) per iteration: a sequence needs a new page of a layer group exactly when
its next token is 1 mod block_size (within the group's window), so the pages one decode iteration
needs are counts of decoding sequences by (input + gbase) mod block_size, kept per replica."""

from __future__ import annotations

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import Chunks, ContinuousScheduler, Plan
from flopcast.sim.state import Replica, SimState


class _Pages:
    """A replica's on-demand page bookkeeping."""

    __slots__ = ("pending", "cnt", "expire")

    def __init__(self, rep: Replica):
        self.pending: dict[int, None] = {}       # decoding, first page reservation not yet made
        self.cnt = [[0] * rep.pool.block for _ in rep.pool.page_groups]   # decoding by (input + gbase) % block
        self.expire: dict[int, list[tuple[int, int, int]]] = {}   # step -> (request, group, admission)


@SCHEDULERS.register("vllm")
class VllmScheduler(ContinuousScheduler):
    name = "vllm"
    reserves_whole_sequence = False

    def __init__(self, st: SimState):
        super().__init__(st)
        self.pages = [_Pages(rep) for rep in st.replicas]
        self.kv_groups_of: dict[int, list[int]] = {}   # the page groups a decoding sequence is counted in

    def join_decoding(self, rep: Replica, r: int) -> None:
        super().join_decoding(rep, r)
        self.pages[rep.id].pending[r] = None

    def leave_decoding(self, rep: Replica, r: int) -> float:
        held = super().leave_decoding(rep, r)
        pages = self.pages[rep.id]
        if r in pages.pending:
            del pages.pending[r]
            return held
        a = self.st.inp[r] + self.st.gbase[r]
        for g in self.kv_groups_of.pop(r):
            pages.cnt[g][a % rep.pool.block] -= 1
        return rep.pool.kv_bytes(a + rep.step)

    def plan(self, rep: Replica) -> Plan | None:
        """Prefill priority: whole prompts while they fit, else one decode step for all."""
        chunks: Chunks = []
        left = rep.pool.budget
        target = self.st.target
        while rep.waiting and rep.n_running < rep.pool.max_seqs:
            r = rep.waiting[0]
            size = int(target[r])
            if chunks and size > left:
                break
            if self.admit(rep, 0) is None:
                break
            chunks.append((r, size))
            left -= size
        if chunks:
            return 0, chunks
        n_dec = self._grow(rep)
        return (n_dec, []) if n_dec else None

    def _expire_windows(self, rep: Replica, pages: _Pages) -> None:
        """Sequences past a sliding window need no more pages in that layer group."""
        st, block = self.st, rep.pool.block
        for r, g, a in pages.expire.pop(rep.step, ()):
            groups = self.kv_groups_of.get(r)
            if st.adm[r] == a and r in rep.decoding and groups is not None and g in groups:
                groups.remove(g)
                pages.cnt[g][(st.inp[r] + st.gbase[r]) % block] -= 1

    def _grow(self, rep: Replica) -> int:
        """Reserve the next token's pages for every decoding sequence, preempting the newest ones
        (back to the head of the queue, to be recomputed) until they fit; the decoding count."""
        pool, s, pages = rep.pool, rep.step, self.pages[rep.id]
        inp, gbase, kv_held = self.st.inp, self.st.gbase, self.st.kv_held
        self._expire_windows(rep, pages)
        rho = (-s) % pool.block
        while rep.decoding:
            first = {}
            for r in pages.pending:      # first decode step after (re)prefill: from the admission reservation
                held = kv_held[r]
                first[r] = max(pool.kv_bytes(inp[r] + gbase[r] + s + 1), held) - held
            extra = sum(page * pages.cnt[g][rho] for g, (page, _) in enumerate(pool.page_groups)) + sum(first.values())
            if extra <= rep.kv_free:
                rep.kv_free -= extra
                self._count_pending(rep, pages, first)
                return len(rep.decoding)
            self._preempt_newest(rep)
        return 0

    def _count_pending(self, rep: Replica, pages: _Pages, first: dict[int, float]) -> None:
        """The pending sequences' first pages are reserved: from now on, one page per group every
        block tokens (until a group's window)."""
        st, pool, s = self.st, rep.pool, rep.step
        block = pool.block
        for r in pages.pending:
            a = st.inp[r] + st.gbase[r]
            st.kv_held[r] = first[r] + st.kv_held[r]
            groups = []
            for g, (_, w) in enumerate(pool.page_groups):
                if w is None or a + s + 2 <= w:
                    pages.cnt[g][a % block] += 1
                    groups.append(g)
                    if w is not None:
                        pages.expire.setdefault(w - a, []).append((r, g, st.adm[r]))
            self.kv_groups_of[r] = groups
        pages.pending.clear()

    def _preempt_newest(self, rep: Replica) -> None:
        st = self.st
        victim = next(reversed(rep.decoding))
        rep.kv_free += self.leave_decoding(rep, victim)
        rep.n_running -= 1
        st.kv_held[victim] = 0.0
        st.target[victim] = st.inp[victim] + st.gen[victim]
        st.pre[victim] = 0
        rep.waiting.appendleft(victim)
        st.preemptions += 1

