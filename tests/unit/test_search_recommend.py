"""The search recommends what holds (issue 21): ties within the estimator's error band ordered by
fewer little-validated mechanisms, then memory headroom, then fewer mechanisms; marginal plans (within
the memory band of capacity) after those with headroom; every plan's `parallel` reproduces it; `plan`
and `search` name the same best plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flopcast import api
from flopcast.estimate.calibration import resolve_profile
from flopcast.estimate.training.bands import MEMORY_BAND_FRAC, TIME_BAND_FRAC
from flopcast.search import recommend_order
from flopcast.search.evidence import MIN_VALIDATION_ROWS, VALIDATION_ROWS, little_validated, mechanisms
from flopcast.specs.parallel import ParallelPlan

EXAMPLES = Path(__file__).parents[2] / "examples"
CAP = 80.0
KW = {"capacity_bytes": CAP, "cls": "dense", "time_band_frac": 0.10, "memory_band_frac": 0.08}
PLAIN = ParallelPlan(tp=8, dp=4)
PIPE = ParallelPlan(tp=8, pp=4, dp=1)
DUALPIPE = ParallelPlan(tp=8, pp=4, dp=1, pp_schedule="dualpipe")


def test_evidence_table_is_the_validation_set():
    """VALIDATION_ROWS equals the count, per model class and mechanism, of the training validation
    runs whose plan uses it (recounted from validation/ here, so the table cannot drift)."""
    from flopcast.validation.ranking import mechanism_counts

    assert VALIDATION_ROWS == mechanism_counts()


def test_time_band_is_the_shipped_cross_validated_error():
    """TIME_BAND_FRAC is the leave-one-source-out median error the shipped training profile records
    (`flopcast validate training --cv source --json`)."""
    assert resolve_profile(None, "training").cv_median_abs_error_frac == TIME_BAND_FRAC
    assert 0 < MEMORY_BAND_FRAC < 0.5


def test_mechanisms_of_a_plan():
    """A pipeline, its schedule and the other mechanisms are named; DualPipe has no validation run of
    either model class, so it is little validated; a plain TP x DP plan uses none."""
    assert mechanisms(PLAIN) == () and mechanisms(PIPE) == ("pipeline",)
    assert mechanisms(DUALPIPE) == ("pipeline", "dualpipe")
    assert "dualpipe" in little_validated(DUALPIPE, "dense") and "dualpipe" in little_validated(DUALPIPE, "moe")
    assert VALIDATION_ROWS[("dense", "pipeline")] >= MIN_VALIDATION_ROWS and little_validated(PIPE, "dense") == ()


def test_ties_prefer_validated_mechanisms_then_headroom_then_fewer():
    """Within the band of the fastest: a DualPipe plan 3% faster comes after a validated one; of two
    validated ties, the one with more headroom (in whole memory bands) first; at equal headroom, the
    one with fewer mechanisms; a plan outside the band follows, by step time."""
    items = [(1.00, 40.0, DUALPIPE), (1.03, 40.0, PIPE), (1.05, 40.0, PLAIN), (1.30, 10.0, PLAIN)]
    assert recommend_order(items, **KW) == [2, 1, 0, 3]
    items = [(1.00, 70.0, PLAIN), (1.05, 50.0, PIPE)]      # 12.5% vs 37.5% headroom: 1 band vs 2
    assert recommend_order(items, **KW) == [1, 0]


def test_marginal_plans_come_after_plans_with_headroom():
    """A plan within the memory band of capacity (here 78 of 80) is marginal: it comes after every
    plan with the default headroom, even a much slower one; marginal plans alone keep their order."""
    items = [(1.0, 78.0, PLAIN), (2.0, 40.0, PLAIN)]
    assert recommend_order(items, **KW) == [1, 0]
    assert recommend_order([(1.0, 78.0, PLAIN), (1.5, 79.0, PLAIN)], **KW) == [0, 1]


@pytest.fixture(scope="module")
def gpt3_search():
    return api.search_training(EXAMPLES / "gpt3-175b-search.yaml", workers=1).to_dict()


def test_search_json_shows_every_plan_key_and_band(gpt3_search):
    """Each plan in --json shows its schedule, vpp, layout, micro-batch, step-time band, memory
    headroom and band, and carries `parallel`; the first plan is not marginal when any plan has
    headroom."""
    d = gpt3_search
    for p in d["plans"]:
        for k in ("pp_schedule", "vpp", "pipeline_layout", "microbatch_seqs", "step_time_s_band",
                  "memory_headroom_frac", "memory_band_frac", "marginal", "little_validated_mechanisms"):
            assert k in p
        assert p["parallel"]["pp_schedule"] == p["pp_schedule"] and p["parallel"]["tp"] == p["tp"]
    assert not d["plans"][0]["marginal"] or all(p["marginal"] for p in d["plans"])


def test_plan_and_search_name_the_same_best_plan(gpt3_search):
    """`flopcast plan` on a file without `parallel` and `flopcast search` on the same file choose the
    same plan (the recommendation orders the same candidates whatever `top` is, up to the pool)."""
    rep = api.plan(EXAMPLES / "gpt3-175b-search.yaml", workers=1)
    best = gpt3_search["plans"][0]
    assert rep.training.plan.to_dict() == ParallelPlan(**best["parallel"]).to_dict()
    assert rep.training.step_time_s == pytest.approx(best["step_time_s"], rel=1e-12)


SMALL = {"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1000}
MOE = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
       "num_key_value_heads": 4, "intermediate_size": 512, "num_local_experts": 4, "num_experts_per_tok": 2,
       "vocab_size": 1000}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from([SMALL, MOE]), devices=st.sampled_from([4, 8, 16]),
       batch=st.sampled_from([8, 16, 32]), seq=st.sampled_from([512, 1024, 2048]),
       hardware=st.sampled_from(["h100-sxm", "a100-sxm-80gb"]))
def test_train_on_a_search_plan_reproduces_it(model, devices, batch, seq, hardware):
    """For random small scenarios, `train` with each searched plan's `parallel` section gives the
    search's step time and memory exactly (one implementation, every key that makes the plan)."""
    sc = {"model": dict(model), "hardware": hardware, "cluster": {"num_devices": devices},
          "training": {"seq_len": seq, "global_batch_seqs": batch}}
    d = api.search_training(sc, top=3, workers=1).to_dict()
    for p in d["plans"]:
        e = api.estimate_training(sc | {"parallel": p["parallel"]})
        assert e.step_time_s == p["step_time_s"]
        assert e.memory_per_device_bytes == p["memory_per_device_bytes"]
