"""Training estimator: plan rules, memory against published formulas, step-time structure."""

from __future__ import annotations

import copy

import pytest

from flopcast import api, catalog, units
from flopcast.errors import FlopcastError, InvalidScenario, UnknownName

GPT175 = {"model_type": "gpt2", "n_layer": 96, "n_embd": 12288, "n_head": 96, "vocab_size": 51200,
          "n_positions": 2048}


def scenario(model=None, hardware="a100-sxm-80gb", devices=64, training=None, parallel=None):
    return {
        "model": model if model is not None else dict(GPT175),
        "hardware": hardware,
        "cluster": {"num_devices": devices},
        "training": {"seq_len": 2048, "global_batch_seqs": 64, **(training or {})},
        "parallel": {"tp": 8, "pp": 8, "dp": 1, **(parallel or {})},
    }


def est(**kw):
    return api.estimate_training(scenario(**kw))


# ---------------------------------------------------------------- plan rules
@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"devices": 128}, "tp*pp*dp*cp = 8*8*1*1 = 64 must equal cluster.num_devices = 128"),
        ({"parallel": {"tp": 5, "pp": 8, "dp": 1}, "devices": 40}, "5 must divide the 96 attention heads"),
        ({"parallel": {"pp": 97, "tp": 1, "dp": 1}, "devices": 97}, "97 pipeline stages exceed the 96 layers"),
        ({"parallel": {"vpp": 13}}, "pp*vpp = 8*13 = 104 virtual stages exceed the 96 layers"),
        ({"parallel": {"microbatch_seqs": 3}}, "3 must divide the per-replica batch global_batch_seqs/dp = 64/1 = 64"),
        ({"training": {"global_batch_seqs": 63}, "parallel": {"tp": 8, "pp": 1, "dp": 8}}, "63 is not divisible by dp = 8"),
        ({"parallel": {"ep": 2}}, "has no MoE layers"),
    ],
)
def test_plan_rules_name_the_rule_and_numbers(kw, fragment):
    """Each divisibility rule is an InvalidScenario naming the rule and the numbers."""
    with pytest.raises(InvalidScenario) as e:
        est(**kw)
    assert fragment in str(e.value)


def test_kv_head_and_expert_rules():
    """tp must divide (or be a multiple of) the kv heads; ep must divide experts and dp*cp."""
    gqa = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 1536, "num_attention_heads": 12,
           "num_key_value_heads": 3, "intermediate_size": 4096, "vocab_size": 1000}
    with pytest.raises(InvalidScenario, match="must divide the 3 key/value heads"):
        est(model=gqa, devices=2, parallel={"tp": 2, "pp": 1, "dp": 1})
    moe = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8,
           "num_key_value_heads": 8, "intermediate_size": 1024, "num_local_experts": 8, "vocab_size": 1000}
    with pytest.raises(InvalidScenario, match="3 must divide the 8 experts"):
        est(model=moe, devices=6, parallel={"tp": 1, "pp": 1, "dp": 6, "ep": 3}, training={"global_batch_seqs": 6})
    with pytest.raises(InvalidScenario, match="ep\\*etp = 4\\*1 must divide tp\\*cp\\*dp = 1\\*1\\*2 = 2"):
        est(model=moe, devices=2, parallel={"tp": 1, "pp": 1, "dp": 2, "ep": 4})


def test_unknown_parallel_fields_and_values():
    """Unknown keys and values get suggestions."""
    with pytest.raises(UnknownName, match="did you mean 'recompute'"):
        est(parallel={"recompue": "full"})
    with pytest.raises(UnknownName, match="full"):
        est(parallel={"recompute": "ful"})
    with pytest.raises(InvalidScenario, match="zero_stage"):
        est(parallel={"zero_stage": 4})


# ---------------------------------------------------------------- memory
def megatron_model_state_bytes(L, h, V, a, ffn, tp, pp, dp, dist_opt, untied=False, kv=None, swiglu=False):
    """Megatron-LM report_theoretical_memory (megatron/training/theoretical_memory_usage.py),
    re-derived here as an independent reference."""
    kv = kv or a
    gated = 1.5 if swiglu else 1.0
    layers = 2 * L * h * h * ((1 + kv / a) * 1.0 + ffn / h * gated + 2 / h + 1 / (L * h))
    emb = h * V
    shard = (layers / pp + emb) / tp
    if untied and pp == 1:
        shard += emb / tp
    return shard * (6 + 12 / dp if dist_opt else 18)


@pytest.mark.parametrize(
    ("model", "tp", "pp", "dp", "zero", "kw"),
    [
        (GPT175, 8, 8, 1, 0, {"L": 96, "h": 12288, "V": 51200, "a": 96, "ffn": 4 * 12288}),
        (GPT175, 8, 4, 2, 1, {"L": 96, "h": 12288, "V": 51200, "a": 96, "ffn": 4 * 12288}),
        ("llama-3.1-70b", 8, 4, 4, 1, {"L": 80, "h": 8192, "V": 128256, "a": 64, "kv": 8, "ffn": 28672,
                                        "swiglu": True, "untied": True}),
        ("llama-2-7b", 2, 1, 8, 1, {"L": 32, "h": 4096, "V": 32000, "a": 32, "ffn": 11008, "swiglu": True,
                                     "untied": True}),
    ],
)
def test_model_states_within_5pct_of_megatron(model, tp, pp, dp, zero, kw):
    """weights + gradients + optimizer on the most-loaded device is within 5% of Megatron's formula
    (18 B/param, or 6 + 12/d with the distributed optimizer = ZeRO-1). The formula's fp32 main
    gradients are Megatron-LM's for bf16 (arguments.py turns accumulate_allreduce_grads_in_fp32 on),
    i.e. training.grad_reduce_dtype fp32; with bf16 reduction (Megatron-Core's grad_reduce_in_fp32
    False, NeMo's performance recipes) the gradient buffer is 16-bit: half the gradients."""
    devices = tp * pp * dp
    plan = {"tp": tp, "pp": pp, "dp": dp, "zero_stage": zero}
    r = est(model=model, devices=devices, training={"global_batch_seqs": 8 * dp, "grad_reduce_dtype": "fp32"},
            parallel=plan)
    mine = sum(r.memory_breakdown_bytes[k] for k in ("weights", "gradients", "optimizer"))
    ref = megatron_model_state_bytes(tp=tp, pp=pp, dp=dp, dist_opt=zero == 1, **kw)
    assert mine == pytest.approx(ref, rel=0.05)
    bf16 = est(model=model, devices=devices, training={"global_batch_seqs": 8 * dp}, parallel=plan)
    assert bf16.memory_breakdown_bytes["gradients"] == pytest.approx(r.memory_breakdown_bytes["gradients"] / 2)


def test_korthikanti_activation_formula_without_flash():
    """Korthikanti et al. 2022 Table 2, GPT block with dropout, no FlashAttention, per layer:
    SP + selective recompute 34 s b h / t bytes; SP without recompute s b h (34/t + 5 a s/(h t))."""
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    base = {"model": dict(GPT175, n_layer=8), "devices": 8,
            "training": {"flash_attention": False, "dropout": True, "global_batch_seqs": 1},
            "parallel": {"tp": t, "pp": 1, "dp": 1, "sp": True}}
    def with_recompute(rc):
        return api.estimate_training(scenario(**copy.deepcopy(base) | {"parallel": base["parallel"] | {"recompute": rc}}))

    sel = with_recompute("selective")
    none = with_recompute("none")
    head = s * b * 51200 / t * 6  # fp32 + bf16 logits on the (only) stage
    per_layer_sel = (sel.memory_breakdown_bytes["activations"] - head) / 8
    per_layer_none = (none.memory_breakdown_bytes["activations"] - head) / 8
    lse = s * b * (a / t) * 4  # flopcast also keeps the softmax statistics (4 B per head-token)
    assert per_layer_sel == pytest.approx(34 * s * b * h / t, rel=0.01)
    assert per_layer_none - lse == pytest.approx(s * b * h * (34 / t + 5 * a * s / (h * t)), rel=0.01)


def test_memory_orderings():
    """ZeRO stages (DeepSpeed semantics: ZeRO-2 shards gradients), recompute, sequence and context
    parallelism each reduce what they should."""
    z = [sum(est(devices=64, parallel={"tp": 8, "pp": 1, "dp": 8, "zero_stage": k},
                 training={"framework": "deepspeed"}).memory_breakdown_bytes[p]
             for p in ("weights", "gradients", "optimizer")) for k in (0, 1, 2, 3)]
    assert z[0] > z[1] > z[2] > z[3]
    acts = {rc: est(parallel={"recompute": rc}).memory_breakdown_bytes["activations"]
            for rc in ("none", "selective", "full")}
    assert acts["full"] < acts["selective"] <= acts["none"]
    sp = est(parallel={"sp": True, "recompute": "none"}).memory_breakdown_bytes["activations"]
    assert sp < acts["none"]
    llama = "llama-3-8b"
    cp1 = est(model=llama, devices=8, training={"seq_len": 8192, "global_batch_seqs": 8},
              parallel={"tp": 1, "pp": 1, "dp": 8})
    cp2 = est(model=llama, devices=8, training={"seq_len": 8192, "global_batch_seqs": 4},
              parallel={"tp": 1, "pp": 1, "dp": 4, "cp": 2})
    half = cp1.memory_breakdown_bytes["activations"] / 2
    assert cp2.memory_breakdown_bytes["activations"] == pytest.approx(half, rel=0.02)
    assert cp2.step_time_breakdown_s["cp_comm"] >= 0


def test_moe_experts_sharded_by_ep():
    """Mixtral 8x7B: expert parallelism divides the expert weights; the all-to-all shows up."""
    common = {"model": "mixtral-8x7b", "hardware": "h100-sxm", "devices": 64,
              "training": {"seq_len": 4096, "global_batch_seqs": 64}}
    ep1 = est(**common, parallel={"tp": 2, "pp": 1, "dp": 32, "ep": 1})
    ep8 = est(**common, parallel={"tp": 2, "pp": 1, "dp": 32, "ep": 8})
    assert ep8.memory_breakdown_bytes["weights"] < ep1.memory_breakdown_bytes["weights"] / 3
    assert ep8.step_time_breakdown_s["ep_comm"] > 0 and ep1.step_time_breakdown_s["ep_comm"] == 0


def test_infeasible_plan_is_a_result():
    """A plan that does not fit is fits: false with the shortfall and the largest component."""
    r = est(devices=8, parallel={"tp": 8, "pp": 1, "dp": 1}, training={"global_batch_seqs": 8})
    assert not r.fits
    assert "more than the 80 GiB of a100-sxm-80gb" in r.infeasible_reason
    assert r.memory_per_device_bytes > 80 * units.GiB


def test_offload_moves_optimizer_to_host():
    """ZeRO-Offload: no optimizer state on the device, host memory and transfer time reported."""
    r = est(model="llama-2-7b", hardware="h100-sxm", devices=8, training={"global_batch_seqs": 8},
            parallel={"tp": 1, "pp": 1, "dp": 8, "zero_stage": 2, "offload": "cpu"})
    assert r.memory_breakdown_bytes["optimizer"] == 0
    assert r.host_memory_per_node_bytes > 0 and r.step_time_breakdown_s["offload"] > 0


def test_interleaved_activations_capped_by_the_steps_chunks():
    """Interleaved 1F1B: the first rank holds min(m v, 2(p - 1) + (v - 1) p + 1) virtual-stage
    micro-batches of L/(p v) layers. With m = p that is m whole stages, the same as plain 1F1B;
    with m >> p it is p + (p - 1)/v stages (Korthikanti et al. 2022, sec. 4.2.3)."""
    def acts(vpp, batch):
        r = est(devices=64, parallel={"tp": 8, "pp": 8, "dp": 1, "vpp": vpp, "recompute": "none"},
                training={"global_batch_seqs": batch})
        return r.memory_breakdown_bytes["activations"]
    assert acts(4, 8) == pytest.approx(acts(1, 8), rel=1e-9)          # m = p
    assert acts(4, 64) == pytest.approx(acts(1, 64) * (8 + 7 / 4) / 8, rel=1e-9)
    assert acts(2, 64) > acts(4, 64) > acts(1, 64)


def test_zero2_gradient_memory_follows_when_the_stack_reduces():
    """ZeRO-2 stores a gradient shard only where every micro-batch reduce-scatters its own
    (DeepSpeed, PyTorch FSDP SHARD_GRAD_OP): 1/dp of ZeRO-1's gradient memory there. Megatron-Core's
    distributed optimizer reduces once per step, so it accumulates whole gradients under any stage."""
    kw = {"model": "llama-3-8b", "hardware": "h100-sxm", "devices": 64}
    def grads(framework, zero):
        return est(**kw, training={"seq_len": 4096, "global_batch_seqs": 64, "framework": framework},
                   parallel={"tp": 2, "pp": 4, "dp": 8, "zero_stage": zero}).memory_breakdown_bytes["gradients"]
    assert grads("deepspeed", 2) == pytest.approx(grads("deepspeed", 1) / 8)
    assert grads("megatron-core", 2) == pytest.approx(grads("megatron-core", 1))


def test_flagship_llama3_405b_near_metas_mfu_at_the_memory_limit():
    """The README's flagship (Meta's Llama 3.1 405B plan: tp 8, pp 16, dp 128, interleaved, one
    layer fewer on the first and last stage, fp32 gradient accumulation and reduction, no activation
    checkpointing) lands within 10% of Meta's 41% MFU (Llama 3 paper, Table 4: 400 TFLOP/s per GPU).
    Meta ran it on 80 GiB H100s, so its memory verdict is fits or marginal (issue 21): the busiest
    rank's device total, less the allocator cache PyTorch gives back before it raises out-of-memory
    (memory.memory_verdict), lies below capacity x (1 + MEMORY_BAND_FRAC), the memory model's
    leave-one-source-out error (it was pinned at 80 GiB +/- 0.01% under the unsourced 10%-of-
    activations fragmentation; the calibrated 13.5%-of-allocated fragmentation and every rank
    checked put the second rank at ~94 GiB with its cache, ~83 GiB without)."""
    from pathlib import Path

    from flopcast.estimate.training.memory import MEMORY_BAND_FRAC
    r = api.estimate_training(Path(__file__).parents[2] / "examples" / "llama3-405b-pretrain.yaml")
    assert abs(r.mfu / 0.41 - 1) <= 0.10
    assert r.memory_verdict in ("fits", "marginal") and r.fits
    busiest = max(r.memory_per_rank, key=lambda x: x["total_bytes"])
    assert busiest["total_bytes"] == pytest.approx(r.memory_per_device_bytes)
    need = busiest["total_bytes"] - busiest["fragmentation_bytes"]
    assert need <= (1 + MEMORY_BAND_FRAC) * r.memory_capacity_bytes


def test_recompute_modules_trade_memory_for_time():
    """Selective recompute of the listed modules (Megatron-Core --recompute-modules) drops what they
    would keep: the norm outputs (layernorm), MLA's Q/K/V (mla_up_proj), the expert activation output
    (moe_act); each costs a little recompute time, and dropping core_attn saves its recompute."""
    kw = {"model": "deepseek-v2", "hardware": "h100-sxm", "devices": 64,
          "training": {"seq_len": 4096, "global_batch_seqs": 64}}

    def run(mods):
        return est(**kw, parallel={"tp": 1, "pp": 4, "dp": 16, "ep": 8, "recompute": "selective",
                                   "recompute_modules": mods})
    base = run(["core_attn"])
    prev = base.memory_breakdown_bytes["activations"]
    for mods in (["core_attn", "layernorm"], ["core_attn", "layernorm", "mla_up_proj"],
                 ["core_attn", "layernorm", "mla_up_proj", "moe_act"]):
        r = run(mods)
        assert r.memory_breakdown_bytes["activations"] < prev
        assert r.compute_breakdown_s["recompute"] > base.compute_breakdown_s["recompute"]
        prev = r.memory_breakdown_bytes["activations"]
    assert run(["layernorm"]).compute_breakdown_s["recompute"] < base.compute_breakdown_s["recompute"]
    assert r.hfu > base.hfu * 0.99   # the up-projections' FLOPs are counted as hardware FLOPs


def test_bf16_optimizer_moments():
    """Adam moments in bf16 (Megatron-Core --exp-avg-dtype bf16): optimizer state 8 instead of 12
    bytes per parameter."""
    kw = {"model": "llama-3-8b", "hardware": "h100-sxm", "devices": 8,
          "training": {"seq_len": 4096, "global_batch_seqs": 8}, "parallel": {"tp": 1, "pp": 1, "dp": 8}}
    fp32 = est(**kw).memory_breakdown_bytes["optimizer"]
    bf16 = api.estimate_training(scenario(**{**kw, "training": {**kw["training"], "optimizer_moments_dtype": "bf16"}}))
    assert bf16.memory_breakdown_bytes["optimizer"] == pytest.approx(fp32 * 8 / 12)


def test_dualpipe_ranks_hold_two_stages_and_average_their_work():
    """DualPipe: rank r runs stage r one way and stage p-1-r the other, so the head's extra work is
    shared with the embedding's rank: a heavy last stage slows DualPipe less than 1F1B; each rank
    holds the parameters of both its stages."""
    kw = {"model": "deepseek-v3", "hardware": "h800-sxm", "devices": 2048,
          "training": {"seq_len": 4096, "global_batch_seqs": 15360, "precision": "fp8", "mtp_layers": 1}}
    plan = {"tp": 1, "pp": 16, "dp": 128, "ep": 64, "recompute": "selective",
            "recompute_modules": ["layernorm", "mla_up_proj", "moe_act"]}
    one = est(**kw, parallel=plan | {"pp_schedule": "zero_bubble"})
    dual = est(**kw, parallel=plan | {"pp_schedule": "dualpipe"})
    assert dual.step_time_breakdown_s["compute"] < 0.95 * one.step_time_breakdown_s["compute"]
    assert dual.memory_breakdown_bytes["weights"] > 1.5 * one.memory_breakdown_bytes["weights"]


def test_deepseek_v3_as_deepseek_ran_it():
    """DeepSeek-V3 on 2,048 H800 (DualPipe pp 16, EP 64, FP8, MTP, DeepSeek's recompute list and
    bf16 moments; examples/deepseek-v3-pretrain.yaml) fits in 80 GB and lands within 15% of the
    published 2.664M GPU-hours for 14.8T tokens (1,543 tokens/s per GPU)."""
    from pathlib import Path
    r = api.estimate_training(Path(__file__).parents[2] / "examples" / "deepseek-v3-pretrain.yaml")
    published = 14.8e12 / (2.664e6 * 3600)
    assert r.fits
    assert abs(r.tokens_per_s_per_device / published - 1) <= 0.15


def test_hybrid_sharding_shards_within_the_group_and_replicates_across():
    """FSDP2 hybrid sharding / MiCS (parallel.shard_group g < dp): the model states are divided by g,
    not dp, and the gradient reduction is a reduce-scatter inside the group plus an all-reduce of
    each shard across the dp/g groups; g must divide dp*cp and needs ZeRO >= 1."""
    sc = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 256},
          "training": {"seq_len": 8192, "global_batch_seqs": 256, "framework": "torchtitan"},
          "parallel": {"tp": 1, "pp": 1, "dp": 256, "zero_stage": 3, "recompute": "full"}}
    full = api.estimate_training(sc)
    hybrid = api.estimate_training(copy.deepcopy(sc) | {"parallel": sc["parallel"] | {"shard_group": 32}})
    assert hybrid.memory_breakdown_bytes["optimizer"] == pytest.approx(full.memory_breakdown_bytes["optimizer"] * 8)
    assert hybrid.step_time_breakdown_s["dp_comm"] != full.step_time_breakdown_s["dp_comm"]
    with pytest.raises(InvalidScenario, match="shard_group: 24 must divide dp"):
        api.estimate_training(sc | {"parallel": sc["parallel"] | {"shard_group": 24}})
    with pytest.raises(InvalidScenario, match="zero_stage >= 1"):
        api.estimate_training(sc | {"parallel": sc["parallel"] | {"shard_group": 32, "zero_stage": 0}})


def test_activation_offload_moves_activations_to_the_host():
    """parallel.activation_offload f: f of the stashed activations (all but the loss's logits, which
    live only while a micro-batch turns from forward to backward) leave the device (two layers of
    transfer buffers stay), host memory per node grows by f x stash x devices per node, and the
    transfers beyond the forward/backward compute they hide behind show up as offload time."""
    sc = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 256},
          "training": {"seq_len": 8192, "global_batch_seqs": 256},
          "parallel": {"tp": 1, "pp": 1, "dp": 256, "zero_stage": 3, "recompute": "none"}}
    none = api.estimate_training(sc)
    half = api.estimate_training(sc | {"parallel": sc["parallel"] | {"activation_offload": 0.5}})
    acts = none.memory_breakdown_bytes["activations"]
    logits = next(o["saved_bytes"] for o in none.ops if o["name"] == "head/loss")
    assert acts / 2 < half.memory_breakdown_bytes["activations"] < acts / 2 * 1.1
    assert half.host_memory_per_node_bytes == pytest.approx((acts - logits) / 2 * 8)
    assert half.step_time_breakdown_s["offload"] >= 0 and none.step_time_breakdown_s["offload"] == 0
    with pytest.raises(InvalidScenario, match="activation_offload"):
        api.estimate_training(sc | {"parallel": sc["parallel"] | {"activation_offload": 1.5}})


def test_activation_offload_under_full_recompute_moves_the_checkpoints():
    """Under recompute full, activation_offload 1 moves the checkpointed layer inputs to the host
    (ZeRO-Infinity's checkpoint offload; MaxText's remat policy offloading decoder_layer_input): the
    host holds exactly the layers' inputs of the micro-batches in flight (tokens x hidden x 2 bytes a
    layer), and the device keeps the layer being recomputed, the loss's logits and two layer inputs
    of transfer buffers. The transfers per micro-batch are the layer inputs, so on a host link that
    moves them faster than the forward and backward compute they are hidden."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 8192, "global_batch_seqs": 16},
          "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3, "recompute": "full", "microbatch_seqs": 2}}
    kept = api.estimate_training(sc)
    off = api.estimate_training(sc | {"parallel": sc["parallel"] | {"activation_offload": 1.0}})
    layer_input = 2 * 8192 * 4096 * 2   # one micro-batch of 2 sequences, hidden 4096, bf16
    assert off.host_memory_per_node_bytes == pytest.approx(32 * layer_input * 8)
    drop = kept.memory_breakdown_bytes["activations"] - off.memory_breakdown_bytes["activations"]
    assert drop == pytest.approx(32 * layer_input - 2 * layer_input)
    assert off.step_time_breakdown_s["offload"] == 0 and off.step_time_s == pytest.approx(kept.step_time_s)


def test_balanced_layout_evens_the_stages_work():
    """pipeline_layout: balanced splits the layers so that the largest stage's work (embedding on the
    first, head, loss and MTP modules on the last) is smallest: equal layers without extras split
    evenly; with DeepSeek-V3's MTP module on the last stage it is faster than the default split and
    reports the counts it chose."""
    from flopcast.estimate.training import balanced_layer_counts
    assert balanced_layer_counts([1.0] * 12, 4, 0.0, 0.0) == [3, 3, 3, 3]
    counts = balanced_layer_counts([1.0] * 12, 4, 0.0, 2.0)          # the best bound is 4 layers' work
    assert sum(counts) == 12 and max(counts[:3] + [counts[3] + 2]) == 4
    kw = {"model": "deepseek-v3", "hardware": "h800-sxm", "devices": 2048,
          "training": {"seq_len": 4096, "global_batch_seqs": 15360, "precision": "fp8", "mtp_layers": 1}}
    plan = {"tp": 1, "pp": 16, "dp": 128, "ep": 64, "pp_schedule": "dualpipe", "recompute": "selective",
            "recompute_modules": ["layernorm", "mla_up_proj", "moe_act"]}
    default = est(**kw, parallel=plan)
    bal = est(**kw, parallel=plan | {"pipeline_layout": "balanced"})
    assert bal.step_time_s < default.step_time_s
    counts = next(a.value for a in bal.assumptions if a.name == "pipeline_layout")
    assert sum(counts) == 61 and len(counts) == 16
    assert bal.plan.to_dict()["pipeline_layout"] == "balanced"


@pytest.mark.parametrize("extra", [{"recompute": "full"}, {"activation_offload": 0.5}])
def test_balanced_layout_leaves_no_stage_empty(extra):
    """pipeline_layout: balanced never leaves a pipeline stage without layers when a split with
    every stage holding one exists: Llama-3.1-8B over 8 stages (its 128k-entry head outweighs 4
    layers) used to put all 32 layers on the first 7 stages, and full recompute or activation
    offload then failed on the empty last stage. Every stage gets a layer and the estimate
    completes."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 8192, "global_batch_seqs": 64},
          "parallel": {"tp": 1, "pp": 8, "dp": 1, "pipeline_layout": "balanced", "zero_stage": 1, **extra}}
    r = api.estimate_training(sc)
    counts = next(a.value for a in r.assumptions if a.name == "pipeline_layout")
    assert sum(counts) == 32 and len(counts) == 8 and min(counts) >= 1
    assert r.step_time_s > 0 and r.memory_per_device_bytes > 0


def test_balanced_layer_counts_fill_every_stage():
    """With at least as many layers as stages, the balanced split gives each stage a layer even when
    the last stage's extra work alone exceeds the bound the others would need; with fewer layers
    than stages some stage must stay empty and the split still covers every layer."""
    from flopcast.estimate.training import balanced_layer_counts
    counts = balanced_layer_counts([1.0] * 32, 8, 0.3, 6.0)
    assert sum(counts) == 32 and min(counts) >= 1 and counts[-1] == 1
    few = balanced_layer_counts([1.0] * 3, 4, 0.0, 0.0)
    assert sum(few) == 3 and len(few) == 4


def test_moe_capacity_factor_pads_every_expert():
    """training.moe_capacity_factor c: tokens beyond c x the mean expert load are dropped and every
    expert's input is padded to it, so the expert GEMMs do c x the balanced work whatever the
    routing; c = 1 is the balanced (forced_balance) case."""
    kw = {"model": "mixtral-8x7b", "hardware": "h100-sxm", "devices": 64,
          "training": {"seq_len": 4096, "global_batch_seqs": 64}}
    par = {"tp": 1, "pp": 1, "dp": 64, "ep": 8, "zero_stage": 3}
    def gemm(**t):
        r = est(**{**kw, "training": kw["training"] | t}, parallel=par)
        return r.compute_breakdown_s["gemm"]
    balanced, c1, c2 = gemm(moe_routing="forced_balance"), gemm(moe_capacity_factor=1.0), gemm(moe_capacity_factor=2.0)
    assert c1 == pytest.approx(balanced, rel=1e-9)
    assert c2 > 1.3 * c1
    with pytest.raises(InvalidScenario, match="moe_capacity_factor"):
        est(**{**kw, "training": kw["training"] | {"moe_capacity_factor": 0.5}}, parallel=par)


# ---------------------------------------------------------------- time
def test_bubble_is_at_most_p_minus_1_over_v_slowest_stages():
    """Interleaved 1F1B: the simulated bubble is at most (p - 1)/v x the slowest stage's micro-batch
    work (Narayanan et al.'s closed form, exact when every stage is as slow as the slowest: see
    tests/unit/test_pipeline.py), and above that over the fastest rank's, here whose last stage
    carries the head; the ranks' work, sends and idle time add up to the pipelined part."""
    r = est(parallel={"vpp": 3})
    bd = r.step_time_breakdown_s
    per_mb = (bd["compute"] + bd["tp_comm"] + bd["pp_comm"] + bd["ep_comm"] + bd["cp_comm"]) / r.num_microbatches
    ranks = r.pipeline.to_dict()["ranks"]
    fastest = min(row["busy_s"] + row["p2p_s"] for row in ranks) / r.num_microbatches
    assert (8 - 1) / 3 * fastest * 0.5 < bd["pp_bubble"] <= (8 - 1) / 3 * per_mb * (1 + 1e-9)
    for row in ranks:
        assert row["busy_s"] + row["p2p_s"] + row["bubble_s"] == pytest.approx(r.pipeline.step_s, rel=1e-12)


def test_flops_utilisation_and_time_to_train():
    """MFU <= HFU <= 1; full recompute adds one forward (HFU/MFU = 4/3); time to train and device
    hours follow from tokens/s."""
    r = est(parallel={"recompute": "full"}, training={"total_tokens": 3e11})
    assert 0 < r.mfu < r.hfu < 1
    assert r.hfu / r.mfu == pytest.approx(4 / 3, rel=1e-9)
    assert r.time_to_train_s == pytest.approx(3e11 / r.tokens_per_s)
    assert r.device_hours == pytest.approx(r.time_to_train_s * 64 / 3600)
    assert sum(r.step_time_breakdown_s.values()) == pytest.approx(r.step_time_s)


def test_fp8_speeds_up_matmuls_only():
    """FP8 on H100 is faster than BF16 but less than 2x (attention, element-wise, comm unchanged)."""
    kw = {"model": "llama-3-8b", "hardware": "h100-sxm", "devices": 8,
          "training": {"seq_len": 8192, "global_batch_seqs": 32}, "parallel": {"tp": 1, "pp": 1, "dp": 8}}
    bf16 = est(**kw)
    fp8 = est(**copy.deepcopy(kw) | {"training": kw["training"] | {"precision": "fp8"}})
    assert 1.0 < bf16.step_time_s / fp8.step_time_s < 2.0


def test_hardware_efficiency_overrides_replace_the_catalog():
    """hardware: {base: h100-sxm, efficiency: {...}}: a user's measured matmul, attention and memory
    fractions replace the catalog's; a lower matmul fraction slows the GEMMs by the ratio (large
    shapes); bad fractions and unknown keys are one-line errors naming the field."""
    import pytest

    from flopcast import api
    from flopcast.errors import FlopcastError

    base = {"model": "llama-3.1-8b", "cluster": {"num_devices": 8},
            "training": {"seq_len": 8192, "global_batch_seqs": 64},
            "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 1, "recompute": "selective"}}
    ref = api.estimate_training(base | {"hardware": "h100-sxm"})
    slow = api.estimate_training(base | {"hardware": {"base": "h100-sxm", "efficiency": {
        "matmul": {"bf16": 0.4015}, "attention": {"flash3": [0.325, 0.225]}}}})
    assert slow.compute_breakdown_s["gemm"] > 1.9 * ref.compute_breakdown_s["gemm"]
    assert slow.compute_breakdown_s["attention"] == pytest.approx(2 * ref.compute_breakdown_s["attention"], rel=1e-3)
    assert any(a.name == "hardware.efficiency" for a in slow.assumptions)
    for bad, needle in (({"matmul": {"bf16": 1.5}}, "efficiency.matmul.bf16"), ({"matmull": {}}, "did you mean"),
                        ({"attention": {"flash3": [0.5]}}, "[forward, backward]"), ({"memory": 0}, "efficiency.memory")):
        with pytest.raises(FlopcastError, match=needle.replace("[", r"\[")):
            api.estimate_training(base | {"hardware": {"base": "h100-sxm", "efficiency": bad}})


def test_zero_offload_13b_on_one_32gb_v100():
    """ZeRO-Offload's headline case (Ren et al. 2021): a 13B model trains on one 32 GB V100 when the
    fp32 gradients and the optimizer state live in host memory (2 B of fp16 weights per parameter
    stay on the device); without offload it needs ~220 GiB. ZeRO-Infinity with ZeRO-3 moves the
    parameters off the device too, leaving the working layers."""
    def run(offload, zero=1):
        return api.estimate_training({
            "model": "llama-2-13b", "hardware": "v100-sxm-32gb", "cluster": {"num_devices": 1},
            "training": {"seq_len": 1024, "global_batch_seqs": 8, "precision": "fp16", "attention_kernel": "flash2"},
            "parallel": {"dp": 1, "zero_stage": zero, "offload": offload, "recompute": "full"}})
    assert not run("none").fits
    cpu = run("cpu")
    assert cpu.fits and cpu.memory_breakdown_bytes["gradients"] == 0 and cpu.memory_breakdown_bytes["optimizer"] == 0
    assert cpu.host_memory_per_node_bytes == pytest.approx(13.0e9 * 16, rel=0.05)   # fp32 grads + Adam state
    inf = run("nvme", zero=3)
    assert inf.memory_breakdown_bytes["weights"] < 0.1 * cpu.memory_breakdown_bytes["weights"]
    assert inf.nvme_per_device_bytes == pytest.approx(13.0e9 * 12, rel=0.05)


def test_lora_and_qlora_fine_tuning():
    """LoRA freezes the base: gradients and Adam state only for the rank-r adapters of the targeted
    linears, r (in + out) each; the backward skips the frozen weights' gradient GEMMs (GEMM time
    well under full training's 3 passes); QLoRA stores the base at ~0.53 B per weight (NF4 + scales)."""
    def run(ft=None):
        sc = {"model": "llama-2-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
              "training": {"seq_len": 4096, "global_batch_seqs": 8},
              "parallel": {"tp": 8, "dp": 1, "sp": True, "zero_stage": 1}}
        if ft:
            sc["training"]["finetune"] = ft
        return api.estimate_training(sc)
    full, lora, qlora = run(), run({"method": "lora", "rank": 16}), run({"method": "qlora", "rank": 16})
    # adapters on the fused qkv, o, fused gate/up and down linears (Megatron / NeMo LoRA): on a
    # column-parallel linear A (in x r) is whole and B (r x out/t) split; on a row-parallel one A is split
    h, qkv, f, L, t = 8192, 8192 + 2 * 1024, 28672, 80, 8
    per_layer = 16 * ((h + qkv / t) + (h / t + h) + (h + 2 * f / t) + (f / t + h))
    assert lora.memory_breakdown_bytes["optimizer"] == pytest.approx(L * per_layer * 12, rel=0.02)
    assert lora.memory_breakdown_bytes["gradients"] < 0.01 * full.memory_breakdown_bytes["gradients"]
    assert lora.compute_breakdown_s["gemm"] < 0.85 * full.compute_breakdown_s["gemm"]
    assert qlora.memory_breakdown_bytes["weights"] == pytest.approx(
        lora.memory_breakdown_bytes["weights"] * (0.5 + 2 / 64) / 2, rel=0.05)
    with pytest.raises(FlopcastError, match="training.finetune.target_modules"):
        run({"method": "lora", "target_modules": ["attn"]})


def test_mtp_modules_are_counted_when_trained():
    """DeepSeek-V3's multi-token-prediction module (num_nextn_predict_layers = 1) is outside
    params_total (transformers does not build it) and reported as params_mtp: one decoder layer like
    the last, a 2h -> h projection and three norms (~11.6B). training.mtp_layers: 1 adds its layer,
    projection and a second pass through the shared head and loss to the last stage."""
    from flopcast.estimate import counts

    m = catalog.get_model("deepseek-v3")
    h = m.hidden_size
    last = sum(p.params for p in counts.layer_parts(m.layers[-1], m))
    assert m.mtp_layers == 1 and counts.params_mtp(m) == last + 2 * h * h + 3 * h
    assert api.show_model("deepseek-v3").to_dict()["params_mtp"] == counts.params_mtp(m)
    sc = {"model": "deepseek-v3", "hardware": "h800-sxm", "cluster": {"num_devices": 256},
          "training": {"seq_len": 4096, "global_batch_seqs": 512},
          "parallel": {"tp": 1, "pp": 8, "dp": 32, "ep": 32, "microbatch_seqs": 1}}
    without = api.estimate_training(sc)
    with_mtp = api.estimate_training({**sc, "training": {**sc["training"], "mtp_layers": 1}})
    assert with_mtp.step_time_s > without.step_time_s
    assert any(a.name == "training.mtp_layers" for a in without.assumptions)
