"""Calibration profiles, the fit, and the physical mechanisms issue 10 added to the cost model."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flopcast import api
from flopcast.errors import FlopcastError
from flopcast.estimate.calibration import Profile, profile_from_mapping, shipped
from flopcast.validation import fit

ROOT = Path(__file__).resolve().parents[2]


def _train(**kw):
    sc = {"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 64},
          "training": {"seq_len": 8192, "global_batch_seqs": 128},
          "parallel": {"tp": 1, "pp": 1, "dp": 64, "zero_stage": 1, "microbatch_seqs": 1}}
    for k, v in kw.items():
        sc[k] = {**sc.get(k, {}), **v} if isinstance(v, dict) and isinstance(sc.get(k), dict) else v
    return api.estimate_training(sc)


def test_profile_rejects_unknown_and_implausible_parameters():
    """Only compute./stack. names for training; multipliers outside [0.2, 2] are refused."""
    with pytest.raises(FlopcastError, match="unknown training parameter"):
        profile_from_mapping({"gemm.hopper": 0.9}, "training")
    with pytest.raises(FlopcastError, match="outside"):
        profile_from_mapping({"compute.hopper": 5.0}, "training")
    assert profile_from_mapping({"training": {"parameters": {"compute.hopper": 0.9}}}, "training").get(
        "compute.hopper") == 0.9


def test_fit_recovers_a_known_multiplier():
    """Synthetic runs whose time is t0 / theta for a hidden theta = 0.8 (plus one 2x outlier): the robust
    fit recovers theta to 1% (the ridge pulls it towards 1 by about ridge / rows)."""
    cases = []
    for i in range(12):
        t0 = 1.0 + i
        meas = t0 / 0.8 * (2.0 if i == 5 else 1.0)
        cases.append(fit.Case(id=f"r{i}", source=f"s{i % 3}", model="m", hardware="h100-sxm", quantity="step_time_s",
                              measured=meas, params=("compute.hopper",),
                              predict=lambda p, t0=t0: t0 / p.get("compute.hopper")))
    prof, details = fit.fit(cases, "training")
    assert prof.get("compute.hopper") == pytest.approx(0.8, rel=0.01)
    assert details["rows"]["compute.hopper"] == [c.id for c in cases]
    cv = fit.cross_validate(cases, "training")
    assert len(cv) == 12 and abs(cv["r0"]) < 0.03


def test_a_lower_tdp_lowers_sustained_compute():
    """A 500 W H100 computes slower than the 700 W part: f/f0 = ((500 - 70) / (700 - 70))^(1/3)."""
    full = _train()
    capped = _train(hardware={"base": "h100-sxm", "tdp": "500 W"})
    assert capped.step_time_s > full.step_time_s * 1.05
    assert capped.compute_breakdown_s["gemm"] / full.compute_breakdown_s["gemm"] == pytest.approx(
        ((700 - 70) / (500 - 70)) ** (1 / 3), rel=0.03)


def test_megatron_distributed_optimizer_reduces_once_per_step():
    """zero_stage 2 under megatron-core (distributed optimizer) reduce-scatters once per step; DeepSpeed
    ZeRO-2 every micro-batch: with 16 micro-batches DeepSpeed's data-parallel time is several times larger."""
    par = {"zero_stage": 2, "microbatch_seqs": 1, "dp": 8, "tp": 8}
    mc = _train(training={"framework": "megatron-core", "global_batch_seqs": 128}, parallel=par)
    ds = _train(training={"framework": "deepspeed", "global_batch_seqs": 128}, parallel=par)
    assert ds.step_time_breakdown_s["dp_comm"] > 3 * mc.step_time_breakdown_s["dp_comm"]


def test_nvl72_collectives_stay_in_the_nvlink_domain():
    """FSDP over 64 GB200 (one NVL72 domain, 4-GPU trays) never crosses the NIC: its data-parallel time
    is the same whatever the scale-out bandwidth."""
    base = {"model": "llama-3-70b", "hardware": "gb200", "training": {"seq_len": 8192, "global_batch_seqs": 64},
            "parallel": {"tp": 1, "pp": 1, "dp": 64, "zero_stage": 3, "microbatch_seqs": 1}}
    slow = api.estimate_training({**base, "cluster": {"num_devices": 64, "scale_out_bandwidth": "100 Gb/s"}})
    fast = api.estimate_training({**base, "cluster": {"num_devices": 64, "scale_out_bandwidth": "800 Gb/s"}})
    assert slow.step_time_breakdown_s["dp_comm"] == pytest.approx(fast.step_time_breakdown_s["dp_comm"], rel=1e-9)


def test_fsdp_latency_grows_with_ranks():
    """ZeRO-3 gathers layer by layer: each of the 3 calls per layer (gather forward, gather and
    reduce-scatter backward) pays (n_nodes - 1) scale-out hops of 5 us. Without overlap, 1,024 ranks
    (128 nodes) cost at least 3 x 31 x 120 x 5 us = 56 ms more per micro-batch than 64 ranks (8 nodes)."""
    def run(n):
        return api.estimate_training({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": n},
                                      "training": {"seq_len": 4096, "global_batch_seqs": n, "comm_overlap": False},
                                      "parallel": {"dp": n, "zero_stage": 3, "microbatch_seqs": 1}})
    diff = run(1024).step_time_breakdown_s["dp_comm"] - run(64).step_time_breakdown_s["dp_comm"]
    assert diff >= 3 * 31 * 120 * 5e-6


def test_scenario_names_a_profile(tmp_path):
    """`calibration: FILE` replaces the shipped profile; `none` is the uncalibrated model."""
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"training": {"parameters": {"compute.hopper": 0.5}}}))
    slow = _train(calibration=str(path))
    raw = _train(calibration="none")
    assert slow.compute_breakdown_s["gemm"] > 1.8 * raw.compute_breakdown_s["gemm"]


def test_shipped_profile_is_what_calibrate_derives():
    """catalog/calibration.yaml is exactly `flopcast calibrate training inference` on the shipped rows."""
    fresh = api.calibrate(["training", "inference"])
    for kind in ("training", "inference"):
        assert shipped(kind).as_dict() == pytest.approx(fresh[kind]["parameters"], abs=1e-4), kind


def test_calibrate_cli_writes_a_profile(tmp_path):
    """A user's RUNS.csv (id,source,scenario,metric,value) calibrates and the written profile loads."""
    sc = tmp_path / "run.yaml"
    sc.write_text(yaml.safe_dump({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
                                  "training": {"seq_len": 8192, "global_batch_seqs": 8},
                                  "parallel": {"dp": 8, "microbatch_seqs": 1}}))
    runs = tmp_path / "runs.csv"
    runs.write_text("id,source,scenario,metric,value\na,lab,run.yaml,tokens_per_s_per_device,7000\n"
                    "b,lab2,run.yaml,tokens_per_s_per_device,7400\n")
    out = tmp_path / "prof.yaml"
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "calibrate", str(runs), "--out", str(out), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    prof = Profile("training").with_params(yaml.safe_load(out.read_text())["training"]["parameters"])
    assert 0.2 <= prof.get("compute.hopper") <= 2.0 and math.isfinite(prof.get("stack.megatron-core"))
    bad = subprocess.run([sys.executable, "-m", "flopcast.cli", "calibrate", str(tmp_path / "nope.csv")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "runs: file not found" in bad.stderr


def test_a_parameter_one_source_informs_is_pooled():
    """Issue 22 calibration hygiene: stack.a is informed by source s0 alone and stack.b by s1 alone;
    each is pooled into stack.* (one value for both, their runs' common 0.8), while compute.hopper,
    informed by both sources, keeps its own name. A stack no run uses gets the pooled value too."""
    cases = []
    for i in range(8):
        src, stack = ("s0", "stack.a") if i % 2 else ("s1", "stack.b")
        cases.append(fit.Case(id=f"r{i}", source=src, model="m", hardware="h100-sxm", quantity="step_time_s",
                              measured=1.0 / 0.8, params=("compute.hopper", stack),
                              predict=lambda p, stack=stack: 1.0 / (p.get("compute.hopper") * p.get(stack))))
    prof, details = fit.fit(cases, "training")
    assert set(details["parameters"]) == {"compute.hopper", "stack.*"}
    assert prof.get("stack.a") == prof.get("stack.b") == prof.get("stack.unseen") == prof.get("stack.*")
    assert prof.get("compute.hopper") * prof.get("stack.a") == pytest.approx(0.8, rel=0.01)
    assert Profile("training").get("stack.a") == 1.0


def test_one_measurement_is_counted_once():
    """Issue 22 "no measurement twice": BLOOM-176B's TFLOP/s row restates the step time of the same log
    line; only the step-time row is validated and fitted, the other is listed as skipped."""
    from flopcast.validation import training

    cases, skipped = training.cases()
    ids = {c.id for c in cases}
    assert "BLOOM-176B-STEP" in ids and "BLOOM-176B-TFLOPS" not in ids
    assert any(s["id"] == "BLOOM-176B-TFLOPS" and "same measurement" in s["why"] for s in skipped)


def _engine_cases():
    """Serving-like synthetic rows: engine.a measured by sources s0 and s1, engine.b by s2 alone, every
    row also informed by compute.hopper; the true rate is 0.8 x (0.9 under engine.a)."""
    cases = []
    for i in range(9):
        src = f"s{i % 3}"
        engine = "engine.b" if src == "s2" else "engine.a"
        truth = 0.8 * (0.9 if engine == "engine.a" else 1.0)
        cases.append(fit.Case(id=f"r{i}", source=src, model="m", hardware="h100-sxm", quantity="output_tokens_per_s",
                              measured=100.0 * truth, params=("compute.hopper", engine),
                              predict=lambda p, e=engine: 100.0 * p.get("compute.hopper") * p.get(e)))
    return cases


def test_an_engine_one_source_informs_is_not_pooled():
    """Issue 22: an engine's host time and CUDA-graph coverage are modelled (catalog/frameworks.yaml), so an
    `engine.<name>` parameter only one source family informs is left at 1.0, not pooled into an
    `engine.*` that would carry other families' bias into it; one informed by two families is fitted."""
    prof, details = fit.fit(_engine_cases(), "inference")
    assert set(details["parameters"]) == {"compute.hopper", "engine.a"}
    assert prof.get("engine.b") == 1.0 and prof.get("engine.unseen") == 1.0
    assert prof.get("compute.hopper") * prof.get("engine.a") == pytest.approx(0.72, rel=0.02)


def test_ridge_is_chosen_by_nested_cross_validation():
    """Issue 22 calibration hygiene: choose_ridge takes the grid weight with the lowest leave-one-source-out
    median (ties: the larger); nested_cross_validate chooses each outer fold's weight on the other
    sources alone, so changing the held-out source's measurements cannot change its fold's choice."""
    cases = _engine_cases()
    ridge, medians = fit.choose_ridge(cases, "inference", grid=(0.01, 1.0))
    assert set(medians) == {0.01, 1.0} and medians[ridge] == min(medians.values())
    errors, chosen = fit.nested_cross_validate(cases, "inference", grid=(0.01, 1.0))
    assert set(errors) == {c.id for c in cases} and set(chosen) == {"s0", "s1", "s2"}
    assert all(r in (0.01, 1.0) for r in chosen.values())
    from dataclasses import replace

    moved = [replace(c, measured=c.measured * 3.0) if c.source == "s0" else c for c in cases]
    assert fit.nested_cross_validate(moved, "inference", grid=(0.01, 1.0))[1]["s0"] == chosen["s0"]
    assert fit.fit(cases, "inference", ridge=0.5)[1]["ridge"] == 0.5
    assert fit.fit(cases, "inference")[1]["ridge"] == fit.RIDGE_BY_KIND["inference"]
