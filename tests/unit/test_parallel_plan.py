"""ParallelPlan refuses, when it is built, every plan that no model, cluster or batch could run; the
rules that need the model, the cluster or the batch stay in validate_plan. Each refusal is one
InvalidScenario (or UnknownName) line naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs.hf import from_hf_config
from flopcast.specs.parallel import ParallelPlan, pinned_plan_keys, plan_fields, plan_from_mapping, validate_plan

DENSE = {"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 1024, "vocab_size": 1000}
MOE = {"model_type": "mixtral", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
       "num_key_value_heads": 4, "intermediate_size": 512, "num_local_experts": 4, "num_experts_per_tok": 2,
       "vocab_size": 1000}


def refused(match: str, **fields) -> str:
    """The one-line message ParallelPlan(**fields) is refused with; it names `match`."""
    with pytest.raises((InvalidScenario, UnknownName)) as e:
        ParallelPlan(**fields)
    msg = str(e.value)
    assert match in msg and "\n" not in msg
    return msg


def test_default_plan_is_accepted():
    """The defaults (one device, selective recompute, ZeRO-1) are a valid plan."""
    assert ParallelPlan().num_devices == 1


@pytest.mark.parametrize("key", ["tp", "pp", "dp", "cp", "ep", "vpp", "microbatch_seqs"])
@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_degrees_are_positive_integers(key, value):
    """Every parallel degree and the micro-batch is an integer >= 1 (no booleans, no fractions)."""
    refused(f"parallel.{key}: expected a positive integer", **{key: value})


@pytest.mark.parametrize("key", ["etp", "shard_group"])
def test_optional_degrees_are_none_or_positive(key):
    """etp and shard_group are None (their defaults: tp, dp x cp) or an integer >= 1."""
    refused(f"parallel.{key}", **{key: 0})


def test_named_options_come_from_their_sets():
    """zero_stage is 0..3; recompute, offload and pp_schedule are names from closed sets."""
    refused("parallel.zero_stage", zero_stage=4)
    refused("parallel.recompute", recompute="some")
    refused("parallel.offload", offload="disk")
    refused("parallel.pp_schedule", pp_schedule="chimera")     # gpipe is a schedule now


@pytest.mark.parametrize("share", [-0.1, 1.5, "half", True])
def test_activation_offload_is_a_share(share):
    """activation_offload is a share of the activations in [0, 1]."""
    refused("parallel.activation_offload", activation_offload=share)


def test_recompute_modules_need_selective_recompute():
    """recompute_modules other than the default name modules of RECOMPUTE_MODULES and apply to
    selective recompute only (full recomputes everything, none nothing)."""
    refused("selective", recompute="full", recompute_modules=("layernorm",))
    refused("selective", recompute="none", recompute_modules=("moe_act",))
    refused("parallel.recompute_modules", recompute_modules=("mlp",))
    refused("parallel.recompute_modules", recompute_modules=())
    assert ParallelPlan(recompute="full").recomputes("mlp")        # the default modules go with any recompute


def test_interleaving_needs_a_pipeline():
    """vpp > 1 (interleaved 1F1B) needs pp > 1."""
    refused("parallel.vpp: interleaving (vpp > 1) needs pp > 1", vpp=2)
    assert ParallelPlan(pp=2, vpp=2).vpp == 2


def test_pipeline_schedules_need_their_pipelines():
    """DualPipe needs an even pp; DualPipe and zero bubble need pp > 1 and vpp 1."""
    refused("even pp", pp=3, pp_schedule="dualpipe")
    refused("needs pp > 1", pp_schedule="zero_bubble")
    refused("vpp must be 1", pp=2, vpp=2, pp_schedule="zero_bubble")
    assert ParallelPlan(pp=4, pp_schedule="dualpipe").pp == 4
    refused("needs pp > 1", pp_schedule="dualpipev")
    refused("needs pp > 1", pp_schedule="zb_h2")
    refused("vpp must be 1", pp=2, vpp=2, pp_schedule="gpipe")
    assert ParallelPlan(pp=3, pp_schedule="dualpipev").pp == 3


def test_layout_has_pp_times_vpp_stages():
    """An explicit pipeline_layout has exactly pp x vpp virtual stages."""
    refused("parallel.pipeline_layout: 3 virtual stages given, pp*vpp = 2*1 = 2 needed", pp=2, pipeline_layout=(3, 3, 2))
    assert ParallelPlan(pp=2, vpp=2, pipeline_layout=(2, 2, 2, 2)).pipeline_layout == (2, 2, 2, 2)


def test_layout_has_no_empty_stage():
    """Every virtual stage between the first and the last holds at least one transformer layer (an
    empty stage crashed training under full recompute or activation offload); the first may hold
    only the embedding and the last only the head and loss, as Megatron-Core's "Et|(tt|)*30L"
    (DeepSeek-V3 on GB200) does."""
    refused("parallel.pipeline_layout", pp=4, pipeline_layout=(16, 0, 16, 0))
    refused("parallel.pipeline_layout", pp=4, pipeline_layout=(8, 8, 0, 16))
    with pytest.raises(InvalidScenario, match="pipeline_layout"):
        plan_from_mapping({"pp": 3, "dp": 1, "pipeline_layout": "Ett||ttL"})
    assert ParallelPlan(pp=4, pipeline_layout=(0, 16, 16, 0)).pipeline_layout == (0, 16, 16, 0)
    assert plan_from_mapping({"pp": 2, "pipeline_layout": "Ettt|L"}).pipeline_layout == (3, 0)
    assert plan_from_mapping({"pp": 8, "vpp": 4, "pipeline_layout": "Et|(tt|)*30L"}).pipeline_layout == (
        (1,) + (2,) * 30 + (0,))


def test_offload_needs_zero():
    """Optimizer offload (ZeRO-Offload / ZeRO-Infinity) needs zero_stage >= 1, as the estimator's
    sharded offloaded state and the search assume."""
    refused("parallel.offload: offloading needs zero_stage >= 1", offload="cpu", zero_stage=0)
    assert ParallelPlan(offload="nvme", zero_stage=3).offload == "nvme"


def test_shard_group_divides_dp_cp_and_needs_zero():
    """A ZeRO/FSDP shard group divides dp x cp (whole groups are replicated) and needs ZeRO >= 1."""
    refused("parallel.shard_group: 3 must divide dp*cp", dp=4, shard_group=3)
    refused("parallel.shard_group: sharding needs zero_stage >= 1", dp=4, shard_group=2, zero_stage=0)
    assert ParallelPlan(dp=4, cp=2, shard_group=8).zero_group == 8


def test_expert_folding_is_checked_with_the_model():
    """With ep > 1, ep x etp divides tp x cp x dp (Megatron-Core MoE parallel folding); only a MoE
    model has an expert layout, so validate_plan checks it after telling a dense model it has none."""
    moe = from_hf_config(MOE)
    with pytest.raises(InvalidScenario, match="parallel.ep: ep.etp = 4.2 must divide tp.cp.dp"):
        validate_plan(ParallelPlan(tp=2, dp=2, ep=4), moe, num_devices=4, global_batch_seqs=8, seq_len=1024)
    validate_plan(ParallelPlan(tp=2, dp=2, ep=4, etp=1), moe, num_devices=4, global_batch_seqs=8, seq_len=1024)
    with pytest.raises(InvalidScenario, match="no MoE layers"):
        validate_plan(ParallelPlan(tp=2, dp=2, ep=4), from_hf_config(DENSE), num_devices=4, global_batch_seqs=8,
                      seq_len=1024)


def test_replace_is_checked_too():
    """dataclasses.replace builds a new plan, so it is checked like any other."""
    with pytest.raises(InvalidScenario, match="parallel.vpp"):
        dataclasses.replace(ParallelPlan(pp=2, vpp=2), pp=1)


def test_model_and_batch_rules_stay_in_validate_plan():
    """Heads, layers, experts, device count and batch are validate_plan's: the plan builds, the
    validator refuses it with the numbers."""
    model = from_hf_config(DENSE)
    plan = ParallelPlan(tp=3, dp=1)
    with pytest.raises(InvalidScenario, match="parallel.tp: 3 must divide the 8 attention heads"):
        validate_plan(plan, model, num_devices=3, global_batch_seqs=8, seq_len=1024)
    with pytest.raises(InvalidScenario, match="layers given, the model has 8"):
        validate_plan(ParallelPlan(pp=2, pipeline_layout=(3, 3)), model, num_devices=2, global_batch_seqs=8,
                      seq_len=1024)
    with pytest.raises(InvalidScenario, match="no MoE layers"):
        validate_plan(ParallelPlan(dp=2, ep=2), model, num_devices=2, global_batch_seqs=8, seq_len=1024)


def test_partial_mapping_reads_key_by_key():
    """A partial parallel mapping (--fix keys) is read key by key without the rules between keys, so
    `vpp: 2` alone reads; each key's own checks still apply."""
    assert plan_fields({"vpp": 2}) == {"vpp": 2}
    assert pinned_plan_keys({"pipeline_layout": "Et|ttL", "pp": 2}) == (("pp", 2), ("pipeline_layout", [1, 2]))
    with pytest.raises(UnknownName, match="parallel.recompute"):
        plan_fields({"recompute": "some"})
    with pytest.raises(InvalidScenario, match="parallel.vpp"):
        plan_from_mapping({"vpp": 2})
