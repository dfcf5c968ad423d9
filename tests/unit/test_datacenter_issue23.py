"""Issue 23's datacenter knobs: PUE by the system's cooling, carbon in `budget`, reliability scenario
keys, `budget --deadline`, and the audit's hardware resolution and device-hours unit."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from flopcast import api, catalog
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import datacenter as dc
from flopcast.specs.site import resolve_site, site_from_mapping

LLAMA_8B = {"model": "llama-3-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 64},
            "training": {"seq_len": 8192, "global_batch_seqs": 64, "total_tokens": 1e11},
            "parallel": {"tp": 1, "dp": 64, "zero_stage": 3, "microbatch_seqs": 1}}


# ------------------------------------------------------------------------------------------- PUE
def test_gb200_budget_uses_liquid_cooling_pue_and_carries_carbon():
    """The issue's target command: `flopcast budget --power "1 GW" --hardware gb200 --json` takes the
    liquid-cooled PUE (us-average's air-cooled 1.5 -> 1.2) and prints pue, operational and embodied
    carbon beside devices, energy and cost."""
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "budget", "--power", "1 GW", "--hardware", "gb200",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["pue"] == pytest.approx(1.2) and d["cooling"] == "liquid"
    for key in ("num_devices", "energy_facility_j", "cost_usd", "emissions_operational_kgco2e",
                "emissions_embodied_kgco2e"):
        assert d[key] > 0, key
    assert d["power_facility_w"] == pytest.approx(1e9, rel=1e-5)


def test_liquid_pue_rule():
    """1 + (PUE_site - 1) x (1.2 - 1)/(1.5 - 1) for a liquid-cooled system on an air-cooled site (catalog
    site, or a mapping stating neither pue nor cooling); an air-cooled system keeps the site's PUE; a
    scenario's stated pue or cooling is used as given."""
    gb200, h100 = catalog.get_hardware("gb200"), catalog.get_hardware("h100-sxm")
    for site_id in ("us-average", "iceland", "singapore"):
        site = resolve_site(site_id)
        assert dc.facility_pue(gb200, site)[0] == pytest.approx(1 + (site.pue - 1) * 0.4)
        assert dc.facility_pue(h100, site)[0] == site.pue
    bare = site_from_mapping({"grid_intensity": 400, "electricity_price": 0.08})
    assert dc.facility_pue(gb200, bare)[0] == pytest.approx(1.2)
    assert dc.facility_pue(gb200, site_from_mapping({**{"grid_intensity": 400, "electricity_price": 0.08},
                                                     "pue": 1.4}))[0] == 1.4
    assert dc.facility_pue(gb200, resolve_site({"base": "us-average", "pue": 1.35}))[0] == 1.35
    air = api.budget(power="100 MW", hardware="gb200", days=30, site={"grid_intensity": 400,
                                                                     "electricity_price": 0.08, "pue": 1.5})
    liquid = api.budget(power="100 MW", hardware="gb200", days=30)
    assert liquid["num_devices"] == pytest.approx(air["num_devices"] * 1.5 / 1.2, rel=1e-4)


def test_every_accelerator_has_a_cooling_and_the_reference_pues_match_the_site_defaults():
    """systems.yaml's cooling is air or liquid for every catalog entry; its reference PUEs are the ones
    a site mapping defaults to by cooling (specs/site.py DEFAULT_PUE)."""
    from flopcast.specs.site import DEFAULT_PUE

    for hw_id in catalog.hardware_ids():
        assert dc.system_cooling(catalog.get_hardware(hw_id))[0] in ("air", "liquid")
    for cooling in ("air", "liquid", "immersion"):
        assert dc.cooling_pue(cooling) == DEFAULT_PUE[cooling]


def test_training_report_records_the_liquid_pue():
    """A GB200 training run on the default site says which PUE it used and why."""
    sc = {**LLAMA_8B, "hardware": "gb200", "cluster": {"num_devices": 72},
          "parallel": {"tp": 1, "dp": 72, "zero_stage": 3, "microbatch_seqs": 1},
          "training": {**LLAMA_8B["training"], "global_batch_seqs": 72}}
    e = api.estimate_training(sc)
    d = e.to_dict()
    pue = next(a for a in e.assumptions if a.name == "pue")
    assert pue.value == pytest.approx(1.2) and "liquid" in pue.why
    assert d["power_facility_w"] == pytest.approx(1.2 * d["power_it_w"])


# ---------------------------------------------------------------------------------------- carbon
def test_budget_carbon_is_energy_times_intensity_and_the_embodied_share():
    """Operational = facility energy x grid intensity; embodied = the catalog's per-device and host
    embodied carbon amortised over the run's days."""
    b = api.budget(energy="1 GWh", hardware="h100-sxm", days=30)
    site = resolve_site("us-average")
    assert b["emissions_operational_kgco2e"] == pytest.approx(3.6e12 * site.grid_intensity_kgco2e_per_j, rel=1e-3)
    emb, _ = dc.embodied_kgco2e(catalog.get_hardware("h100-sxm"), b["num_devices"], 30 * 86400)
    assert b["emissions_embodied_kgco2e"] == pytest.approx(emb)


# ----------------------------------------------------------------------------------- reliability
def test_reliability_keys_replace_the_defaults():
    """reliability.failures_per_device_hour sets the job's MTBF to 1/(N x rate); checkpoint_bytes and
    checkpoint_bandwidth set the write time; a longer restart_time lowers goodput; the assumptions
    say which were given."""
    base = api.estimate_training(LLAMA_8B).to_dict()
    given = api.estimate_training({**LLAMA_8B, "reliability": {
        "failures_per_device_hour": 1e-3, "checkpoint_bytes": "1 TB", "checkpoint_bandwidth": "10 GB/s",
        "restart_time": "30 min"}})
    d = given.to_dict()
    assert d["mtbf_s"] == pytest.approx(3600 / (64 * 1e-3))
    assert d["checkpoint_write_s"] == pytest.approx(1e12 / 1e10)
    assert d["goodput_frac"] < base["goodput_frac"]
    notes = {a.name: a for a in given.assumptions}
    assert "given" in notes["failure_model"].why and "given" in notes["restart_s"].why
    slow = api.estimate_training({**LLAMA_8B, "reliability": {"restart_time": "2 h"}}).to_dict()
    assert slow["goodput_frac"] < base["goodput_frac"] and slow["mtbf_s"] == pytest.approx(base["mtbf_s"])
    per_param = api.estimate_training({**LLAMA_8B, "reliability": {"checkpoint_bytes_per_param": 2}}).to_dict()
    assert per_param["checkpoint_write_s"] == pytest.approx(base["checkpoint_write_s"] * 2 / 14)


@pytest.mark.parametrize(("section", "error"), [
    ({"restart": "1 min"}, UnknownName), ({"checkpoint_bytes": "1 TB", "checkpoint_bytes_per_param": 2}, InvalidScenario),
    ({"failures_per_device_hour": -1}, InvalidScenario), ({"checkpoint_bandwidth": "0 GB/s"}, InvalidScenario),
    ({"restart_time": "30 days"}, InvalidScenario), ("fast", InvalidScenario)])
def test_reliability_bad_input(section, error):
    """Unknown keys, both checkpoint sizes, non-positive rates or bandwidths, absurd restarts: one-line errors."""
    with pytest.raises(error):
        api.estimate_training({**LLAMA_8B, "reliability": section})


# -------------------------------------------------------------------------------------- deadline
def test_deadline_gives_the_fewest_whole_nodes_that_finish():
    """--deadline: n devices finish the run's FLOPs (3 x forward FLOPs per token at 8K x tokens) at 40%
    MFU and their goodput by the deadline; one node fewer does not (compute-bound case)."""
    r = api.budget(deadline="90d", model="llama-3.1-405b", tokens=15.6e12, hardware="h100-sxm")
    hw = catalog.get_hardware("h100-sxm")
    n = r["num_devices"]
    assert n % hw.node_size == 0 and r["limited_by"] == "compute"
    assert r["time_to_train_s"] <= 90 * 86400

    def wall(k):
        rel = dc.reliability(_params(), k, hw.node_size)
        return r["compute_flops"] / (k * hw.peak("bf16") * 0.4) / rel.goodput_frac

    assert wall(n) <= 90 * 86400 < wall(n - hw.node_size)
    assert 10_000 < n < 20_000          # Meta trained it on 16K H100 in ~54 days of a longer run
    shorter = api.budget(deadline="45 days", model="llama-3.1-405b", tokens=15.6e12, hardware="h100-sxm")
    assert shorter["num_devices"] > 1.9 * n


def _params() -> int:
    from flopcast.estimate import counts

    return counts.params_total(catalog.get_model("llama-3.1-405b"))


def test_deadline_without_hardware_compares_the_catalog_and_picks_the_cheapest():
    """Without --hardware every shipping datacenter accelerator is planned; the chosen plan is the
    cheapest priced one and every option meets the deadline."""
    r = api.budget(deadline="120 days", model="llama-3-70b", tokens=15e12)
    priced = [o for o in r["options"] if o["cost_usd"] is not None]
    assert r["hardware"] == r["cheapest_hardware"] == min(priced, key=lambda o: o["cost_usd"])["hardware"]
    assert all(o["time_to_train_s"] <= 120 * 86400 for o in r["options"])
    assert r["fewest_devices_hardware"] == min(r["options"], key=lambda o: o["num_devices"])["hardware"]


def test_training_deadline_key_answers_the_same(tmp_path):
    """A scenario's training.deadline and total_tokens, through `flopcast budget --scenario`, give the
    same plan as the flags."""
    sc = {**LLAMA_8B, "training": {**LLAMA_8B["training"], "total_tokens": 15e12, "deadline": "30 days"}}
    from_scenario = api.budget(scenario=sc)
    flags = api.budget(deadline="30 days", model="llama-3-8b", tokens=15e12, hardware="h100-sxm")
    assert from_scenario["num_devices"] == flags["num_devices"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "budget", "--scenario", str(path), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_devices"] == flags["num_devices"]


@pytest.mark.parametrize("kw", [
    {"deadline": "90d"}, {"deadline": "90d", "model": "llama-3-8b"},
    {"deadline": "10 s", "model": "llama-3-8b", "tokens": 1e12},
    {"deadline": "90d", "model": "llama-3-8b", "tokens": 1e12, "power": "1 MW"}])
def test_deadline_bad_input(kw):
    """A deadline needs a model and tokens, a duration of an hour or more, and no other budget."""
    with pytest.raises(InvalidScenario):
        api.budget(**kw)


def test_training_deadline_is_checked():
    """training.deadline: a duration between one hour and ten years."""
    with pytest.raises(InvalidScenario, match="deadline"):
        api.estimate_training({**LLAMA_8B, "training": {**LLAMA_8B["training"], "deadline": "5 min"}})


# ----------------------------------------------------------------------------------------- audit
def test_audit_resolves_h800_trainium2_and_h20_to_their_parts():
    """H800 is the h800-sxm (not an H100), Trainium2 / Trn2 the trainium2, H20 the h20 (not the H200)."""
    from flopcast.audit import _hardware

    assert _hardware("H800").id == "h800-sxm" and _hardware("2,048 H800 SXM GPUs").id == "h800-sxm"
    assert _hardware("Trainium2").id == "trainium2" and _hardware("AWS Trn2").id == "trainium2"
    assert _hardware("H20").id == "h20" and _hardware("H200").id == "h200-sxm"
    assert _hardware("GB200 NVL72").id == "gb200" and _hardware("TPU v5p").id == "tpu-v5p"
    assert _hardware("MI400") is None and _hardware("Gaudi 4") is None


def _claim(tmp_path, **row):
    cols = ("id", "document", "claim_text", "subject", "quantity", "value", "unit", "stated_hardware",
            "stated_devices", "stated_duration", "stated_cost_usd", "notes")
    path = tmp_path / "claims.csv"
    path.write_text(",".join(cols) + "\n" + ",".join(f'"{row.get(c, "")}"' for c in cols) + "\n")
    return api.audit_claims(path)["claims"][0]


def test_audit_reads_device_hours_as_device_time(tmp_path):
    """Llama 3.1 405B's 30.84M H100 GPU-hours (Meta's model card) is device time: the 6 N D it implies at
    the H100's dense peak is a plausible MFU (consistent), never 3.1e7 FLOPs (which would be 10^18x
    too few)."""
    v = _claim(tmp_path, id="x1", claim_text="Llama 3.1 405B took 30.84M GPU hours", subject="Llama 3.1 405B",
               quantity="training_compute", value="3.084e7", unit="gpu_hours", stated_hardware="H100")
    assert v["verdict"] == "consistent" and "not FLOPs" in v["explanation"]
    assert 0.5 < v["ratio"] < 2


def test_audit_checks_a_training_run_on_the_stated_h800(tmp_path):
    """A run stated on H800 is checked against the H800's figures, not taken as an unspecified H100."""
    v = _claim(tmp_path, id="x2", claim_text="DeepSeek-V3 on 2,048 H800 for 57 days", subject="DeepSeek-V3",
               quantity="training_run", value="3.3e24", unit="flops", stated_hardware="H800",
               stated_devices="2048", stated_duration="57 days")
    assert "h800-sxm" in v["explanation"] and "taken as H100" not in v["explanation"]


def test_audit_device_hours_without_a_model_compare_devices_times_duration(tmp_path):
    """Without a catalog model, a device-hours figure is compared with the stated devices x duration."""
    v = _claim(tmp_path, id="x3", claim_text="1,000 Trainium2 for 10 days = 240k chip-hours", subject="a run",
               quantity="training_compute", value="240000", unit="chip_hours", stated_hardware="Trainium2",
               stated_devices="1000", stated_duration="10 days")
    assert v["verdict"] == "consistent" and v["ratio"] == pytest.approx(1.0)
    assert math.isfinite(v["ratio"])
