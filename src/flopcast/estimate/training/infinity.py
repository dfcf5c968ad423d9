"""ZeRO-Infinity: where the model states live (GPU, host memory or NVMe), memory-centric tiling of
the largest operators, bandwidth-centric partitioning of the offload traffic, and its overlap
with compute.

Rajbhandari, Ruwase, Rasley, Smith, He, "ZeRO-Infinity: Breaking the GPU Memory Wall for Extreme
Scale Deep Learning", SC'21 (arXiv 2104.07857):
- sec. 5.1 (infinity offload engine): with ZeRO-3 every partitioned model state may live on the
  GPU, in host memory or on NVMe, chosen per state (DeepSpeed `zero_optimization.offload_param.
  device` and `offload_optimizer.device`: none / cpu / nvme; scenario keys
  `parallel.offload_param` and `parallel.offload_optimizer`). The fp32 gradients follow the
  optimizer state (the optimizer step reads them where it runs: the CPU Adam of ZeRO-Offload).
- sec. 3 / Table 1 (model-state working memory, MSWM): the device must still hold the largest
  single operator's 16-bit parameters and gradients (4 B per parameter); sec. 5.1.3 (memory-centric
  tiling, DeepSpeed `TiledLinear`) splits such an operator into `tiling` tiles fetched and released
  in turn, dividing that working memory by the tile count. One more operator (tile) is prefetched.
- sec. 6.1 (bandwidth-centric partitioning): every parameter is partitioned over all data-parallel
  ranks and each rank reads only its own 1/dp share from host memory or NVMe, all in parallel, then
  the ranks all-gather over NVLink / the network (the ZeRO-3 all-gather already charged by
  dataparallel.py). The aggregate offload bandwidth is per-node bandwidth x nodes, so each rank
  moves its share at the node's bandwidth divided by its devices (NVMe) or at its own PCIe link.
- sec. 6.2 (overlap-centric design): the prefetcher fetches the next operators' parameters while
  the current one computes, and the backward's gradients go out while the backward computes; a
  pass's transfers are hidden up to that pass's compute time and only the remainder is charged.

Leaves out: pinned host staging buffers (DeepSpeed `buffer_count` x `buffer_size`, about 1 GB per
rank), NVMe write amplification and file-system overhead, and the CPU memory traffic of the host
gradient accumulation across micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from flopcast import units
from flopcast.errors import InvalidScenario
from flopcast.estimate.training.constants import (
    GRAD_BYTES,
    HOST_MEMORY_BANDWIDTH_BYTES_PER_S,
    NVME_BANDWIDTH_BYTES_PER_S,
    WEIGHT_BYTES,
)
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.parallel import ParallelPlan


class _Shard(Protocol):
    """What this module reads of dataparallel.OptimizerShard (kept structural: no import cycle)."""

    params: float
    optimizer_bytes: float
    adam_bytes_moved: float
    largest_op_elems: float
    nvme_bytes_per_s: float


@dataclass(frozen=True, slots=True)
class Placement:
    """Where each model state lives: gpu, cpu (host memory) or nvme."""

    params: str        # the 16-bit parameters
    optimizer: str     # fp32 master weights, Adam moments and the fp32 gradients
    tiling: int        # tiles per large operator (1: none)


def placement(plan: ParallelPlan) -> Placement:
    def device(key: str) -> str:
        return "gpu" if key == "none" else key
    return Placement(device(plan.offload_param), device(plan.optimizer_device), plan.tiling)


def largest_operator_elems(rows: Iterable[Sequence[Any]]) -> float:
    """Weights of the largest single GEMM operand on one device (one product of a grouped GEMM:
    one expert), over op rows (TimedOp) of the layers and the head: the operator ZeRO-3 must
    gather whole unless it is tiled."""
    best = 0.0
    for group in rows:
        for row in group:
            op = row.op
            if op.kind == "gemm":
                best = max(best, op.n * op.k)
    return best


def with_node(shard: Any, rows: Iterable[Sequence[Any]], hw: AcceleratorSpec, devices_per_node: int) -> Any:
    """The optimizer shard with the largest operator and this rank's NVMe bandwidth: the node's
    aggregate read bandwidth shared by its devices (bandwidth-centric partitioning: each rank reads
    its own share in parallel), or the per-device default where the hardware states none."""
    node_bw = hw.nvme_bandwidth_bytes_per_s_per_node
    per_device = node_bw / max(1, devices_per_node) if node_bw else NVME_BANDWIDTH_BYTES_PER_S
    return replace(shard, largest_op_elems=largest_operator_elems(rows), nvme_bytes_per_s=per_device)


def offloaded_bytes_per_device(opt_params: float, plan: ParallelPlan, optimizer_bytes: float) -> tuple[float, float]:
    """(host bytes, NVMe bytes) of one rank's share: 16-bit parameters where offload_param puts
    them (ZeRO-3 only), optimizer state and fp32 gradients where the optimizer lives."""
    place = placement(plan)
    host = nvme = 0.0
    param_bytes = opt_params * WEIGHT_BYTES
    optimizer = opt_params * (optimizer_bytes + GRAD_BYTES)
    for dev, nbytes in ((place.params, param_bytes), (place.optimizer, optimizer)):
        if dev == "cpu":
            host += nbytes
        elif dev == "nvme":
            nvme += nbytes
    return host, nvme


def model_states(s_c: Any, plan: ParallelPlan, shard: _Shard, finetune: object | None) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) on the device of a rank holding `s_c` (a stage Cost).

    ZeRO-3: the rank's parameter shard unless offloaded, plus the working memory: the largest
    operator's 16-bit parameters and gradients (MSWM, paper Table 1) and the next operator's
    prefetched parameters, each divided by the tiling factor; gradients and optimizer state
    sharded unless offloaded. ZeRO 1-2 with the optimizer offloaded: whole 16-bit parameters stay,
    gradients stream to the host as they are produced."""
    if finetune is not None:
        raise InvalidScenario("parallel.offload_param / offload_optimizer / tiling: ZeRO-Infinity placement is "
                              "modelled for full training, not training.finetune (use parallel.offload)")
    place = placement(plan)
    if plan.zero_stage < 3:
        return s_c.params * WEIGHT_BYTES, 0.0, 0.0
    g = plan.zero_group
    g_exp = max(1, min(plan.expert_dp, g))
    dense, expert = s_c.params - s_c.expert_params, s_c.expert_params

    def sharded(per_param: float) -> float:
        return dense * per_param / g + expert * per_param / g_exp

    op = shard.largest_op_elems / place.tiling
    working = op * (WEIGHT_BYTES + WEIGHT_BYTES) + op * WEIGHT_BYTES
    weights = working + (sharded(WEIGHT_BYTES) if place.params == "gpu" else 0.0)
    on_gpu = place.optimizer == "gpu"
    grads = sharded(GRAD_BYTES) if on_gpu else 0.0
    optim = sharded(shard.optimizer_bytes) if on_gpu else 0.0
    return weights, grads, optim


def _rate(device: str, pcie_bytes_per_s: float, nvme_bytes_per_s: float) -> float:
    """Bytes/s one rank moves to or from `device`: its PCIe link, and for NVMe no faster than its
    share of the node's drives."""
    return pcie_bytes_per_s if device == "cpu" else min(pcie_bytes_per_s, nvme_bytes_per_s)


def _exposed(t: float, window: float) -> float:
    return max(0.0, t - window)


def transfer_s(shard: _Shard, plan: ParallelPlan, pcie_bytes_per_s: float, *, m: int, fwd_s: float,
               bwd_s: float) -> float:
    """Exposed offload traffic of one step on one rank.

    Each micro-batch fetches the rank's 1/dp share of the 16-bit parameters for the forward and
    again for the backward (ZeRO-3 releases them after use), hidden behind that pass's compute;
    with the optimizer offloaded the 16-bit gradients go to the host during the backward (the
    other PCIe direction: the backward is charged the longer of the two). Once per step the
    updated 16-bit parameters go back to where the parameters live (the optimizer runs on the
    host)."""
    place = placement(plan)
    p = shard.params
    nvme = shard.nvme_bytes_per_s
    fetch = 0.0 if place.params == "gpu" else p * WEIGHT_BYTES / _rate(place.params, pcie_bytes_per_s, nvme)
    grads_out = 0.0 if place.optimizer == "gpu" else p * WEIGHT_BYTES / pcie_bytes_per_s
    per_mb = _exposed(fetch, fwd_s) + _exposed(max(fetch, grads_out), bwd_s)
    return m * per_mb + _update_s(p * WEIGHT_BYTES, place, pcie_bytes_per_s, nvme)


def _update_s(nbytes: float, place: Placement, pcie_bytes_per_s: float, nvme_bytes_per_s: float) -> float:
    """The updated 16-bit parameters moved once per step from where the optimizer ran (the device,
    or the host CPU for an offloaded optimizer) to where the parameters live."""
    on_gpu = place.optimizer == "gpu"
    if place.params == "gpu":
        return 0.0 if on_gpu else nbytes / pcie_bytes_per_s
    if place.params == "cpu":
        return nbytes / pcie_bytes_per_s if on_gpu else 0.0
    return nbytes / (min(pcie_bytes_per_s, nvme_bytes_per_s) if on_gpu else nvme_bytes_per_s)


def optimizer_step_s(shard: _Shard, plan: ParallelPlan, devices_per_node: int) -> float:
    """Offloaded optimizer step of one rank: CPU Adam over its shard at its share of the node's
    memory bandwidth (ZeRO-Offload's CPU Adam), and with the optimizer on NVMe the state swapped
    in and out around it: optimizer state read and written, fp32 gradients read (DeepSpeed's
    default `pipeline_read` / `pipeline_write` off: swap-in, update and swap-out in turn)."""
    p = shard.params
    cpu_adam = p * shard.adam_bytes_moved / (HOST_MEMORY_BANDWIDTH_BYTES_PER_S / max(1, devices_per_node))
    if placement(plan).optimizer != "nvme":
        return cpu_adam
    return cpu_adam + p * (2 * shard.optimizer_bytes + GRAD_BYTES) / shard.nvme_bytes_per_s


def nvme_shortfall(nvme_bytes_per_node: float, hw: AcceleratorSpec) -> str | None:
    """Why the offloaded states do not fit the node's NVMe, or None (no capacity stated: unchecked)."""
    cap = hw.nvme_capacity_bytes_per_node
    if not nvme_bytes_per_node or not cap or nvme_bytes_per_node <= cap:
        return None
    return (f"offloaded state needs {units.format_bytes(nvme_bytes_per_node)} of NVMe per node; the {hw.id} "
            f"reference node has {units.format_bytes(cap)}")
