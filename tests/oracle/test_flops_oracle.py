"""Forward FLOPs against `torch.utils.flop_counter.FlopCounterMode` on real forward passes of
small random models of every family (eager attention and eager experts, float32, CPU).

What the counter sees and how it maps to flopcast:
- aten.mm / aten.addmm: every Linear, the MoE experts (only tokens routed to each), routers and the
  LM head. Must equal matmul_flops_per_token x tokens exactly.
- aten.bmm inside the model minus the rotary-embedding module: QK^T and AV of eager attention, which
  scores every key and then masks, so it equals flopcast's "full" convention of the same model
  with window caps removed, exactly.
- aten.bmm inside `rotary_emb` (the inv_freq x positions outer product) is not a model FLOP and is
  excluded, as is anything element-wise.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from flopcast.estimate import counts  # noqa: E402
from flopcast.specs.hf import from_hf_config  # noqa: E402
from flopcast.specs.model import ModelSpec  # noqa: E402

from .hf_configs import FAMILIES, config_for, hf_config_object  # noqa: E402

aten = torch.ops.aten


def _unwindowed(spec: ModelSpec) -> ModelSpec:
    layers = tuple(dataclasses.replace(lay, attention=dataclasses.replace(lay.attention, window=None))
                   for lay in spec.layers)
    return dataclasses.replace(spec, layers=layers)


def counted_flops(cfg: dict, batch: int, seq_len: int, seed: int) -> tuple[int, int, int]:
    """(linear FLOPs, attention-score FLOPs, other FLOPs) of one forward pass."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config_object(cfg), attn_implementation="eager",
                                             experts_implementation="eager")
    model.eval()
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq_len))
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(input_ids=ids)
    by_module = mode.get_flop_counts()
    total = by_module["Global"]
    rotary_bmm = sum(ops.get(aten.bmm, 0) for name, ops in by_module.items()
                     if name.split(".")[-1] == "rotary_emb")
    linear = total.get(aten.mm, 0) + total.get(aten.addmm, 0)
    attention = total.get(aten.bmm, 0) - rotary_bmm
    other = sum(v for k, v in total.items() if k not in (aten.mm, aten.addmm, aten.bmm))
    return linear, attention, other


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_forward_flops_equal_torch_flop_counter(family, data):
    """matmul FLOPs and attention-score FLOPs (full convention) match the torch counter exactly on
    random small configs of each family."""
    cfg = data.draw(config_for(family))
    batch = data.draw(st.integers(1, 2))
    seq_len = data.draw(st.integers(2, 12))
    if cfg["model_type"] in ("gpt2", "opt") and seq_len > cfg.get("n_positions", cfg.get("max_position_embeddings", 256)):
        seq_len = 2
    linear, attention, other = counted_flops(cfg, batch, seq_len, seed=data.draw(st.integers(0, 2**16)))
    spec = from_hf_config(cfg)
    tokens = batch * seq_len
    assert linear == counts.matmul_flops_per_token(spec) * tokens, cfg
    expected_attention = counts.attention_flops_per_token(_unwindowed(spec), seq_len, "full") * tokens
    assert attention == pytest.approx(expected_attention, rel=0, abs=0), cfg
    assert other == 0, "the counter saw an op this test does not classify"


def per_layer_flops(cfg: dict, batch: int, seq_len: int, seed: int) -> tuple[dict[int, int], int]:
    """({decoder layer index: its mm + addmm + bmm FLOPs, rotary outer products excluded}, total) of one
    forward pass, from the counter's per-module table."""
    import re

    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config_object(cfg), attn_implementation="eager",
                                             experts_implementation="eager")
    model.eval()
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(input_ids=torch.randint(0, cfg["vocab_size"], (batch, seq_len)))
    by_module = mode.get_flop_counts()
    layer_re = re.compile(r"\.(?:layers|h|blocks)\.(\d+)$")
    out: dict[int, int] = {}
    for name, ops_ in by_module.items():
        m = layer_re.search(name)
        if m:
            rotary = sum(o.get(aten.bmm, 0) for n, o in by_module.items()
                         if n.startswith(name + ".") and n.split(".")[-1] == "rotary_emb")
            out[int(m.group(1))] = ops_.get(aten.mm, 0) + ops_.get(aten.addmm, 0) + ops_.get(aten.bmm, 0) - rotary
    g = by_module["Global"]
    return out, g.get(aten.mm, 0) + g.get(aten.addmm, 0)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_per_layer_op_rows_equal_torch_flop_counter(family, data):
    """estimate/ops.py, layer by layer: each decoder layer's op rows (tp = ep = 1, every key scored as
    eager attention does) sum to exactly what the torch counter measures inside that layer's module."""
    from flopcast.estimate import ops

    cfg = data.draw(config_for(family))
    batch = data.draw(st.integers(1, 2))
    seq_len = data.draw(st.integers(2, 8))
    if cfg["model_type"] in ("gpt2", "opt") and seq_len > cfg.get("n_positions", cfg.get("max_position_embeddings", 256)):
        seq_len = 2
    measured, _ = per_layer_flops(cfg, batch, seq_len, seed=data.draw(st.integers(0, 2**16)))
    spec = _unwindowed(from_hf_config(cfg))
    tokens = batch * seq_len
    assert sorted(measured) == list(range(spec.num_layers))
    for i, layer in enumerate(spec.layers):
        rows = ops.layer_ops(layer, spec, tokens=tokens, keys=seq_len)
        assert sum(o.flops for o in rows) == measured[i], (cfg, i)
