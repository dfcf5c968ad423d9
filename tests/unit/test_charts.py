"""The briefing is consistent: charts draw shares on linear axes (issue 20: a 1.8% part was drawn 70%
as long as a 66.5% part on a log axis), and the verdict never says "works" beside a problem."""

import pytest

pytest.importorskip("matplotlib")

from flopcast.report.mpl import step_time_chart  # noqa: E402


def test_step_time_bars_are_proportional_to_their_parts():
    """Each bar's length over the longest bar's equals its time over the longest part's time, on a
    linear axis that starts at zero."""
    d = {"training": {"step_time_s": 10.0, "compute_breakdown_s": {"gemm": 6.65, "attention": 0.18},
                      "step_time_breakdown_s": {"compute": 6.83, "bubble": 3.0, "dp_comm": 0.17}}}
    fig = step_time_chart(d)
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([6.65, 0.18, 3.0, 0.17])
    assert min(widths) / max(widths) == pytest.approx(0.17 / 6.65)


def test_a_plan_with_nothing_to_plan_never_says_it_works():
    """Without a training or inference section the headline says there is nothing to plan, and
    weights that need more devices than the cluster has are a problem (issue 20: the fleet example
    said "fits and works as planned" and then that the weights need 16 GPUs)."""
    from flopcast import api
    from flopcast.report.briefing import headline, verdict

    small = api.plan({"model": "deepseek-v3", "hardware": "h800-sxm", "cluster": {"num_devices": 8}}).to_dict()
    assert "works as planned" not in headline(small)
    assert "weights alone do not fit" in headline(small)
    assert verdict(small)[0].label == "weights" and verdict(small)[0].ok is False
    enough = api.plan({"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8}}).to_dict()
    assert headline(enough).endswith("nothing to plan (no training or inference section).")
    assert verdict(enough)[0].ok is None
