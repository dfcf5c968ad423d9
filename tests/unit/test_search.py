"""Plan search: the space equals the validator's, ranking and Pareto front, same numbers as train,
backends agree, empty spaces suggest device counts, sweeps write one row per combination."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import subprocess
import sys

import pytest

from flopcast import api
from flopcast.errors import FlopcastError, InvalidScenario
from flopcast.search.space import CARRIED, PIPELINE_SCHEDULES, SearchSpace, divisors, enumerate_plans
from flopcast.specs.hf import from_hf_config
from flopcast.specs.parallel import OFFLOAD, RECOMPUTE, ParallelPlan, validate_plan

SMALL = {"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1000}
MOE = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
       "num_key_value_heads": 4, "intermediate_size": 512, "num_local_experts": 4, "num_experts_per_tok": 2,
       "vocab_size": 1000}


def scenario(model=None, devices=16, batch=16, seq=1024, hardware="h100-sxm"):
    return {"model": model or dict(SMALL), "hardware": hardware, "cluster": {"num_devices": devices},
            "training": {"seq_len": seq, "global_batch_seqs": batch}}


@pytest.mark.parametrize(("cfg", "devices", "batch"), [(SMALL, 16, 16), (SMALL, 12, 24), (MOE, 8, 8)])
def test_space_equals_the_validator(cfg, devices, batch):
    """Enumerated plans are exactly the plans of a brute-force grid that validate_plan accepts
    (tp within the 8-device scale-up domain, sp only with tp > 1, offload only with ZeRO >= 1; every
    pipeline schedule; for MoE, expert tensor parallelism equal to tp or folded to 1; expert
    all-to-all overlapped when ep > 1)."""
    model = from_hf_config(cfg)
    moe = cfg is MOE
    seq = 1024
    got = list(enumerate_plans(model, num_devices=devices, global_batch_seqs=batch, seq_len=seq, scale_up_domain=8))
    assert len(got) == len(set(got)) and got
    assert all(p.ep_comm_overlap == (p.ep > 1) for p in got)
    shape = {(p.tp, p.pp, p.dp, p.cp, p.ep, p.microbatch_seqs, p.vpp, p.pp_schedule, p.etp) for p in got}
    want = set()
    d = divisors(devices)
    for tp, pp, dp, cp, ep, mb, vpp, sched, etp in itertools.product(
            d, d, d, d, range(1, 9), divisors(batch), range(1, 9), PIPELINE_SCHEDULES, (None, 1)):
        if tp > 8 or (etp == 1 and not (moe and tp > 1)):
            continue
        try:   # the plan's own rules refuse it when built, the model's and the batch's in validate_plan
            plan = ParallelPlan(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, microbatch_seqs=mb, pp_schedule=sched,
                                etp=etp)
            validate_plan(plan, model, num_devices=devices, global_batch_seqs=batch, seq_len=seq)
        except InvalidScenario:
            continue
        want.add((tp, pp, dp, cp, ep, mb, vpp, sched, etp))
    assert shape == want
    if moe:
        assert any(s[-1] == 1 for s in shape)                  # folded plans are in the space
    assert {s[-2] for s in shape if s[1] > 1} == set(PIPELINE_SCHEDULES)
    # every structural plan comes with every allowed (sp, zero, recompute, offload) choice
    options = {(p.sp, p.zero_stage, p.recompute, p.offload) for p in got if p.tp > 1}
    allowed = {(sp, z, rc, off) for sp, z, rc, off in itertools.product((False, True), range(4), RECOMPUTE, OFFLOAD)
               if not (off != "none" and z == 0)}
    assert not options or options == allowed
    assert len(got) == sum(len(allowed) // (1 if tp > 1 else 2) for tp, *_ in shape)


@pytest.fixture(scope="module")
def small_result():
    return api.search_training(scenario(), top=5, workers=1)


def test_ranking_and_pareto(small_result):
    """Plans fit and come in the recommendation's order (flopcast.search.recommend_order: ties of the
    fastest by validation, headroom, simplicity; the rest fastest first), and the Pareto front is
    non-dominated in (step time, memory)."""
    from flopcast.search import recommend_order

    r = small_result
    assert r.plans and all(p.fits for p in r.plans)
    items = [(p.step_time_s, p.memory_per_device_bytes, p.plan) for p in r.plans]
    assert recommend_order(items, capacity_bytes=r.plans[0].memory_capacity_bytes, cls=r.model_class,
                           time_band_frac=r.time_band_frac, memory_band_frac=r.memory_band_frac) == list(range(len(items)))
    front = [(p.step_time_s, p.memory_per_device_bytes) for p in r.pareto]
    for i, (t, mem) in enumerate(front):
        assert not any(t2 <= t and m2 < mem for j, (t2, m2) in enumerate(front) if j != i)
    assert r.pareto[0].step_time_s == min(p.step_time_s for p in r.plans)
    assert r.num_fitting <= r.num_evaluated


def test_search_numbers_equal_train(small_result):
    """The best plan's figures are what `flopcast train` reports for that plan (one implementation)."""
    best = small_result.plans[0]
    sc = scenario()
    sc["parallel"] = best.plan.to_dict()
    again = api.estimate_training(sc)
    assert again.step_time_s == best.step_time_s
    assert again.memory_per_device_bytes == best.memory_per_device_bytes


def test_local_processes_agree_with_one_process():
    """Chunking over processes does not change the result."""
    one = api.search_training(scenario(), top=3, workers=1).to_dict()
    two = api.search_training(scenario(), top=3, workers=2).to_dict()
    assert one["plans"] == two["plans"]


def test_ray_backend_agrees_with_local():
    """backend=ray on a local Ray instance (2 CPUs) returns the same plans as the local backend."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local = api.search_training(scenario(), top=3, workers=1).to_dict()
        remote = api.search_training(scenario(), top=3, backend="ray").to_dict()
        assert remote["plans"] == local["plans"] and remote["num_evaluated"] == local["num_evaluated"]
    finally:
        ray.shutdown()


def test_empty_space_suggests_device_counts():
    """A device count with no valid factorisation says why and names the nearest counts that work."""
    with pytest.raises(InvalidScenario) as e:
        api.search_training(scenario(devices=9, batch=16), workers=1)
    msg = str(e.value)
    assert "no valid plan for 9 devices" in msg and "nearest device counts with plans: " in msg
    assert "8" in msg.split("nearest device counts with plans:")[1]


def test_sweep_writes_a_row_per_combination(tmp_path):
    """A sweep over two axes runs one search per combination and writes them as CSV."""
    base = tmp_path / "base.yaml"
    base.write_text(json.dumps(scenario()))
    out = tmp_path / "sweep.csv"
    res = api.sweep_training(str(base), vary=["hardware=h100-sxm,a100-sxm-80gb", "cluster.num_devices=8,16"],
                             workers=1, out=str(out))
    assert len(res["rows"]) == 4
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["hardware"] for r in rows} == {"h100-sxm", "a100-sxm-80gb"}
    assert all(float(r["step_time_s"]) > 0 for r in rows)


def test_cli_search_json(tmp_path):
    """`flopcast search --json` prints plans best first and num_evaluated."""
    sc = tmp_path / "s.yaml"
    sc.write_text(json.dumps(scenario()))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "search", str(sc), "--json", "--top", "2",
                        "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert len(d["plans"]) == 2 and d["num_evaluated"] > 0
    assert {"tp", "pp", "dp", "step_time_s", "mfu", "fits"} <= set(d["plans"][0])


def test_search_space_options_restrict():
    """A restricted space (no offload, ZeRO 1 only) enumerates a subset."""
    model = from_hf_config(SMALL)
    full = sum(1 for _ in enumerate_plans(model, num_devices=8, global_batch_seqs=8, seq_len=1024, scale_up_domain=8))
    small = sum(1 for _ in enumerate_plans(model, num_devices=8, global_batch_seqs=8, seq_len=1024, scale_up_domain=8,
                                           space=SearchSpace(zero_stages=(1,), offload=("none",))))
    assert 0 < small < full


def test_pinned_fields_are_exactly_the_filtered_full_space():
    """Pinning fields (tp=2, zero_stage=1, recompute=selective) enumerates exactly the plans of the
    full space that carry those values, in the same order."""
    model = from_hf_config(SMALL)
    pins = (("tp", 2), ("zero_stage", 1), ("recompute", "selective"))
    kw = dict(num_devices=16, global_batch_seqs=16, seq_len=1024, scale_up_domain=8)
    full = [p for p in enumerate_plans(model, **kw) if all(getattr(p, k) == v for k, v in pins)]
    pinned = list(enumerate_plans(model, **kw, space=SearchSpace(pinned=pins)))
    assert pinned == full and len(pinned) > 0


@pytest.mark.parametrize("pins", [
    (("shard_group", 4),),                                   # does not divide dp cp in every group
    (("shard_group", 2), ("zero_stage", 0)),                 # sharding without ZeRO: nothing
    (("pipeline_layout", [2, 2, 2, 2]),),                    # pp x vpp = 4 only
    (("recompute_modules", ["layernorm"]),),                 # selective recompute only
    (("offload", "cpu"),),                                   # ZeRO >= 1 only
    (("vpp", 2),),                                           # pipelines only
])
def test_pinned_keys_never_build_a_refused_plan(pins):
    """With keys pinned (--fix, a phase's parallel keys) the search builds only plans ParallelPlan
    accepts and loses none: it yields exactly the plans of the unpinned space that hold the pinned
    values of the keys it varies, with the carried keys set, that ParallelPlan and validate_plan accept."""
    model = from_hf_config(SMALL)
    kw = dict(num_devices=16, global_batch_seqs=16, seq_len=1024, scale_up_domain=8)
    options = dict(zero_stages=(0, 1, 2, 3), offload=OFFLOAD)
    got = list(enumerate_plans(model, **kw, space=SearchSpace(pinned=pins, **options)))
    carried = {k: tuple(v) if isinstance(v, list) else v for k, v in pins if k in CARRIED}
    want = []
    for p in enumerate_plans(model, **kw, space=SearchSpace(**options)):
        if any(k not in CARRIED and getattr(p, k) != v for k, v in pins):
            continue
        try:
            q = dataclasses.replace(p, **carried)
            validate_plan(q, model, num_devices=16, global_batch_seqs=16, seq_len=1024)
        except InvalidScenario:
            continue
        want.append(q)
    assert got == want
    assert bool(got) == (dict(pins).get("zero_stage") != 0)


def test_search_holds_fixed_keys():
    """Keys passed as `fixed` (CLI --fix) stay at their values; the best plans carry them and the
    assumptions say so; an impossible or invalid value is a one-line error naming it."""
    res = api.search_training(scenario() | {"parallel": {"tp": 4}}, workers=1, top=3, fixed={"tp": 2, "pp": 2})
    assert res.plans and all(p.plan.tp == 2 and p.plan.pp == 2 for p in res.plans)
    assert any(a.name == "fixed" and "tp=2" in str(a.value) for a in res.assumptions)
    with pytest.raises(InvalidScenario, match="parallel.pp=3"):
        api.search_training(scenario(), workers=1, fixed={"pp": 3})
    with pytest.raises(FlopcastError, match="parallel.recompute"):
        api.search_training(scenario(), workers=1, fixed={"recompute": "sometimes"})


def test_cli_search_fix(tmp_path):
    """`flopcast search --fix tp=2` returns only tp-2 plans; a malformed --fix exits 2."""
    sc = tmp_path / "s.yaml"
    sc.write_text(json.dumps(scenario()))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "search", str(sc), "--json", "--workers", "1",
                        "--fix", "tp=2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {p["tp"] for p in json.loads(r.stdout)["plans"]} == {2}
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "search", str(sc), "--fix", "tp"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--fix" in r.stderr


def test_plan_without_a_parallel_section_uses_the_best_plan():
    """`flopcast plan` on a training scenario without `parallel` reports the search's best plan (the
    same step time as the search) and says so in the assumptions."""
    rep = api.plan(scenario())
    best = api.search_training(scenario(), top=1, workers=1).plans[0]
    assert rep.training is not None and rep.training.step_time_s == pytest.approx(best.step_time_s)
    assert "training" not in rep.pending_sections
    assert any(a.name == "parallel" and "fastest" in a.why for a in rep.training.assumptions)


def test_plans_carry_the_models_error_band():
    """Each searched plan's step time comes with the calibration profile's leave-one-source-out error
    band; the fastest plan is within it of itself, and a plan slower than fastest x (1 + e)/(1 - e) is not."""
    from flopcast import api

    d = api.search_training("examples/gpt3-175b-search.yaml", top=5, workers=1).to_dict()
    e = d["model_error_frac"]
    assert 0 < e < 0.5 and d["time_band_frac"] == e
    best = min(d["plans"], key=lambda p: p["step_time_s"])
    assert best["within_error_of_best"] and best["step_time_s_band"][0] < best["step_time_s"] < best["step_time_s_band"][1]
    for p in d["plans"]:
        assert p["within_error_of_best"] == (p["step_time_s"] <= best["step_time_s"] * (1 + e) / (1 - e))


def test_a_space_past_the_limit_is_searched_structure_first(monkeypatch):
    """Past the plan limit the search enumerates every structure (tp, cp, pp, ep, etp, schedule,
    vpp) with a reduced option set, then refines the best structures with every option; it says so,
    and on a small space it finds the exhaustive search's best step time."""
    from flopcast.specs import limits
    full = api.search_training(scenario(), top=3, workers=1)
    monkeypatch.setattr(limits, "MAX_PLANS", 4000)
    two = api.search_training(scenario(), top=3, workers=1)
    assert any(a.name == "search_passes" for a in two.assumptions)
    assert min(p.step_time_s for p in two.plans) == pytest.approx(min(p.step_time_s for p in full.plans), rel=1e-9)
    assert two.num_evaluated < full.num_evaluated


def test_deepseek_v3_search_chooses_expert_parallelism():
    """DeepSeek-V3 on 2,048 H800 with DualPipe on 16 stages fixed: the best plan uses expert
    parallelism (ep > 1), as every published DeepSeek-V3 plan does."""
    from pathlib import Path
    res = api.search_training(Path(__file__).parents[2] / "examples" / "deepseek-v3-pretrain.yaml", top=3,
                              fixed={"pp": 16, "pp_schedule": "dualpipe", "tp": 1})
    assert res.plans and res.plans[0].plan.ep > 1
