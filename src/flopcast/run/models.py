"""Model counts (`flopcast model show`, `flopcast models`): exact parameters, FLOPs and KV bytes of
one model at a sequence length and KV dtype (every formula in flopcast.estimate.counts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopcast import catalog
from flopcast.assumption import Assumption
from flopcast.dtypes import BYTES_PER_ELEMENT, KV_DTYPES
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import counts
from flopcast.specs import limits
from flopcast.specs.model import ModelSpec
from flopcast.specs.scenario import resolve_model

DEFAULT_SEQ_LEN = 4096
DEFAULT_KV_DTYPE = "bf16"
WEIGHT_DTYPES = ("fp32", "bf16", "fp8", "fp4")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReport:
    """Exact counts of one model at a sequence length and KV dtype."""

    name: str
    family: str
    source: str
    seq_len: int
    kv_dtype: str
    attention_convention: str
    architecture: Mapping[str, Any]
    params_total: int
    params_active: int
    params_breakdown: Mapping[str, int]
    matmul_flops_per_token: int
    attention_flops_per_token: Mapping[str, float]   # by convention: causal, full
    forward_flops_per_token: float
    kv_cache_bytes_per_token: float
    kv_cache_bytes_per_sequence: float
    weights_bytes: Mapping[str, float]
    reported_params: float | None = None
    params_mtp: int = 0       # multi-token-prediction modules, beyond params_total (transformers does not build them)
    ignored_fields: tuple[str, ...] = ()
    unmodeled_fields: tuple[tuple[str, str], ...] = ()
    assumptions: tuple[Assumption, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "seq_len": self.seq_len,
            "kv_dtype": self.kv_dtype,
            "architecture": dict(self.architecture),
            "params_total": self.params_total,
            "params_active": self.params_active,
            "params_mtp": self.params_mtp,
            "params_breakdown": dict(self.params_breakdown),
            "forward_flops_per_token": self.forward_flops_per_token,
            "forward_flops_convention": self.attention_convention,
            "matmul_flops_per_token": self.matmul_flops_per_token,
            "attention_flops_per_token": dict(self.attention_flops_per_token),
            "training_flops_per_token": 3 * self.forward_flops_per_token,
            "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
            "kv_cache_bytes_per_sequence": self.kv_cache_bytes_per_sequence,
            "weights_bytes": dict(self.weights_bytes),
            "reported_params": self.reported_params,
            "ignored_fields": list(self.ignored_fields),
            "unmodeled_fields": [{"field": f, "why": w} for f, w in self.unmodeled_fields],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def check_seq_len(seq_len: Any) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise InvalidScenario(f"seq_len: expected a positive integer number of tokens, got {seq_len!r}")
    limits.check_count(seq_len, limits.MAX_SEQ_LEN, field="seq_len")
    return seq_len


def model_counts(spec: ModelSpec, *, seq_len: int = DEFAULT_SEQ_LEN, kv_dtype: str = DEFAULT_KV_DTYPE,
                 attention: str = "causal", name: str | None = None,
                 reported_params: float | None = None,
                 assumptions: tuple[Assumption, ...] = ()) -> ModelReport:
    """Counts for a resolved ModelSpec (see flopcast.estimate.counts for every formula)."""
    seq_len = check_seq_len(seq_len)
    if kv_dtype not in KV_DTYPES:
        raise UnknownName("kv_dtype", kv_dtype, KV_DTYPES)
    if attention not in counts.ATTENTION_CONVENTIONS:
        raise UnknownName("attention convention", attention, counts.ATTENTION_CONVENTIONS)
    parts = counts.model_parts(spec)
    total = sum(p.params for p in parts)
    matmul = 2 * sum(p.matmul for p in parts)
    attn = {c: counts.attention_flops_per_token(spec, seq_len, c) for c in counts.ATTENTION_CONVENTIONS}
    return ModelReport(
        name=name or spec.name, family=spec.family, source=spec.source, seq_len=seq_len,
        kv_dtype=kv_dtype, attention_convention=attention, architecture=spec.summary(),
        params_total=total, params_active=sum(p.active for p in parts),
        params_breakdown={p.key: p.params for p in parts if p.params},
        matmul_flops_per_token=matmul, attention_flops_per_token=attn,
        forward_flops_per_token=matmul + attn[attention],
        kv_cache_bytes_per_token=counts.kv_cache_bytes_per_token(spec, seq_len, kv_dtype),
        kv_cache_bytes_per_sequence=counts.kv_cache_bytes_per_sequence(spec, seq_len, kv_dtype),
        weights_bytes={d: total * BYTES_PER_ELEMENT[d] for d in WEIGHT_DTYPES},
        reported_params=reported_params, params_mtp=counts.params_mtp(spec), ignored_fields=spec.ignored_fields,
        unmodeled_fields=spec.unmodeled_fields, assumptions=assumptions,
    )


def show_model(model: str | Path | Mapping[str, Any], *, seq_len: int | None = None,
               kv_dtype: str | None = None, attention: str = "causal") -> ModelReport:
    """`flopcast model show`: a catalog id, a config.json path or an inline config mapping."""
    assumptions = []
    if seq_len is None:
        seq_len = DEFAULT_SEQ_LEN
        assumptions.append(Assumption("seq_len", seq_len, "default sequence length for FLOP and KV counts"))
    if kv_dtype is None:
        kv_dtype = DEFAULT_KV_DTYPE
        assumptions.append(Assumption("kv_dtype", kv_dtype, "default KV-cache element type"))
    assumptions.append(Assumption(
        "attention_flops_convention", attention,
        "causal: Megatron-Core halving (S/2 keys per query); 'full' is PaLM's count (S keys)"))
    spec, label = resolve_model(str(model) if isinstance(model, Path) else model, base_dir=Path.cwd())
    reported = None
    if isinstance(model, str) and model in catalog.model_registry():
        reported = catalog.model_entry(model).get("reported_params")
    return model_counts(spec, seq_len=seq_len, kv_dtype=kv_dtype, attention=attention, name=label,
                        reported_params=reported, assumptions=tuple(assumptions))


def list_models() -> list[dict[str, Any]]:
    """One row per catalog model: id, family, total and active parameters, source."""
    rows = []
    for model_id in catalog.model_ids():
        spec = catalog.get_model(model_id)
        entry = catalog.model_entry(model_id)
        parts = counts.model_parts(spec)
        rows.append({
            "id": model_id, "name": entry.get("name", model_id), "family": spec.family,
            "attention": spec.attention_kind, "moe": spec.is_moe, "num_layers": spec.num_layers,
            "params_total": sum(p.params for p in parts), "params_active": sum(p.active for p in parts),
            "hf_repo": entry.get("hf_repo"), "source": entry.get("source", ""),
        })
    return rows


