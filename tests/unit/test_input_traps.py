"""Issue 20's input traps: crashes on awkward inputs, size limits before expansion, YAML 1.1 surprises,
plausible ranges per field and keys that contradict each other. Each test failed before its fix."""

from __future__ import annotations

import json
import resource
import time

import pytest

from flopcast import api, inputs
from flopcast.errors import FlopcastError, InvalidScenario
from flopcast.specs import limits
from flopcast.specs.scenario import resolve

SERVE = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 2},
         "inference": {"tp": 1, "dp": 2, "input_tokens": 512, "output_tokens": 64}}
TRAIN = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
         "training": {"seq_len": 4096, "global_batch_seqs": 64, "total_tokens": 1e12},
         "parallel": {"tp": 1, "pp": 1, "dp": 8}}


def _with(base: dict, section: str, **keys) -> dict:
    out = json.loads(json.dumps(base))
    out.setdefault(section, {}).update(keys)
    return out


# ----------------------------------------------------------------------------- crashes
def test_speculative_reports_are_json():
    """infer and plan on a scenario with inference.speculative give JSON (the spec echoed as a mapping)."""
    sc = _with(SERVE, "inference", speculative={"method": "eagle", "num_draft_tokens": 3, "acceptance_length": 2.5})
    for report in (api.estimate_serving(sc).to_dict(), api.plan(sc).to_dict()):
        text = json.dumps(report, allow_nan=False)
        assert '"method": "eagle"' in text


@pytest.mark.parametrize("calibration", ["none", "shipped"])
def test_plan_with_calibration_is_json(calibration):
    """plan echoes `calibration:` profiles as JSON data (they crashed `plan --json`)."""
    out = api.plan(TRAIN | {"calibration": calibration}).to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out["inputs"]["calibration"]) == {"training", "inference"}


def test_huge_integers_are_refused_before_conversion():
    """A 5,000-digit integer (YAML, JSON or a Python mapping) is a one-line error naming its key, not
    Python's int-to-string limit."""
    digits = "9" * 5000
    with pytest.raises(InvalidScenario, match="num_devices: a number of 5,000 characters"):
        inputs.load_yaml(f"cluster: {{num_devices: {digits}}}", what="scenario")
    with pytest.raises(InvalidScenario, match="5,000 characters"):
        inputs.load_json(f'{{"a": {digits}}}', what="body")
    with pytest.raises(InvalidScenario, match=r"cluster.num_devices: an integer of about 5,00\d digits"):
        resolve(TRAIN | {"cluster": {"num_devices": 10**5000 - 1}})
    with pytest.raises(FlopcastError):
        api.show_model({"model_type": "llama", "hidden_size": 10**5000})
    with pytest.raises(FlopcastError):
        api.show_model("llama-3.1-8b", seq_len=10**5000)


def test_budget_with_denormal_days_is_refused():
    """`budget --days 1e-320` (and any run shorter than a minute) is refused instead of overflowing."""
    for kw in ({"energy": "1 GWh"}, {"budget_usd": 1e6}, {"power": "100 MW"}):
        with pytest.raises(InvalidScenario, match="days"):
            api.budget(hardware="h100-sxm", days=1e-320, **kw)
    with pytest.raises(InvalidScenario, match="devices bought"):
        api.budget(hardware="h100-sxm", days=1, energy="1e300 J")


def test_fleet_pricing_is_parsed():
    """A fleet scenario's pricing section is parsed like any other (a bare number was a TypeError)."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "pricing": 1.5,
          "fleet": {"regions": [{"name": "r", "demand": {"output_tokens_per_day": 1e9}}],
                    "deployments": [{"name": "d", "inference": {"tp": 1}}]}}
    with pytest.raises(InvalidScenario, match="pricing"):
        api.plan_fleet(sc, confirm=False)


@pytest.mark.parametrize("row,words", [
    ("a,b,s.yaml,tokens_per_s,1e-320", "plausible range"),
    ("a,b,s.yaml,tokens_per_s,1e300", "plausible range"),
    ("a,b,s.yaml,step_time_s,5,extra", "6 fields"),
    ("a,b,,step_time_s,5", "column scenario is empty"),
    ("a,b,s.yaml,step_time_s", "column value is empty"),
    ("a,b,s.yaml,tokens_per_s," + "9" * 5000, "characters"),
])
def test_calibrate_csv_rows_are_checked(tmp_path, row, words):
    """A malformed RUNS.csv row is refused naming its line (a denormal value was a math domain error)."""
    (tmp_path / "s.yaml").write_text(json.dumps(TRAIN))
    csv = tmp_path / "runs.csv"
    csv.write_text("id,source,scenario,metric,value\n" + row + "\n")
    with pytest.raises(InvalidScenario, match=f"line 2: .*{words}"):
        api.calibrate([str(csv)])


# ------------------------------------------------------------------ size limits before expansion
def test_layout_bomb_is_refused_fast_and_small():
    """A 222-byte pipeline_layout that would expand to gigabytes is refused in < 100 ms with < 50 MB of
    memory growth (the expanded length is computed before expanding)."""
    bomb = "(" + "t" * 10 + ")*" + "9" * 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for layout in (bomb, "((tttttttttt)*99999)*99999", "(tttttttttt)*99999999"):
        with pytest.raises(InvalidScenario, match="pipeline_layout"):
            resolve(_with(TRAIN, "parallel", pipeline_layout=layout))
    assert time.perf_counter() - t0 < 0.1 * 3
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024   # kB on Linux


# ------------------------------------------------------------------------- YAML 1.1 surprises
@pytest.mark.parametrize("text,words", [
    ("num_devices: 010", "num_devices: 010 has a leading zero, which YAML 1.1 reads as octal (010 would be 8)"),
    ("duration: 1:30", "duration: 1:30 is a YAML 1.1 base-60 number (read as 90)"),
    ("x: [1, 010]", "line 1: 010 has a leading zero"),
])
def test_yaml_octal_and_sexagesimal_are_refused(text, words):
    """YAML 1.1 reads 010 as 8 and 1:30 as 90; the loader refuses both, naming the key."""
    with pytest.raises(InvalidScenario) as e:
        inputs.load_yaml(text, what="scenario")
    assert words in str(e.value)


def test_yaml_plain_numbers_still_read():
    """0, hex, underscores, floats and quoted '010' read as before."""
    assert inputs.load_yaml("a: 0\nb: 0x10\nc: 1_000\nd: 0.5\ne: '010'\nf: -0", what="s") == \
        {"a": 0, "b": 16, "c": 1000, "d": 0.5, "e": "010", "f": 0}


# ----------------------------------------------------------------------- plausible ranges and units
@pytest.mark.parametrize("key,value,words", [
    ("tdp", "700 kW", "did you mean '700 W'?"),
    ("hbm_bandwidth", "3.35 Tb/s", "did you mean '3.35 TB/s'?"),
    ("scale_out_bandwidth", "400 GB/s", "did you mean '400 Gb/s'?"),
    ("hbm_capacity", "80 TiB", "did you mean '80 GiB'?"),
])
def test_hardware_fields_have_plausible_ranges(key, value, words):
    """Per-field ranges (a device's TDP, memory bandwidth, NIC) catch a unit slip and suggest the unit meant."""
    with pytest.raises(InvalidScenario, match=f"hardware.{key}") as e:
        resolve({"model": "llama-3.1-8b", "hardware": {"base": "h100-sxm", key: value}})
    assert words in str(e.value)


def test_catalog_hardware_is_plausible():
    """Every catalog part passes the per-field ranges (they are built around it)."""
    from flopcast import catalog

    for hw_id in catalog.hardware_ids():
        catalog.get_hardware(hw_id)


@pytest.mark.parametrize("price,words", [
    ("0.08 $/MWh", "below any grid price"),
    (80, "'80 $/MWh'"),
])
def test_electricity_price_range(price, words):
    """An electricity price outside ~$0.005..2/kWh is refused ($/MWh for $/kWh and back)."""
    with pytest.raises(InvalidScenario, match="electricity_price") as e:
        limits.electricity_price_usd_per_kwh(price, field="site.electricity_price")
    assert words in str(e.value)


@pytest.mark.parametrize("keys,words", [
    ({"total_tokens": 15.6}, "did you mean 15.6e12 (15.6 trillion)"),
    ({"global_batch_seqs": 4_000_000}, "did you mean global_batch_tokens: 4000000?"),
    ({"global_batch_tokens": 262144}, "give global_batch_seqs (sequences per step) or global_batch_tokens"),
])
def test_training_sizes_are_plausible_and_not_contradictory(keys, words):
    """Token totals in trillions, a token count given as sequences and both batch keys are refused."""
    with pytest.raises(InvalidScenario) as e:
        resolve(_with(TRAIN, "training", **keys))
    assert words in str(e.value)


@pytest.mark.parametrize("slo,words", [
    ({"tpot_p99": 5}, "did you mean '5 ms'?"),
    ({"ttft_p99": 2000}, "did you mean '2000 ms'?"),
    ({"tpot_p99": "50 ms", "tpot_p99_ms": 50}, "not both"),
    ({"tpot_p99_ms": "50 ms"}, "bare number"),
    ({"ttft_p99": "2 h"}, "outside 1 us..1 h"),
])
def test_slo_needs_units(slo, words):
    """An SLO value needs its unit or a key naming it; one target given twice is refused."""
    sc = _with(SERVE, "inference", slo=slo, workload={"num_requests": 10, "arrival": {"process": "burst"}})
    with pytest.raises(InvalidScenario, match="inference.slo") as e:
        api.simulate_serving(sc)
    assert words in str(e.value)


def test_slo_keys_with_units_read():
    """tpot_p99_ms: 50 and tpot_p99: '50 ms' are the same target."""
    from flopcast.sim.workload import slo_from_mapping

    assert slo_from_mapping({"tpot_p99_ms": 50, "ttft_p99_s": 2}) == slo_from_mapping(
        {"tpot_p99": "50 ms", "ttft_p99": "2 s"})


@pytest.mark.parametrize("cap,words", [(30, "did you mean '30 MW'?"), ("1e30 W", "implausibly high")])
def test_region_power_cap_range(cap, words):
    """A region's power_cap of 30 (watts) or past 100 GW is refused."""
    with pytest.raises(InvalidScenario, match="power_cap") as e:
        limits.facility_power_w(cap, field="fleet.regions[0].power_cap")
    assert words in str(e.value)
    assert limits.facility_power_w("30 MW", field="x") == 30e6


# ------------------------------------------------------------------- features that do not apply
@pytest.mark.parametrize("section,keys,words", [
    ("training", {"precision": "fp8"}, "fp8 training needs fp8 tensor cores; a100-sxm-80gb has none"),
    ("parallel", {"recompute_modules": ["mla_up_proj"]}, "multi-head latent attention (MLA), which llama-3.1-8b"),
    ("parallel", {"recompute_modules": ["moe_act"]}, "MoE layers, which llama-3.1-8b does not have"),
    ("training", {"finetune": {"method": "lora", "target_modules": ["experts"]}}, "has no MoE layers"),
    ("parallel", {"pp": 2, "dp": 4, "vpp": 1_000_000, "pipeline_layout": "balanced"}, "2,000,000 virtual stages"),
])
def test_training_features_that_do_not_apply_are_refused(section, keys, words):
    """fp8 on a part without fp8 (A100 reported MFU 55.7%), MLA / MoE recompute modules and LoRA experts
    on a dense model, and a million virtual stages are refused with the reason."""
    sc = _with(TRAIN | {"hardware": "a100-sxm-80gb"}, section, **keys)
    with pytest.raises(InvalidScenario) as e:
        resolve(sc)
    assert words in str(e.value)


def test_mla_recompute_on_an_mla_model_is_accepted():
    """mla_up_proj applies to DeepSeek-V2-Lite (MLA, MoE)."""
    sc = _with(TRAIN | {"model": "deepseek-v2-lite"}, "parallel", recompute_modules=["mla_up_proj", "moe_act"])
    resolve(sc)


def test_prompt_beyond_the_context_is_refused():
    """A 200k-token prompt on a 128k-context model is refused (it was served)."""
    with pytest.raises(InvalidScenario, match="context of 131,072 tokens"):
        api.estimate_serving(_with(SERVE, "inference", input_tokens=200_000))


def test_duplicated_vary_key_is_refused():
    """`sweep --vary k=a --vary k=b` dropped the first list; it is refused."""
    from flopcast.run.sweep import parse_vary

    with pytest.raises(InvalidScenario, match="given twice"):
        parse_vary(["parallel.tp=1,2", "parallel.tp=4"])


FLEET = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
         "fleet": {"regions": [{"name": "r", "site": "us-virginia",
                                "demand": {"output_tokens_per_week": 1e10, "input_tokens": 1024, "output_tokens": 256}}],
                   "deployments": [{"name": "d", "inference": {"tp": 1}}]}}


@pytest.mark.parametrize("where,value,words", [
    (("policy", "spare_replicas"), 1e300, "spare_replicas"),
    (("policy", "target_utilisation"), 1e-300, "target_utilisation"),
    (("regions", 0, "demand", "output_tokens"), 1e300, "output_tokens"),
    (("regions", 0, "demand", "output_tokens_per_week"), 1e-300, "output_tokens_per_week"),
    (("regions", 0, "demand", "output_tokens_per_week"), 1e300, "output_tokens_per_week"),
    (("deployments", 0, "inference", "max_batch_size"), 1e300, "deployments[0].inference.max_batch_size"),
    (("deployments", 0, "inference", "tp"), "x", "deployments[0].inference.tp"),
    (("regions", 0, "power_cap"), 30, "did you mean '30 MW'?"),
    (("slo",), {"tpot_p99": 5}, "did you mean '5 ms'?"),
])
def test_fleet_values_are_bounded(where, value, words):
    """Fleet values like 1e300 (a numpy type error, NaN, or every cell silently infeasible) and a bare power
    cap or SLO are refused naming the field."""
    sc = json.loads(json.dumps(FLEET))
    node = sc["fleet"]
    for k in where[:-1]:
        node = node.setdefault(k, {}) if isinstance(k, str) else node[k]
    node[where[-1]] = value
    with pytest.raises(FlopcastError) as e:
        api.plan_fleet(sc, confirm=False)
    assert words in str(e.value)


@pytest.mark.parametrize("workload,words", [
    ({"trace": "t.csv", "arrival": {"trace": "t.csv"}}, "give the trace once"),
    ({"trace": "t.csv", "arrival": {"process": "poisson", "rate_per_s": 5}}, "arrival.process: a trace gives"),
    ({"arrival": {"trace": "t.csv", "rate_per_s": 5}}, "arrival.rate_per_s: a trace gives"),
    ({"trace": "t.csv", "input_tokens": 512}, "workload.input_tokens: a trace gives"),
])
def test_trace_and_arrival_keys_contradict(workload, words):
    """A trace with an arrival process, rate or lengths beside it (one silently dropped) is refused."""
    from flopcast.sim.workload import workload_from_mapping

    with pytest.raises(InvalidScenario) as e:
        workload_from_mapping(workload, input_tokens=512, output_tokens=64)
    assert words in str(e.value)


def test_draft_model_larger_than_target_is_refused():
    """A 405B draft model beside an 8B target 'fitted' (its weights not counted): refused as a draft model."""
    spec = {"method": "draft_model", "draft_model": "llama-3.1-405b", "num_draft_tokens": 3, "acceptance_length": 2}
    with pytest.raises(InvalidScenario, match="draft_model: llama-3.1-405b is not smaller than the target"):
        resolve(_with(SERVE, "inference", speculative=spec))
    resolve(_with(SERVE, "inference", speculative=spec | {"draft_model": "llama-3.2-1b"}))


def test_hbm_bandwidth_too_low_for_hbm():
    """An HBM part at 335 GB/s (a dropped digit) is refused; the same figure on an LPDDR part is read."""
    with pytest.raises(InvalidScenario, match="too low for HBM"):
        resolve({"model": "llama-3.1-8b", "hardware": {"base": "h100-sxm", "hbm_bandwidth": "335 GB/s"}})
    resolve({"model": "llama-3.1-8b",
                 "hardware": {"base": "h100-sxm", "hbm_bandwidth": "335 GB/s", "memory_kind": "lpddr"}})
