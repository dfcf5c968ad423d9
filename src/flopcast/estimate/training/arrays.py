"""Array versions of the memory of a rank (memory.rank_memory, memory._model_states) and of the host
memory of the optimizer shard (dataparallel.optimizer_shard), for the search: one numpy pass over
many (plan, rank) rows instead of a Python call per rank.

Each array function performs the scalar function's arithmetic in the scalar function's order, so
that every element equals the scalar result bit for bit (tests/unit/test_search_vector.py checks it
on random plans). They cover the plans the search builds without ZeRO-Infinity keys, fine-tuning or
activation offload; the search sizes the others with the scalar functions.
"""

from __future__ import annotations

import numpy as np

from flopcast.estimate.efficiency import Stack
from flopcast.estimate.training.constants import COMM_BUFFER_BYTES, GRAD_BYTES, RUNTIME_CONTEXT_BYTES, WEIGHT_BYTES
from flopcast.estimate.training.memory import FRAGMENTATION_FRAC, _grad_bytes
from flopcast.specs.workload import TrainingSpec

# offload codes of the arrays (specs.parallel.OFFLOAD)
OFFLOAD_CODES = {"none": 0, "cpu": 1, "nvme": 2}

Array = np.ndarray


def rank_totals_bytes(*, zero: Array, offload: Array, zero_group: Array, expert_group: Array, params: Array,
                      expert_params: Array, n_layers: Array, acts: Array, pipelined: Array, dualpipe: Array,
                      optimizer_bytes: float, train: TrainingSpec, stack: Stack) -> Array:
    """memory.rank_memory(...).total of each row: zero stage, offload code (OFFLOAD_CODES), ZeRO
    group (plan.zero_group) and expert group (max(1, min(plan.expert_dp, zero group))), the rank's
    parameters, expert parameters, layers and activations, pp > 1, DualPipe, and the optimizer
    bytes per parameter (dataparallel.OptimizerShard.optimizer_bytes). No fine-tuning, ZeRO-Infinity
    or activation offload (the scalar function's other branches)."""
    assert train.finetune is None
    one = np.ones_like(zero_group)
    dense, exp = params - expert_params, expert_params
    z1, z3 = zero >= 1, zero >= 3
    w_shard = np.where(z3, zero_group, one)
    grads_sharded = z3 | ((zero == 2) & (stack.grad_reduce == "per_microbatch"))
    g_shard, ge = np.where(grads_sharded, zero_group, one), np.where(grads_sharded, expert_group, one)
    o_shard, oe = np.where(z1, zero_group, one), np.where(z1, expert_group, one)
    we = np.where(z3, expert_group, one)
    no_weights = ((offload == OFFLOAD_CODES["nvme"]) & z3) | (z3 & (stack.sharded_params == "fp32"))
    weights = np.where(no_weights, 0.0, dense * WEIGHT_BYTES / w_shard + exp * WEIGHT_BYTES / we)
    weights = np.where(z3, weights + 2 * ((dense + exp) / np.maximum(1, n_layers)) * WEIGHT_BYTES, weights)
    grad_b = _grad_bytes(train, stack)
    grads = dense * grad_b / g_shard + exp * grad_b / ge
    offloaded = offload != OFFLOAD_CODES["none"]
    # memory._pipelined_fsdp: the stage's parameters gathered, its gradients unsharded in fp32
    fsdp_pp = z3 & pipelined & (stack.grad_reduce == "per_microbatch") & ~offloaded
    weights = np.where(fsdp_pp, params * WEIGHT_BYTES, weights)
    grads = np.where(fsdp_pp, params * GRAD_BYTES, grads)
    grads = np.where(offloaded, 0.0, grads)
    weights, grads = np.where(dualpipe, 2 * weights, weights), np.where(dualpipe, 2 * grads, grads)
    optim = np.where(offloaded, 0.0, dense * optimizer_bytes / o_shard + exp * optimizer_bytes / oe)
    allocated = weights + grads + optim + acts
    if stack.allocator == "xla":
        return allocated + ((0.0 + RUNTIME_CONTEXT_BYTES) + 0.0)
    return allocated + ((COMM_BUFFER_BYTES + RUNTIME_CONTEXT_BYTES) + FRAGMENTATION_FRAC * allocated)


def host_bytes_per_node(*, zero: Array, offload: Array, zero_group: Array, expert_group: Array, heavy_params: Array,
                        heavy_expert_params: Array, optimizer_bytes: float, devices_per_node: int) -> Array:
    """dataparallel.optimizer_shard(...).host_bytes_per_node of each plan (no fine-tuning or
    ZeRO-Infinity keys): ZeRO-Offload keeps the shard's optimizer state and gradients in host memory,
    nvme its gradients (and with ZeRO-3 its parameters)."""
    one = np.ones_like(zero_group)
    z1 = zero >= 1
    opt_params = ((heavy_params - heavy_expert_params) / np.where(z1, zero_group, one)
                  + heavy_expert_params / np.where(z1, expert_group, one))
    nvme_bytes = GRAD_BYTES + np.where(zero >= 3, float(WEIGHT_BYTES), 0.0)
    per_device = np.where(offload == OFFLOAD_CODES["cpu"], opt_params * (optimizer_bytes + GRAD_BYTES),
                          np.where(offload == OFFLOAD_CODES["nvme"], opt_params * nvme_bytes, 0.0))
    return per_device * devices_per_node
