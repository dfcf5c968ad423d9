"""Datacenter layer: power model, PUE, cost, carbon, reliability (analytic vs Monte Carlo), budget."""

from __future__ import annotations

import math

import pytest

from flopcast import api, catalog
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import datacenter as dc
from flopcast.specs.site import resolve_site, site_from_mapping

SITE = {"grid_intensity": 400, "electricity_price": 0.08, "pue": 1.2, "cooling": "liquid"}


def test_power_breakdown_sums_and_uses_system_specs():
    """IT = devices + hosts + network; facility = IT x PUE; an H100 node's host share is the DGX H100
    maximum (10.2 kW) minus 8 x 700 W; peak IT has every device at TDP."""
    site = site_from_mapping(SITE)
    p = dc.power(catalog.get_hardware("h100-sxm"), 8, 1.0, site)
    assert p.device_w == pytest.approx(8 * 700)
    assert p.host_w == pytest.approx(10200 - 5600)
    assert p.it_w == pytest.approx(p.device_w + p.host_w + p.network_w)
    assert p.facility_w == pytest.approx(1.2 * p.it_w)
    idle = dc.power(catalog.get_hardware("h100-sxm"), 8, 0.0, site)
    assert idle.device_w == pytest.approx(8 * 700 * dc.IDLE_FRAC_OF_TDP)


def test_hundred_thousand_gpus_are_in_the_reported_range():
    """Industry reporting: a 100,000-GPU cluster draws 150-200 MW. flopcast's facility power for
    100,000 busy H100s at an air-cooled PUE of 1.5 lands in that range."""
    site = site_from_mapping({"grid_intensity": 400, "electricity_price": 0.08, "cooling": "air"})
    p = dc.power(catalog.get_hardware("h100-sxm"), 100_000, 0.9, site)
    assert 150e6 <= p.facility_w <= 200e6


def test_reliability_analytic_matches_monte_carlo():
    """Goodput from (M + R)(exp((tau + delta)/M) - 1) agrees with a seeded Monte Carlo of the same
    process within 3%, for 3 seeds (seen spread < 1% for 3,000 segments)."""
    mtbf, delta, restart = 3 * 3600.0, 120.0, 600.0
    tau = dc.optimal_interval_s(delta, mtbf, restart)
    work = 60 * 86400.0
    analytic = work / dc.goodput_frac(tau, delta, mtbf, restart)
    for seed in (0, 1, 2):
        mc = dc.monte_carlo_wall_s(work, tau, delta, mtbf, restart, seed)
        assert mc == pytest.approx(analytic, rel=0.03)


def test_optimal_interval_beats_neighbours_and_is_near_young():
    """The chosen interval maximises goodput; Young's sqrt(2 delta M) is close when delta << M."""
    mtbf, delta, restart = 10 * 3600.0, 60.0, 300.0
    tau = dc.optimal_interval_s(delta, mtbf, restart)
    g = dc.goodput_frac(tau, delta, mtbf, restart)
    assert g >= dc.goodput_frac(0.8 * tau, delta, mtbf, restart)
    assert g >= dc.goodput_frac(1.25 * tau, delta, mtbf, restart)
    assert tau == pytest.approx(math.sqrt(2 * delta * mtbf), rel=0.1)


def test_llama3_scale_failure_rate():
    """16,384 GPUs: the job MTBF is about 3 hours (Llama 3: 419 interruptions in 54 days)."""
    rate, _ = dc.failure_rate_per_s(16384, 8)
    assert 1 / rate / 3600 == pytest.approx(54 * 24 / 419, rel=0.15)


def test_training_report_has_datacenter_keys():
    """flopcast train adds power, energy, emissions, cost and goodput for the whole run."""
    sc = {"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8}, "site": SITE,
          "pricing": {"mode": "hourly", "price_per_device_hour": 2.5},
          "training": {"seq_len": 8192, "global_batch_seqs": 64, "total_tokens": 1e10},
          "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3}}
    d = api.estimate_training(sc).to_dict()
    for k in ("power_it_w", "power_facility_w", "energy_it_j", "energy_facility_j", "emissions_operational_kgco2e",
              "emissions_embodied_kgco2e", "cost_usd", "goodput_frac", "checkpoint_interval_s",
              "expected_interruptions", "effective_time_to_train_s"):
        assert k in d
    assert d["energy_facility_j"] == pytest.approx(d["power_facility_w"] * d["effective_time_to_train_s"])
    assert d["cost_usd"] == pytest.approx(2.5 * 8 * d["effective_time_to_train_s"] / 3600)
    assert d["emissions_operational_kgco2e"] == pytest.approx(d["energy_facility_j"] / 3.6e6 * 0.4)
    assert 0 < d["goodput_frac"] <= 1 and d["effective_time_to_train_s"] >= d["time_to_train_s"]


def test_serving_report_has_per_token_keys():
    """flopcast infer adds J per output token and $ per million output tokens."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1}, "site": SITE,
          "pricing": {"price_per_device_hour": 2.0},
          "inference": {"batch_size": 64, "input_tokens": 512, "output_tokens": 256}}
    d = api.estimate_serving(sc).to_dict()
    assert d["energy_per_output_token_j"] == pytest.approx(d["power_facility_w"] / d["output_tokens_per_s"])
    assert d["cost_per_million_output_tokens_usd"] == pytest.approx(2.0 / (d["output_tokens_per_s"] * 3600) * 1e6)


@pytest.mark.parametrize(
    ("site", "err", "fragment"),
    [
        ({"pue": 0.9, "grid_intensity": 300, "electricity_price": 0.1}, InvalidScenario, "below 1"),
        ({"pue": 1.2, "grid_intensity": -5, "electricity_price": 0.1}, InvalidScenario, "non-negative"),
        ({"pue": 1.2, "grid_intensity": 100, "electricity_price": 0.1, "cooling": "water"}, UnknownName, "liquid"),
    ],
)
def test_bad_sites(site, err, fragment):
    """PUE < 1, negative intensity and unknown cooling are clear errors."""
    with pytest.raises(err, match=fragment):
        resolve_site(site)


def test_budget_power_and_chinchilla():
    """100 MW of B200 for 90 days: devices = power / per-device facility power; compute-optimal
    model satisfies C = 6 N D with D = 20 N."""
    r = api.budget(power="100 MW", hardware="b200", days=90, site=SITE)
    per = dc.power(catalog.get_hardware("b200"), 1000, api.BUDGET_BUSY, site_from_mapping(SITE)).facility_w / 1000
    assert r["num_devices"] == int(100e6 // per)
    assert 6 * r["optimal_params"] * r["optimal_tokens"] == pytest.approx(r["compute_flops"])
    assert r["optimal_tokens"] == pytest.approx(20 * r["optimal_params"])
    e = api.budget(energy="1 GWh", hardware="h100-sxm", days=30, site=SITE)
    assert e["energy_facility_j"] <= 3.6e12


@pytest.mark.parametrize("kw", [{"power": "0 W"}, {"power": "-3 MW"}, {"power": "1 MW", "energy": "1 GWh"}, {}])
def test_budget_bad_input(kw):
    """Zero or negative power, or not exactly one budget: clear errors."""
    with pytest.raises(InvalidScenario):
        api.budget(hardware="b200", days=90, site=SITE, **kw)


def test_tco_pricing_adds_capex_facility_and_energy():
    """TCO: device + node capex over the depreciation years, facility capex, and electricity at the
    site price; longer depreciation lowers the cost."""
    from flopcast.specs.site import PricingSpec, prices, pricing_from_mapping

    hw = catalog.get_hardware("h100-sxm")
    site = site_from_mapping(SITE)
    day = 86400.0
    energy = 1e10
    c4, why = dc.cost_usd(hw, 8, day, energy, site, pricing_from_mapping({"mode": "tco", "depreciation_years": 4}))
    c8, _ = dc.cost_usd(hw, 8, day, energy, site, pricing_from_mapping({"mode": "tco", "depreciation_years": 8}))
    assert c8 < c4 and "TCO" in why
    capex = prices()["devices"]["h100-sxm"]["capex_usd"]
    assert c4 > capex * 8 * day / (4 * 365.25 * day) + energy * site.electricity_price_usd_per_j
    with pytest.raises(InvalidScenario, match="mode"):
        dc.cost_usd(hw, 8, day, energy, site, PricingSpec(mode="lease"))


def test_hardware_without_power_skips_datacenter_with_a_note():
    """A device with no power figure (an inline accelerator without tdp; every catalog entry now has
    one, issue 23): training still estimates, and says why the datacenter keys are absent."""
    no_power = {"name": "npu-x", "hbm_capacity": "96 GiB", "hbm_bandwidth": "2.8 TB/s",
                "peak_flops": {"bf16": "459 TFLOP/s"}, "scale_up_bandwidth": "600 GB/s", "scale_up_domain": 64,
                "node_size": 4}
    sc = {"model": "llama-3-8b", "hardware": no_power, "cluster": {"num_devices": 64},
          "training": {"seq_len": 8192, "global_batch_seqs": 64}, "parallel": {"tp": 4, "dp": 16}}
    e = api.estimate_training(sc)
    assert "power_it_w" not in e.to_dict()
    assert any(a.name == "datacenter" and "no published power" in a.why for a in e.assumptions)


def test_measured_chip_power_is_used_where_published():
    """TPU v4 publishes measured chip power (90 W min, 192 W max) and no TDP: devices draw 90 W idle
    and 192 W fully busy, linear between; the assumption says 'measured'."""
    tpu = catalog.get_hardware("tpu-v4")
    site = resolve_site("us-average")
    assert dc.power(tpu, 10, 0.0, site).device_w == pytest.approx(900.0)
    assert dc.power(tpu, 10, 1.0, site).device_w == pytest.approx(1920.0)
    assert dc.power(tpu, 10, 0.5, site).device_w == pytest.approx(1410.0)
    assert "measured" in dc.power_assumptions(tpu, site)[0].value
