"""Accuracy guards for serving (issue 10), as for training. Figures when written (`flopcast validate
inference --cv source --baseline`): 62 rows from 3 source families (51 trtllm-bench rows of NVIDIA's
perf-overview table: Llama 3.1 8B / 3.3 70B / 3.1 405B dense and Qwen3 235B / 30B MoE on H100, H200,
B200, GB200 in FP8 and NVFP4; 10 SGLang rows: DeepSeek-V3 / Kimi K2 prefill and decode pools with
attention-DP + EP on H100, H200, GB200, MTP, MI300X TP8; DeepSeek's production decode unit);
in-sample median 5.8%; leave-one-source-out median 10.7%, max 153% (Qwen3-30B on one GB200)."""

from __future__ import annotations

import pytest

from flopcast import api

MARGIN = 0.015


@pytest.fixture(scope="module")
def report():
    return api.validate("inference", cv=True, baseline=True)


def test_no_regression(report):
    """Rows and medians stay at least as good as when written; the NVFP4 rows (measured NVFP4 GEMM
    efficiency plus the activation-quantization pass) stay within 20%."""
    assert report["num_rows"] >= 62 and report["num_sources"] >= 3
    assert report["median_abs_error_frac"] <= 0.058 + MARGIN
    assert report["cv_median_abs_error_frac"] <= 0.107 + MARGIN
    fp4 = [r for r in report["rows"] if r["hardware"] in ("b200", "gb200") and r["id"].startswith("TRT-L33-70B")]
    assert fp4 and all(abs(r["error_frac"]) <= 0.20 for r in fp4)


def test_beats_the_one_parameter_baseline_by_a_third(report):
    assert report["cv_median_abs_error_frac"] <= (2 / 3) * report["baseline_cv_median_abs_error_frac"]


def test_cv_target(report):
    """Issue 10: leave-one-source-out median <= 15% over >= 35 serving rows."""
    assert report["num_rows"] >= 35 and report["cv_median_abs_error_frac"] <= 0.15


def test_by_class_covers_the_published_rows(report):
    """Issue 22: `validate inference --cv source` reports by class, batch-1 latency rows apart from
    throughput rows; dense + moe and latency + throughput each partition the rows."""
    bc = report["by_class"]
    for name in ("dense", "moe", "hopper", "blackwell", "cdna", "bf16", "fp8", "fp4", "batch1-latency", "throughput"):
        keys = {"num_rows", "cv_median_abs_error_frac", "cv_max_abs_error_frac", "cv_signed_mean_error_frac"}
        assert keys <= set(bc[name])
    assert bc["dense"]["num_rows"] + bc["moe"]["num_rows"] == report["num_rows"]
    assert bc["batch1-latency"]["num_rows"] + bc["throughput"]["num_rows"] == report["num_rows"]
    assert bc["batch1-latency"]["num_rows"] >= 2


def test_throughputs_are_rates_not_times():
    """Case.is_time: step_time_s and tpot_s are times (a baseline scales them as 1 / eta); every
    `*_per_s` throughput is a rate (it scales as eta). Issue 22: every `*_per_s` counted as a time."""
    from flopcast.validation import fit

    def case(q):
        return fit.Case(id="x", source="s", model="m", hardware="h", quantity=q, measured=1.0, params=(),
                        predict=lambda p: 1.0)

    assert case("step_time_s").is_time and case("tpot_s").is_time
    assert not any(case(q).is_time for q in ("output_tokens_per_s", "input_tokens_per_s", "total_tokens_per_s",
                                             "output_tokens_per_s_per_device"))


def test_decode_pool_baseline_is_not_charged_prefill():
    """The roofline baseline of a decode pool leaves out its prompts' prefill FLOPs (they ran in the
    prefill pool): with long prompts and short outputs it is compute-bound only when charged them, so
    the decode pool's baseline rate is higher than the same deployment serving both phases."""
    from flopcast.validation.inference import _serving_case

    def baseline(pool):
        sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
              "inference": {"tp": 1, "batch_size": 64, "input_tokens": 8192, "output_tokens": 64, "pool": pool}}
        return _serving_case("x", "s", "m", sc, "output_tokens_per_s", 1000.0).baseline

    assert baseline("decode") > 3 * baseline("both")


def test_baseline_is_a_fair_roofline(report):
    """The fitted baseline efficiency is a physical fraction of the roofline (0.1..1), and the
    cross-validated baseline is within 2x of its in-sample figure (the broken one was 810% off)."""
    assert 0.1 <= report["baseline_efficiency"] <= 1.0
    assert report["baseline_cv_median_abs_error_frac"] <= 2 * report["baseline_median_abs_error_frac"]
