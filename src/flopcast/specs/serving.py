"""InferenceSpec: how a model is served (the `inference` section of a scenario)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast import units
from flopcast.errors import InvalidScenario
from flopcast.specs import limits
from flopcast.specs.fields import check_keys, choice

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "fp4", "int4")
KV_DTYPES = ("bf16", "fp16", "fp8", "int8")
INFERENCE_KEYS = ("tp", "pp", "dp", "ep", "weights_dtype", "kv_dtype", "batch_size", "input_tokens", "output_tokens",
                  "max_tokens_per_iteration", "block_size", "workload", "scheduler", "slo")


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceSpec:
    """One serving configuration. dp replicas of tp x pp devices each (with ep > 1, the dp ranks
    run attention data-parallel and share the experts, DeepSeek/SGLang style). batch_size: concurrent
    sequences per replica, or None for the largest that memory and the iteration budget allow.
    max_tokens_per_iteration: the engine's token budget per forward (vLLM max_num_batched_tokens,
    TensorRT-LLM max_num_tokens; 8192 by default in both throughput setups)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    weights_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    batch_size: int | None = None
    input_tokens: int = 1024
    output_tokens: int = 256
    max_tokens_per_iteration: int = 8192
    block_size: int = 16

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp


def _pos(data: Mapping[str, Any], key: str, default: int) -> int:
    v = data.get(key, default)
    try:
        n = units.parse_count(v, field=f"inference.{key}")
    except InvalidScenario:
        raise InvalidScenario(f"inference.{key}: expected a positive integer, got {v!r}") from None
    if n < 1:
        raise InvalidScenario(f"inference.{key}: expected a positive integer, got {v!r}")
    limits.check_count(n, limits.MAX_TOKENS_PER_REQUEST if key.endswith("_tokens") else limits.MAX_DEVICES,
                       field=f"inference.{key}")
    return n


def inference_from_mapping(data: Mapping[str, Any]) -> InferenceSpec:
    if not isinstance(data, Mapping):
        raise InvalidScenario("inference: expected a mapping (tp, weights_dtype, batch_size, input_tokens, ...)")
    check_keys(data, "inference", INFERENCE_KEYS)
    wd = choice(data, "inference", "weights_dtype", "bf16", WEIGHT_DTYPES)
    kd = choice(data, "inference", "kv_dtype", "bf16", KV_DTYPES)
    bs = data.get("batch_size", "max")
    batch = None if bs == "max" else _pos(data, "batch_size", 1)
    return InferenceSpec(
        tp=_pos(data, "tp", 1), pp=_pos(data, "pp", 1), dp=_pos(data, "dp", 1), ep=_pos(data, "ep", 1),
        weights_dtype=wd, kv_dtype=kd, batch_size=batch, input_tokens=_pos(data, "input_tokens", 1024),
        output_tokens=_pos(data, "output_tokens", 256),
        max_tokens_per_iteration=_pos(data, "max_tokens_per_iteration", 8192),
        block_size=_pos(data, "block_size", 16),
    )


def validate_inference(spec: InferenceSpec, model, *, num_devices: int) -> None:
    """Raise InvalidScenario naming the rule and the numbers."""
    from flopcast.specs.model import LatentAttention, MoEFFN

    if spec.num_devices != num_devices:
        raise InvalidScenario(
            f"inference: tp*pp*dp = {spec.tp}*{spec.pp}*{spec.dp} = {spec.num_devices} must equal "
            f"cluster.num_devices = {num_devices}")
    attn = model.layers[0].attention
    if attn.num_heads % spec.tp:
        raise InvalidScenario(f"inference.tp: {spec.tp} must divide the {attn.num_heads} attention heads")
    if not isinstance(attn, LatentAttention) and attn.num_kv_heads % spec.tp and spec.tp % attn.num_kv_heads:
        raise InvalidScenario(
            f"inference.tp: {spec.tp} must divide the {attn.num_kv_heads} key/value heads (or be a multiple of them)")
    if spec.pp > model.num_layers:
        raise InvalidScenario(f"inference.pp: {spec.pp} stages exceed the {model.num_layers} layers")
    if spec.ep > 1:
        experts = next((lay.ffn.num_experts for lay in model.layers if isinstance(lay.ffn, MoEFFN)), None)
        if experts is None:
            raise InvalidScenario(f"inference.ep: {spec.ep} > 1 but the model has no MoE layers")
        if experts % spec.ep:
            raise InvalidScenario(f"inference.ep: {spec.ep} must divide the {experts} experts")
        if spec.dp % spec.ep:
            raise InvalidScenario(f"inference.ep: {spec.ep} must divide the attention data-parallel ranks dp = {spec.dp}")
