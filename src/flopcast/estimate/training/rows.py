"""The per-op rows a training report lists (`flopcast train --json` `ops`)."""

from __future__ import annotations

from typing import Any

from flopcast.estimate import ops as ops_mod
from flopcast.estimate.training.constants import GEMM_OPERAND_BYTES
from flopcast.estimate.training.device import device_ctx, prepare
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec


def op_breakdown(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None) -> tuple[dict[str, Any], ...]:
    """The forward ops of one micro-batch on one device (estimate/ops.py), each timed by the same
    roofline and calibrated efficiencies as the step, with the number of layers it repeats in (the
    whole model, before the pipeline split). For reports: the step itself does not need it."""
    ctx = device_ctx(hw, train, prepare(hw, train, scale_out_bandwidth_bytes_per_s), plan.tp)
    mb_tokens = plan.microbatch_seqs * train.seq_len / plan.cp
    elem = GEMM_OPERAND_BYTES[train.precision]
    rows = []
    for n, group in ops_mod.model_ops(model, seq_len=train.seq_len, tokens=mb_tokens, tp=plan.tp, ep=plan.ep):
        for row in ops_mod.time_ops(group, ctx, elem_bytes=elem):
            rows.append({"layers": n, **row})
    return tuple(rows)
