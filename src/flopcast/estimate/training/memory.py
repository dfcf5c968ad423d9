"""Memory on one pipeline rank: weights, gradients and optimizer state by ZeRO stage, activations
of the micro-batches in flight, and the runtime reserve."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from flopcast.estimate.efficiency import Stack
from flopcast.estimate.training import infinity
from flopcast.estimate.training.constants import (
    COMM_BUFFER_BYTES,
    FRAGMENTATION_FRAC,
    GRAD_BYTES,
    RUNTIME_CONTEXT_BYTES,
    WEIGHT_BYTES,
)
from flopcast.estimate.training.dataparallel import OptimizerShard
from flopcast.estimate.training.layer import Cost
from flopcast.estimate.training.schedule import inflight_microbatches
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "other")


@dataclass(frozen=True, slots=True)
class RankMemory:
    """Bytes on one rank by part (MEMORY_PARTS), and the activations it offloads to the host."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    other: float
    offloaded_acts: float
    total: float

    @property
    def parts(self) -> tuple[float, float, float, float, float]:
        return self.weights, self.gradients, self.optimizer, self.activations, self.other


def _layer_acts(layer_costs: Sequence[Cost], here: Counter[int], inflight: float, recompute_full: bool) -> float:
    """Activations of the layers a stage holds for `inflight` micro-batches: under full recompute
    the checkpointed layer inputs, plus one layer's full activations while it is recomputed."""
    if recompute_full:
        layer_input = sum(layer_costs[spec].act_full_recompute_bytes * n for spec, n in here.items())
        return inflight * layer_input + max((layer_costs[spec].act_bytes for spec in here), default=0.0)
    return inflight * sum(layer_costs[spec].act_bytes * n for spec, n in here.items())


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


def _offload_acts(acts: float, plan: ParallelPlan, layer_costs: Sequence[Cost], here: Counter[int]) -> tuple[float, float]:
    """(activations left on the device, activations offloaded): the offloaded share waits in host
    memory; two layers' worth of one micro-batch stay on the device as transfer buffers (one going
    out or coming back, one being computed)."""
    if not plan.activation_offload:
        return acts, 0.0
    layer_max = max((layer_costs[spec].act_bytes for spec in here), default=0.0)
    off = plan.activation_offload * acts
    return acts - off + 2 * layer_max * plan.activation_offload, off


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
    weights = 0.0 if shard.infinity_params else dense * WEIGHT_BYTES / w_shard + exp * WEIGHT_BYTES / we
    if plan.zero_stage >= 3:   # two layers gathered at a time (current + prefetch)
        weights += 2 * ((dense + exp) / max(1, n_layers)) * WEIGHT_BYTES
    grads = dense * GRAD_BYTES / g_shard + exp * GRAD_BYTES / ge
    if train.finetune is not None:
        # frozen base weights (bf16, or 4-bit under qlora) plus the trained adapters
        weights = s_c.frozen_bytes / w_shard + s_c.trainable * WEIGHT_BYTES
        if plan.zero_stage >= 3:
            weights += 2 * s_c.frozen_bytes / max(1, n_layers)
        grads = s_c.trainable * GRAD_BYTES / g_shard
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
                n_layers: int, acts: float, layer_costs: Sequence[Cost], here: Counter[int]) -> RankMemory:
    """Memory of one rank holding `s_c` (n_layers layers, `acts` activations before offload)."""
    weights, grads, optim = _model_states(s_c, plan, train, stack, shard, n_layers)
    acts, off = _offload_acts(acts, plan, layer_costs, here)
    other = RUNTIME_CONTEXT_BYTES + COMM_BUFFER_BYTES + FRAGMENTATION_FRAC * acts
    return RankMemory(weights, grads, optim, acts, other, off, weights + grads + optim + acts + other)
