"""The resolved scenario holds every section as a frozen spec (site, pricing, the inference section's
workload, SLO, scheduler and pools), parsed once; variants are dataclasses.replace of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs.scenario import resolve
from flopcast.specs.site import PricingSpec, SiteSpec, pricing_from_mapping
from flopcast.specs.traffic import SLO, SchedulerSpec, WorkloadSpec

ROOT = Path(__file__).resolve().parents[2]


def serving(**inference):
    return {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
            "inference": {"tp": 1, "dp": 8, **inference}}


def test_sections_are_frozen_specs():
    """Site, pricing and the traffic of the serving example are frozen specs with units in their
    names (seconds, requests per second, $ per device-hour)."""
    rs = resolve(ROOT / "examples" / "llama3-8b-serving-sim.yaml")
    assert isinstance(rs.site, SiteSpec) and rs.site.id == "us-average"
    assert isinstance(rs.workload, WorkloadSpec) and rs.workload.rate_per_s == 250 and rs.workload.num_requests == 16000
    assert rs.slo == SLO(ttft_s=0.5, tpot_s=0.03)
    assert rs.scheduler == SchedulerSpec(name="sarathi", given=True)
    assert rs.pools == () and rs.pricing is None
    for spec in (rs, rs.site, rs.workload, rs.slo, rs.scheduler):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(spec, dataclasses.fields(spec)[0].name, None)


def test_defaults_when_sections_are_absent():
    """No workload, slo or scheduler: workload None (a simulation runs a burst, with an Assumption),
    no SLO targets, the default scheduler not given; no site or pricing: None."""
    rs = resolve(serving())
    assert rs.workload is None and rs.slo == SLO() and rs.scheduler == SchedulerSpec()
    assert rs.site is None and rs.pricing is None
    training = resolve({"model": "llama-3-8b", "hardware": "h100-sxm",
                        "training": {"seq_len": 4096, "global_batch_seqs": 8}})
    assert training.inference is None and training.workload is None and training.pools == ()


def test_pricing_is_parsed_with_units():
    """pricing: the price per device-hour parsed to $ (units in its name); tco keys kept; the report's
    echo of the section is unchanged (the normalized mapping)."""
    rs = resolve(serving(batch_size=8) | {"pricing": {"mode": "tco", "capex_usd": 30000, "depreciation_years": 5}})
    assert rs.pricing == PricingSpec(mode="tco", capex_usd=30000.0, depreciation_years=5.0)
    assert rs.sections["pricing"] == {"mode": "tco", "capex_usd": 30000.0, "depreciation_years": 5.0}
    assert pricing_from_mapping({"price_per_device_hour": 2.5}).price_per_device_hour_usd == 2.5
    assert pricing_from_mapping(None) is None


def test_pools_and_disaggregated_default():
    """inference.prefill and inference.decode are PoolLayouts (prefill first) with their own specs;
    with pools and no scheduler the scheduler is disaggregated (not given)."""
    rs = resolve(serving(prefill={"tp": 2, "dp": 1}, decode={"tp": 1, "dp": 6}))
    assert [p.role for p in rs.pools] == ["prefill", "decode"]
    assert (rs.pools[0].spec.tp, rs.pools[1].spec.dp) == (2, 6)
    assert rs.scheduler == SchedulerSpec(name="disaggregated", given=False)


def test_bad_traffic_is_refused_when_resolved():
    """A bad workload, slo, scheduler or site is refused when the scenario is resolved, one line
    naming the field, whatever the command."""
    with pytest.raises(InvalidScenario, match="inference.workload.arrival.rate_per_s"):
        resolve(serving(workload={"arrival": {"process": "poisson"}}))
    with pytest.raises(InvalidScenario, match="inference.slo.ttft_p99"):
        resolve(serving(slo={"ttft_p99": "-1 s"}))
    with pytest.raises(UnknownName, match="inference.scheduler"):
        resolve(serving(scheduler="fifo"))
    with pytest.raises(UnknownName, match="site"):
        resolve(serving() | {"site": "atlantis"})


def test_variants_are_replacements():
    """A variant of a resolved scenario (a sizing trial) replaces specs; the original is unchanged."""
    rs = resolve(serving(workload={"num_requests": 100, "arrival": {"process": "poisson", "rate_per_s": 5}}))
    trial = dataclasses.replace(rs, inference=dataclasses.replace(rs.inference, dp=2),
                                workload=dataclasses.replace(rs.workload, num_requests=10))
    assert (trial.inference.dp, trial.workload.num_requests) == (2, 10)
    assert (rs.inference.dp, rs.workload.num_requests) == (8, 100)
