"""Training step: memory per device and step time for a parallel plan, from per-operation costs.

Legend: L layers, h hidden, H heads, H_kv kv heads, d_head head dim, f FFN width, V vocabulary,
s sequence length, b micro-batch (sequences), T = s b / cp tokens a device processes per
micro-batch, t/p/d/c/e tensor/pipeline/data/context/expert degrees, v virtual stages, m micro-batches.

Time of one micro-batch on one pipeline stage is the sum over its layers of
- matmuls: roofline max(F / (eta_mm P), bytes / (eta_mem W)) + a per-kernel tail, with eta_mm the
  measured best-shape GEMM fraction of the dense peak (catalog/efficiency.yaml); fp8 speeds up
  matmuls only;
- attention scores: fused (FlashAttention) at its measured fraction of peak, causal FLOPs, backward
  2.5 x forward FLOPs; or, without flash, batched GEMMs plus memory-bound softmax/dropout over the
  S x S scores;
- element-wise ops (norms, activation, residual/dropout, rope) from the bytes they move;
- tensor-parallel collectives (Megatron: 2 all-reduces forward, 2 backward, or reduce-scatter +
  all-gather pairs with SP), expert all-to-alls and context-parallel ring exchanges, exposed unless
  the training spec overlaps communication, in which case only the part longer than the compute it
  hides behind is exposed.
Backward is twice the forward matmul time; full recompute adds one forward, selective recompute
the attention core. The pipeline runs (m + (p - 1)/v) stage-micro-batch times (interleaved 1F1B,
Narayanan et al. SC'21), then data-parallel gradient reduction (overlapped with the last
backward when comm_overlap), the optimizer step (memory-bound Adam), and offload transfers.

Memory on the most-loaded stage: weights 2 B, fp32 main gradients 4 B and Adam state 12 B per
parameter (Megatron: 18 B; ZeRO-1 shards the 12, ZeRO-2 the 4 + 12, ZeRO-3 all over d x c
ranks), activations per layer derived from the saved tensors (Korthikanti et al. 2022 generalised
to GQA, gated MLPs, MoE and MLA; FlashAttention stores no S x S scores), times the in-flight
micro-batches of 1F1B (p on the first stage, times 1 + (p - 1)/(p v) when interleaved), plus a
documented runtime reserve.

The package is a pipeline of stages, each a module of pure functions:
`layer` (per-micro-batch costs of one layer, head, embedding, MTP modules) -> `layout` (layers per
pipeline rank) -> `stage` (stage work and one micro-batch's time) -> `schedule` (in-flight
micro-batches, bubble, point-to-point) -> `dataparallel` (gradient reduction, ZeRO gathers,
optimizer step, offload) -> `memory` (per rank), orchestrated by `step`.
"""

from __future__ import annotations

from typing import Any

from flopcast.assumption import Assumption
from flopcast.estimate.training.constants import (
    ACT_BYTES,
    ADAM_BYTES_MOVED,
    GEMM_OPERAND_BYTES,
    GRAD_BYTES,
    OPTIMIZER_BYTES_FP32_MOMENTS,
    WEIGHT_BYTES,
)
from flopcast.estimate.training.device import calibrated_efficiency
from flopcast.estimate.training.layout import balanced_layer_counts, stage_layer_counts
from flopcast.estimate.training.result import TrainingEstimate
from flopcast.estimate.training.step import estimate_step
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

__all__ = ["ACT_BYTES", "ADAM_BYTES_MOVED", "GEMM_OPERAND_BYTES", "GRAD_BYTES", "OPTIMIZER_BYTES_FP32_MOMENTS",
           "WEIGHT_BYTES", "TrainingEstimate", "balanced_layer_counts", "calibrated_efficiency",
           "estimate_training", "stage_layer_counts", "step_summary"]


def estimate_training(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                      devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                      assumptions: tuple[Assumption, ...] = (), cache: dict[Any, Any] | None = None) -> TrainingEstimate:
    """Memory and step time of `train` under `plan` on `plan.num_devices` x `hw` (plan validated).

    `cache`: an optional dict the caller keeps across calls with the same model, hardware, training
    spec and cluster (the plan search does); it memoises the parts that depend on only some plan
    fields. Results are identical with or without it."""
    est = estimate_step(model, hw, plan, train, devices_per_node=devices_per_node,
                        scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s, assumptions=assumptions,
                        cache={} if cache is None else cache, summary=False)
    assert isinstance(est, TrainingEstimate)
    return est


def step_summary(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                 cache: dict[Any, Any]) -> tuple[float, float, bool]:
    """(step_time_s, memory_per_device_bytes, fits) exactly as estimate_training computes them, without
    building the report; plans that do not fit are not timed (step_time_s = inf). For the search:
    `fits` here is within capacity (a plan estimate_training calls marginal, inside the memory error
    band above capacity, is not recommended)."""
    out = estimate_step(model, hw, plan, train, devices_per_node=devices_per_node,
                        scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s, assumptions=(),
                        cache=cache, summary=True)
    assert isinstance(out, tuple)
    return out

