"""Edge reading and limits: site and price units are parsed (never a unit silently dropped), the
strict YAML loader keeps merge keys but refuses duplicates, and `--max-requests` caps a simulation
and says so."""

from __future__ import annotations

import pytest

from flopcast import api, inputs
from flopcast.errors import InvalidScenario
from flopcast.specs import limits
from flopcast.specs.site import site_from_mapping


@pytest.mark.parametrize(("given", "g_per_kwh"), [
    (390, 390.0), ("390 gCO2e/kWh", 390.0), ("0.4 kgCO2e/kWh", 400.0), ("400 kgCO2e/MWh", 400.0),
    ("0.39 tCO2e/MWh", 390.0), (0, 0.0)])
def test_grid_intensity_units(given, g_per_kwh):
    """'0.4 kgCO2e/kWh' is 400 g/kWh (it used to be read as 0.4 g)."""
    assert limits.grid_intensity_gco2e_per_kwh(given, field="f") == pytest.approx(g_per_kwh)


@pytest.mark.parametrize(("given", "usd_per_kwh"), [
    (0.08, 0.08), ("0.08 $/kWh", 0.08), ("$0.08/kWh", 0.08), ("8 cents/kWh", 0.08), ("80 $/MWh", 0.08),
    ("8 ¢/kWh", 0.08)])
def test_electricity_price_units(given, usd_per_kwh):
    """'8 cents/kWh' is $0.08/kWh (it used to be read as $8)."""
    assert limits.electricity_price_usd_per_kwh(given, field="f") == pytest.approx(usd_per_kwh)


def test_site_mapping_parses_units():
    """A site mapping with units gives the same spec as one in the documented base units."""
    a = site_from_mapping({"grid_intensity": "0.4 kgCO2e/kWh", "electricity_price": "8 cents/kWh", "pue": 1.2})
    b = site_from_mapping({"grid_intensity": 400, "electricity_price": 0.08, "pue": 1.2})
    assert a.grid_intensity_kgco2e_per_j == pytest.approx(b.grid_intensity_kgco2e_per_j)
    assert a.electricity_price_usd_per_j == pytest.approx(b.electricity_price_usd_per_j)


@pytest.mark.parametrize(("given", "usd"), [(2.5, 2.5), ("$2.50/device-hour", 2.5), ("2.5 $/GPU-hour", 2.5),
                                           ("250 cents/hour", 2.5), ("$2/h", 2.0)])
def test_hourly_price_units(given, usd):
    assert limits.normalize_pricing({"price_per_device_hour": given})["price_per_device_hour"] == pytest.approx(usd)


def test_plausible_values_pass_and_bare_numbers_get_a_hint():
    """In-range values pass unchanged; a bare NIC bandwidth of 400 asks about Gb/s."""
    assert limits.check_plausible("cluster.scale_out_bandwidth", "400 Gb/s", 50e9, "bytes_per_s") == 50e9
    with pytest.raises(InvalidScenario, match="did you mean '400 Gb/s'"):
        limits.check_plausible("cluster.scale_out_bandwidth", 400, 400.0, "bytes_per_s")


def test_yaml_merge_keys_kept_duplicates_refused():
    """`<<: *base` merges are not duplicates; a repeated key is."""
    assert inputs.load_yaml("a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n", what="t") == {"a": {"x": 1}, "b": {"x": 1, "y": 2}}
    with pytest.raises(InvalidScenario, match="duplicate key 'x'"):
        inputs.load_yaml("a: {x: 1, x: 2}\n", what="t")


def test_max_requests_caps_and_is_stated():
    """simulate_serving(max_requests=N) simulates the first N requests and records it."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
          "inference": {"tp": 1, "input_tokens": 128, "output_tokens": 4,
                        "workload": {"num_requests": 50_000_000, "arrival": {"process": "poisson", "rate_per_s": 50}}}}
    with pytest.raises(InvalidScenario, match="max-requests"):
        api.simulate_serving(sc)
    res = api.simulate_serving(sc, max_requests=30)
    assert res.num_requests == 30
    assert any(a.name == "num_requests" and "capped" in a.why for a in res.assumptions)
