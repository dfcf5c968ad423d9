"""Memory on one pipeline rank: weights, gradients and optimizer state by ZeRO stage, activations
of the micro-batches in flight, and what the runtime adds around them.

What a rank holds at its peak, in the order PyTorch's tools count it:
    allocated     = weights + gradients + optimizer + activations   (torch.cuda.max_memory_allocated)
    reserved      = allocated + fragmentation                       (torch.cuda.max_memory_reserved)
    device total  = reserved + communication buffers + workspace    (what nvidia-smi shows; vs capacity)
fragmentation = FRAGMENTATION_FRAC x allocated: the caching allocator's blocks held but not in use
at the peak. Sourced and calibrated: a NeMo 2 Llama-3 8B run on 8 B200 logs max_memory_reserved /
max_memory_allocated = 127,785,762,816 / 115,792,977,920 = 1.104 (validation/memory_runs.yaml,
NEMO-L3-8B-*); `flopcast validate memory --cv source` refits the fraction without each source
family and predicts that family with it. The communication buffers (NCCL's, outside the
allocator) and the workspace (CUDA context, cuBLAS/cuDNN workspaces) are the documented defaults
of estimate/training/constants.py.

MEMORY_BAND_FRAC is the memory error band: a plan whose device total lies within it of the
device's capacity is "marginal" (the model cannot tell whether it fits). Measured by
`flopcast validate memory --cv source --json` (the 80th percentile of the leave-one-source-out
absolute errors; see the constant for the figures). The search imports it as its default headroom.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from flopcast.dtypes import BYTES_PER_ELEMENT
from flopcast.estimate.efficiency import Stack
from flopcast.estimate.training import infinity
from flopcast.estimate.training.constants import (
    ACT_BYTES,
    COMM_BUFFER_BYTES,
    GRAD_BYTES,
    RUNTIME_CONTEXT_BYTES,
    WEIGHT_BYTES,
)
from flopcast.estimate.training.dataparallel import OptimizerShard
from flopcast.estimate.training.layer import Cost, TimedOp
from flopcast.estimate.training.schedule import inflight_microbatches
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "other")
RANK_PARTS = ("weights", "gradients", "optimizer", "activations", "comm_buffers", "workspace", "fragmentation")

# The caching allocator's fragmentation, fraction of allocated bytes (module docstring). Calibrated:
# the fraction with the least median |error| over the `reserved` rows of memory_runs.yaml is 0.135
# (validation/memory.py::fit_fragmentation; the leave-one-source-out folds chose 0.13-0.15, the
# cv_fragmentation_frac column of `flopcast validate memory --cv source --json`): two families agree,
# torchtitan/torchao reserved / allocated 1.12-1.15 on the rows of settled shape, NeMo's log 1.104.
FRAGMENTATION_FRAC = 0.135
# Memory error band, fraction of capacity: the 80th percentile of the absolute leave-one-source-out
# errors of `flopcast validate memory --cv source --json` (cv_p80_abs_error_frac = 0.148 over 32 rows
# from 5 source families, 2026-12-07; the median, cv_median_abs_error_frac, is 0.017, was 0.194
# before the loss kernels, FSDP2's fp32 shard, the gradient dtype and the frozen base's inputs). The
# 80th percentile, not the median: the rows cluster on a few well-described stacks (18 of 32 are
# torchtitan Llama 3 8B), so the median says how well those are known, not how far a plan on a less
# validated stack may land; a verdict band of 2% would call Meta's own 405B plan "does not fit".
# The search imports it as its default memory headroom.
MEMORY_BAND_FRAC = 0.15
VERDICTS = ("fits", "marginal", "does not fit")


def memory_verdict(total_bytes: float, capacity_bytes: float, band_frac: float = MEMORY_BAND_FRAC, *,
                   least_bytes: float | None = None) -> str:
    """fits (total below capacity x (1 - band)), marginal (within the band of capacity either side:
    the model's error cannot tell) or does not fit (above capacity x (1 + band)).

    `least_bytes`: what the rank needs once the allocator has given back its cache (the total
    without fragmentation). PyTorch's caching allocator, when cudaMalloc fails, frees its unused
    cached segments and retries before it raises out-of-memory (c10/cuda/CUDACachingAllocator.cpp,
    malloc: release_available_cached_blocks, then release_cached_blocks, then alloc_block again), so
    the fragmentation measured with memory to spare (max_memory_reserved) is not needed to run: a
    plan is judged not to fit only when `least_bytes` exceeds capacity x (1 + band)."""
    if total_bytes <= capacity_bytes * (1 - band_frac):
        return "fits"
    need = total_bytes if least_bytes is None else min(total_bytes, least_bytes)
    if need <= capacity_bytes * (1 + band_frac):
        return "marginal"
    return "does not fit"


@dataclass(frozen=True, slots=True)
class RankMemory:
    """Bytes on one rank by part (RANK_PARTS), and the activations it offloads to the host."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    comm_buffers: float
    workspace: float
    fragmentation: float
    offloaded_acts: float

    @property
    def allocated(self) -> float:
        """What torch.cuda.max_memory_allocated counts: the tensors live at the peak."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def other(self) -> float:
        return self.comm_buffers + self.workspace + self.fragmentation

    @property
    def total(self) -> float:
        return self.allocated + self.other

    @property
    def parts(self) -> tuple[float, float, float, float, float]:
        return self.weights, self.gradients, self.optimizer, self.activations, self.other

    def to_dict(self, rank: int) -> dict[str, float | int]:
        return {"rank": rank, **{f"{k}_bytes": getattr(self, k) for k in RANK_PARTS},
                "allocated_bytes": self.allocated, "reserved_bytes": self.allocated + self.fragmentation,
                "total_bytes": self.total, "offloaded_activations_bytes": self.offloaded_acts}


# Stacks whose `recompute: selective` is per-op selective activation checkpointing rather than
# Megatron's core-attention recompute: torchtitan's "op" policy (torchtitan
# distributed/activation_checkpoint.py: save the outputs of matmuls (every other one), of
# scaled-dot-product attention and of reduce-scatters; recompute everything else), its default for
# Llama 3 8B (train_configs/llama3_8b.toml: selective_ac_option = "op").
PER_OP_SAC_STACKS = ("torchtitan",)


def per_op_sac_costs(layer_costs: Sequence[Cost], layer_rows: Sequence[Sequence[TimedOp]]) -> tuple[Cost, ...]:
    """The layer costs with the activations per-op SAC keeps: the layer input (the checkpoint's),
    half the GEMM outputs (every other matmul, 16-bit), the attention core's output (the input of
    its output projection) and what the core itself saves (log-sum-exp)."""
    out = []
    for cost, rows in zip(layer_costs, layer_rows, strict=True):
        gemm_out = sum(r.op.m * r.op.n * r.op.count for r in rows if r.op.kind == "gemm")
        attn_out = sum(r.op.m * r.op.k * r.op.count for r in rows if r.op.name.endswith("attention/out"))
        core = sum(r.saved_bytes for r in rows if r.op.kind == "attention")
        kept = cost.act_full_recompute_bytes + (gemm_out / 2 + attn_out) * ACT_BYTES + core
        out.append(replace(cost, act_bytes=min(cost.act_bytes, kept)))
    return tuple(out)


def stashed_acts_per_microbatch(layer_costs: Sequence[Cost], here: Counter[int], recompute_full: bool) -> float:
    """Activations one micro-batch leaves on a stage's layers between its forward and its backward:
    under full recompute the checkpointed layer inputs, else every layer's saved tensors. These are
    what activation offload moves to the host (parallel.activation_offload)."""
    if recompute_full:
        return sum(layer_costs[spec].act_full_recompute_bytes * n for spec, n in here.items())
    return sum(layer_costs[spec].act_bytes * n for spec, n in here.items())


def _recompute_buffer(layer_costs: Sequence[Cost], here: Counter[int], recompute_full: bool) -> float:
    """Under full recompute, the full activations of the one layer being recomputed (else none)."""
    return max((layer_costs[spec].act_bytes for spec in here), default=0.0) if recompute_full else 0.0


def _layer_acts(layer_costs: Sequence[Cost], here: Counter[int], inflight: float, recompute_full: bool) -> float:
    """Activations of the layers a stage holds for `inflight` micro-batches: under full recompute
    the checkpointed layer inputs, plus one layer's full activations while it is recomputed."""
    stashed = inflight * stashed_acts_per_microbatch(layer_costs, here, recompute_full)
    if recompute_full:
        return stashed + _recompute_buffer(layer_costs, here, recompute_full)
    return stashed


def rank_activations(layer_costs: Sequence[Cost], stage_groups: Sequence[Counter[int]], head: Cost,
                     plan: ParallelPlan, m: int, rank: int) -> float:
    """Activations kept for backward on `rank` at its peak (before any activation offload)."""
    inflight = inflight_microbatches(plan, m, rank)
    full = plan.recompute == "full"
    last = plan.pp - 1
    if plan.pp_schedule == "dualpipe":   # both directions' stages, half the micro-batches each
        acts = (_layer_acts(layer_costs, stage_groups[rank], inflight, full)
                + _layer_acts(layer_costs, stage_groups[last - rank], inflight, full)) / 2
        if rank in (0, last):
            acts += head.act_bytes
        return acts
    acts = _layer_acts(layer_costs, stage_groups[rank], inflight, full)
    if rank == last:
        acts += head.act_bytes
    return acts


def rank_transient_activations(layer_costs: Sequence[Cost], stage_groups: Sequence[Counter[int]], head: Cost,
                               plan: ParallelPlan, rank: int) -> float:
    """The part of rank_activations that lives only while one micro-batch turns from its forward to
    its backward, so activation offload never moves it: the loss's logits on the last stage (made at
    the end of the forward, consumed by the first op of the backward) and, under full recompute, the
    one layer being recomputed (rebuilt from its checkpoint in the backward)."""
    full = plan.recompute == "full"
    last = plan.pp - 1
    if plan.pp_schedule == "dualpipe":
        t = (_recompute_buffer(layer_costs, stage_groups[rank], full)
             + _recompute_buffer(layer_costs, stage_groups[last - rank], full)) / 2
        return t + (head.act_bytes if rank in (0, last) else 0.0)
    return _recompute_buffer(layer_costs, stage_groups[rank], full) + (head.act_bytes if rank == last else 0.0)


def _offload_acts(acts: float, plan: ParallelPlan, layer_costs: Sequence[Cost], here: Counter[int],
                  transient: float) -> tuple[float, float]:
    """(activations left on the device, activations offloaded): the offloaded share of the stashed
    activations (all but `transient`, rank_transient_activations) waits in host memory; two layers'
    stash of one micro-batch stays on the device as transfer buffers (one going out or coming back,
    one being computed). Under full recompute the stash is the checkpointed layer inputs: ZeRO-Infinity's
    checkpoint offload (Rajbhandari et al., SC 2021, sec. 5.1.2) and MaxText's remat policy `offload`
    of `decoder_layer_input` (AI-Hypercomputer/maxtext src/MaxText/configs/base.yml)."""
    if not plan.activation_offload:
        return acts, 0.0
    full = plan.recompute == "full"
    attr = "act_full_recompute_bytes" if full else "act_bytes"
    layer_max = max((getattr(layer_costs[spec], attr) for spec in here), default=0.0)
    off = plan.activation_offload * (acts - transient)
    return acts - off + 2 * layer_max * plan.activation_offload, off


def _pipelined_fsdp(plan: ParallelPlan, train: TrainingSpec, stack: Stack) -> bool:
    """FSDP (ZeRO-3 reduced every micro-batch) under pipeline parallelism: PyTorch's pipelining
    runtime turns the gradient reduce-scatter off for every micro-batch but the last
    (torch.distributed.pipelining stage backward: set_requires_gradient_sync(last_backward)), and
    torchtitan keeps the stage's parameters gathered between micro-batches (apply_fsdp:
    reshard_after_forward = not pp_enabled)."""
    return (plan.zero_stage >= 3 and plan.pp > 1 and stack.grad_reduce == "per_microbatch"
            and train.finetune is None and plan.offload == "none")


def _pipelined_fsdp_states(s_c: Cost, shard: OptimizerShard) -> tuple[float, float]:
    """(weights, gradients) of a pipelined FSDP rank: the stage's parameters gathered in bf16, its
    unsharded gradients accumulated in the fp32 reduce dtype (FSDP2 unsharded_accumulated_grad)
    over the step's micro-batches; the fp32 master shard is in the optimizer state."""
    del shard
    return s_c.params * WEIGHT_BYTES, s_c.params * GRAD_BYTES


def _grad_bytes(train: TrainingSpec, stack: Stack) -> float:
    """Bytes of a stored gradient element: Megatron-Core's contiguous gradient buffer (a stack that
    reduces once per step) holds them in the reduction dtype (param_and_grad_buffer: fp32 with
    grad_reduce_in_fp32, else the 16-bit parameter dtype: training.grad_reduce_dtype); FSDP2 and
    ZeRO shards keep fp32 gradients."""
    if stack.grad_reduce == "per_step":
        return BYTES_PER_ELEMENT[train.grad_reduce_dtype]
    return GRAD_BYTES


def _model_states(s_c: Cost, plan: ParallelPlan, train: TrainingSpec, stack: Stack, shard: OptimizerShard,
                  n_layers: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) of a rank holding `s_c`."""
    if plan.infinity:   # ZeRO-Infinity placement and tiling
        return infinity.model_states(s_c, plan, shard, train.finetune)
    g = plan.zero_group
    g_exp = max(1, min(plan.expert_dp, g))
    dense, exp = s_c.params - s_c.expert_params, s_c.expert_params
    w_shard = g if plan.zero_stage >= 3 else 1
    # ZeRO-2 stores gradients sharded only where each micro-batch reduce-scatters its own; a stack
    # that reduces once per step (Megatron-Core's distributed optimizer) accumulates them whole.
    # ZeRO-3 / FSDP shards them on every stack.
    grads_sharded = plan.zero_stage >= 3 or (plan.zero_stage == 2 and stack.grad_reduce == "per_microbatch")
    g_shard, ge = (g, g_exp) if grads_sharded else (1, 1)
    o_shard, oe = (g, g_exp) if plan.zero_stage >= 1 else (1, 1)
    we = g_exp if plan.zero_stage >= 3 else 1
    # FSDP2's fp32 parameter shard is the optimizer's master copy (counted there): no 16-bit shard
    fp32_shard = plan.zero_stage >= 3 and stack.sharded_params == "fp32"
    weights = 0.0 if shard.infinity_params or fp32_shard else dense * WEIGHT_BYTES / w_shard + exp * WEIGHT_BYTES / we
    if plan.zero_stage >= 3:   # two layers gathered at a time (current + prefetch)
        weights += 2 * ((dense + exp) / max(1, n_layers)) * WEIGHT_BYTES
    grad_b = _grad_bytes(train, stack)
    grads = dense * grad_b / g_shard + exp * grad_b / ge
    if train.finetune is not None:
        # frozen base weights (bf16, or 4-bit under qlora) plus the trained adapters
        weights = s_c.frozen_bytes / w_shard + s_c.trainable * WEIGHT_BYTES
        if plan.zero_stage >= 3:
            weights += 2 * s_c.frozen_bytes / max(1, n_layers)
        grads = s_c.trainable * grad_b / g_shard
    if _pipelined_fsdp(plan, train, stack):
        weights, grads = _pipelined_fsdp_states(s_c, shard)
    if plan.offload != "none":
        grads = 0.0            # streamed to the host as they are produced (reduce buckets: comm buffers)
    if plan.pp_schedule == "dualpipe":
        # DualPipe keeps two copies of the parameters, one per direction (DeepSeek-V3 report, Table 2)
        weights, grads = 2 * weights, 2 * grads
    optim = 0.0 if plan.offload != "none" else dense * shard.optimizer_bytes / o_shard + exp * shard.optimizer_bytes / oe
    if train.finetune is not None and plan.offload == "none":
        optim = s_c.trainable * shard.optimizer_bytes / o_shard
    return weights, grads, optim


def rank_memory(s_c: Cost, plan: ParallelPlan, train: TrainingSpec, stack: Stack, shard: OptimizerShard, *,
                n_layers: int, acts: float, layer_costs: Sequence[Cost], here: Counter[int], transient: float = 0.0,
                states: dict[tuple[float, ...], tuple[float, float, float]] | None = None) -> RankMemory:
    """Memory of one rank holding `s_c` (n_layers layers, `acts` activations before offload, of which
    `transient` are never offloaded: rank_transient_activations);
    `states` memoises the model states of ranks with the same parameters and layer count (the
    middle stages of a pipeline) within one plan."""
    key = (s_c.params, s_c.expert_params, s_c.trainable, s_c.frozen_bytes, n_layers)
    model = None if states is None else states.get(key)
    if model is None:
        model = _model_states(s_c, plan, train, stack, shard, n_layers)
        if states is not None:
            states[key] = model
    weights, grads, optim = model
    acts, off = _offload_acts(acts, plan, layer_costs, here, transient)
    if stack.allocator == "xla":   # buffers assigned at compile time; collectives inside the program
        return RankMemory(weights, grads, optim, acts, 0.0, RUNTIME_CONTEXT_BYTES, 0.0, off)
    frag = FRAGMENTATION_FRAC * (weights + grads + optim + acts)
    return RankMemory(weights, grads, optim, acts, COMM_BUFFER_BYTES, RUNTIME_CONTEXT_BYTES, frag, off)


def worst_rank_candidates(plan: ParallelPlan, m: int, stage_costs: Sequence[Cost],
                          stage_groups: Sequence[Counter[int]]) -> tuple[int, ...]:
    """The ranks whose memory can be the largest (the search's fast path: the others need not be
    sized). Ranks of one class (the same stage Cost, the same layers, both or neither of the
    embedding and head ends, and under DualPipe the same paired stage) have the same model states
    and differ only in the micro-batches in flight; a rank's total (activations, what it offloads,
    fragmentation) never decreases as its activations grow, and they grow with the micro-batches in
    flight; so the largest total is that of a rank with the most in flight in some class (the first
    of equals). Every rank in pipeline order, one per class."""
    last = plan.pp - 1
    best: dict[tuple, tuple[float, int]] = {}
    for rank in range(plan.pp):
        pair = tuple(stage_groups[last - rank].items()) if plan.pp_schedule == "dualpipe" else ()
        key = (id(stage_costs[rank]), tuple(stage_groups[rank].items()), pair, rank == 0, rank == last)
        inflight = inflight_microbatches(plan, m, rank)
        if key not in best or inflight > best[key][0]:
            best[key] = (inflight, rank)
    return tuple(sorted(r for _, r in best.values()))
