"""Achievable fractions of datasheet peaks per hardware (catalog/efficiency.yaml, each sourced)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from flopcast.catalog import CATALOG_DIR, _read_yaml
from flopcast.errors import FlopcastError

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
        memory_frac=float(entry.get("memory", d["memory"]["fraction"])),   # a measured edge part's own
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


@cache
def generation_of(hw_id: str) -> str:
    """The hardware generation calibrated parameters are keyed by (catalog/efficiency.yaml)."""
    for gen, ids in _table().get("generations", {}).items():
        if hw_id in ids:
            return gen
    return "other"


def dispatch_gap_s(hw_id: str) -> float:
    """GPU time of one dependent kernel dispatch on an edge GPU (catalog/efficiency.yaml
    `dispatch_gap_s`; 0 where not measured: the datacenter parts' per-kernel tails cover theirs)."""
    return float(_table()["hardware"].get(hw_id, {}).get("dispatch_gap_s", 0.0))


def fp4_matmul_frac(hw_id: str) -> float | None:
    """Measured NVFP4/MXFP4 GEMM fraction of the dense fp4 peak, without the quantization pass."""
    v = _table().get("fp4_matmul", {}).get(hw_id)
    return float(v) if v is not None else None


def power_clock_factor(hw: AcceleratorSpec) -> float:
    """Sustained compute rate of `hw` relative to its catalog part when its `tdp` is set lower
    (a power-capped SKU): f/f0 = ((P_cap - P_static) / (TDP - P_static))^(1/exponent). 1.0 when the
    TDP is the catalog's (or higher: clocks do not rise above the rated boost)."""
    from flopcast import catalog

    if not hw.tdp_w:
        return 1.0
    try:
        ref = catalog.get_hardware(hw.lookup_id)
    except FlopcastError:   # an inline part with no catalog base: its own TDP is the reference
        return 1.0
    if not ref.tdp_w or hw.tdp_w >= ref.tdp_w:
        return 1.0
    p = _table()["power"]
    static = ref.power_idle_w or p["static_frac"] * ref.tdp_w
    if hw.tdp_w <= static:
        return 0.05
    return ((hw.tdp_w - static) / (ref.tdp_w - static)) ** (1.0 / p["exponent"])


def collective_latency_s(tier: str) -> tuple[float, float]:
    """(per-call, per-hop) latency of a collective on the `scale_up` or `scale_out` tier."""
    c = _table()["collectives"][tier]
    return float(c["call_latency_s"]), float(c["hop_latency_s"])


@cache
def _frameworks() -> dict:
    return _read_yaml(CATALOG_DIR / "frameworks.yaml")


def training_frameworks() -> tuple[str, ...]:
    return tuple(_frameworks()["training"])


def inference_engines() -> tuple[str, ...]:
    return tuple(_frameworks()["inference"])


@dataclass(frozen=True, slots=True)
class Stack:
    """What a training framework sets in the cost model (catalog/frameworks.yaml)."""

    name: str
    elementwise_factor: float
    kernels_per_layer: int
    moe_kernels_per_layer: int
    host_s_per_kernel: float
    tp_comm_overlap: bool
    grad_reduce: str
    attention_kernel: str
    source: str
    moe_dispatch: str = "per_copy"
    # memory (estimate/training/memory.py): the loss kernel (constants.LOSS_BYTES_PER_LOGIT), the
    # device allocator (caching: PyTorch's, with fragmentation and NCCL buffers beside it; xla: XLA's
    # static buffer assignment) and the dtype of the ZeRO-3 parameter shard (fp32: FSDP2's sharded
    # parameter is the master copy; bf16: a 16-bit shard beside the optimizer's fp32 master)
    loss_kernel: str = "fused_fp32"
    allocator: str = "caching"
    sharded_params: str = "bf16"
    # weight gradients of successive micro-batches: fused (accumulated by the GEMM or a gradient
    # buffer the step already charges) or autograd (PyTorch adds each into param.grad in place)
    grad_accumulation: str = "fused"


@cache
def training_stack(name: str, compiled: bool = False) -> Stack:
    e = dict(_frameworks()["training"][name])
    if compiled and "compile" in e:
        e.update(e["compile"])
    return Stack(name=name, elementwise_factor=float(e["elementwise_factor"]),
                 kernels_per_layer=int(e["kernels_per_layer"]), moe_kernels_per_layer=int(e["moe_kernels_per_layer"]),
                 host_s_per_kernel=float(e["host_s_per_kernel"]), tp_comm_overlap=bool(e["tp_comm_overlap"]),
                 grad_reduce=str(e["grad_reduce"]), attention_kernel=str(e["attention_kernel"]), source=str(e["source"]),
                 moe_dispatch=str(e.get("moe_dispatch", "per_copy")),
                 loss_kernel=str(e.get("loss_kernel", "fused_fp32")), allocator=str(e.get("allocator", "caching")),
                 sharded_params=str(e.get("sharded_params", "bf16")),
                 grad_accumulation=str(e.get("grad_accumulation", "fused")))


def stack_for(train) -> Stack:
    """The training stack with the scenario's own settings over its defaults: training.tp_comm_overlap,
    training.moe_dispatcher (alltoall: every routed copy crosses; deepep: once per remote domain) and
    training.cuda_graphs (graph replay: no per-kernel host launch cost) and training.loss_kernel."""
    st = training_stack(train.framework, train.compile)
    changes: dict = {}
    if train.tp_comm_overlap is not None:
        changes["tp_comm_overlap"] = train.tp_comm_overlap
    if train.moe_dispatcher is not None:
        changes["moe_dispatch"] = {"alltoall": "per_copy", "deepep": "dedup"}[train.moe_dispatcher]
    if train.cuda_graphs:
        changes["host_s_per_kernel"] = 0.0
    if train.loss_kernel is not None:
        changes["loss_kernel"] = train.loss_kernel
    return replace(st, **changes) if changes else st


KV_MEMORY_BASES = ("total", "static", "free", "free_weights")


@dataclass(frozen=True, slots=True)
class Engine:
    """What a serving engine sets in the cost model (catalog/frameworks.yaml): graphs, host cost,
    whether prompts share a forward with decodes, its KV-cache memory accounting (`kv_of`,
    `kv_frac`: None = the engine's own rule, `kv_reserve_bytes`) and its scheduling defaults."""

    name: str
    decode_graphs: bool
    mixed_graphs: bool
    host_s_per_iteration: float
    source: str
    fused_prefill: bool = True
    kv_of: str = "total"
    kv_frac: float | None = 0.9
    kv_reserve_bytes: float = 0.0
    kv_source: str = ""
    max_num_tokens: int = 8192
    max_batch_size: int | None = None
    scheduler: str = "sarathi"
    max_waiting_steps: int = 0          # TGI max_waiting_tokens: decode steps before a prefill is forced
    waiting_served_ratio: float = 0.0   # TGI: waiting / running requests that trigger a prefill earlier


@cache
def serving_engine(name: str) -> Engine:
    from flopcast import units

    e = _frameworks()["inference"][name]
    kv = e.get("kv_memory") or {}
    of = str(kv.get("of", "total"))
    if of not in KV_MEMORY_BASES:
        raise FlopcastError(f"catalog/frameworks.yaml: inference.{name}.kv_memory.of: {of!r} is not one of "
                            + ", ".join(KV_MEMORY_BASES))
    frac = kv.get("fraction", 0.9)
    cap = e.get("max_batch_size")
    return Engine(name=name, decode_graphs=bool(e["decode_graphs"]), mixed_graphs=bool(e["mixed_graphs"]),
                  host_s_per_iteration=float(e["host_s_per_iteration"]), source=str(e["source"]),
                  fused_prefill=bool(e.get("fused_prefill", True)), kv_of=of,
                  kv_frac=None if frac is None else float(frac),
                  kv_reserve_bytes=units.parse(kv.get("reserve", 0), "bytes", field=f"{name}.kv_memory.reserve"),
                  kv_source=str(e.get("kv_memory_source", "")), max_num_tokens=int(e.get("max_num_tokens", 8192)),
                  max_batch_size=None if cap is None else int(cap), scheduler=str(e.get("scheduler", "sarathi")),
                  max_waiting_steps=int(e.get("max_waiting_tokens", 0)),
                  waiting_served_ratio=float(e.get("waiting_served_ratio", 0.0)))


def moe_imbalance(kind: str, ep: int) -> float:
    """max/mean tokens per expert-parallel rank under real routing (catalog/efficiency.yaml
    `moe_imbalance`: training, inference, inference_eplb)."""
    if ep <= 1:
        return 1.0
    e = _table()["moe_imbalance"][kind]
    return 1.0 + (float(e["value"]) - 1.0) * math.log2(ep) / math.log2(float(e["ref_ep"]))


@cache
def deepep_floor_s(ep: int) -> float:
    """One dispatch + combine of DeepEP's low-latency kernels at `ep` ranks (log-interpolated in ep)."""
    import numpy as np

    d = _table()["deepep_low_latency"]
    x = np.log2(np.asarray(d["ep"], dtype=float))
    y = np.asarray(d["dispatch_s"], dtype=float) + np.asarray(d["combine_s"], dtype=float)
    return float(np.interp(math.log2(max(2, ep)), x, y, left=y[0] * math.log2(max(2, ep)) / x[0]))


@cache
def moe_serving_data() -> dict:
    t = _table()
    return {"grouped_gemm_memory_frac": float(t["grouped_gemm_memory_frac"]["value"]),
            "grouped_gemm_max_tokens": float(t["grouped_gemm_memory_frac"]["max_tokens_per_expert"]),
            "attention_dp_balance": float(t["attention_dp_balance"]["balanced"])}


def grouped_gemm_frac(tokens_per_group: float, group_m0: float | None = None) -> float:
    """Rate of a grouped GEMM with `tokens_per_group` tokens per group relative to a GEMM of the same
    shape: m / (m + m0) (catalog/efficiency.yaml `grouped_gemm`, fitted to DeepGEMM's tables); 1.0
    below min_tokens_per_group (skinny kernels: row padding and weight streaming set their cost)."""
    g = _table()["grouped_gemm"]
    m0 = float(g["group_m0"]) if group_m0 is None else group_m0
    m = float(tokens_per_group)
    return m / (m + m0) if m >= float(g["min_tokens_per_group"]) else 1.0


def decode_attention_frac(hw_id: str) -> float | None:
    """Achieved HBM fraction of decode attention kernels (the KV-cache read) on `hw_id`'s generation
    (catalog/efficiency.yaml `decode_attention`); None where not measured."""
    entry = _table().get("decode_attention", {}).get(generation_of(hw_id))
    return float(entry["fraction"]) if entry else None


def weight_streaming_frac(hw_id: str, weights_dtype: str) -> float | None:
    """Achieved HBM fraction of a GEMM that streams weights of `weights_dtype` with few rows (decode)
    on `hw_id`'s generation (catalog/efficiency.yaml `weight_streaming`); None where not measured."""
    entry = _table().get("weight_streaming", {}).get(generation_of(hw_id), {}).get(weights_dtype)
    return float(entry["fraction"]) if entry else None


def attention_seq_factor(seq: float, backward: bool = False) -> float:
    """Fused-attention efficiency at `seq` keys relative to the catalog's (training-length) fraction."""
    c = _table()["attention_seq_curve"]
    s0 = float(c["bwd_s0" if backward else "fwd_s0"])
    ref = float(c["ref_seq"])
    s = max(1.0, float(seq))
    return (s / (s + s0)) / (ref / (ref + s0))
