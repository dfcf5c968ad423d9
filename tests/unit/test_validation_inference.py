"""Accuracy guards for serving (issue 10), as for training. Figures when written (`flopcast validate
inference --cv source --baseline`): 23 rows from 3 source families (12 trtllm-bench dense rows; 10 SGLang
rows: DeepSeek-V3 / Kimi K2 prefill and decode pools with attention-DP + EP on H100, H200, GB200, MTP,
and MI300X TP8; DeepSeek's production decode unit); in-sample median 6.7%; leave-one-source-out
median 8.9%, max 55%."""

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
    assert report["num_rows"] >= 23
    assert report["median_abs_error_frac"] <= 0.067 + MARGIN
    assert report["cv_median_abs_error_frac"] <= 0.089 + MARGIN
    fp4 = [r for r in report["rows"] if r["hardware"] in ("b200", "gb200") and r["id"].startswith("TRT-")]
    assert fp4 and all(abs(r["error_frac"]) <= 0.20 for r in fp4)


def test_beats_the_one_parameter_baseline_by_a_third(report):
    assert report["cv_median_abs_error_frac"] <= (2 / 3) * report["baseline_cv_median_abs_error_frac"]


@pytest.mark.xfail(strict=True, reason="issue 10 target: >= 35 serving rows (23 usable today; the other "
                                       "published rows lack input lengths or batch sizes)")
def test_cv_target(report):
    """Issue 10: leave-one-source-out median <= 15% over >= 35 serving rows."""
    assert report["num_rows"] >= 35 and report["cv_median_abs_error_frac"] <= 0.15
