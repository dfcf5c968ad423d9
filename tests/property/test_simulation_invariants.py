"""Invariants of the serving simulation over random small workloads and every scheduler: every
request completes or is rejected, arrival <= first token <= last token, percentiles are ordered,
rates are consistent with the counts."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flopcast import catalog
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.hf import from_hf_config
from flopcast.specs.serving import InferenceSpec

MODEL = from_hf_config({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 1024,
                        "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 2816,
                        "vocab_size": 32000})
HW = catalog.get_hardware("h100-sxm")


@settings(max_examples=40, deadline=None)
@given(scheduler=st.sampled_from(["static", "vllm", "sarathi", "disaggregated"]),
       dp=st.integers(2, 4), rate=st.floats(1.0, 2000.0), n=st.integers(1, 120),
       mean_in=st.integers(16, 4096), mean_out=st.integers(1, 512), batch=st.sampled_from([None, 4, 64]),
       budget=st.sampled_from([256, 2048, 8192]), seed=st.integers(0, 5))
def test_simulation_invariants(scheduler, dp, rate, n, mean_in, mean_out, batch, budget, seed):
    """Conservation, causality and ordered percentiles for any workload and scheduler."""
    spec = InferenceSpec(tp=1, dp=dp, batch_size=batch, max_tokens_per_iteration=budget)
    w = WorkloadSpec(num_requests=n, process="poisson", rate_per_s=rate, seed=seed,
                     input_tokens=LengthDist(dist="lognormal", mean=mean_in, max=16384),
                     output_tokens=LengthDist(dist="lognormal", mean=mean_out, max=2048))
    res = simulate(MODEL, HW, spec, w, scheduler=scheduler)
    r = res.requests
    done = ~np.isnan(r["done_s"])
    assert res.num_completed + res.num_rejected == n == len(r["arrival_s"])
    assert res.num_completed == int(done.sum())
    assert np.all(r["first_token_s"][done] >= r["arrival_s"][done])
    assert np.all(r["done_s"][done] >= r["first_token_s"][done])
    if res.num_completed:
        assert 0 < res.ttft_p50_s <= res.ttft_p99_s <= res.e2e_p99_s
        assert res.e2e_p50_s <= res.e2e_p99_s
        assert math.isclose(res.requests_per_s * res.simulated_s, res.num_completed, rel_tol=1e-9)
        assert 0 < res.busy_frac <= 1
