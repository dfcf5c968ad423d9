"""How well the validation set backs each mechanism a plan may use, per model class.

A search ranks plans whose step times tie (within the estimator's error band) by how few of their
mechanisms have little validation: a DualPipe or zero-bubble plan that the model finds 3% faster than
a 1F1B one is not a recommendation when no measured run of that model class shows the mechanism at
that speed. VALIDATION_ROWS counts, per (model class, mechanism), the training validation runs
(`flopcast validate training`) whose plan uses it; a test recounts them from the validation data so
the table cannot drift. A mechanism with fewer than MIN_VALIDATION_ROWS runs is "little validated".
"""

from __future__ import annotations

from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan

MIN_VALIDATION_ROWS = 3

# The mechanisms a plan can use beyond plain data / tensor parallelism, each as a test on the plan
# (a pipeline layout is a split of the layers, not a mechanism: it is not counted).
MECHANISMS = ("pipeline", "interleaved", "zero_bubble", "dualpipe", "context_parallel", "expert_parallel",
              "expert_tp", "ep_comm_overlap", "zero3", "hybrid_shard", "offload", "activation_offload")

# (model class, mechanism) -> validation runs whose plan uses it (recounted by
# tests/unit/test_search_recommend.py from validation/training_runs.csv and more_runs.yaml)
VALIDATION_ROWS: dict[tuple[str, str], int] = {
    ("dense", "activation_offload"): 3, ("dense", "context_parallel"): 5, ("dense", "interleaved"): 14,
    ("dense", "pipeline"): 31, ("dense", "zero3"): 32,
    ("moe", "activation_offload"): 1, ("moe", "ep_comm_overlap"): 1, ("moe", "expert_parallel"): 15,
    ("moe", "expert_tp"): 6, ("moe", "interleaved"): 10, ("moe", "pipeline"): 11, ("moe", "zero3"): 7,
}


def model_class(model: ModelSpec) -> str:
    return "moe" if model.is_moe else "dense"


def mechanisms(plan: ParallelPlan) -> tuple[str, ...]:
    """The mechanisms the plan uses, in MECHANISMS order."""
    used = {
        "pipeline": plan.pp > 1,
        "interleaved": plan.pp > 1 and (plan.pp_schedule == "interleaved" or plan.vpp > 1),
        "zero_bubble": plan.pp > 1 and plan.pp_schedule == "zero_bubble",
        "dualpipe": plan.pp > 1 and plan.pp_schedule == "dualpipe",
        "context_parallel": plan.cp > 1,
        "expert_parallel": plan.ep > 1,
        "expert_tp": plan.expert_tp != plan.tp,
        "ep_comm_overlap": plan.ep_comm_overlap,
        "zero3": plan.zero_stage == 3,
        "hybrid_shard": plan.shard_group is not None and plan.shard_group < plan.dp * plan.cp,
        "offload": plan.offload != "none",
        "activation_offload": plan.activation_offload > 0,
    }
    return tuple(m for m in MECHANISMS if used[m])


def little_validated(plan: ParallelPlan, cls: str) -> tuple[str, ...]:
    """The plan's mechanisms backed by fewer than MIN_VALIDATION_ROWS validation runs of the model
    class `cls` (model_class: dense or moe)."""
    return tuple(m for m in mechanisms(plan) if VALIDATION_ROWS.get((cls, m), 0) < MIN_VALIDATION_ROWS)
