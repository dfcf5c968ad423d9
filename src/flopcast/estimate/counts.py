"""Exact parameter, FLOP and KV-cache byte counts of a ModelSpec.

Legend: L layers, h hidden, H heads, H_kv kv heads, d_head head dim, d_ff FFN width, V vocabulary,
E routed experts, k experts per token, S sequence length (tokens), w sliding window.

Parameters are counted tensor by tensor as `transformers` allocates them (tests/oracle compares
to the meta-device build). Matmul FLOPs per token are 2 x (weight elements a token is multiplied
by): every projection, the router, the routed top-k and shared experts, and the LM head (which
counts even when tied to the embedding); biases, norms, activations and the embedding lookup add
no matmul FLOPs (as `torch.utils.flop_counter` counts: addmm counts only the product).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flopcast.dtypes import KV_DTYPES, bytes_per_element
from flopcast.errors import InvalidScenario
from flopcast.specs.model import (
    DenseFFN,
    LatentAttention,
    LayerSpec,
    ModelSpec,
    MoEFFN,
    StandardAttention,
)

AttentionConvention = Literal["causal", "full"]
ATTENTION_CONVENTIONS = ("causal", "full")


@dataclass(frozen=True, slots=True)
class Part:
    """One named group of tensors: stored parameters, parameters a token touches (routed experts:
    only its top-k), and weight elements it is multiplied by in matmuls."""

    key: str
    params: int
    active: int
    matmul: int


def _p(key: str, weight: int, bias: int = 0, *, matmul: bool = True, share: tuple[int, int] = (1, 1)) -> Part:
    """Part for `share[1]` copies of a (weight, bias) pair of which a token uses `share[0]`."""
    used, stored = share
    return Part(key, (weight + bias) * stored, (weight + bias) * used, weight * used if matmul else 0)


def attention_parts(a: StandardAttention | LatentAttention, h: int) -> list[Part]:
    match a:
        case StandardAttention(num_heads=H, num_kv_heads=Hkv, head_dim=d):
            parts = [
                _p("attention/q", h * H * d, H * d if a.qkv_bias else 0),
                _p("attention/k", h * Hkv * d, Hkv * d if a.qkv_bias else 0),
                _p("attention/v", h * Hkv * d, Hkv * d if a.qkv_bias else 0),
                _p("attention/o", H * d * h, h if a.out_bias else 0),
            ]
            if a.qk_norm:
                qk_norm = 2 * d if a.qk_norm_scope == "head" else (H + Hkv) * d
                parts.append(_p("attention/qk_norm", qk_norm, matmul=False))
            if a.sinks:
                parts.append(_p("attention/sinks", H, matmul=False))
            return parts
        case LatentAttention(num_heads=H):
            rq, rkv, dqk = a.q_lora_rank, a.kv_lora_rank, a.qk_head_dim
            if rq is None:
                parts = [_p("attention/q", h * H * dqk)]
            else:
                parts = [
                    _p("attention/q_a", h * rq, rq if a.bias else 0),
                    _p("attention/q_a_norm", rq, matmul=False),
                    _p("attention/q_b", rq * H * dqk),
                ]
            return parts + [
                _p("attention/kv_a", h * (rkv + a.qk_rope_head_dim), (rkv + a.qk_rope_head_dim) if a.bias else 0),
                _p("attention/kv_a_norm", rkv, matmul=False),
                _p("attention/kv_b", rkv * H * (a.qk_nope_head_dim + a.v_head_dim)),
                _p("attention/o", H * a.v_head_dim * h, h if a.bias else 0),
            ]
    raise TypeError(f"unknown attention {a!r}")


def _mlp_parts(prefix: str, h: int, f: int, gated: bool, bias: bool, share=(1, 1), split=True) -> list[Part]:
    up = _p(f"{prefix}/up", h * f, f if bias else 0, share=share)
    down = _p(f"{prefix}/down", f * h, h if bias else 0, share=share)
    parts = [up, down]
    if gated:
        parts.insert(0, _p(f"{prefix}/gate", h * f, f if bias else 0, share=share))
    if not split:
        return [Part(prefix, sum(p.params for p in parts), sum(p.active for p in parts),
                     sum(p.matmul for p in parts))]
    return parts


def ffn_parts(f: DenseFFN | MoEFFN, h: int) -> list[Part]:
    match f:
        case DenseFFN():
            return _mlp_parts("mlp", h, f.d_ff, f.gated, f.bias)
        case MoEFFN(num_experts=E, top_k=k):
            parts = [_p("moe/router", h * E, E if f.router_bias else 0)]
            parts += _mlp_parts("moe/experts", h, f.expert_d_ff, f.gated, f.expert_bias, share=(k, E), split=False)
            if f.shared_d_ff:
                parts += _mlp_parts("moe/shared_experts", h, f.shared_d_ff, True, False, split=False)
            if f.shared_gate:
                parts.append(_p("moe/shared_gate", h))
            return parts
    raise TypeError(f"unknown ffn {f!r}")


def layer_parts(layer: LayerSpec, spec: ModelSpec) -> list[Part]:
    h = spec.hidden_size
    parts = attention_parts(layer.attention, h) + ffn_parts(layer.ffn, h)
    parts.append(_p("norm/layers", layer.num_norms * spec.norm.params(h), matmul=False))
    return parts


def model_parts(spec: ModelSpec) -> list[Part]:
    """Every part of the model, layers aggregated, in a stable order."""
    h, V, e = spec.hidden_size, spec.vocab_size, spec.embed_dim
    totals: dict[str, list[int]] = {}

    def add(p: Part, times: int = 1) -> None:
        acc = totals.setdefault(p.key, [0, 0, 0])
        acc[0] += p.params * times
        acc[1] += p.active * times
        acc[2] += p.matmul * times

    add(_p("embedding/tokens", V * e, matmul=False))
    if spec.positions == "learned":
        add(_p("embedding/positions", spec.position_rows * h, matmul=False))
    if e != h:
        add(_p("embedding/projections", 2 * e * h))
    for layer, count in spec.layer_groups():
        for p in layer_parts(layer, spec):
            add(p, count)
    if spec.final_norm:
        add(_p("norm/final", spec.norm.params(h), matmul=False))
    head = V * e
    add(Part("head/lm_head", 0 if spec.tie_embeddings else head, 0 if spec.tie_embeddings else head, head))
    return [Part(k, *v) for k, v in totals.items()]


def params_total(spec: ModelSpec) -> int:
    """Every stored parameter, tied tensors once: what `transformers` builds."""
    return sum(p.params for p in model_parts(spec))


def params_active(spec: ModelSpec) -> int:
    """Parameters one token uses: everything but the routed experts it is not sent to (embedding,
    positions and head included; a tied head is the embedding and is counted once)."""
    return sum(p.active for p in model_parts(spec))


def params_breakdown(spec: ModelSpec) -> dict[str, int]:
    """{component/sub: parameters}, summing to params_total (zero entries left out)."""
    return {p.key: p.params for p in model_parts(spec) if p.params}


def matmul_flops_per_token(spec: ModelSpec) -> int:
    """Forward matmul FLOPs per token excluding attention scores: 2 x weights multiplied."""
    return 2 * sum(p.matmul for p in model_parts(spec))


def attended_keys(seq_len: float, window: int | None, convention: AttentionConvention) -> float:
    """Mean number of keys a query attends to in a sequence of S tokens.

    full (PaLM, Chowdhery et al. 2022 App. B): every query scores min(S, w) keys.
    causal (Megatron-Core halving): S / 2 without a window (or S <= w); with a window w < S the
    continuous analogue w - w^2 / (2 S) (integral of min(x, w) over 0..S, divided by S), which
    equals S / 2 at S = w.
    """
    if convention == "full":
        return float(min(seq_len, window)) if window else float(seq_len)
    if convention == "causal":
        if not window or seq_len <= window:
            return seq_len / 2
        return window - window * window / (2 * seq_len)
    raise InvalidScenario(f"attention convention {convention!r}; accepted: {', '.join(ATTENTION_CONVENTIONS)}")


def _score_dims(a: StandardAttention | LatentAttention) -> tuple[int, int, int]:
    match a:
        case StandardAttention():
            return a.num_heads, a.head_dim, a.head_dim
        case LatentAttention():
            return a.num_heads, a.qk_head_dim, a.v_head_dim
    raise TypeError(a)


def attention_flops_per_token(spec: ModelSpec, seq_len: int, convention: AttentionConvention = "causal") -> float:
    """Forward attention-score FLOPs per token at sequence length S: per layer
    2 H (d_qk + d_v) x attended keys (QK^T and AV products; MLA without weight absorption, as in
    training and prefill). Softmax and masking are not counted."""
    if seq_len < 1:
        raise InvalidScenario(f"seq_len: expected a positive integer, got {seq_len!r}")
    total = 0.0
    for layer, count in spec.layer_groups():
        H, dqk, dv = _score_dims(layer.attention)
        total += count * 2 * H * (dqk + dv) * attended_keys(seq_len, layer.attention.window, convention)
    return total


def mla_up_projection_flops_per_token(spec: ModelSpec) -> float:
    """Forward FLOPs per token of the MLA up-projections (q_b from the query latent, kv_b from the
    key-value latent) over all layers: what recomputing them repeats (0 without MLA)."""
    total = 0.0
    for layer, count in spec.layer_groups():
        a = layer.attention
        if isinstance(a, LatentAttention):
            q_b = (a.q_lora_rank or 0) * a.num_heads * a.qk_head_dim
            kv_b = a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)
            total += count * 2 * (q_b + kv_b)
    return total


def forward_flops_per_token(spec: ModelSpec, seq_len: int, convention: AttentionConvention = "causal") -> float:
    """Matmul FLOPs + attention-score FLOPs per token in a forward pass at sequence length S."""
    return matmul_flops_per_token(spec) + attention_flops_per_token(spec, seq_len, convention)


def kv_elements_per_token_layer(a: StandardAttention | LatentAttention) -> int:
    """Cached elements per token in one layer: 2 H_kv d_head (K and V) for MHA/GQA/MQA;
    r_kv + d_rope (compressed latent and shared rope key) for MLA."""
    match a:
        case StandardAttention():
            return 2 * a.num_kv_heads * a.head_dim
        case LatentAttention():
            return a.kv_lora_rank + a.qk_rope_head_dim
    raise TypeError(a)


def kv_cache_bytes_per_sequence(spec: ModelSpec, seq_len: int, kv_dtype: str = "bf16") -> float:
    """KV-cache bytes held for one sequence of S tokens; sliding-window layers hold min(S, w)."""
    b = bytes_per_element(kv_dtype, allowed=KV_DTYPES, field="kv_dtype")
    total = 0.0
    for layer, count in spec.layer_groups():
        w = layer.attention.window
        tokens = min(seq_len, w) if w else seq_len
        total += count * kv_elements_per_token_layer(layer.attention) * b * tokens
    return total


def kv_cache_bytes_per_token(spec: ModelSpec, seq_len: int | None = None, kv_dtype: str = "bf16") -> float:
    """KV-cache bytes per token: without a window sum_l elements x bytes; at a given S the
    sequence total divided by S (so windowed layers count min(S, w) / S of a token each)."""
    if seq_len is None:
        b = bytes_per_element(kv_dtype, allowed=KV_DTYPES, field="kv_dtype")
        return sum(c * kv_elements_per_token_layer(lay.attention) * b for lay, c in spec.layer_groups())
    return kv_cache_bytes_per_sequence(spec, seq_len, kv_dtype) / seq_len


def params_mtp(spec: ModelSpec, layers: int | None = None) -> int:
    """Parameters of the multi-token-prediction modules (DeepSeek-V3 sec. 2.2): per module one decoder
    layer like the last main layer, a projection of [embedding; hidden] (2h -> h) and two norms on
    its inputs plus one on its output; the embedding and the head are shared with the main model."""
    n = spec.mtp_layers if layers is None else layers
    if n <= 0:
        return 0
    h = spec.hidden_size
    last = spec.layers[-1]
    one = sum(p.params for p in layer_parts(last, spec)) + 2 * h * h + 3 * spec.norm.params(h)
    return n * one


def _attention_adapter_dims(a: StandardAttention | LatentAttention, h: int) -> list[tuple[int, int]]:
    """(in, out) of each attention projection a LoRA on `attention` adapts."""
    if isinstance(a, StandardAttention):
        q, kv = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
        return [(h, q), (h, kv), (h, kv), (q, h)]
    dq = a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
    q = [(h, a.q_lora_rank), (a.q_lora_rank, dq)] if a.q_lora_rank else [(h, dq)]
    return q + [(h, a.kv_lora_rank + a.qk_rope_head_dim),
                (a.kv_lora_rank, a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)),
                (a.num_heads * a.v_head_dim, h)]


def _ffn_adapter_dims(f: DenseFFN | MoEFFN, h: int, targets: tuple[str, ...]) -> list[tuple[int, int]]:
    """(in, out) of each FFN projection a token passes through that a LoRA on `mlp` (dense and shared
    experts) or `experts` (its top-k routed experts) adapts."""
    out: list[tuple[int, int]] = []
    match f:
        case DenseFFN():
            if "mlp" in targets:
                out += [(h, f.d_ff)] * (2 if f.gated else 1) + [(f.d_ff, h)]
        case MoEFFN():
            if "mlp" in targets and f.shared_d_ff:
                out += [(h, f.shared_d_ff)] * (2 if f.gated else 1) + [(f.shared_d_ff, h)]
            if "experts" in targets:
                out += ([(h, f.expert_d_ff)] * (2 if f.gated else 1) + [(f.expert_d_ff, h)]) * f.top_k
    return out


def adapter_params_per_token(spec: ModelSpec, rank: int, targets: tuple[str, ...]) -> int:
    """LoRA adapter parameters a token passes through: r (in + out) for each adapted projection
    (A: in x r, B: r x out; Hu et al. 2021) of the targeted modules, over every layer."""
    total = 0
    for layer in spec.layers:
        dims = _attention_adapter_dims(layer.attention, spec.hidden_size) if "attention" in targets else []
        dims += _ffn_adapter_dims(layer.ffn, spec.hidden_size, targets)
        total += sum(rank * (i + o) for i, o in dims)
    return total


def finetune_flops_per_token(spec: ModelSpec, seq_len: int, rank: int, targets: tuple[str, ...],
                             convention: AttentionConvention = "causal") -> float:
    """Model FLOPs per trained token of LoRA / QLoRA fine-tuning (frozen base weights):

        F = 2 M + 3 A + 6 P_adapter
    M = matmul FLOPs of a forward (2 N), A = attention-score FLOPs of a forward: the forward (M + A),
    the backward's input gradients (M + 2 A: the attention backward forms dQ, dK and dV), and no
    weight-gradient GEMM for a frozen weight; the adapters train fully (forward, input and weight
    gradients: 6 per parameter). About 4N per token where full training counts 6N: the count NeMo's
    fine-tuning table reports (Llama 2 70B LoRA: 705 model TFLOP/s/GPU at 2,557 tokens/s/GPU, 2.76e11
    FLOPs per token = 4.0 x 69B)."""
    return (2 * matmul_flops_per_token(spec) + 3 * attention_flops_per_token(spec, seq_len, convention)
            + 6 * adapter_params_per_token(spec, rank, targets))
