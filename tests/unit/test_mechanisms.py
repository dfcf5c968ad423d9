"""Issue 22 mechanisms in place of calibrated multipliers: grouped-GEMM cost per group (DeepGEMM),
weight streaming by format and decode-attention kernels (Blackwell), each a curve in
catalog/efficiency.yaml with its source."""

from __future__ import annotations

import pytest

from flopcast import catalog
from flopcast.estimate import ops, roofline, serving
from flopcast.estimate.efficiency import (
    _table,
    decode_attention_frac,
    grouped_gemm_frac,
    weight_streaming_frac,
)
from flopcast.specs.scenario import resolve


def _serve(hardware: str, weights: str):
    rs = resolve({"model": "llama-3.1-8b", "hardware": hardware, "cluster": {"num_devices": 1},
                  "inference": {"tp": 1, "weights_dtype": weights, "batch_size": 8, "input_tokens": 128,
                                "output_tokens": 128}})
    return serving.prepare(rs.model, rs.hardware, rs.inference)


def test_group_m0_is_what_the_deepgemm_table_gives():
    """group_m0 in efficiency.yaml is the least-squares fit of m / (m + m0) to DeepGEMM's grouped
    GEMM table relative to the model's own GEMMs (roofline.fit_grouped_gemm), re-derived here."""
    assert roofline.fit_grouped_gemm() == float(_table()["grouped_gemm"]["group_m0"])


def test_grouping_costs_little_at_thousands_of_tokens_and_much_at_tens():
    """Per-group cost m / (m + m0), m0 = 36: within 1% of a dense GEMM at 4096 tokens per group, about
    12% below it at 256 (DeepGEMM: 0.78-1.0), 128 / 164 at 128; none below 128 tokens per group,
    outside the measured range, where the skinny kernels' row padding already costs the group."""
    assert grouped_gemm_frac(4096) == pytest.approx(1.0, abs=0.01)
    assert grouped_gemm_frac(256) == pytest.approx(256 / 292)
    assert grouped_gemm_frac(128) == pytest.approx(128 / 164)
    assert grouped_gemm_frac(36) == 1.0


def test_expert_gemm_rows_are_grouped_and_the_others_are_not():
    """ffn_ops marks the two expert GEMMs of a MoE block as grouped; the router and shared experts
    are ordinary GEMMs."""
    m = catalog.get_model("qwen3-30b-a3b")
    moe = next(layer.ffn for layer in m.layers if layer.ffn is not None)
    rows = ops.ffn_ops(moe, m.hidden_size, tokens=4096, ep=8)
    assert {r.name for r in rows if r.grouped} == {"moe/experts_up", "moe/experts_down"}


def test_grouped_rows_time_slower_in_training_by_the_group_factor():
    """A compute-bound GEMM at rate_frac f takes 1/f of its time at full rate (plus the same tail)."""
    ctx = roofline.DeviceCtx(hw=catalog.get_hardware("h100-sxm"), eff=_eff(), peak_flops_per_s=989e12,
                             attn_peak_flops_per_s=989e12, mem_bytes_per_s=3e12, links=None,  # type: ignore[arg-type]
                             tp_inside=True)
    full = roofline.gemm_time_s(ctx, 4096, 4096, 4096) - roofline.KERNEL_TAIL_S
    half = roofline.gemm_time_s(ctx, 4096, 4096, 4096, rate_frac=0.5) - roofline.KERNEL_TAIL_S
    assert half == pytest.approx(2 * full)


def _eff():
    from flopcast.estimate.efficiency import efficiency

    return efficiency("h100-sxm", "bf16")


def test_blackwell_fp4_weights_stream_at_the_measured_fraction():
    """B200 NVFP4: skinny GEMMs stream weights at 0.44 of HBM (CUTLASS #2266), i.e. 0.44 / 0.88 of the
    streaming rate; decode attention reads the KV cache at 0.67 (FlashInfer #1415). H100 bf16 has no
    measured entry: both stay at the streaming rate."""
    sv = _serve("b200", "fp4")
    assert weight_streaming_frac("b200", "fp4") == 0.44
    assert sv.weight_stream_bytes_per_s == pytest.approx(sv.ctx.mem_bytes_per_s * 0.44 / 0.88)
    assert sv.kv_read_bytes_per_s == pytest.approx(sv.ctx.mem_bytes_per_s * 0.67 / 0.88)
    h = _serve("h100-sxm", "bf16")
    assert h.weight_stream_bytes_per_s is None and h.kv_read_bytes_per_s is None
    assert decode_attention_frac("h100-sxm") is None


def test_only_skinny_gemms_stream_at_the_weight_fraction():
    """A batch-8 GEMM against fp4 weights is a weight read at the weight-streaming rate; a 4096-row GEMM
    of the same weights is timed as before (compute-bound, the streaming rate)."""
    sv = _serve("b200", "fp4")
    n = k = 8192
    small = serving._gemm(sv, 8, n, k)
    assert small >= n * k * sv.w_bytes / sv.weight_stream_bytes_per_s
    big = serving._gemm(sv, 4096, n, k)
    no_stream = serving._gemm(serving.replace(sv, weight_stream_bytes_per_s=None), 4096, n, k)
    assert big == pytest.approx(no_stream)
