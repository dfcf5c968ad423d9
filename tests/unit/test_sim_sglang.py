"""The sglang scheduler (sim/schedulers/sglang.py): SGLang's default prefill-first policy, prefill
and decode never in one batch; running requests decode only when no prompt can be admitted."""

from __future__ import annotations

import numpy as np

from flopcast import catalog
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")


def burst(n, inp, out):
    return WorkloadSpec(num_requests=n, process="burst", rate_per_s=None, input_tokens=LengthDist(value=inp),
                        output_tokens=LengthDist(value=out), seed=0)


def test_every_prompt_is_prefilled_before_any_decode_when_memory_allows():
    """20 prompts of 1,000 tokens at once, a 2,048-token budget, 5 output tokens, KV room for all:
    sglang prefills every prompt before the first decode step, so no request finishes before the
    last first token; sarathi mixes decodes into the prompt iterations and the first requests finish
    early. Both complete every request."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=1000, output_tokens=5, max_tokens_per_iteration=2048)
    got = {}
    for name in ("sglang", "sarathi"):
        res = simulate(MODEL, H100, spec, burst(20, 1000, 5), scheduler=name)
        req = res.requests
        assert res.num_completed == 20
        got[name] = (float(np.max(req["first_token_s"])), float(np.min(req["done_s"])))
    last_first, first_done = got["sglang"]
    assert first_done > last_first
    last_first, first_done = got["sarathi"]
    assert first_done < last_first


def test_a_full_kv_pool_lets_the_running_requests_decode():
    """400 prompts of 8,000 tokens at once on one H100 (the KV pool holds a few dozen): prefill
    stops when no prompt fits, the running requests decode and free their pages, and prefill
    resumes; every request completes, and some finish before the last prompt is prefilled."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=8000, output_tokens=8)
    res = simulate(MODEL, H100, spec, burst(400, 8000, 8), scheduler="sglang")
    req = res.requests
    assert res.num_completed == 400 and res.num_rejected == 0
    assert float(np.min(req["done_s"])) < float(np.max(req["first_token_s"]))


def test_optimistic_admission_retracts_under_overload():
    """Poisson arrivals past capacity (20/s of 2,000 + 2,000 tokens on one H100): sglang admits
    against 0.7 (decaying) of the outputs still to come, so the running requests outgrow the pool
    and some are retracted and recomputed; sarathi reserves whole sequences and never preempts.
    Both complete every request."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=2000, output_tokens=2000)
    w = WorkloadSpec(num_requests=600, process="poisson", rate_per_s=20.0, input_tokens=LengthDist(value=2000),
                     output_tokens=LengthDist(value=2000), seed=2)
    sgl = simulate(MODEL, H100, spec, w, scheduler="sglang")
    sar = simulate(MODEL, H100, spec, w, scheduler="sarathi")
    assert sgl.num_completed == sar.num_completed == 600
    assert sar.num_preemptions == 0 < sgl.num_preemptions
