"""Every accelerator in the catalog answers `train`, `infer` and `budget` (issue 23): no command fails
on a catalog entry, and each carries a power figure so energy, cost and carbon are estimated."""

import pytest

from flopcast import api, catalog

SMALL_MODEL = "llama-3.2-1b"
NEW_PARTS = {   # issue 23's hardware: id -> status
    "ascend-910b": "shipping", "ascend-910c": "shipping", "dojo-d1": "shipping",
    "apple-a18-pro-ane": "shipping", "apple-m4-pro": "shipping", "apple-m4-max": "shipping",
    "snapdragon-8-elite-npu": "shipping", "rubin": "announced", "mi455x": "announced",
}


def _float_dtype(hw_id: str) -> str:
    peaks = catalog.get_hardware(hw_id).peak_flops_per_s
    return next(d for d in ("bf16", "fp16", "fp8") if d in peaks)


@pytest.mark.parametrize("hw_id", catalog.hardware_ids())
def test_every_command_works_on_every_catalog_entry(hw_id):
    """train (one device, a 1B model), infer and budget run on each entry without an error, and the
    training and serving reports carry datacenter figures (every accelerator has a power figure);
    budget prints operational and embodied carbon (every accelerator has an embodied figure)."""
    train = api.estimate_training({
        "model": SMALL_MODEL, "hardware": hw_id, "cluster": {"num_devices": 1},
        "training": {"seq_len": 2048, "global_batch_seqs": 8, "total_tokens": 1e9, "precision": _float_dtype(hw_id)},
        "parallel": {"microbatch_seqs": 1}}).to_dict()
    infer = api.estimate_serving({
        "model": SMALL_MODEL, "hardware": hw_id, "cluster": {"num_devices": 1},
        "inference": {"batch_size": 1, "input_tokens": 128, "output_tokens": 16}}).to_dict()
    budget = api.budget(hardware=hw_id, days=30, power="1 MW")
    assert train["energy_facility_j"] > 0 and train["emissions_operational_kgco2e"] > 0
    assert infer["energy_facility_j"] > 0
    assert budget["num_devices"] >= 1 and budget["energy_facility_j"] > 0
    assert budget["emissions_operational_kgco2e"] > 0 and budget["emissions_embodied_kgco2e"] > 0


def test_issue_23_parts_are_in_the_catalog_with_their_status():
    """Ascend, Dojo, Apple, Snapdragon, Rubin and MI400 entries exist; announced parts say so."""
    for hw_id, status in NEW_PARTS.items():
        assert catalog.get_hardware(hw_id).status == status, hw_id


@pytest.mark.parametrize("hw_id", ["gb300", "b300", "mi355x", "rubin", "mi455x"])
def test_fp4_peaks_where_the_part_has_them(hw_id):
    """Parts with an FP4 tensor mode carry a dense fp4 peak at least their fp8 peak."""
    p = catalog.get_hardware(hw_id).peak_flops_per_s
    assert p["fp4"] >= p["fp8"]
