"""Per-micro-batch costs of one decoder layer, the LM head, the embedding and the MTP modules on one
device: GEMM, attention and element-wise times forward and backward, one forward pass of each
collective, parameters stored and activations kept for backward.

The walk over a layer is a sequence of small stage functions over one accumulator (`_Walk`):
attention parameters and saved tensors, the attention GEMMs, the score kernel, the FFN (dense or
MoE, with its expert all-to-all), the FFN GEMMs, element-wise traffic, tensor- and context-parallel
collectives, then parameters and activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flopcast.estimate import comm, counts
from flopcast.estimate import ops as ops_mod
from flopcast.estimate.efficiency import attention_seq_factor, moe_imbalance
from flopcast.estimate.roofline import KERNEL_TAIL_S, DeviceCtx, gemm_fwd_bwd_s, gemm_time_s
from flopcast.estimate.training.constants import (
    ACT_BYTES,
    EMBED_GRAD_BYTES_PER_ENTRY,
    GEMM_OPERAND_BYTES,
    LOGIT_BYTES,
    LOSS_BWD_BYTES_PER_LOGIT,
    LOSS_FWD_BYTES_PER_LOGIT,
    MASK_BYTES,
    QLORA_BYTES_PER_WEIGHT,
    WEIGHT_BYTES,
)
from flopcast.specs.model import DenseFFN, LatentAttention, LayerSpec, ModelSpec, MoEFFN, StandardAttention
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec


@dataclass(slots=True)
class Cost:
    """Per-micro-batch costs of one layer (or the head, or a stage's sum) on one device."""

    gemm_fwd_s: float = 0.0
    gemm_bwd_s: float = 0.0
    attn_fwd_s: float = 0.0
    attn_bwd_s: float = 0.0
    attn_recompute_s: float = 0.0   # what selective recompute of core attention repeats
    module_recompute_s: float = 0.0  # what selective recompute of the other listed modules repeats
    elem_fwd_s: float = 0.0
    head_gemm_s: float = 0.0        # LM-head GEMMs forward + backward (last stage; never recomputed)
    loss_s: float = 0.0             # cross-entropy forward + backward (last stage; never recomputed)
    embed_s: float = 0.0            # embedding lookup forward + gradient backward (first stage)
    tp_fwd_s: float = 0.0           # one forward pass of TP collectives
    ep_fwd_s: float = 0.0
    cp_fwd_s: float = 0.0
    params: float = 0.0             # parameters stored on this device (before ZeRO sharding)
    expert_params: float = 0.0      # of which expert weights (sharded over dp*cp/ep for ZeRO)
    act_bytes: float = 0.0          # activations kept for backward (this layer, one micro-batch)
    act_full_recompute_bytes: float = 0.0
    kernels: float = 0.0            # GPU kernels launched by one forward pass (host dispatch cost)
    trainable: float = 0.0          # fine-tuning: adapter parameters on this device
    frozen_bytes: float = 0.0       # fine-tuning: bytes of the frozen base weights on this device

    def add(self, o: Cost, times: float = 1.0) -> None:
        for name in Cost.__slots__:
            setattr(self, name, getattr(self, name) + times * getattr(o, name))

    def work_s(self) -> float:
        """One micro-batch's forward and backward work (what a balanced layout evens out)."""
        return (self.gemm_fwd_s + self.gemm_bwd_s + self.attn_fwd_s + self.attn_bwd_s + 3 * self.elem_fwd_s
                + self.head_gemm_s + self.loss_s + self.embed_s + 3.5 * self.tp_fwd_s + 2 * self.ep_fwd_s
                + 2 * self.cp_fwd_s)


@dataclass(frozen=True, slots=True)
class Env:
    """One micro-batch of `tokens` tokens on one device of `plan`."""

    model: ModelSpec
    plan: ParallelPlan
    train: TrainingSpec
    ctx: DeviceCtx
    tokens: float

    @property
    def sp_div(self) -> int:
        """h-sized element-wise work is split by t only with sequence parallelism."""
        return self.plan.tp if self.plan.sp else 1

    @property
    def mm_bytes(self) -> float:
        return GEMM_OPERAND_BYTES[self.train.precision]

    def selective(self, module: str) -> bool:
        """parallel.recompute_modules under recompute: selective (Megatron-Core --recompute-modules)."""
        return self.plan.recompute == "selective" and module in self.plan.recompute_modules


@dataclass(slots=True)
class _Walk:
    """What the walk over one layer accumulates (elements per token unless stated)."""

    cost: Cost = field(default_factory=Cost)
    gemm_fwd_s: float = 0.0
    gemm_bwd_s: float = 0.0
    cast_elems: float = 0.0           # fp8: GEMM input elements cast from bf16 per micro-batch
    adapters: float = 0.0             # fine-tuning: adapter parameters of the targeted GEMMs
    dequant: float = 0.0              # qlora: frozen weights dequantised to 16-bit per pass (elements)
    replicated_params: float = 0.0
    sharded_params: float = 0.0
    act_rep: float = 0.0              # saved, replicated over tp (split only with SP)
    act_shard: float = 0.0            # saved, split over tp
    # GEMM inputs saved for the weight gradients: under fp8 (Transformer Engine) their fp8 copies
    # are what is kept, 1 byte per element instead of 2.
    gin_rep: float = 0.0
    gin_shard: float = 0.0
    rope_elems: float = 0.0
    heads: float = 0.0
    dqk: float = 0.0
    dv: float = 0.0
    kv_elems_per_token: float = 0.0
    score_bytes_per_token: float = 0.0
    elem_f: float = 0.0               # FFN element-wise elements per token (activation, permutation)


def _gemm(env: Env, w: _Walk, m: float, n: float, k: float, count: float = 1.0, eb: float | None = None,
          module: str = "") -> None:
    """A training GEMM forward and backward; under fine-tuning the frozen weight's backward is the
    input gradient only, and a targeted module gains its low-rank adapters (x A then B)."""
    eb = env.mm_bytes if eb is None else eb
    ft, ctx = env.train.finetune, env.ctx
    if ft is None:
        f, b = gemm_fwd_bwd_s(ctx, m, n, k, count, eb)
    else:
        f = gemm_time_s(ctx, m, n, k, count, eb)
        b = gemm_time_s(ctx, m, k, n, count, eb)
        if module in ft.target_modules:
            r = ft.rank
            for mm, nn, kk in ((m, r, k), (m, n, r)):
                f2, b2 = gemm_fwd_bwd_s(ctx, mm, nn, kk, count)
                f, b = f + f2, b + b2
            w.adapters += r * (n + k) * count
        if ft.method == "qlora" and module:
            w.dequant += n * k * count
    w.gemm_fwd_s += f
    w.gemm_bwd_s += b
    if eb < ACT_BYTES:
        w.cast_elems += m * k * count


def _standard_attention(env: Env, w: _Walk, a: StandardAttention) -> None:
    h, t = env.model.hidden_size, env.plan.tp
    H, Hkv, dh = a.num_heads, a.num_kv_heads, a.head_dim
    kv_rank = Hkv / t if Hkv >= t else 1  # kv heads per rank (each replicated when t > H_kv)
    q = H / t
    w.sharded_params += (h * (H + 2 * Hkv) * dh + H * dh * h) / t
    w.sharded_params += ((H + 2 * Hkv) * dh if a.qkv_bias else 0) / t + (h if a.out_bias else 0)
    if a.qk_norm and a.qk_norm_scope == "projection":   # OLMo-2: norms over the whole q and k
        w.sharded_params += (H + Hkv) * dh / t
    elif a.qk_norm:                                      # Qwen3, Gemma-3: one d_head norm each
        w.replicated_params += 2 * dh
    w.replicated_params += H / t if a.sinks else 0
    w.act_shard += (q + 2 * kv_rank) * dh           # Q, K, V
    w.gin_shard += q * dh                           # attention output = o-projection input
    w.heads, w.dqk, w.dv = q, dh, dh
    w.kv_elems_per_token = 2 * kv_rank * dh
    w.rope_elems = (q + kv_rank) * dh if env.model.positions == "rope" else 0.0


def _latent_attention(env: Env, w: _Walk, a: LatentAttention) -> None:
    h, t = env.model.hidden_size, env.plan.tp
    H = a.num_heads
    q = H / t
    rq, rkv, rope = a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim
    if rq is None:
        w.sharded_params += h * H * a.qk_head_dim / t
    else:
        w.replicated_params += h * rq + rq
        w.sharded_params += rq * H * a.qk_head_dim / t
        w.act_rep += rq
    w.replicated_params += h * (rkv + rope) + rkv
    w.sharded_params += (rkv * H * (a.qk_nope_head_dim + a.v_head_dim) + H * a.v_head_dim * h) / t
    w.act_rep += rkv + rope
    if not env.selective("mla_up_proj"):
        w.act_shard += q * (2 * a.qk_head_dim + a.v_head_dim)   # Q, K, V from the up-projections
    w.gin_shard += q * a.v_head_dim
    w.heads, w.dqk, w.dv = q, a.qk_head_dim, a.v_head_dim
    w.kv_elems_per_token = rkv + rope
    w.rope_elems = q * rope + rope


def _attention_gemms(env: Env, w: _Walk, a: StandardAttention | LatentAttention) -> None:
    """The projections: the op rows of estimate/ops.py."""
    for op in ops_mod.attention_ops(a, env.model.hidden_size, tokens=env.tokens, keys=0.0, tp=env.plan.tp):
        if op.kind == "gemm":
            _gemm(env, w, op.m, op.n, op.k, op.count, module="attention")
            if op.name in ("attention/q_b", "attention/kv_b") and env.selective("mla_up_proj"):
                # MLA up-projections recomputed from the kept latents (DeepSeek-V3 report sec. 3.2.3)
                w.cost.module_recompute_s += gemm_time_s(env.ctx, op.m, op.n, op.k, op.count, env.mm_bytes)


def _attention_scores(env: Env, w: _Walk, a: StandardAttention | LatentAttention) -> None:
    """The score kernel: fused (FlashAttention, causal FLOPs, backward 2.5 x forward) or batched
    GEMMs plus memory-bound softmax/dropout over the S x S scores."""
    c, ctx, T = w.cost, env.ctx, env.tokens
    s = env.train.seq_len
    s_local = s / env.plan.cp
    if env.train.flash_attention:
        keys = counts.attended_keys(s, a.window, "causal")
        f_attn = 2.0 * w.heads * (w.dqk + w.dv) * keys * T
        # efficiency by sequence length (keys per query block); capped at the 0.98 fraction
        fwd_frac = min(0.98, ctx.eff.attention_fwd_frac * attention_seq_factor(s_local))
        bwd_frac = min(0.98, ctx.eff.attention_bwd_frac * attention_seq_factor(s_local, backward=True))
        c.attn_fwd_s = f_attn / (fwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
        c.attn_bwd_s = 2.5 * f_attn / (bwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
        c.attn_recompute_s = c.attn_fwd_s
        w.act_shard += w.heads * 2  # softmax log-sum-exp, fp32 (4 B = 2 activation elements)
        return
    keys = counts.attended_keys(s, a.window, "full")  # eager kernels score every key, then mask
    batch = T / s_local * w.heads
    qk_f, qk_b = gemm_fwd_bwd_s(ctx, s_local, keys, w.dqk, count=batch)
    av_f, av_b = gemm_fwd_bwd_s(ctx, s_local, w.dv, keys, count=batch)
    scores = batch * s_local * keys                 # elements of the S x S score tensor
    # fused scale-mask-softmax: read + write; dropout: read, write, mask
    dropout = env.train.dropout
    softmax_bytes = scores * (2 * ACT_BYTES + (2 * ACT_BYTES + MASK_BYTES if dropout else 0))
    soft = softmax_bytes / ctx.mem_bytes_per_s + 2 * KERNEL_TAIL_S
    c.attn_fwd_s = qk_f + av_f + soft
    c.attn_bwd_s = qk_b + av_b + 1.5 * soft
    c.attn_recompute_s = c.attn_fwd_s
    # stored for backward unless recomputed: softmax output (+ dropout output and mask)
    w.score_bytes_per_token = w.heads * keys * (ACT_BYTES + (ACT_BYTES + MASK_BYTES if dropout else 0))


def _dense_ffn(env: Env, w: _Walk, ffn: DenseFFN) -> None:
    h, t, f = env.model.hidden_size, env.plan.tp, ffn.d_ff
    up = 2 if ffn.gated else 1
    w.sharded_params += (up + 1) * h * f / t + (up * f / t if ffn.bias else 0)
    w.replicated_params += h if ffn.bias else 0
    w.act_shard += up * f / t      # activation-function inputs
    w.gin_shard += f / t           # down-projection input
    w.elem_f = (3 if ffn.gated else 2) * f / t


def _moe_ffn(env: Env, w: _Walk, ffn: MoEFFN) -> dict[str, Any]:
    """Parameters, saved tensors and element-wise work of a MoE block; returns the expert GEMM
    shape arguments of ops.ffn_ops for this plan's routed copies."""
    h, t, plan, train = env.model.hidden_size, env.plan.tp, env.plan, env.train
    E, k, fe = ffn.num_experts, ffn.top_k, ffn.expert_d_ff
    local_experts = E / plan.ep
    et = plan.expert_tp
    # copies a device processes (balanced routing): its tensor-parallel group's T k copies,
    # split over etp ranks by expert width (MoE parallel folding: etp may differ from tp)
    tokens_routed = env.tokens * k * et / t
    # dropless routing: the most-loaded expert-parallel rank sets the pace (max/mean load);
    # dropping at capacity pads every expert's input to capacity_factor x the mean load
    imb = moe_imbalance("training", plan.ep) if train.moe_routing == "dropless" else 1.0
    if train.moe_capacity_factor is not None:
        imb = train.moe_capacity_factor
    mult = 2 if ffn.gated else 1
    expert_w = local_experts * (mult + 1) * h * fe / et
    expert_b = local_experts * (mult * fe / et + h) if ffn.expert_bias else 0.0
    w.cost.expert_params = expert_w + expert_b
    w.replicated_params += h * E + (E if ffn.router_bias else 0)
    w.act_shard += k * mult * fe / t
    if env.selective("moe_act"):
        # the expert activation's output (down-projection input) recomputed from its inputs
        w.cost.module_recompute_s += env.tokens * k * (mult + 1) * fe / t * ACT_BYTES / env.ctx.mem_bytes_per_s
    else:
        w.gin_shard += k * fe / t                      # (the same per device under any etp)
    w.gin_rep += k * h                                 # dispatched token copies (expert inputs)
    # activation, plus the token permutation around the experts (read h, write k h; then read
    # k h, write h: Megatron-Core permute / unpermute)
    w.elem_f = k * (mult + 1) * fe / t + 2 * (h + k * h) / env.sp_div
    if ffn.shared_d_ff:
        fs = ffn.shared_d_ff
        w.sharded_params += 3 * h * fs / t
        w.act_shard += 2 * fs / t
        w.gin_shard += fs / t
        w.elem_f += 3 * fs / t
    if ffn.shared_gate:
        w.replicated_params += h
    if plan.ep > 1:
        w.cost.ep_fwd_s = _expert_all_to_all_s(env, k, tokens_routed, imb)
    return {"ep": plan.ep, "expert_tokens": tokens_routed / local_experts * imb, "expert_count": local_experts,
            "expert_tp": et}


def _expert_all_to_all_s(env: Env, k: int, tokens_routed: float, imb: float) -> float:
    """Dispatch + combine of one forward: every routed copy crosses, or (DeepEP dedup across
    scale-up domains) a token crosses to each remote domain holding one of its experts once."""
    plan, ctx, h = env.plan, env.ctx, env.model.hidden_size
    domain = max(1, ctx.hw.scale_up_domain)
    inside = plan.ep * plan.expert_tp <= domain
    if not inside and ctx.stack is not None and ctx.stack.moe_dispatch == "dedup":
        # expected distinct domains of k uniform picks, at most max_nodes_per_token
        domains = math.ceil(plan.ep * plan.expert_tp / domain)
        remote = (domains - 1) * (1 - (1 - 1 / domains) ** k)
        if env.train.moe_max_nodes_per_token:
            remote = min(remote, max(0, env.train.moe_max_nodes_per_token - 1 / domains))
        cross = env.tokens * imb * remote * h * ACT_BYTES / env.sp_div
        lat = (domains - 1) * comm.SCALE_OUT_STEP_LATENCY_S + comm.call_latency_s(False)
        return 2 * (cross / ctx.links.scale_out_bytes_per_s + lat)
    msg = tokens_routed * imb * h * ACT_BYTES / env.sp_div
    return 2 * comm.all_to_all_s(plan.ep, msg, ctx.links, inside)


def _ffn_gemms(env: Env, w: _Walk, ffn: DenseFFN | MoEFFN, moe_kw: dict[str, Any]) -> None:
    """FFN GEMMs: the op rows of estimate/ops.py (experts with this plan's routed copies and etp)."""
    for op in ops_mod.ffn_ops(ffn, env.model.hidden_size, tokens=env.tokens, tp=env.plan.tp, **moe_kw):
        module = ops_mod.module_of(op)
        _gemm(env, w, op.m, op.n, op.k, op.count, eb=ACT_BYTES if module == "router" else None, module=module)


def _elementwise(env: Env, w: _Walk, layer: LayerSpec) -> None:
    """Element-wise traffic (forward): norms (read+write h), two residual/dropout adds (read 2h,
    write h, + mask), activation (elem_f read and written), rope on q and k; fp8 / fp4 casts."""
    h, sp_div, ctx = env.model.hidden_size, env.sp_div, env.ctx
    elem_bytes = (layer.num_norms * 2 * h + 2 * 3 * h) / sp_div * ACT_BYTES
    if env.train.dropout:
        elem_bytes += 2 * h / sp_div * MASK_BYTES
    elem_bytes += w.elem_f * ACT_BYTES + 2 * w.rope_elems * ACT_BYTES
    # fp8 / fp4 (Transformer Engine): each GEMM input is read in bf16 and written quantised plus its
    # quantised transpose for the backward GEMMs (cast-transpose kernels): 2 + 1 + 1 bytes per
    # element in fp8, 2 + 2 x 0.5625 in NVFP4.
    fp8_cast_bytes = w.cast_elems * (ACT_BYTES + 2 * env.mm_bytes)
    ew_factor = ctx.stack.elementwise_factor if ctx.stack else 1.0
    w.cost.elem_fwd_s = (env.tokens * elem_bytes * ew_factor + fp8_cast_bytes) / ctx.mem_bytes_per_s + 6 * KERNEL_TAIL_S
    if ctx.stack:
        w.cost.kernels = ctx.stack.kernels_per_layer + (ctx.stack.moe_kernels_per_layer
                                                        if isinstance(layer.ffn, MoEFFN) else 0)


def _collectives(env: Env, w: _Walk) -> None:
    """Tensor-parallel collectives (2 per forward: attention and MLP outputs) and the
    context-parallel ring exchange of K and V (forward)."""
    plan, ctx, T, h = env.plan, env.ctx, env.tokens, env.model.hidden_size
    t = plan.tp
    if t > 1:
        msg = T * h * ACT_BYTES
        if plan.sp:
            one = 2 * comm.ring_gather_s(t, msg, ctx.links, ctx.tp_inside)
        else:
            one = comm.ring_all_reduce_s(t, msg, ctx.links, ctx.tp_inside)
        w.cost.tp_fwd_s = 2 * one
    if plan.cp > 1:
        inside = plan.cp * plan.tp <= ctx.hw.scale_up_domain
        kv_bytes = T * w.kv_elems_per_token * ACT_BYTES
        w.cost.cp_fwd_s = (plan.cp - 1) * comm.p2p_s(kv_bytes, ctx.links, inside)


def _params_and_activations(env: Env, w: _Walk) -> None:
    c, h, sp_div, train = w.cost, env.model.hidden_size, env.sp_div, env.train
    c.params = w.replicated_params + w.sharded_params + c.expert_params
    ft = train.finetune
    if ft is not None:
        c.trainable = w.adapters
        frozen_b = QLORA_BYTES_PER_WEIGHT if ft.method == "qlora" else WEIGHT_BYTES
        c.frozen_bytes = (w.sharded_params + c.expert_params) * frozen_b + w.replicated_params * WEIGHT_BYTES
        # qlora: each pass dequantises the frozen weights it uses (read 4-bit + scales, write 16-bit)
        c.elem_fwd_s += w.dequant * (QLORA_BYTES_PER_WEIGHT + ACT_BYTES) / env.ctx.mem_bytes_per_s
    mask = (2 * h / sp_div * MASK_BYTES) if train.dropout else 0.0
    gin_bytes = env.mm_bytes
    per_token = (w.act_rep / sp_div + w.act_shard) * ACT_BYTES + (w.gin_rep / sp_div + w.gin_shard) * gin_bytes + mask
    if env.selective("layernorm"):
        # the two norm outputs (attention and MLP inputs) recomputed from the kept norm inputs
        per_token -= 2 * h / sp_div * gin_bytes
        c.module_recompute_s += env.tokens * 2 * (2 * h / sp_div) * ACT_BYTES / env.ctx.mem_bytes_per_s
    if not train.flash_attention and not (env.plan.recompute == "full" or env.selective("core_attn")):
        per_token += w.score_bytes_per_token
    c.act_bytes = env.tokens * per_token
    c.act_full_recompute_bytes = env.tokens * h / sp_div * ACT_BYTES   # the checkpointed layer input


def layer_cost(env: Env, layer: LayerSpec) -> Cost:
    """Costs of one decoder layer for one micro-batch on one device."""
    h = env.model.hidden_size
    w = _Walk(replicated_params=layer.num_norms * env.model.norm.params(h), act_rep=layer.num_norms * h,
              gin_rep=2 * h)   # norm inputs; attention and MLP inputs (norm outputs)
    a = layer.attention
    match a:
        case StandardAttention():
            _standard_attention(env, w, a)
        case LatentAttention():
            _latent_attention(env, w, a)
    _attention_gemms(env, w, a)
    _attention_scores(env, w, a)
    moe_kw: dict[str, Any] = {}
    match layer.ffn:
        case DenseFFN():
            _dense_ffn(env, w, layer.ffn)
        case MoEFFN():
            moe_kw = _moe_ffn(env, w, layer.ffn)
    _ffn_gemms(env, w, layer.ffn, moe_kw)
    w.cost.gemm_fwd_s, w.cost.gemm_bwd_s = w.gemm_fwd_s, w.gemm_bwd_s
    _elementwise(env, w, layer)
    _collectives(env, w)
    _params_and_activations(env, w)
    return w.cost


def head_cost(env: Env) -> Cost:
    """LM head and loss on the last stage: (T x h) @ (h x V/t), fp32 logits."""
    model, plan, ctx, T = env.model, env.plan, env.ctx, env.tokens
    c = Cost()
    V, e = model.vocab_size, model.embed_dim
    c.head_gemm_s = sum(gemm_fwd_bwd_s(ctx, T, V / plan.tp, e))
    logits = T * V / plan.tp
    c.loss_s = logits * (LOSS_FWD_BYTES_PER_LOGIT + LOSS_BWD_BYTES_PER_LOGIT) / ctx.mem_bytes_per_s + 8 * KERNEL_TAIL_S
    c.act_bytes = T * V / plan.tp * LOGIT_BYTES
    c.params = (0 if model.tie_embeddings and plan.pp == 1 else V * e / plan.tp) + (
        model.norm.params(model.hidden_size) if model.final_norm else 0)
    return c


def mtp_cost(env: Env, last: Cost, head: Cost, n: int) -> Cost:
    """Multi-token-prediction modules on the last stage (DeepSeek-V3 sec. 2.2): per module a decoder
    layer like the last main layer, the (T x 2h) @ (2h x h) projection of [embedding; hidden], and
    the shared head's logits and loss again; parameters of the layer, projection and norms (the
    embedding and head are shared)."""
    h = env.model.hidden_size
    c = Cost()
    c.add(last, n)
    f, b = gemm_fwd_bwd_s(env.ctx, env.tokens, h / env.plan.tp, 2 * h)
    c.gemm_fwd_s += n * f
    c.gemm_bwd_s += n * b
    c.head_gemm_s += n * head.head_gemm_s
    c.loss_s += n * head.loss_s
    c.act_bytes += n * head.act_bytes
    c.params += n * (2 * h * h / env.plan.tp + 3 * env.model.norm.params(h))
    return c


def embed_cost(env: Env) -> Cost:
    """Embedding on the first stage: rows gathered forward (read + write T x h), and backward the
    incoming gradient read plus the dense (V/t x h) weight gradient written and accumulated."""
    model, plan = env.model, env.plan
    c = Cost()
    rows = env.tokens * model.embed_dim * ACT_BYTES
    table = model.vocab_size / plan.tp * model.embed_dim
    c.embed_s = (3 * rows + table * EMBED_GRAD_BYTES_PER_ENTRY) / env.ctx.mem_bytes_per_s + 3 * KERNEL_TAIL_S
    c.params = embedding_params(model, plan)
    return c


def embedding_params(model: ModelSpec, plan: ParallelPlan) -> float:
    p = model.vocab_size * model.embed_dim / plan.tp
    if model.positions == "learned":
        p += model.position_rows * model.hidden_size
    if model.embed_dim != model.hidden_size:
        p += 2 * model.embed_dim * model.hidden_size
    return p
