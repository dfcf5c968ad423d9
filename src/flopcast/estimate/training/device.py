"""The device a training step runs on: calibrated efficiencies, peaks, link tiers and the
roofline context every op is timed with."""

from __future__ import annotations

from dataclasses import dataclass, replace

from flopcast.estimate import comm
from flopcast.estimate.efficiency import (
    Efficiency,
    efficiency_for,
    fp4_matmul_frac,
    generation_of,
    power_clock_factor,
    stack_for,
)
from flopcast.estimate.roofline import DeviceCtx
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.workload import TrainingSpec


@dataclass(frozen=True, slots=True)
class Prepared:
    """What every plan of one (model, hardware, training, cluster) shares."""

    eff: Efficiency
    half_peak_flops_per_s: float    # 16-bit peak (attention runs in 16-bit even under fp8)
    mm_peak_flops_per_s: float      # matmul peak of the training precision
    links: comm.Links
    scale_up_group: int             # collectives stay on the scale-up fabric within its domain


def calibrated_efficiency(hw: AcceleratorSpec, train: TrainingSpec) -> Efficiency:
    """The catalog efficiencies of `hw` as one training step sustains them: GEMM and attention
    fractions times the power-cap clock factor and the profile's `compute.<generation>`; every
    compute-rate fraction times the profile's `stack.<framework>`. Fractions are capped at 0.98."""
    eff = efficiency_for(hw, "fp8" if train.precision == "fp4" else train.precision, train.attention_kernel)
    if train.precision == "fp4":
        # measured NVFP4 GEMM kernels (without the quantisation pass, which is counted on its own)
        eff = replace(eff, matmul_frac=fp4_matmul_frac(hw.lookup_id) or eff.matmul_frac)
    prof = train.profile
    compute = power_clock_factor(hw) * prof.get(f"compute.{generation_of(hw.lookup_id)}")
    stack = prof.get(f"stack.{train.framework}")
    if compute == 1.0 and stack == 1.0:
        return eff

    def cap(x: float) -> float:
        return min(0.98, x)

    return replace(eff, matmul_frac=cap(eff.matmul_frac * compute * stack),
                   attention_fwd_frac=cap(eff.attention_fwd_frac * compute * stack),
                   attention_bwd_frac=cap(eff.attention_bwd_frac * compute * stack),
                   memory_frac=cap(eff.memory_frac * stack))


def prepare(hw: AcceleratorSpec, train: TrainingSpec, scale_out_bandwidth_bytes_per_s: float | None) -> Prepared:
    """Efficiencies, peaks and link tiers of `hw` for `train`."""
    eff = calibrated_efficiency(hw, train)
    dtype = "fp16" if train.precision == "fp16" else "bf16"
    half_peak = hw.peak_flops_per_s.get(dtype) or hw.peak_flops_per_s.get("bf16") or hw.peak_flops_per_s.get("fp16")
    if half_peak is None:
        half_peak = max(hw.peak_flops_per_s.values())
    mm_peak = hw.peak_flops_per_s.get(train.precision, half_peak) if train.precision in ("fp8", "fp4") else half_peak
    su = (hw.scale_up_bandwidth_bytes_per_s or hw.host_link_bandwidth_bytes_per_s or 1e9) * eff.scale_up_frac
    so_raw = scale_out_bandwidth_bytes_per_s or hw.scale_out_bandwidth_bytes_per_s or su / eff.scale_up_frac
    links = comm.Links(su, so_raw * eff.scale_out_frac, hw.scale_up_domain)
    # collectives stay on the scale-up fabric within its domain (an NVL72 rack spans 18 nodes)
    return Prepared(eff, half_peak, mm_peak, links, max(1, hw.scale_up_domain))


def device_ctx(hw: AcceleratorSpec, train: TrainingSpec, prep: Prepared, tp: int) -> DeviceCtx:
    """The roofline context of one device of a tensor-parallel group of `tp`."""
    return DeviceCtx(hw=hw, eff=prep.eff, peak_flops_per_s=prep.mm_peak_flops_per_s,
                     attn_peak_flops_per_s=prep.half_peak_flops_per_s,
                     mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * prep.eff.memory_frac, links=prep.links,
                     tp_inside=tp <= prep.scale_up_group, stack=stack_for(train))
