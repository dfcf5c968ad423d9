"""Weight-gradient accumulation of stacks that leave it to autograd (catalog/frameworks.yaml
grad_accumulation: autograd, the 2022 DeepSpeed engine): every micro-batch's weight gradients are
added into param.grad in place, 6 bytes a parameter at the device's memory bandwidth."""

from dataclasses import replace

import pytest

from flopcast import api
from flopcast.estimate.efficiency import training_stack
from flopcast.estimate.training.constants import GRAD_ACCUM_BYTES_PER_PARAM
from flopcast.estimate.training.layer import Cost
from flopcast.estimate.training.stage import grad_accumulation_s
from flopcast.run.training import training_inputs
from flopcast.specs.scenario import resolve

BLOOMISH = {"model_type": "gpt2", "n_layer": 24, "n_embd": 8192, "n_head": 64, "vocab_size": 250880,
            "n_positions": 2048}


def _scenario(framework: str, mbs: int = 1) -> dict:
    return {"model": dict(BLOOMISH), "hardware": "a100-sxm-80gb", "cluster": {"num_devices": 32},
            "training": {"seq_len": 2048, "global_batch_seqs": 64, "framework": framework, "flash_attention": False},
            "parallel": {"tp": 8, "pp": 4, "dp": 1, "zero_stage": 1, "recompute": "full", "microbatch_seqs": mbs}}


def test_only_autograd_stacks_accumulate():
    """The deepspeed stack accumulates through autograd; Megatron-Core (fused into the weight-gradient
    GEMM) and the stacks without the key do not: their time is 0."""
    assert training_stack("deepspeed").grad_accumulation == "autograd"
    assert training_stack("megatron-core").grad_accumulation == "fused"
    sc, embed = Cost(params=1e9), Cost(params=2e8, embed_s=1.0)
    train, plan = training_inputs(resolve(_scenario("deepspeed")))
    assert grad_accumulation_s(sc, embed, plan, train, training_stack("megatron-core"), 2e12) == 0.0
    assert grad_accumulation_s(sc, embed, plan, train, training_stack("deepspeed"), 2e12) == pytest.approx(
        1e9 * GRAD_ACCUM_BYTES_PER_PARAM / 2e12)


def test_zero2_and_zero3_take_the_gradients_per_microbatch():
    """From ZeRO-2 on DeepSpeed's gradient hooks move every micro-batch's gradients into its
    reduction buckets (stage_1_and_2.py create_reduce_and_remove_grad_hooks): no param.grad add."""
    train, plan = training_inputs(resolve(_scenario("deepspeed")))
    sc, embed, ds = Cost(params=1e9), Cost(), training_stack("deepspeed")
    assert grad_accumulation_s(sc, embed, plan, train, ds, 1e12) > 0
    for stage in (2, 3):
        assert grad_accumulation_s(sc, embed, replace(plan, zero_stage=stage), train, ds, 1e12) == 0.0


def test_embedding_share_is_left_out():
    """The embedding's gradient is already accumulated by its own cost every micro-batch: a stage
    holding all of it (embed_s equal to the embedding's) adds only its other parameters, a
    DualPipe pair holding half of it adds half the embedding back."""
    train, plan = training_inputs(resolve(_scenario("deepspeed")))
    ds = training_stack("deepspeed")
    embed = Cost(params=2e8, embed_s=1.0)
    first = Cost(params=1e9 + 2e8, embed_s=1.0)
    pair = Cost(params=1e9 + 1e8, embed_s=0.5)
    assert grad_accumulation_s(first, embed, plan, train, ds, 1e12) == pytest.approx(1e9 * 6 / 1e12)
    assert grad_accumulation_s(pair, embed, plan, train, ds, 1e12) == pytest.approx(1e9 * 6 / 1e12)


def test_fine_tuning_accumulates_only_trainable_parameters():
    """Under LoRA / QLoRA the frozen base has no gradient: only the adapters are added."""
    train, plan = training_inputs(resolve(_scenario("deepspeed")))
    ft = replace(train, finetune=object())
    sc = Cost(params=1e9, trainable=1e6)
    assert grad_accumulation_s(sc, Cost(), plan, ft, training_stack("deepspeed"), 1e12) == pytest.approx(1e6 * 6 / 1e12)


def test_step_charges_a_fixed_cost_per_microbatch():
    """In a training estimate the part shows in the compute breakdown as m adds of the slowest
    stage's parameters, the same per micro-batch whatever its size (a cost per micro-batch, not per
    token): at least 6 layers' 12 h^2 / tp parameters x 6 bytes at the device's peak bandwidth each.
    Megatron-Core has no such part."""
    per_mb = []
    for mbs in (1, 4):
        r = api.estimate_training(_scenario("deepspeed", mbs))
        per_mb.append(r.compute_breakdown_s["grad_accum"] / r.num_microbatches)
        assert "grad_accum" not in api.estimate_training(_scenario("megatron-core", mbs)).compute_breakdown_s
    assert per_mb[0] == pytest.approx(per_mb[1], rel=1e-12)
    peak_bw = resolve(_scenario("deepspeed")).hardware.hbm_bandwidth_bytes_per_s
    assert per_mb[0] >= 6 * 12 * 8192 ** 2 / 8 * GRAD_ACCUM_BYTES_PER_PARAM / peak_bw
