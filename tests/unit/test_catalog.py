"""Catalog integrity: required ids exist, every number has a source, peaks are dense."""

import pytest

from flopcast import api, catalog
from flopcast.dtypes import COMPUTE_DTYPES
from flopcast.estimate import counts
from flopcast.specs.hardware import STATUSES, missing_sources
from flopcast.specs.hf import SUPPORTED_MODEL_TYPES

REQUIRED_HARDWARE = ("a100-sxm-40gb a100-sxm-80gb v100-sxm-32gb h100-sxm h100-pcie h800-sxm h20 "
                     "h200-sxm b200 gb200 b300 gb300 mi250x mi300x mi325x mi355x gaudi2 gaudi3 tpu-v4 "
                     "tpu-v5e tpu-v5p tpu-v6e tpu-7x trainium2 trainium3 apple-m4-ane").split()
REQUIRED_MODELS = ("llama-2-7b llama-2-13b llama-2-70b llama-3-8b llama-3-70b llama-3.1-8b llama-3.1-70b "
                   "llama-3.1-405b mixtral-8x7b mixtral-8x22b deepseek-v2 deepseek-v3 qwen3-30b-a3b "
                   "qwen3-235b-a22b gpt3-175b gpt-oss-120b").split()


def test_required_ids_and_sizes():
    """Every id SCENARIO.md names exists; >= 25 accelerators and >= 16 models."""
    assert set(REQUIRED_HARDWARE) <= set(catalog.hardware_ids())
    assert set(REQUIRED_MODELS) <= set(catalog.model_ids())
    assert len(catalog.hardware_ids()) >= 25 and len(catalog.model_ids()) >= 16


@pytest.mark.parametrize("hw_id", catalog.hardware_ids())
def test_hardware_file_is_complete_and_sourced(hw_id):
    """Each accelerator file: id matches the file name, every number has a source, status is
    shipping or announced, peaks keyed by known dtypes, and it loads."""
    entry = catalog.hardware_entry(hw_id)
    assert entry["id"] == hw_id
    assert missing_sources(entry) == []
    assert entry["status"] in STATUSES
    assert set(entry["peak_flops"]) <= set(COMPUTE_DTYPES)
    hw = catalog.get_hardware(hw_id)
    assert hw.hbm_capacity_bytes > 0 and hw.hbm_bandwidth_bytes_per_s > 0
    # Narrower formats are never slower than bf16 on the same device (a sparse figure filed as a
    # dense one would usually break this ordering against its neighbours).
    p = hw.peak_flops_per_s
    if "bf16" in p and "fp8" in p:
        assert p["fp8"] >= p["bf16"]
    if "fp8" in p and "fp4" in p:
        assert p["fp4"] >= p["fp8"]


def test_edge_devices_present():
    """At least one phone NPU and one laptop NPU/unified-memory device, plus the V100."""
    kinds = {h: catalog.get_hardware(h).memory_kind for h in catalog.hardware_ids()}
    assert kinds["apple-a17-pro-ane"] == "unified" and kinds["apple-m4-ane"] == "unified"
    assert "v100-sxm-32gb" in kinds


@pytest.mark.parametrize(
    ("hw_id", "bf16_tflops", "scale_up_gb_s"),
    [("h100-sxm", 989.4, 450), ("a100-sxm-80gb", 312, 300), ("b200", 2250, 900), ("mi300x", 1307.4, 448),
     ("h800-sxm", 989.4, 200)],
)
def test_dense_peaks_and_per_direction_links(hw_id, bf16_tflops, scale_up_gb_s):
    """Dense datasheet peaks (not the 2:4-sparse headline) and per-direction scale-up bandwidth."""
    hw = catalog.get_hardware(hw_id)
    assert hw.peak("bf16") == pytest.approx(bf16_tflops * 1e12, rel=0.001)
    assert hw.scale_up_bandwidth_bytes_per_s == pytest.approx(scale_up_gb_s * 1e9, rel=0.001)


@pytest.mark.parametrize("model_id", catalog.model_ids())
def test_model_file_has_source_and_matches_reported_size(model_id):
    """Each model file names its source; the exact count is within 5% of the headline count
    (headlines are rounded: Minitron "8B" is 8.27B, the widest gap in the catalog)."""
    entry = catalog.model_entry(model_id)
    assert entry["id"] == model_id and entry["source"]
    assert entry["config"]["model_type"] in SUPPORTED_MODEL_TYPES
    total = counts.params_total(catalog.get_model(model_id))
    assert total == pytest.approx(entry["reported_params"], rel=0.05)


def test_every_family_has_a_catalog_model():
    """Each supported model_type is represented in the catalog."""
    families = {catalog.get_model(m).family for m in catalog.model_ids()}
    assert families == set(SUPPORTED_MODEL_TYPES)


def test_list_functions():
    """api listing functions return one row per catalog entry."""
    assert len(api.list_models()) == len(catalog.model_ids())
    assert len(api.list_hardware()) == len(catalog.hardware_ids())


REQUIRED_SITES = ("france quebec norway iceland us-average world-average germany india china us-virginia us-texas "
                  "poland").split()


def test_site_catalog_is_complete_and_sourced():
    """At least 12 sites from low-carbon to coal-heavy grids, each number sourced and dated."""
    from flopcast.catalog import _read_yaml
    from flopcast.specs.site import SITES_DIR, site_registry

    reg = site_registry()
    assert set(REQUIRED_SITES) <= set(reg.names()) and len(reg.names()) >= 12
    for sid in reg.names():
        raw = _read_yaml(SITES_DIR / f"{sid}.yaml")
        for key in ("grid_intensity_gco2e_per_kwh", "electricity_price_usd_per_kwh", "pue"):
            assert raw["sources"].get(key), (sid, key)
        assert raw["year"]
        site = reg.get(sid)
        assert site.pue >= 1.0 and site.grid_intensity_gco2e_per_kwh >= 0
    assert reg.get("france").grid_intensity_gco2e_per_kwh < 100 < reg.get("india").grid_intensity_gco2e_per_kwh


def test_unknown_site_suggests():
    """An unknown site id gets suggestions."""
    import pytest as _pytest

    from flopcast.errors import UnknownName
    from flopcast.specs.site import resolve_site

    with _pytest.raises(UnknownName, match="did you mean 'france'"):
        resolve_site("frence")


def test_every_data_file_ships_in_the_package():
    """Every non-Python file under src/flopcast matches a [tool.setuptools.package-data] pattern, so a
    regular (non-editable) install carries the whole catalog."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["flopcast"]
    pkg = root / "src" / "flopcast"
    data = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    missing = [f for f in data if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                          for pat in patterns)]
    assert data and not missing, missing
