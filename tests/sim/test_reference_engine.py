"""The engine's fast representation (lockstep decode offsets, running context sums, finish heaps,
vllm page counts by residue, separable iteration-cost tables) simulates exactly what a plain
simulator that rescans every running sequence on every iteration does (tests/sim/reference_engine.py):
the same first-token and completion time for every request and the same preemptions, for random
workloads, layouts and the colocated schedulers, including sliding-window models and memory pressure."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flopcast import catalog
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.hf import from_hf_config
from flopcast.specs.scenario import resolve_hardware
from flopcast.specs.serving import InferenceSpec
from tests.sim import reference_engine

DENSE = from_hf_config({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 1024,
                        "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 2816,
                        "vocab_size": 32000})
WINDOWED = from_hf_config({"model_type": "mistral", "num_hidden_layers": 4, "hidden_size": 1024,
                           "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 2816,
                           "vocab_size": 32000, "sliding_window": 64})
H100 = catalog.get_hardware("h100-sxm")
SMALL = resolve_hardware({"base": "h100-sxm", "hbm_capacity": "1.5 GB"})   # a KV cache of a few thousand tokens


# 40 random cases; the iteration times agree to ~1e-14 relative (the engine sums memoised op-class
# tables), so request times are compared to 1e-9 relative.
@settings(max_examples=40, deadline=None)
@given(scheduler=st.sampled_from(["static", "vllm", "sarathi"]), windowed=st.booleans(), small=st.booleans(),
       dp=st.integers(1, 3), rate=st.floats(1.0, 2000.0), n=st.integers(1, 150), burst=st.booleans(),
       mean_in=st.integers(8, 2048), mean_out=st.integers(1, 600), batch=st.sampled_from([None, 4, 64]),
       budget=st.sampled_from([256, 2048, 8192]), seed=st.integers(0, 5), cap=st.sampled_from([None, None, 8]))
def test_fast_engine_matches_the_plain_simulator(scheduler, windowed, small, dp, rate, n, burst, mean_in, mean_out,
                                                 batch, budget, seed, cap):
    """Same requests, same layout (with or without a max_batch_size cap): every request's first token
    and completion agree (or both are rejected), and vllm preempts the same number of times."""
    model, hw = (WINDOWED if windowed else DENSE), (SMALL if small else H100)
    spec = InferenceSpec(tp=1, dp=dp, batch_size=batch, max_tokens_per_iteration=budget, max_batch_size=cap)
    w = WorkloadSpec(num_requests=n, process="burst" if burst else "poisson", rate_per_s=rate, seed=seed,
                     input_tokens=LengthDist(dist="lognormal", mean=mean_in, max=4096),
                     output_tokens=LengthDist(dist="lognormal", mean=mean_out, max=2048))
    res = simulate(model, hw, spec, w, scheduler=scheduler)
    first, done, preemptions = reference_engine.simulate(model, hw, spec, w, scheduler)
    r = res.requests
    assert np.array_equal(np.isnan(r["done_s"]), np.isnan(done))
    assert np.allclose(r["done_s"], done, rtol=1e-9, atol=0, equal_nan=True)
    assert np.allclose(r["first_token_s"], first, rtol=1e-9, atol=0, equal_nan=True)
    assert res.num_preemptions == preemptions
