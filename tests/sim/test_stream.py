"""Streamed simulations (sim/stats.py): the same dynamics as a simulation that keeps every request,
figures within the histograms' resolution, and memory bounded by the requests in flight."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from flopcast import catalog
from flopcast.run.steady import steady_state
from flopcast.sim import engine, stats
from flopcast.sim.state import SimState
from flopcast.sim.workload import SLO, LengthDist, WorkloadSpec, generate
from flopcast.specs.serving import InferenceSpec

MODEL = catalog.get_model("llama-3.1-8b")
H100 = catalog.get_hardware("h100-sxm")
SPEC = InferenceSpec(tp=1, dp=2, max_batch_size=64)
SLO_ = SLO(ttft_s=2.0, tpot_s=0.05)


def _trace(tmp_path, n: int, rate: float) -> WorkloadSpec:
    """A Poisson workload written as a trace, so both modes simulate exactly the same requests."""
    w = WorkloadSpec(num_requests=n, process="poisson", rate_per_s=rate, seed=3,
                     input_tokens=LengthDist(dist="lognormal", mean=512, max=4096),
                     output_tokens=LengthDist(dist="lognormal", mean=128, max=1024))
    t, i, o = generate(w)
    path = tmp_path / "trace.csv"
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["arrival_s", "input_tokens", "output_tokens"])
        wr.writerows(zip(t.tolist(), i.tolist(), o.tolist(), strict=True))
    return WorkloadSpec(num_requests=n, trace=str(path))


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks and flushes far smaller than the run, so both boundaries are crossed many times."""
    monkeypatch.setattr(engine, "CHUNK", 257)
    monkeypatch.setattr(stats, "FLUSH", 101)


def _lower(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q, method="lower"))


@pytest.mark.parametrize("scheduler", ["sarathi", "vllm", "static", "disaggregated"])
def test_a_streamed_run_has_the_dynamics_of_a_kept_one(tmp_path, small_chunks, scheduler):
    """Rule: streaming changes only the bookkeeping. Over the same 3,000 requests, every scheduler
    runs the same iterations, preemptions and completions; each percentile is the kept run's
    order statistic (numpy's `lower` method) to within one histogram bin (REL_WIDTH); throughput,
    SLO attainment and goodput agree to 1e-9."""
    w = _trace(tmp_path, 3000, 60.0)
    kept = engine.simulate(MODEL, H100, SPEC, w, scheduler=scheduler, slo=SLO_, stream=False)
    streamed = engine.simulate(MODEL, H100, SPEC, w, scheduler=scheduler, slo=SLO_, stream=True)
    assert streamed.requests is None and streamed.stream is not None
    for key in ("num_iterations", "num_preemptions", "num_completed", "num_rejected", "num_requests"):
        assert getattr(streamed, key) == getattr(kept, key), key
    for key in ("output_tokens_per_s", "requests_per_s", "slo_attainment_frac", "goodput_requests_per_s",
                "simulated_s", "busy_frac", "mean_tokens_per_iteration", "analytic_max_output_tokens_per_s"):
        assert getattr(streamed, key) == pytest.approx(getattr(kept, key), rel=1e-9), key
    r = kept.requests
    ttft = r["first_token_s"] - r["arrival_s"]
    multi = r["output_tokens"] > 1
    tpot = ((r["done_s"] - r["first_token_s"]) / np.maximum(r["output_tokens"] - 1, 1))[multi]
    e2e = r["done_s"] - r["arrival_s"]
    for name, x in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)):
        for q in (50, 99):
            assert getattr(streamed, f"{name}_p{q}_s") == pytest.approx(_lower(x, q), rel=stats.REL_WIDTH), (name, q)


def test_a_streamed_steady_state_agrees_with_the_kept_one(tmp_path, small_chunks):
    """Rule: the streamed steady state applies the same warm-up, convergence and verdict rules at the
    granularity of its slices: on a stable run both settle with the same verdict, and the
    steady-state throughput and p99 latencies agree within a few percent."""
    w = _trace(tmp_path, 6000, 60.0)
    kept = steady_state(engine.simulate(MODEL, H100, SPEC, w, slo=SLO_, stream=False), SLO_)
    streamed = steady_state(engine.simulate(MODEL, H100, SPEC, w, slo=SLO_, stream=True), SLO_)
    assert kept["settled"] and streamed["settled"]
    assert kept["meets_slo"] == streamed["meets_slo"]
    for key in ("achieved_output_tokens_per_s", "offered_output_tokens_per_s", "ttft_p99_s", "tpot_p99_s"):
        assert streamed[key] == pytest.approx(kept[key], rel=0.05), key


def test_the_time_bins_count_every_token_once():
    """Rule: the tokens generated in [0, end] are every request's output tokens, however the bins
    widen (a run 1,000 times longer than its first guess coarsens them many times)."""
    bins = stats.TimeBins(1e-3 / stats.TIME_BINS, np.zeros(stats.TIME_BINS), np.zeros(stats.TIME_BINS))
    rng = np.random.default_rng(1)
    first = rng.uniform(0, 0.9, 500)
    done = first + rng.uniform(0, 0.1, 500)
    out = rng.integers(1, 50, 500).astype(float)
    bins.add(first, done, out)
    bins.add(first + 1.0, done + 1.0, out)
    assert bins.tokens_between(0.0, 2.5) == pytest.approx(2 * out.sum(), rel=1e-9)
    assert bins.tokens_between(0.0, 1.0) == pytest.approx(out.sum(), rel=1e-3)


def test_a_streamed_run_holds_only_the_requests_in_flight(monkeypatch, small_chunks):
    """Rule: the per-request lists of a streamed run grow to the most requests in flight at once,
    not to the number of requests (20,000 requests at a light load reuse a few dozen slots)."""
    top = [0]
    slot = SimState.slot

    def counting(self, *args):
        r = slot(self, *args)
        top[0] = max(top[0], len(self.inp))
        return r

    monkeypatch.setattr(SimState, "slot", counting)
    w = WorkloadSpec(num_requests=20_000, process="poisson", rate_per_s=20.0,
                     input_tokens=LengthDist(value=256), output_tokens=LengthDist(value=32))
    res = engine.simulate(MODEL, H100, InferenceSpec(tp=1), w, stream=True)
    assert res.num_completed == 20_000
    assert 0 < top[0] < 200


def test_a_streamed_run_refuses_to_write_one_row_per_request(tmp_path):
    """Rule: `--requests FILE` needs the per-request arrays; a streamed run says so in one line
    (with the --max-requests that would keep them) instead of writing an empty file."""
    from flopcast.errors import InvalidScenario

    w = WorkloadSpec(num_requests=50, process="poisson", rate_per_s=5.0, input_tokens=LengthDist(value=64),
                     output_tokens=LengthDist(value=8))
    res = engine.simulate(MODEL, H100, InferenceSpec(tp=1), w, stream=True)
    with pytest.raises(InvalidScenario, match="--max-requests 1000000"):
        engine.write_requests_csv(res, str(tmp_path / "rows.csv"))
    assert not (tmp_path / "rows.csv").exists()
