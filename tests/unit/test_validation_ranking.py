"""`flopcast validate ranking`: groups of measured plans of one job, and the two ranking figures."""

import json
import subprocess
import sys

import pytest

from flopcast.errors import InvalidScenario
from flopcast.validation import ranking
from flopcast.validation.commands import validate


def test_score_group_top_plan_within_gap():
    """The predicted-fastest plan counts as right when it is measured within 5% of the measured best,
    even if it is not the measured best itself."""
    s = ranking.score_group([("a", 100.0, 10.0), ("b", 103.0, 9.0), ("c", 120.0, 11.0)])
    assert s["measured_best"] == "a" and s["predicted_best"] == "b"
    assert s["top_ok"] and s["predicted_best_gap_frac"] == pytest.approx(0.03)
    s = ranking.score_group([("a", 100.0, 10.0), ("b", 106.0, 9.0)])
    assert not s["top_ok"]


def test_score_group_decided_only_with_a_plan_over_gap():
    """A group decides the top plan only when some plan is measured more than 5% slower than the
    best; otherwise every prediction counts as right, and the summary reports the top-plan share
    over the deciding groups apart."""
    close = ranking.score_group([("a", 100.0, 10.0), ("b", 104.0, 9.0)])
    assert close["top_ok"] and not close["decided"]
    wide = ranking.score_group([("a", 100.0, 10.0), ("b", 110.0, 9.0)])
    assert not wide["top_ok"] and wide["decided"]
    groups = [{**close, "family": "x", "plans": [{}, {}]}, {**wide, "family": "x", "plans": [{}, {}]}]
    s = ranking.summary(groups)
    assert (s["num_top_ok"], s["num_groups"]) == (1, 2)
    assert (s["num_top_ok_decided"], s["num_groups_decided"], s["top_plan_frac_decided"]) == (0, 1, 0.0)


def test_score_group_pairs_only_over_gap():
    """Only pairs whose measured step times differ by more than 5% are scored; a pair counts right
    when the prediction orders it as measured."""
    s = ranking.score_group([("a", 100.0, 10.0), ("b", 104.0, 12.0), ("c", 120.0, 11.0), ("d", 130.0, 9.0)])
    # scored pairs: a-c, a-d, b-c, b-d, c-d (a-b is within 5%)
    assert s["num_pairs"] == 5
    # right: a-c (10<11), b-c? 12<11 no, a-d? 10<9 no, b-d no, c-d? 11<9 no
    assert s["num_pairs_right"] == 1


def test_groups_file_meets_the_collection_floor():
    """The shipped set: >= 12 groups, >= 50 plans, >= 4 source families, each group with a source and
    at least two plans (issue 21's floor)."""
    groups = ranking.load_groups()
    sizes = [len(g.get("rows", ())) + len(g.get("plans", ())) for g in groups]
    assert len(groups) >= 12 and sum(sizes) >= 50 and min(sizes) >= 2
    assert len({g["family"] for g in groups}) >= 4
    assert all(g["source"] for g in groups)
    assert len({g["id"] for g in groups}) == len(groups)


def test_validate_ranking_reports_every_group():
    """Every group is predicted (none skipped), each plan has a positive measured and predicted step
    time, and the summary figures are the counts they are computed from."""
    d = validate("ranking")
    assert d["skipped"] == [] and d["num_groups"] == len(ranking.load_groups())
    assert all(p["measured_step_s"] > 0 and p["predicted_step_s"] > 0 for g in d["groups"] for p in g["plans"])
    assert d["top_plan_frac"] == d["num_top_ok"] / d["num_groups"]
    assert d["top_plan_frac_decided"] == d["num_top_ok_decided"] / d["num_groups_decided"]
    assert d["pairwise_frac"] == d["num_pairs_right"] / d["num_pairs"]


def test_validate_ranking_refuses_cv():
    """--cv and --baseline are training / inference options: refused for ranking in one line."""
    with pytest.raises(InvalidScenario, match="ranking"):
        validate("ranking", cv=True)


def test_cli_validate_ranking_json():
    """The CLI's `validate ranking --json` prints the same object as the API."""
    out = subprocess.run([sys.executable, "-m", "flopcast.cli", "validate", "ranking", "--json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    assert d["kind"] == "ranking" and d["num_groups"] >= 12
