"""Data parallelism and the optimizer: the optimizer shard and offloaded state, the gradient
reduction and parameter gathers (ZeRO 0-3, hybrid sharding), the optimizer step and offload
transfers."""

from __future__ import annotations

from dataclasses import dataclass

from flopcast.dtypes import BYTES_PER_ELEMENT
from flopcast.estimate import comm
from flopcast.estimate.efficiency import Efficiency, Stack
from flopcast.estimate.training import infinity
from flopcast.estimate.training.constants import (
    ADAM_BYTES_MOVED,
    GRAD_BYTES,
    HOST_LINK_DEFAULT_BYTES_PER_S,
    HOST_MEMORY_BANDWIDTH_BYTES_PER_S,
    NVME_BANDWIDTH_BYTES_PER_S,
    OPTIMIZER_BYTES_FP32_MOMENTS,
    WEIGHT_BYTES,
)
from flopcast.estimate.training.layer import Cost
from flopcast.estimate.training.stage import StageTimes
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec


@dataclass(frozen=True, slots=True)
class OptimizerShard:
    """The optimizer's share on the rank with the most parameters, and where its state lives.

    ZeRO-Offload (cpu): fp32 gradients and optimizer state live in host memory, CPU Adam updates
    them (Ren et al. 2021). ZeRO-Infinity (nvme): the optimizer state on NVMe, gradients in host
    memory, and with ZeRO-3 the parameters too, fetched layer by layer (Rajbhandari et al. 2021).
    bf16 Adam moments: 4 bytes fewer stored per parameter, 8 fewer moved by the step."""

    params: float                 # parameters this rank's optimizer updates
    optimizer_bytes: float        # stored per parameter
    adam_bytes_moved: float       # moved per parameter by the step
    infinity_params: bool         # ZeRO-Infinity keeps the parameters off the device
    host_bytes_per_node: float
    nvme_bytes: float
    # ZeRO-Infinity (estimate/training/infinity.py sets them): the largest operator's weights on
    # one device and this rank's NVMe bandwidth
    largest_op_elems: float = 0.0
    nvme_bytes_per_s: float = NVME_BANDWIDTH_BYTES_PER_S


def optimizer_shard(heavy: Cost, plan: ParallelPlan, train: TrainingSpec, devices_per_node: int) -> OptimizerShard:
    g = plan.zero_group
    g_exp = max(1, min(plan.expert_dp, g))
    sharded = plan.zero_stage >= 1
    opt_params = ((heavy.params - heavy.expert_params) / (g if sharded else 1)
                  + heavy.expert_params / (g_exp if sharded else 1))
    if train.finetune is not None:   # only the adapters are trained: gradients, optimizer state and step
        opt_params = heavy.trainable / (g if sharded else 1)
    moment_saving = 2 * (4 - BYTES_PER_ELEMENT[train.optimizer_moments_dtype])
    optimizer_bytes = OPTIMIZER_BYTES_FP32_MOMENTS - moment_saving
    infinity_params = plan.offload == "nvme" and plan.zero_stage >= 3
    host_per_device = 0.0
    if plan.offload == "cpu":
        host_per_device = opt_params * (optimizer_bytes + GRAD_BYTES)
    elif plan.offload == "nvme":
        host_per_device = opt_params * (GRAD_BYTES + (WEIGHT_BYTES if infinity_params else 0.0))
    nvme_bytes = opt_params * optimizer_bytes if plan.offload == "nvme" else 0.0
    if plan.infinity:
        infinity_params = False     # the device's share is infinity.model_states'
        host_per_device, nvme_bytes = infinity.offloaded_bytes_per_device(opt_params, plan, optimizer_bytes)
    return OptimizerShard(opt_params, optimizer_bytes, ADAM_BYTES_MOVED - 2 * moment_saving, infinity_params,
                          host_per_device * devices_per_node, nvme_bytes)


@dataclass(frozen=True, slots=True)
class DpCollectives:
    """One call of each data-parallel collective over the slowest stage's gradients/parameters."""

    reduce_scatter_s: float
    all_gather_s: float
    all_reduce_s: float


def _in_node(plan: ParallelPlan, hw: AcceleratorSpec) -> int:
    """Data-parallel ranks sharing a scale-up domain."""
    domain = max(1, hw.scale_up_domain)
    return max(1, domain // (plan.tp * plan.cp)) if plan.tp * plan.cp < domain else 1


def dp_collectives(sc: Cost, plan: ParallelPlan, train: TrainingSpec, hw: AcceleratorSpec,
                   links: comm.Links) -> DpCollectives:
    d, d_exp = plan.dp * plan.cp, plan.expert_dp
    g = plan.zero_group
    g_exp = max(1, min(d_exp, g))
    in_node = _in_node(plan, hw)
    dense_params = sc.params - sc.expert_params
    grad_params, grad_expert = (sc.trainable, 0.0) if train.finetune is not None else (dense_params, sc.expert_params)
    grad_b = BYTES_PER_ELEMENT[train.grad_reduce_dtype]

    def gather(n: int, nbytes: float) -> float:
        return comm.hierarchical_gather_s(n, min(in_node, n), nbytes, links)

    rs = gather(g, grad_params * grad_b) + gather(g_exp, grad_expert * grad_b)
    ag = gather(g, dense_params * WEIGHT_BYTES) + gather(g_exp, sc.expert_params * WEIGHT_BYTES)
    # hybrid sharding: each shard group's reduce-scattered gradients are then all-reduced
    # with the same shard of the other d / g replicas (one rank per group, usually across nodes)
    rep = 0.0
    if g < d:
        r_, r_exp = d // g, max(1, d_exp // g_exp)
        rep_in = max(1, min(r_, in_node // g)) if g < in_node else 1
        rep = (comm.hierarchical_all_reduce_s(r_, rep_in, grad_params * grad_b / g, links)
               + (comm.hierarchical_all_reduce_s(r_exp, 1, grad_expert * grad_b / g_exp, links)
                  if r_exp > 1 else 0.0))
    ar = (comm.hierarchical_all_reduce_s(d, min(in_node, d), grad_params * grad_b, links)
          + comm.hierarchical_all_reduce_s(d_exp, min(in_node, d_exp), grad_expert * grad_b, links))
    return DpCollectives(rs + rep, ag, ar)


def _exposed(t: float, window: float) -> float:
    return max(0.0, t - window)


def _zero3_s(col: DpCollectives, plan: ParallelPlan, hw: AcceleratorSpec, stack: Stack, m: int, n_layers: int,
             fwd: float, bwd: float, sm: float) -> float:
    """ZeRO-3 / FSDP: every micro-batch gathers the parameters for forward and again for backward,
    layer by layer (one call per layer and pass, each paying the collective's latency), and
    reduce-scatters its gradients (every micro-batch, or once per step where the stack accumulates
    unsharded gradients: Megatron-Core's distributed optimizer)."""
    g = plan.zero_group
    lat = (max(1, n_layers) - 1) * comm.hierarchical_gather_latency_s(g, min(_in_node(plan, hw), g))
    ag_l, rs_l = col.all_gather_s + lat, col.reduce_scatter_s + lat
    if stack.grad_reduce == "per_step":
        return (m * (_exposed(ag_l, fwd) + _exposed(ag_l, bwd)) + _exposed(rs_l, bwd)
                + (m * (min(ag_l, fwd) + min(ag_l, bwd)) + min(rs_l, bwd)) * sm)
    return m * (_exposed(ag_l, fwd) + _exposed(ag_l + rs_l, bwd) + (min(ag_l, fwd) + min(ag_l + rs_l, bwd)) * sm)


def dp_comm_s(col: DpCollectives, plan: ParallelPlan, train: TrainingSpec, hw: AcceleratorSpec, stack: Stack, *,
              m: int, slow: StageTimes, n_layers: int, comm_sm_frac: float) -> float:
    """Exposed data-parallel time of one step; hidden parts still cost their kernels' SM share."""
    if plan.dp * plan.cp <= 1:
        return 0.0
    fwd = slow.fwd_s if train.comm_overlap else 0.0
    bwd = slow.bwd_s if train.comm_overlap else 0.0
    sm = comm_sm_frac
    rs, ag, ar = col.reduce_scatter_s, col.all_gather_s, col.all_reduce_s
    if plan.zero_stage == 0:
        # one all-reduce of the gradients, hidden behind the last micro-batch's backward
        return _exposed(ar, bwd) + min(ar, bwd) * sm
    if plan.zero_stage in (1, 2):
        # ZeRO-1 keeps a full gradient buffer and reduce-scatters it once, behind the last
        # backward; ZeRO-2 shards the gradients, so every micro-batch reduce-scatters its own
        # behind its backward. The updated parameters are all-gathered behind the first forward.
        n_rs = m if (plan.zero_stage == 2 and stack.grad_reduce == "per_microbatch") else 1
        return n_rs * _exposed(rs, bwd) + _exposed(ag, fwd) + (n_rs * min(rs, bwd) + min(ag, fwd)) * sm
    return _zero3_s(col, plan, hw, stack, m, n_layers, fwd, bwd, sm)


def host_link_bytes_per_s(hw: AcceleratorSpec, eff: Efficiency) -> float:
    return (hw.host_link_bandwidth_bytes_per_s or HOST_LINK_DEFAULT_BYTES_PER_S) * eff.memory_frac


def optimizer_step_s(shard: OptimizerShard, plan: ParallelPlan, mem_bytes_per_s: float, devices_per_node: int) -> float:
    """Memory-bound Adam over the local shard, on the device or (offloaded) on the host CPU."""
    if plan.infinity and plan.optimizer_device != "none":
        return infinity.optimizer_step_s(shard, plan, devices_per_node)
    if plan.optimizer_device == "none":
        return shard.params * shard.adam_bytes_moved / mem_bytes_per_s
    host_bw = HOST_MEMORY_BANDWIDTH_BYTES_PER_S / max(1, devices_per_node)
    return shard.params * shard.adam_bytes_moved / host_bw


def offload_s(shard: OptimizerShard, plan: ParallelPlan, link: float, *, m: int, slow: StageTimes,
              slow_act_bytes: float) -> float:
    """Exposed offload transfers of one step."""
    t = 0.0
    p = shard.params
    if plan.infinity:
        t = infinity.transfer_s(shard, plan, link, m=m, fwd_s=slow.fwd_s, bwd_s=slow.bwd_s)
    elif plan.offload != "none":
        # 16-bit gradients to the host every micro-batch, behind its backward; the updated 16-bit
        # parameters back once per step
        grad_d2h = p * WEIGHT_BYTES / link
        t = m * _exposed(grad_d2h, slow.bwd_s) + p * WEIGHT_BYTES / link
        if plan.offload == "nvme":
            # optimizer state read and written on NVMe once per step
            t += p * shard.optimizer_bytes * 2 / NVME_BANDWIDTH_BYTES_PER_S
            if shard.infinity_params:
                # every micro-batch fetches the parameters for forward and for backward, prefetched
                # behind the previous layer's compute
                fetch = p * WEIGHT_BYTES / link
                t += m * (_exposed(fetch, slow.fwd_s) + _exposed(fetch, slow.bwd_s))
    if plan.activation_offload:
        # the offloaded activations go out over the host link during the forward and come back
        # during the backward, each behind that pass's compute (exposed only beyond it)
        moved = plan.activation_offload * slow_act_bytes / link
        t += m * (_exposed(moved, slow.fwd_s) + _exposed(moved, slow.bwd_s))
    return t
