"""The vectorised search pass (search/vector.py, estimate/training/arrays.py) against the scalar
code it replaces: the array memory equals size_plan's to the bit, the blocks enumerate exactly the
plans of plans_in_group, and on random scenarios (models dense and MoE, stacks with each gradient
reduction and allocator, pinned keys that send plans to the scalar path) the search returns the
exhaustive scalar pass's answer: the same best plans in the same order, the same figures, the same
Pareto front and the same counts."""

from __future__ import annotations

import functools
import json
import random

import numpy as np
import pytest

from flopcast import api
from flopcast import search as search_mod
from flopcast.estimate.training import arrays
from flopcast.estimate.training.step import block_sizing, size_plan
from flopcast.run import search as run_search
from flopcast.search.space import SearchSpace, plan_blocks, plan_groups, plans_in_group
from flopcast.specs.scenario import resolve

DENSE = {"model_type": "llama", "num_hidden_layers": 6, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1000}
MOE = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
       "num_key_value_heads": 4, "intermediate_size": 512, "num_local_experts": 4, "num_experts_per_tok": 2,
       "vocab_size": 1000}
MODELS = [DENSE, MOE, "llama-3.1-8b", "mixtral-8x7b", "gpt3-175b", "qwen2.5-7b"]
HARDWARE = ["h100-sxm", "a100-sxm-40gb", "a100-sxm-80gb"]
FRAMEWORKS = ["megatron-core", "torchtitan", "deepspeed", "maxtext", "nemo-automodel"]
# pinned keys: none (the array path), and keys that carry into every plan (activation offload
# sends the plans to the scalar path; a shard group changes the ZeRO group of the arrays)
PINS = [{}, {}, {}, {"activation_offload": 0.5}, {"shard_group": 2}, {"pp_schedule": "zero_bubble"}]


def _random_scenario(seed: int) -> dict:
    rng = random.Random(seed)
    devices = rng.choice([8, 16, 24, 32])
    model = rng.choice(MODELS)
    if model == "mixtral-8x7b":   # its space at 32 devices takes the exhaustive pass minutes
        devices = 8
    return {"name": f"vector-{seed}", "model": dict(model) if isinstance(model, dict) else model,
            "hardware": rng.choice(HARDWARE), "cluster": {"num_devices": devices},
            "training": {"seq_len": rng.choice([1024, 2048, 4096]), "global_batch_seqs": devices * rng.choice([1, 2]),
                         "framework": rng.choice(FRAMEWORKS),
                         "optimizer_moments_dtype": rng.choice(["fp32", "bf16"]),
                         "grad_reduce_dtype": rng.choice(["bf16", "fp32"])},
            "parallel": rng.choice(PINS)}


def _search_json(scenario: dict, monkeypatch: pytest.MonkeyPatch, *, prune: bool, top: int) -> str:
    monkeypatch.setattr(run_search, "search", functools.partial(search_mod.search, prune=prune))
    out = api.search_training(scenario, top=top, workers=1).to_dict()
    return json.dumps(out, sort_keys=True, default=str)


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_search_equals_the_exhaustive_scalar_pass(seed, monkeypatch):
    """On a random scenario the vectorised, pruned search (prune=True) returns exactly what the
    exhaustive scalar pass returns (prune=False: every plan sized by size_plan, every fitting plan
    simulated): best plans, tie order, every figure, the Pareto front, plans evaluated and fitting."""
    scenario = _random_scenario(seed)
    try:
        vector = _search_json(scenario, monkeypatch, prune=True, top=1 + seed % 4)
    except Exception as e:   # a scenario with no valid plan is refused the same way by both passes
        with pytest.raises(type(e)):
            _search_json(scenario, monkeypatch, prune=False, top=1 + seed % 4)
        return
    assert vector == _search_json(scenario, monkeypatch, prune=False, top=1 + seed % 4)


def _groups(rs, space: SearchSpace = SearchSpace()):
    return list(plan_groups(rs.model, num_devices=rs.cluster.num_devices, global_batch_seqs=rs.training.global_batch_seqs,
                            seq_len=rs.training.seq_len, scale_up_domain=rs.hardware.scale_up_domain, space=space))


@pytest.mark.parametrize("seed", range(4))
def test_blocks_enumerate_the_plans_of_the_group(seed):
    """The blocks of a group, flattened, are plans_in_group's plans in its order, and the plans of a
    block differ only in ZeRO stage and offload."""
    scenario = _random_scenario(100 + seed)
    rs = resolve(scenario | {"parallel": {}})
    space = SearchSpace(pinned=tuple(scenario["parallel"].items()))
    for group in _groups(rs, space):
        kw = {"num_devices": rs.cluster.num_devices, "global_batch_seqs": rs.training.global_batch_seqs,
              "seq_len": rs.training.seq_len, "space": space}
        blocks = list(plan_blocks(rs.model, group, **kw))
        assert [p for b in blocks for p in b.plans()] == list(plans_in_group(rs.model, group, **kw))
        for b in blocks:
            keys = {(p.tp, p.pp, p.dp, p.cp, p.ep, p.etp, p.sp, p.vpp, p.recompute, p.microbatch_seqs, p.pp_schedule)
                    for p in b.plans()}
            assert len(keys) == 1


@pytest.mark.parametrize("seed", range(8))
def test_array_memory_equals_size_plan_to_the_bit(seed):
    """arrays.rank_totals_bytes over a block's candidate ranks, maximised, is size_plan's memory of
    every plan of the block to the bit, and host_bytes_per_node decides the same fits verdict."""
    rs = resolve(_random_scenario(200 + seed) | {"parallel": {}})
    cache: dict = {}
    kw = {"devices_per_node": rs.cluster.devices_per_node,
          "scale_out_bandwidth_bytes_per_s": rs.cluster.scale_out_bandwidth_bytes_per_s}
    blocks = [b for group in _groups(rs)
              for b in plan_blocks(rs.model, group, num_devices=rs.cluster.num_devices,
                                   global_batch_seqs=rs.training.global_batch_seqs, seq_len=rs.training.seq_len)]
    for block in random.Random(seed).sample(blocks, min(40, len(blocks))):
        if True:
            rep = block.plan(0)
            bs = block_sizing(rs.model, rs.hardware, rep, rs.training, cache=cache, **kw)
            if bs.refused:
                continue
            g = rep.zero_group
            for i, plan in enumerate(block.plans()):
                s = size_plan(rs.model, rs.hardware, plan, rs.training, cache=cache, **kw)
                n = len(bs.params)
                zero = np.full(n, float(plan.zero_stage))
                off = np.full(n, float(arrays.OFFLOAD_CODES[plan.offload]))
                common = {"zero": zero, "offload": off, "zero_group": np.full(n, float(g)),
                          "expert_group": np.full(n, float(max(1, min(plan.expert_dp, g))))}
                totals = arrays.rank_totals_bytes(
                    **common, params=np.asarray(bs.params), expert_params=np.asarray(bs.expert_params),
                    n_layers=np.asarray(bs.n_layers, dtype=float), acts=np.asarray(bs.acts),
                    pipelined=np.full(n, plan.pp > 1), dualpipe=np.full(n, plan.pp_schedule == "dualpipe"),
                    optimizer_bytes=bs.optimizer_bytes, train=rs.training, stack=bs.work.ctx.stack)
                assert float(totals.max()) == s.memory_bytes, (plan, i)
                host = arrays.host_bytes_per_node(
                    **{k: v[:1] for k, v in common.items()}, heavy_params=np.asarray([bs.heavy_params]),
                    heavy_expert_params=np.asarray([bs.heavy_expert_params]), optimizer_bytes=bs.optimizer_bytes,
                    devices_per_node=rs.cluster.devices_per_node)
                cap = rs.hardware.host_memory_bytes_per_node
                fits = s.memory_bytes <= rs.hardware.hbm_capacity_bytes and not (cap and host[0] and host[0] > cap)
                assert fits == s.fits, (plan, i)
