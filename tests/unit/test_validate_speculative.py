"""Speculative decoding's cost (estimate/serving.py: verification through the op rows, draft work
by method, the host time of engines that speculate without overlap) and its validation against
published speedups (`flopcast validate speculative`; issue 22, deliverable 7)."""

from __future__ import annotations

import pytest

from flopcast import api, catalog
from flopcast.errors import InvalidScenario
from flopcast.estimate import serving as sv
from flopcast.specs.serving import inference_from_mapping


def _serve(spec: dict | None = None, model: str = "llama-3.1-8b", **inference):
    return sv.prepare(catalog.get_model(model), catalog.get_hardware("h100-sxm"),
                      inference_from_mapping({"tp": 1, "batch_size": 1, **inference,
                                              **({"speculative": spec} if spec else {})}))


@pytest.mark.parametrize("batch,ctx,lo,hi", [(1, 1024, 1.0, 1.05), (1024, 64, 3.0, 4.0)])
def test_verification_is_free_when_memory_bound_and_costs_q_when_compute_bound(batch, ctx, lo, hi):
    """Verifying 1 + k = 4 query tokens per sequence: one sequence reads the same weights and KV
    cache as a decode step (within 5%); a thousand short sequences are compute-bound, so the forward
    costs 3-4x the decode step (the op rows' roofline, nothing special-cased)."""
    s = _serve()
    base = sum(sv.iteration_breakdown_s(s, batch, ctx, 0, ctx, batch).values())
    verify = sum(sv.iteration_breakdown_s(s, 4 * batch, ctx, 0, ctx, 4 * batch, queries_per_seq=4).values())
    assert lo <= verify / base <= hi


def test_draft_work_by_method():
    """n-gram lookup drafts on the host (no device time); Medusa's heads and EAGLE-3's one layer cost
    less than a draft model; a draft tree (verify_tokens 16 at depth 3) drafts more than a chain."""
    def draft_s(spec, **kw):
        return sv._draft_time_s(_serve({"num_draft_tokens": 3, "acceptance_length": 2.0, **spec}, **kw), 8, 1024, 1024)
    assert draft_s({"method": "ngram"}) == 0.0
    one_layer = draft_s({"method": "eagle3"})
    assert 0.0 < one_layer < draft_s({"method": "draft_model", "draft_model": "llama-3.2-1b"})
    assert 0.0 < draft_s({"method": "medusa"})
    assert draft_s({"method": "eagle3", "verify_tokens": 16}) > one_layer


def test_sglang_speculation_pays_its_host_time_unless_overlapped():
    """SGLang speculates without its overlap scheduler: a speculative step pays the host time of
    catalog/speculative.yaml (6.1 ms); host_overlap: true, or another engine, does not."""
    def tpot(engine, **extra):
        sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
              "inference": {"tp": 1, "batch_size": 4, "engine": engine,
                            "speculative": {"method": "eagle3", "num_draft_tokens": 3, "acceptance_length": 3.0,
                                            **extra}}}
        return api.estimate_serving(sc).tpot_s
    exposed = tpot("sglang") - tpot("sglang", host_overlap=True)
    assert exposed * 3.0 == pytest.approx(6.1e-3 - 0.5e-3, rel=1e-6)
    assert tpot("vllm") == pytest.approx(tpot("vllm", host_overlap=True))


def test_every_speedup_row_is_logged_first_seen():
    """Each published speedup row was logged in validation/first_seen.csv (kind speculative) with the
    error of the code before the model changed for it."""
    from flopcast.validation import first_seen, speculative

    log = first_seen.load()
    for case in speculative.load_cases():
        e = log[case.id]
        assert e["kind"] == "speculative" and e["quantity"] == case.quantity
        p, m = float(e["predicted"]), float(e["measured"])
        assert m == case.measured and float(e["error_frac"]) == pytest.approx((p - m) / m, rel=1e-4)


def test_validate_speculative_report():
    """At least 6 published speedups from at least 3 source families and 3 methods; each row's error
    is predicted / measured - 1; the median and the prospective (first-seen) median are stated."""
    out = api.validate("speculative")
    rows = out["rows"]
    assert len(rows) >= 6 and out["num_sources"] >= 3 and len({r["method"] for r in rows}) >= 3
    for r in rows:
        assert r["error_frac"] == pytest.approx(r["predicted"] / r["measured"] - 1)
    assert 0.0 < out["median_abs_error_frac"] < 1.0
    assert out["first_seen"]["num_known"] == len(rows)
    with pytest.raises(InvalidScenario, match="--cv"):
        api.validate("speculative", cv=True)
