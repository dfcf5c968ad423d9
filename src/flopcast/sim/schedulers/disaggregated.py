"""disaggregated: prefill replicas run prefill-only iterations; each prompt's KV cache then moves to
the decode replica with the fewest outstanding requests (`kv_transfer_s`), which decodes
continuously. The first token is computed by the prefill replica and reaches the client with the KV
cache, through the decode replica (SGLang, Dynamo and vLLM's P/D connectors stream the output from
the decode instance), so TTFT includes the transfer. Engine events: `kv_ready` (the KV cache reached
its decode replica) and `kv_sent` (the prefill replica frees the pages it sent)."""

from __future__ import annotations

from typing import Any

from flopcast.sim.schedulers.base import SCHEDULERS
from flopcast.sim.schedulers.continuous import ContinuousScheduler, Plan
from flopcast.sim.state import Replica, SimState

_KV_TRANSFER: dict[str, Any] | None = None


def kv_transfer_params() -> dict[str, Any]:
    """catalog/efficiency.yaml `kv_transfer`: point-to-point bandwidth fraction and per-transfer latency."""
    global _KV_TRANSFER
    if _KV_TRANSFER is None:
        from flopcast.catalog import CATALOG_DIR, _read_yaml

        d = _read_yaml(CATALOG_DIR / "efficiency.yaml")["kv_transfer"]
        _KV_TRANSFER = {"bandwidth_frac": float(d["bandwidth_frac"]), "latency_s": float(d["latency_s"]),
                        "source": str(d["source"])}
    return _KV_TRANSFER


@SCHEDULERS.register("disaggregated")
class DisaggregatedScheduler(ContinuousScheduler):
    name = "disaggregated"

    def __init__(self, st: SimState):
        super().__init__(st)
        pre, dec = st.by_role["prefill"][0].pool, st.by_role["decode"][0].pool
        x = kv_transfer_params()
        self.kv_link_bytes_per_s = min(pre.nic_bytes_per_s, dec.nic_bytes_per_s) * x["bandwidth_frac"]
        self.kv_latency_s = x["latency_s"]
        self.kv_dtype = dec.ps.spec.kv_dtype
        self._xfer_memo: dict[int, float] = {}

    def kv_transfer_s(self, tokens: int) -> float:
        """Time to move a prompt's KV cache from its prefill replica to its decode replica: the
        sequence's KV bytes (model-wide, in the decode pool's kv dtype) over the slower side's
        scale-out NICs (tp x pp per replica, the sequence's attention rank) at the measured
        point-to-point efficiency, plus a per-transfer latency (catalog/efficiency.yaml kv_transfer)."""
        t = self._xfer_memo.get(tokens)
        if t is None:
            from flopcast.estimate.counts import kv_cache_bytes_per_sequence

            nbytes = kv_cache_bytes_per_sequence(self.st.model, tokens, self.kv_dtype)
            t = self._xfer_memo[tokens] = self.kv_latency_s + nbytes / self.kv_link_bytes_per_s
        return t

    def plan(self, rep: Replica) -> Plan | None:
        if rep.role == "prefill":
            chunks = self.prompt_chunks(rep, rep.pool.budget)
            return (0, chunks) if chunks else None
        while self.admit(rep, 1) is not None:      # decode replica: every KV cache that has arrived
            pass
        n_dec = len(rep.decoding)
        return (n_dec, []) if n_dec else None

    def hand_over(self, rep: Replica, requests: list[int], now: float) -> None:
        """Prefilled: each to the decode replica with the fewest outstanding requests."""
        st = self.st
        for r in requests:
            rep.n_running -= 1
            rep.loads[rep.ri] -= 1
            dest = st.route("decode")
            dest.incoming += 1
            dest.loads[dest.ri] += 1
            st.replica_of[r] = dest.id
            st.target[r] = st.inp[r] + st.gen[r]
            sent = st.kv_held[r]
            st.kv_held[r] = 0.0
            t_send = self.kv_transfer_s(st.inp[r])
            st.transfer_s[r] = t_send
            st.push(now + t_send, "kv_ready", dest.id, r)
            st.push(now + t_send, "kv_sent", rep.id, sent)

    def on_event(self, kind: str, rep: Replica, data: Any, now: float) -> None:
        if kind == "kv_ready":     # a prefilled request reaches its decode replica: first token out
            rep.incoming -= 1
            rep.waiting.append(data)
            first = self.st.first
            if first[data] != first[data]:
                first[data] = now
        elif kind == "kv_sent":      # the prefill replica frees the pages it sent
            rep.kv_free += data
        else:
            super().on_event(kind, rep, data, now)

