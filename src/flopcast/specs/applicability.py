"""Feature keys that do not apply to the model or the hardware are refused with the reason, instead
of being estimated as if they did (issue 20): fp8 training on a part without fp8 tensor cores, a
request longer than the model's context, recompute modules or LoRA targets the model does not have,
more virtual pipeline stages than layers, a speculative draft model not smaller than its target.

`check_applicable` runs once per resolved scenario (specs.scenario.resolve), after every section is
parsed and before any estimate.
"""

from __future__ import annotations

from typing import Any

from flopcast.errors import InvalidScenario
from flopcast.specs.model import LatentAttention, ModelSpec, MoEFFN

# precision -> the peak FLOP/s dtype its matmuls run at
# (bf16, the default, is not checked: a part without it is refused by the estimate's own peak lookup)
_TRAINING_DTYPES = {"fp8": "fp8", "fp16": "fp16"}
# recompute module -> (what the model must have, the test on a ModelSpec)
_MODULE_NEEDS = {
    "mla_up_proj": ("multi-head latent attention (MLA)", lambda m: _has_mla(m)),
    "moe_act": ("MoE layers", lambda m: _has_moe(m)),
}


def _has_mla(model: ModelSpec) -> bool:
    return any(isinstance(lay.attention, LatentAttention) for lay in model.distinct_layers)


def _has_moe(model: ModelSpec) -> bool:
    return any(isinstance(lay.ffn, MoEFFN) for lay in model.distinct_layers)


def _size(model: ModelSpec) -> int:
    """A proxy of a model's size without the counts engine: layers x hidden^2 (the weights of its blocks,
    up to the FFN ratio and the experts)."""
    return model.num_layers * model.hidden_size ** 2


# HBM accelerators since 2016 have 4+ stacks (P100: 732 GB/s; the slowest in the catalog, TPU v5e: 819 GB/s)
MIN_HBM_BANDWIDTH_BYTES_PER_S = 500e9


def check_hardware(hw: Any) -> None:
    """A part whose memory is HBM has an HBM accelerator's bandwidth (a dropped digit, '335 GB/s' for an
    H100, is refused; LPDDR / GDDR / unified parts say so with memory_kind)."""
    bw = hw.hbm_bandwidth_bytes_per_s
    if getattr(hw, "memory_kind", None) == "hbm" and bw < MIN_HBM_BANDWIDTH_BYTES_PER_S:
        raise InvalidScenario(f"hardware.hbm_bandwidth: {bw / 1e9:.4g} GB/s is too low for HBM (HBM accelerators "
                              f"have 732 GB/s and more; {hw.id} has memory_kind hbm); check the digits and the unit, "
                              "or set memory_kind: lpddr, gddr or unified")


def check_training(model: ModelSpec, hw: Any, training: Any, *, where: str = "training") -> None:
    """fp8 / fp16 training needs the part's tensor cores in that dtype; LoRA on `experts` needs MoE layers."""
    if training is None:
        return
    dtype = _TRAINING_DTYPES.get(training.precision)
    if dtype is not None and dtype not in hw.peak_flops_per_s:
        have = ", ".join(d for d in ("bf16", "fp16", "fp8") if d in hw.peak_flops_per_s) or "none"
        raise InvalidScenario(f"{where}.precision: {training.precision} training needs {dtype} tensor cores; "
                              f"{hw.id} has none (its 16/8-bit matmul dtypes: {have}): use "
                              f"{'bf16' if 'bf16' in hw.peak_flops_per_s else 'fp16'} or a part with {dtype}")
    ft = getattr(training, "finetune", None)
    if ft is not None and "experts" in ft.target_modules and not _has_moe(model):
        raise InvalidScenario(f"{where}.finetune.target_modules: experts, but {model.name} has no MoE layers "
                              "(a dense model's feed-forward is `mlp`)")


def check_plan(model: ModelSpec, plan: Any, *, where: str = "parallel") -> None:
    """Recompute modules the model has; at most one virtual stage per layer (plus the embedding and
    loss stages a layout may hold alone)."""
    if plan is None:
        return
    if plan.recompute == "selective":
        for module in plan.recompute_modules:
            need = _MODULE_NEEDS.get(module)
            if need is not None and not need[1](model):
                raise InvalidScenario(f"{where}.recompute_modules: {module} recomputes a part of {need[0]}, "
                                      f"which {model.name} does not have; drop it (core_attn and layernorm "
                                      "apply to every model)")
    stages = plan.pp * plan.vpp
    if plan.vpp > 1 and stages > model.num_layers + 2:
        raise InvalidScenario(f"{where}.vpp: pp*vpp = {plan.pp}*{plan.vpp} = {stages:,} virtual stages exceed the "
                              f"{model.num_layers} layers of {model.name}")


def check_inference(model: ModelSpec, inference: Any, *, where: str = "inference") -> None:
    """A request (prompt and output) fits the model's context (`max_position_embeddings`); a longer one
    needs a config whose max_position_embeddings says so (RoPE scaling: give the scaled config)."""
    if inference is None:
        return
    spec = inference.speculative
    if spec is not None and spec.draft_model is not None and _size(spec.draft_model) >= _size(model):
        raise InvalidScenario(f"{where}.speculative.draft_model: {spec.draft_model.name} is not smaller than the "
                              f"target {model.name}; a draft model must be much cheaper than the model it drafts for "
                              "(e.g. llama-3.2-1b for llama-3.1-70b)")
    tokens = inference.input_tokens + inference.output_tokens
    if model.max_seq_len and tokens > model.max_seq_len:
        raise InvalidScenario(
            f"{where}.input_tokens: {inference.input_tokens:,} prompt + {inference.output_tokens:,} output tokens "
            f"exceed {model.name}'s context of {model.max_seq_len:,} tokens (max_position_embeddings); for a "
            "RoPE-scaled model give its config with rope_scaling and the larger max_position_embeddings")


def check_applicable(model: ModelSpec, hw: Any, *, training: Any = None, parallel: Any = None,
                     inference: Any = None, phases: tuple[Any, ...] = ()) -> None:
    """Every check of this module over a resolved scenario (each training phase with its own plan)."""
    check_hardware(hw)
    check_training(model, hw, training)
    check_plan(model, parallel)
    check_inference(model, inference)
    for i, phase in enumerate(phases):
        label = f"training.phases[{i}]"
        check_training(model, hw, phase.training, where=label)
        check_plan(model, phase.plan, where=f"{label}.parallel")
