"""The result of one training estimate (`flopcast train --json` keys from SCENARIO.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flopcast.assumption import Assumption
from flopcast.estimate.training.schedule import PipelineTimes
from flopcast.specs.parallel import ParallelPlan


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingEstimate:
    """Result of one training estimate (`flopcast train --json` keys from SCENARIO.md)."""

    fits: bool
    memory_per_device_bytes: float
    memory_breakdown_bytes: dict[str, float]
    memory_capacity_bytes: float
    step_time_s: float
    step_time_breakdown_s: dict[str, float]
    compute_breakdown_s: dict[str, float]
    tokens_per_s: float
    tokens_per_s_per_device: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    mfu: float
    hfu: float
    time_to_train_s: float | None
    device_hours: float | None
    num_microbatches: int
    plan: ParallelPlan
    infeasible_reason: str | None = None
    host_memory_per_node_bytes: float = 0.0
    nvme_per_device_bytes: float = 0.0
    datacenter: dict[str, Any] | None = None
    assumptions: tuple[Assumption, ...] = field(default=())
    ops: tuple[dict[str, Any], ...] = ()
    memory_verdict: str = "fits"        # fits / marginal / does not fit (within memory_band_frac of capacity)
    memory_band_frac: float = 0.0
    memory_per_rank: tuple[dict[str, Any], ...] = ()   # every pipeline rank's parts (memory.RankMemory.to_dict)
    pipeline: PipelineTimes | None = None     # pp > 1: the simulated schedule, per rank

    def to_dict(self) -> dict[str, Any]:
        return {**(self.datacenter or {}), **{
            "fits": self.fits,
            "infeasible_reason": self.infeasible_reason,
            "memory_per_device_bytes": self.memory_per_device_bytes,
            "memory_breakdown_bytes": dict(self.memory_breakdown_bytes),
            "memory_capacity_bytes": self.memory_capacity_bytes,
            "memory_verdict": self.memory_verdict,
            "memory_band_frac": self.memory_band_frac,
            "memory_per_rank": [dict(r) for r in self.memory_per_rank],
            "host_memory_per_node_bytes": self.host_memory_per_node_bytes,
            "nvme_per_device_bytes": self.nvme_per_device_bytes,
            "step_time_s": self.step_time_s,
            "step_time_breakdown_s": dict(self.step_time_breakdown_s),
            "compute_breakdown_s": dict(self.compute_breakdown_s),
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "time_to_train_s": self.time_to_train_s,
            "device_hours": self.device_hours,
            "num_microbatches": self.num_microbatches,
            "parallel": self.plan.to_dict(),
            **({"pipeline": self.pipeline.to_dict()} if self.pipeline is not None else {}),
            "ops": [dict(o) for o in self.ops],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }}
