"""Counts checked against hand-derived values (independent of transformers): published parameter
totals, KV-cache arithmetic, and the attention FLOP conventions."""

import dataclasses

import pytest

from flopcast import catalog
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import counts


def test_llama31_8b_matches_published_total_and_flops():
    """Llama 3.1 8B has 8,030,261,248 parameters (its safetensors total); forward matmul FLOPs are
    2 x (all but the input embedding and the norm weights); causal attention at S=4096 is L 2H(2 d_head) S/2."""
    spec = catalog.get_model("llama-3.1-8b")
    assert counts.params_total(spec) == 8_030_261_248
    assert counts.params_active(spec) == 8_030_261_248
    embed = 128256 * 4096
    norms = (2 * 32 + 1) * 4096
    assert counts.matmul_flops_per_token(spec) == 2 * (8_030_261_248 - embed - norms)
    assert counts.attention_flops_per_token(spec, 4096, "causal") == 32 * 2 * 32 * 256 * 2048
    assert counts.attention_flops_per_token(spec, 4096, "full") == 32 * 2 * 32 * 256 * 4096


def test_palm_training_attention_term():
    """PaLM App. B: training attention FLOPs per token 12 L H d_head S = 3 x the forward full count."""
    spec = catalog.get_model("llama-3.1-70b")
    S = 8192
    assert 3 * counts.attention_flops_per_token(spec, S, "full") == 12 * 80 * 64 * 128 * S


def test_gqa_kv_bytes_per_token():
    """KV bytes per token = 2 L H_kv d_head bytes: 8B bf16 131,072 B; 405B 516,096 B; fp8 halves."""
    assert counts.kv_cache_bytes_per_token(catalog.get_model("llama-3.1-8b")) == 2 * 32 * 8 * 128 * 2
    spec405 = catalog.get_model("llama-3.1-405b")
    assert counts.kv_cache_bytes_per_token(spec405, 4096, "bf16") == 2 * 126 * 8 * 128 * 2
    assert counts.kv_cache_bytes_per_token(spec405, 4096, "fp8") == 2 * 126 * 8 * 128


def test_mla_kv_is_latent_plus_rope_key():
    """DeepSeek-V3 caches kv_lora_rank + qk_rope_head_dim = 576 elements per layer: 61 x 576 x 2 B."""
    assert counts.kv_cache_bytes_per_token(catalog.get_model("deepseek-v3"), 4096) == 61 * 576 * 2


def test_sliding_window_layers_cap_the_cache():
    """Gemma-2-9B: 42 layers, half with a 4096 window, 2 x 8 x 256 x 2 B per layer-token. At S = 8192
    the windowed half holds 4096 tokens: per token 21 x 8192 x (1 + 1/2)."""
    spec = catalog.get_model("gemma-2-9b")
    per_layer = 2 * 8 * 256 * 2
    assert counts.kv_cache_bytes_per_token(spec, 8192) == pytest.approx(21 * per_layer * 1.5)
    assert counts.kv_cache_bytes_per_token(spec, 4096) == 42 * per_layer
    assert counts.kv_cache_bytes_per_sequence(spec, 8192) == 21 * per_layer * (8192 + 4096)


def test_gpt_oss_alternating_128_window():
    """gpt-oss-120b: 36 layers alternating 128-token windows; 2 x 8 x 64 x 2 B per layer-token."""
    spec = catalog.get_model("gpt-oss-120b")
    per = 2 * 8 * 64 * 2
    assert counts.kv_cache_bytes_per_token(spec, 4096) == pytest.approx(18 * per + 18 * per * 128 / 4096)


def test_moe_active_counts_only_routed_top_k():
    """Mixtral 8x7B: active = total minus the 6 unused experts of 3 h d_ff in each of 32 layers
    (12,879,925,248: the published ~12.9B)."""
    spec = catalog.get_model("mixtral-8x7b")
    total = counts.params_total(spec)
    assert total == 46_702_792_704
    assert counts.params_active(spec) == total - 32 * 6 * 3 * 4096 * 14336 == 12_879_925_248


def test_deepseek_v3_dense_first_layers_and_shared_expert():
    """DeepSeek-V3: 3 dense layers, 58 MoE layers of 256 routed (8 active) + 1 shared expert."""
    spec = catalog.get_model("deepseek-v3")
    bd = counts.params_breakdown(spec)
    assert bd["moe/experts"] == 58 * 256 * 3 * 7168 * 2048
    assert bd["moe/shared_experts"] == 58 * 3 * 7168 * 2048
    assert bd["mlp/gate"] == 3 * 7168 * 18432
    assert bd["moe/router"] == 58 * 256 * 7168


def test_tied_head_is_counted_once_but_multiplies():
    """GPT-2 ties its head to the token table: no head parameters, but 2 h V head FLOPs per token."""
    spec = catalog.get_model("gpt2")
    assert "head/lm_head" not in counts.params_breakdown(spec)
    assert counts.params_total(spec) == 124_439_808
    non_embedding_matmuls = 12 * (3 * 768 * 768 + 768 * 768 + 2 * 768 * 3072)
    assert counts.matmul_flops_per_token(spec) == 2 * (non_embedding_matmuls + 768 * 50257)


def test_breakdown_sums_to_total_for_every_catalog_model():
    """params_breakdown is exhaustive: its entries sum to params_total."""
    for model_id in catalog.model_ids():
        spec = catalog.get_model(model_id)
        assert sum(counts.params_breakdown(spec).values()) == counts.params_total(spec), model_id


@pytest.mark.parametrize("S", [1, 100, 4096, 10_000])
def test_attended_keys_conventions(S):
    """full = S (or w); causal = S/2 up to the window, then w - w^2/(2S); continuous at S = w."""
    assert counts.attended_keys(S, None, "full") == S
    assert counts.attended_keys(S, None, "causal") == S / 2
    assert counts.attended_keys(S, 4096, "full") == min(S, 4096)
    causal_w = counts.attended_keys(S, 4096, "causal")
    assert causal_w == (S / 2 if S <= 4096 else 4096 - 4096**2 / (2 * S))
    assert counts.attended_keys(4096, 4096, "causal") == 2048


def test_windowed_attention_flops_cap():
    """A window caps attention FLOPs: removing the windows can only add FLOPs."""
    spec = catalog.get_model("gemma-2-9b")
    open_spec = dataclasses.replace(spec, layers=tuple(
        dataclasses.replace(lay, attention=dataclasses.replace(lay.attention, window=None)) for lay in spec.layers))
    assert counts.attention_flops_per_token(spec, 8192, "full") < counts.attention_flops_per_token(open_spec, 8192, "full")
    assert counts.attention_flops_per_token(spec, 4096, "full") == counts.attention_flops_per_token(open_spec, 4096, "full")


def test_bad_arguments_are_errors():
    """Unknown KV dtype and convention, and non-positive lengths, raise clear errors."""
    spec = catalog.get_model("gpt2")
    with pytest.raises(UnknownName, match="kv_dtype"):
        counts.kv_cache_bytes_per_token(spec, 10, "fp7")
    with pytest.raises(InvalidScenario, match="convention"):
        counts.attended_keys(10, None, "half")
    with pytest.raises(InvalidScenario, match="seq_len"):
        counts.attention_flops_per_token(spec, 0)
