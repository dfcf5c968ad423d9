"""Achievable fractions of datasheet peaks per hardware (catalog/efficiency.yaml, each sourced)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from flopcast.catalog import CATALOG_DIR, _read_yaml

if TYPE_CHECKING:
    from flopcast.specs.hardware import AcceleratorSpec


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fractions of the dense peak / datasheet bandwidth that real kernels reach on one device."""

    matmul_frac: float
    attention_fwd_frac: float
    attention_bwd_frac: float
    memory_frac: float
    scale_up_frac: float
    scale_out_frac: float
    source: str
    best_shape: tuple[int, int, int] | None = None   # (M, N, K) where matmul_frac was measured


@cache
def _table() -> dict:
    return _read_yaml(CATALOG_DIR / "efficiency.yaml")


def _shape(entry: dict, dtype: str) -> tuple[int, int, int] | None:
    key = "best_shape_fp8" if dtype == "fp8" and "best_shape_fp8" in entry else "best_shape"
    return tuple(entry[key]) if key in entry else None


@cache
def efficiency(hw_id: str, dtype: str, attention_kernel: str = "flash3") -> Efficiency:
    """The efficiencies for `hw_id` running matmuls in `dtype` and attention with
    `attention_kernel` (flash2 | flash3), defaults where not measured."""
    t = _table()
    d = t["default"]
    entry = t["hardware"].get(hw_id, {})
    mm = entry.get("matmul", {})
    dtype_key = "bf16" if dtype not in ("bf16", "fp16", "fp8") else dtype
    frac = mm.get(dtype_key, d["matmul"].get(dtype_key, d["matmul"]["bf16"]))
    att = entry.get("attention", d["attention"]).get(attention_kernel, d["attention"][attention_kernel])
    return Efficiency(
        matmul_frac=float(frac),
        attention_fwd_frac=float(att[0]),
        attention_bwd_frac=float(att[1]),
        memory_frac=float(d["memory"]["fraction"]),
        scale_up_frac=float(d["scale_up"]["fraction"]),
        scale_out_frac=float(d["scale_out"]["fraction"]),
        source=entry.get("source", d["matmul"]["source"]),
        best_shape=_shape(entry, dtype_key),
    )


def efficiency_for(hw: AcceleratorSpec, dtype: str, attention_kernel: str = "flash3") -> Efficiency:
    """The catalog efficiencies of `hw`, with any the scenario measured itself (hardware.efficiency)
    in their place. A matmul override is the fraction at the catalog's anchor (large, well-shaped
    GEMMs); smaller shapes still lose through waves and the per-tile fill."""
    eff = efficiency(hw.lookup_id, dtype, attention_kernel)
    if not hw.efficiency_overrides:
        return eff
    o = dict(hw.efficiency_overrides)
    dtype_key = "bf16" if dtype not in ("bf16", "fp16", "fp8") else dtype
    changes: dict = {}
    if f"matmul.{dtype_key}" in o:
        changes["matmul_frac"] = o[f"matmul.{dtype_key}"]
    if f"attention.{attention_kernel}" in o:
        changes["attention_fwd_frac"], changes["attention_bwd_frac"] = o[f"attention.{attention_kernel}"]
    for key in ("memory", "scale_up", "scale_out"):
        if key in o:
            changes[f"{key}_frac"] = o[key]
    if changes:
        changes["source"] = "given in the scenario (hardware.efficiency): " + ", ".join(sorted(o))
    return replace(eff, **changes)
