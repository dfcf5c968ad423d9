"""Invariants of the counts on random configs of every family (no oracle needed): parts sum to
totals, active <= total, monotonicity in sequence length, windows only ever reduce."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from flopcast.estimate import counts
from flopcast.specs.hf import from_hf_config
from flopcast.specs.model import MoEFFN

from ..oracle.hf_configs import FAMILIES, config_for

configs = st.sampled_from(FAMILIES).flatmap(config_for)


@settings(max_examples=200, deadline=None)
@given(cfg=configs)
def test_breakdown_sums_and_active_bounds(cfg):
    """The breakdown sums to params_total; 0 < params_active <= params_total; dense models have
    active == total."""
    spec = from_hf_config(cfg)
    total = counts.params_total(spec)
    assert sum(counts.params_breakdown(spec).values()) == total
    active = counts.params_active(spec)
    assert 0 < active <= total
    if not spec.is_moe:
        assert active == total


@settings(max_examples=100, deadline=None)
@given(cfg=configs)
def test_all_experts_active_equals_total(cfg):
    """Routing every token to all E experts makes every parameter active."""
    spec = from_hf_config(cfg)
    layers = tuple(
        dataclasses.replace(lay, ffn=dataclasses.replace(lay.ffn, top_k=lay.ffn.num_experts))
        if isinstance(lay.ffn, MoEFFN) else lay for lay in spec.layers)
    assert counts.params_active(dataclasses.replace(spec, layers=layers)) == counts.params_total(spec)


@settings(max_examples=150, deadline=None)
@given(cfg=configs, s1=st.integers(1, 5000), s2=st.integers(1, 5000))
def test_monotone_in_sequence_length(cfg, s1, s2):
    """FLOPs per token and KV bytes per sequence never decrease with S; causal <= full; KV bytes
    per token never increase with S (windowed layers stop growing)."""
    spec = from_hf_config(cfg)
    lo, hi = sorted((s1, s2))
    for conv in ("causal", "full"):
        assert counts.forward_flops_per_token(spec, lo, conv) <= counts.forward_flops_per_token(spec, hi, conv)
    assert counts.attention_flops_per_token(spec, hi, "causal") <= counts.attention_flops_per_token(spec, hi, "full")
    assert counts.kv_cache_bytes_per_sequence(spec, lo) <= counts.kv_cache_bytes_per_sequence(spec, hi)
    assert counts.kv_cache_bytes_per_token(spec, hi) <= counts.kv_cache_bytes_per_token(spec, lo) * (1 + 1e-12)
    assert counts.kv_cache_bytes_per_token(spec, lo) <= counts.kv_cache_bytes_per_token(spec)


@settings(max_examples=100, deadline=None)
@given(cfg=configs)
def test_fp8_kv_is_half_of_bf16(cfg):
    """KV bytes scale with the element size: fp8 = bf16 / 2 = fp32 / 4."""
    spec = from_hf_config(cfg)
    bf16 = counts.kv_cache_bytes_per_token(spec, 100, "bf16")
    assert counts.kv_cache_bytes_per_token(spec, 100, "fp8") * 2 == bf16
    assert counts.kv_cache_bytes_per_token(spec, 100, "fp32") == 2 * bf16
