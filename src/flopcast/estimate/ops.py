"""Per-operation rows of a forward pass: the one place that turns a layer variant (MHA/GQA/MQA or MLA
attention, dense or MoE FFN) and a shard size into GEMM shapes and FLOPs.

`layer_ops(layer, model, tokens=T, keys=K, tp=t, ep=e)` lists the forward operations of one decoder
layer for T tokens on one device of a tensor-parallel group of t (and an expert-parallel group of e,
balanced routing): GEMMs with their (m, n, k, count) shape, the fused attention core with its
FLOPs, and the weight elements each op reads. `head_ops` lists the LM head. At t = e = 1, the FLOPs
of a model's rows sum to `counts.forward_flops_per_token` x tokens, which the oracle tests check
against `torch.utils.flop_counter` layer by layer. `time_ops` puts a time on each row from the
device's roofline (estimate/roofline.py): the per-op view `flopcast train --json` reports as `ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flopcast.specs.model import DenseFFN, LatentAttention, LayerSpec, ModelSpec, MoEFFN, StandardAttention


@dataclass(frozen=True, slots=True)
class Op:
    """One forward operation on one device. GEMMs: `count` products (m x k) @ (k x n); FLOPs are
    2 m n k count. The attention core: FLOPs of QK^T and AV over `keys` keys per query."""

    name: str
    kind: str                 # gemm | attention
    flops: float
    m: float = 0.0
    n: float = 0.0
    k: float = 0.0
    count: float = 1.0
    weight_elems: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "flops": self.flops,
                "gemm_mnk_count": [self.m, self.n, self.k, self.count] if self.kind == "gemm" else None,
                "weight_elems": self.weight_elems}


def _gemm(name: str, m: float, n: float, k: float, count: float = 1.0) -> Op:
    return Op(name=name, kind="gemm", flops=2.0 * m * n * k * count, m=m, n=n, k=k, count=count,
              weight_elems=n * k * count)


def attention_ops(a: StandardAttention | LatentAttention, h: int, *, tokens: float, keys: float, tp: int = 1) -> list[Op]:
    """Projections and core of one attention block for `tokens` query tokens attending `keys` keys
    each (the caller applies the causal / full convention and sliding windows)."""
    T, t = tokens, tp
    match a:
        case StandardAttention(num_heads=H, num_kv_heads=Hkv, head_dim=dh):
            q = H / t
            kv = Hkv / t if Hkv >= t else 1.0      # kv heads replicated when t > H_kv
            return [_gemm("attention/qkv", T, (q + 2 * kv) * dh, h),
                    Op("attention/core", "attention", 2.0 * q * (dh + dh) * keys * T),
                    _gemm("attention/out", T, h, q * dh)]
        case LatentAttention(num_heads=H):
            q = H / t
            rq, rkv, rope = a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim
            ops = []
            if rq is None:
                ops.append(_gemm("attention/q", T, q * a.qk_head_dim, h))
            else:
                ops += [_gemm("attention/q_a", T, rq, h), _gemm("attention/q_b", T, q * a.qk_head_dim, rq)]
            ops += [_gemm("attention/kv_a", T, rkv + rope, h),
                    _gemm("attention/kv_b", T, q * (a.qk_nope_head_dim + a.v_head_dim), rkv),
                    Op("attention/core", "attention", 2.0 * q * (a.qk_head_dim + a.v_head_dim) * keys * T),
                    _gemm("attention/out", T, h, q * a.v_head_dim)]
            return ops
    raise TypeError(a)


def ffn_ops(f: DenseFFN | MoEFFN, h: int, *, tokens: float, tp: int = 1, ep: int = 1) -> list[Op]:
    """The MLP or MoE block for `tokens` tokens on one device (balanced routing across ep ranks)."""
    T, t = tokens, tp
    match f:
        case DenseFFN(d_ff=d, gated=gated):
            return [_gemm("mlp/up", T, (2 if gated else 1) * d / t, h), _gemm("mlp/down", T, h, d / t)]
        case MoEFFN(num_experts=E, top_k=k, expert_d_ff=fe):
            mult = 2 if f.gated else 1
            local = E / ep
            per_expert = T * k / local if ep > 1 else T * k / E    # routed copies per local expert
            ops = [_gemm("moe/router", T, E, h),
                   _gemm("moe/experts_up", per_expert, mult * fe / t, h, count=local),
                   _gemm("moe/experts_down", per_expert, h, fe / t, count=local)]
            if f.shared_d_ff:
                ops += [_gemm("moe/shared_up", T, 2 * f.shared_d_ff / t, h),
                        _gemm("moe/shared_down", T, h, f.shared_d_ff / t)]
            if f.shared_gate:
                ops.append(_gemm("moe/shared_gate", T, 1, h))
            return ops
    raise TypeError(f)


def layer_ops(layer: LayerSpec, model: ModelSpec, *, tokens: float, keys: float, tp: int = 1, ep: int = 1) -> list[Op]:
    """Forward operations of one decoder layer."""
    h = model.hidden_size
    return (attention_ops(layer.attention, h, tokens=tokens, keys=keys, tp=tp)
            + ffn_ops(layer.ffn, h, tokens=tokens, tp=tp, ep=ep))


def head_ops(model: ModelSpec, *, tokens: float, tp: int = 1) -> list[Op]:
    """The LM head (T x e) @ (e x V/t); MPT-style and tied heads are the same product."""
    return [_gemm("head/logits", tokens, model.vocab_size / tp, model.embed_dim)]


def model_ops(model: ModelSpec, *, seq_len: int, tokens: float, convention: str = "causal", tp: int = 1,
              ep: int = 1) -> list[tuple[int, list[Op]]]:
    """(layer count, forward ops) per distinct layer group, then (1, head ops). Attention keys per
    query follow `convention` (causal: Megatron's halving; full) and each layer's window."""
    from flopcast.estimate.counts import attended_keys

    out = []
    for layer, count in model.layer_groups():
        keys = attended_keys(seq_len, layer.attention.window, convention)
        out.append((count, layer_ops(layer, model, tokens=tokens, keys=keys, tp=tp, ep=ep)))
    out.append((1, head_ops(model, tokens=tokens, tp=tp)))
    return out


def time_ops(ops: list[Op], ctx, *, elem_bytes: float = 2.0) -> list[dict[str, Any]]:
    """Each op with its forward time on the device of `ctx` (a roofline.DeviceCtx), its arithmetic
    intensity and whether it is compute- or memory-bound there."""
    from flopcast.estimate import roofline

    rows = []
    for op in ops:
        if op.kind == "gemm":
            t = roofline.gemm_time_s(ctx, op.m, op.n, op.k, op.count, elem_bytes)
            moved = op.count * (elem_bytes * (op.m * op.k + op.k * op.n) + roofline.ACT_BYTES * op.m * op.n)
        else:
            t = roofline.attention_time_s(ctx, op.flops)
            moved = 0.0
        intensity = op.flops / moved if moved else None
        ridge = ctx.peak_flops_per_s / ctx.mem_bytes_per_s
        rows.append({**op.to_dict(), "time_s": t,
                     "achieved_flops_per_s": op.flops / t if t > 0 else 0.0,
                     "arithmetic_intensity_flops_per_byte": intensity,
                     "bound": "compute" if intensity is None or intensity >= ridge else "memory"})
    return rows
