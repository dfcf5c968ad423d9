"""Counts of the 2025 layer kinds: recurrent state instead of a KV cache, DeepSeek sparse attention,
chunked attention, and the serving capacity that holds the state."""

from __future__ import annotations

import pytest

from flopcast import catalog
from flopcast.estimate import counts


def test_nemotron_h_caches_only_its_attention_layers_and_holds_a_fixed_state():
    """Nemotron-H 8B: only its 4 attention blocks cache K and V (2 x 8 heads x 128 x 2 bytes each per
    token); its 24 Mamba-2 blocks hold per sequence 128 heads x 64 x 128 states in fp32 plus a conv
    state of (8192 + 2 x 8 x 128) channels x 3 columns at the KV dtype, whatever the length."""
    spec = catalog.get_model("nemotron-h-8b")
    assert counts.kv_cache_bytes_per_token(spec) == 4 * 2 * 8 * 128 * 2
    per_layer = 128 * 64 * 128 * 4 + (8192 + 2 * 8 * 128) * 3 * 2
    assert counts.state_bytes_per_sequence(spec) == 24 * per_layer
    assert counts.kv_cache_bytes_per_sequence(spec, 1000) == 1000 * 4 * 2 * 8 * 128 * 2


def test_qwen3_next_state_is_value_heads_by_key_by_value_dims():
    """Qwen3-Next: 36 of 48 layers are gated DeltaNet, each holding 32 x 128 x 128 fp32 states and a
    conv state over q, k, v (2 x 16 x 128 + 32 x 128 channels, 3 columns)."""
    spec = catalog.get_model("qwen3-next-80b-a3b")
    per_layer = 32 * 128 * 128 * 4 + (2 * 16 * 128 + 32 * 128) * 3 * 2
    assert counts.state_bytes_per_sequence(spec) == 36 * per_layer
    assert sum(lay.attention is not None for lay in spec.layers) == 12


def test_dsa_attends_at_most_top_k_keys_and_pays_its_indexer():
    """DeepSeek-V3.2: past index_topk keys a query's attention stops growing; the indexer still
    scores every earlier key (2 H_I (d_I + 1) per key). Without the indexer (V3) it grows with S."""
    v32, v3 = catalog.get_model("deepseek-v3.2-exp"), catalog.get_model("deepseek-v3")
    a = v32.layers[0].attention
    S = 65536
    core = 2 * 128 * (192 + 128) * 2048 * 61
    indexer = 2 * a.index_heads * (a.index_head_dim + 1) * S / 2 * 61
    assert counts.attention_flops_per_token(v32, S) == pytest.approx(core + indexer, rel=1e-12)
    assert counts.attention_flops_per_token(v3, S) > counts.attention_flops_per_token(v32, S)


def test_chunked_attention_keys_are_half_a_chunk_once_past_one_chunk():
    """Llama 4 chunked layers (chunk c): causal keys per query are min(S, c) / 2; full convention min(S, c)."""
    assert counts.attended_keys(100, 8192, "causal", chunked=True) == 50
    assert counts.attended_keys(65536, 8192, "causal", chunked=True) == 4096
    assert counts.attended_keys(65536, 8192, "full", chunked=True) == 8192


def test_scan_cost_per_token_is_independent_of_sequence_length():
    """A state mixer's sequence work per token does not grow with S (chunked scans are linear)."""
    spec = catalog.get_model("falcon-h1-tiny-90m")
    mixer = spec.layers[0].ssm
    per_token = counts.scan_flops_per_token(mixer)
    total_1k = counts.attention_flops_per_token(spec, 1024)
    total_64k = counts.attention_flops_per_token(spec, 65536)
    assert per_token > 0 and total_64k - total_1k == pytest.approx(
        24 * 2 * 8 * 128 * (65536 - 1024) / 2, rel=1e-12)   # only the attention half grows


def test_serving_capacity_holds_each_sequences_state_beside_its_kv_cache():
    """Nemotron-H 8B served on one H100: max_batch_size = free memory / (KV of the 4 attention layers
    for S tokens in 16-token blocks + the fixed Mamba-2 state of one sequence)."""
    from flopcast import api, units

    scenario = {"model": "nemotron-h-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
                "inference": {"tp": 1, "weights_dtype": "bf16", "kv_dtype": "bf16", "batch_size": "max",
                              "input_tokens": 1000, "output_tokens": 1000}}
    r = api.estimate_serving(scenario)
    spec = catalog.get_model("nemotron-h-8b")
    per_seq = 2000 * counts.kv_cache_bytes_per_token(spec) + counts.state_bytes_per_sequence(spec)
    mem = r.memory_breakdown_bytes
    free = 80 * units.GiB - mem["weights"] - mem["workspace"] - mem["reserve"]
    assert r.max_batch_size == int(free // per_seq)
