"""Fleet sizing by simulation at steady state (`api.size_fleet`, `flopcast simulate --size-fleet`):
the answer meets the SLO after the warm-up while one unit fewer does not, it never undercuts the
analytic capacity bound, a higher arrival rate never needs fewer replicas, disaggregated pools and
EP groups are sized in their own units, and the explored curve is returned and plotted."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import xml.dom.minidom

import numpy as np
import pytest

from flopcast import api
from flopcast.errors import InvalidScenario
from flopcast.run.steady import mser_truncation


def scenario(rate, *, slo=None, n=600, inp=512, out=48, **inference):
    section = {"tp": 1, "workload": {"num_requests": n, "arrival": {"process": "poisson", "rate_per_s": rate},
                                     "input_tokens": {"dist": "lognormal", "mean": inp, "max": 4 * inp},
                                     "output_tokens": {"dist": "lognormal", "mean": out, "max": 4 * out}},
               "slo": slo or {"ttft_p99": "500 ms", "tpot_p99": "25 ms"}}
    return {"model": "llama-3.1-8b", "hardware": "h100-sxm", "inference": section | inference}


def analytic_floor(sc) -> int:
    """ceil(offered output tokens/s / one replica's analytic maximum at the mean lengths), computed
    from the workload's own sample and `flopcast infer` (independently of the sizing code)."""
    from flopcast.sim.workload import generate, workload_from_mapping

    sec = sc["inference"]
    w = workload_from_mapping(sec["workload"], input_tokens=1024, output_tokens=256)
    t, i, o = generate(dataclasses.replace(w, num_requests=max(w.num_requests, 1000)))   # at least 1000 requests
    rate = (len(t) - 1) / (t[-1] - t[0])
    one = api.estimate_serving({"model": sc["model"], "hardware": sc["hardware"], "cluster": {"num_devices": 1},
                                "inference": {"tp": 1, "input_tokens": round(i.mean()),
                                              "output_tokens": round(o.mean())}})
    return math.ceil(rate * o.mean() / one.output_tokens_per_s - 1e-9)


def test_mser_cuts_the_transient_and_refuses_a_drift():
    """MSER-5 truncates an initial ramp of a series that then stays stationary (the cut lands at the
    end of the ramp, within 10%), and returns None for a series that keeps rising (no steady state
    within the run)."""
    rng = np.random.default_rng(0)
    ramp = np.r_[np.linspace(0.0, 1.0, 300), np.ones(2700)] + rng.normal(0, 0.05, 3000)
    cut = mser_truncation(ramp)
    assert cut is not None and 240 <= cut <= 330
    assert mser_truncation(np.linspace(0.0, 10.0, 3000) + rng.normal(0, 0.05, 3000)) is None


def test_answer_meets_at_steady_state_and_one_fewer_does_not():
    """The chosen fleet's post-warm-up p99 TTFT and TPOT are within the SLO on a settled run, and the
    curve holds the fleet one replica smaller, which misses it; the answer is at least the analytic
    floor."""
    sc = scenario(120)
    out = api.size_fleet(sc, max_replicas=64)
    n = out["replicas"]
    assert out["meets_slo"] and n >= 2
    by_n = {r["replicas"]: r for r in out["curve"]}
    best = by_n[n]
    assert best["meets_slo"] and best["settled"] and best["warmup_requests"] > 0
    assert best["ttft_p99_s"] <= 0.5 and best["tpot_p99_s"] <= 0.025
    assert by_n[n - 1]["meets_slo"] is False
    assert n >= out["analytic_min_replicas"] == analytic_floor(sc)
    st = out["steady_state"]
    assert st["num_requests"] == best["num_requests"] >= 1000 and st["warmup_requests"] == best["warmup_requests"]
    for r in out["curve"]:
        assert {"replicas", "num_devices", "offered_output_tokens_per_s", "achieved_output_tokens_per_s",
                "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "meets_slo"} <= set(r)
    # a fleet that meets the SLO at steady state carries the offered load: within 1% at rates 40, 120 and
    # 240/s (seed 0); 5% leaves room for the window's edge (requests straddling its ends)
    assert best["achieved_output_tokens_per_s"] == pytest.approx(best["offered_output_tokens_per_s"], rel=0.05)


def test_a_short_workload_cannot_hide_an_overload():
    """The bug this sizing fixes: 200 requests at 400/s ramp up an empty fleet, and one replica below
    the analytic floor meets the SLO on them (the transient); sized at steady state the answer is at
    least the floor, the floor's neighbour below it fails, and every trial runs >= 1000 requests."""
    sc = scenario(400, n=200, slo={"ttft_p99": "5 s", "tpot_p99": "60 ms"})
    floor = analytic_floor(sc)
    trap = api.simulate_serving(sc | {"cluster": {"num_devices": floor - 1},
                                      "inference": sc["inference"] | {"dp": floor - 1}})
    assert trap.ttft_p99_s <= 5 and trap.tpot_p99_s <= 0.06
    out = api.size_fleet(sc, max_replicas=64)
    assert out["meets_slo"] and out["replicas"] >= floor == out["analytic_min_replicas"]
    assert all(r["num_requests"] >= 1000 for r in out["curve"])
    assert {r["replicas"]: r["meets_slo"] for r in out["curve"]}[out["replicas"] - 1] is False


def test_higher_arrival_rate_never_needs_fewer_replicas():
    """Sizing is monotone in the load: the replicas for rates 40, 120 and 240 requests/s do not decrease."""
    sizes = [api.size_fleet(scenario(rate), max_replicas=64)["replicas"] for rate in (40, 120, 240)]
    assert None not in sizes
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_disaggregated_pools_are_sized_independently():
    """inference.prefill / inference.decode: the answer gives each pool its replicas; it meets the SLO,
    and one replica fewer in either pool (when simulated) does not."""
    sc = scenario(80, inp=2048, out=32, slo={"ttft_p99": "600 ms", "tpot_p99": "20 ms"},
                  prefill={"tp": 1}, decode={"tp": 1})
    out = api.size_fleet(sc, max_replicas=32)
    assert out["meets_slo"] and out["scheduler"] == "disaggregated"
    p, d = out["prefill_replicas"], out["decode_replicas"]
    assert out["replicas"] == p + d and out["num_devices"] == p + d
    by = {(r["prefill_replicas"], r["decode_replicas"]): r for r in out["curve"]}
    assert by[(p, d)]["meets_slo"]
    for fewer in ((p - 1, d), (p, d - 1)):
        if min(fewer) >= 1:
            assert by[fewer]["meets_slo"] is False
    roles = {q["role"]: q for q in out["pools"]}
    assert roles["prefill"]["replicas"] == p and roles["decode"]["replicas"] == d


def test_expert_parallel_fleet_grows_by_ep_groups():
    """With ep 4 the unit is an EP group of 4 attention-data-parallel ranks: every trial's replicas
    are a multiple of 4 and the answer reports its groups."""
    sc = {"model": "qwen3-30b-a3b", "hardware": "h100-sxm",
          "inference": {"tp": 1, "ep": 4, "weights_dtype": "fp8", "kv_dtype": "fp8",
                        "workload": {"num_requests": 500, "arrival": {"process": "poisson", "rate_per_s": 1500},
                                     "input_tokens": 512, "output_tokens": 32},
                        "slo": {"ttft_p99": "1 s", "tpot_p99": "40 ms"}}}
    out = api.size_fleet(sc, max_replicas=64)
    assert out["meets_slo"] and out["replicas"] > 4
    assert all(r["replicas"] % 4 == 0 for r in out["curve"])
    assert out["pools"][0]["unit_replicas"] == 4 and out["replicas"] == 4 * out["pools"][0]["units"]


def test_curve_plot_and_cli(tmp_path):
    """--plot writes the curve as SVG (one point per trial in each of the two panels); another
    extension, or --plot without --size-fleet, is a one-line error (exit 2)."""
    sc = scenario(40)
    path = tmp_path / "curve.svg"
    out = api.size_fleet(sc, max_replicas=16, plot=path)
    assert out["plot"] == str(path)
    doc = xml.dom.minidom.parse(str(path))
    dots = [c for c in doc.getElementsByTagName("circle") if c.getAttribute("r") == "4"]
    assert len(dots) == 2 * len(out["curve"])
    with pytest.raises(InvalidScenario, match="--plot"):
        api.size_fleet(sc, plot=tmp_path / "curve.png")
    f = tmp_path / "s.json"
    f.write_text(json.dumps(sc))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "simulate", str(f), "--plot", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--size-fleet" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "simulate", str(f), "--size-fleet", "--json",
                        "--max-replicas", "16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["replicas"] == out["replicas"] and len(d["curve"]) == len(out["curve"])
