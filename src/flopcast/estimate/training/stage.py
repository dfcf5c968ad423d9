"""Stage work: the costs of the layers a pipeline rank holds, summed, and one micro-batch's time on
it (compute parts, exposed collectives, forward and backward windows)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from flopcast.estimate.efficiency import Stack
from flopcast.estimate.training.constants import GRAD_ACCUM_BYTES_PER_PARAM
from flopcast.estimate.training.layer import Cost
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec


def compose_stages(layer_costs: Sequence[Cost], stage_groups: Sequence[Counter[int]], *, head: Cost, embed: Cost,
                   mtp: Cost | None, dualpipe: bool) -> list[Cost]:
    """The cost of each pipeline rank: its layers (by distinct-layer index and count), the embedding
    on the first rank and the head (and MTP modules) on the last. Ranks holding the same layers
    share one Cost object (the timing of each distinct one is computed once)."""
    pp = len(stage_groups)
    out: list[Cost] = []
    composition: dict[tuple, Cost] = {}
    for rank, counts_here in enumerate(stage_groups):
        key = (tuple(counts_here.items()), rank == 0, rank == pp - 1)
        if key not in composition:
            sc = Cost()
            for spec, n in counts_here.items():
                sc.add(layer_costs[spec], n)
            if rank == pp - 1:
                sc.add(head)
                if mtp is not None:
                    sc.add(mtp)
            if rank == 0:
                sc.add(embed)
            composition[key] = sc
        out.append(composition[key])
    return _dualpipe_pairs(out) if dualpipe else out


def _dualpipe_pairs(stage_costs: list[Cost]) -> list[Cost]:
    """DualPipe feeds micro-batches from both ends: rank r runs stage r for one direction and stage
    p-1-r for the other, half the micro-batches each (DeepSeek-V3 report sec. 3.2.1), so its work
    per micro-batch is the pair's mean and it holds both stages' parameters (the "2x parameters" of
    the memory doubles this mean). The embedding and the head (with any MTP modules) share rank 0
    and rank p-1 with the middle of the model.

    The ranks are paired in place, in rank order, as the estimator always has: from the middle on,
    rank r pairs its own stage with the already paired cost of rank p-1-r (so the last rank's work
    is 3/4 its own stage and 1/4 the first). Kept so that figures do not change; see the report of
    issue 19."""
    pp = len(stage_costs)
    pairs: dict[tuple[int, int], Cost] = {}
    out = list(stage_costs)
    for rank in range(pp):
        a_, b_ = out[rank], out[pp - 1 - rank]
        key = (min(id(a_), id(b_)), max(id(a_), id(b_)))
        if key not in pairs:
            pc = Cost()
            pc.add(a_, 0.5)
            pc.add(b_, 0.5)
            pairs[key] = pc
        out[rank] = pairs[key]
    return out


@dataclass(frozen=True, slots=True)
class StageTimes:
    """One micro-batch on one stage: compute parts (summing to compute_s) and exposed communication,
    with the forward and backward compute windows that data-parallel and offload traffic hide behind."""

    compute_s: float
    tp_comm_s: float
    ep_comm_s: float
    cp_comm_s: float
    parts_s: Mapping[str, float]
    fwd_s: float
    bwd_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.tp_comm_s + self.ep_comm_s + self.cp_comm_s


def _recompute_s(sc: Cost, plan: ParallelPlan, fwd_compute: float) -> float:
    if plan.recompute == "full":
        return fwd_compute
    if plan.recompute == "selective":
        return (sc.attn_recompute_s if "core_attn" in plan.recompute_modules else 0.0) + sc.module_recompute_s
    return 0.0


def grad_accumulation_s(sc: Cost, embed: Cost, plan: ParallelPlan, train: TrainingSpec, stack: Stack,
                        mem_bytes_per_s: float) -> float:
    """Where the stack leaves the weight gradients of successive micro-batches to autograd
    (frameworks.yaml grad_accumulation: autograd) and ZeRO does not take them per micro-batch
    (stage 0 or 1: DeepSpeed hooks the gradients only from ZeRO-2 on), one micro-batch's in-place
    add of the stage's weight gradients into param.grad: GRAD_ACCUM_BYTES_PER_PARAM over its
    trainable parameters at the device's memory bandwidth. The embedding's share of the stage
    (sc.embed_s / embed.embed_s of its parameters) is left out: embed_cost already accumulates its
    gradient every micro-batch. Counted on every micro-batch, the first too (PyTorch steals the
    first gradient without an add: 1/m of this is too much). Leaves out the kernels' tails (one add
    a parameter tensor) and the fp32 accumulation of DeepSpeed's later BF16 optimizer (10 bytes)."""
    if stack.grad_accumulation != "autograd" or plan.zero_stage >= 2 or mem_bytes_per_s <= 0:
        return 0.0
    if train.finetune is not None:
        params = sc.trainable
    else:
        embed_frac = sc.embed_s / embed.embed_s if embed.embed_s > 0 else 0.0
        params = max(0.0, sc.params - embed_frac * embed.params)
    return params * GRAD_ACCUM_BYTES_PER_PARAM / mem_bytes_per_s


def stage_times(sc: Cost, plan: ParallelPlan, train: TrainingSpec, stack: Stack, comm_sm_frac: float,
                accum_s: float = 0.0) -> StageTimes:
    """One micro-batch on a stage of cost `sc`; `accum_s` its weight-gradient accumulation
    (grad_accumulation_s), a backward part of its own ("grad_accum", present only when not 0)."""
    recompute_full = plan.recompute == "full"
    fwd_compute = sc.gemm_fwd_s + sc.attn_fwd_s + sc.elem_fwd_s
    # TP collectives: forward, backward (with SP the backward also re-gathers the sharded layer
    # inputs for the weight gradients: 3 collectives where the forward has 2, Korthikanti et al.
    # 2022 sec. 4.2.2), and the recomputed forward under full recompute.
    n_tp = 1 + (1.5 if plan.sp else 1) + (1 if recompute_full else 0)
    parts = {"gemm": sc.gemm_fwd_s + sc.gemm_bwd_s + sc.head_gemm_s,
             "attention": sc.attn_fwd_s + sc.attn_bwd_s,
             "elementwise": 3 * sc.elem_fwd_s,       # backward moves twice the forward's bytes
             "loss_embedding": sc.loss_s + sc.embed_s,
             "recompute": _recompute_s(sc, plan, fwd_compute), "comm_kernels": 0.0}
    if accum_s > 0:
        parts["grad_accum"] = accum_s
    tp = n_tp * sc.tp_fwd_s
    n_pass = 2 + (1 if recompute_full else 0)
    ep = n_pass * sc.ep_fwd_s
    cp = n_pass * sc.cp_fwd_s
    if train.comm_overlap:
        # Overlapped with the GEMMs they are split against; only the excess is exposed. TP
        # collectives overlap only where the stack implements it (frameworks.yaml).
        hidden = 0.5 * ((2 if recompute_full else 1) * sc.gemm_fwd_s + sc.gemm_bwd_s)
        tp_hidden = min(tp, hidden) if stack.tp_comm_overlap else 0.0
        cp_hidden = min(cp, sc.attn_fwd_s + sc.attn_bwd_s)
        tp, cp = tp - tp_hidden, cp - cp_hidden
        # expert all-to-all hides behind another micro-batch's compute only where the schedule
        # interleaves them (Megatron-Core 1F1B A2A overlap, DualPipe): parallel.ep_comm_overlap
        ep_hidden = min(ep, sc.gemm_fwd_s + sc.gemm_bwd_s + sc.attn_fwd_s + sc.attn_bwd_s) \
            if plan.ep_comm_overlap or plan.pp_schedule in ("dualpipe", "dualpipev") else 0.0
        ep -= ep_hidden
        # the hidden part still occupies the SMs its communication kernels run on
        parts["comm_kernels"] = (tp_hidden + cp_hidden + ep_hidden) * comm_sm_frac
    # host dispatch: forward, twice as many kernels backward, the recomputed forward; the GPU
    # waits where the host is slower than the work it launches
    passes = 3 + (1 if recompute_full else 0)
    host = sc.kernels * passes * stack.host_s_per_kernel
    gpu = sum(parts.values()) + tp + ep + cp
    parts["host"] = max(0.0, host - gpu)
    compute = sum(parts.values())
    return StageTimes(compute, tp, ep, cp, MappingProxyType(parts), fwd_compute + sc.embed_s,
                      compute - fwd_compute - sc.embed_s)


def timed_stages(stage_costs: Sequence[Cost], plan: ParallelPlan, train: TrainingSpec, stack: Stack,
                 comm_sm_frac: float, *, embed: Cost | None = None, mem_bytes_per_s: float = 0.0
                 ) -> tuple[list[StageTimes], int]:
    """Each rank's micro-batch times (ranks sharing one Cost object timed once) and the slowest
    rank (the first of the slowest); `embed` (the model's embedding cost) and `mem_bytes_per_s` time
    the weight-gradient accumulation of stacks that leave it to autograd."""
    timed: dict[int, StageTimes] = {}
    for sc in stage_costs:
        if id(sc) not in timed:
            accum = grad_accumulation_s(sc, embed, plan, train, stack, mem_bytes_per_s) if embed is not None else 0.0
            timed[id(sc)] = stage_times(sc, plan, train, stack, comm_sm_frac, accum)
    per_stage = [timed[id(sc)] for sc in stage_costs]
    slow = max(range(len(per_stage)), key=lambda r: per_stage[r].total_s)
    return per_stage, slow
