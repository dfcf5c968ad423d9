"""flopcast fleet: spec parsing, the demand model, region x hour sizing, aggregation, the choice
among candidates, the CLI and the backends."""

from __future__ import annotations

import copy
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flopcast import api
from flopcast.cli import main
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.fleet.spec import HOURS, demand_from_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = {
    "name": "t",
    "model": "llama-3.1-8b",
    "fleet": {
        "slo": {"ttft_p99": "2 s", "tpot_p99": "40 ms"},
        "regions": [
            {"name": "a", "site": "us-virginia", "neighbours": ["b"],
             "demand": {"output_tokens_per_day": 2.0e10, "input_tokens": 1024, "output_tokens": 256,
                        "peak_to_mean": 1.5, "peak_hour_utc": 15}},
            {"name": "b", "site": "france", "neighbours": ["a"],
             "demand": {"requests_per_s": 300, "input_tokens": 512, "output_tokens": 128,
                        "prefix_cache_hit_frac": 0.5}},
        ],
        "deployments": [
            {"name": "h100-tp1", "hardware": "h100-sxm", "inference": {"tp": 1}},
            {"name": "h100-pd", "hardware": "h100-sxm", "prefill": {"tp": 1}, "decode": {"tp": 2}},
        ],
    },
}


def scenario(**policy) -> dict:
    s = copy.deepcopy(BASE)
    if policy:
        s["fleet"]["policy"] = policy
    return s


@pytest.fixture(scope="module")
def report() -> dict:
    return api.plan_fleet(scenario(), confirm=False).to_dict()


def test_cosine_profile_has_mean_one_and_peaks_at_the_given_hour():
    """peak_to_mean r gives 24 hourly averages of 1 + (r - 1) cos(2 pi (t - peak) / 24): mean exactly
    1, largest in the hour starting at the peak, and within the hour-average of r."""
    d, _ = demand_from_mapping({"requests_per_s": 1, "peak_to_mean": 1.8, "peak_hour_utc": 7}, "x")
    assert len(d.profile) == HOURS
    assert sum(d.profile) / HOURS == pytest.approx(1.0, abs=1e-12)
    assert max(range(HOURS), key=lambda h: d.profile[h]) in (6, 7)
    # averaging a cosine over a 1/24 period shrinks its amplitude by sin(pi/24)/(pi/24) = 0.99715
    assert max(d.profile) == pytest.approx(1 + 0.8 * math.cos(math.pi / 24) * 0.99715, rel=1e-3)


def test_given_profile_is_scaled_to_mean_one():
    """24 relative weights become the hourly share of the mean rate: weights / their mean."""
    w = [1.0] * 12 + [3.0] * 12
    d, _ = demand_from_mapping({"requests_per_s": 1, "profile": w}, "x")
    assert d.profile[0] == pytest.approx(0.5) and d.profile[-1] == pytest.approx(1.5)


def test_rates_and_lengths_convert_to_requests_per_second():
    """output tokens per week / (7 days x mean output length) = requests/s; input tokens per day over
    requests per day = the mean prompt length."""
    d, _ = demand_from_mapping({"output_tokens_per_week": 7 * 86400 * 1000.0, "output_tokens": 250,
                                "input_tokens_per_day": 86400 * 4 * 3000.0}, "x")
    assert d.requests_per_s == pytest.approx(4.0)
    assert d.input_tokens == pytest.approx(3000.0)


@pytest.mark.parametrize("bad, match", [
    ({"requests_per_s": 1, "peak_to_mean": 2.5}, r"peak_to_mean: expected a number >= 1 and <= 2"),
    ({"requests_per_s": 1, "output_tokens_per_day": 5}, r"exactly one rate"),
    ({"requests_per_s": 1, "prefix_cache_hit_frac": 1.0}, r"prefix_cache_hit_frac"),
    ({"requests_per_s": 1, "profile": [1, 2]}, r"profile: expected a list of 24"),
])
def test_bad_demand_is_one_line_naming_the_field(bad, match):
    """Every invalid demand raises InvalidScenario naming the field and the accepted values."""
    with pytest.raises(InvalidScenario, match=match) as e:
        demand_from_mapping(bad, "fleet.regions[0].demand")
    assert "\n" not in str(e.value)


def test_unknown_keys_get_did_you_mean():
    """A misspelt key or value lists the close matches."""
    s = scenario()
    s["fleet"]["regions"][0]["demand"]["peak_to_maen"] = 1.2
    with pytest.raises(UnknownName, match="did you mean 'peak_to_mean'"):
        api.plan_fleet(s, confirm=False)
    s = scenario(failover="neighbors")
    with pytest.raises(UnknownName, match="did you mean 'neighbours'"):
        api.plan_fleet(s, confirm=False)


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    """`flopcast fleet` on a bad scenario prints one `error:` line and exits with code 2."""
    s = scenario()
    s["fleet"]["regions"][1]["neighbours"] = ["nowhere"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(s))
    assert main(["fleet", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "neighbours" in err and "\n" not in err


def test_units_cover_the_load_at_target_utilisation_plus_spares():
    """Per hour and pool: units x capacity x target >= load (+ failover), and one unit fewer (before
    the k spares) would not be enough."""
    r = api.plan_fleet(scenario(spare_replicas=2, target_utilisation=0.8), confirm=False).to_dict()
    for region in r["regions"]:
        for p in region["pools"]:
            for h in range(HOURS):
                units = p["hourly_units"][h] - 2
                load = p["hourly_utilisation_frac"][h] * p["hourly_units"][h] * p["tokens_per_s_per_unit"]
                assert units * p["tokens_per_s_per_unit"] * 0.8 >= load * (1 - 1e-9)
                assert (units - 1) * p["tokens_per_s_per_unit"] * 0.8 < load


def test_fleet_totals_are_coincident_hourly_sums(report):
    """Fleet peak = the largest hourly sum over regions; energy = sum of hourly facility power x 1 h;
    $ per million output tokens = cost per day / output tokens per day x 1e6."""
    hourly = [sum(r["hourly"]["num_devices"][h] for r in report["regions"]) for h in range(HOURS)]
    assert report["num_devices_peak"] == max(hourly)
    assert report["num_devices_mean"] == pytest.approx(sum(hourly) / HOURS)
    assert report["num_devices_peak"] <= sum(r["num_devices_peak"] for r in report["regions"])
    e = sum(sum(r["hourly"]["power_facility_w"]) * 3600 for r in report["regions"])
    assert report["energy_facility_j_per_day"] == pytest.approx(e)
    assert report["cost_per_million_output_tokens_usd"] == pytest.approx(
        report["cost_usd_per_day"] / report["output_tokens_per_day"] * 1e6)
    assert report["output_tokens_per_day"] == pytest.approx(2.0e10 + 300 * 128 * 86400)


def test_json_keys_and_no_nan(report):
    """The issue's keys are present and the report is strict JSON (no NaN or inf)."""
    for k in ("regions", "num_devices_peak", "num_devices_mean", "power_facility_w_peak", "energy_facility_j_per_day",
              "cost_usd_per_day", "cost_per_million_output_tokens_usd", "emissions_operational_kgco2e_per_year",
              "emissions_embodied_kgco2e_per_year", "assumptions"):
        assert k in report
    for k in ("name", "num_devices_peak", "num_devices_mean", "power_facility_w_peak"):
        assert k in report["regions"][0]
    json.dumps(report, allow_nan=False)


def test_choices_are_the_minima_of_the_compared_candidates(report):
    """cheapest / fewest devices are the argmins of cost per day / peak devices over feasible rows, and
    the headline figures are those of the objective's choice (cost)."""
    rows = [r for r in report["deployments"] if r["feasible"]]
    ch = report["choices"]["llama-3.1-8b"]
    assert ch["cheapest"] == min(rows, key=lambda r: r["cost_usd_per_day"])["deployment"]
    assert ch["fewest_devices"] == min(rows, key=lambda r: (r["num_devices_peak"], r["num_devices_mean"]))["deployment"]
    chosen = next(r for r in rows if r["deployment"] == report["selected"]["llama-3.1-8b"])
    assert report["cost_usd_per_day"] == pytest.approx(chosen["cost_usd_per_day"])


def test_slo_batch_is_the_largest_that_meets_it(report):
    """The colocated batch meets the TPOT/TTFT SLO with the estimator, and one more sequence does not
    (unless memory stops it first)."""
    row = next(r for r in report["deployments"] if r["deployment"] == "h100-tp1")
    pool = row["capacity"][0]["pools"][0]
    assert pool["tpot_s"] <= 0.040 and pool["ttft_s"] <= 2.0
    nxt = api.estimate_serving({"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
                                "inference": {"tp": 1, "input_tokens": 1024, "output_tokens": 256,
                                              "batch_size": pool["batch_size"] + 1}})
    assert nxt.tpot_s > 0.040 or nxt.ttft_s > 2.0 or not nxt.fits


def test_prefix_cache_hits_shrink_only_the_prefill_pool():
    """Cached prompt tokens need no prefill compute: with a hit share h the prefill pool carries the
    same prompt tokens at a higher capacity per unit (the estimator computes only the uncached
    share), so it needs fewer units; the decode pool is unchanged."""
    def pools(hit):
        s = scenario()
        s["fleet"]["regions"] = [s["fleet"]["regions"][1]]
        s["fleet"]["regions"][0]["neighbours"] = []
        s["fleet"]["regions"][0]["demand"]["prefix_cache_hit_frac"] = hit
        s["fleet"]["deployments"] = [s["fleet"]["deployments"][1]]
        reg = api.plan_fleet(s, confirm=False).to_dict()["regions"][0]
        return {p["role"]: p for p in reg["pools"]}

    a, b = pools(0.0), pools(0.75)
    load = lambda p: p["hourly_utilisation_frac"][0] * p["hourly_units"][0] * p["tokens_per_s_per_unit"]  # noqa: E731
    assert load(b["prefill"]) == pytest.approx(load(a["prefill"]))
    assert b["prefill"]["tokens_per_s_per_unit"] > 2 * a["prefill"]["tokens_per_s_per_unit"]
    assert b["prefill"]["units_mean"] < a["prefill"]["units_mean"]
    assert b["decode"] == a["decode"]


def test_static_scaling_holds_the_peak_and_failover_adds_devices():
    """static: every hour holds the region's peak; failover to neighbours never needs fewer devices."""
    st = api.plan_fleet(scenario(scaling="static"), confirm=False).to_dict()
    for r in st["regions"]:
        assert len(set(r["hourly"]["num_devices"])) == 1
    plain = api.plan_fleet(scenario(), confirm=False).to_dict()
    fo = api.plan_fleet(scenario(failover="neighbours"), confirm=False).to_dict()
    for a, b in zip(plain["regions"], fo["regions"], strict=True):
        assert all(y >= x for x, y in zip(a["hourly"]["num_devices"], b["hourly"]["num_devices"], strict=True))
    assert fo["num_devices_mean"] > plain["num_devices_mean"]


def test_infeasible_deployment_is_reported_and_not_chosen():
    """A layout the estimator refuses (tp not dividing the heads) is a row with its reason, never the choice."""
    s = scenario()
    s["fleet"]["deployments"].append({"name": "bad", "hardware": "h100-sxm", "inference": {"tp": 3}})
    r = api.plan_fleet(s, confirm=False).to_dict()
    bad = next(x for x in r["deployments"] if x["deployment"] == "bad")
    assert not bad["feasible"] and "tp" in bad["infeasible_reason"] and bad["num_devices_peak"] is None
    assert r["selected"]["llama-3.1-8b"] != "bad"


def test_power_cap_steers_the_choice():
    """A candidate above a region's power cap is flagged and not chosen when another fits every cap."""
    s = scenario()
    s["fleet"]["deployments"].append({"name": "a100", "hardware": "a100-sxm-80gb", "inference": {"tp": 1}})
    free = api.plan_fleet(s, confirm=False).to_dict()
    rows = {x["deployment"]: x for x in free["deployments"]}
    chosen = free["selected"]["llama-3.1-8b"]
    peak_a = next(c for c in free["regions"] if c["name"] == "a")["power_facility_w_peak"]
    s["fleet"]["regions"][0]["power_cap"] = peak_a * 0.999
    capped = api.plan_fleet(s, confirm=False).to_dict()
    crow = {x["deployment"]: x for x in capped["deployments"]}
    assert "a" in crow[chosen]["exceeds_power_cap"]
    assert capped["selected"]["llama-3.1-8b"] != chosen or all(x["exceeds_power_cap"] for x in crow.values()
                                                               if x["feasible"])
    assert rows  # the uncapped run compared every candidate


def test_confirmation_simulates_the_binding_hour():
    """The chosen colocated pool's busiest hour per unit is simulated and its p99s compared with the SLO."""
    s = scenario()
    s["fleet"]["deployments"] = [s["fleet"]["deployments"][0]]
    r = api.plan_fleet(s).to_dict()
    for region in r["regions"]:
        p = region["pools"][0]
        c = p["confirmation"]
        assert c["hour_utc"] == max(range(HOURS), key=lambda h: p["hourly_utilisation_frac"][h])
        assert c["simulated"] and c["meets_slo"] in (True, False) and c["ttft_p99_s"] > 0


def test_disaggregated_deployment_is_confirmed_as_one_system():
    """A prefill + decode deployment is simulated together at its decode pool's binding hour: a few
    decode units, prefill units in that hour's proportion (at least one), each pool with its own
    layout; both pools carry the same confirmation."""
    r = api.plan_fleet(EXAMPLES / "deepseek-production-day.yaml").to_dict()
    pools = r["regions"][0]["pools"]
    pre = next(p for p in pools if p["role"] == "prefill")
    dec = next(p for p in pools if p["role"] == "decode")
    c = dec["confirmation"]
    assert c == pre["confirmation"] and c["simulated"] and c["num_rejected"] == 0
    assert c["hour_utc"] == max(range(HOURS), key=lambda h: dec["hourly_utilisation_frac"][h])
    assert 1 <= c["units_simulated"]["decode"] <= 4 and c["units_simulated"]["prefill"] >= 1
    assert c["ttft_p99_s"] > 0 and c["tpot_p99_s"] > 0


def test_deepseek_example_predicts_every_throughput():
    """The shipped DeepSeek day is sized from the estimator's throughputs (never the published ones:
    73.7k input tokens/s per prefill node, 14.8k output tokens/s per decode node), with DeepSeek's
    4-node prefill and 18-node decode units among the candidates."""
    r = api.plan_fleet(EXAMPLES / "deepseek-production-day.yaml", confirm=False).to_dict()
    assert r["output_tokens_per_day"] == pytest.approx(168e9)
    assert r["input_tokens_per_day"] == pytest.approx(608e9)
    rows = {d["deployment"]: d for d in r["deployments"]}
    units = {p["role"]: p["unit_devices"] for p in rows["deepseek-ep32-ep144"]["capacity"][0]["pools"]}
    assert units == {"prefill": 32, "decode": 144}
    for p in r["regions"][0]["pools"]:
        per_node = p["tokens_per_s_per_unit"] / (p["unit_devices"] / 8)
        assert per_node != pytest.approx(73_700) and per_node != pytest.approx(14_800)
    assert r["num_nodes_mean"] == pytest.approx(r["num_devices_mean"] / 8)


def test_plots_are_svg(tmp_path, report):
    """The day chart and the candidate charts are well-formed SVG files."""
    from flopcast.report.fleet_plot import write_fleet_plots

    paths = write_fleet_plots(report, tmp_path)
    assert any(p.endswith("fleet-day.svg") for p in paths)
    for p in paths:
        assert ET.parse(p).getroot().tag.endswith("svg")


def test_cli_fleet_json_and_table(capsys):
    """`flopcast fleet --json` prints one JSON object; without --json a table."""
    path = str(EXAMPLES / "fleet-three-regions.yaml")
    assert main(["fleet", path, "--json", "--no-confirm"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_devices_peak"] > 0 and len(d["regions"]) == 3
    assert main(["fleet", path, "--no-confirm"]) == 0
    assert "Candidate deployments compared" in capsys.readouterr().out


def test_ray_backend_agrees_with_local():
    """backend=ray (a local Ray with 2 CPUs) gives the same report as the local backend."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local = api.plan_fleet(scenario(failover="neighbours"), confirm=False).to_dict()
        remote = api.plan_fleet(scenario(failover="neighbours"), backend="ray", confirm=False).to_dict()
    finally:
        ray.shutdown()
    assert local.pop("backend") == "local" and remote.pop("backend") == "ray"
    assert remote == local


def test_model_mix_splits_demand_and_restricts_deployments():
    """fleet.models shares split every region's demand; a deployment with `model:` serves only that
    model, and the fleet's output tokens are the sum over models."""
    s = scenario()
    s["fleet"]["models"] = [{"model": "llama-3.1-8b", "share": 0.75}, {"model": "mixtral-8x7b", "share": 0.25}]
    s["fleet"]["deployments"] = [
        {"name": "small", "hardware": "h100-sxm", "inference": {"tp": 1}},
        {"name": "moe", "hardware": "h100-sxm", "model": "mixtral-8x7b", "inference": {"tp": 2}},
    ]
    r = api.plan_fleet(s, confirm=False).to_dict()
    served = {(x["model"], x["deployment"]) for x in r["deployments"]}
    assert served == {("llama-3.1-8b", "small"), ("mixtral-8x7b", "small"), ("mixtral-8x7b", "moe")}
    by = {(x["model"], x["deployment"]): x for x in r["deployments"]}
    total = 2.0e10 + 300 * 128 * 86400
    assert by[("llama-3.1-8b", "small")]["output_tokens_per_day"] == pytest.approx(0.75 * total)
    assert r["output_tokens_per_day"] == pytest.approx(total)
    assert set(r["selected"]) == {"llama-3.1-8b", "mixtral-8x7b"}
    s["fleet"]["models"][1]["share"] = 0.5
    with pytest.raises(InvalidScenario, match="shares sum to 1.25"):
        api.plan_fleet(s, confirm=False)


def test_failover_region_carries_its_neighbours_load():
    """With two regions that are each other's only neighbour, each hour's units cover the region's own
    load plus all of the other's (the failed region's load moves to its one neighbour)."""
    s = scenario(failover="neighbours")
    s["fleet"]["deployments"] = [s["fleet"]["deployments"][0]]
    r = api.plan_fleet(s, confirm=False).to_dict()
    a, b = (reg["pools"][0] for reg in r["regions"])

    def own(p, h):
        return p["hourly_utilisation_frac"][h] * p["hourly_units"][h] * p["tokens_per_s_per_unit"]

    for h in range(HOURS):
        need = own(a, h) + own(b, h)
        assert a["hourly_units"][h] == math.ceil(need / a["tokens_per_s_per_unit"] - 1e-9)


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s["fleet"]["deployments"][0].__setitem__("hardware", "h100"),
     r"fleet.deployments\[0\].hardware: unknown hardware 'h100'; did you mean 'h100-sxm'"),
    (lambda s: s["fleet"]["regions"][0].__setitem__("site", "irelnd"),
     r"fleet.regions\[0\].site: unknown site 'irelnd'; did you mean 'ireland'"),
    (lambda s: s["fleet"]["deployments"][0]["inference"].__setitem__("tpp", 2),
     r"fleet.deployments\[0\].inference: unknown inference field 'tpp'; did you mean 'tp'"),
])
def test_bad_names_name_their_field(mutate, match):
    """A misspelt hardware, site or layout key is one error naming its place in the fleet section."""
    s = scenario()
    mutate(s)
    with pytest.raises(UnknownName, match=match):
        api.plan_fleet(s, confirm=False)


def test_fleet_layer_reproduces_deepseek_with_published_unit_throughputs(monkeypatch):
    """With DeepSeek's published per-node throughputs as unit capacities (73.7k input tokens/s per
    prefill node incl. 56.3% cache hits, 14.8k output tokens/s per decode node; 4- and 18-node units),
    the fleet layer alone (demand model, hourly whole units) lands within 5% of the published average
    of 226.75 nodes: what remains of the DeepSeek gap belongs to the serving estimator."""
    from flopcast.fleet import sizing
    from flopcast.fleet.capacity import PoolCapacity

    published = (PoolCapacity(role="prefill", unit_devices=32, batch_size=1, tokens_per_s=4 * 73_700,
                              ttft_s=None, tpot_s=None, busy_frac=1.0),
                 PoolCapacity(role="decode", unit_devices=144, batch_size=1, tokens_per_s=18 * 14_800,
                              ttft_s=None, tpot_s=None, busy_frac=1.0))
    monkeypatch.setattr(sizing, "pool_capacities", lambda job, mi, di, ri: published)
    r = api.plan_fleet(EXAMPLES / "deepseek-production-day.yaml", confirm=False).to_dict()
    assert r["num_nodes_mean"] == pytest.approx(226.75, rel=0.05)
