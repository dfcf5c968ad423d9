"""Event-trace tests of the simulator: the order of events is total, deterministic and the one the
module docstring of flopcast.sim.engine states; simultaneous arrivals join one iteration."""

from __future__ import annotations

import numpy as np
import pytest

from flopcast import catalog
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")


def burst(n, inp=256, out=4):
    return WorkloadSpec(num_requests=n, process="burst", input_tokens=LengthDist(value=inp),
                        output_tokens=LengthDist(value=out))


@pytest.mark.parametrize("scheduler", ["sarathi", "vllm", "static"])
def test_simultaneous_arrivals_join_one_iteration(scheduler):
    """8 requests of 256 prompt tokens arrive at t = 0 on one replica with a 8192-token budget: the
    first iteration prefills all 8 (the whole burst fits), so every TTFT is that one iteration."""
    trace: list = []
    spec = InferenceSpec(tp=1, dp=1, input_tokens=256, output_tokens=4)
    res = simulate(MODEL, H100, spec, burst(8), scheduler=scheduler, trace=trace)
    starts = [e for e in trace if e[1] == "start"]
    assert starts[0][0] == 0.0
    assert starts[0][3] == tuple(range(8))
    ttft = res.requests["first_token_s"] - res.requests["arrival_s"]
    assert np.ptp(ttft) == 0.0
    assert res.ttft_p50_s == res.ttft_p99_s


def test_instant_order_arrivals_then_engine_events_then_starts():
    """At one instant: arrivals (in arrival order), then engine events, then iteration starts in
    replica order; times never decrease."""
    trace: list = []
    spec = InferenceSpec(tp=1, dp=2, input_tokens=256, output_tokens=3)
    simulate(MODEL, H100, spec, burst(6), scheduler="sarathi", trace=trace)
    head = trace[:8]
    assert [e[1] for e in head] == ["arrive"] * 6 + ["start", "start"]
    assert [e[3] for e in head[:6]] == list(range(6))
    assert [e[2] for e in head[:6]] == [0, 1, 0, 1, 0, 1]       # fewest outstanding, then lowest id
    assert [e[2] for e in head[6:]] == [0, 1]
    times = [e[0] for e in trace]
    assert times == sorted(times)
    rank = {"arrive": 0, "reject": 0, "end": 1, "kv_ready": 1, "kv_sent": 1, "start": 2}
    for a, b in zip(trace, trace[1:], strict=False):
        if a[0] == b[0]:
            assert rank[a[1]] <= rank[b[1]], (a, b)


def test_trace_is_deterministic():
    """The same workload gives the same event trace, event for event."""
    spec = InferenceSpec(tp=1, dp=2, input_tokens=512, output_tokens=16)
    w = WorkloadSpec(num_requests=50, process="gamma", rate_per_s=40, cv=3.0, input_tokens=LengthDist(value=512),
                     output_tokens=LengthDist(value=16), seed=3)
    t1: list = []
    t2: list = []
    simulate(MODEL, H100, spec, w, scheduler="vllm", trace=t1)
    simulate(MODEL, H100, spec, w, scheduler="vllm", trace=t2)
    assert t1 == t2 and len(t1) > 100


def test_progress_reports_and_can_stop_a_simulation():
    """progress(arrived, total) is called as the simulation advances and once at the end; raising stops it."""
    spec = InferenceSpec(tp=1, dp=1, input_tokens=64, output_tokens=2)
    w = WorkloadSpec(num_requests=3000, process="poisson", rate_per_s=1000, input_tokens=LengthDist(value=64),
                     output_tokens=LengthDist(value=2))
    calls = []
    simulate(MODEL, H100, spec, w, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) > 2 and calls[-1] == (3000, 3000)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        simulate(MODEL, H100, spec, w, progress=stop)
