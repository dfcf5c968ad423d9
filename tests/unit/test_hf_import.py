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
