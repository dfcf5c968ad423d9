"""Serving: memory and KV-cache capacity, per-op roofline of a decode step and a prefill chunk, and
the steady state of a continuously batched server.

Legend: B concurrent sequences per replica, I input and O output tokens per sequence, c context of a
decoding sequence, t/p tensor/pipeline degree, h hidden, V vocabulary, E experts, k per token.

One iteration of the engine runs one forward over the tokens it holds: one new token for each
decoding sequence plus a chunk of prompt tokens (chunked prefill, vLLM / TensorRT-LLM in-flight
batching). Each operation's time is its roofline max(F / (eta P), bytes / (eta_mem W)) plus a
per-kernel tail: projections read their weights once per iteration (so decode is memory-bound at
small B), attention reads every decoding sequence's KV cache, prefill attention is compute-bound.
Tensor-parallel all-reduces (2 per layer) are not overlapped. Efficiencies come from
catalog/efficiency.yaml (measured GEMM and attention fractions), as for training.

Steady state with B sequences of I + O tokens: every iteration advances B decoding sequences by one
token and, on average, prefills B I / O prompt tokens (one new sequence per finished one), within the
iteration token budget; so output tokens/s per replica = B / t_iteration and TPOT = t_iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from flopcast import units
from flopcast.assumption import Assumption
from flopcast.dtypes import BYTES_PER_ELEMENT
from flopcast.errors import InvalidScenario
from flopcast.estimate import admission, comm, counts
from flopcast.estimate import ops as ops_mod
from flopcast.estimate import speculative as spec_mod
from flopcast.estimate.efficiency import (
    attention_seq_factor,
    decode_attention_frac,
    deepep_floor_s,
    dispatch_gap_s,
    efficiency_for,
    fp4_matmul_frac,
    generation_of,
    grouped_gemm_frac,
    moe_imbalance,
    moe_serving_data,
    power_clock_factor,
    serving_engine,
    weight_streaming_frac,
)
from flopcast.estimate.roofline import COMM_UNITS, KERNEL_TAIL_S, SKINNY_ROWS, DeviceCtx, gemm_time_s
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import DenseFFN, LatentAttention, LayerSpec, ModelSpec, MoEFFN, StandardAttention
from flopcast.specs.serving import InferenceSpec

ACT_BYTES = 2.0
# Block-scaled formats store one scale per block: NVFP4 one fp8 scale per 16 elements, int4
# (AWQ/GPTQ) an fp16 scale and zero per 128-element group.
SCALE_BYTES_PER_WEIGHT = {"fp4": 1 / 16, "int4": 4 / 128}
# inference.weight_group_size g: one fp16 scale per g weights, symmetric (ggml block_q4_0 / block_q8_0:
# a ggml_half d and 32 quants, ggml/src/ggml-common.h; MLC q4f16_1: group 32), 2 / g bytes per weight
GROUP_SCALE_BYTES = 2.0
RUNTIME_RESERVE_BYTES = 1.0 * units.GiB     # CUDA context, cuBLAS workspaces, NCCL buffers
KERNELS_PER_LAYER = 12                       # norms, projections, attention, activation, residuals, rope
# Iterations that carry prompt tokens run eagerly (engines capture CUDA graphs for pure-decode batch
# sizes only: vLLM and TensorRT-LLM's PyTorch backend), so each kernel pays the host's dispatch and
# launch cost, ~5 us per op in PyTorch eager mode; pure-decode iterations replay a graph.
EAGER_LAUNCH_S = 5e-6
DEQUANT_OPS_PER_WEIGHT = 2                   # unpack + scale, per weight element per 128-row tile of tokens
SAMPLING_BYTES_PER_LOGIT = 12                # fp32 logits written, softmax read/write, top-p/k pass
# EAGLE-3 heads predict over a reduced draft vocabulary: 32,000 tokens for Llama 3.1 8B
# (vllm-project/speculators Eagle3 configs, e.g. nm-testing/EAGLE3-LLaMA3.1-Instruct-8B-converted
# config.json draft_vocab_size; the speculators v0.3.0 blog: typically 10k-32k)
DRAFT_VOCAB = {"eagle3": 32000}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingEstimate:
    fits: bool
    infeasible_reason: str | None
    max_batch_size: int
    batch_size: int
    kv_cache_bytes_per_token: float
    memory_breakdown_bytes: dict[str, float]
    ttft_s: float
    ttft_unloaded_s: float
    tpot_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float
    input_tokens_per_s: float
    output_tokens_per_s_per_device: float
    decode_step_breakdown_s: dict[str, float]
    prefill_breakdown_s: dict[str, float]
    tokens_per_j: float | None
    spec: InferenceSpec
    datacenter: dict[str, Any] | None = None
    at_slo: dict[str, Any] | None = None      # the operating point at inference.slo (run.serving.at_slo)
    assumptions: tuple[Assumption, ...] = field(default=())
    ops: tuple[dict[str, Any], ...] = ()     # the op rows of one decode iteration (decode_ops)

    def to_dict(self) -> dict[str, Any]:
        return {**(self.datacenter or {}), **({"at_slo": self.at_slo} if self.at_slo is not None else {}), **{
            "fits": self.fits, "infeasible_reason": self.infeasible_reason,
            "max_batch_size": self.max_batch_size, "batch_size": self.batch_size,
            "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
            "memory_breakdown_bytes": dict(self.memory_breakdown_bytes),
            "ttft_s": self.ttft_s, "ttft_unloaded_s": self.ttft_unloaded_s, "tpot_s": self.tpot_s,
            "output_tokens_per_s": self.output_tokens_per_s, "total_tokens_per_s": self.total_tokens_per_s,
            "input_tokens_per_s": self.input_tokens_per_s,
            "output_tokens_per_s_per_device": self.output_tokens_per_s_per_device,
            "decode_step_breakdown_s": dict(self.decode_step_breakdown_s),
            "prefill_breakdown_s": dict(self.prefill_breakdown_s),
            "output_tokens_per_j": self.tokens_per_j,
            "inference": self.spec.to_dict(),
            "ops": [dict(o) for o in self.ops],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }}


@dataclass(frozen=True, slots=True)
class _Serve:
    model: ModelSpec
    hw: AcceleratorSpec
    spec: InferenceSpec
    ctx: DeviceCtx              # matmuls at the weights' compute dtype
    native: bool                # hardware computes in the weights' dtype (else dequantise to 16-bit)
    w_bytes: float              # bytes per weight element (with block scales)
    kv_bytes: float
    half_peak: float
    vector_peak: float          # non-tensor fp32 rate, for dequantisation
    moe_factor: float = 1.0     # calibrated grouped-GEMM rate of MoE experts (profile moe.<generation>)
    weight_stream_frac: float | None = None          # measured HBM fraction of weight-streaming GEMMs
    weight_stream_bytes_per_s: float | None = None   # ... as this deployment's calibrated rate
    kv_read_bytes_per_s: float | None = None         # decode attention's KV-cache read rate (measured kernels)
    # what no calibration parameter changes (op rows, admitted batch), kept by a caller that re-predicts
    # the same deployment under many profiles (serving_rates `memo`); None: nothing kept
    memo: dict[Any, Any] | None = None


def prepare(model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec, memo: dict[Any, Any] | None = None) -> _Serve:
    """What every iteration of this deployment shares (device context with calibrated efficiencies,
    weight and KV formats): the handle the simulator and the analytic estimate both time with. A
    speculative section without an acceptance length gets the predicted one (estimate/speculative.py)."""
    spec, _ = spec_mod.with_acceptance(model, spec)
    peaks = hw.peak_flops_per_s
    half = peaks.get("bf16") or peaks.get("fp16") or max(peaks.values())
    wd = spec.weights_dtype
    native = wd in peaks and wd not in ("bf16", "fp16")
    compute_dtype = wd if native else "bf16"
    peak = peaks[wd] if native else half
    eff = efficiency_for(hw, "fp8" if compute_dtype in ("fp8", "fp4", "int8", "int4") else "bf16")
    if native and wd == "fp4" and fp4_matmul_frac(hw.lookup_id):
        eff = replace(eff, matmul_frac=fp4_matmul_frac(hw.lookup_id))   # measured NVFP4 kernels
    prof = spec.profile
    gen = generation_of(hw.lookup_id)
    stream_catalog_frac = eff.memory_frac
    compute = power_clock_factor(hw) * prof.get(f"compute.{gen}") * prof.get(f"engine.{spec.engine}")
    memory = prof.get(f"memory.{gen}") * prof.get(f"engine.{spec.engine}")
    if compute != 1.0 or memory != 1.0:
        eff = replace(eff, matmul_frac=min(0.98, eff.matmul_frac * compute),
                      attention_fwd_frac=min(0.98, eff.attention_fwd_frac * compute),
                      attention_bwd_frac=min(0.98, eff.attention_bwd_frac * compute),
                      memory_frac=min(0.98, eff.memory_frac * memory))
    su = (hw.scale_up_bandwidth_bytes_per_s or hw.host_link_bandwidth_bytes_per_s or 1e9) * eff.scale_up_frac
    so = (hw.scale_out_bandwidth_bytes_per_s or su) * eff.scale_out_frac
    ctx = DeviceCtx(hw=hw, eff=eff, peak_flops_per_s=peak, attn_peak_flops_per_s=half,
               mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * eff.memory_frac,
               links=comm.Links(su, so, hw.scale_up_domain), tp_inside=spec.tp <= max(1, hw.scale_up_domain))
    kv = spec.kv_dtype
    if kv in ("fp8", "int8") and kv not in peaks:
        raise InvalidScenario(
            f"inference.kv_dtype: {kv} KV cache needs native {kv} support, which {hw.id} lacks "
            f"(it supports {', '.join(peaks)}); use bf16")
    w_bytes = BYTES_PER_ELEMENT[wd] + (GROUP_SCALE_BYTES / spec.weight_group_size if spec.weight_group_size
                                       else SCALE_BYTES_PER_WEIGHT.get(wd, 0.0))
    vector = peaks.get("fp32") or half / 16
    # block-scaled low-precision GEMMs stream their weights below the streaming microbenchmark
    ws = weight_streaming_frac(hw.lookup_id, wd) if native or wd in ("bf16", "fp16") else None
    ws_rate = ctx.mem_bytes_per_s * ws / stream_catalog_frac if ws else None
    da = decode_attention_frac(hw.lookup_id)
    kv_rate = ctx.mem_bytes_per_s * da / stream_catalog_frac if da else None
    return _Serve(model, hw, spec, ctx, native, w_bytes, BYTES_PER_ELEMENT[kv], half, vector,
                  prof.get(f"moe.{gen}"), ws, ws_rate, kv_rate, memo)


def _gemm(sv: _Serve, m: float, n: float, k: float, count: float = 1.0, weight_bytes: float | None = None,
          mem_bytes_per_s: float | None = None, rate_frac: float = 1.0) -> float:
    """One (batched) GEMM with m tokens against `count` weight matrices of k x n in the weights'
    dtype (roofline.gemm_time_s); dequantisation to 16-bit when the hardware lacks the format, and
    the activation-quantization pass of native fp4 GEMMs."""
    if m <= 0 or n <= 0 or k <= 0 or count <= 0:
        return 0.0
    wb = sv.w_bytes if weight_bytes is None else weight_bytes
    if weight_bytes is None and mem_bytes_per_s is None and m < SKINNY_ROWS:
        # a skinny GEMM (the libraries' 16- and 64-row tiles) streams weights in the deployment's format
        mem_bytes_per_s = sv.weight_stream_bytes_per_s
    t = gemm_time_s(sv.ctx, m, n, k, count, ACT_BYTES, weight_bytes=wb, mem_bytes_per_s=mem_bytes_per_s,
                    rate_frac=rate_frac)
    if not sv.native and sv.spec.weights_dtype not in ("bf16", "fp16") and weight_bytes is None:
        t += count * n * k * math.ceil(m / 128) * DEQUANT_OPS_PER_WEIGHT / sv.vector_peak
    if sv.native and sv.spec.weights_dtype == "fp4" and weight_bytes is None:
        # activation quantization to NVFP4 before the GEMM: read 16-bit, write 4-bit + scales
        t += count * m * k * (ACT_BYTES + sv.w_bytes) / sv.ctx.mem_bytes_per_s + KERNEL_TAIL_S
    return t


def _kv_elems_per_token_device(a, tp: int) -> float:
    match a:
        case None:
            return 0.0                                       # a state-mixer or FFN-only layer
        case StandardAttention(num_kv_heads=Hkv, head_dim=dh):
            return 2 * dh * max(1.0, Hkv / tp)
        case LatentAttention():
            # the latent (and DSA's indexer key) is replicated on every TP rank
            return a.kv_lora_rank + a.qk_rope_head_dim + a.index_head_dim
    raise TypeError(a)


def state_bytes_per_device(sv: _Serve) -> float:
    """Recurrent-state bytes one sequence holds on one device over its pipeline stage's layers
    (Mamba-2 / gated DeltaNet: SSM state in fp32 and conv state at the KV dtype, heads split over
    tp), whatever its length: what a hybrid model keeps instead of a KV cache in those layers."""
    total = 0.0
    for layer, count in sv.model.layer_groups():
        ssm, conv = counts.state_elements_layer(layer.ssm)
        total += count * (ssm * 4.0 + conv * sv.kv_bytes) / sv.spec.tp
    return total / sv.spec.pp


def _state_scan_s(sv: _Serve, op: ops_mod.Op, layer: LayerSpec, it: _Iteration) -> float:
    """A state mixer's scan (row ssm/scan): its FLOPs (chunked for prompt tokens, one recurrent step
    per decode token) at the attention kernels' efficiency, or each decoding sequence's state read
    and written back once per step, whichever is slower."""
    ssm, conv = counts.state_elements_layer(layer.ssm)
    seqs = it.n_decode / it.queries_per_seq
    state_rw = 2 * seqs * (ssm * 4.0 + conv * sv.kv_bytes) / sv.spec.tp
    t_flops = op.flops / (sv.ctx.eff.attention_fwd_frac * sv.half_peak)
    return max(t_flops, state_rw / sv.ctx.mem_bytes_per_s) + 2 * KERNEL_TAIL_S


@dataclass(frozen=True, slots=True)
class _Iteration:
    """One layer's share of one iteration on one device: n_decode decode tokens (queries_per_seq per
    sequence: 1, or 1 + k when verifying k speculative drafts) at context ctx_decode plus n_prefill
    prompt tokens of prompts of length `prompt`; global_tokens in the expert-parallel group."""

    n_decode: float
    ctx_decode: float
    n_prefill: float
    prompt: float
    global_tokens: float
    queries_per_seq: float = 1.0


@dataclass(frozen=True, slots=True)
class _Routing:
    """MoE routing of one iteration on one device: routed copies per touched expert, the experts
    touched, the busiest rank's load over the mean, and the grouped-GEMM weight bandwidth."""

    per_expert: float
    touched: float
    imbalance: float
    grouped_bytes_per_s: float | None


def _routing(sv: _Serve, ffn: MoEFFN, T: float, global_tokens: float) -> _Routing:
    E, k = ffn.num_experts, ffn.top_k
    ep = sv.spec.ep
    local = math.ceil(E / ep) if sv.spec.eplb else E / ep   # EPLB: redundant experts fill the slots
    # the most-loaded expert-parallel rank sets the pace (real routing; EPLB rebalances)
    imb = moe_imbalance("inference_eplb" if sv.spec.eplb else "inference", ep)
    routed = global_tokens * k / ep * imb if ep > 1 else T * k     # token copies this device computes
    tokens_for_routing = global_tokens if ep > 1 else T
    # expected distinct experts touched by the routed copies (uniform routing)
    touched = local * (1 - (1 - 1 / E) ** (tokens_for_routing * k))
    per_expert = routed / max(touched, 1e-9)
    # grouped GEMMs with few tokens per expert stream weights below the HBM microbenchmark
    md = moe_serving_data()
    gbw = (sv.hw.hbm_bandwidth_bytes_per_s * min(md["grouped_gemm_memory_frac"], sv.weight_stream_frac or 1.0)
           if per_expert <= md["grouped_gemm_max_tokens"] else None)
    return _Routing(per_expert, touched, imb, gbw)


def _attention_s(sv: _Serve, a: StandardAttention | LatentAttention, op: ops_mod.Op, it: _Iteration) -> float:
    """The attention core over the cache (decode: the KV read or the FLOPs, whichever is slower;
    MLA decodes in the absorbed form over the latent) and over the prompt (prefill, compute-bound)."""
    q, t = op.heads, sv.spec.tp
    dec_dqk, dec_dv = (a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank) if isinstance(a, LatentAttention) \
        else (op.d_qk, op.d_v)
    w = a.window
    c = min(it.ctx_decode, w) if w else it.ctx_decode
    if isinstance(a, LatentAttention) and a.index_heads and a.index_topk:
        c = min(c, a.index_topk)      # DeepSeek Sparse Attention: each query reads its top-k keys
    kv_read = it.n_decode / it.queries_per_seq * c * _kv_elems_per_token_device(a, t) * sv.kv_bytes
    f_dec = it.n_decode * 2 * q * (dec_dqk + dec_dv) * c
    eff = sv.ctx.eff
    kv_rate = sv.kv_read_bytes_per_s or sv.ctx.mem_bytes_per_s
    t_dec = max(f_dec / (eff.attention_fwd_frac * sv.half_peak), kv_read / kv_rate) if it.n_decode else 0.0
    keys = counts.attended_keys(it.prompt, w, "causal") if it.n_prefill else 0.0
    if isinstance(a, LatentAttention) and a.index_heads and a.index_topk:
        keys = min(keys, a.index_topk)
    f_pre = it.n_prefill * 2 * q * (op.d_qk + op.d_v) * keys
    pre_frac = min(0.98, eff.attention_fwd_frac * attention_seq_factor(it.prompt)) if it.n_prefill else 1.0
    t_pre = f_pre / (pre_frac * sv.half_peak) if it.n_prefill else 0.0
    return t_dec + t_pre + 2 * KERNEL_TAIL_S


def _row_s(sv: _Serve, op: ops_mod.Op, layer: LayerSpec, it: _Iteration, routing: _Routing | None) -> tuple[str, float]:
    """(breakdown key, time) of one op row in one serving iteration."""
    match op.kind:
        case "gemm" if op.name == "moe/router":                       # router weights stay 16-bit
            return "matmul", _gemm(sv, op.m, op.n, op.k, op.count, weight_bytes=ACT_BYTES)
        case "gemm" if op.name.startswith("moe/experts") and routing is not None:
            t = _gemm(sv, op.m, op.n, op.k, op.count, mem_bytes_per_s=routing.grouped_bytes_per_s,
                      rate_frac=grouped_gemm_frac(op.m))
            return "expert_matmul", t / sv.moe_factor
        case "gemm":
            return "matmul", _gemm(sv, op.m, op.n, op.k, op.count)
        case "attention" if op.name == "ssm/scan":
            return "attention", _state_scan_s(sv, op, layer, it)
        case "attention":
            return "attention", _attention_s(sv, layer.attention, op, it)
        case "elementwise" if op.name == "attention/rope":
            # engines fuse rotary embeddings into the projection epilogue or the attention kernel
            # (vLLM, FlashInfer, TensorRT-LLM): no HBM pass of their own
            return "elementwise_elems", 0.0
        case "elementwise":
            return "elementwise_elems", op.elems_per_token
        case "comm" if op.name == "tp/collective":
            return "tp_comm", op.calls * comm.ring_all_reduce_s(sv.spec.tp, op.bytes, sv.ctx.links, sv.ctx.tp_inside)
        case "comm" if isinstance(layer.ffn, MoEFFN) and routing is not None:
            T = it.n_decode + it.n_prefill
            return "ep_comm", _dispatch_combine_s(sv, T, layer.ffn.top_k, sv.model.hidden_size, sv.spec.ep,
                                                  routing.imbalance)
    raise ValueError(op.name)


def _layer_op_rows(sv: _Serve, layer: LayerSpec, **kw: Any) -> list[ops_mod.Op]:
    """ops_mod.layer_ops of one layer of this deployment (no calibration parameter changes them),
    from sv.memo when the caller keeps one."""
    if sv.memo is None:
        return ops_mod.layer_ops(layer, sv.model, **kw)
    # the memo serves one model (its contract), whose layers live as long as it: a layer's identity
    # stands for its spec without hashing the whole spec on every look-up
    key = ("layer_ops", id(layer), tuple(kw.items()))
    rows = sv.memo.get(key)
    if rows is None:
        rows = sv.memo[key] = ops_mod.layer_ops(layer, sv.model, **kw)
    return rows


def _layer_rows(sv: _Serve, layer: LayerSpec, it: _Iteration) -> list[tuple[ops_mod.Op, str, float]]:
    """The op rows of estimate/ops.py for one layer of one iteration on one device (MLA decode tokens
    in the absorbed form), each with its breakdown class and time; element-wise rows carry their
    elements per token instead (class elementwise_elems), streamed together by the caller."""
    T = it.n_decode + it.n_prefill
    t, ep = sv.spec.tp, sv.spec.ep
    routing: _Routing | None = None
    moe_kw: dict[str, Any] = {}
    if isinstance(layer.ffn, MoEFFN):
        routing = _routing(sv, layer.ffn, T, it.global_tokens)
        moe_kw = {"ep": ep, "expert_tokens": routing.per_expert, "expert_count": routing.touched}
    mla = isinstance(layer.attention, LatentAttention)
    # DSA's indexer scores the whole context: decode tokens at ctx_decode, prompt tokens causally
    index_keys = (it.n_decode * it.ctx_decode + it.n_prefill * it.prompt / 2) / T if T else 0.0
    rows = _layer_op_rows(sv, layer, tokens=T, keys=0.0, tp=t, absorbed_tokens=it.n_decode if mla else 0.0,
                          index_keys=index_keys, recurrent_tokens=it.n_decode, **moe_kw)
    # attention data parallel: the slowest rank's attention sets the pace of the layer
    bal = moe_serving_data()["attention_dp_balance"] if ep > 1 and sv.spec.dp > 1 else 1.0
    out = []
    for op in rows:
        key, s = _row_s(sv, op, layer, it, routing)
        out.append((op, key, s / bal if op.name.startswith("attention/") and key != "elementwise_elems" else s))
    return out


def _layer_step(sv: _Serve, layer: LayerSpec, n_decode: float, ctx_decode: float, n_prefill: float,
                prompt: float, global_tokens: float, queries_per_seq: float = 1.0) -> dict[str, float]:
    """One layer of one iteration on one device: n_decode decode tokens (queries_per_seq per
    sequence: 1, or 1 + k when verifying k speculative drafts) at context ctx_decode plus n_prefill
    prompt tokens of prompts of length `prompt`: its op rows' times summed by class."""
    it = _Iteration(n_decode, ctx_decode, n_prefill, prompt, global_tokens, queries_per_seq)
    out = {"matmul": 0.0, "attention": 0.0, "elementwise": 0.0, "tp_comm": 0.0, "ep_comm": 0.0, "expert_matmul": 0.0}
    elems = 0.0       # element-wise rows: 16-bit elements per token, streamed in one pass below
    for _op, key, s in _layer_rows(sv, layer, it):
        if key == "elementwise_elems":
            elems += s
        else:
            out[key] += s
    T = n_decode + n_prefill
    out["elementwise"] = T * elems * ACT_BYTES / sv.ctx.mem_bytes_per_s + (KERNELS_PER_LAYER - 6) * KERNEL_TAIL_S
    return out


def _decode_row(sv: _Serve, op: ops_mod.Op, key: str, s: float, layer: LayerSpec, it: _Iteration,
                count: int) -> dict[str, Any]:
    """One row of the decode report: FLOPs and bytes as the iteration moves them."""
    T = it.n_decode
    flops, moved = op.flops, op.bytes
    if key == "elementwise_elems":
        key, moved = "elementwise", T * s * ACT_BYTES
        s = moved / sv.ctx.mem_bytes_per_s
    elif op.kind == "gemm":
        wb = ACT_BYTES if op.name == "moe/router" else sv.w_bytes
        moved = op.count * (ACT_BYTES * op.m * op.k + wb * op.k * op.n + ACT_BYTES * op.m * op.n)
    elif op.name == "ssm/scan":
        ssm, conv = counts.state_elements_layer(layer.ssm)
        moved = 2 * T / it.queries_per_seq * (ssm * 4.0 + conv * sv.kv_bytes) / sv.spec.tp
    elif op.kind == "attention":
        a = layer.attention
        c = min(it.ctx_decode, a.window) if a.window else it.ctx_decode
        dqk, dv = (a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank) if isinstance(a, LatentAttention) \
            else (op.d_qk, op.d_v)
        flops = T * 2 * op.heads * (dqk + dv) * c
        moved = T * c * _kv_elems_per_token_device(a, sv.spec.tp) * sv.kv_bytes
    return {**op.to_dict(), "flops": flops, "layers": count, "class": key, "time_s": s, "bytes_moved": moved}


def decode_ops(sv: _Serve, batch: float, ctx_decode: float) -> tuple[dict[str, Any], ...]:
    """The op rows of one pure decode iteration of `batch` sequences at context `ctx_decode` on one
    device, each timed as _layer_step times it (without two-batch overlap or pipeline
    micro-batching), with the number of layers it repeats in; then the LM head. Rotary embeddings
    are fused (0 s); the element-wise rows share the layer's kernel tails, which are left out."""
    m = sv.model
    it = _Iteration(batch, ctx_decode, 0.0, 0.0, batch * sv.spec.ep)
    rows = [_decode_row(sv, op, key, s, layer, it, count)
            for layer, count in m.layer_groups() for op, key, s in _layer_rows(sv, layer, it) if op.kind != "comm"]
    head = ops_mod.head_ops(m, tokens=batch, tp=sv.spec.tp)[0]
    t_head = _gemm(sv, head.m, head.n, head.k, weight_bytes=ACT_BYTES)
    moved = ACT_BYTES * (head.m * head.k + head.k * head.n + head.m * head.n)
    rows.append({**head.to_dict(), "layers": 1, "class": "lm_head", "time_s": t_head, "bytes_moved": moved})
    return tuple(rows)


def iteration_breakdown_s(sv: _Serve, n_decode: float, ctx_decode: float, n_prefill: float, prompt: float,
                          n_sampled: float, queries_per_seq: float = 1.0) -> dict[str, float]:
    """Time, by op class, of one engine iteration: every decoding sequence advances one token and
    n_prefill prompt tokens are processed. With pp > 1 stages, the engine splits the tokens into
    min(pp, tokens) micro-batches in flight (vLLM virtual engines, TensorRT-LLM micro-batches): an
    iteration is a round of pp micro-batch steps on the slowest stage (each step reading the stage's
    weights once), including the activations' hops between stages."""
    m = sv.model
    p = sv.spec.pp
    total = {"matmul": 0.0, "expert_matmul": 0.0, "attention": 0.0, "elementwise": 0.0, "tp_comm": 0.0,
             "ep_comm": 0.0, "lm_head": 0.0, "sampling": 0.0, "pp_comm": 0.0, "launch": 0.0}
    # min(pp, tokens) micro-batches: a round is pp stage steps either way (fewer micro-batches than
    # stages leave stages idle; a token still crosses every stage)
    micro = min(p, max(1.0, n_decode + n_prefill))
    n_decode, n_prefill, n_sampled = n_decode / micro, n_prefill / micro, n_sampled / micro
    per_stage = math.ceil(m.num_layers / p)
    tbo = sv.spec.two_batch_overlap and sv.spec.ep > 1 and n_decode + n_prefill >= 2
    # two-batch overlap (SGLang, DeepSeek): the batch runs as two halves, one half's dispatch/combine
    # under the other half's compute; each half re-reads the weights, so a layer costs
    # 2 max(compute(half), comm(half)) instead of compute(all) + comm(all)
    split = 2 if tbo else 1
    global_tokens = (n_decode + n_prefill) / split * sv.spec.ep    # tokens of the expert-parallel group
    compute_keys = ("matmul", "expert_matmul", "attention", "elementwise")
    for layer, count in m.layer_groups():
        share = count / m.num_layers * per_stage
        step = _layer_step(sv, layer, n_decode / split, ctx_decode, n_prefill / split, prompt, global_tokens,
                           queries_per_seq)
        if tbo and step["ep_comm"] > 0:
            c = sum(step[k] for k in compute_keys)
            step = {k: split * v for k, v in step.items()}
            hidden = min(step["ep_comm"], split * c)
            # exposed beyond the other half's compute; the hidden part still runs its communication
            # kernels on some of the device's compute units (DeepSeek-V3: 20 of 132 SMs)
            step["ep_comm"] = step["ep_comm"] - hidden + hidden * COMM_UNITS / (sv.hw.compute_units or 132)
        elif split > 1:
            step = {k: split * v for k, v in step.items()}
        for k, v in step.items():
            total[k] += share * v
    V, e = m.vocab_size, m.embed_dim
    total["lm_head"] = _gemm(sv, n_sampled, V / sv.spec.tp, e, weight_bytes=ACT_BYTES)
    total["sampling"] = n_sampled * V / sv.spec.tp * SAMPLING_BYTES_PER_LOGIT / sv.ctx.mem_bytes_per_s
    if p > 1:
        msg = (n_decode + n_prefill) * m.hidden_size * ACT_BYTES
        total["pp_comm"] = comm.p2p_s(msg, sv.ctx.links, False)
    engine = serving_engine(sv.spec.engine)
    if n_prefill > 0 and not engine.mixed_graphs:
        total["launch"] = per_stage * KERNELS_PER_LAYER * EAGER_LAUNCH_S
    total["launch"] += engine.host_s_per_iteration / p
    # an edge GPU drains and refills between dependent kernels: each of a layer's kernels pays it
    total["launch"] += per_stage * KERNELS_PER_LAYER * dispatch_gap_s(sv.hw.lookup_id)
    return {k: p * v for k, v in total.items()} if p > 1 else total


def _weights_per_device(sv: _Serve) -> float:
    """Weights on the most-loaded device: projections in the weights' dtype (experts / ep), the
    embedding, head and norms in 16-bit; / tp, layers / pp."""
    m, s = sv.model, sv.spec
    parts = counts.model_parts(m)
    total = 0.0
    for part in parts:
        comp = part.key.split("/")[0]
        if comp in ("embedding", "head"):
            total += part.params * ACT_BYTES / s.tp / (1 if s.pp == 1 else 2)
        elif comp == "norm":
            total += part.params * ACT_BYTES / s.pp
        elif part.key == "moe/experts":
            E = next(lay.ffn.num_experts for lay in m.layers if isinstance(lay.ffn, MoEFFN))
            slots = math.ceil(E / s.ep) * s.ep if s.eplb else E      # redundant experts under EPLB
            total += part.params * slots / E * sv.w_bytes / (s.tp * s.ep * s.pp)
        elif part.key == "moe/router":
            total += part.params * ACT_BYTES / s.pp
        else:
            total += part.params * sv.w_bytes / (s.tp * s.pp)
    return total


def draft_deployment(sv: _Serve) -> _Serve | None:
    """The draft model of speculative decoding with method draft_model, deployed on the same devices
    with the target's tp and pp (its own weights and KV cache beside the target's); None otherwise."""
    sp = sv.spec.speculative
    if sp is None or sp.method != "draft_model" or sp.draft_model is None:
        return None
    return prepare(sp.draft_model, sv.hw, replace(sv.spec, speculative=None, ep=1, eplb=False, two_batch_overlap=False))


def sglang_mem_fraction_static(cap_bytes: float, budget: int, tp: int, pp: int) -> float:
    """SGLang's default mem_fraction_static, (weights + KV pool) / memory, as its server arguments
    set it (sgl-project/sglang python/sglang/srt/server_args.py `_handle_gpu_memory_settings`):
    reserved MB = 512 + 1.5 max(chunked_prefill_size, 2048) + 2 cuda_graph_max_bs + 1024 tp pp / 8,
    at least 10 GB on parts above 60 GB, with cuda_graph_max_bs by memory size and tp (8 below
    20 GB; 24 / 80 below 35 GB; 32 / 160 below 60 GB; 256 / 512 below 160 GB, tp < 4 / tp >= 4;
    512 above). The token budget stands for chunked_prefill_size. Leaves out: DP attention and
    speculative-decoding additions, and the multimodal adjustment."""
    mem_mb = cap_bytes / units.MiB
    small_tp = tp < 4
    if mem_mb < 20 * 1024:
        graph_bs = 8
    elif mem_mb < 35 * 1024:
        graph_bs = 24 if small_tp else 80
    elif mem_mb < 60 * 1024:
        graph_bs = 32 if small_tp else 160
    elif mem_mb < 160 * 1024:
        graph_bs = 256 if small_tp else 512
    else:
        graph_bs = 512
    reserved_mb = 512 + 1.5 * max(budget, 2048) + 2 * graph_bs + 1024 * tp * pp / 8
    if mem_mb > 60 * 1024:
        reserved_mb = max(reserved_mb, 10 * 1024)
    return round((mem_mb - reserved_mb) / mem_mb, 3)


def kv_capacity_bytes(spec: InferenceSpec, cap: float, weights: float, workspace: float) -> float:
    """Bytes per device the engine gives its KV cache (catalog/frameworks.yaml `kv_memory`), from the
    device memory C, the weights W and the activation workspace A, with the runtime context R and the
    fraction f (inference.kv_memory_fraction, else the engine's default):
    total (vLLM): f C - W - A - R;  static (SGLang): f C - W;  free (TensorRT-LLM, TGI, FastGen):
    f (C - W - A - R) - reserve;  free_weights (LMDeploy): f (C - W - R). May be negative (no room)."""
    eng = serving_engine(spec.engine)
    frac = spec.kv_memory_fraction or eng.kv_frac
    match eng.kv_of:
        case "total":
            return (frac or 0.9) * cap - weights - workspace - RUNTIME_RESERVE_BYTES
        case "static":
            f = frac or sglang_mem_fraction_static(cap, spec.max_tokens_per_iteration, spec.tp, spec.pp)
            return f * cap - weights
        case "free":
            return (frac or 0.9) * (cap - weights - workspace - RUNTIME_RESERVE_BYTES) - eng.kv_reserve_bytes
        case _:
            return (frac or 0.8) * (cap - weights - RUNTIME_RESERVE_BYTES)


def usable_memory_bytes(hw: AcceleratorSpec) -> float:
    """The memory a deployment may hold on one device: the whole capacity, or on a unified-memory
    phone or laptop the share one app may use (hardware `app_memory`; the OS keeps the rest)."""
    cap = hw.hbm_capacity_bytes
    return min(cap, hw.app_memory_bytes) if hw.app_memory_bytes else cap


def memory_split(sv: _Serve) -> tuple[float, float, float, float]:
    """(weights, activation workspace, the rest the engine keeps back, bytes for the KV cache) per
    device, by the engine's accounting (kv_capacity_bytes) of the usable memory (usable_memory_bytes);
    the weights include a draft model's (speculative decoding with method draft_model)."""
    model, spec = sv.model, sv.spec
    cap = usable_memory_bytes(sv.hw)
    draft = draft_deployment(sv)
    weights = _weights_per_device(sv) + (_weights_per_device(draft) if draft is not None else 0.0)
    f_max = max((lay.ffn.d_ff if isinstance(lay.ffn, DenseFFN) else lay.ffn.expert_d_ff * lay.ffn.top_k)
                if lay.ffn is not None else 0 for lay in model.layers)
    workspace = spec.max_tokens_per_iteration * (6 * model.hidden_size + 3 * f_max / spec.tp) * ACT_BYTES
    kv = kv_capacity_bytes(spec, cap, weights, workspace)
    return weights, workspace, cap - weights - workspace - kv, kv


def kv_page_groups(sv: _Serve) -> tuple[tuple[float, int | None], ...]:
    """(bytes per cached token per device of a layer group / pp, window or None) per layer group;
    a draft model's layers (method draft_model) cache every token of a sequence too."""
    own = tuple((count * _kv_elems_per_token_device(layer.attention, sv.spec.tp) * sv.kv_bytes / sv.spec.pp,
                 layer.window) for layer, count in sv.model.layer_groups())
    draft = draft_deployment(sv)
    return own + (kv_page_groups(draft) if draft is not None else ())


def kv_bytes_per_sequence(sv: _Serve, tokens, groups: tuple[tuple[float, int | None], ...] | None = None):
    """KV-cache bytes per device of a sequence of `tokens` tokens (a number or a numpy array), in
    whole pages of block_size tokens per layer; sliding-window layers keep at most their window;
    state-mixer layers add their fixed recurrent state (state_bytes_per_device)."""
    import numpy as np

    bs = sv.spec.block_size
    groups = groups or kv_page_groups(sv)
    state = state_bytes_per_device(sv)
    if np.ndim(tokens) == 0:
        return state + float(sum(b * math.ceil((min(tokens, w) if w else tokens) / bs) * bs for b, w in groups))
    n = np.asarray(tokens, dtype=float)
    total = np.zeros_like(n) + state
    for b, w in groups:
        total += b * np.ceil((np.minimum(n, w) if w else n) / bs) * bs
    return total


def _admitted(sv: _Serve) -> tuple[tuple[float, float, float, float], float, int, int, int]:
    """(memory_split, KV bytes per sequence, the largest batch memory holds, the iteration's token
    budget, the sequences admitted) of a deployment."""
    spec = sv.spec
    I, O = spec.input_tokens, spec.output_tokens
    split = memory_split(sv)
    kv_seq = kv_bytes_per_sequence(sv, I + O)
    max_batch = max(0, int(split[3] // kv_seq)) if kv_seq > 0 else 0
    budget = admission.token_budget(spec)
    # the iteration budget must cover B decode tokens plus B I / O prompt tokens on average
    budget_batch = max(1, int(budget * O // (I + O)))
    B = admission.concurrent_sequences(spec, unlimited=min(max_batch, budget_batch))
    return split, kv_seq, max_batch, budget, B


def _steady_decode(sv: _Serve, B: int, max_batch: int) -> tuple[int, float, float]:
    """(sequences decoding, their mean context, prompt tokens per iteration) of the steady state."""
    spec = sv.spec
    I, O = spec.input_tokens, spec.output_tokens
    B_run = max(1, min(B, max(max_batch, 1)))
    # prompt tokens served from a prefix cache need no prefill compute (their KV is read back)
    prefill_per_iter = B_run * I / O * (1.0 - spec.prefix_cache_hit_frac)
    ctx_dec = I + O / 2
    if spec.pool == "decode":
        # a decode pool (disaggregated serving): prompts arrive prefilled with their KV cache
        prefill_per_iter = 0.0
    return B_run, ctx_dec, prefill_per_iter


def serving_rates(model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec,
                  memo: dict[Any, Any] | None = None) -> dict[str, float]:
    """estimate_serving's steady-state rates (output_tokens_per_s, output_tokens_per_s_per_device,
    total_tokens_per_s, input_tokens_per_s) and tpot_s, the same numbers, without the TTFT, the
    breakdowns and the op rows: what a calibration fit re-predicts under each trial profile.
    `memo`: a dict the caller keeps across calls that differ in spec.profile only; it holds what
    no calibration parameter changes (results are identical with or without it)."""
    sv = prepare(model, hw, spec, memo)
    spec = sv.spec
    if spec.pool == "prefill":
        est = estimate_serving(model, hw, spec)
        return {"output_tokens_per_s": est.output_tokens_per_s, "total_tokens_per_s": est.total_tokens_per_s,
                "input_tokens_per_s": est.input_tokens_per_s, "tpot_s": est.tpot_s,
                "output_tokens_per_s_per_device": est.output_tokens_per_s_per_device}
    I, O = spec.input_tokens, spec.output_tokens
    if memo is None:
        admitted = _admitted(sv)
    else:
        admitted = memo.get("admitted") or memo.setdefault("admitted", _admitted(sv))
    _, _, max_batch, _, B = admitted
    B_run, ctx_dec, prefill_per_iter = _steady_decode(sv, B, max_batch)
    t_iter, tpot = _decode_iteration(sv, B_run, ctx_dec, prefill_per_iter)
    out_tps = spec.dp * B_run / t_iter
    return {"output_tokens_per_s": out_tps, "total_tokens_per_s": out_tps * (I + O) / O,
            "input_tokens_per_s": out_tps * I / O, "tpot_s": tpot,
            "output_tokens_per_s_per_device": out_tps / spec.num_devices}


def estimate_serving(model: ModelSpec, hw: AcceleratorSpec, spec: InferenceSpec, *,
                     assumptions: tuple[Assumption, ...] = ()) -> ServingEstimate:
    """Capacity, latency and steady-state throughput of `spec` (validated) on `hw`."""
    sv = prepare(model, hw, spec)
    if spec.speculative is not None and spec.speculative.acceptance_length is None:
        sp = sv.spec.speculative
        assumptions = (*assumptions, Assumption("speculative.acceptance_length", round(sp.acceptance_length, 4),
                                                "predicted from published acceptance data: " + sp.acceptance_source))
    spec = sv.spec
    I, O = spec.input_tokens, spec.output_tokens
    S = I + O
    (weights, workspace, reserve, free), kv_seq, max_batch, budget, B = _admitted(sv)
    fits = max_batch >= 1 and B <= max_batch
    reason = _no_fit_reason(sv, (weights, workspace, reserve), kv_seq, max_batch, B)
    mem = {"weights": weights, "kv_cache": 0.0, "workspace": workspace, "reserve": reserve}
    if spec.pool == "prefill":
        return _prefill_pool(sv, mem, free, max_batch, budget, assumptions)
    B_run, ctx_dec, prefill_per_iter = _steady_decode(sv, B, max_batch)
    t_iter, tpot = _decode_iteration(sv, B_run, ctx_dec, prefill_per_iter)
    ttft, ttft_unloaded, pre = _ttft(sv, B_run, ctx_dec, budget)
    replicas = spec.dp
    out_tps = replicas * B_run / t_iter
    total_tps = out_tps * (I + O) / O
    full_w = hw.tdp_w or hw.power_max_w   # per device at full load: TDP, or the measured maximum
    tpj = out_tps / (full_w * spec.num_devices) if full_w else None
    dec_only = iteration_breakdown_s(sv, B_run, ctx_dec, 0, I, B_run)
    mem["kv_cache"] = B_run * kv_seq
    return ServingEstimate(
        fits=fits, infeasible_reason=reason, max_batch_size=max_batch, batch_size=B_run,
        kv_cache_bytes_per_token=counts.kv_cache_bytes_per_token(model, S, spec.kv_dtype),
        memory_breakdown_bytes=mem, ttft_s=ttft, ttft_unloaded_s=ttft_unloaded, tpot_s=tpot,
        output_tokens_per_s=out_tps, total_tokens_per_s=total_tps, input_tokens_per_s=out_tps * I / O,
        output_tokens_per_s_per_device=out_tps / spec.num_devices,
        decode_step_breakdown_s=dec_only, prefill_breakdown_s=pre, tokens_per_j=tpj, spec=spec,
        assumptions=assumptions, ops=decode_ops(sv, B_run, ctx_dec),
    )


def _no_fit_reason(sv: _Serve, fixed: tuple[float, float, float], kv_seq: float, max_batch: int,
                   batch: int) -> str | None:
    """Why the deployment does not fit (None when it does): not one sequence beside the weights,
    workspace and reserve (`fixed`, bytes per device; with the tp that would fit, if any in the
    scale-up domain), or more sequences asked than fit."""
    hw, spec = sv.hw, sv.spec
    if max_batch >= 1:
        if batch <= max_batch:
            return None
        return (f"batch_size {batch} needs {units.format_bytes(batch * kv_seq)} of KV cache per device; "
                f"only {max_batch} sequences fit")
    cap = usable_memory_bytes(hw)
    weights, workspace, reserve = fixed
    domain = max(1, hw.scale_up_domain)
    tp_needed = next((t for t in (1, 2, 4, 8, 16, 32, 64, 128) if t <= domain and
                      kv_capacity_bytes(replace(spec, tp=t), cap, weights * spec.tp / t, workspace) >= kv_seq), None)
    need = weights + workspace + reserve + kv_seq
    has = (f"an app on {hw.id} may use {units.format_bytes(cap)} of its {units.format_bytes(hw.hbm_capacity_bytes)}"
           if cap < hw.hbm_capacity_bytes else f"{hw.id} has {units.format_bytes(cap)}")
    reason = (f"needs {units.format_bytes(need)} per device for weights, workspace, reserve and one sequence's "
              f"KV cache; {has}")
    if tp_needed:
        return reason + f"; tp = {tp_needed} would fit"
    if domain == 1:
        return reason + "; it is a single device: a smaller model or a lower-precision format is needed"
    return reason + f"; no tp within the scale-up domain of {domain} fits: add pipeline stages or lower the precision"


def _prefill_pool(sv: _Serve, mem: dict[str, float], free: float, max_batch: int, budget: int,
                  assumptions: tuple[Assumption, ...]) -> ServingEstimate:
    """A prefill pool: every iteration fills the token budget with prompts and emits their first token."""
    spec, hw = sv.spec, sv.hw
    I, S = spec.input_tokens, spec.input_tokens + spec.output_tokens
    B_run = max(1, math.ceil(budget / I))
    it = iteration_breakdown_s(sv, 0, 0, budget * (1.0 - spec.prefix_cache_hit_frac), I, budget / I)
    t_iter = sum(it.values())
    in_tps = spec.dp * budget / t_iter
    out_tps = in_tps / I
    chunks = math.ceil(I / budget)
    pre = iteration_breakdown_s(sv, 0, 0, I / chunks, I, 1 / chunks)
    mem["kv_cache"] = budget * kv_bytes_per_sequence(sv, I) / max(I, 1)
    full_w = hw.tdp_w or hw.power_max_w
    return ServingEstimate(
        fits=free > mem["kv_cache"], infeasible_reason=None if free > mem["kv_cache"] else
        "the prompts of one iteration do not fit beside the weights", max_batch_size=max_batch, batch_size=B_run,
        kv_cache_bytes_per_token=counts.kv_cache_bytes_per_token(sv.model, S, spec.kv_dtype),
        memory_breakdown_bytes=mem, ttft_s=t_iter, ttft_unloaded_s=chunks * sum(pre.values()), tpot_s=t_iter,
        output_tokens_per_s=out_tps, total_tokens_per_s=in_tps + out_tps, input_tokens_per_s=in_tps,
        output_tokens_per_s_per_device=out_tps / spec.num_devices, decode_step_breakdown_s=it,
        prefill_breakdown_s=pre, tokens_per_j=out_tps / (full_w * spec.num_devices) if full_w else None,
        spec=spec, assumptions=assumptions)


def _decode_iteration(sv: _Serve, B_run: int, ctx_dec: float, prefill_per_iter: float) -> tuple[float, float]:
    """(time per output token of every sequence, one sequence's TPOT) of the steady decode
    iteration: B decode tokens (1 + k query tokens each when speculating) with the average prompt
    chunk. A sequence's TPOT counts the iterations of its decode phase, which carry the prompt
    chunks of the other B - 1 sequences (at batch 1, a pure decode step, as the simulator has it)."""
    spec = sv.spec
    I, O = spec.input_tokens, spec.output_tokens
    sp = spec.speculative
    if sp is None and not serving_engine(spec.engine).fused_prefill:
        # prefill in its own forwards (TGI): every sequence waits for the others' prompts
        t = sum(iteration_breakdown_s(sv, B_run, ctx_dec, 0, I, B_run).values()) + _unfused_prefill_s(
            sv, B_run, prefill_per_iter)
        return t, t
    if sp is None:
        it = iteration_breakdown_s(sv, B_run, ctx_dec, prefill_per_iter, I,
                                   B_run + (B_run / O if spec.pool == "both" else 0))
        mine = iteration_breakdown_s(sv, B_run, ctx_dec, prefill_per_iter * (B_run - 1) / B_run, I, B_run)
        return sum(it.values()), sum(mine.values())
    # a speculative step: draft k tokens per sequence, verify 1 + k query tokens per sequence in one
    # forward (the KV cache read once per sequence), yield acceptance_length tokens per sequence
    q = sp.query_tokens
    prefill_step = prefill_per_iter * sp.acceptance_length
    draft = _draft_time_s(sv, B_run, ctx_dec, I) + _speculative_host_s(spec.engine, sp.host_overlap)
    it = iteration_breakdown_s(sv, B_run * q, ctx_dec, prefill_step, I, B_run * q, queries_per_seq=q)
    it["draft"] = draft
    mine = iteration_breakdown_s(sv, B_run * q, ctx_dec, prefill_step * (B_run - 1) / B_run, I, B_run * q,
                                 queries_per_seq=q)
    return sum(it.values()) / sp.acceptance_length, (sum(mine.values()) + draft) / sp.acceptance_length


def speculative_step_s(sv: _Serve, n_seqs: float, ctx_decode: float, n_prefill: float, prompt: float) -> float:
    """Seconds of one speculative decode step of `n_seqs` sequences at context ctx_decode carrying
    n_prefill prompt tokens: the verify forward (1 + k query tokens per sequence, or the tree's),
    the draft and the host time the engine exposes per step; the step yields acceptance_length
    tokens per sequence (what _decode_iteration divides by; the simulator's cost, sim/cost.py)."""
    sp = sv.spec.speculative
    if sp is None:
        raise ValueError("speculative_step_s: the deployment has no speculative section")
    q = sp.query_tokens
    verify = iteration_breakdown_s(sv, n_seqs * q, ctx_decode, n_prefill, prompt, n_seqs * q, queries_per_seq=q)
    return (sum(verify.values()) + _draft_time_s(sv, n_seqs, ctx_decode, prompt)
            + _speculative_host_s(sv.spec.engine, sp.host_overlap))


def _speculative_host_s(engine: str, host_overlap: bool | None = None) -> float:
    """Host time a speculative step exposes beyond the engine's own per-iteration host time (which
    iteration_breakdown_s adds): an engine that runs speculation without overlapping its scheduler
    with the device (catalog/speculative.yaml engines) pays its whole host time per step, unless the
    scenario says the host work overlaps (inference.speculative.host_overlap: true)."""
    exposed = None if host_overlap else spec_mod.host_s_per_step(engine)
    return 0.0 if exposed is None else max(0.0, exposed - serving_engine(engine).host_s_per_iteration)


def _prefill_forward_tokens(sv: _Serve, B_run: int, prefill_per_iter: float) -> float:
    """Prompt tokens one separate prefill forward carries (TGI): what waits after the engine's
    max_waiting_steps decode steps, at least one prompt, at most the token budget (or one prompt
    longer than it)."""
    I = sv.spec.input_tokens
    waited = prefill_per_iter * max(1, serving_engine(sv.spec.engine).max_waiting_steps)
    return max(float(I), min(float(admission.token_budget(sv.spec)), waited))


def _unfused_prefill_s(sv: _Serve, B_run: int, prefill_per_iter: float) -> float:
    """Prefill time per decode step when prompts run in their own forwards: prefill_per_iter prompt
    tokens per step, batched into forwards of _prefill_forward_tokens tokens."""
    if prefill_per_iter <= 0:
        return 0.0
    I = sv.spec.input_tokens
    P = _prefill_forward_tokens(sv, B_run, prefill_per_iter)
    return prefill_per_iter / P * sum(iteration_breakdown_s(sv, 0, 0, P, I, P / I).values())


def _ttft(sv: _Serve, B_run: int, ctx_dec: float, budget: int) -> tuple[float, float, dict[str, float]]:
    """(loaded TTFT, unloaded TTFT, the unloaded prefill chunk's breakdown). Unloaded: the prompt
    alone in chunks of the budget, then the first token. Loaded: the new prompt is prefilled in
    chunks of the budget left by the B decoding sequences, each chunk sharing its iteration with a
    decode step of the whole batch."""
    I = sv.spec.input_tokens
    chunks = math.ceil(I / budget)
    pre = iteration_breakdown_s(sv, 0, 0, I / chunks, I, 1 / chunks)
    eng = serving_engine(sv.spec.engine)
    if not eng.fused_prefill:
        # a new prompt waits half the prefill interval of decode steps, then its prefill forward
        per_iter = B_run * I / sv.spec.output_tokens * (1.0 - sv.spec.prefix_cache_hit_frac)
        P = _prefill_forward_tokens(sv, B_run, per_iter)
        step = sum(iteration_breakdown_s(sv, B_run, ctx_dec, 0, I, B_run).values())
        wait_steps = min(P / max(per_iter, 1e-9), max(1, eng.max_waiting_steps)) / 2
        return wait_steps * step + sum(iteration_breakdown_s(sv, 0, 0, P, I, P / I).values()), \
            chunks * sum(pre.values()), pre
    free_budget = max(1.0, budget - B_run)
    n_chunks = math.ceil(I / free_budget)
    ttft = n_chunks * sum(iteration_breakdown_s(sv, B_run, ctx_dec, I / n_chunks, I, B_run).values())
    return ttft, chunks * sum(pre.values()), pre


def _dispatch_combine_s(sv: _Serve, tokens: float, k: int, h: int, ep: int, imb: float) -> float:
    """MoE dispatch + combine of one layer on one rank holding `tokens` tokens, each routed to k
    experts spread over `ep` ranks. Inside one scale-up domain: every remote copy over the scale-up
    links. Across domains (DeepEP normal kernels): a token crosses to each remote domain holding one
    of its experts once (expected distinct domains of k uniform picks), dispatch in the weights'
    8-bit format where the GEMMs run in it, combine in bf16; decode-sized batches pay at least
    DeepEP's measured low-latency kernel times for this EP size."""
    domain = max(1, sv.hw.scale_up_domain)
    t = sv.spec.tp
    disp_bytes = 1.0 if sv.spec.weights_dtype in ("fp8", "fp4", "int8", "int4") else ACT_BYTES
    per_elem = disp_bytes + ACT_BYTES              # dispatch + combine
    if ep * t <= domain:
        copies = tokens * k * imb * (ep - 1) / ep
        bw = copies * h * per_elem / sv.ctx.links.scale_up_bytes_per_s
        return bw + 2 * comm.call_latency_s(True)
    domains = math.ceil(ep * t / domain)
    remote = (domains - 1) * (1 - (1 - 1 / domains) ** k)
    bw = tokens * imb * remote * h * per_elem / sv.ctx.links.scale_out_bytes_per_s
    t_comm = bw + 2 * comm.call_latency_s(False)
    if tokens <= 256:
        t_comm = max(t_comm, deepep_floor_s(ep) * max(1.0, tokens / 128))
    return t_comm


def _draft_layer(sv: _Serve) -> LayerSpec:
    """The decoder layer a one-layer draft runs. mtp: the target's last layer (DeepSeek-V3's MTP
    module is a full decoder layer of the target, its MoE FFN included, arXiv 2412.19437 sec. 2.2);
    eagle / eagle2 / eagle3: a dense layer at the target's width (the EAGLE heads are one Llama
    decoder layer), for an MoE target with a dense FFN as wide as a token's active experts."""
    layer = sv.model.layers[-1]
    ffn = layer.ffn
    if sv.spec.speculative.method == "mtp" or not isinstance(ffn, MoEFFN):
        return layer
    return replace(layer, ffn=DenseFFN(d_ff=ffn.expert_d_ff * ffn.top_k + ffn.shared_d_ff, gated=ffn.gated))


def _head_s(sv: _Serve, tokens: float, vocab: float) -> float:
    """An LM head over `vocab` logits for `tokens` tokens (16-bit weights, split over tp)."""
    return _gemm(sv, tokens, vocab / sv.spec.tp, sv.model.embed_dim, weight_bytes=ACT_BYTES)


def _draft_time_s(sv: _Serve, batch: float, ctx: float, prompt: float) -> float:
    """Device time to draft for `batch` sequences in one speculative step. A tree of verify_tokens
    nodes drafts (verify_tokens - 1) / k tokens per sequence at each of its k depths (1 for a chain).
    mtp / eagle / eagle2 / eagle3: k steps of the draft layer (_draft_layer) and its LM head (EAGLE-3:
    a reduced draft vocabulary, DRAFT_VOCAB), then one extend pass of the layer over the a accepted
    tokens of every sequence (the hidden states the next draft starts from: SGLang's and vLLM's EAGLE
    workers), EAGLE-3 fusing three of the target's hidden states (3h -> h) for those tokens;
    medusa: k heads once per step on the last hidden state, each a residual h x h block and its own
    LM head (Medusa-1, arXiv 2401.10774 sec. 2.1); draft_model: k decode steps of the draft model on
    the same devices; ngram: none (the lookup runs on the host). Leaves out the draft's own prefill of
    new prompts (one layer, or the draft model's: a few % of the target's)."""
    sp = sv.spec.speculative
    k, m = sp.num_draft_tokens, sv.model
    width = batch * (sp.query_tokens - 1) / k
    match sp.method:
        case "ngram":
            return 0.0
        case "draft_model":
            dsv = draft_deployment(sv)
            assert dsv is not None                  # the spec parser requires a draft model for this method
            return k * sum(iteration_breakdown_s(dsv, width, ctx, 0.0, prompt, width).values())
        case "medusa":
            h = m.hidden_size
            return k * (_gemm(sv, batch, h, h) + _head_s(sv, batch, m.vocab_size))
    layer = _draft_layer(sv)
    vocab = DRAFT_VOCAB.get(sp.method, m.vocab_size)
    ep_tokens = sv.spec.ep
    step = sum(_layer_step(sv, layer, width, ctx, 0.0, prompt, width * ep_tokens).values()) + _head_s(sv, width, vocab)
    accepted = batch * (sp.acceptance_length or 1.0)
    extend = sum(_layer_step(sv, layer, accepted, ctx, 0.0, prompt, accepted * ep_tokens,
                             queries_per_seq=sp.acceptance_length or 1.0).values())
    if sp.method == "eagle3":
        extend += _gemm(sv, accepted, m.hidden_size, 3 * m.hidden_size)
    return k * step + extend
