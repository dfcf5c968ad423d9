"""The pruned search (search/prune.py) against the exhaustive pass, the pieces it rests on (the worst
rank's memory from the candidate ranks only, the step-time lower bound, the running Pareto front
and threshold), and issue 21's property: no plan a search evaluates has a step below its schedule's
lower bounds."""

from __future__ import annotations

import functools
import json
import random

import pytest

from flopcast import api
from flopcast import search as search_mod
from flopcast.estimate.training import estimate_training
from flopcast.estimate.training.schedule import pipeline_refusal
from flopcast.estimate.training.step import size_plan, sized_lower_bound_s, sized_step_s
from flopcast.run import search as run_search
from flopcast.search import pareto
from flopcast.search.prune import ROUNDING_FRAC, Fastest, Front
from flopcast.search.space import enumerate_plans
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.scenario import resolve

DENSE = {"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1000}
MOE = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
       "num_key_value_heads": 4, "intermediate_size": 512, "num_local_experts": 4, "num_experts_per_tok": 2,
       "vocab_size": 1000}
# (model, devices, batch, seq, hardware): small and memory-tight jobs, dense and MoE, tied embeddings
SETUPS = [("llama-3.1-8b", 16, 32, 4096, "h100-sxm"), ("llama-3.1-8b", 8, 16, 8192, "a100-sxm-40gb"),
          ("gpt3-175b", 32, 32, 2048, "a100-sxm-80gb"), (DENSE, 16, 16, 1024, "h100-sxm"),
          (MOE, 8, 8, 1024, "h100-sxm"), ("mixtral-8x7b", 16, 16, 4096, "h100-sxm"),
          ("llama-3.1-70b", 32, 32, 4096, "h100-sxm"), ("qwen2.5-7b", 24, 48, 2048, "h100-sxm")]


def _scenario(setup: tuple) -> dict:
    model, devices, batch, seq, hw = setup
    return {"name": "prune", "model": model if isinstance(model, str) else dict(model), "hardware": hw,
            "cluster": {"num_devices": devices}, "training": {"seq_len": seq, "global_batch_seqs": batch}}


def _search_json(setup: tuple, monkeypatch: pytest.MonkeyPatch, *, prune: bool, top: int) -> str:
    monkeypatch.setattr(run_search, "search", functools.partial(search_mod.search, prune=prune))
    out = api.search_training(_scenario(setup), top=top, workers=1).to_dict()
    return json.dumps(out, sort_keys=True, default=str)


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: f"{s[0] if isinstance(s[0], str) else 'hf'}-{s[1]}")
def test_pruned_search_equals_the_exhaustive_pass(setup, monkeypatch):
    """The pruned search returns exactly the exhaustive pass's answer: the same best plans in the
    same (tie) order, the same Pareto front, the same figures and the same counts of plans
    evaluated and fitting."""
    top = 1 + SETUPS.index(setup) % 5
    assert (_search_json(setup, monkeypatch, prune=True, top=top)
            == _search_json(setup, monkeypatch, prune=False, top=top))


def _random_plans(seed: int, k: int):
    """k plans drawn from the whole space of a random small setup (with its resolved scenario)."""
    rng = random.Random(seed)
    setup = rng.choice(SETUPS)
    rs = resolve(_scenario(setup))
    plans = list(enumerate_plans(rs.model, num_devices=rs.cluster.num_devices,
                                 global_batch_seqs=rs.training.global_batch_seqs, seq_len=rs.training.seq_len,
                                 scale_up_domain=rs.hardware.scale_up_domain))
    return rs, rng.sample(plans, min(k, len(plans)))


def _kw(rs) -> dict:
    return {"devices_per_node": rs.cluster.devices_per_node}


@pytest.mark.parametrize("seed", range(6))
def test_worst_rank_candidates_give_the_worst_rank(seed):
    """The search sizes only the ranks that can be the most loaded (memory.worst_rank_candidates);
    its memory equals the maximum over every rank that estimate_training reports, to the bit, and a
    plan fits in the search exactly when estimate_training's verdict fits within capacity."""
    rs, plans = _random_plans(seed, 60)
    cache: dict = {}
    for plan in plans:
        m = rs.training.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
        if pipeline_refusal(plan, m):
            continue
        s = size_plan(rs.model, rs.hardware, plan, rs.training, cache=cache,
                      scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, **_kw(rs))
        e = estimate_training(rs.model, rs.hardware, plan, rs.training, devices_per_node=rs.cluster.devices_per_node,
                              scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)
        assert s.memory_bytes == max(r["total_bytes"] for r in e.memory_per_rank) == e.memory_per_device_bytes
        assert s.fits == (e.fits and e.memory_per_device_bytes <= e.memory_capacity_bytes)


@pytest.mark.parametrize("seed", range(6))
def test_step_lower_bound_is_below_the_step(seed):
    """The bounds the search prunes with never exceed the plan's step time (with the rounding
    margin; the cheap one, the pipelined part's, is below the whole), and the whole bound equals the
    step (to rounding) for plans without a pipeline."""
    rs, plans = _random_plans(100 + seed, 80)
    cache: dict = {}
    for plan in plans:
        s = size_plan(rs.model, rs.hardware, plan, rs.training, cache=cache,
                      scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, **_kw(rs))
        if not s.fits:
            continue
        bound = sized_lower_bound_s(s, rs.model, rs.hardware, plan, rs.training, **_kw(rs))
        cheap = sized_lower_bound_s(s, rs.model, rs.hardware, plan, rs.training, pipelined_only=True, **_kw(rs))
        step = sized_step_s(s, rs.model, rs.hardware, plan, rs.training, cache=cache, **_kw(rs))
        assert cheap <= bound and bound * (1 - ROUNDING_FRAC) <= step
        if plan.pp == 1:
            assert bound == pytest.approx(step, rel=1e-12)


def test_front_and_threshold_match_brute_force():
    """The running Pareto front answers 'is a strictly faster point with at most this memory
    known?' as a scan of every point does, and its points are search.pareto's front; the running
    threshold is the top-th smallest step."""
    rng = random.Random(7)
    for _ in range(200):
        pts = [(float(rng.randint(1, 12)), float(rng.randint(1, 12))) for _ in range(rng.randint(1, 25))]
        front, fastest = Front(), Fastest(3)
        for s, mem in pts:
            front.add(s, mem)
            fastest.add(s)
        for s, mem in ((float(a), float(b)) for a in range(14) for b in range(14)):
            assert front.dominated(s, mem) == any(p < s and q <= mem for p, q in pts)
        want = pareto([(s, mem, 0, i) for i, (s, mem) in enumerate(pts)])
        assert list(zip(front.steps, front.mems, strict=True)) == [(k[0], k[1]) for k in want]
        steps = sorted(s for s, _ in pts)
        assert fastest.threshold_s == (steps[2] if len(steps) >= 3 else float("inf"))


@pytest.mark.parametrize("seed", range(8))
def test_no_plan_of_a_search_beats_its_schedules_bounds(seed):
    """Issue 21: for every plan of random search spaces (every schedule, DualPipe included), the
    pipelined part of the step is at least one micro-batch's pass through every stage (forward and
    backward) with its transfers, and at least the busiest rank's work with its transfers; the step
    is at least the pipelined part."""
    rs, plans = _random_plans(200 + seed, 80)
    for plan in plans:
        m = rs.training.global_batch_seqs // (plan.dp * plan.microbatch_seqs)
        if plan.pp == 1 or pipeline_refusal(plan, m):
            continue
        e = estimate_training(rs.model, rs.hardware, plan, rs.training, devices_per_node=rs.cluster.devices_per_node,
                              scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)
        pipe = e.pipeline
        assert pipe is not None
        n = 2 if pipe.schedule == "dualpipev" else plan.vpp if pipe.schedule == "interleaved" else 1
        one_pass = sum(f + b + 2 * n * pipe.transfer_s for f, b, _ in pipe.fbw_s)
        if pipe.schedule not in ("zero_bubble", "dualpipe", "dualpipev"):
            one_pass += sum(w for _, _, w in pipe.fbw_s)    # the backward is whole
        busiest = max(pipe.busy_s[r] + pipe.p2p_s[r] for r in range(plan.pp))
        assert pipe.step_s >= one_pass * (1 - 1e-9)
        assert pipe.step_s >= busiest * (1 - 1e-12)
        assert e.step_time_s >= pipe.step_s * (1 - 1e-12)


def test_dualpipe_with_one_micro_batch_is_refused():
    """Issue 21: DualPipe at pp 4 with one micro-batch is refused by the estimator (not charged a
    bubble below one micro-batch's pass), and the search never yields a plan it refuses as fitting."""
    rs = resolve(_scenario(("llama-3.1-8b", 32, 8, 4096, "h100-sxm")))
    plan = ParallelPlan(tp=1, pp=4, dp=8, pp_schedule="dualpipe", microbatch_seqs=1)
    assert pipeline_refusal(plan, 1) is not None
    s = size_plan(rs.model, rs.hardware, plan, rs.training, cache={},
                  scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, **_kw(rs))
    assert not s.fits


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b", "interleaved", "zero_bubble", "zb_h2", "dualpipe", "dualpipev"])
def test_peak_inflight_needs_no_timing(schedule):
    """The micro-batches in flight per rank counted along the schedule's orders equal the simulated
    timeline's, with equal stages (what the memory model uses) and with random stage times and
    transfers, for every pp up to 8 (vpp 2 and 3 interleaved) and m from 1 to 3 pp."""
    from flopcast.estimate.pipeline import peak_inflight, refusal, simulate

    rng = random.Random(11)
    for pp in range(1, 9):
        for vpp in ((2, 3) if schedule == "interleaved" else (1,)):
            for m in range(1, 3 * pp + 1):
                if refusal(schedule, pp, vpp, m):
                    continue
                one = [1 / 3] * pp
                want = simulate(schedule, pp, vpp, m, one, one, one, 0.0).peak_inflight
                assert peak_inflight(schedule, pp, vpp, m) == want
                f, b, w = ([rng.uniform(0.05, 2.0) for _ in range(pp)] for _ in range(3))
                assert peak_inflight(schedule, pp, vpp, m) == simulate(schedule, pp, vpp, m, f, b, w,
                                                                      rng.uniform(0, 0.3)).peak_inflight
