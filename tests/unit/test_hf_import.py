"""Hugging Face config import: family rules, reported fields, and clear errors on bad configs."""

import json

import pytest

from flopcast import api
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import counts
from flopcast.specs.hf import SUPPORTED_MODEL_TYPES, from_hf_config
from flopcast.specs.model import DenseFFN, LatentAttention, MoEFFN

TINY_LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def test_unsupported_model_type_lists_supported():
    """An unknown model_type names it and lists every supported one, with a close match first."""
    with pytest.raises(UnknownName) as e:
        from_hf_config({"model_type": "lama"})
    msg = str(e.value)
    assert "'lama' is not supported" in msg and "did you mean 'llama'" in msg
    for family in SUPPORTED_MODEL_TYPES:
        assert family in msg


def test_missing_model_type():
    """A config without model_type says so and lists the supported families."""
    with pytest.raises(InvalidScenario, match="model.model_type: missing"):
        from_hf_config({"hidden_size": 10})


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"hidden_size": "big"}, "model.hidden_size: expected an integer"),
        ({"num_hidden_layers": 0}, "model.num_hidden_layers: expected an integer >= 1"),
        ({"num_key_value_heads": 3}, "does not divide num_attention_heads 4"),
        ({"tie_word_embeddings": "yes"}, "model.tie_word_embeddings: expected true or false"),
        ({"hidden_size": 66, "head_dim": None}, "not divisible by num_attention_heads"),
    ],
)
def test_bad_fields_name_the_field(patch, fragment):
    """Malformed fields raise one-line errors naming the field."""
    with pytest.raises(InvalidScenario) as e:
        from_hf_config({**TINY_LLAMA, **patch})
    assert fragment in str(e.value)


def test_unrecognised_fields_are_reported_not_dropped():
    """A typo is reported with a suggestion; known-irrelevant keys are listed as ignored."""
    spec = from_hf_config({**TINY_LLAMA, "hiden_size": 99, "rope_theta": 5e5, "bos_token_id": 1})
    fields = dict(spec.unmodeled_fields)
    assert "hiden_size" in fields and "did you mean 'hidden_size'" in fields["hiden_size"]
    assert "rope_theta" in spec.ignored_fields and "bos_token_id" in spec.ignored_fields


def test_deepseek_mtp_layer_is_reported():
    """DeepSeek-V3's multi-token-prediction layer is not built by transformers and is reported."""
    report = api.show_model("deepseek-v3")
    assert "num_nextn_predict_layers" in {u[0] for u in report.unmodeled_fields}


def test_qwen2_moe_layer_rules():
    """Qwen2-MoE: layers in mlp_only_layers, or not at a decoder_sparse_step multiple, are dense;
    MoE layers carry a shared expert and its sigmoid gate."""
    cfg = {"model_type": "qwen2_moe", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 4,
           "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
           "shared_expert_intermediate_size": 24, "decoder_sparse_step": 2, "mlp_only_layers": [3]}
    spec = from_hf_config(cfg)
    kinds = ["moe" if isinstance(lay.ffn, MoEFFN) else "dense" for lay in spec.layers]
    assert kinds == ["dense", "moe", "dense", "dense", "dense", "moe"]
    moe = spec.layers[1].ffn
    assert moe.shared_d_ff == 24 and moe.shared_gate


def test_deepseek_without_q_lora_uses_plain_query():
    """q_lora_rank null (DeepSeek-V2-Lite): one h -> H d_qk query projection, no q_a/q_b."""
    spec = from_hf_config({"model_type": "deepseek_v2", "vocab_size": 50, "hidden_size": 32,
                           "num_hidden_layers": 2, "num_attention_heads": 4, "q_lora_rank": None,
                           "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 2,
                           "v_head_dim": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
                           "n_shared_experts": 1, "moe_intermediate_size": 8, "intermediate_size": 16,
                           "first_k_dense_replace": 1})
    attn = spec.layers[0].attention
    assert isinstance(attn, LatentAttention) and attn.q_lora_rank is None
    bd = counts.params_breakdown(spec)
    assert bd["attention/q"] == 2 * 32 * 4 * 6 and "attention/q_a" not in bd
    assert isinstance(spec.layers[0].ffn, DenseFFN) and isinstance(spec.layers[1].ffn, MoEFFN)


def test_gemma2_alternates_sliding_layers():
    """Gemma-2 defaults: even layers slide (window 4096), odd layers are global; four norms per layer."""
    spec = from_hf_config({"model_type": "gemma2", "num_hidden_layers": 4})
    assert [lay.attention.window for lay in spec.layers] == [4096, None, 4096, None]
    assert all(lay.num_norms == 4 for lay in spec.layers)


def test_config_file_and_inline_mapping(tmp_path):
    """model show accepts a config.json path and an inline mapping with the same counts."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    from_file = api.show_model(str(path))
    inline = api.show_model(dict(TINY_LLAMA))
    assert from_file.params_total == inline.params_total == counts.params_total(from_hf_config(TINY_LLAMA))


def test_missing_and_invalid_config_files(tmp_path):
    """A missing file or invalid JSON is a one-line InvalidScenario."""
    with pytest.raises(InvalidScenario, match="file not found"):
        api.show_model(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidScenario, match="not valid JSON"):
        api.show_model(str(bad))


def test_gemma3_text_window_pattern():
    """Gemma-3 text: without layer_types, layer i slides unless (i + 1) is a multiple of
    sliding_window_pattern (default 6); four norms and per-head q/k norms per layer."""
    spec = from_hf_config({"model_type": "gemma3_text", "num_hidden_layers": 7})
    assert [lay.attention.window for lay in spec.layers] == [4096] * 5 + [None, 4096]
    spec = from_hf_config({"model_type": "gemma3_text", "num_hidden_layers": 4, "sliding_window_pattern": 2,
                           "sliding_window": 512})
    assert [lay.attention.window for lay in spec.layers] == [512, None, 512, None]
    attn = spec.layers[0].attention
    assert attn.qk_norm and attn.qk_norm_scope == "head" and spec.layers[0].num_norms == 4
    assert counts.params_breakdown(spec)["attention/qk_norm"] == 4 * 2 * 256


def test_olmo2_qk_norm_spans_the_projection():
    """OLMo-2 normalizes the whole q (H d_head) and k (H_kv d_head) projections."""
    spec = from_hf_config({**TINY_LLAMA, "model_type": "olmo2"})
    assert spec.layers[0].attention.qk_norm_scope == "projection"
    assert counts.params_breakdown(spec)["attention/qk_norm"] == 2 * (4 + 2) * 16


@pytest.mark.parametrize(
    ("patch", "kv_heads", "norms"),
    [
        ({}, 1, 1),                                                    # Falcon-7B: multi-query, one shared norm
        ({"multi_query": False}, 8, 1),
        ({"parallel_attn": False}, 1, 2),
        ({"new_decoder_architecture": True, "num_kv_heads": 2}, 2, 2),  # Falcon-40B: ln_attn and ln_mlp
        ({"new_decoder_architecture": True, "num_kv_heads": 2, "num_ln_in_parallel_attn": 1}, 2, 1),
    ],
)
def test_falcon_kv_heads_and_norms(patch, kv_heads, norms):
    """Falcon: K/V heads from new_decoder_architecture / multi_query; one or two LayerNorms per layer."""
    spec = from_hf_config({"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 8,
                           "num_hidden_layers": 2, "vocab_size": 50, **patch})
    assert spec.layers[0].attention.num_kv_heads == kv_heads and spec.layers[0].num_norms == norms
    assert spec.positions == "rope" and spec.norm.bias


def test_falcon_alibi_and_unused_kv_heads():
    """alibi: true means no rotary positions; num_kv_heads without new_decoder_architecture is reported."""
    spec = from_hf_config({"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 8,
                           "num_hidden_layers": 2, "vocab_size": 50, "alibi": True, "num_kv_heads": 4})
    assert spec.positions == "alibi" and spec.layers[0].attention.num_kv_heads == 1
    assert "num_kv_heads" in dict(spec.unmodeled_fields)


def test_mpt_counts_what_transformers_builds_and_reports_the_rest():
    """MPT: ALiBi, MHA, MLP of 4 h, no biases, weight-only norms; keys transformers does not honour
    are reported (and attn_config sub-keys checked), never silently dropped."""
    spec = from_hf_config({"model_type": "mpt", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 50,
                           "expansion_ratio": 2, "no_bias": False,
                           "attn_config": {"attn_type": "multiquery_attention", "qk_ln": True, "alibi_bias_max": 8,
                                           "alibbi": True}})
    assert spec.positions == "alibi" and spec.tie_embeddings and not spec.norm.bias
    assert spec.layers[0].ffn.d_ff == 256 and spec.layers[0].attention.num_kv_heads == 4
    fields = dict(spec.unmodeled_fields)
    assert {"expansion_ratio", "no_bias", "attn_config.attn_type", "attn_config.qk_ln"} <= set(fields)
    assert "did you mean 'alibi'" in fields["attn_config.alibbi"]
    assert "attn_config.alibi_bias_max" not in fields
    with pytest.raises(InvalidScenario, match="model.attn_config: expected a mapping"):
        from_hf_config({"model_type": "mpt", "attn_config": "torch"})


def test_starcoder2_biases_and_window():
    """Starcoder2: use_bias on every projection, LayerNorm with bias, one window on every layer."""
    spec = from_hf_config({"model_type": "starcoder2", "num_hidden_layers": 3, "sliding_window": 4096})
    attn, ffn = spec.layers[0].attention, spec.layers[0].ffn
    assert attn.qkv_bias and attn.out_bias and ffn.bias and not ffn.gated and spec.norm.bias
    assert [lay.attention.window for lay in spec.layers] == [4096] * 3
    assert not from_hf_config({"model_type": "starcoder2", "use_bias": False}).layers[0].ffn.bias
