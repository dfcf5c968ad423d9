"""Speculative decoding in the serving simulator (sim/cost.py `SpeculativeCost`): a simulated
iteration with decoding sequences is 1 / acceptance_length of the analytic speculative step, so the
simulator and `flopcast infer` agree at batch 1 and at saturation, and prompts cost what they cost
without speculation."""

from __future__ import annotations

import pytest

from flopcast import api, catalog
from flopcast.estimate import serving as sv_mod
from flopcast.estimate.serving import estimate_serving
from flopcast.sim.cost import AnalyticCost, SpeculativeCost, iteration_cost
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec, SpeculativeSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")
EAGLE = {"method": "eagle", "num_draft_tokens": 3, "acceptance_length": 2.5}


def scenario(speculative=None, *, rate=0.01, n=10, inp=512, out=128):
    inf = {"tp": 1, "input_tokens": inp, "output_tokens": out, "batch_size": 1,
           "workload": {"num_requests": n, "arrival": {"process": "poisson", "rate_per_s": rate},
                        "input_tokens": inp, "output_tokens": out}}
    if speculative is not None:
        inf["speculative"] = speculative
    return {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1}, "inference": inf}


@pytest.mark.parametrize("speculative", [EAGLE, {"method": "eagle3", "num_draft_tokens": 3},
                                         {"method": "ngram", "num_draft_tokens": 4, "acceptance_length": 1.6},
                                         {"method": "mtp", "num_draft_tokens": 1, "acceptance_length": 1.8}])
def test_batch_1_tpot_is_the_analytic_speculative_tpot(speculative):
    """One request at a time: the simulated TPOT is the analytic speculative step over its acceptance
    length at batch 1 (the same cost model; a predicted acceptance length, eagle3 here, is the same
    one in both). Seen: equal to 4e-13 relative; asserted to 1e-6."""
    sim = api.simulate_serving(scenario(speculative))
    est = api.estimate_serving(scenario(speculative))
    assert sim.num_completed == 10
    assert sim.tpot_p50_s == pytest.approx(est.tpot_s, rel=1e-6)


def test_speculation_changes_decode_not_prefill():
    """With a good draft (2.5 tokens per eagle step) the simulated TPOT falls below plain decoding's,
    and the TTFT of an unloaded prompt (prompt tokens only) is unchanged."""
    plain = api.simulate_serving(scenario())
    spec = api.simulate_serving(scenario(EAGLE))
    assert spec.tpot_p50_s < 0.7 * plain.tpot_p50_s
    assert spec.ttft_p50_s == pytest.approx(plain.ttft_p50_s, rel=1e-12)


def test_saturated_throughput_is_the_analytic_speculative_steady_state():
    """Every request at once (20 batches of the batch memory allows), eagle with 2.5 tokens per step:
    the simulated output rate is within 2% of the analytic speculative steady state. Seen: +0.22%
    (without speculation the same run is +0.46%)."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=1024, output_tokens=256,
                         speculative=SpeculativeSpec(method="eagle", num_draft_tokens=3, acceptance_length=2.5))
    analytic = estimate_serving(MODEL, H100, spec)
    w = WorkloadSpec(num_requests=20 * analytic.batch_size, process="burst", rate_per_s=None,
                     input_tokens=LengthDist(value=1024), output_tokens=LengthDist(value=256), seed=0)
    res = simulate(MODEL, H100, spec, w, scheduler="sarathi")
    assert res.num_completed == 20 * analytic.batch_size
    assert res.output_tokens_per_s == pytest.approx(analytic.output_tokens_per_s, rel=0.02)


def test_the_cost_factory_picks_the_speculative_cost():
    """iteration_cost gives SpeculativeCost to a speculative deployment and AnalyticCost otherwise; a
    decode iteration of the speculative cost is the step over the acceptance length, a prompt-only
    iteration the plain cost."""
    spec = InferenceSpec(tp=1, dp=1, speculative=SpeculativeSpec(method="eagle", num_draft_tokens=3,
                                                                 acceptance_length=2.5))
    sv = sv_mod.prepare(MODEL, H100, spec)
    cost = iteration_cost(sv, 8192, 256)
    assert isinstance(cost, SpeculativeCost)
    assert isinstance(iteration_cost(sv_mod.prepare(MODEL, H100, InferenceSpec(tp=1, dp=1)), 8192, 256), AnalyticCost)
    step = sv_mod.speculative_step_s(sv, 8, 1024, 0, 0)
    assert cost.time_s(8, 8 * 1024, 0, 0.0, 8) == pytest.approx(step / 2.5, rel=1e-12)
    assert cost.time_s(0, 0.0, 512, 512 * 256.0, 1) == AnalyticCost(sv, 8192, 256).time_s(0, 0.0, 512, 512 * 256.0, 1)


def test_speculative_step_needs_a_speculative_deployment():
    """speculative_step_s of a deployment without speculation is a bug in the caller: ValueError."""
    with pytest.raises(ValueError, match="no speculative section"):
        sv_mod.speculative_step_s(sv_mod.prepare(MODEL, H100, InferenceSpec(tp=1, dp=1)), 1, 128, 0, 0)


def test_the_simulation_states_its_acceptance_length():
    """A speculative simulation lists the acceptance length its cost uses: the scenario's when given,
    else the predicted one with the published rows it comes from."""
    given = {a.name: a for a in api.simulate_serving(scenario(EAGLE)).assumptions}
    assert given["speculative.acceptance_length"].value == 2.5
    predicted = {a.name: a for a in api.simulate_serving(scenario({"method": "eagle3", "num_draft_tokens": 3})).assumptions}
    assert "predicted from published acceptance data" in predicted["speculative.acceptance_length"].why
    assert "speculative.acceptance_length" not in {a.name for a in api.simulate_serving(scenario()).assumptions}
