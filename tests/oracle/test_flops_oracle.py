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

Where the eager reference computes differently from the kernels flopcast costs, the difference is
added by a stated rule (`eager_extra`), never absorbed by a tolerance:
- State mixers (Mamba-2, gated DeltaNet): the eager chunked scans pad each sequence to a multiple of
  the chunk size c, so their in-chunk products run on ceil(S / c) c tokens; the eager Mamba-2 passes
  chunk states with a dense (n_c + 1) x (n_c + 1) product, 2 (n_c + 1)^2 H P N per sequence, where
  flopcast costs the sequential pass (2 H P N per chunk); the eager causal conv pads by K - 1 and
  computes S + K - 1 outputs (flopcast: S). The DeltaNet triangular solve is not counted by either.
- Llama 4's eager experts run every token through every expert (a dense bmm over E experts, the
  router's scores zeroing the rest): E / k times the routed products flopcast counts.
- DeepSeek-V3.2's eager attention scores every key and masks all but the top-k (`_unwindowed` lifts
  the top-k, as it lifts windows and chunks); its indexer's scores are bmm products.
Exact means exact, except where a state mixer's per-token scan cost carries a 1 / c term (Mamba-2's
chunk-state pass, 2 H P N / c per token): those sums are compared to float rounding (STATE_REL, 1e-12
relative; the differences seen are one or two ulps, e.g. 183.99999999999997 for 184).
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
from flopcast.specs.model import LatentAttention, LayerSpec, Mamba2Mixer, ModelSpec, MoEFFN  # noqa: E402

from .hf_configs import FAMILIES, config_for, hf_config_object  # noqa: E402

aten = torch.ops.aten
STATE_REL = 1e-12   # float rounding of per-token terms in 1 / chunk (module docstring); 0 for everything else


def _unwindowed(spec: ModelSpec) -> ModelSpec:
    """Every key scored (eager attention masks instead): no windows, chunks or DSA top-k."""
    def lift(a):
        if a is None:
            return None
        if isinstance(a, LatentAttention):
            return dataclasses.replace(a, window=None, index_topk=None)
        return dataclasses.replace(a, window=None)
    layers = tuple(dataclasses.replace(lay, attention=lift(lay.attention)) for lay in spec.layers)
    return dataclasses.replace(spec, layers=layers)


def eager_extra(layer: LayerSpec, model_type: str, hidden: int, batch: int, seq_len: int) -> dict[str, float]:
    """What the eager reference counts beyond flopcast for one layer, by op class (module docstring)."""
    extra = {"linear": 0.0, "bmm": 0.0, "conv": 0.0}
    m = layer.ssm
    if m is not None:
        c = m.chunk_size
        chunks = -(-seq_len // c)
        core = counts.scan_flops_per_token(m) - 2.0 * m.conv_dim * m.conv_kernel
        extra["bmm"] += core * batch * (chunks * c - seq_len)
        if isinstance(m, Mamba2Mixer):
            hpn = m.num_heads * m.head_dim * m.state_size
            extra["bmm"] += batch * (2.0 * (chunks + 1) ** 2 * hpn - 2.0 * hpn * chunks)
        extra["conv"] += 2.0 * m.conv_dim * m.conv_kernel * (m.conv_kernel - 1) * batch
    f = layer.ffn
    if model_type == "llama4_text" and isinstance(f, MoEFFN):
        per_copy = 2.0 * ((2 if f.gated else 1) + 1) * f.expert_d_ff * hidden   # one token through one expert
        extra["linear"] -= batch * seq_len * f.top_k * per_copy       # flopcast's routed products are bmm here
        extra["bmm"] += batch * seq_len * f.num_experts * per_copy    # every token through every expert
    return extra


def counted_flops(cfg: dict, batch: int, seq_len: int, seed: int) -> tuple[int, int, int, int]:
    """(linear FLOPs, attention-score FLOPs, depthwise-conv FLOPs, other FLOPs) of one forward pass."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config_object(cfg), attn_implementation="eager",
                                             experts_implementation="eager")
    model.eval()
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq_len))
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(input_ids=ids, use_cache=False)
    by_module = mode.get_flop_counts()
    total = by_module["Global"]
    rotary_bmm = sum(ops.get(aten.bmm, 0) for name, ops in by_module.items()
                     if name.split(".")[-1] == "rotary_emb")
    linear = total.get(aten.mm, 0) + total.get(aten.addmm, 0)
    attention = total.get(aten.bmm, 0) - rotary_bmm
    conv = total.get(aten.convolution, 0)
    other = sum(v for k, v in total.items() if k not in (aten.mm, aten.addmm, aten.bmm, aten.convolution))
    return linear, attention, conv, other


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_forward_flops_equal_torch_flop_counter(family, data):
    """matmul FLOPs, attention-score FLOPs (full convention; state-mixer scans and convs beside them)
    match the torch counter exactly on random small configs of each family, eager_extra added."""
    cfg = data.draw(config_for(family))
    batch = data.draw(st.integers(1, 2))
    seq_len = data.draw(st.integers(2, 12))
    if cfg["model_type"] in ("gpt2", "opt") and seq_len > cfg.get("n_positions", cfg.get("max_position_embeddings", 256)):
        seq_len = 2
    linear, attention, conv, other = counted_flops(cfg, batch, seq_len, seed=data.draw(st.integers(0, 2**16)))
    spec = from_hf_config(cfg)
    tokens = batch * seq_len
    extra = {"linear": 0.0, "bmm": 0.0, "conv": 0.0}
    flopcast_conv = 0.0
    for layer in spec.layers:
        for key, v in eager_extra(layer, cfg["model_type"], spec.hidden_size, batch, seq_len).items():
            extra[key] += v
        if layer.ssm is not None:
            flopcast_conv += 2.0 * layer.ssm.conv_dim * layer.ssm.conv_kernel * tokens
    assert linear == counts.matmul_flops_per_token(spec) * tokens + extra["linear"], cfg
    expected_attention = counts.attention_flops_per_token(_unwindowed(spec), seq_len, "full") * tokens
    rel = STATE_REL if any(lay.ssm is not None for lay in spec.layers) else 0
    assert attention == pytest.approx(expected_attention - flopcast_conv + extra["bmm"], rel=rel, abs=0), cfg
    assert conv == flopcast_conv + extra["conv"], cfg
    assert other == 0, "the counter saw an op this test does not classify"


def per_layer_flops(cfg: dict, batch: int, seq_len: int, seed: int) -> tuple[dict[int, int], int]:
    """({decoder layer index: its mm + addmm + bmm + conv FLOPs, rotary outer products excluded}, total) of one
    forward pass, from the counter's per-module table."""
    import re

    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config_object(cfg), attn_implementation="eager",
                                             experts_implementation="eager")
    model.eval()
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(input_ids=torch.randint(0, cfg["vocab_size"], (batch, seq_len)), use_cache=False)
    by_module = mode.get_flop_counts()
    layer_re = re.compile(r"\.(?:layers|h|blocks)\.(\d+)$")
    out: dict[int, int] = {}
    for name, ops_ in by_module.items():
        m = layer_re.search(name)
        if m:
            rotary = sum(o.get(aten.bmm, 0) for n, o in by_module.items()
                         if n.startswith(name + ".") and n.split(".")[-1] == "rotary_emb")
            out[int(m.group(1))] = (ops_.get(aten.mm, 0) + ops_.get(aten.addmm, 0) + ops_.get(aten.bmm, 0)
                                    + ops_.get(aten.convolution, 0) - rotary)
    g = by_module["Global"]
    return out, g.get(aten.mm, 0) + g.get(aten.addmm, 0)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_per_layer_op_rows_equal_torch_flop_counter(family, data):
    """estimate/ops.py, layer by layer: each decoder layer's op rows (tp = ep = 1, every key scored as
    eager attention does) sum to exactly what the torch counter measures inside that layer's module,
    eager_extra added."""
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
        extra = sum(eager_extra(layer, cfg["model_type"], spec.hidden_size, batch, seq_len).values())
        if layer.ssm is None:
            assert sum(o.flops for o in rows) + extra == measured[i], (cfg, i)
        else:
            assert sum(o.flops for o in rows) + extra == pytest.approx(measured[i], rel=STATE_REL, abs=0), (cfg, i)
