"""The pipeline schedule: micro-batches in flight per rank, the bubble, and the point-to-point
traffic between stages."""

from __future__ import annotations

from flopcast.estimate import comm
from flopcast.estimate.training.constants import ACT_BYTES
from flopcast.specs.parallel import ParallelPlan


def inflight_microbatches(plan: ParallelPlan, m: int, rank: int) -> float:
    """Micro-batches whose activations rank `rank` holds at its peak under (interleaved) 1F1B."""
    inflight: float = min(m, plan.pp - rank) if plan.pp > 1 else 1
    if plan.vpp > 1 and rank == 0:
        # interleaved: the first rank runs 2(p - 1) + (v - 1)p warm-up forward chunks, then
        # holds one more: p + (p - 1)/v stages' worth (Korthikanti et al. 2022, sec. 4.2.3),
        # but never more chunks than the step has (m v: with m = p it runs every forward
        # first and holds m micro-batches, as plain 1F1B does)
        chunks = min(m * plan.vpp, 2 * (plan.pp - 1) + (plan.vpp - 1) * plan.pp + 1)
        inflight = chunks / plan.vpp
    if plan.pp_schedule == "dualpipe":
        inflight = min(m, plan.pp + 1)      # PP + 1 micro-batches (DeepSeek-V3 report, Table 2)
    return inflight


def bubble_microbatches(plan: ParallelPlan) -> float:
    """Pipeline bubble, in micro-batch times (forward, backward-for-input and backward-for-weights
    taken as a third of one each): 1F1B (p - 1) / v (Narayanan et al. SC'21); zero bubble ZB-H1
    (p - 1)(T_F + T_B - T_W) = (p - 1) / 3 (Qi et al. 2024); DualPipe (p/2 - 1)(T_F&B + T_B - 3 T_W)
    = (p/2 - 1) / 3 with the overlapped chunk T_F&B = one micro-batch (DeepSeek-V3 report, Table 2)."""
    if plan.pp_schedule == "zero_bubble":
        return (plan.pp - 1) / 3
    if plan.pp_schedule == "dualpipe":
        return (plan.pp / 2 - 1) / 3
    return (plan.pp - 1) / plan.vpp


def pp_comm_per_microbatch_s(plan: ParallelPlan, mb_tokens: float, hidden: int, links: comm.Links,
                             devices_per_node: int) -> float:
    """Pipeline point-to-point: activations (scatter/gather over tp) forward and gradients backward,
    once per virtual stage boundary; neighbouring stages share a node only if the whole pipeline
    fits in one."""
    if plan.pp <= 1:
        return 0.0
    inside = plan.num_devices <= devices_per_node
    msg = mb_tokens * hidden * ACT_BYTES / plan.tp
    return 2 * plan.vpp * comm.p2p_s(msg, links, inside)
