"""The simulator's seams: the iteration cost is a protocol (a fixed service time turns the engine
into a textbook queue, checked against an oracle that shares no code with flopcast.sim), and the
schedulers are classes registered by the names users write in `inference.scheduler`."""

from __future__ import annotations

import numpy as np
import pytest

from flopcast import catalog
from flopcast.errors import UnknownName
from flopcast.sim.cost import FixedCost, IterationCost
from flopcast.sim.engine import simulate
from flopcast.sim.schedulers import SCHEDULERS, Scheduler
from flopcast.sim.workload import SCHEDULERS as SCHEDULER_NAMES
from flopcast.sim.workload import WorkloadSpec
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")
SERVICE_S = 0.025


@pytest.mark.parametrize("scheduler", ["static", "vllm", "sarathi"])
@pytest.mark.parametrize("rho", [0.3, 0.7, 0.95])
def test_fixed_service_time_single_server_is_md1(tmp_path, scheduler, rho):
    """One replica, one sequence at a time (max_batch_size 1), one output token per request and a
    fixed cost of SERVICE_S per iteration: every request is one iteration, so the simulation is an
    M/D/1 queue. The arrivals are drawn here (Poisson, numpy's generator) and given as a trace; the
    oracle is Lindley's recursion on them, which shares no code with flopcast.sim. Every completion
    time agrees to 1e-12 s (both add the same floats in the same order)."""
    rng = np.random.default_rng(11)
    arrival = np.cumsum(rng.exponential(SERVICE_S / rho, size=2000)).tolist()
    trace = tmp_path / "arrivals.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{a!r},64,1\n" for a in arrival))
    spec = InferenceSpec(tp=1, dp=1, max_batch_size=1)
    res = simulate(MODEL, H100, spec, WorkloadSpec(num_requests=len(arrival), trace=str(trace)),
                   scheduler=scheduler, cost=FixedCost(SERVICE_S))
    done, free_at = [], 0.0
    for a in arrival:                      # Lindley: service starts when both the request and the server are there
        free_at = max(a, free_at) + SERVICE_S
        done.append(free_at)
    assert res.num_completed == len(arrival)
    assert np.array_equal(res.requests["arrival_s"], arrival)
    assert np.allclose(res.requests["done_s"], done, rtol=0, atol=1e-12)
    assert res.busy_frac == pytest.approx(len(arrival) * SERVICE_S / res.simulated_s)


class _Recording:
    """A cost written against the protocol alone (no flopcast base class): 1 us per token."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, int, float, int]] = []

    def time_s(self, n_dec: int, ctx_sum: float, n_pre: int, keys_sum: float, n_sampled: int) -> float:
        self.calls.append((n_dec, ctx_sum, n_pre, keys_sum, n_sampled))
        return 1e-6 * (n_dec + n_pre)


@pytest.mark.parametrize("scheduler", ["static", "vllm", "sarathi", "disaggregated"])
def test_every_iteration_is_timed_through_the_protocol(scheduler):
    """The engine asks the cost once per iteration, with the tokens the iteration carries: a cost
    defined here sees num_iterations calls, and the busy time it reports is the simulated busy time
    (light load: 1 us per token)."""
    cost: IterationCost = _Recording()
    spec = InferenceSpec(tp=1, dp=2)
    w = WorkloadSpec(num_requests=40, process="poisson", rate_per_s=50.0, seed=2)
    res = simulate(MODEL, H100, spec, w, scheduler=scheduler, cost=cost)
    assert isinstance(cost, _Recording)
    assert res.num_completed == 40 and len(cost.calls) == res.num_iterations
    tokens = sum(n + m for n, _, m, _, _ in cost.calls)
    assert tokens == pytest.approx(res.mean_tokens_per_iteration * res.num_iterations)
    assert res.busy_frac * res.num_replicas * res.simulated_s == pytest.approx(1e-6 * tokens)
    assert res.busy_frac < 0.5


def test_schedulers_are_registered_classes_by_their_scenario_names():
    """Every name `inference.scheduler` accepts is a registered Scheduler class of that name, one
    module each; an unknown name lists the known ones."""
    assert SCHEDULERS.names() == sorted(SCHEDULER_NAMES)
    modules = set()
    for name in SCHEDULER_NAMES:
        cls = SCHEDULERS.get(name)
        assert issubclass(cls, Scheduler) and cls.name == name
        modules.add(cls.__module__)
    assert len(modules) == len(SCHEDULER_NAMES)
    with pytest.raises(UnknownName, match="sarathi"):
        SCHEDULERS.get("orca")
