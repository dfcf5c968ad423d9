"""Alpha-beta costs of collectives (NCCL ring conventions, nccl-tests PERFORMANCE.md).

For n ranks, a message of M bytes per rank, achieved per-direction bandwidth W and per-step latency
alpha:  all-reduce  2 (n-1)/n M / W + 2 (n-1) alpha;  reduce-scatter and all-gather
(n-1)/n M / W + (n-1) alpha;  all-to-all (n-1)/n M / W + (n-1) alpha;  point-to-point M / W + alpha.
Hierarchical all-reduce (groups spanning nodes): reduce-scatter inside the scale-up domain,
all-reduce of the 1/n_in shard across it, all-gather inside.
"""

from __future__ import annotations

from dataclasses import dataclass

# NCCL per-step latency: small-message all_reduce on 8 NVLink GPUs takes ~15-25 us over 14 ring
# steps (nccl-tests), ~1.5 us a step; across InfiniBand ~5 us a step.
SCALE_UP_STEP_LATENCY_S = 1.5e-6
SCALE_OUT_STEP_LATENCY_S = 5e-6


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


def ring_all_reduce_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return 2 * (n - 1) / n * msg_bytes / w + 2 * (n - 1) * a


def ring_gather_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    """Reduce-scatter or all-gather of a full message of `msg_bytes` over n ranks."""
    if n <= 1 or msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return (n - 1) / n * msg_bytes / w + (n - 1) * a


def all_to_all_s(n: int, msg_bytes: float, links: Links, inside: bool) -> float:
    """All-to-all where each rank holds `msg_bytes` and keeps 1/n of it."""
    return ring_gather_s(n, msg_bytes, links, inside)


def p2p_s(msg_bytes: float, links: Links, inside: bool) -> float:
    if msg_bytes <= 0:
        return 0.0
    w, a = _tier(links, inside)
    return msg_bytes / w + a


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
