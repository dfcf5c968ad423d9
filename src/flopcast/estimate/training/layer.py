"""Per-micro-batch costs of one decoder layer, the LM head, the embedding and the MTP modules on one
device: GEMM, attention and element-wise times forward and backward, one forward pass of each
collective, parameters stored and activations kept for backward.

Times are the op rows of estimate/ops.py, each timed for training (`TimedOp`: forward, backward
and what recompute repeats), and the layer's cost is their sum: GEMMs by the roofline forward and
backward (input and weight gradients), the attention core at its measured fraction (or eager
batched GEMMs and softmax), element-wise rows from their bytes, collectives by the alpha-beta
model. Parameters and saved activations are accumulated alongside (`_Walk`): attention, then FFN
(dense or MoE), then the score tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from flopcast.estimate import comm, counts
from flopcast.estimate import ops as ops_mod
from flopcast.estimate.efficiency import attention_seq_factor, grouped_gemm_frac, moe_imbalance
from flopcast.estimate.ops import Op
from flopcast.estimate.roofline import KERNEL_TAIL_S, DeviceCtx, gemm_fwd_bwd_s, gemm_time_s
from flopcast.estimate.training.constants import (
    ACT_BYTES,
    EMBED_GRAD_BYTES_PER_ENTRY,
    GEMM_OPERAND_BYTES,
    LOSS_BWD_BYTES_PER_LOGIT,
    LOSS_BYTES_PER_LOGIT,
    LOSS_FWD_BYTES_PER_LOGIT,
    MASK_BYTES,
    QLORA_BYTES_PER_WEIGHT,
    WEIGHT_BYTES,
)
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
        """self += times * o, field by field (written out: the search's hottest loop; a test checks
        that it names every field)."""
        self.gemm_fwd_s += times * o.gemm_fwd_s
        self.gemm_bwd_s += times * o.gemm_bwd_s
        self.attn_fwd_s += times * o.attn_fwd_s
        self.attn_bwd_s += times * o.attn_bwd_s
        self.attn_recompute_s += times * o.attn_recompute_s
        self.module_recompute_s += times * o.module_recompute_s
        self.elem_fwd_s += times * o.elem_fwd_s
        self.head_gemm_s += times * o.head_gemm_s
        self.loss_s += times * o.loss_s
        self.embed_s += times * o.embed_s
        self.tp_fwd_s += times * o.tp_fwd_s
        self.ep_fwd_s += times * o.ep_fwd_s
        self.cp_fwd_s += times * o.cp_fwd_s
        self.params += times * o.params
        self.expert_params += times * o.expert_params
        self.act_bytes += times * o.act_bytes
        self.act_full_recompute_bytes += times * o.act_full_recompute_bytes
        self.kernels += times * o.kernels
        self.trainable += times * o.trainable
        self.frozen_bytes += times * o.frozen_bytes

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
    # what no calibration parameter changes (op rows and their saved bytes), kept by a caller that
    # re-times the same plan under many profiles (step.step_time_s `memo`); None: nothing kept
    memo: dict[Any, Any] | None = None

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


@dataclass(frozen=True, slots=True)
class TimedOp:
    """One op row of one micro-batch as the training step times it: forward, backward, and what the
    plan's recompute repeats of it (full: the forward of every layer row; selective: the listed
    modules' share)."""

    op: Op
    fwd_s: float
    bwd_s: float
    recompute_s: float = 0.0
    saved_bytes: float = 0.0     # activations kept for backward (one micro-batch)


@dataclass(slots=True)
class _Walk:
    """What the walk over one layer accumulates (elements per token unless stated)."""

    cost: Cost = field(default_factory=Cost)
    rows: list[TimedOp] = field(default_factory=list)
    cast_elems: float = 0.0           # fp8: GEMM input elements cast from bf16 per micro-batch
    adapters: float = 0.0             # fine-tuning: adapter parameters of the targeted GEMMs
    dequant: float = 0.0              # qlora: frozen weights dequantised to 16-bit per pass (elements)
    replicated_params: float = 0.0
    sharded_params: float = 0.0
    top_k: int = 0                    # MoE: experts per token
    tokens_routed: float = 0.0        # MoE: routed token copies this device computes
    imbalance: float = 1.0            # MoE: busiest rank's load over the mean


def _full(env: Env) -> bool:
    return env.plan.recompute == "full"


def _gemm_fwd_bwd(env: Env, w: _Walk, op: Op, eb: float, module: str) -> tuple[float, float]:
    """A training GEMM forward and backward; under fine-tuning the frozen weight's backward is the
    input gradient only, and a targeted module gains its low-rank adapters (x A then B)."""
    ft, ctx = env.train.finetune, env.ctx
    m, n, k, count = op.m, op.n, op.k, op.count
    rate = grouped_gemm_frac(m) if op.grouped else 1.0     # MoE experts: the per-group cost
    if ft is None:
        f, b = gemm_fwd_bwd_s(ctx, m, n, k, count, eb, rate_frac=rate)
    else:
        f = gemm_time_s(ctx, m, n, k, count, eb, rate_frac=rate)
        b = gemm_time_s(ctx, m, k, n, count, eb, rate_frac=rate)
        if module in ft.target_modules:
            r = ft.rank
            for mm, nn, kk in ((m, r, k), (m, n, r)):
                f2, b2 = gemm_fwd_bwd_s(ctx, mm, nn, kk, count)
                f, b = f + f2, b + b2
            w.adapters += r * (n + k) * count
        if ft.method == "qlora" and module:
            w.dequant += n * k * count
    if eb < ACT_BYTES:
        w.cast_elems += m * k * count
    return f, b


def _time_gemm(env: Env, w: _Walk, op: Op) -> TimedOp:
    module = ops_mod.module_of(op)
    f, b = _gemm_fwd_bwd(env, w, op, ACT_BYTES if module == "router" else env.mm_bytes, module)
    w.cost.gemm_fwd_s += f
    w.cost.gemm_bwd_s += b
    rec = f if _full(env) else 0.0
    if op.recompute == "mla_up_proj" and env.selective("mla_up_proj"):
        # MLA up-projections recomputed from the kept latents (DeepSeek-V3 report sec. 3.2.3)
        rec = gemm_time_s(env.ctx, op.m, op.n, op.k, op.count, env.mm_bytes)
        w.cost.module_recompute_s += rec
    return TimedOp(op, f, b, rec)


def _time_attention(env: Env, w: _Walk, op: Op, layer: LayerSpec) -> TimedOp:
    """The score kernel: fused (FlashAttention, causal FLOPs, backward 2.5 x forward) or batched
    GEMMs plus memory-bound softmax/dropout over the S x S scores. A state mixer's scan (row
    ssm/scan: chunked DeltaNet / SSD kernels, fused like FlashAttention) is timed as a fused kernel."""
    c, ctx, T = w.cost, env.ctx, env.tokens
    s_local = env.train.seq_len / env.plan.cp
    if env.train.flash_attention or op.name == "ssm/scan":
        # efficiency by sequence length (keys per query block); capped at the 0.98 fraction
        fwd_frac = min(0.98, ctx.eff.attention_fwd_frac * attention_seq_factor(s_local))
        bwd_frac = min(0.98, ctx.eff.attention_bwd_frac * attention_seq_factor(s_local, backward=True))
        f = op.flops / (fwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
        b = 2.5 * op.flops / (bwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
    else:
        keys = counts.attended_keys(env.train.seq_len, layer.window, "full")  # every key scored, then masked
        batch = T / s_local * op.heads
        qk_f, qk_b = gemm_fwd_bwd_s(ctx, s_local, keys, op.d_qk, count=batch)
        av_f, av_b = gemm_fwd_bwd_s(ctx, s_local, op.d_v, keys, count=batch)
        # fused scale-mask-softmax: read + write; dropout: read, write, mask
        softmax_bytes = batch * s_local * keys * (2 * ACT_BYTES + (2 * ACT_BYTES + MASK_BYTES if env.train.dropout else 0))
        soft = softmax_bytes / ctx.mem_bytes_per_s + 2 * KERNEL_TAIL_S
        f = qk_f + av_f + soft
        b = qk_b + av_b + 1.5 * soft
    c.attn_fwd_s += f
    c.attn_bwd_s += b
    c.attn_recompute_s += f
    rec = f if _full(env) or env.selective("core_attn") else 0.0
    return TimedOp(op, f, b, rec)


def _time_elementwise(env: Env, w: _Walk, op: Op, factor: float = 1.0) -> TimedOp:
    """A streaming row: its bytes at the achieved HBM bandwidth (times the stack's element-wise
    factor for the layer's own rows); the backward moves twice the forward's bytes."""
    f = op.bytes * factor / env.ctx.mem_bytes_per_s
    w.cost.elem_fwd_s += f
    rec = f if _full(env) else 0.0
    h, sp_div = env.model.hidden_size, env.sp_div
    if op.recompute == "layernorm" and env.selective("layernorm"):
        # the two norm outputs (attention and MLP inputs) recomputed from the kept norm inputs
        rec = env.tokens * 2 * (2 * h / sp_div) * ACT_BYTES / env.ctx.mem_bytes_per_s
        w.cost.module_recompute_s += rec
    elif op.recompute == "moe_act" and env.selective("moe_act"):
        # the expert activation's output (down-projection input) recomputed from its inputs
        rec = op.bytes / env.ctx.mem_bytes_per_s
        w.cost.module_recompute_s += rec
    return TimedOp(op, f, 2 * f, rec)


def _derived_elementwise(env: Env, w: _Walk) -> list[TimedOp]:
    """Training's own streaming work around the layer's rows: fp8 / fp4 casts of the GEMM inputs
    (Transformer Engine: each input read in bf16 and written quantised plus its quantised transpose
    for the backward GEMMs: 2 + 1 + 1 bytes per element in fp8, 2 + 2 x 0.5625 in NVFP4), qlora's
    dequantisation of the frozen weights each pass (read 4-bit + scales, write 16-bit), and the
    tails of the layer's six element-wise kernels."""
    out = []
    if w.cast_elems:
        out.append(_time_elementwise(env, w, Op("gemm_input_cast", "elementwise",
                                                bytes=w.cast_elems * (ACT_BYTES + 2 * env.mm_bytes))))
    if w.dequant:
        out.append(_time_elementwise(env, w, Op("qlora/dequant", "elementwise",
                                                bytes=w.dequant * (QLORA_BYTES_PER_WEIGHT + ACT_BYTES))))
    tails = 6 * KERNEL_TAIL_S
    w.cost.elem_fwd_s += tails
    out.append(TimedOp(Op("elementwise/kernel_tails", "elementwise"), tails, 2 * tails, tails if _full(env) else 0.0))
    return out


def _time_comm(env: Env, w: _Walk, op: Op) -> TimedOp:
    """Collectives of one forward: tensor-parallel all-reduces (reduce-scatter + all-gather pairs
    with SP), the expert dispatch + combine, the context-parallel ring exchange of K and V. The
    backward repeats them (TP with SP: 3 collectives where the forward has 2, Korthikanti et al.
    2022 sec. 4.2.2); full recompute once more."""
    plan, ctx, c = env.plan, env.ctx, w.cost
    bwd_factor = 1.0
    if op.name == "tp/collective":
        if plan.sp:
            one = 2 * comm.ring_gather_s(plan.tp, op.bytes, ctx.links, ctx.tp_inside)
            bwd_factor = 1.5
        else:
            one = comm.ring_all_reduce_s(plan.tp, op.bytes, ctx.links, ctx.tp_inside)
        f = c.tp_fwd_s = op.calls * one
    elif op.name == "moe/dispatch_combine":
        f = c.ep_fwd_s = _expert_all_to_all_s(env, w.top_k, w.tokens_routed, w.imbalance)
    else:
        inside = plan.cp * plan.tp <= ctx.hw.scale_up_domain
        f = c.cp_fwd_s = op.calls * comm.p2p_s(op.bytes, ctx.links, inside)
    return TimedOp(op, f, bwd_factor * f, f if _full(env) else 0.0)


def _standard_attention(env: Env, w: _Walk, a: StandardAttention) -> None:
    h, t = env.model.hidden_size, env.plan.tp
    H, Hkv, dh = a.num_heads, a.num_kv_heads, a.head_dim
    Hq = 2 * H if a.output_gate else H      # Qwen3-Next: the query projection also yields the output gate
    w.sharded_params += (h * (Hq + 2 * Hkv) * dh + H * dh * h) / t
    w.sharded_params += ((Hq + 2 * Hkv) * dh if a.qkv_bias else 0) / t + (h if a.out_bias else 0)
    if a.qk_norm and a.qk_norm_scope == "projection":   # OLMo-2: norms over the whole q and k
        w.sharded_params += (H + Hkv) * dh / t
    elif a.qk_norm:                                      # Qwen3, Gemma-3: one d_head norm each
        w.replicated_params += 2 * dh
    w.replicated_params += H / t if a.sinks else 0


def _latent_attention(env: Env, w: _Walk, a: LatentAttention) -> None:
    h, t = env.model.hidden_size, env.plan.tp
    H = a.num_heads
    rq, rkv, rope = a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim
    if rq is None:
        w.sharded_params += h * H * a.qk_head_dim / t
    else:
        w.replicated_params += h * rq + rq
        w.sharded_params += rq * H * a.qk_head_dim / t
    w.replicated_params += h * (rkv + rope) + rkv
    w.sharded_params += (rkv * H * (a.qk_nope_head_dim + a.v_head_dim) + H * a.v_head_dim * h) / t
    if a.index_heads:   # the DSA indexer, replicated on every tensor-parallel rank
        HI, dI = a.index_heads, a.index_head_dim
        w.replicated_params += (rq or 0) * HI * dI + h * dI + 2 * dI + h * HI


def _state_mixer(env: Env, w: _Walk, m: LinearAttention | Mamba2Mixer) -> None:
    """A gated DeltaNet or Mamba-2 mixer's parameters, split over tp by heads (projections, conv and
    per-head scalars alike)."""
    w.sharded_params += sum(p.params for p in counts.ssm_parts(m, env.model.hidden_size)) / env.plan.tp


def _frozen_inputs(env: Env, op: Op, layer: LayerSpec) -> float:
    """LoRA: elements per token of the GEMM inputs a frozen base does not keep. Autograd keeps a
    linear's input only to form its weight gradient (PyTorch's derivative code saves `self` of mm
    only when the weight requires grad; Transformer Engine's Linear saves its input only when
    weight.requires_grad), so a frozen linear without an adapter keeps none: the norm outputs
    feeding untargeted projections, the MLP / shared-expert down-projection input, the experts'
    inputs and their down-projection input. An adapter's A needs the same input, so a targeted
    module keeps it; the attention output stays (the fused attention kernel keeps its output for its
    own backward). QLoRA keeps every input: bitsandbytes' MatMul4Bit saves (A, B) whenever any
    input needs a gradient (bitsandbytes/autograd/_functions.py), as torchao's NF4 linear does."""
    ft = env.train.finetune
    if ft is None or ft.method != "lora":
        return 0.0
    targets = ft.target_modules
    gemm_in = sum(sv.elems_per_token for sv in op.saved if sv.stored_as == "gemm_input" and not env.selective(sv.recompute))
    if op.name == "norm":   # the attention input and the MLP input, one half each
        return gemm_in / 2 * (("attention" not in targets) + ("mlp" not in targets))
    module = {"mlp/down": "mlp", "moe/shared_down": "mlp", "moe/act": "experts", "moe/permute": "experts"}.get(op.name)
    return gemm_in if module is not None and module not in targets else 0.0


def _adapter_dropout_bytes(env: Env, op: Op) -> float:
    """Bytes per token an adapted GEMM's input dropout keeps (LoRA's lora_dropout before A): the
    dropped-out copy of the input (16-bit) and its mask (one byte an element). Under LoRA the
    frozen GEMM keeps no input of its own (_frozen_inputs), so the copy takes the input's place and
    only the mask is new, except where the input is kept anyway: the attention output (kept by the
    attention kernel) and every input under QLoRA. One dropout per adapted GEMM row (a fused qkv or
    gate/up projection shares one, as LitGPT's fused qkv does)."""
    ft = env.train.finetune
    if ft is None or not ft.dropout or op.kind != "gemm" or ops_mod.module_of(op) not in ft.target_modules:
        return 0.0
    kept_anyway = ft.method == "qlora" or op.name.endswith("attention/out")
    inputs_per_token = op.m * op.count * op.k / env.tokens   # k for a dense row; routed copies for experts
    return inputs_per_token * (MASK_BYTES + (ACT_BYTES if kept_anyway else 0.0))


def _eager_gated_elems(env: Env, op: Op, layer: LayerSpec) -> float:
    """Elements per token an unfused gated activation keeps beyond a fused one: run as separate silu
    and multiply kernels (a stack that does not fuse element-wise ops: elementwise_factor above 1,
    catalog/frameworks.yaml; torchtitan's and LitGPT's `F.silu(w1(x)) * w3(x)`), silu keeps its input
    and the multiply keeps silu's output and the up projection: 3 d_ff where a fused SwiGLU keeps its
    2 d_ff input."""
    stack, ffn = env.ctx.stack, layer.ffn
    if op.name != "mlp/act" or stack is None or stack.elementwise_factor <= 1 or not isinstance(ffn, DenseFFN):
        return 0.0
    return ffn.d_ff / env.plan.tp if ffn.gated else 0.0


def _saved_bytes(env: Env, op: Op, layer: LayerSpec) -> float:
    """Bytes one row keeps for backward for one micro-batch: its saved tensors (GEMM inputs at the
    GEMM operand precision: under fp8, Transformer Engine keeps the fp8 copies) but those its
    selectively recomputed module drops; the attention core also keeps FlashAttention's softmax
    log-sum-exp (fp32) or, eager, the softmax output (+ dropout output and mask) unless recomputed."""
    per_elem = {"act": ACT_BYTES, "gemm_input": env.mm_bytes, "mask": MASK_BYTES}
    per_token = sum(sv.elems_per_token * per_elem[sv.stored_as] for sv in op.saved if not env.selective(sv.recompute))
    per_token += _eager_gated_elems(env, op, layer) * ACT_BYTES - _frozen_inputs(env, op, layer) * env.mm_bytes
    per_token += _adapter_dropout_bytes(env, op)
    if op.kind == "attention":
        if env.train.flash_attention:
            per_token += op.heads * 2 * ACT_BYTES
        elif op.name != "ssm/scan" and not (env.plan.recompute == "full" or env.selective("core_attn")):
            keys = counts.attended_keys(env.train.seq_len, layer.window, "full")
            per_token += op.heads * keys * (ACT_BYTES + (ACT_BYTES + MASK_BYTES if env.train.dropout else 0))
    return env.tokens * per_token


def _dense_ffn(env: Env, w: _Walk, ffn: DenseFFN) -> dict[str, Any]:
    h, t, f = env.model.hidden_size, env.plan.tp, ffn.d_ff
    up = 2 if ffn.gated else 1
    w.sharded_params += (up + 1) * h * f / t + (up * f / t if ffn.bias else 0)
    w.replicated_params += h if ffn.bias else 0
    return {}


def _moe_ffn(env: Env, w: _Walk, ffn: MoEFFN) -> dict[str, Any]:
    """Parameters and saved tensors of a MoE block and its routing; returns the expert GEMM shape
    arguments of ops.ffn_ops for this plan's routed copies."""
    h, t, plan, train = env.model.hidden_size, env.plan.tp, env.plan, env.train
    E, k, fe = ffn.num_experts, ffn.top_k, ffn.expert_d_ff
    local_experts = E / plan.ep
    et = plan.expert_tp
    # copies a device processes (balanced routing): its tensor-parallel group's T k copies,
    # split over etp ranks by expert width (MoE parallel folding: etp may differ from tp)
    w.top_k = k
    w.tokens_routed = env.tokens * k * et / t
    # dropless routing: the most-loaded expert-parallel rank sets the pace (max/mean load);
    # dropping at capacity pads every expert's input to capacity_factor x the mean load
    w.imbalance = moe_imbalance("training", plan.ep) if train.moe_routing == "dropless" else 1.0
    if train.moe_capacity_factor is not None:
        w.imbalance = train.moe_capacity_factor
    mult = 2 if ffn.gated else 1
    de = ffn.latent_size or h
    expert_w = local_experts * (mult + 1) * de * fe / et
    expert_b = local_experts * (mult * fe / et + de) if ffn.expert_bias else 0.0
    w.cost.expert_params = expert_w + expert_b
    w.replicated_params += h * E + (E if ffn.router_bias else 0)
    if ffn.latent_size:
        w.replicated_params += 2 * h * de + ((h + de) if ffn.latent_bias else 0)
    if ffn.shared_d_ff:
        fs, sm = ffn.shared_d_ff, 2 if ffn.shared_gated else 1
        w.sharded_params += (sm + 1) * h * fs / t + (sm * fs / t if ffn.shared_bias else 0)
        w.replicated_params += h if ffn.shared_bias else 0
    if ffn.shared_gate:
        w.replicated_params += h
    return {"expert_tokens": w.tokens_routed / local_experts * w.imbalance, "expert_count": local_experts,
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


def _params_and_activations(env: Env, w: _Walk) -> None:
    c, h, sp_div, train = w.cost, env.model.hidden_size, env.sp_div, env.train
    c.params = w.replicated_params + w.sharded_params + c.expert_params
    ft = train.finetune
    if ft is not None:
        c.trainable = w.adapters
        frozen_b = QLORA_BYTES_PER_WEIGHT if ft.method == "qlora" else WEIGHT_BYTES
        c.frozen_bytes = (w.sharded_params + c.expert_params) * frozen_b + w.replicated_params * WEIGHT_BYTES
    c.act_bytes = sum(r.saved_bytes for r in w.rows)
    c.act_full_recompute_bytes = env.tokens * h / sp_div * ACT_BYTES   # the checkpointed layer input


def _time_row(env: Env, w: _Walk, op: Op, layer: LayerSpec, ew_factor: float) -> TimedOp:
    match op.kind:
        case "gemm":
            return _time_gemm(env, w, op)
        case "attention":
            return _time_attention(env, w, op, layer)
        case "elementwise":
            return _time_elementwise(env, w, op, ew_factor)
        case "comm":
            return _time_comm(env, w, op)
    raise ValueError(op.kind)


def _layer_op_rows(env: Env, layer: LayerSpec, moe_kw: dict[str, Any]) -> tuple[list[Op], list[float]]:
    """The layer's op rows (estimate/ops.py) and the bytes each saves for backward: no calibration
    parameter changes them, so env.memo (when the caller keeps one) holds them across profiles."""
    # the memo serves one model and plan (its contract), whose layers live as long as it: a layer's
    # identity stands for its spec without hashing the whole spec on every look-up
    key = ("layer_op_rows", id(layer), env.tokens, tuple(moe_kw.items()))
    if env.memo is not None and key in env.memo:
        return env.memo[key]
    plan = env.plan
    keys = counts.layer_keys(layer, env.train.seq_len, "causal")
    index_keys = counts.attended_keys(env.train.seq_len, None, "causal")
    rows = ops_mod.layer_ops(layer, env.model, tokens=env.tokens, keys=keys, tp=plan.tp, ep=plan.ep, cp=plan.cp,
                             sp=plan.sp, dropout=env.train.dropout, index_keys=index_keys, **moe_kw)
    out = (rows, [_saved_bytes(env, op, layer) for op in rows])
    if env.memo is not None:
        env.memo[key] = out
    return out


def layer_cost(env: Env, layer: LayerSpec) -> tuple[Cost, tuple[TimedOp, ...]]:
    """Costs of one decoder layer for one micro-batch on one device, and its timed op rows (whose
    times sum to the cost's)."""
    h = env.model.hidden_size
    w = _Walk(replicated_params=layer.num_norms * env.model.norm.params(h))
    match layer.attention:
        case StandardAttention():
            _standard_attention(env, w, layer.attention)
        case LatentAttention():
            _latent_attention(env, w, layer.attention)
    if layer.ssm is not None:
        _state_mixer(env, w, layer.ssm)
    moe_kw: dict[str, Any] = {}
    match layer.ffn:
        case DenseFFN():
            moe_kw = _dense_ffn(env, w, layer.ffn)
        case MoEFFN():
            moe_kw = _moe_ffn(env, w, layer.ffn)
    rows, saved = _layer_op_rows(env, layer, moe_kw)
    ew_factor = env.ctx.stack.elementwise_factor if env.ctx.stack else 1.0
    w.rows = [replace(_time_row(env, w, op, layer, ew_factor), saved_bytes=b) for op, b in zip(rows, saved, strict=True)]
    w.rows += _derived_elementwise(env, w)
    _params_and_activations(env, w)
    stack = env.ctx.stack
    if stack:
        w.cost.kernels = stack.kernels_per_layer + (stack.moe_kernels_per_layer if isinstance(layer.ffn, MoEFFN) else 0)
    return w.cost, tuple(w.rows)


def head_cost(env: Env) -> tuple[Cost, tuple[TimedOp, ...]]:
    """LM head and loss on the last stage: (T x h) @ (h x V/t); the loss holds the stack's loss
    kernel's bytes per logit at its peak (constants.LOSS_BYTES_PER_LOGIT); its rows: the logits GEMM
    and the cross-entropy (never recomputed)."""
    model, plan, ctx, T = env.model, env.plan, env.ctx, env.tokens
    c = Cost()
    V, e = model.vocab_size, model.embed_dim
    (logits_op,) = ops_mod.head_ops(model, tokens=T, tp=plan.tp)
    f, b = gemm_fwd_bwd_s(ctx, logits_op.m, logits_op.n, logits_op.k)
    c.head_gemm_s = f + b
    logits = T * V / plan.tp
    loss_f = logits * LOSS_FWD_BYTES_PER_LOGIT / ctx.mem_bytes_per_s + 4 * KERNEL_TAIL_S
    loss_b = logits * LOSS_BWD_BYTES_PER_LOGIT / ctx.mem_bytes_per_s + 4 * KERNEL_TAIL_S
    c.loss_s = loss_f + loss_b
    loss_kernel = ctx.stack.loss_kernel if ctx.stack is not None else "fused_fp32"
    c.act_bytes = T * V / plan.tp * LOSS_BYTES_PER_LOGIT[loss_kernel]
    c.params = (0 if model.tie_embeddings and plan.pp == 1 else V * e / plan.tp) + (
        model.norm.params(model.hidden_size) if model.final_norm else 0)
    if env.train.finetune is not None:   # frozen and held in 16 bits (QLoRA quantises only the layers' linears)
        c.frozen_bytes = c.params * WEIGHT_BYTES
    loss_op = Op("head/loss", "elementwise", bytes=logits * LOSS_FWD_BYTES_PER_LOGIT)
    return c, (TimedOp(logits_op, f, b), TimedOp(loss_op, loss_f, loss_b, saved_bytes=c.act_bytes))


def mtp_cost(env: Env, last: Cost, head: Cost, n: int) -> tuple[Cost, tuple[TimedOp, ...]]:
    """Multi-token-prediction modules on the last stage (DeepSeek-V3 sec. 2.2): per module a decoder
    layer like the last main layer, the (T x 2h) @ (2h x h) projection of [embedding; hidden], and
    the shared head's logits and loss again; parameters of the layer, projection and norms (the
    embedding and head are shared). Its own row: the projection (the layer's and head's rows repeat
    n times)."""
    h = env.model.hidden_size
    c = Cost()
    c.add(last, n)
    proj = Op("mtp/proj", "gemm", flops=2.0 * env.tokens * (h / env.plan.tp) * 2 * h, m=env.tokens,
              n=h / env.plan.tp, k=2 * h, weight_elems=h / env.plan.tp * 2 * h)
    f, b = gemm_fwd_bwd_s(env.ctx, env.tokens, h / env.plan.tp, 2 * h)
    c.gemm_fwd_s += n * f
    c.gemm_bwd_s += n * b
    c.head_gemm_s += n * head.head_gemm_s
    c.loss_s += n * head.loss_s
    c.act_bytes += n * head.act_bytes
    c.params += n * (2 * h * h / env.plan.tp + 3 * env.model.norm.params(h))
    return c, (TimedOp(proj, f, b, f if _full(env) else 0.0),)


def embed_cost(env: Env) -> tuple[Cost, tuple[TimedOp, ...]]:
    """Embedding on the first stage: rows gathered forward (read + write T x h), and backward the
    incoming gradient read plus the dense (V/t x h) weight gradient written and accumulated (still
    timed under fine-tuning, where the table is frozen: see the issue-22 report)."""
    model, plan = env.model, env.plan
    c = Cost()
    rows = env.tokens * model.embed_dim * ACT_BYTES
    table = model.vocab_size / plan.tp * model.embed_dim
    mem = env.ctx.mem_bytes_per_s
    f = 2 * rows / mem + KERNEL_TAIL_S
    b = (rows + table * EMBED_GRAD_BYTES_PER_ENTRY) / mem + 2 * KERNEL_TAIL_S
    c.params = embedding_params(model, plan)
    if env.train.finetune is not None:   # a frozen table, held in 16 bits under QLoRA too
        c.frozen_bytes = c.params * WEIGHT_BYTES
    c.embed_s = f + b
    return c, (TimedOp(Op("embedding", "elementwise", bytes=2 * rows, weight_elems=table), f, b),)


def embedding_params(model: ModelSpec, plan: ParallelPlan) -> float:
    p = model.vocab_size * model.embed_dim / plan.tp
    if model.positions == "learned":
        p += model.position_rows * model.hidden_size
    if model.embed_dim != model.hidden_size:
        p += 2 * model.embed_dim * model.hidden_size
    return p
