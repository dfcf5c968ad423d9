"""Per-op rows (estimate/ops.py) sum to the oracle-tested counts."""

from __future__ import annotations

import pytest

from flopcast import api, catalog
from flopcast.estimate import counts, ops


@pytest.mark.parametrize("model_id", catalog.model_ids())
@pytest.mark.parametrize("convention", ["causal", "full"])
def test_op_flops_sum_to_the_forward_count(model_id, convention):
    """At tp = ep = 1, the rows of every layer group times its layer count, plus the head, sum to
    forward_flops_per_token x tokens (which tests/oracle checks against torch's FLOP counter)."""
    spec = catalog.get_model(model_id)
    seq, tokens = 4096, 8192
    total = sum(n * sum(o.flops for o in rows) for n, rows in ops.model_ops(spec, seq_len=seq, tokens=tokens,
                                                                          convention=convention))
    assert total == pytest.approx(counts.forward_flops_per_token(spec, seq, convention) * tokens, rel=1e-12)


def test_tensor_parallel_rows_split_the_sharded_gemms():
    """Under tp = 8 every projection of Llama 3 70B (64 heads, 8 kv heads) is 1/8 of the tp = 1 row."""
    spec = catalog.get_model("llama-3-70b")
    layer = spec.layers[0]
    one = {o.name: o.flops for o in ops.layer_ops(layer, spec, tokens=4096, keys=2048)}
    eight = {o.name: o.flops for o in ops.layer_ops(layer, spec, tokens=4096, keys=2048, tp=8)}
    assert all(eight[k] == pytest.approx(one[k] / 8) for k in one)


def test_train_reports_timed_ops():
    """`flopcast train --json` carries the per-op rows of one micro-batch forward on one device, each
    with a time from the roofline; GEMM rows are compute- or memory-bound by arithmetic intensity."""
    r = api.estimate_training({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
                               "training": {"seq_len": 8192, "global_batch_seqs": 64},
                               "parallel": {"tp": 1, "dp": 8, "microbatch_seqs": 1}}).to_dict()
    rows = r["ops"]
    names = {row["name"] for row in rows}
    assert {"attention/qkv", "attention/core", "mlp/up", "mlp/down", "head/logits"} <= names
    assert all(row["time_s"] > 0 and row["bound"] in ("compute", "memory") for row in rows)


def _train(model: str, devices: int, parallel: dict, **training) -> dict:
    return api.estimate_training({"model": model, "hardware": "h100-sxm", "cluster": {"num_devices": devices},
                                  "training": {"seq_len": 4096, "global_batch_seqs": 64, **training},
                                  "parallel": {"pp": 1, **parallel}}).to_dict()


ROW_CASES = {
    "dense": ("llama-3-8b", 8, {"tp": 1, "dp": 8}, {}),
    "tp-sp-full-recompute": ("llama-3-8b", 8, {"tp": 2, "dp": 4, "sp": True, "recompute": "full"}, {}),
    "fp8-selective": ("llama-3-8b", 8, {"tp": 1, "dp": 8, "recompute": "selective",
                                        "recompute_modules": ["core_attn", "layernorm"]}, {"precision": "fp8"}),
    "moe-ep-selective": ("deepseek-v2-lite", 8, {"tp": 1, "dp": 8, "ep": 8, "recompute": "selective",
                                                 "recompute_modules": ["mla_up_proj", "moe_act", "layernorm"]}, {}),
    "eager-dropout": ("gpt2", 8, {"tp": 1, "dp": 8}, {"flash_attention": False, "dropout": True}),
    "lora": ("llama-3-8b", 8, {"tp": 1, "dp": 8}, {"finetune": {"method": "qlora", "rank": 16}}),
    "mtp": ("deepseek-v3", 256, {"tp": 1, "dp": 256, "ep": 64, "zero_stage": 1},
            {"mtp_layers": 1, "global_batch_seqs": 256}),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_op_rows_sum_to_the_step_compute(case):
    """`train --json` `ops` are the rows the step summed: on one pipeline stage, each row's forward
    plus backward times its layer count, over every row but the collectives, is the step's compute
    (GEMM, attention, element-wise, loss and embedding) per micro-batch, and the rows' recompute
    times are the step's recompute."""
    model, devices, parallel, training = ROW_CASES[case]
    d = _train(model, devices, parallel, **training)
    m = d["num_microbatches"]
    rows = [r for r in d["ops"] if r["kind"] != "comm"]
    parts = d["compute_breakdown_s"]
    compute = parts["gemm"] + parts["attention"] + parts["elementwise"] + parts["loss_embedding"]
    assert m * sum(r["layers"] * (r["time_s"] + r["backward_s"]) for r in rows) == pytest.approx(compute, rel=1e-12)
    assert m * sum(r["layers"] * r["recompute_s"] for r in rows) == pytest.approx(parts["recompute"], rel=1e-12, abs=0)


@pytest.mark.parametrize("model_id", ["llama-3-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-8b"])
@pytest.mark.parametrize("tp", [1, 2])
def test_op_row_weights_sum_to_the_parameters(model_id, tp):
    """The rows' weight elements times their layer counts are the model's parameters on one device
    of a tensor-parallel group of tp: the GEMM weights, embedding and head split over tp, the norms
    (per-head q/k norms too) and MoE routers replicated; the final norm, which has no timed row, is
    the only part left out."""
    spec = catalog.get_model(model_id)
    d = _train(model_id, 8, {"tp": tp, "dp": 8 // tp})
    h = spec.hidden_size
    norms = sum(layer.num_norms for layer in spec.layers) * spec.norm.params(h)
    # per-head q and k norms (Qwen3) are replicated over tp like the other norms
    norms += sum(2 * spec.norm.params(layer.attention.head_dim) for layer in spec.layers
                 if getattr(layer.attention, "qk_norm", False))
    norms += sum(h * layer.ffn.num_experts for layer in spec.layers if hasattr(layer.ffn, "num_experts"))
    final = spec.norm.params(spec.hidden_size) if spec.final_norm else 0
    total = counts.params_total(spec)
    if spec.tie_embeddings:
        total += spec.vocab_size * spec.embed_dim     # the head reads the tied table: a row of its own
    rows = sum(r["layers"] * r["weight_elems"] for r in d["ops"])
    assert rows == pytest.approx((total - norms - final) / tp + norms, rel=1e-12)


@pytest.mark.parametrize("model_id", ["llama-3-8b", "deepseek-v2-lite", "gemma-2-9b"])
def test_op_row_flops_sum_to_the_counts(model_id):
    """The rows' FLOPs times their layer counts (layers and head, one micro-batch at tp = 1) are the
    forward FLOPs per token of estimate/counts times the micro-batch's tokens, and the step's model
    FLOPs are three times that per token of the batch."""
    spec = catalog.get_model(model_id)
    d = _train(model_id, 8, {"tp": 1, "dp": 8})
    fwd = sum(r["layers"] * r["flops"] for r in d["ops"] if r["part"] in ("layers", "head"))
    per_token = counts.forward_flops_per_token(spec, 4096, "causal")
    assert fwd == pytest.approx(per_token * 4096, rel=1e-12)
    assert d["model_flops_per_step"] == pytest.approx(3 * per_token * 4096 * 64, rel=1e-12)


@pytest.mark.parametrize("case", ["dense", "fp8-selective", "moe-ep-selective", "eager-dropout"])
def test_op_rows_saved_bytes_sum_to_the_activations(case):
    """On one pipeline stage without recompute-all or offload, one micro-batch is in flight, and the
    rows' saved bytes times their layer counts (the logits on the head's loss row) are the
    activation memory; selectively recomputed tensors are not among them."""
    model, devices, parallel, training = ROW_CASES[case]
    d = _train(model, devices, parallel, **training)
    rows = sum(r["layers"] * r["saved_bytes"] for r in d["ops"] if r["part"] != "mtp")
    assert rows == pytest.approx(d["memory_breakdown_bytes"]["activations"], rel=1e-12)


@pytest.mark.parametrize(("model", "devices", "inference"), [
    ("llama-3.1-8b", 1, {"tp": 1}),
    ("llama-3.1-70b", 4, {"tp": 4, "weights_dtype": "fp8"}),
    ("mixtral-8x7b", 2, {"tp": 2}),
    ("deepseek-v2-lite", 1, {"tp": 1}),
])
def test_serving_decode_rows_are_the_decode_step(model, devices, inference):
    """`infer --json` `ops` are the rows the decode step summed: per class (matmul, expert_matmul,
    attention, elementwise) the rows' times times their layer counts are the decode-step breakdown,
    the element-wise class plus the kernel tails of each layer; the head row is the LM head."""
    from flopcast.estimate.roofline import KERNEL_TAIL_S
    from flopcast.estimate.serving import KERNELS_PER_LAYER

    spec = catalog.get_model(model)
    d = api.estimate_serving({"model": model, "hardware": "h100-sxm", "cluster": {"num_devices": devices},
                              "inference": {"batch_size": 16, "input_tokens": 1024, "output_tokens": 256,
                                            **inference}}).to_dict()
    bd = d["decode_step_breakdown_s"]
    by_class: dict[str, float] = {}
    for r in d["ops"]:
        by_class[r["class"]] = by_class.get(r["class"], 0.0) + r["layers"] * r["time_s"]
    tails = spec.num_layers * (KERNELS_PER_LAYER - 6) * KERNEL_TAIL_S
    for key in ("matmul", "expert_matmul", "attention"):
        assert by_class.get(key, 0.0) == pytest.approx(bd[key], rel=1e-12)
    assert by_class["elementwise"] + tails == pytest.approx(bd["elementwise"], rel=1e-12)
    assert by_class["lm_head"] == pytest.approx(bd["lm_head"], rel=1e-12)


@pytest.mark.parametrize("model_id", catalog.model_ids())
def test_op_row_weights_are_every_parameter(model_id):
    """At tp = 1 the layer rows' weight elements times their layer counts (GEMM matrices with their
    biases and output norms, attention sinks, layer norms) are exactly the decoder layers'
    parameters of estimate/counts, and the head row is the (V x e) head, for every catalog model."""
    spec = catalog.get_model(model_id)
    groups = ops.model_ops(spec, seq_len=4096, tokens=4096)
    layer_rows = sum(n * sum(o.weight_elems for o in group) for n, group in groups[:-1])
    layer_params = sum(p.params for p in counts.model_parts(spec)
                       if not p.key.startswith(("embedding/", "head/", "norm/final")))
    assert layer_rows == layer_params
    assert [o.weight_elems for o in groups[-1][1]] == [spec.vocab_size * spec.embed_dim]


def test_cost_add_names_every_field():
    """Cost.add adds every field of a layer cost (it is written out field by field for speed)."""
    from flopcast.estimate.training.layer import Cost

    a = Cost(**{f: 1.0 for f in Cost.__slots__})
    b = Cost(**{f: float(i + 2) for i, f in enumerate(Cost.__slots__)})
    a.add(b, 0.5)
    assert all(getattr(a, f) == 1.0 + 0.5 * (i + 2) for i, f in enumerate(Cost.__slots__))
