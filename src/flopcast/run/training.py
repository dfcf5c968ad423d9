"""Training estimate of a scenario's parallel plan (`flopcast train`): the estimator's result with the
assumptions the scenario's defaults imply, the per-op rows of the step and the datacenter keys; a
multi-phase run is estimated phase by phase (flopcast.run.phases)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario
from flopcast.estimate.training import TrainingEstimate
from flopcast.estimate.training import estimate_training as _estimate
from flopcast.run.datacenter import training_datacenter, with_datacenter
from flopcast.run.phases import PhasedTrainingEstimate, estimate_phases
from flopcast.specs.parallel import ParallelPlan, validate_plan
from flopcast.specs.scenario import ResolvedScenario, resolve
from flopcast.specs.workload import TrainingSpec


def training_inputs(rs: ResolvedScenario) -> tuple[TrainingSpec, ParallelPlan]:
    """The scenario's training section and parallel plan, validated together (one-line errors)."""
    if rs.training is None:
        raise InvalidScenario("training: missing; give seq_len and global_batch_seqs (see docs/scenario.md)")
    if rs.parallel is None:
        raise InvalidScenario("parallel: missing; give tp/pp/dp (or run `flopcast search` to choose them)")
    train, plan = rs.training, rs.parallel
    validate_plan(plan, rs.model, num_devices=rs.cluster.num_devices,
                  global_batch_seqs=train.global_batch_seqs, seq_len=train.seq_len)
    return train, plan


def estimate_training(scenario: str | Path | Mapping[str, Any]) -> TrainingEstimate | PhasedTrainingEstimate:
    """`flopcast train`: memory per device and step time of the scenario's parallel plan."""
    return estimate_training_resolved(resolve(scenario))


def _assumptions(rs: ResolvedScenario, train: TrainingSpec) -> list[Assumption]:
    """The scenario's assumptions and the training estimator's stated defaults."""
    assumptions = list(rs.assumptions)
    assumptions += [
        Assumption("model_state_bytes_per_param", 18,
                   "bf16 weights 2 + fp32 main grads 4 + fp32 master/m/v 12 (Megatron-LM layout)")
        if train.optimizer_moments_dtype == "fp32" else
        Assumption("model_state_bytes_per_param", 14,
                   "bf16 weights 2 + fp32 main grads 4 + fp32 master 4 + bf16 m/v 4 (training.optimizer_moments_dtype)"),
        Assumption("runtime_reserve_bytes", 1.5 * 2**30,
                   "CUDA/ROCm context and workspaces 1 GiB + NCCL buffers 0.5 GiB, "
                   "plus 10% of activations for allocator fragmentation"),
        Assumption("attention_flops_convention", "causal",
                   "model FLOPs count causal attention as half of the S x S scores (Megatron-Core)"),
        Assumption("mfu_peak_dtype", train.precision,
                   "MFU and HFU are relative to the dense peak of the training precision"),
        Assumption("framework", train.framework + (" + torch.compile" if train.compile else ""),
                   "training.framework: fusion, host launch cost, overlap and ZeRO semantics (catalog/frameworks.yaml)"),
        Assumption("calibration", train.profile.as_dict() or "none", train.profile.source),
    ]
    if rs.model.mtp_layers and train.mtp_layers is None:
        assumptions.append(Assumption(
            "training.mtp_layers", 0, f"{rs.model.name} has {rs.model.mtp_layers} multi-token-prediction module(s) "
            "(params_mtp); set training.mtp_layers to train them (they run on the last pipeline stage)"))
    return assumptions


def estimate_training_resolved(rs: ResolvedScenario) -> TrainingEstimate | PhasedTrainingEstimate:
    """The training estimate of a resolved scenario: its plan, or each phase's (flopcast.run.phases)."""
    if rs.phases:   # a multi-phase run: this function per phase, and their sums (flopcast.run.phases)
        return estimate_phases(rs, estimate_training_resolved)
    train, plan = training_inputs(rs)
    est = _estimate(rs.model, rs.hardware, plan, train, devices_per_node=rs.cluster.devices_per_node,
                    scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s,
                    assumptions=tuple(_assumptions(rs, train)))
    return with_datacenter(rs, est, training_datacenter)


def estimate_plan(rs: ResolvedScenario, train: TrainingSpec, plan: ParallelPlan) -> TrainingEstimate:
    """The bare training estimator on one plan of the scenario (no assumptions, ops or datacenter keys)."""
    return _estimate(rs.model, rs.hardware, plan, train, devices_per_node=rs.cluster.devices_per_node,
                     scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)
