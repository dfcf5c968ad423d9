"""Per-operation rows of a forward pass: the one place that turns a layer variant (MHA/GQA/MQA or MLA
attention, dense or MoE FFN) and a shard size into the operations a layer runs.

`layer_ops(layer, model, tokens=T, keys=K, tp=t, ep=e, ...)` lists the forward operations of one
decoder layer for T tokens on one device of a tensor-parallel group of t (and an expert-parallel
group of e, balanced routing), in four kinds:
- gemm: (m, n, k, count) shape, FLOPs 2 m n k count, weight elements n k count;
- attention: the fused attention core, FLOPs of QK^T and AV over `keys` keys per query, with its
  heads per device and head dims;
- elementwise: norms, residual adds (and dropout masks), the activation function, rotary
  embeddings, the MoE token permutation, each with the HBM bytes its forward moves;
- comm: the tensor-parallel collectives (2 per layer), the expert dispatch/combine and the
  context-parallel K/V exchange, each with one call's message bytes per rank.
Each row names its recompute class (the `parallel.recompute_modules` entry that recomputes it
under selective recompute; every row is recomputed under full recompute). `head_ops` lists the LM
head. At t = e = 1, the FLOPs of a model's rows sum to `counts.forward_flops_per_token` x tokens,
which the oracle tests check against `torch.utils.flop_counter` layer by layer.

The training estimator (estimate/training/layer.py) and the serving estimator (estimate/serving.py)
time these same rows; `flopcast train --json` `ops` lists them with the times the step used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

ACT_BYTES = 2.0             # 16-bit activations
MASK_BYTES = 1.0            # a dropout mask element
KINDS = ("gemm", "attention", "elementwise", "comm")


@dataclass(frozen=True, slots=True)
class Saved:
    """A tensor an op keeps for the backward pass: elements per token on one device, stored as a
    16-bit activation ("act"), as a GEMM input at the GEMM operand precision ("gemm_input": the fp8
    copies under fp8 training) or as a dropout mask ("mask", 1 byte); `recompute`: the module whose
    selective recompute drops it and recomputes it in the backward ("": always kept)."""

    elems_per_token: float
    stored_as: str = "act"
    recompute: str = ""


@dataclass(frozen=True, slots=True)
class Op:
    """One forward operation on one device. GEMMs: `count` products (m x k) @ (k x n); FLOPs are
    2 m n k count. The attention core: FLOPs of QK^T and AV over `keys` keys per query for `heads`
    heads of dims d_qk, d_v; its bytes are what a fused kernel reads and writes over the tokens' own
    keys (Q, K, V in, O out; scores stay on chip). Element-wise ops: `bytes` moved through HBM. Collectives: `bytes` of one
    call's message per rank, `calls` per forward."""

    name: str
    kind: str                 # gemm | attention | elementwise | comm
    flops: float = 0.0
    m: float = 0.0
    n: float = 0.0
    k: float = 0.0
    count: float = 1.0
    weight_elems: float = 0.0
    bytes: float = 0.0
    elems_per_token: float = 0.0  # element-wise: 16-bit elements read + written per token (bytes = T x this x 2, + masks)
    calls: float = 1.0
    heads: float = 0.0
    d_qk: float = 0.0
    d_v: float = 0.0
    recompute: str = ""       # selective-recompute class: core_attn | layernorm | moe_act | mla_up_proj | ""
    saved: tuple[Saved, ...] = ()   # tensors kept for backward (training)
    grouped: bool = False     # a grouped GEMM (MoE experts): `count` groups of m tokens, each paying a
                              # per-group cost (efficiency.grouped_gemm_frac)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "flops": self.flops,
                "gemm_mnk_count": [self.m, self.n, self.k, self.count] if self.kind == "gemm" else None,
                "weight_elems": self.weight_elems, "bytes": self.bytes, "recompute": self.recompute or None}


def _gemm(name: str, m: float, n: float, k: float, count: float = 1.0, recompute: str = "",
          saved: tuple[Saved, ...] = (), extra_weights: float = 0.0, grouped: bool = False) -> Op:
    """A GEMM row; `extra_weights`: the parameters read beside the matrix (biases, norms applied
    to its output) on this device; `grouped`: one grouped GEMM of `count` groups (MoE experts)."""
    # (m count) first: routed copies per expert times experts is the whole number of copies
    return Op(name=name, kind="gemm", flops=2.0 * (m * count) * n * k, m=m, n=n, k=k, count=count,
              weight_elems=n * k * count + extra_weights, recompute=recompute, saved=saved, grouped=grouped)


def attention_ops(a: StandardAttention | LatentAttention, h: int, *, tokens: float, keys: float, tp: int = 1,
                  absorbed_tokens: float = 0.0, sp: bool = False, index_keys: float | None = None) -> list[Op]:
    """Projections and core of one attention block for `tokens` query tokens attending `keys` keys
    each (the caller applies the causal / full convention and sliding windows). MLA serving runs
    decode tokens in the absorbed form (`absorbed_tokens` of the tokens): kv_b is folded into the
    query and output sides (two batched GEMMs per head) instead of expanding the cached latent.
    Saved for backward: Q, K and V (MLA: the latents, and Q, K, V from the up-projections unless
    those are recomputed) and the output projection's input."""
    T, t = tokens, tp
    sp_div = tp if sp else 1
    match a:
        case StandardAttention(num_heads=H, num_kv_heads=Hkv, head_dim=dh):
            q = H / t
            kv = Hkv / t if Hkv >= t else 1.0      # kv heads replicated when t > H_kv
            qg = 2 * q if a.output_gate else q       # Qwen3-Next: the query projection also yields the gate
            qkv_extra = ((qg + 2 * kv) * dh if a.qkv_bias else 0.0) + (
                ((q + kv) * dh if a.qk_norm_scope == "projection" else 2 * dh) if a.qk_norm else 0.0)
            return [_gemm("attention/qkv", T, (qg + 2 * kv) * dh, h, saved=(Saved((qg + 2 * kv) * dh),),
                          extra_weights=qkv_extra),
                    Op("attention/core", "attention", 2.0 * q * (dh + dh) * keys * T, heads=q, d_qk=dh, d_v=dh,
                       bytes=T * (q + kv) * (dh + dh) * ACT_BYTES, weight_elems=q if a.sinks else 0.0,
                       recompute="core_attn"),
                    _gemm("attention/out", T, h, q * dh, saved=(Saved(q * dh, "gemm_input"),),
                          extra_weights=h if a.out_bias else 0.0)]
        case LatentAttention(num_heads=H):
            q = H / t
            rq, rkv, rope = a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim
            ops = []
            if rq is None:
                ops.append(_gemm("attention/q", T, q * a.qk_head_dim, h))
            else:
                ops += [_gemm("attention/q_a", T, rq, h, saved=(Saved(rq / sp_div),),
                              extra_weights=rq + (rq if a.bias else 0)),   # its norm (and bias)
                        _gemm("attention/q_b", T, q * a.qk_head_dim, rq, recompute="mla_up_proj")]
            qkv = q * (2 * a.qk_head_dim + a.v_head_dim)
            ops += [_gemm("attention/kv_a", T, rkv + rope, h, saved=(Saved((rkv + rope) / sp_div),),
                          extra_weights=rkv + (rkv + rope if a.bias else 0)),
                    _gemm("attention/kv_b", T - absorbed_tokens, q * (a.qk_nope_head_dim + a.v_head_dim), rkv,
                          recompute="mla_up_proj", saved=(Saved(qkv, recompute="mla_up_proj"),))]
            if absorbed_tokens:
                ops += [_gemm("attention/absorb_q", absorbed_tokens, rkv, a.qk_nope_head_dim, count=q),
                        _gemm("attention/absorb_out", absorbed_tokens, a.v_head_dim, rkv, count=q)]
            ops += [Op("attention/core", "attention", 2.0 * q * (a.qk_head_dim + a.v_head_dim) * keys * T, heads=q,
                       d_qk=a.qk_head_dim, d_v=a.v_head_dim, bytes=T * 2 * q * (a.qk_head_dim + a.v_head_dim) * ACT_BYTES,
                       recompute="core_attn"),
                    _gemm("attention/out", T, h, q * a.v_head_dim, saved=(Saved(q * a.v_head_dim, "gemm_input"),),
                          extra_weights=h if a.bias else 0.0)]
            return ops + indexer_ops(a, h, tokens=T, keys=index_keys if index_keys is not None else keys)
    raise TypeError(a)


def indexer_ops(a: LatentAttention, h: int, *, tokens: float, keys: float) -> list[Op]:
    """DeepSeek Sparse Attention's lightning indexer for `tokens` queries scoring `keys` keys each:
    its projections (q from the query latent, one shared key with a LayerNorm, per-head weights),
    replicated on every tensor-parallel rank, and the scores: per indexer head a (T x d_I) @
    (d_I x keys) product and the head-weighted sum (one more multiply-add per key and head), written
    as a batched GEMM row without weights."""
    if not a.index_heads:
        return []
    HI, dI, T = a.index_heads, a.index_head_dim, tokens
    scores = Op(name="attention/indexer_scores", kind="gemm", flops=2.0 * T * keys * (dI + 1) * HI, m=T, n=keys,
                k=dI + 1, count=HI, recompute="core_attn", saved=(Saved(dI),))
    return [_gemm("attention/indexer_q", T, HI * dI, a.q_lora_rank or 0),
            _gemm("attention/indexer_k", T, dI, h, extra_weights=2 * dI),
            _gemm("attention/indexer_weights", T, HI, h), scores]


def state_mixer_ops(m: LinearAttention | Mamba2Mixer, h: int, *, tokens: float, tp: int = 1,
                    recurrent_tokens: float = 0.0) -> list[Op]:
    """A gated DeltaNet or Mamba-2 mixer for `tokens` tokens on one device (heads split over tp):
    the input projection, the depthwise causal conv (an element-wise row: read and write its
    channels; its 2 C K FLOPs per token), the scan (an "attention"-kind row: the sequence-mixing
    core, chunked for prefill and training, one recurrent step for `recurrent_tokens` decode
    tokens; counts.scan_flops_per_token) and the output projection. Saved for backward: the
    projection output and the scan output."""
    from flopcast.estimate.counts import scan_flops_per_token

    T, t = tokens, tp
    conv_flops = 2.0 * m.conv_dim * m.conv_kernel
    match m:
        case LinearAttention(num_value_heads=Hv, key_head_dim=dk, value_head_dim=dv):
            proj, inner, heads, extra = m.conv_dim + Hv * dv + 2 * Hv, Hv * dv, Hv, 2 * Hv + dv
            d_qk, d_v = dk, dv
        case Mamba2Mixer(num_heads=H):
            proj = 2 * m.d_inner + 2 * m.num_groups * m.state_size + H
            inner, heads, d_qk, d_v = m.d_inner, H, m.state_size, m.head_dim
            extra = 3 * H + (m.d_inner if m.gated_norm else 0) + (proj if m.in_bias else 0)
        case _:
            raise TypeError(m)
    chunked = (scan_flops_per_token(m) - conv_flops) * (T - recurrent_tokens)
    stepped = (scan_flops_per_token(m, recurrent=True) - conv_flops) * recurrent_tokens
    conv = m.conv_dim / t
    return [_gemm("ssm/in_proj", T, proj / t, h, saved=(Saved(proj / t),), extra_weights=extra / t),
            Op("ssm/conv", "elementwise", flops=conv_flops / t * T, bytes=T * 2 * conv * ACT_BYTES,
               elems_per_token=2 * conv, saved=(Saved(conv),),
               weight_elems=m.conv_dim * (m.conv_kernel + (isinstance(m, Mamba2Mixer) and m.conv_bias)) / t),
            Op("ssm/scan", "attention", flops=(chunked + stepped) / t, heads=heads / t, d_qk=d_qk, d_v=d_v,
               bytes=T * (conv + inner / t) * ACT_BYTES, recompute="core_attn"),
            _gemm("ssm/out_proj", T, h, inner / t, saved=(Saved(inner / t, "gemm_input"),),
                  extra_weights=h if isinstance(m, Mamba2Mixer) and m.out_bias else 0.0)]


def ffn_ops(f: DenseFFN | MoEFFN, h: int, *, tokens: float, tp: int = 1, ep: int = 1,
            expert_tokens: float | None = None, expert_count: float | None = None,
            expert_tp: int | None = None) -> list[Op]:
    """The MLP or MoE block for `tokens` tokens on one device: balanced routing across ep ranks, or
    (serving) `expert_count` experts receiving `expert_tokens` routed copies each; expert weights
    split over `expert_tp` ranks by width (MoE parallel folding; default tp)."""
    T, t = tokens, tp
    match f:
        case DenseFFN(d_ff=d, gated=gated):
            up = (2 if gated else 1) * d / t
            return [_gemm("mlp/up", T, up, h, extra_weights=up if f.bias else 0.0),
                    _gemm("mlp/down", T, h, d / t, saved=(Saved(d / t, "gemm_input"),),
                          extra_weights=h if f.bias else 0.0)]
        case MoEFFN(num_experts=E, top_k=k, expert_d_ff=fe):
            mult = 2 if f.gated else 1
            local = E / ep if expert_count is None else expert_count
            per_expert = (T * k / local if ep > 1 else T * k / E) if expert_tokens is None else expert_tokens
            et = expert_tp or t
            de = f.latent_size or h
            ops = [_gemm("moe/router", T, E, h, extra_weights=E if f.router_bias else 0.0),
                   _gemm("moe/experts_up", per_expert, mult * fe / et, de, count=local,
                         extra_weights=local * mult * fe / et if f.expert_bias else 0.0, grouped=True),
                   _gemm("moe/experts_down", per_expert, de, fe / et, count=local,
                         extra_weights=local * de if f.expert_bias else 0.0, grouped=True)]
            if f.latent_size:   # Nemotron-H: into and out of the experts' latent (replicated over tp)
                ops += [_gemm("moe/latent_in", T, de, h, extra_weights=de if f.latent_bias else 0.0),
                        _gemm("moe/latent_out", T, h, de, extra_weights=h if f.latent_bias else 0.0)]
            if f.shared_d_ff:
                sm, sd = (2 if f.shared_gated else 1) * f.shared_d_ff / t, f.shared_d_ff / t
                ops += [_gemm("moe/shared_up", T, sm, h, extra_weights=sm if f.shared_bias else 0.0),
                        _gemm("moe/shared_down", T, h, sd, saved=(Saved(sd, "gemm_input"),),
                              extra_weights=h if f.shared_bias else 0.0)]
            if f.shared_gate:
                ops.append(_gemm("moe/shared_gate", T, 1, h))
            return ops
    raise TypeError(f)


MODULE_OF = {"attention": "attention", "mlp": "mlp", "moe/router": "router", "moe/experts": "experts",
             "moe/shared": "mlp"}


def module_of(op: Op) -> str:
    """The fine-tuning target module an op's weight belongs to: attention, mlp, experts or router."""
    for prefix, module in MODULE_OF.items():
        if op.name.startswith(prefix):
            return module
    return ""


def _rope_elems_per_token(a: StandardAttention | LatentAttention | None, model: ModelSpec, tp: int) -> float:
    """Elements rotary embeddings rotate per token on one device: q and k (MLA: the decoupled rope
    parts of q and of the shared key); none on NoPE layers or without attention."""
    match a:
        case None:
            return 0.0
        case StandardAttention(num_heads=H, num_kv_heads=Hkv, head_dim=dh):
            kv = Hkv / tp if Hkv >= tp else 1
            return (H / tp + kv) * dh if model.positions == "rope" and a.rope else 0.0
        case LatentAttention(num_heads=H):
            return H / tp * a.qk_rope_head_dim + a.qk_rope_head_dim
    raise TypeError(a)


def kv_elems_per_token(a: StandardAttention | LatentAttention | None, tp: int) -> float:
    """K and V elements per token one device of a tensor-parallel group of tp holds (kv heads
    replicated when tp > H_kv; MLA: the latent and the shared rope key; 0 without attention)."""
    match a:
        case None:
            return 0.0
        case StandardAttention(num_kv_heads=Hkv, head_dim=dh):
            return 2 * (Hkv / tp if Hkv >= tp else 1) * dh
        case LatentAttention():
            return a.kv_lora_rank + a.qk_rope_head_dim
    raise TypeError(a)


def _ffn_elementwise(f: DenseFFN | MoEFFN | None, h: int, T: float, tp: int, sp_div: int) -> list[Op]:
    match f:
        case None:
            return []
        case DenseFFN(d_ff=d, gated=gated):
            act = (3 if gated else 2) * d / tp
            return [Op("mlp/act", "elementwise", bytes=T * act * ACT_BYTES, elems_per_token=act,
                       saved=(Saved((2 if gated else 1) * d / tp),))]
        case MoEFFN(top_k=k, expert_d_ff=fe):
            mult = 2 if f.gated else 1
            act, permute = k * (mult + 1) * fe / tp, 2 * (h + k * h) / sp_div
            saved_act = (Saved(k * mult * fe / tp), Saved(k * fe / tp, "gemm_input", "moe_act"))
            ops = [Op("moe/act", "elementwise", bytes=T * act * ACT_BYTES, elems_per_token=act, recompute="moe_act",
                      saved=saved_act),
                   # token permutation around the experts: read h, write k h; then read k h, write h
                   # (Megatron-Core permute / unpermute, TensorRT-LLM expandInputRows / finalize)
                   Op("moe/permute", "elementwise", bytes=T * permute * ACT_BYTES, elems_per_token=permute,
                      saved=(Saved(k * h / sp_div, "gemm_input"),))]   # the dispatched copies (expert inputs)
            if f.shared_d_ff:
                gm = 2 if f.shared_gated else 1
                shared = (gm + 1) * f.shared_d_ff / tp
                ops.append(Op("moe/shared_act", "elementwise", bytes=T * shared * ACT_BYTES, elems_per_token=shared,
                              saved=(Saved(gm * f.shared_d_ff / tp),)))
            return ops
    raise TypeError(f)


def elementwise_ops(layer: LayerSpec, model: ModelSpec, *, tokens: float, tp: int = 1, sp: bool = False,
                    dropout: bool = False) -> list[Op]:
    """The streaming ops of one layer's forward, with the bytes each moves: norms (read + write h
    each), the two residual adds (read 2h, write h; with dropout also a mask each), the activation
    function, rotary embeddings (read + write q and k) and, for MoE, the token permutation. h-sized
    work is split over tp only with sequence parallelism."""
    h, T = model.hidden_size, tokens
    sp_div = tp if sp else 1
    adds = 2 if (layer.attention is not None or layer.ssm is not None) and layer.ffn is not None else 1
    norm, residual = layer.num_norms * 2 * h / sp_div, adds * 3 * h / sp_div
    masks = adds * h / sp_div * MASK_BYTES if dropout else 0.0
    # saved: the norm inputs, and the norm outputs (the attention and MLP inputs) unless recomputed
    norm_saved = (Saved(layer.num_norms * h / sp_div), Saved(2 * h / sp_div, "gemm_input", "layernorm"))
    ops = [Op("norm", "elementwise", bytes=T * (norm * ACT_BYTES), elems_per_token=norm,
              weight_elems=layer.num_norms * model.norm.params(h), recompute="layernorm", saved=norm_saved),
           Op("residual", "elementwise", bytes=T * (residual * ACT_BYTES + masks), elems_per_token=residual,
              saved=(Saved(adds * h / sp_div, "mask"),) if dropout else ())]
    ops += _ffn_elementwise(layer.ffn, h, T, tp, sp_div)
    rope = _rope_elems_per_token(layer.attention, model, tp)
    if rope:
        ops.append(Op("attention/rope", "elementwise", bytes=T * 2 * rope * ACT_BYTES, elems_per_token=2 * rope))
    return ops


def comm_ops(layer: LayerSpec, model: ModelSpec, *, tokens: float, tp: int = 1, ep: int = 1, cp: int = 1) -> list[Op]:
    """The collectives of one layer's forward, with one call's message per rank: the tensor-parallel
    all-reduces (or reduce-scatter + all-gather pairs) after attention and the MLP, the expert
    dispatch + combine (balanced routing; the timing applies the load imbalance) and the
    context-parallel ring exchange of K and V."""
    h, T = model.hidden_size, tokens
    ops = []
    if tp > 1:
        mixers = (layer.attention is not None or layer.ssm is not None) + (layer.ffn is not None)
        ops.append(Op("tp/collective", "comm", bytes=T * h * ACT_BYTES, calls=mixers))
    if ep > 1 and isinstance(layer.ffn, MoEFFN):
        ops.append(Op("moe/dispatch_combine", "comm", bytes=T * layer.ffn.top_k * h * ACT_BYTES, calls=2))
    if cp > 1 and layer.attention is not None:
        ops.append(Op("cp/kv_exchange", "comm", bytes=T * kv_elems_per_token(layer.attention, tp) * ACT_BYTES,
                      calls=cp - 1))
    return ops


def layer_ops(layer: LayerSpec, model: ModelSpec, *, tokens: float, keys: float, tp: int = 1, ep: int = 1,
              cp: int = 1, sp: bool = False, dropout: bool = False, absorbed_tokens: float = 0.0,
              index_keys: float | None = None, recurrent_tokens: float = 0.0, **moe_kw: Any) -> list[Op]:
    """Forward operations of one decoder layer: attention and/or state mixer, FFN, element-wise and
    collective rows. `index_keys`: keys the DSA indexer scores per query (default `keys`);
    `recurrent_tokens`: decode tokens a state mixer steps recurrently; `moe_kw`: expert_tokens,
    expert_count, expert_tp of ffn_ops."""
    h = model.hidden_size
    rows: list[Op] = []
    if layer.attention is not None:
        rows += attention_ops(layer.attention, h, tokens=tokens, keys=keys, tp=tp, absorbed_tokens=absorbed_tokens,
                              sp=sp, index_keys=index_keys)
    if layer.ssm is not None:
        rows += state_mixer_ops(layer.ssm, h, tokens=tokens, tp=tp, recurrent_tokens=recurrent_tokens)
    if layer.ffn is not None:
        rows += ffn_ops(layer.ffn, h, tokens=tokens, tp=tp, ep=ep, **moe_kw)
    return (rows + elementwise_ops(layer, model, tokens=tokens, tp=tp, sp=sp, dropout=dropout)
            + comm_ops(layer, model, tokens=tokens, tp=tp, ep=ep, cp=cp))


def head_ops(model: ModelSpec, *, tokens: float, tp: int = 1) -> list[Op]:
    """The LM head (T x e) @ (e x V/t); MPT-style and tied heads are the same product."""
    return [_gemm("head/logits", tokens, model.vocab_size / tp, model.embed_dim,
                  extra_weights=model.vocab_size / tp if model.head_bias else 0.0)]


def model_ops(model: ModelSpec, *, seq_len: int, tokens: float, convention: str = "causal", tp: int = 1,
              ep: int = 1) -> list[tuple[int, list[Op]]]:
    """(layer count, forward ops) per distinct layer group, then (1, head ops). Attention keys per
    query follow `convention` (causal: Megatron's halving; full) and each layer's window."""
    from flopcast.estimate.counts import attended_keys, layer_keys

    out = []
    for layer, count in model.layer_groups():
        keys = layer_keys(layer, seq_len, convention)   # type: ignore[arg-type]
        index_keys = attended_keys(seq_len, None, convention)   # type: ignore[arg-type]
        out.append((count, layer_ops(layer, model, tokens=tokens, keys=keys, tp=tp, ep=ep, index_keys=index_keys)))
    out.append((1, head_ops(model, tokens=tokens, tp=tp)))
    return out
