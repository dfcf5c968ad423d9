"""On-device inference (issue 23, deliverable 5): group-scaled integer weights, the memory one app may
hold on a phone or laptop, the edge GPUs' dispatch gap, and the on-device validation rows."""

from __future__ import annotations

import pytest

from flopcast import api, catalog
from flopcast.errors import InvalidScenario
from flopcast.estimate import counts

PHONE = "apple-a18-pro-ane"


def _infer(model: str, hw: str, calibration: str | None = None, **inf):
    base = {"batch_size": 1, "input_tokens": 512, "output_tokens": 128, "kv_dtype": "fp16"}
    scenario = {"model": model, "hardware": hw, "inference": {**base, **inf}}
    if calibration is not None:
        scenario["calibration"] = calibration
    return api.estimate_serving(scenario)


def _projection_params(model_id: str) -> float:
    """Parameters stored in the weights' format: all but embedding, head and norms."""
    parts = counts.model_parts(catalog.get_model(model_id))
    return sum(p.params for p in parts if p.key.split("/")[0] not in ("embedding", "head", "norm"))


@pytest.mark.parametrize(("dtype", "group"), [("int4", 32), ("int4", 128), ("int8", 32), ("int8", 64)])
def test_group_scales_add_two_bytes_per_group(dtype, group):
    """weight_group_size g stores one fp16 scale per g weights: the projections take 2 / g bytes per
    weight on top of the 0.5 (int4) or 1 (int8); ggml's block_q4_0 is 18 bytes per 32 weights (4.5
    bits), block_q8_0 34 bytes per 32 (8.5 bits)."""
    n = _projection_params("llama-2-7b")
    plain = _infer("llama-2-7b", "apple-m4-max", weights_dtype="bf16").memory_breakdown_bytes["weights"]
    got = _infer("llama-2-7b", "apple-m4-max", weights_dtype=dtype,
                 weight_group_size=group).memory_breakdown_bytes["weights"]
    per_weight = {"int4": 0.5, "int8": 1.0}[dtype] + 2.0 / group
    assert got == pytest.approx(plain - n * 2.0 + n * per_weight, rel=1e-12)
    if (dtype, group) == ("int4", 32):
        assert per_weight * 8 == 4.5


def test_group_size_is_echoed_only_when_given():
    """The spec echoes weight_group_size when the scenario gives it, and leaves it out otherwise (the
    existing reports' JSON is unchanged)."""
    given = _infer("llama-3.2-1b", PHONE, weights_dtype="int4", weight_group_size=32).to_dict()
    assert given["inference"]["weight_group_size"] == 32
    assert "weight_group_size" not in _infer("llama-3.2-1b", PHONE, weights_dtype="int4").to_dict()["inference"]


@pytest.mark.parametrize(("inf", "match"), [
    ({"weights_dtype": "bf16", "weight_group_size": 32}, "applies to weights_dtype int4 or int8"),
    ({"weights_dtype": "int4", "weight_group_size": 48}, "power of two"),
    ({"weights_dtype": "int4", "weight_group_size": 4}, "integer 8..4096"),
    ({"weights_dtype": "int4", "weight_group_size": "32"}, "integer 8..4096"),
])
def test_bad_group_size_is_one_line_error(inf, match):
    """A group size on a format without group scales, not a power of two or out of range is refused
    on one line naming the key."""
    with pytest.raises(InvalidScenario, match=match) as e:
        _infer("llama-3.2-1b", PHONE, **inf)
    assert "inference.weight_group_size" in str(e.value) and "\n" not in str(e.value)


def test_capacity_is_the_memory_an_app_may_hold():
    """On a phone the weights, workspace and KV cache must fit in the app's share (iOS: 6 GB of the
    iPhone's 8 GB), not the whole memory: an 8B model in bf16 (16 GB) does not fit and says why,
    as a result, not an exception; a 3B model in int4 fits with room for its KV cache."""
    hw = catalog.get_hardware(PHONE)
    assert hw.app_memory_bytes == pytest.approx(6e9) and hw.app_memory_bytes < hw.hbm_capacity_bytes
    big = _infer("llama-3.1-8b", PHONE, weights_dtype="bf16")
    assert not big.fits and big.max_batch_size == 0
    assert f"an app on {PHONE} may use 5.588 GiB of its 8 GiB" in big.infeasible_reason   # 6 GB = 5.588 GiB
    small = _infer("llama-3.2-3b", PHONE, weights_dtype="int4", weight_group_size=32)
    mem = small.memory_breakdown_bytes
    assert small.fits and small.infeasible_reason is None
    assert sum(mem.values()) <= hw.app_memory_bytes     # the split is of the app's share, not the 8 GiB
    assert small.max_batch_size * mem["kv_cache"] <= hw.app_memory_bytes - mem["weights"] - mem["workspace"]


def test_datacenter_parts_keep_their_whole_memory():
    """A part without app_memory (every datacenter accelerator) is checked against its whole capacity."""
    from flopcast.estimate.serving import usable_memory_bytes

    for hw_id in ("h100-sxm", "b200", "mi300x"):
        hw = catalog.get_hardware(hw_id)
        assert hw.app_memory_bytes is None and usable_memory_bytes(hw) == hw.hbm_capacity_bytes
    for hw_id in ("apple-a17-pro-ane", "apple-m4-max", "snapdragon-8-elite-npu"):
        hw = catalog.get_hardware(hw_id)
        assert usable_memory_bytes(hw) == hw.app_memory_bytes < hw.hbm_capacity_bytes
        assert hw.sources["app_memory"]


def test_apple_gpu_decode_pays_the_dispatch_gap_per_kernel():
    """An Apple GPU drains and refills between dependent kernels (5.16 us each, measured): a decode
    step's launch time is the engine's host time plus layers x 12 kernels x the gap; a datacenter GPU
    pays no gap."""
    from flopcast.estimate.efficiency import dispatch_gap_s, serving_engine

    host = serving_engine("vllm").host_s_per_iteration
    layers = catalog.get_model("llama-2-7b").num_layers
    est = _infer("llama-2-7b", "apple-m1-max", weights_dtype="fp16")
    assert dispatch_gap_s("apple-m1-max") == 5.16e-6 and dispatch_gap_s("h100-sxm") == 0.0
    assert est.decode_step_breakdown_s["launch"] == pytest.approx(host + layers * 12 * 5.16e-6, rel=1e-12)


def test_batch1_decode_is_bandwidth_bound_on_the_phone():
    """Batch-1 decode of int4 Llama 3.2 3B on the phone sits within 25% of the bytes it must read
    (weights and the KV cache of the context) over the measured-fraction bandwidth, and below it:
    the roofline's memory term dominates (a compute-bound decode would be far faster here). The rule is
    the physical model's (calibration: none): the shipped profile's pooled serving multipliers, which
    unseen generations such as the edge take, scale every rate on top of it."""
    hw = catalog.get_hardware(PHONE)
    est = _infer("llama-3.2-3b", PHONE, calibration="none", weights_dtype="int4", weight_group_size=32)
    read = est.memory_breakdown_bytes["weights"] + est.memory_breakdown_bytes["kv_cache"]
    floor_s = read / (hw.hbm_bandwidth_bytes_per_s * 0.88)
    assert floor_s <= est.tpot_s <= 1.25 * floor_s


def test_every_ondevice_row_is_logged_first_and_validated_not_fitted():
    """Every on-device row has its first-seen entry (logged before it shaped the model) and is a
    validated-only case: no calibration parameter, fitted=False, class on-device."""
    from flopcast.validation import first_seen, ondevice

    log = first_seen.load()
    cases, skipped = ondevice.cases()
    assert not skipped and len(cases) == len(ondevice.load_rows()) >= 20
    for c in cases:
        e = log[c.id]
        assert e["kind"] == "on-device" and e["quantity"] == c.quantity
        assert float(e["measured"]) == pytest.approx(c.measured)
        assert not c.fitted and c.params == () and "on-device" in c.classes
    assert {r["verified"] for r in ondevice.load_rows()} == {True}
    assert len({c.source for c in cases}) >= 5


def test_validate_ondevice_median_within_the_target():
    """Issue 23's target: on-device median |error| <= 20% (29 rows, 5 source families; 17.0% when
    written, 18.6% first-seen), under the shipped profile (no edge parameter, so out of fit)."""
    rep = api.validate("on-device")
    assert rep["kind"] == "on-device" and rep["num_rows"] >= 20
    assert rep["median_abs_error_frac"] <= 0.20
    assert rep["by_class"]["on-device"]["num_rows"] == rep["num_rows"]
    assert rep["first_seen"]["num_logged"] == rep["num_rows"]


def test_ondevice_metrics():
    """decode_tokens_per_s is 1 / TPOT, prefill_tokens_per_s the prompt over the unloaded TTFT, ttft_s
    the unloaded TTFT; another metric is refused."""
    from flopcast.validation.ondevice import measure

    est = _infer("llama-3.2-1b", PHONE, weights_dtype="int4")
    assert measure(est, "decode_tokens_per_s") == pytest.approx(1 / est.tpot_s)
    assert measure(est, "prefill_tokens_per_s") == pytest.approx(512 / est.ttft_unloaded_s)
    assert measure(est, "ttft_s") == est.ttft_unloaded_s
    with pytest.raises(InvalidScenario, match="accepted: decode_tokens_per_s"):
        measure(est, "tokens_per_j")
