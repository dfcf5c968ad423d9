"""`infer` with an SLO answers at the SLO (issue 20): the largest batch whose steady-state TTFT and
TPOT meet the targets, with its throughput and cost, beside the saturated figures."""

import dataclasses

from flopcast import api
from flopcast.estimate.serving import estimate_serving
from flopcast.specs.scenario import resolve

SC = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
      "inference": {"tp": 1, "weights_dtype": "bf16", "batch_size": "max", "input_tokens": 512,
                    "output_tokens": 256, "slo": {"ttft_p99": "1 s", "tpot_p99": "25 ms"}}}


def test_the_batch_at_the_slo_is_the_largest_that_meets_it():
    """Every batch up to the answer meets both targets and the next one misses one (checked by
    estimating each batch directly, not by the bisection)."""
    d = api.estimate_serving(SC).to_dict()
    a = d["at_slo"]
    assert a["met"] and 1 <= a["batch_size"] < a["largest_batch_size"] == d["batch_size"]
    rs = resolve(SC)

    def tpot_ttft(b):
        e = estimate_serving(rs.model, rs.hardware, dataclasses.replace(rs.inference, batch_size=b))
        return e.tpot_s, e.ttft_s

    b = a["batch_size"]
    assert all(t <= 0.025 and f <= 1.0 for t, f in map(tpot_ttft, range(1, b + 1)))
    t, f = tpot_ttft(b + 1)
    assert t > 0.025 or f > 1.0
    assert a["tpot_s"] <= 0.025 and a["output_tokens_per_s"] < d["output_tokens_per_s"]
    assert a["output_tokens_per_s_per_sequence"] == 1 / a["tpot_s"]
    assert a["cost_per_million_output_tokens_usd"] > d["cost_per_million_output_tokens_usd"]


def test_an_slo_missed_at_batch_one_is_a_result_with_its_reason():
    """A TPOT target below the batch-1 decode step is reported missed, with the figures at batch 1."""
    sc = {**SC, "inference": {**SC["inference"], "slo": {"tpot_p99": "1 ms"}}}
    a = api.estimate_serving(sc).to_dict()["at_slo"]
    assert a["met"] is False and a["batch_size"] is None and "batch 1" in a["reason"]


def test_no_slo_no_operating_point():
    """Without inference.slo the report has no at_slo key (the saturated figures only)."""
    sc = {**SC, "inference": {k: v for k, v in SC["inference"].items() if k != "slo"}}
    assert "at_slo" not in api.estimate_serving(sc).to_dict()


def test_the_example_reports_the_batch_and_throughput_at_the_slo():
    """examples/mixtral-serving.yaml carries an SLO; infer reports its operating point."""
    from pathlib import Path

    d = api.estimate_serving(Path(__file__).parents[2] / "examples" / "mixtral-serving.yaml").to_dict()
    assert d["at_slo"]["met"] and d["at_slo"]["tpot_s"] <= 0.060 and d["at_slo"]["batch_size"] > 1


def test_sweep_ranks_hardware_by_cost_at_the_slo():
    """`sweep` of a serving scenario estimates each combination and ranks them cheapest per output
    token at the SLO first; an invalid combination is a row with its error, last."""
    sc = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "inference": {"tp": 8, "weights_dtype": "fp8", "kv_dtype": "fp8", "input_tokens": 2048,
                        "output_tokens": 256, "slo": {"ttft_p99": "2 s", "tpot_p99": "50 ms"}}}
    d = api.sweep_training(sc, vary=["hardware=h100-sxm,b200,mi300x", "inference.tp=4,8"])
    rows = d["rows"]
    assert "slo_cost_per_million_output_tokens_usd" in d["columns"] and len(rows) == 6
    costs = [r["slo_cost_per_million_output_tokens_usd"] for r in rows if r.get("error") is None]
    assert len(costs) == 3 and costs == sorted(costs)
    assert all(r["slo_met"] and r["slo_tpot_s"] <= 0.050 for r in rows[:3])
    assert all("must equal cluster.num_devices" in r["error"] for r in rows[3:])


def test_a_draft_model_is_counted_in_memory():
    """Speculative decoding with a draft model keeps its weights (split over the target's tp) and its
    KV cache beside the target's: weights grow by the draft's, fewer sequences fit (issue 20: a draft
    model's weights were not counted)."""
    base = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 4},
            "inference": {"tp": 4, "weights_dtype": "bf16", "input_tokens": 1024, "output_tokens": 256}}
    spec = {**base, "inference": {**base["inference"], "speculative": {
        "method": "draft_model", "draft_model": "llama-3.2-1b", "num_draft_tokens": 4, "acceptance_length": 2.5}}}
    a, b = api.estimate_serving(base).to_dict(), api.estimate_serving(spec).to_dict()
    draft = api.show_model("llama-3.2-1b").to_dict()
    grown = b["memory_breakdown_bytes"]["weights"] - a["memory_breakdown_bytes"]["weights"]
    # 16-bit projections / tp; the embedding and head at most whole (split over tp, or replicated)
    assert draft["params_total"] * 2 / 4 * 0.9 <= grown <= draft["params_total"] * 2
    assert b["max_batch_size"] < a["max_batch_size"]
    per_seq_a = a["memory_breakdown_bytes"]["kv_cache"] / a["batch_size"]
    per_seq_b = b["memory_breakdown_bytes"]["kv_cache"] / b["batch_size"]
    assert per_seq_b > per_seq_a          # the draft's KV cache per sequence is there too
