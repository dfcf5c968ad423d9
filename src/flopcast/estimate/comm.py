"""Alpha-beta costs of collectives (NCCL ring conventions, nccl-tests PERFORMANCE.md).

For n ranks, a message of M bytes per rank, achieved per-direction bandwidth W, per-step latency
alpha and per-call latency alpha_0:  all-reduce  2 (n-1)/n M / W + 2 (n-1) alpha + alpha_0;
reduce-scatter and all-gather (n-1)/n M / W + (n-1) alpha + alpha_0;  all-to-all the same;
point-to-point M / W + alpha + alpha_0.
Hierarchical all-reduce (groups spanning nodes): reduce-scatter inside the scale-up domain,
all-reduce of the 1/n_in shard across it, all-gather inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from flopcast.estimate.efficiency import collective_latency_s

# Per-call and per-hop (ring step) latencies by tier, from catalog/efficiency.yaml `collectives`:
# small-message all_reduce on 8 NVLink GPUs takes ~15-25 us (nccl-tests); across InfiniBand a call
# costs ~50 us before the first byte moves and ~5 us a ring step.
SCALE_UP_CALL_LATENCY_S, SCALE_UP_STEP_LATENCY_S = collective_latency_s("scale_up")
SCALE_OUT_CALL_LATENCY_S, SCALE_OUT_STEP_LATENCY_S = collective_latency_s("scale_out")


@dataclass(frozen=True, slots=True)
class Links:
    """Achieved per-direction bandwidths (datasheet x efficiency) of one device's two link tiers."""

    scale_up_bytes_per_s: float
    scale_out_bytes_per_s: float
    scale_up_domain: int


def _tier(links: Links, inside: bool) -> tuple[float, float]:
    if inside:
        return links.scale_up_bytes_per_s, SCALE_UP_STEP_LATENCY_S
    return links.scale_out_bytes_per_s, SCALE_OUT_STEP_LATENCY_S


def call_latency_s(inside: bool) -> float:
    """Fixed cost of launching one collective (kernel launch, proxy, first round trip)."""
    return SCALE_UP_CALL_LATENCY_S if inside else SCALE_OUT_CALL_LATENCY_S


def ring_all_reduce_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return 2 * (n - 1) / n * msg_bytes / w + 2 * (n - 1) * a + call_latency_s(inside)


def ring_gather_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    """Reduce-scatter or all-gather of a full message of `msg_bytes` over n ranks."""
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return (n - 1) / n * msg_bytes / w + (n - 1) * a + call_latency_s(inside)


def all_to_all_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    """All-to-all where each rank holds `msg_bytes` and keeps 1/n of it."""
    return ring_gather_s(n, msg_bytes, links, inside)


def p2p_s(msg_bytes: float, links: Links, inside: bool) -> float:
    if msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return msg_bytes / w + a + call_latency_s(inside)


def hierarchical_all_reduce_s(n: int, n_inside: int, msg_bytes: float, links: Links) -> float:
    """All-reduce over n ranks of which n_inside share a scale-up domain (n_inside divides n)."""
    if n <= 1:
        return 0.0
    n_in = max(1, min(n, n_inside))
    n_out = n // n_in
    t = 2 * ring_gather_s(n_in, msg_bytes, links, True)
    return t + ring_all_reduce_s(n_out, msg_bytes / n_in, links, False)


def hierarchical_gather_s(n: int, n_inside: int, msg_bytes: float, links: Links) -> float:
    """Reduce-scatter (or all-gather) over n ranks, n_inside of them per scale-up domain."""
    if n <= 1:
        return 0.0
    n_in = max(1, min(n, n_inside))
    n_out = n // n_in
    return ring_gather_s(n_in, msg_bytes, links, True) + ring_gather_s(n_out, msg_bytes / n_in, links, False)


def hierarchical_gather_latency_s(n: int, n_inside: int) -> float:
    """The latency part of one hierarchical reduce-scatter or all-gather call (no bytes)."""
    if n <= 1:
        return 0.0
    n_in = max(1, min(n, n_inside))
    n_out = n // n_in
    t = 0.0
    if n_in > 1:
        t += (n_in - 1) * SCALE_UP_STEP_LATENCY_S + SCALE_UP_CALL_LATENCY_S
    if n_out > 1:
        t += (n_out - 1) * SCALE_OUT_STEP_LATENCY_S + SCALE_OUT_CALL_LATENCY_S
    return t
