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
    LinearAttention,
    Mamba2Mixer,
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
            gate = 2 if a.output_gate else 1
            parts = [
                _p("attention/q", h * gate * H * d, gate * H * d if a.qkv_bias else 0),
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
            ] + _indexer_parts(a, h)
    raise TypeError(f"unknown attention {a!r}")


def _indexer_parts(a: LatentAttention, h: int) -> list[Part]:
    """DeepSeek Sparse Attention's indexer: wq_b r_q -> H_I d_I, wk h -> d_I, a LayerNorm (weight and
    bias) on the key, weights_proj h -> H_I."""
    if not a.index_heads:
        return []
    HI, dI = a.index_heads, a.index_head_dim
    return [_p("attention/indexer_q", (a.q_lora_rank or 0) * HI * dI),
            _p("attention/indexer_k", h * dI),
            _p("attention/indexer_k_norm", 2 * dI, matmul=False),
            _p("attention/indexer_weights", h * HI)]


def ssm_parts(m: LinearAttention | Mamba2Mixer, h: int) -> list[Part]:
    """A recurrent-state mixer's tensors: projections (matmul), the depthwise conv (its FLOPs are
    sequence work, in state_mixer_flops_per_sequence), per-head scalars and the gated norm."""
    match m:
        case LinearAttention(num_key_heads=Hk, num_value_heads=Hv, key_head_dim=dk, value_head_dim=dv):
            return [_p("ssm/in_proj", h * (2 * Hk * dk + 2 * Hv * dv + 2 * Hv)),
                    _p("ssm/conv", m.conv_dim * m.conv_kernel, matmul=False),
                    _p("ssm/head_params", 2 * Hv + dv, matmul=False),   # dt_bias, A_log, gated norm
                    _p("ssm/out_proj", Hv * dv * h)]
        case Mamba2Mixer(num_heads=H):
            d_in, conv = m.d_inner, m.conv_dim
            proj = 2 * d_in + 2 * m.num_groups * m.state_size + H
            return [_p("ssm/in_proj", h * proj, proj if m.in_bias else 0),
                    _p("ssm/conv", conv * m.conv_kernel, conv if m.conv_bias else 0, matmul=False),
                    _p("ssm/head_params", 3 * H + (d_in if m.gated_norm else 0), matmul=False),
                    _p("ssm/out_proj", d_in * h, h if m.out_bias else 0)]
    raise TypeError(f"unknown state mixer {m!r}")


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
            d_e = f.latent_size or h
            if f.latent_size:
                lat, b = f.latent_size, f.latent_bias
                parts += [_p("moe/latent_proj", 2 * h * lat, (lat + h) if b else 0)]
            parts += _mlp_parts("moe/experts", d_e, f.expert_d_ff, f.gated, f.expert_bias, share=(k, E), split=False)
            if f.shared_d_ff:
                parts += _mlp_parts("moe/shared_experts", h, f.shared_d_ff, f.shared_gated, f.shared_bias,
                                    split=False)
            if f.shared_gate:
                parts.append(_p("moe/shared_gate", h))
            return parts
    raise TypeError(f"unknown ffn {f!r}")


def layer_parts(layer: LayerSpec, spec: ModelSpec) -> list[Part]:
    h = spec.hidden_size
    parts = attention_parts(layer.attention, h) if layer.attention is not None else []
    if layer.ssm is not None:
        parts += ssm_parts(layer.ssm, h)
    if layer.ffn is not None:
        parts += ffn_parts(layer.ffn, h)
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
    stored = (0 if spec.tie_embeddings else head) + (V if spec.head_bias else 0)
    add(Part("head/lm_head", stored, stored, head))
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


def attended_keys(seq_len: float, window: int | None, convention: AttentionConvention, *,
                  chunked: bool = False) -> float:
    """Mean number of keys a query attends to in a sequence of S tokens.

    full (PaLM, Chowdhery et al. 2022 App. B): every query scores min(S, w) keys.
    causal (Megatron-Core halving): S / 2 without a window (or S <= w); with a window w < S the
    continuous analogue w - w^2 / (2 S) (integral of min(x, w) over 0..S, divided by S), which
    equals S / 2 at S = w. Chunked attention (Llama 4: `window` is the chunk size c, queries see
    only their own chunk): causal, min(S, c) / 2, the steady state of a query's position in its
    chunk (the exact mean over S = n c + r tokens, (n c^2 + r^2) / (2 S), dips each time a chunk
    restarts; the steady state keeps FLOPs per token monotone in S and is exact at S = n c).
    """
    if convention == "full":
        return float(min(seq_len, window)) if window else float(seq_len)
    if convention == "causal":
        if not window or seq_len <= window:
            return seq_len / 2
        if chunked:
            return window / 2
        return window - window * window / (2 * seq_len)
    raise InvalidScenario(f"attention convention {convention!r}; accepted: {', '.join(ATTENTION_CONVENTIONS)}")


def layer_keys(layer: LayerSpec, seq_len: float, convention: AttentionConvention) -> float:
    """Keys a query of this layer's attention attends (0 without attention): the window or chunk, and
    DeepSeek Sparse Attention's top-k (a query attends at most index_topk keys)."""
    a = layer.attention
    if a is None:
        return 0.0
    chunked = isinstance(a, StandardAttention) and a.chunked
    keys = attended_keys(seq_len, a.window, convention, chunked=chunked)
    if isinstance(a, LatentAttention) and a.index_heads and a.index_topk:
        keys = min(keys, float(a.index_topk))
    return keys


def _score_dims(a: StandardAttention | LatentAttention) -> tuple[int, int, int]:
    match a:
        case StandardAttention():
            return a.num_heads, a.head_dim, a.head_dim
        case LatentAttention():
            return a.num_heads, a.qk_head_dim, a.v_head_dim
    raise TypeError(a)


def indexer_flops_per_token(a: StandardAttention | LatentAttention | None, seq_len: float,
                            convention: AttentionConvention) -> float:
    """DSA indexer scores per query (DeepSeek-V3.2): a ReLU dot product with every earlier key per
    indexer head, then a head-weighted sum: 2 H_I (d_I + 1) x keys scored (the causal or full count,
    no window: the indexer sees the whole context). 0 without an indexer."""
    if not isinstance(a, LatentAttention) or not a.index_heads:
        return 0.0
    return 2.0 * a.index_heads * (a.index_head_dim + 1) * attended_keys(seq_len, None, convention)


def scan_flops_per_token(m: LinearAttention | Mamba2Mixer, *, recurrent: bool = False) -> float:
    """Sequence-mixing FLOPs per token of a state mixer (the projections are matmul FLOPs).

    Both: the depthwise causal conv, 2 C K per token (C conv channels, K taps).
    Gated DeltaNet, chunked form (Yang et al. 2024; FLA's chunk_gated_delta_rule) with chunk c, per
    value head: intra-chunk K K^T and Q K^T (2 x 2 c d_k) and the intra-chunk attention times the
    new values (2 c d_v), and per token the state read for the keys and queries and the state
    update (3 x 2 d_k d_v). The triangular solve of the UT transform is not counted.
    Mamba-2, chunked SSD (Dao & Gu 2024, ssd_minimal) with chunk c, per head of P dims and N states:
    C B^T and its product with x inside the chunk (2 c N + 2 c P), the chunk states and their
    read-out (2 x 2 N P), and the sequential pass of chunk states (2 N P per chunk: 2 N P / c per
    token).
    `recurrent` (decode, one token with a cached state): GDN 6 d_k d_v per value head (state decay
    and delta update, read-out), Mamba-2 6 P N per head; the conv as above."""
    conv = 2.0 * m.conv_dim * m.conv_kernel
    match m:
        case LinearAttention(num_value_heads=Hv, key_head_dim=dk, value_head_dim=dv, chunk_size=c):
            if recurrent:
                return conv + Hv * 6.0 * dk * dv
            return conv + Hv * (4.0 * c * dk + 2.0 * c * dv + 6.0 * dk * dv)
        case Mamba2Mixer(num_heads=H, head_dim=P, state_size=N, chunk_size=c):
            if recurrent:
                return conv + H * 6.0 * P * N
            return conv + H * (2.0 * c * N + 2.0 * c * P + 4.0 * N * P + 2.0 * N * P / c)
    raise TypeError(m)


def attention_flops_per_token(spec: ModelSpec, seq_len: int, convention: AttentionConvention = "causal") -> float:
    """Forward sequence-mixing FLOPs per token at sequence length S: per attention layer
    2 H (d_qk + d_v) x attended keys (QK^T and AV products; MLA without weight absorption, as in
    training and prefill; DSA: at most index_topk keys, plus its indexer's scores), per state-mixer
    layer its scan (scan_flops_per_token, chunked form). Softmax and masking are not counted."""
    if seq_len < 1:
        raise InvalidScenario(f"seq_len: expected a positive integer, got {seq_len!r}")
    total = 0.0
    for layer, count in spec.layer_groups():
        if layer.attention is not None:
            H, dqk, dv = _score_dims(layer.attention)
            total += count * 2 * H * (dqk + dv) * layer_keys(layer, seq_len, convention)
            total += count * indexer_flops_per_token(layer.attention, seq_len, convention)
        if layer.ssm is not None:
            total += count * scan_flops_per_token(layer.ssm)
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


def kv_elements_per_token_layer(a: StandardAttention | LatentAttention | None) -> int:
    """Cached elements per token in one layer: 2 H_kv d_head (K and V) for MHA/GQA/MQA;
    r_kv + d_rope (compressed latent and shared rope key) for MLA, plus d_I for the DSA indexer's
    key cache; 0 for a layer without attention (its state is per sequence: state_bytes_per_sequence)."""
    match a:
        case None:
            return 0
        case StandardAttention():
            return 2 * a.num_kv_heads * a.head_dim
        case LatentAttention():
            return a.kv_lora_rank + a.qk_rope_head_dim + a.index_head_dim
    raise TypeError(a)


def state_elements_layer(m: LinearAttention | Mamba2Mixer | None) -> tuple[int, int]:
    """(recurrent-state elements, conv-state elements) one sequence holds in a state-mixer layer,
    whatever its length: GDN H_v d_k d_v and C (K - 1); Mamba-2 H P N and C (K - 1)."""
    match m:
        case None:
            return 0, 0
        case LinearAttention():
            return m.num_value_heads * m.key_head_dim * m.value_head_dim, m.conv_dim * (m.conv_kernel - 1)
        case Mamba2Mixer():
            return m.num_heads * m.head_dim * m.state_size, m.conv_dim * (m.conv_kernel - 1)
    raise TypeError(m)


STATE_DTYPE = "fp32"   # recurrent states are kept in fp32 (vLLM's mamba_ssm_cache_dtype default for these models)


def state_bytes_per_sequence(spec: ModelSpec, kv_dtype: str = "bf16") -> float:
    """Recurrent-state bytes one sequence holds over all state-mixer layers, independent of its
    length: SSM / DeltaNet states in fp32, conv states at the KV dtype. 0 for attention-only models."""
    state_b = bytes_per_element(STATE_DTYPE)
    conv_b = bytes_per_element(kv_dtype, allowed=KV_DTYPES, field="kv_dtype")
    total = 0.0
    for layer, count in spec.layer_groups():
        ssm, conv = state_elements_layer(layer.ssm)
        total += count * (ssm * state_b + conv * conv_b)
    return total


def kv_cache_bytes_per_sequence(spec: ModelSpec, seq_len: int, kv_dtype: str = "bf16") -> float:
    """KV-cache bytes held for one sequence of S tokens; sliding-window (and chunked) layers hold
    min(S, w). State-mixer layers hold no KV cache: their fixed state is state_bytes_per_sequence."""
    b = bytes_per_element(kv_dtype, allowed=KV_DTYPES, field="kv_dtype")
    total = 0.0
    for layer, count in spec.layer_groups():
        w = layer.window
        tokens = min(seq_len, w) if w else seq_len
        total += count * kv_elements_per_token_layer(layer.attention) * b * tokens
    return total


def kv_cache_bytes_per_token(spec: ModelSpec, seq_len: int | None = None, kv_dtype: str = "bf16") -> float:
    """KV-cache bytes per token: without a window sum_l elements x bytes (state layers hold no
    per-token cache); at a given S the sequence total divided by S (so windowed layers count
    min(S, w) / S of a token each)."""
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
