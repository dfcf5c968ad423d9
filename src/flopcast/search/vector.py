"""The search's evaluation of one task over arrays of plans: the plans come as blocks (space.Block:
consecutive plans differing only in ZeRO stage and offload, which share the layer costs, stage
work, stage times and pipeline timeline); what a block shares is computed once
(step.block_sizing), then the memory of every (plan, candidate rank) of the task is one numpy pass
(estimate/training/arrays.py, the scalar arithmetic in its order: the same bytes). Every fitting
plan enters the best-first queue of search/prune.py with its block's cheap lower bound, computed
once per block; a plan object is built only for the plans the queue pops (their whole bound, and
the simulated step of those it does not rule out). The plans of a search with ZeRO-Infinity keys,
fine-tuning or activation offload are sized with the scalar size_plan, plan by plan.

What is counted is unchanged: every plan is sized (evaluated: its memory decided), and the fitting
ones are either timed (the schedule simulated) or ruled out by a lower bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

from flopcast.estimate.training import arrays
from flopcast.estimate.training.step import (
    BlockSizing,
    block_sizing,
    pipelined_lower_bound_s,
    size_plan,
    sized_fitting,
    sized_lower_bound_s,
    sized_step_s,
)
from flopcast.search.prune import Fastest, Front, Key, _ruled_out
from flopcast.search.space import Block, plan_blocks
from flopcast.specs.parallel import ParallelPlan


def _vectorisable(job: Any, block: Block) -> bool:
    """Whether the array functions cover the block's plans (no fine-tuning, ZeRO-Infinity key or
    activation offload)."""
    f = block.fields
    return (job.train.finetune is None and not f.get("activation_offload") and f.get("offload_param", "none") == "none"
            and f.get("offload_optimizer") in (None, "none") and f.get("tiling", 1) == 1)


class _Rows:
    """The (plan, candidate rank) rows of the task's vectorisable blocks, gathered as lists."""

    def __init__(self) -> None:
        self.plan_cols: dict[str, list[float]] = {k: [] for k in (
            "zero", "offload", "zero_group", "expert_group", "heavy_params", "heavy_expert_params", "pipelined",
            "dualpipe", "n_ranks")}
        self.rank_cols: dict[str, list[float]] = {k: [] for k in ("params", "expert_params", "n_layers", "acts")}
        self.rank_start: list[int] = []     # per plan: its block's first rank row
        self.plan_index: list[int] = []     # per plan: its index in the task's sized list

    def add(self, bs: BlockSizing, block: Block, plan: ParallelPlan, first: int) -> None:
        start = len(self.rank_cols["params"])
        for k, v in (("params", bs.params), ("expert_params", bs.expert_params), ("n_layers", bs.n_layers),
                     ("acts", bs.acts)):
            self.rank_cols[k].extend(v)
        g = plan.zero_group
        shared = {"zero_group": g, "expert_group": max(1, min(plan.expert_dp, g)), "heavy_params": bs.heavy_params,
                  "heavy_expert_params": bs.heavy_expert_params, "pipelined": plan.pp > 1,
                  "dualpipe": plan.pp_schedule == "dualpipe", "n_ranks": len(bs.params)}
        for i, (zero, offload) in enumerate(block.options):
            self.plan_cols["zero"].append(zero)
            self.plan_cols["offload"].append(arrays.OFFLOAD_CODES[offload])
            for k, v in shared.items():
                self.plan_cols[k].append(v)
            self.rank_start.append(start)
            self.plan_index.append(first + i)

    def memory(self, job: Any, optimizer_bytes: float, stack: Any) -> tuple[np.ndarray, np.ndarray]:
        """(memory bytes, fits) of each plan added: its largest candidate rank's total, and whether that
        is within capacity with the host memory holding the offloaded state."""
        p = {k: np.asarray(v, dtype=float) for k, v in self.plan_cols.items()}
        r = {k: np.asarray(v, dtype=float) for k, v in self.rank_cols.items()}
        n_ranks = p["n_ranks"].astype(np.int64)
        row_plan = np.repeat(np.arange(len(n_ranks)), n_ranks)
        first_row = np.cumsum(n_ranks) - n_ranks
        row_rank = np.repeat(np.asarray(self.rank_start, dtype=np.int64), n_ranks) + (
            np.arange(len(row_plan)) - np.repeat(first_row, n_ranks))
        totals = arrays.rank_totals_bytes(
            zero=p["zero"][row_plan], offload=p["offload"][row_plan], zero_group=p["zero_group"][row_plan],
            expert_group=p["expert_group"][row_plan], params=r["params"][row_rank],
            expert_params=r["expert_params"][row_rank], n_layers=r["n_layers"][row_rank], acts=r["acts"][row_rank],
            pipelined=p["pipelined"][row_plan] > 0, dualpipe=p["dualpipe"][row_plan] > 0,
            optimizer_bytes=optimizer_bytes, train=job.train, stack=stack)
        memory = np.maximum.reduceat(totals, first_row)
        host = arrays.host_bytes_per_node(
            zero=p["zero"], offload=p["offload"], zero_group=p["zero_group"], expert_group=p["expert_group"],
            heavy_params=p["heavy_params"], heavy_expert_params=p["heavy_expert_params"],
            optimizer_bytes=optimizer_bytes, devices_per_node=job.devices_per_node)
        host_cap = job.hw.host_memory_bytes_per_node
        fits = memory <= job.hw.hbm_capacity_bytes
        if host_cap:
            fits &= ~((host != 0) & (host > host_cap))
        return memory, fits


def evaluate_blocks(job: Any, groups: Sequence[tuple[int, tuple[int, int, int]]], cache: dict[Any, Any]
                    ) -> tuple[int, int, list[Key], dict[tuple[int, int], ParallelPlan]]:
    """(plans evaluated, plans fitting, keys of the fitting plans timed, their plans) over the given
    (group index, (tp, cp, pp)) groups: the best-first queue of search/prune.py's rules, over blocks and arrays."""
    kw = {"devices_per_node": job.devices_per_node}
    size_kw = {"scale_out_bandwidth_bytes_per_s": job.scale_out_bandwidth_bytes_per_s, "cache": cache} | kw
    rows = _Rows()
    plans_of: list[tuple[int, int, Block, int, int]] = []   # (gi, pi, block, option, block number)
    sizings: list[tuple[BlockSizing, ParallelPlan] | None] = []   # per block: its sizing and first plan
    scalar: dict[int, Any] = {}          # plan number -> Sized, for the plans sized plan by plan
    optimizer_bytes, stack = 0.0, None
    for gi, group in groups:
        pi = 0
        for block in plan_blocks(job.model, group, num_devices=job.num_devices,
                                 global_batch_seqs=job.train.global_batch_seqs, space=job.space,
                                 seq_len=job.train.seq_len):
            b = len(sizings)
            first = len(plans_of)
            plans_of.extend((gi, pi + i, block, i, b) for i in range(len(block.options)))
            pi += len(block.options)
            if not _vectorisable(job, block):
                sizings.append(None)
                for i, plan in enumerate(block.plans()):
                    scalar[first + i] = size_plan(job.model, job.hw, plan, job.train, **size_kw)
                continue
            rep = block.plan(0)
            bs = block_sizing(job.model, job.hw, rep, job.train, **size_kw)
            sizings.append((bs, rep))
            if bs.refused:
                continue
            optimizer_bytes, stack = bs.optimizer_bytes, bs.work.ctx.stack
            rows.add(bs, block, rep, first)
    n = len(plans_of)
    memory = np.full(n, np.inf)
    fits = np.zeros(n, dtype=bool)
    if rows.plan_index:
        mem_v, fits_v = rows.memory(job, optimizer_bytes, stack)
        idx = np.asarray(rows.plan_index, dtype=np.int64)
        memory[idx], fits[idx] = mem_v, fits_v
    for i, s in scalar.items():
        memory[i], fits[i] = s.memory_bytes, s.fits
    return _time_fitting(job, plans_of, sizings, scalar, memory, fits, cache)


def _time_fitting(job: Any, plans_of: list[tuple[int, int, Block, int, int]],
                  sizings: list[tuple[BlockSizing, ParallelPlan] | None],
                  scalar: dict[int, Any], memory: np.ndarray, fits: np.ndarray, cache: dict[Any, Any]
                  ) -> tuple[int, int, list[Key], dict[tuple[int, int], ParallelPlan]]:
    """The fitting plans through search/prune.py's best-first queue: each enters with its cheap bound
    (its block's, computed once), popped it gets its whole bound, popped again it is timed, unless
    ruled out on the way."""
    kw = {"devices_per_node": job.devices_per_node}
    cheap: dict[int, float] = {}
    queue = []
    fitting = np.flatnonzero(fits).tolist()
    mem = memory.tolist()
    for i in fitting:
        gi, pi, block, opt, b = plans_of[i]
        entry = sizings[b]
        if entry is None:
            s = scalar[i]
            low_s = sized_lower_bound_s(s, job.model, job.hw, block.plan(opt), job.train, pipelined_only=True, **kw)
        else:   # the same for every plan of the block: computed with its first plan
            low_s = cheap.get(b)
            if low_s is None:
                low_s = cheap[b] = pipelined_lower_bound_s(entry[0].work, job.model, job.hw, entry[1], job.train,
                                                           entry[0].m, job.devices_per_node)
        queue.append((low_s, 0, gi, pi, i))
    heapq.heapify(queue)
    fastest, roomy, front = Fastest(job.top), Fastest(job.top), Front()
    timed: list[Key] = []
    plans: dict[tuple[int, int], ParallelPlan] = {}
    sized: dict[int, tuple[ParallelPlan, Any]] = {}
    while queue:
        bound_s, whole, gi, pi, i = heapq.heappop(queue)
        memory_bytes = mem[i]
        is_roomy = memory_bytes <= job.roomy_memory_bytes
        if _ruled_out(bound_s, memory_bytes, roomy if is_roomy else fastest, front):
            continue
        if i not in sized:
            _, _, block, opt, b = plans_of[i]
            entry = sizings[b]
            plan = entry[1] if entry is not None and opt == 0 else block.plan(opt)
            sized[i] = (plan, scalar[i] if entry is None else sized_fitting(entry[0], job.hw, plan, job.train,
                                                                            memory_bytes, **kw))
        plan, s = sized[i]
        if not whole:
            heapq.heappush(queue, (sized_lower_bound_s(s, job.model, job.hw, plan, job.train, **kw), 1, gi, pi, i))
            continue
        step_s = sized_step_s(s, job.model, job.hw, plan, job.train, cache=cache, **kw)
        timed.append((step_s, memory_bytes, gi, pi))
        plans[gi, pi] = plan
        fastest.add(step_s)
        if is_roomy:
            roomy.add(step_s)
        front.add(step_s, memory_bytes)
    return len(plans_of), len(fitting), timed, plans
