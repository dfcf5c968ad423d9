"""Invariants of the training estimator over random valid plans (from the search's enumeration):
parts sum to totals, utilisations are fractions, more sharding never adds memory."""

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from flopcast import catalog
from flopcast.estimate.training import estimate_training
from flopcast.estimate.training.schedule import pipeline_refusal
from flopcast.search.space import enumerate_plans
from flopcast.specs.hf import from_hf_config
from flopcast.specs.workload import TrainingSpec

MODELS = {
    "dense": from_hf_config({"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 1024,
                             "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 2816,
                             "vocab_size": 32000}),
    "moe": from_hf_config({"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 512,
                           "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 1024,
                           "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 1000}),
}
TRAIN = TrainingSpec(seq_len=2048, global_batch_seqs=32)
# plans whose schedule cannot run their micro-batch count (e.g. DualPipe with m < 2 pp) are refused
# with an InvalidScenario (the search drops them)
PLANS = {k: [p for p in enumerate_plans(m, num_devices=16, global_batch_seqs=32, seq_len=2048, scale_up_domain=8)
             if not pipeline_refusal(p, 32 // (p.dp * p.microbatch_seqs))]
         for k, m in MODELS.items()}
HW = catalog.get_hardware("h100-sxm")


def run(kind, plan):
    return estimate_training(MODELS[kind], HW, plan, TRAIN, devices_per_node=8, scale_out_bandwidth_bytes_per_s=50e9)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(MODELS)), data=st.data())
def test_parts_sum_and_fractions(kind, data):
    """Step-time and memory breakdowns sum to their totals, the compute parts (gemm, attention,
    element-wise, loss, recompute, communication kernels) sum to the compute time; 0 < MFU <= HFU
    < 1; all finite."""
    plan = data.draw(st.sampled_from(PLANS[kind]))
    e = run(kind, plan)
    assert math.isfinite(e.step_time_s) and e.step_time_s > 0
    assert sum(e.step_time_breakdown_s.values()) == e.step_time_s or math.isclose(
        sum(e.step_time_breakdown_s.values()), e.step_time_s, rel_tol=1e-12)
    assert math.isclose(sum(e.memory_breakdown_bytes.values()), e.memory_per_device_bytes, rel_tol=1e-12)
    assert all(v >= 0 for v in e.step_time_breakdown_s.values())
    assert math.isclose(sum(e.compute_breakdown_s.values()), e.step_time_breakdown_s["compute"], rel_tol=1e-12)
    assert all(v >= 0 for v in e.compute_breakdown_s.values()) and e.compute_breakdown_s["gemm"] > 0
    assert 0 < e.mfu <= e.hfu < 1


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(sorted(MODELS)), data=st.data())
def test_more_sharding_never_adds_model_state_memory(kind, data):
    """ZeRO 0 -> 1 -> 2 never increases weights + gradients + optimizer per device (ZeRO-3 is left
    out: its two gathered layers can outweigh the saving when few ranks share); offloading never
    increases device memory."""
    plan = data.draw(st.sampled_from([p for p in PLANS[kind] if p.offload == "none"]))
    states = []
    for z in (0, 1, 2):
        e = run(kind, dataclasses.replace(plan, zero_stage=z))
        states.append(sum(e.memory_breakdown_bytes[k] for k in ("weights", "gradients", "optimizer")))
    assert states[0] >= states[1] >= states[2]
    if plan.zero_stage >= 1:
        off = run(kind, dataclasses.replace(plan, offload="cpu"))
        assert off.memory_per_device_bytes <= run(kind, plan).memory_per_device_bytes
