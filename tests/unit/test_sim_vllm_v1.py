"""The vllm-v1 scheduler (sim/schedulers/vllm_v1.py): vLLM V1's step, running requests first with KV
pages on demand (preempting the newest when they run out), then prompt chunks; admission reserves the
prompt only."""

from __future__ import annotations

from flopcast import catalog
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")


def workload(n, inp, out, rate=None):
    return WorkloadSpec(num_requests=n, process="burst" if rate is None else "poisson", rate_per_s=rate,
                        input_tokens=LengthDist(value=inp), output_tokens=LengthDist(value=out), seed=1)


def test_with_memory_to_spare_it_is_the_chunked_prefill_step():
    """Poisson traffic the KV pool holds with room to spare: no preemption, and every request is
    served exactly as under sarathi (the same composition of every step: decodes, then the prompt
    being built, then new prompts), so the two simulations agree to the last digit."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=1500, output_tokens=300)
    w = workload(300, 1500, 300, rate=8.0)
    v1 = simulate(MODEL, H100, spec, w, scheduler="vllm-v1")
    sar = simulate(MODEL, H100, spec, w, scheduler="sarathi")
    assert v1.num_preemptions == 0 and v1.num_completed == 300
    a, b = v1.to_dict(), sar.to_dict()
    for k in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s", "num_iterations"):
        assert a[k] == b[k], k


def test_under_memory_pressure_it_admits_on_the_prompt_and_preempts():
    """400 requests of 2,000 + 2,000 tokens at once on one H100: sarathi reserves each whole sequence
    and never preempts; vllm-v1 admits on the prompt's pages, so more sequences run at once, and when
    their growth exhausts the pool it preempts (and recomputes) the newest; both complete every
    request."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=2000, output_tokens=2000)
    w = workload(400, 2000, 2000)
    v1 = simulate(MODEL, H100, spec, w, scheduler="vllm-v1")
    sar = simulate(MODEL, H100, spec, w, scheduler="sarathi")
    assert v1.num_completed == sar.num_completed == 400
    assert sar.num_preemptions == 0 < v1.num_preemptions
    assert v1.mean_tokens_per_iteration > sar.mean_tokens_per_iteration
