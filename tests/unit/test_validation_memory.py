"""Per-rank memory, the memory verdict and `flopcast validate memory` (issue 21, deliverables 3-4)."""

from __future__ import annotations

from functools import cache

import pytest

from flopcast import api
from flopcast.estimate.training.memory import (
    FRAGMENTATION_FRAC,
    MEMORY_BAND_FRAC,
    RANK_PARTS,
    memory_verdict,
)
from flopcast.validation import memory as vm


@cache
def _report() -> dict:
    return api.validate("memory", cv=True)


def test_memory_rows_are_published_peaks_from_five_families():
    """At least 30 published peaks from at least 5 source families, each with its source, a
    measured kind flopcast can predict, and the error the code made before the model changed."""
    cases = vm.load_cases()
    assert len(cases) >= 30
    assert len({c.family for c in cases}) >= 5
    assert len({c.id for c in cases}) == len(cases)
    for c in cases:
        assert c.source and c.kind in vm.KINDS and c.measured_bytes > 2**30
        assert c.first_seen_error_frac is not None


def test_memory_band_is_the_cross_validated_error():
    """MEMORY_BAND_FRAC is the 80th percentile of the leave-one-source-out errors of `validate memory
    --cv source` (rounded to 0.01), so the band moves with the model (the median, which set it
    before, fell to 2% on rows that cluster on a few stacks: memory.py says why); the median meets
    the issue's 8% target; the in-sample error uses the calibrated fragmentation and is no worse
    than the cross-validated one."""
    d = _report()
    assert d["num_rows"] >= 30 and d["num_sources"] >= 5
    assert abs(d["cv_p80_abs_error_frac"] - MEMORY_BAND_FRAC) <= 0.01
    assert d["cv_median_abs_error_frac"] <= 0.08
    assert d["median_abs_error_frac"] <= d["cv_median_abs_error_frac"]
    assert d["fragmentation_frac"] == FRAGMENTATION_FRAC
    # every row carries its prediction, its leave-one-source-out error and its first-seen error
    assert all({"predicted", "error_frac", "cv_error_frac", "first_seen_error_frac"} <= set(r) for r in d["rows"])
    # today's model improves on the first-seen one (28% median |error| before this change)
    assert d["median_abs_error_frac"] < d["first_seen_median_abs_error_frac"]


def test_fragmentation_refit_is_the_shipped_fraction():
    """FRAGMENTATION_FRAC is the grid fraction with the least median |error| over every reserved row."""
    cases = vm.load_cases()
    parts = {c.id: vm.predicted_parts(c) for c in cases}
    assert vm.fit_fragmentation(cases, parts) == pytest.approx(FRAGMENTATION_FRAC)


def test_fits_verdict_on_the_training_validation_runs():
    """Every training validation run ran, so each should be predicted to fit or be marginal (the
    issue's target: 95%). Measured: 89 of 92 (96.7%) with the rows written as their recipes ran them
    (NeMo AutoModel's activation checkpointing and forced-balance gate, MaxText's layer inputs
    offloaded to host); the three left are MaxText Llama 3.1 70B and 405B on v6e (the loss's fp32
    logits and one layer's recompute as flopcast counts them do not fit 32 GiB beside the states) and
    Megatron-Bridge GPT-OSS 120B (its table's MBS 4 needs ~73 GiB of activations; the release's H100
    preset says MBS 1)."""
    v = vm.fits_on_validation_runs()
    assert v["num_runs"] >= 92
    assert v["frac"] >= 0.95
    assert set(v["does_not_fit"]) <= {"MAXTEXT-L31-70B-256xV6E", "MAXTEXT-L31-405B-256xV6E", "MB-2511-H100-GPTOSS"}


@pytest.mark.parametrize(("total", "verdict"), [(0.79, "fits"), (0.80, "fits"), (0.81, "marginal"), (1.0, "marginal"),
                                                (1.2, "marginal"), (1.21, "does not fit")])
def test_memory_verdict_band(total, verdict):
    """fits below capacity x (1 - band), marginal within the band either side of capacity, does not
    fit beyond capacity x (1 + band) (band 0.2 here)."""
    assert memory_verdict(total * 80, 80, band_frac=0.2) == verdict


def test_every_pipeline_rank_is_reported():
    """memory_per_rank lists every pipeline rank; each rank's parts sum to its total; the reported
    per-device memory is the busiest rank's; the first rank (most micro-batches in flight under
    1F1B) holds more activations than the last but the last adds the LM head and loss."""
    r = api.estimate_training({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 32},
                               "training": {"seq_len": 4096, "global_batch_seqs": 64},
                               "parallel": {"tp": 2, "pp": 4, "dp": 4, "microbatch_seqs": 1}})
    ranks = r.memory_per_rank
    assert [x["rank"] for x in ranks] == [0, 1, 2, 3]
    for x in ranks:
        assert sum(x[f"{k}_bytes"] for k in RANK_PARTS) == pytest.approx(x["total_bytes"])
        assert x["reserved_bytes"] == pytest.approx(x["allocated_bytes"] * (1 + FRAGMENTATION_FRAC))
    assert max(x["total_bytes"] for x in ranks) == pytest.approx(r.memory_per_device_bytes)
    assert ranks[0]["activations_bytes"] > ranks[2]["activations_bytes"]
    assert r.to_dict()["memory_per_rank"] == [dict(x) for x in ranks]
    assert r.memory_verdict == memory_verdict(r.memory_per_device_bytes, r.memory_capacity_bytes)


def _llama8b(framework: str, recompute: str, **parallel) -> float:
    plan = {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3, "recompute": recompute, "microbatch_seqs": 1, **parallel}
    return api.estimate_training({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
                                  "training": {"seq_len": 8192, "global_batch_seqs": 64, "framework": framework},
                                  "parallel": plan}).memory_breakdown_bytes["activations"]


def test_torchtitan_selective_is_per_op_checkpointing():
    """torchtitan's `selective` is per-op SAC (half the matmul outputs, attention outputs and the
    layer input kept): fewer activations than keeping all, more than full recompute; Megatron's
    selective (core attention, which FlashAttention already leaves unsaved) keeps them all."""
    titan = _llama8b("torchtitan", "selective")
    assert _llama8b("torchtitan", "full") < titan < _llama8b("torchtitan", "none")
    assert _llama8b("megatron-core", "selective") == pytest.approx(_llama8b("megatron-core", "none"))


def test_pipelined_fsdp_keeps_stage_parameters_and_gradients_unsharded():
    """FSDP under pipeline parallelism (torchtitan): the stage's parameters stay gathered (bf16) and
    its gradients accumulate unsharded in fp32 until the last micro-batch, so the weights and
    gradients of a rank do not shrink with the FSDP degree."""
    def states(dp: int) -> tuple[float, float]:
        r = api.estimate_training({"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 4 * dp},
                                   "training": {"seq_len": 4096, "global_batch_seqs": 16 * dp, "framework": "torchtitan"},
                                   "parallel": {"tp": 1, "pp": 4, "dp": dp, "zero_stage": 3, "microbatch_seqs": 1}})
        b = r.memory_breakdown_bytes
        return b["weights"], b["gradients"]
    (w2, g2), (w8, g8) = states(2), states(8)
    assert w8 == pytest.approx(w2) and g8 == pytest.approx(g2)
    assert g8 == pytest.approx(2 * w8)
