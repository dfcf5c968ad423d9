"""Training step: memory per device and step time for a parallel plan, from per-operation costs.

Legend: L layers, h hidden, H heads, H_kv kv heads, d_head head dim, f FFN width, V vocabulary,
s sequence length, b micro-batch (sequences), T = s b / cp tokens a device processes per
micro-batch, t/p/d/c/e tensor/pipeline/data/context/expert degrees, v virtual stages, m micro-batches.

Time of one micro-batch on one pipeline stage is the sum over its layers of
- matmuls: roofline max(F / (eta_mm P), bytes / (eta_mem W)) + a per-kernel tail, with eta_mm the
  measured best-shape GEMM fraction of the dense peak (catalog/efficiency.yaml); fp8 speeds up
  matmuls only;
- attention scores: fused (FlashAttention) at its measured fraction of peak, causal FLOPs, backward
  2.5 x forward FLOPs; or, without flash, batched GEMMs plus memory-bound softmax/dropout over the
  S x S scores;
- element-wise ops (norms, activation, residual/dropout, rope) from the bytes they move;
- tensor-parallel collectives (Megatron: 2 all-reduces forward, 2 backward, or reduce-scatter +
  all-gather pairs with SP), expert all-to-alls and context-parallel ring exchanges, exposed unless
  the training spec overlaps communication, in which case only the part longer than the compute it
  hides behind is exposed.
Backward is twice the forward matmul time; full recompute adds one forward, selective recompute
the attention core. The pipeline runs (m + (p - 1)/v) stage-micro-batch times (interleaved 1F1B,
Narayanan et al. SC'21), then data-parallel gradient reduction (overlapped with the last
backward when comm_overlap), the optimizer step (memory-bound Adam), and offload transfers.

Memory on the most-loaded stage: weights 2 B, fp32 main gradients 4 B and Adam state 12 B per
parameter (Megatron: 18 B; ZeRO-1 shards the 12, ZeRO-2 the 4 + 12, ZeRO-3 all over d x c
ranks), activations per layer derived from the saved tensors (Korthikanti et al. 2022 generalised
to GQA, gated MLPs, MoE and MLA; FlashAttention stores no S x S scores), times the in-flight
micro-batches of 1F1B (p on the first stage, times 1 + (p - 1)/(p v) when interleaved), plus a
documented runtime reserve.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from flopcast import units
from flopcast.assumption import Assumption
from flopcast.dtypes import BYTES_PER_ELEMENT
from flopcast.estimate import comm, counts
from flopcast.estimate import ops as ops_mod
from flopcast.estimate.efficiency import (
    Efficiency,
    attention_seq_factor,
    efficiency_for,
    fp4_matmul_frac,
    generation_of,
    moe_imbalance,
    power_clock_factor,
    stack_for,
)
from flopcast.estimate.roofline import (
    COMM_UNITS,
    KERNEL_TAIL_S,
    DeviceCtx,
    gemm_fwd_bwd_s,
    gemm_time_s,
)
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import DenseFFN, LatentAttention, LayerSpec, ModelSpec, MoEFFN, StandardAttention
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

# Bytes per parameter of the model states (mixed-precision Adam, Megatron-LM layout).
WEIGHT_BYTES = 2.0          # bf16/fp16 weights (fp8 training keeps bf16 weights, casts per matmul)
GRAD_BYTES = 4.0            # fp32 main gradients
OPTIMIZER_BYTES_FP32_MOMENTS = 12.0      # fp32 master weights + Adam m and v
# Optimizer step, HBM bytes per parameter (Megatron-LM mixed-precision optimizer): gradient
# non-finite check and unscale (read 4, write 4), global-norm for clipping (read 4), Adam (read
# master, m, v, grad 16; write master, m, v 12), copy of the master into the 16-bit weights (read
# 4, write 2), zeroing the fp32 gradient buffer (write 4).
ADAM_BYTES_MOVED = 50.0
ACT_BYTES = 2.0             # activations in bf16/fp16
# GEMM operand bytes per element by training precision: fp8 (one byte; per-tensor or 1x32 block
# scales ignored), NVFP4 (half a byte plus one fp8 scale per 16 elements: NVIDIA's NVFP4 recipe)
GEMM_OPERAND_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 16}
QLORA_BYTES_PER_WEIGHT = 0.5 + 2.0 / 64   # NF4 with an fp16 absmax per 64-weight block (double quantisation ignored)
MASK_BYTES = 1.0            # a dropout mask element
LOGIT_BYTES = 6.0           # fp32 logits for the loss + their bf16 copy, per vocabulary entry
# HBM traffic of an unfused fp32 cross-entropy per logit (Megatron's vocab-parallel loss; PyTorch's
# log_softmax + nll_loss moves about as much). Forward: cast bf16 -> fp32 (read 2, write 4), max
# (read 4), subtract the max (read 4, write 4), exp (4 + 4), sum (4), normalise into the softmax
# kept for backward (4 + 4) = 38 B. Backward: scale the softmax by the incoming gradient (4 + 4),
# cast back to bf16 (4 + 2) = 14 B.
LOSS_FWD_BYTES_PER_LOGIT = 38.0
LOSS_BWD_BYTES_PER_LOGIT = 14.0
# Embedding backward on the first stage: the dense (V/t x h) bf16 gradient is zeroed and scattered
# into (2 B), then accumulated into the fp32 main gradient (read 2 + 4, write 4) every micro-batch.
EMBED_GRAD_BYTES_PER_ENTRY = 12.0
# Runtime reserve on every device (documented defaults).
RUNTIME_CONTEXT_BYTES = 1.0 * units.GiB    # CUDA/ROCm context, cuBLAS/cuDNN workspaces
COMM_BUFFER_BYTES = 0.5 * units.GiB        # NCCL channels and buffers
FRAGMENTATION_FRAC = 0.10                   # caching-allocator fragmentation, fraction of activations
# Communication overlapped with compute still runs kernels on some SMs (roofline.COMM_UNITS): while
# hidden communication runs, compute loses that share of the device.
HOST_MEMORY_BANDWIDTH_BYTES_PER_S = 200e9   # per node, CPU Adam for ZeRO-Offload (8-channel DDR5 ~300 GB/s peak)
NVME_BANDWIDTH_BYTES_PER_S = 6e9            # per device, ZeRO-Infinity (PCIe Gen4 x4 NVMe ~7 GB/s read)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingEstimate:
    """Result of one training estimate (`flopcast train --json` keys from SCENARIO.md)."""

    fits: bool
    memory_per_device_bytes: float
    memory_breakdown_bytes: dict[str, float]
    memory_capacity_bytes: float
    step_time_s: float
    step_time_breakdown_s: dict[str, float]
    compute_breakdown_s: dict[str, float]
    tokens_per_s: float
    tokens_per_s_per_device: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    mfu: float
    hfu: float
    time_to_train_s: float | None
    device_hours: float | None
    num_microbatches: int
    plan: ParallelPlan
    infeasible_reason: str | None = None
    host_memory_per_node_bytes: float = 0.0
    nvme_per_device_bytes: float = 0.0
    datacenter: dict[str, Any] | None = None
    assumptions: tuple[Assumption, ...] = field(default=())
    ops: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**(self.datacenter or {}), **{
            "fits": self.fits,
            "infeasible_reason": self.infeasible_reason,
            "memory_per_device_bytes": self.memory_per_device_bytes,
            "memory_breakdown_bytes": dict(self.memory_breakdown_bytes),
            "memory_capacity_bytes": self.memory_capacity_bytes,
            "host_memory_per_node_bytes": self.host_memory_per_node_bytes,
            "nvme_per_device_bytes": self.nvme_per_device_bytes,
            "step_time_s": self.step_time_s,
            "step_time_breakdown_s": dict(self.step_time_breakdown_s),
            "compute_breakdown_s": dict(self.compute_breakdown_s),
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "time_to_train_s": self.time_to_train_s,
            "device_hours": self.device_hours,
            "num_microbatches": self.num_microbatches,
            "parallel": self.plan.to_dict(),
            "ops": [dict(o) for o in self.ops],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }}


@dataclass(slots=True)
class _Cost:
    """Per-micro-batch costs of one layer (or the head) on one device."""

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

    def add(self, o: _Cost, times: float = 1.0) -> None:
        for name in _Cost.__slots__:
            setattr(self, name, getattr(self, name) + times * getattr(o, name))


# The per-op roofline lives in estimate/roofline.py; training schedules its ops.
_Ctx = DeviceCtx
_gemm_s = gemm_fwd_bwd_s


def _layer_cost(layer: LayerSpec, model: ModelSpec, plan: ParallelPlan, train: TrainingSpec,
                ctx: _Ctx, mb_tokens: float) -> _Cost:
    """Costs of one decoder layer for one micro-batch of `mb_tokens` tokens on one device."""
    c = _Cost()
    h = model.hidden_size
    t = plan.tp
    T = mb_tokens
    sp_div = t if plan.sp else 1            # h-sized element-wise work is split by t only with SP
    mm_bytes = GEMM_OPERAND_BYTES[train.precision]
    a = layer.attention
    gemm = [0.0, 0.0]

    def selective(module: str) -> bool:
        """parallel.recompute_modules under recompute: selective (Megatron-Core --recompute-modules)."""
        return plan.recompute == "selective" and module in plan.recompute_modules

    cast_elems = [0.0]   # fp8: GEMM input elements cast from bf16 per micro-batch

    ft = train.finetune
    adapters = [0.0]     # fine-tuning: adapter parameters of the targeted GEMMs
    dequant = [0.0]      # qlora: frozen weights dequantised to 16-bit per pass (elements)

    def G(m: float, n: float, k: float, count: float = 1.0, eb: float = mm_bytes, module: str = "") -> None:
        if ft is None:
            f, b = _gemm_s(ctx, m, n, k, count, eb)
        else:
            # frozen weight: the backward computes the input gradient only; a targeted GEMM gains its
            # low-rank adapters (x A then B), trained in full
            f = gemm_time_s(ctx, m, n, k, count, eb)
            b = gemm_time_s(ctx, m, k, n, count, eb)
            if module in ft.target_modules:
                r = ft.rank
                for mm, nn, kk in ((m, r, k), (m, n, r)):
                    f2, b2 = _gemm_s(ctx, mm, nn, kk, count)
                    f, b = f + f2, b + b2
                adapters[0] += r * (n + k) * count
            if ft.method == "qlora" and module:
                dequant[0] += n * k * count
        gemm[0] += f
        gemm[1] += b
        if eb < ACT_BYTES:
            cast_elems[0] += m * k * count

    replicated_params = layer.num_norms * model.norm.params(h)
    sharded_params = 0.0
    act_rep = layer.num_norms * h           # norm inputs (elements per token)
    # GEMM inputs saved for the weight gradients: under fp8 (Transformer Engine) their fp8 copies
    # are what is kept, 1 byte per element instead of 2.
    gin_rep = 2 * h                         # attention input and MLP input (norm outputs)
    gin_shard = 0.0
    act_shard = 0.0
    rope_elems = 0.0
    # --- attention projections and score dims
    match a:
        case StandardAttention(num_heads=H, num_kv_heads=Hkv, head_dim=dh):
            kv_rank = Hkv / t if Hkv >= t else 1  # kv heads per rank (each replicated when t > H_kv)
            q = H / t
            sharded_params += (h * (H + 2 * Hkv) * dh + H * dh * h) / t
            sharded_params += ((H + 2 * Hkv) * dh if a.qkv_bias else 0) / t + (h if a.out_bias else 0)
            if a.qk_norm and a.qk_norm_scope == "projection":   # OLMo-2: norms over the whole q and k
                sharded_params += (H + Hkv) * dh / t
            elif a.qk_norm:                                      # Qwen3, Gemma-3: one d_head norm each
                replicated_params += 2 * dh
            replicated_params += H / t if a.sinks else 0
            act_shard += (q + 2 * kv_rank) * dh           # Q, K, V
            gin_shard += q * dh                           # attention output = o-projection input
            heads, dqk, dv = q, dh, dh
            kv_elems_per_token = 2 * kv_rank * dh
            rope_elems = (q + kv_rank) * dh if model.positions == "rope" else 0.0
        case LatentAttention(num_heads=H):
            q = H / t
            rq, rkv, rope = a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim
            if rq is None:
                sharded_params += h * H * a.qk_head_dim / t
            else:
                replicated_params += h * rq + rq
                sharded_params += rq * H * a.qk_head_dim / t
                act_rep += rq
            replicated_params += h * (rkv + rope) + rkv
            sharded_params += (rkv * H * (a.qk_nope_head_dim + a.v_head_dim) + H * a.v_head_dim * h) / t
            act_rep += rkv + rope
            if not selective("mla_up_proj"):
                act_shard += q * (2 * a.qk_head_dim + a.v_head_dim)   # Q, K, V from the up-projections
            gin_shard += q * a.v_head_dim
            heads, dqk, dv = q, a.qk_head_dim, a.v_head_dim
            kv_elems_per_token = rkv + rope
            rope_elems = q * rope + rope
    # projections: the op rows of estimate/ops.py
    for op in ops_mod.attention_ops(a, h, tokens=T, keys=0.0, tp=t):
        if op.kind == "gemm":
            G(op.m, op.n, op.k, op.count, module="attention")
            if op.name in ("attention/q_b", "attention/kv_b") and selective("mla_up_proj"):
                # MLA up-projections recomputed from the kept latents (DeepSeek-V3 report sec. 3.2.3)
                c.module_recompute_s += gemm_time_s(ctx, op.m, op.n, op.k, op.count, mm_bytes)
    # --- attention scores
    s = train.seq_len
    s_local = s / plan.cp
    score_bytes_per_token = 0.0
    seqs = T / s_local                                  # sequences in this micro-batch
    if train.flash_attention:
        keys = counts.attended_keys(s, a.window, "causal")
        f_attn = 2.0 * heads * (dqk + dv) * keys * T
        # efficiency by sequence length (keys per query block); capped at the 0.98 fraction
        fwd_frac = min(0.98, ctx.eff.attention_fwd_frac * attention_seq_factor(s_local))
        bwd_frac = min(0.98, ctx.eff.attention_bwd_frac * attention_seq_factor(s_local, backward=True))
        c.attn_fwd_s = f_attn / (fwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
        c.attn_bwd_s = 2.5 * f_attn / (bwd_frac * ctx.attn_peak_flops_per_s) + KERNEL_TAIL_S
        c.attn_recompute_s = c.attn_fwd_s
        act_shard += heads * 2  # softmax log-sum-exp, fp32 (4 B = 2 activation elements)
    else:
        keys = counts.attended_keys(s, a.window, "full")  # eager kernels score every key, then mask
        batch = seqs * heads
        qk_f, qk_b = _gemm_s(ctx, s_local, keys, dqk, count=batch)
        av_f, av_b = _gemm_s(ctx, s_local, dv, keys, count=batch)
        scores = batch * s_local * keys                 # elements of the S x S score tensor
        # fused scale-mask-softmax: read + write; dropout: read, write, mask
        softmax_bytes = scores * (2 * ACT_BYTES + (2 * ACT_BYTES + MASK_BYTES if train.dropout else 0))
        soft = softmax_bytes / ctx.mem_bytes_per_s + 2 * KERNEL_TAIL_S
        c.attn_fwd_s = qk_f + av_f + soft
        c.attn_bwd_s = qk_b + av_b + 1.5 * soft
        c.attn_recompute_s = c.attn_fwd_s
        # stored for backward unless recomputed: softmax output (+ dropout output and mask)
        score_bytes_per_token = heads * keys * (ACT_BYTES + (ACT_BYTES + MASK_BYTES if train.dropout else 0))
    # --- FFN
    ffn = layer.ffn
    match ffn:
        case DenseFFN(d_ff=f, gated=gated):
            sharded_params += ((2 if gated else 1) + 1) * h * f / t + ((2 if gated else 1) * f / t if ffn.bias else 0)
            replicated_params += h if ffn.bias else 0
            act_shard += (2 if gated else 1) * f / t      # activation-function inputs
            gin_shard += f / t                            # down-projection input
            elem_f = (3 if gated else 2) * f / t
        case MoEFFN(num_experts=E, top_k=k, expert_d_ff=fe):
            local_experts = E / plan.ep
            et = plan.expert_tp
            # copies a device processes (balanced routing): its tensor-parallel group's T k copies,
            # split over etp ranks by expert width (MoE parallel folding: etp may differ from tp)
            tokens_routed = T * k * et / t
            # dropless routing: the most-loaded expert-parallel rank sets the pace (max/mean load)
            imb = moe_imbalance("training", plan.ep) if train.moe_routing == "dropless" else 1.0
            if train.moe_capacity_factor is not None:
                # dropping at capacity: every expert's input is padded to capacity_factor x the mean
                # load, which bounds the busiest rank as well
                imb = train.moe_capacity_factor
            m_e = tokens_routed / local_experts * imb
            mult = 2 if ffn.gated else 1
            expert_w = local_experts * (mult + 1) * h * fe / et
            expert_b = local_experts * (mult * fe / et + h) if ffn.expert_bias else 0.0
            c.expert_params = expert_w + expert_b
            replicated_params += h * E + (E if ffn.router_bias else 0)
            act_shard += k * mult * fe / t
            if selective("moe_act"):
                # the expert activation's output (down-projection input) recomputed from its inputs
                c.module_recompute_s += T * k * (mult + 1) * fe / t * ACT_BYTES / ctx.mem_bytes_per_s
            else:
                gin_shard += k * fe / t                      # (the same per device under any etp)
            gin_rep += k * h                                 # dispatched token copies (expert inputs)
            # activation, plus the token permutation around the experts (read h, write k h; then read
            # k h, write h: Megatron-Core permute / unpermute)
            elem_f = k * (mult + 1) * fe / t + 2 * (h + k * h) / sp_div
            if ffn.shared_d_ff:
                fs = ffn.shared_d_ff
                sharded_params += 3 * h * fs / t
                act_shard += 2 * fs / t
                gin_shard += fs / t
                elem_f += 3 * fs / t
            if ffn.shared_gate:
                replicated_params += h
            if plan.ep > 1:
                domain = max(1, ctx.hw.scale_up_domain)
                inside = plan.ep * et <= domain
                stack_ = ctx.stack
                if not inside and stack_ is not None and stack_.moe_dispatch == "dedup":
                    # a token crosses to each remote scale-up domain holding one of its experts once
                    # (expected distinct domains of k uniform picks), at most max_nodes_per_token
                    domains = math.ceil(plan.ep * et / domain)
                    remote = (domains - 1) * (1 - (1 - 1 / domains) ** k)
                    if train.moe_max_nodes_per_token:
                        remote = min(remote, max(0, train.moe_max_nodes_per_token - 1 / domains))
                    cross = T * imb * remote * h * ACT_BYTES / sp_div
                    lat = (domains - 1) * comm.SCALE_OUT_STEP_LATENCY_S + comm.call_latency_s(False)
                    c.ep_fwd_s = 2 * (cross / ctx.links.scale_out_bytes_per_s + lat)   # dispatch + combine
                else:
                    msg = tokens_routed * imb * h * ACT_BYTES / sp_div
                    c.ep_fwd_s = 2 * comm.all_to_all_s(plan.ep, msg, ctx.links, inside)   # dispatch + combine
    # FFN GEMMs: the op rows of estimate/ops.py (experts with this plan's routed copies and etp)
    moe_kw = {"ep": plan.ep, "expert_tokens": m_e, "expert_count": local_experts, "expert_tp": et} \
        if isinstance(ffn, MoEFFN) else {}
    for op in ops_mod.ffn_ops(ffn, h, tokens=T, tp=t, **moe_kw):
        module = ops_mod.module_of(op)
        G(op.m, op.n, op.k, op.count, eb=ACT_BYTES if module == "router" else mm_bytes, module=module)
    c.gemm_fwd_s, c.gemm_bwd_s = gemm
    # --- element-wise traffic (forward): norms (read+write h), two residual/dropout adds (read 2h,
    # write h, + mask), activation (elem_f read and written), rope on q and k.
    elem_bytes = (layer.num_norms * 2 * h + 2 * 3 * h) / sp_div * ACT_BYTES
    if train.dropout:
        elem_bytes += 2 * h / sp_div * MASK_BYTES
    elem_bytes += elem_f * ACT_BYTES + 2 * rope_elems * ACT_BYTES
    # fp8 / fp4 (Transformer Engine): each GEMM input is read in bf16 and written quantised plus its
    # quantised transpose for the backward GEMMs (cast-transpose kernels): 2 + 1 + 1 bytes per
    # element in fp8, 2 + 2 x 0.5625 in NVFP4.
    fp8_cast_bytes = cast_elems[0] * (ACT_BYTES + 2 * mm_bytes)
    ew_factor = ctx.stack.elementwise_factor if ctx.stack else 1.0
    c.elem_fwd_s = (T * elem_bytes * ew_factor + fp8_cast_bytes) / ctx.mem_bytes_per_s + 6 * KERNEL_TAIL_S
    if ctx.stack:
        c.kernels = ctx.stack.kernels_per_layer + (ctx.stack.moe_kernels_per_layer
                                                   if isinstance(layer.ffn, MoEFFN) else 0)
    # --- tensor-parallel collectives: 2 per forward (attention and MLP outputs)
    if t > 1:
        msg = T * h * ACT_BYTES
        if plan.sp:
            one = 2 * comm.ring_gather_s(t, msg, ctx.links, ctx.tp_inside)
        else:
            one = comm.ring_all_reduce_s(t, msg, ctx.links, ctx.tp_inside)
        c.tp_fwd_s = 2 * one
    # --- context-parallel ring exchange of K and V (forward)
    if plan.cp > 1:
        inside = plan.cp * plan.tp <= ctx.hw.scale_up_domain
        kv_bytes = T * kv_elems_per_token * ACT_BYTES
        c.cp_fwd_s = (plan.cp - 1) * comm.p2p_s(kv_bytes, ctx.links, inside)
    # --- parameters and activations
    c.params = replicated_params + sharded_params + c.expert_params
    if ft is not None:
        c.trainable = adapters[0]
        frozen_b = QLORA_BYTES_PER_WEIGHT if ft.method == "qlora" else WEIGHT_BYTES
        c.frozen_bytes = (sharded_params + c.expert_params) * frozen_b + replicated_params * WEIGHT_BYTES
        # qlora: each pass dequantises the frozen weights it uses (read 4-bit + scales, write 16-bit)
        c.elem_fwd_s += dequant[0] * (QLORA_BYTES_PER_WEIGHT + ACT_BYTES) / ctx.mem_bytes_per_s
    mask = (2 * h / sp_div * MASK_BYTES) if train.dropout else 0.0
    gin_bytes = GEMM_OPERAND_BYTES[train.precision]
    per_token = (act_rep / sp_div + act_shard) * ACT_BYTES + (gin_rep / sp_div + gin_shard) * gin_bytes + mask
    if selective("layernorm"):
        # the two norm outputs (attention and MLP inputs) recomputed from the kept norm inputs
        per_token -= 2 * h / sp_div * gin_bytes
        c.module_recompute_s += T * 2 * (2 * h / sp_div) * ACT_BYTES / ctx.mem_bytes_per_s
    if not train.flash_attention and not (plan.recompute == "full" or selective("core_attn")):
        per_token += score_bytes_per_token
    c.act_bytes = T * per_token
    c.act_full_recompute_bytes = T * h / sp_div * ACT_BYTES   # the checkpointed layer input
    return c


def _head_cost(model: ModelSpec, plan: ParallelPlan, ctx: _Ctx, mb_tokens: float) -> _Cost:
    """LM head and loss on the last stage: (T x h) @ (h x V/t), fp32 logits."""
    c = _Cost()
    V, e = model.vocab_size, model.embed_dim
    c.head_gemm_s = sum(_gemm_s(ctx, mb_tokens, V / plan.tp, e))
    logits = mb_tokens * V / plan.tp
    c.loss_s = logits * (LOSS_FWD_BYTES_PER_LOGIT + LOSS_BWD_BYTES_PER_LOGIT) / ctx.mem_bytes_per_s + 8 * KERNEL_TAIL_S
    c.act_bytes = mb_tokens * V / plan.tp * LOGIT_BYTES
    c.params = (0 if model.tie_embeddings and plan.pp == 1 else V * e / plan.tp) + (
        model.norm.params(model.hidden_size) if model.final_norm else 0)
    return c


def _mtp_cost(model: ModelSpec, plan: ParallelPlan, ctx: _Ctx, mb_tokens: float, last: _Cost, head: _Cost,
              n: int) -> _Cost:
    """Multi-token-prediction modules on the last stage (DeepSeek-V3 sec. 2.2): per module a decoder
    layer like the last main layer, the (T x 2h) @ (2h x h) projection of [embedding; hidden], and
    the shared head's logits and loss again; parameters of the layer, projection and norms (the
    embedding and head are shared)."""
    h = model.hidden_size
    c = _Cost()
    c.add(last, n)
    f, b = _gemm_s(ctx, mb_tokens, h / plan.tp, 2 * h)
    c.gemm_fwd_s += n * f
    c.gemm_bwd_s += n * b
    c.head_gemm_s += n * head.head_gemm_s
    c.loss_s += n * head.loss_s
    c.act_bytes += n * head.act_bytes
    c.params += n * (2 * h * h / plan.tp + 3 * model.norm.params(h))
    return c


def _embed_cost(model: ModelSpec, plan: ParallelPlan, ctx: _Ctx, mb_tokens: float) -> _Cost:
    """Embedding on the first stage: rows gathered forward (read + write T x h), and backward the
    incoming gradient read plus the dense (V/t x h) weight gradient written and accumulated."""
    c = _Cost()
    rows = mb_tokens * model.embed_dim * ACT_BYTES
    table = model.vocab_size / plan.tp * model.embed_dim
    c.embed_s = (3 * rows + table * EMBED_GRAD_BYTES_PER_ENTRY) / ctx.mem_bytes_per_s + 3 * KERNEL_TAIL_S
    c.params = _embedding_params(model, plan)
    return c


def _embedding_params(model: ModelSpec, plan: ParallelPlan) -> float:
    p = model.vocab_size * model.embed_dim / plan.tp
    if model.positions == "learned":
        p += model.position_rows * model.hidden_size
    if model.embed_dim != model.hidden_size:
        p += 2 * model.embed_dim * model.hidden_size
    return p


def stage_layer_counts(num_layers: int, chunks: int) -> list[int]:
    """The default split of layers over virtual stages: even where it divides; else the remainder
    goes to the middle stages, so that the first and last stages, which also hold the embedding and
    the loss, get fewer (Llama 3.1 405B: 126 layers over 16 stages = 7, 8 x 14, 7, as Meta ran it)."""
    base, extra = divmod(num_layers, chunks)
    counts = [base] * chunks
    if extra:
        first = (chunks - extra) // 2
        for i in range(first, first + extra):
            counts[i] += 1
    return counts


def balanced_layer_counts(work_s: list[float], chunks: int, first_extra_s: float, last_extra_s: float) -> list[int]:
    """Contiguous layers per virtual stage minimising the largest stage's work, the first stage also
    doing `first_extra_s` (embedding) and the last `last_extra_s` (head, loss, MTP modules): the
    smallest feasible bound by bisection, each stage filled greedily up to it."""
    n = len(work_s)

    def fill(bound: float) -> list[int] | None:
        counts, i = [], 0
        for c in range(chunks):
            load = first_extra_s if c == 0 else 0.0
            k = 0
            while i < n and (c == chunks - 1 or load + work_s[i] <= bound):
                load += work_s[i]
                i += 1
                k += 1
            if c == chunks - 1 and load + last_extra_s > bound:
                return None
            counts.append(k)
        return counts if i == n else None

    lo = max(first_extra_s, last_extra_s, max(work_s, default=0.0))
    hi = first_extra_s + last_extra_s + sum(work_s)
    for _ in range(60):
        mid = (lo + hi) / 2
        if fill(mid) is None:
            lo = mid
        else:
            hi = mid
    return fill(hi) or stage_layer_counts(n, chunks)


def _work_s(c: _Cost) -> float:
    """One micro-batch's forward and backward work in a cost (what a layout balances)."""
    return (c.gemm_fwd_s + c.gemm_bwd_s + c.attn_fwd_s + c.attn_bwd_s + 3 * c.elem_fwd_s + c.head_gemm_s
            + c.loss_s + c.embed_s + 3.5 * c.tp_fwd_s + 2 * c.ep_fwd_s + 2 * c.cp_fwd_s)


def _stage_layers(model: ModelSpec, plan: ParallelPlan, balance: tuple | None = None) -> list[list[int]]:
    """Layer indices held by each pipeline rank (interleaved chunks when vpp > 1), from
    parallel.pipeline_layout or the default split; `balance` = (per-layer work, first-stage extra,
    last-stage extra) for pipeline_layout: balanced."""
    L, p, v = model.num_layers, plan.pp, plan.vpp
    chunks = p * v
    if isinstance(plan.pipeline_layout, tuple):
        sizes = list(plan.pipeline_layout)
    elif plan.pipeline_layout == "balanced" and balance is not None:
        sizes = balanced_layer_counts(*balance[:1], chunks, *balance[1:])
    else:
        sizes = stage_layer_counts(L, chunks)
    bounds, start = [], 0
    for n in sizes:
        bounds.append(range(start, start + n))
        start += n
    return [[i for c in range(rank, chunks, p) for i in bounds[c]] for rank in range(p)]


def calibrated_efficiency(hw: AcceleratorSpec, train: TrainingSpec) -> Efficiency:
    """The catalog efficiencies of `hw` as one training step sustains them: GEMM and attention
    fractions times the power-cap clock factor and the profile's `compute.<generation>`; every
    compute-rate fraction times the profile's `stack.<framework>`. Fractions are capped at 0.98."""
    eff = efficiency_for(hw, "fp8" if train.precision == "fp4" else train.precision, train.attention_kernel)
    if train.precision == "fp4":
        # measured NVFP4 GEMM kernels (without the quantisation pass, which is counted on its own)
        eff = replace(eff, matmul_frac=fp4_matmul_frac(hw.lookup_id) or eff.matmul_frac)
    prof = train.profile
    compute = power_clock_factor(hw) * prof.get(f"compute.{generation_of(hw.lookup_id)}")
    stack = prof.get(f"stack.{train.framework}")
    if compute == 1.0 and stack == 1.0:
        return eff

    def cap(x: float) -> float:
        return min(0.98, x)

    return replace(eff, matmul_frac=cap(eff.matmul_frac * compute * stack),
                   attention_fwd_frac=cap(eff.attention_fwd_frac * compute * stack),
                   attention_bwd_frac=cap(eff.attention_bwd_frac * compute * stack),
                   memory_frac=cap(eff.memory_frac * stack))


def _prepared(model: ModelSpec, hw: AcceleratorSpec, train: TrainingSpec, devices_per_node: int,
              scale_out_bandwidth_bytes_per_s: float | None) -> tuple[Efficiency, float, float, comm.Links, int]:
    eff = calibrated_efficiency(hw, train)
    dtype = "fp16" if train.precision == "fp16" else "bf16"
    half_peak = hw.peak_flops_per_s.get(dtype) or hw.peak_flops_per_s.get("bf16") or hw.peak_flops_per_s.get("fp16")
    if half_peak is None:
        half_peak = max(hw.peak_flops_per_s.values())
    mm_peak = hw.peak_flops_per_s.get(train.precision, half_peak) if train.precision in ("fp8", "fp4") else half_peak
    su = (hw.scale_up_bandwidth_bytes_per_s or hw.host_link_bandwidth_bytes_per_s or 1e9) * eff.scale_up_frac
    so_raw = scale_out_bandwidth_bytes_per_s or hw.scale_out_bandwidth_bytes_per_s or su / eff.scale_up_frac
    links = comm.Links(su, so_raw * eff.scale_out_frac, hw.scale_up_domain)
    # collectives stay on the scale-up fabric within its domain (an NVL72 rack spans 18 nodes)
    scale_up_group = max(1, hw.scale_up_domain)
    return eff, half_peak, mm_peak, links, scale_up_group


def estimate_training(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                      devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                      assumptions: tuple[Assumption, ...] = (), cache: dict | None = None) -> TrainingEstimate:
    """Memory and step time of `train` under `plan` on `plan.num_devices` x `hw` (plan validated).

    `cache`: an optional dict the caller keeps across calls with the same model, hardware, training
    spec and cluster (the plan search does); it memoises the parts that depend on only some plan
    fields. Results are identical with or without it."""
    return _estimate(model, hw, plan, train, devices_per_node, scale_out_bandwidth_bytes_per_s, assumptions,
                     {} if cache is None else cache, summary=False)


def step_summary(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None,
                 cache: dict) -> tuple[float, float, bool]:
    """(step_time_s, memory_per_device_bytes, fits) exactly as estimate_training computes them, without
    building the report; plans that do not fit are not timed (step_time_s = inf). For the search."""
    return _estimate(model, hw, plan, train, devices_per_node, scale_out_bandwidth_bytes_per_s, (), cache,
                     summary=True)


def _estimate(model, hw, plan, train, devices_per_node, scale_out_bandwidth_bytes_per_s, assumptions, cache, *,
              summary: bool):
    prep = cache.get("prep")
    if prep is None:
        prep = cache["prep"] = _prepared(model, hw, train, devices_per_node, scale_out_bandwidth_bytes_per_s)
    eff, half_peak, mm_peak, links, scale_up_group = prep
    xkey = ("ctx", plan.tp <= scale_up_group)
    ctx = cache.get(xkey)
    if ctx is None:
        ctx = cache[xkey] = _Ctx(hw=hw, eff=eff, peak_flops_per_s=mm_peak, attn_peak_flops_per_s=half_peak,
                                 mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * eff.memory_frac, links=links,
                                 tp_inside=plan.tp <= scale_up_group,
                                 stack=stack_for(train))

    b = plan.microbatch_seqs
    mb_tokens = b * train.seq_len / plan.cp
    m = train.global_batch_seqs // (plan.dp * b)
    lkey = ("layers", plan.tp, plan.cp, plan.sp, plan.ep, plan.expert_tp, b, plan.recompute, plan.recompute_modules,
            plan.pp == 1)
    if lkey not in cache:
        cache[lkey] = ([_layer_cost(spec, model, plan, train, ctx, mb_tokens) for spec in model.distinct_layers],
                       _head_cost(model, plan, ctx, mb_tokens), _embed_cost(model, plan, ctx, mb_tokens))
    layer_cost, head, embed = cache[lkey]
    group_of = model.layer_group_index
    n_mtp = train.mtp_layers or 0     # opt-in: the model's own count is reported by the api
    mkey = ("mtp", lkey, n_mtp)
    if n_mtp and mkey not in cache:
        cache[mkey] = _mtp_cost(model, plan, ctx, mb_tokens, layer_cost[group_of[-1]], head, n_mtp)

    # --- per pipeline rank: sum the layers it holds
    skey = ("stages", plan.pp, plan.vpp, plan.pipeline_layout, plan.pp_schedule, plan.ep_comm_overlap)
    if plan.pipeline_layout == "balanced":
        skey += (lkey, n_mtp)
    if skey not in cache:
        balance = None
        if plan.pipeline_layout == "balanced":
            last_extra = _work_s(head) + (_work_s(cache[mkey]) if n_mtp else 0.0)
            balance = ([_work_s(layer_cost[g]) for g in group_of], _work_s(embed), last_extra)
            cache[("layout", skey)] = balanced_layer_counts(balance[0], plan.pp * plan.vpp, *balance[1:])
        stages_ = _stage_layers(model, plan, balance)
        cache[skey] = (stages_, [Counter(group_of[i] for i in idx) for idx in stages_])
    stages, stage_groups = cache[skey]
    recompute_full = plan.recompute == "full"
    ckey = lkey + skey
    bucket = cache.get(ckey)
    if bucket is None:
        bucket = cache[ckey] = {}
    if "costs" not in bucket:
        stage_costs_: list[_Cost] = []
        composition: dict[tuple, _Cost] = {}
        for rank, counts_here in enumerate(stage_groups):
            key = (tuple(counts_here.items()), rank == 0, rank == plan.pp - 1)
            if key not in composition:
                sc = _Cost()
                for spec, n in counts_here.items():
                    sc.add(layer_cost[spec], n)
                if rank == plan.pp - 1:
                    sc.add(head)
                    if n_mtp:
                        sc.add(cache[mkey])
                if rank == 0:
                    sc.add(embed)
                composition[key] = sc
            stage_costs_.append(composition[key])
        if plan.pp_schedule == "dualpipe":
            # DualPipe feeds micro-batches from both ends: rank r runs stage r for one direction and
            # stage p-1-r for the other, half the micro-batches each (DeepSeek-V3 report sec. 3.2.1),
            # so its work per micro-batch is the pair's mean and it holds both stages' parameters
            # (the "2x parameters" below doubles this mean). The embedding and the head (with any MTP
            # modules) share rank 0 and rank p-1 with the middle of the model.
            pairs: dict[tuple[int, int], _Cost] = {}
            for rank in range(plan.pp):
                a_, b_ = stage_costs_[rank], stage_costs_[plan.pp - 1 - rank]
                key = tuple(sorted((id(a_), id(b_))))
                if key not in pairs:
                    pc = _Cost()
                    pc.add(a_, 0.5)
                    pc.add(b_, 0.5)
                    pairs[key] = pc
                stage_costs_[rank] = pairs[key]
        bucket["costs"] = stage_costs_
    stage_costs = bucket["costs"]

    comm_sm_frac = COMM_UNITS / hw.compute_units if hw.compute_units else COMM_UNITS / 132
    stack = ctx.stack

    def mb_times(sc: _Cost) -> dict[str, float]:
        """One micro-batch on a stage: compute parts (summing to "compute") and exposed comm."""
        fwd_compute = sc.gemm_fwd_s + sc.attn_fwd_s + sc.elem_fwd_s
        # TP collectives: forward, backward (with SP the backward also re-gathers the sharded layer
        # inputs for the weight gradients: 3 collectives where the forward has 2, Korthikanti et al.
        # 2022 sec. 4.2.2), and the recomputed forward under full recompute.
        n_tp = 1 + (1.5 if plan.sp else 1) + (1 if recompute_full else 0)
        rec = 0.0
        if recompute_full:
            rec = fwd_compute
        elif plan.recompute == "selective":
            rec = (sc.attn_recompute_s if "core_attn" in plan.recompute_modules else 0.0) + sc.module_recompute_s
        parts = {"gemm": sc.gemm_fwd_s + sc.gemm_bwd_s + sc.head_gemm_s,
                 "attention": sc.attn_fwd_s + sc.attn_bwd_s,
                 "elementwise": 3 * sc.elem_fwd_s,       # backward moves twice the forward's bytes
                 "loss_embedding": sc.loss_s + sc.embed_s,
                 "recompute": rec, "comm_kernels": 0.0}
        tp = n_tp * sc.tp_fwd_s
        n_pass = 2 + (1 if recompute_full else 0)
        ep = n_pass * sc.ep_fwd_s
        cp = n_pass * sc.cp_fwd_s
        if train.comm_overlap:
            # Overlapped with the GEMMs they are split against; only the excess is exposed. TP
            # collectives overlap only where the stack implements it (frameworks.yaml).
            hidden = 0.5 * ((2 if recompute_full else 1) * sc.gemm_fwd_s + sc.gemm_bwd_s)
            tp_hidden = min(tp, hidden) if stack.tp_comm_overlap else 0.0
            cp_hidden = min(cp, sc.attn_fwd_s + sc.attn_bwd_s)
            tp, cp = tp - tp_hidden, cp - cp_hidden
            # expert all-to-all hides behind another micro-batch's compute only where the schedule
            # interleaves them (Megatron-Core 1F1B A2A overlap, DualPipe): parallel.ep_comm_overlap
            ep_hidden = min(ep, sc.gemm_fwd_s + sc.gemm_bwd_s + sc.attn_fwd_s + sc.attn_bwd_s) \
                if plan.ep_comm_overlap or plan.pp_schedule == "dualpipe" else 0.0
            ep -= ep_hidden
            # the hidden part still occupies the SMs its communication kernels run on
            parts["comm_kernels"] = (tp_hidden + cp_hidden + ep_hidden) * comm_sm_frac
        # host dispatch: forward, twice as many kernels backward, the recomputed forward; the GPU
        # waits where the host is slower than the work it launches
        passes = 3 + (1 if recompute_full else 0)
        host = sc.kernels * passes * stack.host_s_per_kernel
        gpu = sum(parts.values()) + tp + ep + cp
        parts["host"] = max(0.0, host - gpu)
        compute = sum(parts.values())
        return {"compute": compute, "tp_comm": tp, "ep_comm": ep, "cp_comm": cp, "_parts": parts,
                "_fwd": fwd_compute + sc.embed_s, "_bwd": compute - fwd_compute - sc.embed_s}

    # --- optimizer shard (the stage with the most parameters) and offloaded state
    d = plan.dp * plan.cp
    d_exp = plan.expert_dp
    # hybrid sharding: the states are sharded over the shard group only (experts over at most that)
    g = plan.zero_group
    g_exp = max(1, min(d_exp, g))
    heavy = bucket.get("heavy")
    if heavy is None:
        heavy = bucket["heavy"] = max(stage_costs, key=lambda c: c.params)
    sharded = plan.zero_stage >= 1
    opt_params = ((heavy.params - heavy.expert_params) / (g if sharded else 1)
                  + heavy.expert_params / (g_exp if sharded else 1))
    ft = train.finetune
    if ft is not None:   # only the adapters are trained: gradients, optimizer state and step
        opt_params = heavy.trainable / (g if sharded else 1)
    # ZeRO-Offload (cpu): fp32 gradients and optimizer state live in host memory, CPU Adam updates
    # them (Ren et al. 2021). ZeRO-Infinity (nvme): the optimizer state on NVMe, gradients in host
    # memory, and with ZeRO-3 the parameters too, fetched layer by layer (Rajbhandari et al. 2021).
    # bf16 Adam moments: 4 bytes fewer stored per parameter, 8 fewer moved by the step
    moment_saving = 2 * (4 - BYTES_PER_ELEMENT[train.optimizer_moments_dtype])
    optimizer_bytes = OPTIMIZER_BYTES_FP32_MOMENTS - moment_saving
    adam_bytes_moved = ADAM_BYTES_MOVED - 2 * moment_saving
    infinity_params = plan.offload == "nvme" and plan.zero_stage >= 3
    host_per_device = 0.0
    if plan.offload == "cpu":
        host_per_device = opt_params * (optimizer_bytes + GRAD_BYTES)
    elif plan.offload == "nvme":
        host_per_device = opt_params * (GRAD_BYTES + (WEIGHT_BYTES if infinity_params else 0.0))
    host_bytes = host_per_device * devices_per_node
    nvme_bytes = opt_params * optimizer_bytes if plan.offload == "nvme" else 0.0

    # --- memory on the most-loaded rank (first and last stage checked)
    def stage_memory(rank: int) -> tuple[float, float, float, float, float]:
        s_c = stage_costs[rank]
        dense = s_c.params - s_c.expert_params
        exp = s_c.expert_params
        w_shard = g if plan.zero_stage >= 3 else 1
        # ZeRO-2 stores gradients sharded only where each micro-batch reduce-scatters its own; a stack
        # that reduces once per step (Megatron-Core's distributed optimizer) accumulates them whole.
        # ZeRO-3 / FSDP shards them on every stack.
        grads_sharded = plan.zero_stage >= 3 or (plan.zero_stage == 2 and stack.grad_reduce == "per_microbatch")
        g_shard = g if grads_sharded else 1
        o_shard = g if plan.zero_stage >= 1 else 1
        ge = g_exp if grads_sharded else 1
        oe = g_exp if plan.zero_stage >= 1 else 1
        we = g_exp if plan.zero_stage >= 3 else 1
        weights = dense * WEIGHT_BYTES / w_shard + exp * WEIGHT_BYTES / we
        if infinity_params:        # the parameters live off the device
            weights = 0.0
        if plan.zero_stage >= 3:   # two layers gathered at a time (current + prefetch)
            per_layer = (dense + exp) / max(1, len(stages[rank]))
            weights += 2 * per_layer * WEIGHT_BYTES
        grads = dense * GRAD_BYTES / g_shard + exp * GRAD_BYTES / ge
        if ft is not None:
            # frozen base weights (bf16, or 4-bit under qlora) plus the trained adapters
            weights = s_c.frozen_bytes / w_shard + s_c.trainable * WEIGHT_BYTES
            if plan.zero_stage >= 3:
                weights += 2 * s_c.frozen_bytes / max(1, len(stages[rank]))
            grads = s_c.trainable * GRAD_BYTES / g_shard
        if plan.offload != "none":
            grads = 0.0            # streamed to the host as they are produced (reduce buckets: comm buffers)
        if plan.pp_schedule == "dualpipe":
            # DualPipe keeps two copies of the parameters, one per direction (DeepSeek-V3 report, Table 2)
            weights, grads = 2 * weights, 2 * grads
        optim = 0.0 if plan.offload != "none" else dense * optimizer_bytes / o_shard + exp * optimizer_bytes / oe
        if ft is not None and plan.offload == "none":
            optim = s_c.trainable * optimizer_bytes / o_shard
        akey = ("acts", rank, plan.dp)
        acts = bucket.get(akey)
        if acts is None:
            # activations: micro-batches in flight on this rank under (interleaved) 1F1B
            inflight = min(m, plan.pp - rank) if plan.pp > 1 else 1
            if plan.vpp > 1 and rank == 0:
                # interleaved: the first rank runs 2(p - 1) + (v - 1)p warm-up forward chunks, then
                # holds one more: p + (p - 1)/v stages' worth (Korthikanti et al. 2022, sec. 4.2.3),
                # but never more chunks than the step has (m v: with m = p it runs every forward
                # first and holds m micro-batches, as plain 1F1B does)
                chunks = min(m * plan.vpp, 2 * (plan.pp - 1) + (plan.vpp - 1) * plan.pp + 1)
                inflight = chunks / plan.vpp
            if plan.pp_schedule == "dualpipe":
                inflight = min(m, plan.pp + 1)      # PP + 1 micro-batches (DeepSeek-V3 report, Table 2)
            def layer_acts(r: int) -> float:
                here = stage_groups[r]
                if recompute_full:
                    layer_input = sum(layer_cost[spec].act_full_recompute_bytes * n for spec, n in here.items())
                    return inflight * layer_input + max(layer_cost[spec].act_bytes for spec in here)
                return inflight * sum(layer_cost[spec].act_bytes * n for spec, n in here.items())
            if plan.pp_schedule == "dualpipe":   # both directions' stages, half the micro-batches each
                acts = (layer_acts(rank) + layer_acts(plan.pp - 1 - rank)) / 2
                if rank in (0, plan.pp - 1):
                    acts += head.act_bytes
            else:
                acts = layer_acts(rank)
                if rank == plan.pp - 1:
                    acts += head.act_bytes
            bucket[akey] = acts
        if plan.activation_offload:
            # the offloaded share waits in host memory; two layers' worth of one micro-batch stay on
            # the device as transfer buffers (one going out or coming back, one being computed)
            layer_max = max(layer_cost[spec].act_bytes for spec in stage_groups[rank])
            offloaded_acts[rank] = plan.activation_offload * acts
            acts = acts - offloaded_acts[rank] + 2 * layer_max * plan.activation_offload
        other = RUNTIME_CONTEXT_BYTES + COMM_BUFFER_BYTES + FRAGMENTATION_FRAC * acts
        return weights, grads, optim, acts, other

    offloaded_acts: dict[int, float] = {}
    parts = stage_memory(0)
    total_mem = sum(parts)
    if plan.pp > 1:
        last = stage_memory(plan.pp - 1)
        if sum(last) > total_mem:
            parts, total_mem = last, sum(last)
    mem = dict(zip(("weights", "gradients", "optimizer", "activations", "other"), parts, strict=True))
    if offloaded_acts:
        host_bytes += max(offloaded_acts.values()) * devices_per_node
    cap = hw.hbm_capacity_bytes
    fits = total_mem <= cap
    reason = None
    skip = summary
    if not fits and not skip:
        biggest = max(mem, key=mem.get)
        reason = (f"needs {units.format_bytes(total_mem)} per device, {units.format_bytes(total_mem - cap)} "
                  f"more than the {units.format_bytes(cap)} of {hw.id}; largest part: {biggest} "
                  f"({units.format_bytes(mem[biggest])})")
    if host_bytes and hw.host_memory_bytes_per_node and host_bytes > hw.host_memory_bytes_per_node:
        fits = False
        reason = None if skip else (
                  f"offloaded state needs {units.format_bytes(host_bytes)} of host memory per node; "
                  f"the {hw.id} reference node has {units.format_bytes(hw.host_memory_bytes_per_node)}")

    if not fits and summary:
        return math.inf, total_mem, False   # the search drops plans that do not fit: no timing

    # ranks holding the same layers share one cost object: time each distinct one once
    if "timed" not in bucket:
        timed: dict[int, tuple[dict[str, float], float]] = {}
        for sc in stage_costs:
            if id(sc) not in timed:
                d_ = mb_times(sc)
                timed[id(sc)] = (d_, d_["compute"] + d_["tp_comm"] + d_["ep_comm"] + d_["cp_comm"])
        per_stage_ = [timed[id(sc)][0] for sc in stage_costs]
        stage_total_ = [timed[id(sc)][1] for sc in stage_costs]
        bucket["timed"] = (per_stage_, stage_total_, max(range(plan.pp), key=stage_total_.__getitem__))
    per_stage, stage_total, slow = bucket["timed"]
    t_mb = stage_total[slow]
    # pipeline point-to-point: activations (scatter/gather over tp) forward and gradients backward,
    # once per virtual stage boundary
    pp_comm_mb = 0.0
    if plan.pp > 1:
        # neighbouring stages share a node only if the whole pipeline fits in one
        inside = plan.num_devices <= devices_per_node
        msg = mb_tokens * model.hidden_size * ACT_BYTES / plan.tp
        pp_comm_mb = 2 * plan.vpp * comm.p2p_s(msg, links, inside)
    # pipeline bubble, in micro-batch times (forward, backward-for-input and backward-for-weights
    # taken as a third of one each): 1F1B (p - 1) / v (Narayanan et al. SC'21); zero bubble ZB-H1
    # (p - 1)(T_F + T_B - T_W) = (p - 1) / 3 (Qi et al. 2024); DualPipe (p/2 - 1)(T_F&B + T_B - 3 T_W)
    # = (p/2 - 1) / 3 with the overlapped chunk T_F&B = one micro-batch (DeepSeek-V3 report, Table 2)
    if plan.pp_schedule == "zero_bubble":
        bubble_mbs = (plan.pp - 1) / 3
    elif plan.pp_schedule == "dualpipe":
        bubble_mbs = (plan.pp / 2 - 1) / 3
    else:
        bubble_mbs = (plan.pp - 1) / plan.vpp
    bubble = bubble_mbs * (t_mb + pp_comm_mb)

    # --- data-parallel gradient reduction and parameter gathers (ZeRO)
    sc = stage_costs[slow]
    dense_params = sc.params - sc.expert_params
    grad_params, grad_expert = (sc.trainable, 0.0) if ft is not None else (dense_params, sc.expert_params)
    domain = max(1, hw.scale_up_domain)
    in_node = max(1, domain // (plan.tp * plan.cp)) if plan.tp * plan.cp < domain else 1
    dp_s = 0.0
    if d > 1:
        grad_b = BYTES_PER_ELEMENT[train.grad_reduce_dtype]
        fwd_window = per_stage[slow]["_fwd"] if train.comm_overlap else 0.0
        bwd_window = per_stage[slow]["_bwd"] if train.comm_overlap else 0.0

        def gather(n: int, nbytes: float) -> float:
            return comm.hierarchical_gather_s(n, min(in_node, n), nbytes, links)

        dkey = ("dp", plan.dp, plan.shard_group)
        if dkey not in bucket:
            rs_, ag_ = (gather(g, grad_params * grad_b) + gather(g_exp, grad_expert * grad_b),
                        gather(g, dense_params * WEIGHT_BYTES) + gather(g_exp, sc.expert_params * WEIGHT_BYTES))
            # hybrid sharding: each shard group's reduce-scattered gradients are then all-reduced
            # with the same shard of the other d / g replicas (one rank per group, usually across nodes)
            rep_ = 0.0
            if g < d:
                r_, r_exp = d // g, max(1, d_exp // g_exp)
                rep_in = max(1, min(r_, in_node // g)) if g < in_node else 1
                rep_ = (comm.hierarchical_all_reduce_s(r_, rep_in, grad_params * grad_b / g, links)
                        + (comm.hierarchical_all_reduce_s(r_exp, 1, grad_expert * grad_b / g_exp, links)
                           if r_exp > 1 else 0.0))
            bucket[dkey] = (
                rs_ + rep_, ag_,
                comm.hierarchical_all_reduce_s(d, min(in_node, d), grad_params * grad_b, links)
                + comm.hierarchical_all_reduce_s(d_exp, min(in_node, d_exp), grad_expert * grad_b, links))
        rs, ag, ar = bucket[dkey]
        if plan.zero_stage == 0:
            # one all-reduce of the gradients, hidden behind the last micro-batch's backward
            dp_s = max(0.0, ar - bwd_window) + min(ar, bwd_window) * comm_sm_frac
        elif plan.zero_stage in (1, 2):
            # ZeRO-1 keeps a full gradient buffer and reduce-scatters it once, behind the last
            # backward; ZeRO-2 shards the gradients, so every micro-batch reduce-scatters its own
            # behind its backward. The updated parameters are all-gathered behind the first forward.
            n_rs = m if (plan.zero_stage == 2 and stack.grad_reduce == "per_microbatch") else 1
            dp_s = n_rs * max(0.0, rs - bwd_window) + max(0.0, ag - fwd_window)
            dp_s += (n_rs * min(rs, bwd_window) + min(ag, fwd_window)) * comm_sm_frac
        else:
            # ZeRO-3 / FSDP: every micro-batch gathers the parameters for forward and again for
            # backward, layer by layer (one call per layer and pass, each paying the collective's
            # latency), and reduce-scatters its gradients (every micro-batch, or once per step
            # where the stack accumulates unsharded gradients: Megatron-Core's distributed optimizer)
            n_layers = max(1, len(stages[slow]))
            lat = (n_layers - 1) * comm.hierarchical_gather_latency_s(g, min(in_node, g))
            ag_l, rs_l = ag + lat, rs + lat
            if stack.grad_reduce == "per_step":
                dp_s = (m * (max(0.0, ag_l - fwd_window) + max(0.0, ag_l - bwd_window)) + max(0.0, rs_l - bwd_window)
                        + (m * (min(ag_l, fwd_window) + min(ag_l, bwd_window)) + min(rs_l, bwd_window)) * comm_sm_frac)
            else:
                dp_s = m * (max(0.0, ag_l - fwd_window) + max(0.0, ag_l + rs_l - bwd_window)
                            + (min(ag_l, fwd_window) + min(ag_l + rs_l, bwd_window)) * comm_sm_frac)

    # --- optimizer step (memory-bound Adam over the local shard) and offload transfers
    offload_s = 0.0
    if plan.offload == "none":
        optimizer_s = opt_params * adam_bytes_moved / ctx.mem_bytes_per_s
    else:
        link = (hw.host_link_bandwidth_bytes_per_s or 32e9) * eff.memory_frac
        host_bw = HOST_MEMORY_BANDWIDTH_BYTES_PER_S / max(1, devices_per_node)
        optimizer_s = opt_params * adam_bytes_moved / host_bw
        # 16-bit gradients to the host every micro-batch, behind its backward; the updated 16-bit
        # parameters back once per step
        bwd_win = per_stage[slow]["_bwd"]
        fwd_win = per_stage[slow]["_fwd"]
        grad_d2h = opt_params * WEIGHT_BYTES / link
        offload_s = m * max(0.0, grad_d2h - bwd_win) + opt_params * WEIGHT_BYTES / link
        if plan.offload == "nvme":
            # optimizer state read and written on NVMe once per step
            offload_s += opt_params * optimizer_bytes * 2 / NVME_BANDWIDTH_BYTES_PER_S
            if infinity_params:
                # every micro-batch fetches the parameters for forward and for backward, prefetched
                # behind the previous layer's compute
                fetch = opt_params * WEIGHT_BYTES / link
                offload_s += m * (max(0.0, fetch - fwd_win) + max(0.0, fetch - bwd_win))

    if plan.activation_offload:
        # the offloaded activations go out over the host link during the forward and come back
        # during the backward, each behind that pass's compute (exposed only beyond it)
        link = (hw.host_link_bandwidth_bytes_per_s or 32e9) * eff.memory_frac
        moved = plan.activation_offload * stage_costs[slow].act_bytes / link
        offload_s += m * (max(0.0, moved - per_stage[slow]["_fwd"]) + max(0.0, moved - per_stage[slow]["_bwd"]))

    # tied embeddings split over first and last stage: their gradients are all-reduced each step
    emb_sync = 0.0
    if model.tie_embeddings and plan.pp > 1:
        emb_bytes = model.vocab_size * model.embed_dim / plan.tp * BYTES_PER_ELEMENT[train.grad_reduce_dtype]
        emb_sync = comm.ring_all_reduce_s(2, emb_bytes, links, False)

    breakdown = {
        "compute": m * per_stage[slow]["compute"],
        "tp_comm": m * per_stage[slow]["tp_comm"],
        "pp_bubble": bubble,
        "pp_comm": m * pp_comm_mb,
        "dp_comm": dp_s,
        "ep_comm": m * per_stage[slow]["ep_comm"],
        "cp_comm": m * per_stage[slow]["cp_comm"],
        "offload": offload_s,
        "other": optimizer_s + emb_sync,
    }
    step = sum(breakdown.values())
    if summary:
        return step, total_mem, fits

    tokens = train.tokens_per_step
    if "flops" not in cache:
        cache["flops"] = (counts.forward_flops_per_token(model, train.seq_len, "causal"),
                          counts.attention_flops_per_token(model, train.seq_len, "causal"))
    fwd_per_token, attn_per_token = cache["flops"]
    model_flops = 3 * fwd_per_token * tokens
    extra = 0.0
    if recompute_full:
        extra = fwd_per_token * tokens
    elif plan.recompute == "selective":
        extra = (attn_per_token if "core_attn" in plan.recompute_modules else 0.0) * tokens
        if "mla_up_proj" in plan.recompute_modules:
            extra += counts.mla_up_projection_flops_per_token(model) * tokens
    hardware_flops = model_flops + extra
    n_dev = plan.num_devices
    peak_total = mm_peak * n_dev
    tokens_per_s = tokens / step
    ttt = dh = None
    if train.total_tokens:
        ttt = train.total_tokens / tokens_per_s
        dh = ttt * n_dev / units.HOUR_S
    if plan.pipeline_layout == "balanced":
        assumptions = (*assumptions, Assumption(
            "pipeline_layout", cache[("layout", skey)],
            "balanced: layers per virtual stage that even out the stages' work, the embedding on the first "
            "and the head, loss and MTP modules on the last counted"))
    return TrainingEstimate(
        fits=fits, infeasible_reason=reason, memory_per_device_bytes=total_mem, memory_breakdown_bytes=mem,
        memory_capacity_bytes=cap, step_time_s=step, step_time_breakdown_s=breakdown,
        compute_breakdown_s={k: m * v for k, v in per_stage[slow]["_parts"].items()},
        tokens_per_s=tokens_per_s, tokens_per_s_per_device=tokens_per_s / n_dev,
        model_flops_per_step=model_flops, hardware_flops_per_step=hardware_flops,
        mfu=model_flops / step / peak_total, hfu=hardware_flops / step / peak_total,
        time_to_train_s=ttt, device_hours=dh, num_microbatches=m, plan=plan,
        host_memory_per_node_bytes=host_bytes, nvme_per_device_bytes=nvme_bytes, assumptions=assumptions,
    )


def op_breakdown(model: ModelSpec, hw: AcceleratorSpec, plan: ParallelPlan, train: TrainingSpec, *,
                 devices_per_node: int, scale_out_bandwidth_bytes_per_s: float | None) -> tuple[dict[str, Any], ...]:
    """The forward ops of one micro-batch on one device (estimate/ops.py), each timed by the same
    roofline and calibrated efficiencies as the step, with the number of layers it repeats in (the
    whole model, before the pipeline split). For reports: the step itself does not need it."""
    from flopcast.estimate import ops as ops_mod

    eff, half_peak, mm_peak, links, group = _prepared(model, hw, train, devices_per_node,
                                                      scale_out_bandwidth_bytes_per_s)
    ctx = DeviceCtx(hw=hw, eff=eff, peak_flops_per_s=mm_peak, attn_peak_flops_per_s=half_peak,
                    mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * eff.memory_frac, links=links,
                    tp_inside=plan.tp <= group, stack=stack_for(train))
    mb_tokens = plan.microbatch_seqs * train.seq_len / plan.cp
    elem = GEMM_OPERAND_BYTES[train.precision]
    rows = []
    for n, group in ops_mod.model_ops(model, seq_len=train.seq_len, tokens=mb_tokens, tp=plan.tp, ep=plan.ep):
        for row in ops_mod.time_ops(group, ctx, elem_bytes=elem):
            rows.append({"layers": n, **row})
    return tuple(rows)
