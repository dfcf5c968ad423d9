"""`flopcast validate simulation` (validation/simulation.py): the published load measurements, the
replay of their load generators through the simulator, and the report's shape."""

from __future__ import annotations

import numpy as np
import pytest

from flopcast.errors import InvalidScenario
from flopcast.validation import simulation as sim


def _run(**over):
    base = dict(id="T", family="f", fit_family="f", source="s",
                scenario={"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
                          "inference": {"tp": 1, "input_tokens": 512, "output_tokens": 64}},
                load={"concurrency": 1, "num_requests": 4}, measured={"ttft_mean_s": 0.05})
    base.update(over)
    return sim.Run(**base)


def test_the_data_meets_the_issue_floor():
    """Issue 22 deliverable 6: at least 15 published load measurements from at least 3 source
    families, each with a source, a load, measured statistics of known names and a scenario that
    resolves; ids are unique."""
    from flopcast.specs.scenario import resolve

    runs = sim.load_runs()
    assert len(runs) >= 15 and len({r.family for r in runs}) >= 3
    for r in runs:
        assert r.source and r.measured and set(r.measured) <= set(sim.METRICS), r.id
        assert all(v > 0 for v in r.measured.values()), r.id
        resolve(sim.scenario_of(r))
        if not r.verified:
            assert r.note, f"{r.id}: unverified without saying what is assumed"


def test_every_simulation_statistic_is_logged_first_seen():
    """Every measured statistic of every run has a first-seen entry `RUN:metric` (kind simulation)
    with its error under the code before the run was added, consistent with its own columns."""
    from flopcast.validation import first_seen

    log = first_seen.load()
    for r in sim.load_runs():
        for m, v in r.measured.items():
            e = log.get(f"{r.id}:{m}")
            assert e is not None, f"{r.id}:{m}: no first-seen entry"
            assert e["kind"] == "simulation" and e["quantity"] == m
            assert float(e["measured"]) == pytest.approx(v)
            if e["error_frac"] != "unknown":
                p = float(e["predicted"])
                assert float(e["error_frac"]) == pytest.approx((p - v) / v, rel=1e-4)


def test_load_generators_become_workloads():
    """A closed loop of C clients is a burst on an engine admitting at most min(C, its own cap)
    sequences; a rate is Poisson arrivals; a burst is every request at t = 0; lengths default to the
    section's and a run's `lengths` replace them; a calibration replaces the shipped profile."""
    sc = sim.scenario_of(_run(load={"concurrency": 8, "num_requests": 40}))
    inf = sc["inference"]
    assert inf["max_batch_size"] == 8 and inf["workload"]["arrival"] == {"process": "burst"}
    assert inf["workload"]["num_requests"] == 40 and inf["workload"]["input_tokens"] == 512
    capped = _run(scenario={**_run().scenario, "inference": {**_run().scenario["inference"], "max_batch_size": 4}},
                  load={"concurrency": 8})
    assert sim.scenario_of(capped)["inference"]["max_batch_size"] == 4
    rate = sim.scenario_of(_run(load={"rate_per_s": 3.0, "num_requests": 50}), {"compute.hopper": 0.9})
    assert rate["inference"]["workload"]["arrival"] == {"process": "poisson", "rate_per_s": 3.0}
    assert rate["calibration"] == {"inference": {"compute.hopper": 0.9}}
    burst = sim.scenario_of(_run(load={"burst": 7}, lengths={"input_tokens": {"dist": "uniform", "min": 1, "max": 9}}))
    assert burst["inference"]["workload"]["num_requests"] == 7
    assert burst["inference"]["workload"]["input_tokens"]["dist"] == "uniform"


def test_closed_loop_arrivals_and_warm_up():
    """Closed loop of C clients: request j >= C arrives at the (j - C + 1)-th completion (sorted
    completion times), the first C at t = 0, and the first 2 C requests are the warm-up. Oracle:
    the arrivals written out by hand for C = 2 and six requests."""
    done = np.array([1.0, 2.0, 3.0, 4.5, 5.0, 7.0])
    first = np.array([0.1, 0.2, 1.1, 2.1, 3.2, 4.6])
    req = {"arrival_s": np.zeros(6), "first_token_s": first, "done_s": done, "output_tokens": np.full(6, 11)}
    got = sim.latency_stats(req, concurrency=2)
    arrival = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 4.5])       # the 1st, 2nd, 3rd, 4th completions
    measured = slice(4, 6)                                   # after 2 x 2 warm-up requests
    assert got["ttft_mean_s"] == pytest.approx(float(np.mean((first - arrival)[measured])))
    assert got["e2e_p50_s"] == pytest.approx(float(np.median((done - arrival)[measured])))
    assert got["tpot_mean_s"] == pytest.approx(float(np.mean(((done - first) / 10)[measured])))
    # an open load: arrivals as simulated, every request measured
    open_ = sim.latency_stats({**req, "arrival_s": np.arange(6.0) * 0.1}, concurrency=None)
    assert open_["ttft_p99_s"] == pytest.approx(float(np.percentile(first - np.arange(6.0) * 0.1, 99)))


def test_warm_up_follows_the_load_generator():
    """`load.warmup_per_client` says how many requests per client the tool leaves out: 0 (vllm bench
    serve, SGLang bench_serving measure every request of the main run) keeps the start transient,
    whose first C requests arrive together at t = 0; it is refused on an open load and below 0."""
    done = np.array([1.0, 2.0, 3.0, 4.5, 5.0, 7.0])
    first = np.array([0.1, 0.2, 1.1, 2.1, 3.2, 4.6])
    req = {"arrival_s": np.zeros(6), "first_token_s": first, "done_s": done, "output_tokens": np.full(6, 11)}
    arrival = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 4.5])
    every = sim.latency_stats(req, concurrency=2, warmup_per_client=0)
    assert every["ttft_mean_s"] == pytest.approx(float(np.mean(first - arrival)))
    one = sim.latency_stats(req, concurrency=2, warmup_per_client=1)
    assert one["e2e_mean_s"] == pytest.approx(float(np.mean((done - arrival)[2:])))
    base = {"id": "X", "family": "f", "source": "s", "scenario": {}, "measured": {"ttft_mean_s": 1}}
    assert sim._run_from_mapping({**base, "load": {"concurrency": 2, "warmup_per_client": 0}}).load[
        "warmup_per_client"] == 0
    for load in ({"concurrency": 2, "warmup_per_client": -1}, {"burst": 3, "warmup_per_client": 0},
                 {"concurrency": 2, "warmup_per_client": 1.5}):
        with pytest.raises(InvalidScenario, match="warmup_per_client"):
            sim._run_from_mapping({**base, "load": load})


def test_one_client_sees_the_unloaded_server():
    """One closed-loop client never queues: its simulated TTFT is the analytic unloaded TTFT and its
    TPOT the analytic batch-1 TPOT of the same scenario (DESIGN: at low load the simulator and the
    estimator agree; 2% covers the simulator's 8-token context buckets)."""
    from flopcast.run.serving import estimate_serving

    r = _run()
    got = sim.predict(r)
    inf = {**r.scenario["inference"], "batch_size": 1}
    est = estimate_serving({**r.scenario, "inference": inf})
    assert got["ttft_mean_s"] == pytest.approx(est.ttft_unloaded_s, rel=0.02)
    assert got["tpot_mean_s"] == pytest.approx(est.tpot_s, rel=0.02)


def test_more_clients_than_the_engine_admits_queue():
    """A closed loop above the engine's sequence cap queues in the engine: TTFT grows with the
    clients while TPOT stays at the capped batch's (the measured NIM sweep's knee, here with a cap
    of 4 sequences)."""
    sc = {**_run().scenario}
    sc["inference"] = {**sc["inference"], "max_batch_size": 4}
    small = sim.predict(_run(scenario=sc, load={"concurrency": 4, "num_requests": 40}))
    large = sim.predict(_run(scenario=sc, load={"concurrency": 16, "num_requests": 160}))
    assert large["ttft_mean_s"] > 5 * small["ttft_mean_s"]
    assert large["tpot_mean_s"] == pytest.approx(small["tpot_mean_s"], rel=0.05)


def test_bad_runs_are_one_line_errors(tmp_path):
    """A run without its keys, with two loads or an unknown statistic is refused in one line that
    names it; duplicate ids are refused."""
    bad = {"id": "X", "family": "f", "source": "s", "scenario": {}, "measured": {"ttft_mean_s": 1}}
    with pytest.raises(InvalidScenario, match="run X: needs"):
        sim._run_from_mapping(bad)
    with pytest.raises(InvalidScenario, match="exactly one of"):
        sim._run_from_mapping({**bad, "load": {"burst": 3, "rate_per_s": 1}})
    with pytest.raises(InvalidScenario, match="accepted: ttft_mean_s"):
        sim._run_from_mapping({**bad, "load": {"burst": 3}, "measured": {"ttft_p90_s": 1}})
    p = tmp_path / "runs.yaml"
    p.write_text("runs:\n" + "".join(
        "  - {id: A, family: f, source: s, scenario: {}, load: {burst: 1}, measured: {e2e_p50_s: 1}}\n" for _ in range(2)))
    with pytest.raises(InvalidScenario, match="duplicate"):
        sim.load_runs(p)
    msg = str(pytest.raises(InvalidScenario, sim._run_from_mapping, bad).value)
    assert "\n" not in msg


def test_validate_simulation_refuses_baseline_and_profile():
    """`validate simulation` runs under the shipped serving profile: --baseline and --profile are refused."""
    from flopcast.validation.commands import validate

    with pytest.raises(InvalidScenario, match="validate simulation"):
        validate("simulation", baseline=True)
    with pytest.raises(InvalidScenario, match="validate simulation"):
        validate("simulation", profile="none")


def test_report_shape():
    """The report has the shape of `validate inference`: rows with measured / predicted / error per
    statistic, figures per metric and by class (dense / moe, generation, load kind, family) and the
    targets (centre <= 15%, tail <= 25%)."""
    runs = [_run(measured={"ttft_mean_s": 0.05, "tpot_mean_s": 0.005, "e2e_p50_s": 0.4})]
    rep = sim.report(runs=runs)
    assert rep["kind"] == "simulation" and rep["num_rows"] == 1 and rep["num_values"] == 3
    row = rep["rows"][0]
    assert set(row["error_frac"]) == {"ttft_mean_s", "tpot_mean_s", "e2e_p50_s"}
    for m, e in row["error_frac"].items():
        assert e == pytest.approx((row["predicted"][m] - row["measured"][m]) / row["measured"][m])
    assert set(rep["by_metric"]) == {"ttft_mean_s", "tpot_mean_s", "e2e_p50_s"}
    assert {"dense", "hopper", "closed-loop", "f"} <= set(rep["by_class"])
    assert rep["targets"]["centre"]["target_frac"] == 0.15 and rep["targets"]["tail"]["target_frac"] == 0.25
    assert rep["targets"]["tail"]["num_values"] == 0 and rep["targets"]["tail"]["met"] is False


def test_cli_validate_simulation():
    """`flopcast validate simulation --json` prints the report (every run, the targets, the first-seen
    figures over every statistic); the table form renders; `--baseline` is a one-line error with exit code 2."""
    import json
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "flopcast.cli", "validate", "simulation", *args],
                              capture_output=True, text=True)

    r = run("--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["num_rows"] == len(sim.load_runs()) and set(d["targets"]) == {"centre", "tail"}
    assert d["first_seen"]["num_logged"] == d["num_values"]       # every statistic logged before the model changed
    assert all("first_seen_median_abs_error_frac" in g for g in [*d["by_metric"].values(), *d["by_class"].values()])
    t = run()
    assert t.returncode == 0 and "target centre" in t.stdout and "NIM-L33-70B" in t.stdout
    b = run("--baseline")
    assert b.returncode == 2 and len(b.stderr.strip().splitlines()) == 1
