"""The simulator's speed devices give the numbers of the plain path: cost tables shared between
simulations of one deployment (sim/cost.py) and the engine's fast paths."""

from __future__ import annotations

import dataclasses

import pytest

from flopcast import catalog
from flopcast.sim import cost as cost_mod
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")


def _workload(n: int, rate: float, seed: int = 3) -> WorkloadSpec:
    return WorkloadSpec(num_requests=n, process="poisson", rate_per_s=rate, seed=seed,
                        input_tokens=LengthDist(dist="lognormal", mean=700, max=4096),
                        output_tokens=LengthDist(dist="lognormal", mean=120, max=1024))


def _fresh(fn):
    saved = dict(cost_mod._SHARED)
    cost_mod._SHARED.clear()
    try:
        return fn()
    finally:
        cost_mod._SHARED.clear()
        cost_mod._SHARED.update(saved)


@pytest.mark.parametrize("scheduler", ["sarathi", "vllm"])
def test_shared_cost_tables_give_the_fresh_tables_numbers(scheduler):
    """Simulations of one layout at 1, 3 and 2 replicas in a row (tables shared, filled by the earlier
    runs at another dp) report exactly what each gives with freshly filled tables."""
    w = _workload(400, 25.0)

    def run(dp):
        return simulate(MODEL, H100, InferenceSpec(tp=1, dp=dp), w, scheduler=scheduler).to_dict()

    shared = _fresh(lambda: [run(dp) for dp in (1, 3, 2)])
    for dp, got in zip((1, 3, 2), shared, strict=True):
        assert _fresh(lambda dp=dp: run(dp)) == got


def test_tables_are_shared_only_within_one_deployment():
    """A second cost of the same deployment at another dp adopts the first's tables; another
    deployment (weights dtype) or expert parallelism's dp gets its own."""
    from flopcast.estimate import admission
    from flopcast.estimate import serving as sv_mod

    def cost(spec, model=MODEL):
        budget = admission.token_budget(spec)
        return cost_mod.AnalyticCost(sv_mod.prepare(model, H100, spec), budget,
                                     admission.concurrent_sequences(spec, unlimited=budget))

    def check():
        a, b = cost(InferenceSpec(tp=1, dp=1)), cost(InferenceSpec(tp=1, dp=7))
        assert a.base is b.base and a.dec is b.dec
        c = cost(InferenceSpec(tp=1, dp=1, weights_dtype="fp8"))
        assert c.base is not a.base
        moe = catalog.get_model("mixtral-8x7b")
        spec = InferenceSpec(tp=1, ep=2, dp=2)
        d, e = cost(spec, moe), cost(dataclasses.replace(spec, dp=4), moe)
        assert d.base is not e.base

    _fresh(check)


@pytest.mark.parametrize("scheduler", ["sarathi", "vllm", "static", "tgi", "splitfuse", "disaggregated"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_event_loop_gives_the_traced_loops_numbers(scheduler, seed):
    """A traced simulation runs the event loop step by step (every instant one pass); an untraced one
    takes the fast paths (arrivals that only join busy replicas' queues in one pass, an iteration's
    end that is alone at its instant handled inline). Random workloads, from idle to overloaded: the
    same report and the same per-request times, bitwise."""
    import random

    import numpy as np

    rng = random.Random(seed * 7 + len(scheduler))
    for _ in range(3):
        w = WorkloadSpec(num_requests=rng.randint(1, 300), process=rng.choice(["poisson", "gamma", "burst"]),
                         rate_per_s=rng.uniform(1.0, 400.0), seed=rng.randint(0, 99),
                         input_tokens=LengthDist(dist="lognormal", mean=rng.randint(16, 3000), max=8192),
                         output_tokens=LengthDist(dist="lognormal", mean=rng.randint(1, 400), max=2048))
        spec = InferenceSpec(tp=1, dp=rng.randint(2, 4), max_tokens_per_iteration=rng.choice([512, 2048, 8192]))
        fast = simulate(MODEL, H100, spec, w, scheduler=scheduler)
        traced = simulate(MODEL, H100, spec, w, scheduler=scheduler, trace=[])
        assert fast.to_dict() == traced.to_dict()
        for key, values in traced.requests.items():
            assert np.array_equal(fast.requests[key], values, equal_nan=True), key
