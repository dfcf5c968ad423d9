"""The per-op roofline (estimate/roofline.py) against measured GEMM tables."""

from __future__ import annotations

import math

import pytest

from flopcast import catalog
from flopcast.estimate import comm, roofline
from flopcast.estimate.efficiency import efficiency


def test_gemm_curve_constants_are_the_fit():
    """efficiency.yaml's fill_k and split-K partial bytes are what fit_gemm_shape derives from XLA's
    measured H100 table (re-derived here, so an edit of either cannot drift silently)."""
    assert roofline.fit_gemm_shape() == (roofline.GEMM_FILL_K, roofline.SPLITK_PARTIAL_BYTES)


def test_gemm_curve_matches_the_measured_table():
    """Every shape of XLA's H100 BF16 table (4096^3 .. 1024^3, K = 256, M = 256) within 17%; RMS of
    the log error under 10% (24% with the curve before the fit)."""
    errs = roofline.gemm_table_error(roofline.GEMM_FILL_K, roofline.SPLITK_PARTIAL_BYTES)
    assert max(abs(math.expm1(e)) for e in errs) <= 0.17
    assert math.sqrt(sum(e * e for e in errs) / len(errs)) <= 0.10


def _ctx(hw_id="h100-sxm"):
    hw = catalog.get_hardware(hw_id)
    eff = efficiency(hw_id, "bf16")
    return roofline.DeviceCtx(hw=hw, eff=eff, peak_flops_per_s=hw.peak_flops_per_s["bf16"],
                              attn_peak_flops_per_s=hw.peak_flops_per_s["bf16"],
                              mem_bytes_per_s=hw.hbm_bandwidth_bytes_per_s * eff.memory_frac,
                              links=comm.Links(1e11, 5e10, 8), tp_inside=True)


def test_gemm_is_capped_at_the_measured_best_shape():
    """No shape runs faster than the mamf-finder best-shape fraction of the peak."""
    ctx = _ctx()
    for shape in ((2048, 2048, 13312), (16384, 16384, 16384), (8192, 28672, 8192)):
        assert roofline.matmul_fraction(ctx, *shape, 1) <= ctx.eff.matmul_frac + 1e-12


def test_decode_gemm_is_memory_bound():
    """A batch-8 GEMM against an 8192 x 8192 bf16 weight streams the weight: its time is within 10%
    of weight bytes / achieved bandwidth (plus the kernel tail)."""
    ctx = _ctx()
    t = roofline.gemm_time_s(ctx, 8, 8192, 8192)
    floor = 2 * 8192 * 8192 / ctx.mem_bytes_per_s
    assert floor < t < 1.1 * floor + roofline.KERNEL_TAIL_S


@pytest.mark.parametrize("hw_id", ["a100-sxm-80gb", "h100-sxm", "b200"])
def test_bigger_gemms_are_not_less_efficient(hw_id):
    """Doubling every dimension of a square GEMM never lowers its achieved fraction (1024 .. 8192)."""
    ctx = _ctx(hw_id)
    fr = [roofline.matmul_fraction(ctx, s, s, s, 1) for s in (1024, 2048, 4096, 8192)]
    assert all(b >= a - 1e-12 for a, b in zip(fr, fr[1:], strict=False))
