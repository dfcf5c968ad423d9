"""The by-class figures of `flopcast validate` and leave-one-hardware-generation-out (issue 22)."""

from __future__ import annotations

import statistics

import pytest

from flopcast.errors import InvalidScenario
from flopcast.validation import fit


def _cases(theta: float = 0.8) -> list[fit.Case]:
    """Synthetic runs on two generations whose time is t0 / (compute.<gen> x stack.x), hidden multipliers."""
    out = []
    for i in range(8):
        gen = "hopper" if i % 2 else "ampere"
        t0 = 1.0 + i
        out.append(fit.Case(id=f"r{i}", source=f"s{i % 4}", model="m", hardware="h", quantity="step_time_s",
                            measured=t0 / theta, params=("stack.x",), generation=gen,
                            classes=("moe" if i < 2 else "dense", gen, "bf16", "other-stacks"),
                            predict=lambda p, t0=t0: t0 / p.get("stack.x")))
    return out


def test_by_class_figures_are_the_rows_figures():
    """Each class reports its row count, median and max |error| and signed mean over exactly its rows;
    every listed class appears (no rows: num_rows 0, figures None)."""
    cases = _cases()
    errors = {c.id: e for c, e in zip(cases, (0.1, -0.3, 0.05, -0.02, 0.2, 0.0, -0.1, 0.4), strict=True)}
    got = fit.by_class(cases, "training", errors, errors)
    assert set(fit.CLASSES["training"]) <= set(got)
    moe = got["moe"]
    assert moe["num_rows"] == 2
    assert moe["cv_median_abs_error_frac"] == pytest.approx(0.2)
    assert moe["cv_max_abs_error_frac"] == pytest.approx(0.3)
    assert moe["cv_signed_mean_error_frac"] == pytest.approx(-0.1)
    dense = [errors[c.id] for c in cases[2:]]
    assert got["dense"]["median_abs_error_frac"] == pytest.approx(statistics.median(abs(e) for e in dense))
    assert got["blackwell"] == {"num_rows": 0, "median_abs_error_frac": None, "max_abs_error_frac": None,
                                "signed_mean_error_frac": None, "cv_median_abs_error_frac": None,
                                "cv_max_abs_error_frac": None, "cv_signed_mean_error_frac": None}


def test_leave_one_generation_out_fits_once_per_generation():
    """--cv generation: each hardware generation is predicted by a fit on the others (one fit per
    generation); a shared multiplier is recovered from the other generation, so the error is small."""
    seen: list[str] = []
    cv = fit.cross_validate(_cases(), "training", by="generation", progress=seen.append)
    assert seen == ["ampere", "hopper"]
    assert len(cv) == 8 and max(abs(e) for e in cv.values()) < 0.03


def test_report_names_its_cv_method_and_classes():
    """The report states the cross-validation method, the number of groups left out in turn and the
    by-class figures; an unknown method is a one-line InvalidScenario."""
    from flopcast.estimate.calibration import Profile

    rep = fit.report(_cases(), "training", Profile("training"), cv="generation", baseline=True)
    assert rep["cv_method"] == "generation" and rep["num_cv_groups"] == 2 and rep["num_sources"] == 4
    assert rep["by_class"]["dense"]["num_rows"] == 6 and rep["by_class"]["ampere"]["num_rows"] == 4
    assert "cv_signed_mean_error_frac" in rep
    with pytest.raises(InvalidScenario, match="accepted: source, generation"):
        fit.report(_cases(), "training", Profile("training"), cv="family")


def test_every_validation_row_has_a_first_seen_entry():
    """Issue 22: every row of the built-in validation sets is in validation/first_seen.csv, with its
    error under the code before it was added or `unknown` (never blank), so a new row must be logged
    (`python -m flopcast.validation.first_seen --add ID` before the model changes for it)."""
    from flopcast.validation import first_seen, runs

    log = first_seen.load()
    for kind in ("training", "inference"):
        for case in runs.builtin(kind)[0]:
            assert case.id in log, f"{case.id}: no first-seen entry"
            e = log[case.id]
            assert e["kind"] == kind and e["quantity"] == case.quantity
            assert e["error_frac"] == "unknown" or abs(float(e["error_frac"])) < 100, case.id
            if e["error_frac"] == "unknown":
                assert e["note"], f"{case.id}: unknown without a reason"
            else:
                p, m = float(e["predicted"]), float(e["measured"])
                assert float(e["error_frac"]) == pytest.approx((p - m) / m, rel=1e-4, abs=1e-6)


def test_prospective_figures():
    """The prospective figures count logged rows, known errors, and the median / signed mean of those."""
    from flopcast.validation import first_seen

    log = {"a": {"error_frac": "0.1"}, "b": {"error_frac": "-0.3"}, "c": {"error_frac": "unknown"}}
    got = first_seen.prospective(["a", "b", "c", "d"], log)
    assert got == {"num_logged": 3, "num_known": 2, "median_abs_error_frac": pytest.approx(0.2),
                   "signed_mean_error_frac": pytest.approx(-0.1)}


def test_unfitted_rows_are_validated_not_fitted():
    """A case marked fitted=False (validated only) leaves every fit unchanged but is still predicted
    and cross-validated."""
    from dataclasses import replace

    cases = _cases()
    outlier = replace(cases[0], id="held", measured=cases[0].measured * 3, fitted=False)
    p0, _ = fit.fit(cases, "training")
    p1, _ = fit.fit([*cases, outlier], "training")
    assert p1.get("stack.x") == p0.get("stack.x")
    assert "held" in fit.cross_validate([*cases, outlier], "training")
