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
