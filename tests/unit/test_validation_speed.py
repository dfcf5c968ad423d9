"""The calibration fit's fast prediction paths (issue 24): each validation row re-predicted under a
trial profile through the step time / rates alone must give exactly the figure of the full estimate."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flopcast.estimate.calibration import Profile, shipped
from flopcast.validation import runs


def _perturbed(kind: str) -> Profile:
    """The shipped profile with every parameter a row names moved off its value (and off 1.0)."""
    base = shipped(kind)
    cases, _ = runs.builtin(kind)
    names = sorted({p for c in cases for p in c.params})
    return base.with_params({n: round(base.get(n) * (1.07 if i % 2 else 0.93), 6) for i, n in enumerate(names)})


@pytest.mark.parametrize("kind", ["training", "inference"])
def test_fast_prediction_equals_full_estimate(kind):
    """Rule: a Case's predict(profile) (validation/training.py step_time_s, validation/inference.py
    serving_rates) equals, to the bit, the figure of the full estimate (estimate_training's
    step_time_s, estimate_serving's metric) under the uncalibrated, the shipped and a perturbed
    profile, for every built-in row."""
    from flopcast.estimate.serving import estimate_serving
    from flopcast.estimate.training import estimate_training
    from flopcast.run.training import training_inputs
    from flopcast.specs.scenario import resolve

    cases, _ = runs.builtin(kind)
    assert cases
    for profile in (Profile(kind), shipped(kind), _perturbed(kind)):
        for c in cases:
            rs = resolve(c.scenario)
            if kind == "training":
                train, plan = training_inputs(rs)
                full = estimate_training(rs.model, rs.hardware, plan, replace(train, profile=profile),
                                         devices_per_node=rs.cluster.devices_per_node,
                                         scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s
                                         ).step_time_s
            else:
                est = estimate_serving(rs.model, rs.hardware, replace(rs.inference, profile=profile))
                full = getattr(est, c.quantity)
            assert c.predict(profile) == full, (c.id, profile.params)
