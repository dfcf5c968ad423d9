"""Accuracy guards for training (issue 10): every figure may not get worse than the one measured when
it was written by more than the stated margin, and the issue's targets are asserted (strict xfail
while unmet, so meeting one turns the test red until the marker goes).

Figures when written (`flopcast validate training --cv source --baseline`): 81 rows from 11 source
families; in-sample median 4.7%; leave-one-source-out median 9.3%; one-parameter baseline
leave-one-source-out median 21.0%. Margin: 1.5 percentage points (fit noise across numpy builds is
far below that; the figures are deterministic)."""

from __future__ import annotations

import pytest

from flopcast import api
from flopcast.validation import training as vt

MARGIN = 0.015


@pytest.fixture(scope="module")
def report():
    return api.validate("training", cv=True, baseline=True)


def test_measured_step_time_of_a_megatron_tflops_row():
    """A Megatron SC'21 "TFLOP/s per GPU" converts to a step time with that paper's eq. 3 FLOP count
    (which counts the recomputed forward): F / (TFLOP/s x GPUs)."""
    row = next(r for r in vt.load_rows() if r["id"] == "MEG-SC21-01")
    case = vt.row_to_case(row)
    F = vt.megatron_eq3_flops(512, 2048, 24, 2304, 51200)
    assert vt.measured_step_s(case, row, model_flops_per_step=0.0) == pytest.approx(F / (137e12 * 32), rel=1e-12)


def test_harness_uses_the_korthikanti_rows(report):
    """All 8 KORTH-E2E rows are compared against their measured step times."""
    korth = {r["id"]: r["measured"] for r in report["rows"] if r["id"].startswith("KORTH-E2E")}
    assert sorted(korth.values()) == sorted([1.42, 1.10, 18.13, 13.75, 49.05, 37.83, 94.42, 71.49])


def test_more_runs_rows_are_used(report):
    """The torchtitan, NeMo AutoModel, Megatron-Core GB200 and MLPerf rows of more_runs.csv are
    predicted, each in its own source family; rows that cannot be written say why."""
    sources = {r["source"] for r in report["rows"]}
    assert {"torchtitan", "nemo-automodel", "megatron-core-gb200-2025", "mlperf-training-5.1"} <= sources
    assert all(s["why"] for s in report["skipped"])


def test_no_regression(report):
    """Rows, in-sample and cross-validated medians stay at least as good as when written."""
    assert report["num_rows"] >= 89
    assert report["num_sources"] >= 12
    assert report["median_abs_error_frac"] <= 0.050 + MARGIN
    assert report["cv_median_abs_error_frac"] <= 0.098 + MARGIN


def test_beats_the_one_parameter_baseline_by_a_third(report):
    """Cross-validated, flopcast's median error is at most 2/3 of the one-efficiency baseline's."""
    assert report["cv_median_abs_error_frac"] <= (2 / 3) * report["baseline_cv_median_abs_error_frac"]


def test_cv_target(report):
    """Issue 10: leave-one-source-out median <= 12% over >= 80 training rows."""
    assert report["num_rows"] >= 80 and report["cv_median_abs_error_frac"] <= 0.12


def test_korthikanti_goal(report):
    """Korthikanti's 8 end-to-end runs under the shipped profile: mean |error| <= 3% (1.6% when
    written, max 3.3%); cross-validated (their family left out of the fit) mean <= 5% (3.5% when written)."""
    errs = [abs(r["error_frac"]) for r in report["rows"] if r["id"].startswith("KORTH-E2E")]
    cv = [abs(r["cv_error_frac"]) for r in report["rows"] if r["id"].startswith("KORTH-E2E")]
    assert sum(errs) / len(errs) <= 0.03
    assert sum(cv) / len(cv) <= 0.05


def test_by_class_covers_the_published_rows(report):
    """Issue 22: `validate training --cv source` reports by class (dense / moe, each generation, each
    precision, megatron-family / other stacks); dense + moe and megatron + other each partition the rows."""
    bc = report["by_class"]
    for name in ("dense", "moe", "ampere", "hopper", "blackwell", "tpu", "cdna", "bf16", "fp8", "fp4",
                 "megatron-family", "other-stacks"):
        keys = {"num_rows", "cv_median_abs_error_frac", "cv_max_abs_error_frac", "cv_signed_mean_error_frac"}
        assert keys <= set(bc[name])
    assert bc["dense"]["num_rows"] + bc["moe"]["num_rows"] == report["num_rows"]
    assert bc["megatron-family"]["num_rows"] + bc["other-stacks"]["num_rows"] == report["num_rows"]
    assert bc["moe"]["num_rows"] >= 10 and bc["blackwell"]["num_rows"] >= 4


def test_moe_rows_are_written_as_their_sources_ran_them():
    """Issue 22: a Megatron-Bridge MoE row whose notes say the benchmark force-balances routing is
    written with moe_routing forced_balance (a dense row with the same note is not touched), and the
    DeepSeek-V3 H100 row takes ETP 1 and node-limited routing (4 nodes) from the recipe it ran."""
    rows = {r["id"]: r for r in vt.load_rows()}
    dsv3 = vt.row_to_case(rows["MB-2509-H100-DSV3"]).scenario
    assert dsv3["training"]["moe_routing"] == "forced_balance"
    assert dsv3["parallel"]["etp"] == 1 and dsv3["training"]["moe_max_nodes_per_token"] == 4
    assert vt.row_to_case(rows["MB-2511-H100-GPTOSS"]).scenario["training"]["moe_routing"] == "forced_balance"
    assert "moe_routing" not in vt.row_to_case(rows["MB-2509-H100-L8"]).scenario["training"]


def test_moe_benchmark_rows_of_the_moe_model_zoo_are_a_source_family(report):
    """Issue 22: the Megatron-MoE-ModelZoo Qwen3 rows are validated as their own source family, and
    every one of them was logged first-seen."""
    from flopcast.validation import first_seen

    ids = {r["id"] for r in report["rows"] if r["source"] == "moezoo"}
    assert len(ids) >= 5
    assert ids <= set(first_seen.load())
