"""Multi-phase training runs (`training.phases`): per-phase estimates by the single-plan estimator,
run totals that are their exact sums, phase overrides that touch only their phase, errors that name
the phase, and the CLI, search and service around them."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flopcast import api
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs import limits
from flopcast.specs import workload as tw

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llama3-405b-phases.yaml"

BASE = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
        "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3, "recompute": "selective"}}
PHASES = [
    {"name": "short", "seq_len": 4096, "global_batch_seqs": 64, "total_tokens": 2e9},
    {"name": "main", "seq_len": 8192, "global_batch_seqs": 32, "total_tokens": 10e9},
    {"name": "long", "seq_len": 32768, "global_batch_seqs": 8, "total_tokens": 1e9,
     "parallel": {"cp": 2, "dp": 4}},
]
SUMMED = ("time_to_train_s", "device_hours", "energy_it_j", "energy_facility_j", "emissions_operational_kgco2e",
          "emissions_embodied_kgco2e", "cost_usd", "expected_interruptions", "effective_time_to_train_s")


def scenario(phases=None, **training):
    sc = copy.deepcopy(BASE)
    sc["training"] = {"precision": "bf16", **training, "phases": copy.deepcopy(PHASES if phases is None else phases)}
    return sc


def run(*args):
    return subprocess.run([sys.executable, "-m", "flopcast.cli", *map(str, args)], capture_output=True, text=True)


def test_run_totals_are_the_exact_sums_of_the_phases():
    """Time, device-hours, energy, emissions, cost, interruptions and effective time of the run are
    the sums of the phases' figures in phase order, to the last bit; steps and tokens too; goodput is
    time over effective time."""
    d = api.estimate_training(scenario()).to_dict()
    assert [p["name"] for p in d["phases"]] == ["short", "main", "long"]
    for key in SUMMED:
        total = 0.0
        for p in d["phases"]:
            total += p[key]
        assert d[key] == total, key
    assert d["num_steps"] == sum(p["num_steps"] for p in d["phases"])
    assert d["total_tokens"] == 13e9
    assert d["goodput_frac"] == d["time_to_train_s"] / d["effective_time_to_train_s"]
    assert d["power_facility_peak_w"] == max(p["power_facility_w"] for p in d["phases"])


def test_single_plan_keys_describe_the_main_phase():
    """The main phase is the one with the most tokens; the top-level plan, memory, step, throughput,
    MFU and power are its figures, and `main` marks it in the list."""
    d = api.estimate_training(scenario()).to_dict()
    main = d["phases"][1]
    assert d["main_phase"] == "main" and main["main"] and not d["phases"][0]["main"]
    for key in ("parallel", "memory_per_device_bytes", "step_time_s", "tokens_per_s", "mfu", "hfu",
                "power_facility_w", "num_microbatches"):
        assert d[key] == main[key], key


def test_main_phase_is_the_first_of_equals():
    """Two phases with the same tokens: the first is the main phase."""
    phases = [dict(PHASES[0], total_tokens=1e9), dict(PHASES[1], total_tokens=1e9)]
    assert api.estimate_training(scenario(phases)).to_dict()["main_phase"] == "short"


def test_one_phase_run_equals_the_plain_run():
    """A run of one phase (its keys at the section's level) gives every key of the plain run, with
    the same values; the phase's entry repeats them."""
    plain = copy.deepcopy(BASE) | {"training": {"seq_len": 8192, "global_batch_seqs": 32, "total_tokens": 10e9}}
    one = copy.deepcopy(BASE) | {"training": {"seq_len": 8192, "global_batch_seqs": 32,
                                              "phases": [{"name": "all", "total_tokens": 10e9}]}}
    a = api.estimate_training(plain).to_dict()
    b = api.estimate_training(one).to_dict()
    for key, value in a.items():
        if key != "assumptions":
            assert b[key] == value, key
    assert [x for x in b["assumptions"] if x["name"] != "training.phases"] == a["assumptions"]
    p = b["phases"][0]
    for key in ("step_time_s", "memory_per_device_bytes", "mfu", "time_to_train_s", "device_hours",
                "energy_facility_j", "cost_usd", "effective_time_to_train_s"):
        assert p[key] == a[key], key


def test_a_phase_override_changes_only_that_phase():
    """Overriding seq_len in one phase changes that phase's estimate; the other phases equal the
    runs without the override, and equal plain runs of their own shape."""
    base = api.estimate_training(scenario()).to_dict()["phases"]
    changed = copy.deepcopy(PHASES)
    changed[2]["seq_len"] = 16384
    changed[2]["global_batch_seqs"] = 16
    new = api.estimate_training(scenario(changed)).to_dict()["phases"]
    assert new[2]["seq_len"] == 16384 and new[2]["step_time_s"] != base[2]["step_time_s"]
    assert new[:2] == base[:2]
    plain = copy.deepcopy(BASE) | {"training": {"precision": "bf16", "seq_len": 4096, "global_batch_seqs": 64,
                                                "total_tokens": 2e9}}
    a = api.estimate_training(plain).to_dict()
    for key in ("step_time_s", "memory_per_device_bytes", "time_to_train_s", "energy_facility_j", "cost_usd"):
        assert base[0][key] == a[key], key


def test_phase_inherits_the_section_and_overrides_the_plan():
    """A phase inherits the section's keys (precision) and the scenario's plan with its own parallel
    keys over it; the section's global_batch_tokens keeps the tokens per batch across seq_len."""
    phases = [{"name": "a", "seq_len": 4096, "total_tokens": 1e9},
              {"name": "b", "seq_len": 8192, "total_tokens": 2e9, "precision": "fp8",
               "parallel": {"dp": 4, "cp": 2}}]
    d = api.estimate_training(scenario(phases, global_batch_tokens=262144)).to_dict()
    a, b = d["phases"]
    assert (a["global_batch_seqs"], b["global_batch_seqs"]) == (64, 32)
    assert a["tokens_per_step"] == b["tokens_per_step"] == 262144
    assert (a["precision"], b["precision"]) == ("bf16", "fp8")
    assert (a["parallel"]["dp"], a["parallel"]["cp"], b["parallel"]["dp"], b["parallel"]["cp"]) == (8, 1, 4, 2)
    assert a["parallel"]["zero_stage"] == b["parallel"]["zero_stage"] == 3


def test_phase_device_count_override():
    """`cluster: {num_devices}` in a phase runs it on that many devices: its plan must multiply to
    them, and its device-hours count them."""
    phases = [PHASES[0], dict(PHASES[1], cluster={"num_devices": 16}, parallel={"dp": 16})]
    d = api.estimate_training(scenario(phases)).to_dict()
    b = d["phases"][1]
    assert b["num_devices"] == 16 and b["parallel"]["dp"] == 16
    assert b["device_hours"] == pytest.approx(b["time_to_train_s"] * 16 / 3600, rel=1e-12)
    with pytest.raises(InvalidScenario, match=r"training\.phases\[1\] \('main'\).*must equal.*16"):
        api.estimate_training(scenario([PHASES[0], dict(PHASES[1], cluster={"num_devices": 16})]))


def test_a_phase_that_does_not_fit_makes_the_run_not_fit():
    """Infeasible is a value: a phase that does not fit leaves the others' figures, and the run's
    reason names that phase only."""
    phases = [PHASES[0], dict(PHASES[1], seq_len=131072, global_batch_seqs=8, parallel={"recompute": "none"})]
    d = api.estimate_training(scenario(phases)).to_dict()
    assert d["phases"][0]["fits"] and not d["phases"][1]["fits"]
    assert d["fits"] is False
    assert d["infeasible_reason"].startswith("phase 'main': ") and "'short'" not in d["infeasible_reason"]


@pytest.mark.parametrize("phases, error, pattern", [
    ({"name": "a"}, InvalidScenario, r"^training\.phases: expected a non-empty list"),
    ([], InvalidScenario, r"^training\.phases: expected a non-empty list"),
    (["main"], InvalidScenario, r"^training\.phases\[0\]: expected a mapping"),
    ([{"name": "a", "seq_lne": 8192, "total_tokens": 1e9}], UnknownName,
     r"training\.phases\[0\] field 'seq_lne'; did you mean 'seq_len'"),
    ([PHASES[0], {"name": "b", "seq_len": 8192}], InvalidScenario,
     r"^training\.phases\[1\] \('b'\): total_tokens missing"),
    ([PHASES[0], PHASES[0]], InvalidScenario, r"training\.phases\[1\]\.name: 'short' .* unique"),
    ([dict(PHASES[0], seq_len=0)], InvalidScenario, r"^training\.phases\[0\]"),
    ([dict(PHASES[0], precision="bf17")], UnknownName, r"training\.phases\[0\]\.precision 'bf17'.*bf16"),
    ([dict(PHASES[0], parallel={"tpp": 2})], UnknownName, r"training\.phases\[0\]\.parallel field 'tpp'"),
    ([dict(PHASES[0], parallel=[2])], InvalidScenario, r"training\.phases\[0\]\.parallel: expected a mapping"),
    ([dict(PHASES[0], cluster={"devices_per_node": 4})], UnknownName, r"accepted: num_devices"),
    ([dict(PHASES[0], phases=[])], UnknownName, r"training\.phases\[0\] field 'phases'"),
    ([{"total_tokens": 1e9}] * (limits.MAX_PHASES + 1), InvalidScenario,
     rf"training\.phases: number of phases: {limits.MAX_PHASES + 1} is past the limit of {limits.MAX_PHASES}"),
])
def test_bad_phases_are_one_line_errors_naming_the_field(phases, error, pattern):
    """Each malformed `training.phases` is refused with one line naming the phase and the field."""
    with pytest.raises(error) as e:
        api.estimate_training(scenario(phases))
    assert re.search(pattern, str(e.value)), str(e.value)
    assert "\n" not in str(e.value)


def test_section_total_must_equal_the_phases_sum():
    """The section's own total_tokens is a check: the phases' sum passes (to 1e-6), anything else is refused."""
    api.estimate_training(scenario(total_tokens=13e9 * (1 + 1e-8)))
    with pytest.raises(InvalidScenario, match=r"^training\.total_tokens: 1\.4e\+10 .* sum to 1\.3e\+10"):
        api.estimate_training(scenario(total_tokens=14e9))


def test_a_phase_without_a_plan_is_named():
    """`train` needs a plan for every phase: without a parallel section, a phase without its own is named."""
    sc = scenario([dict(PHASES[0], parallel={"dp": 8}), PHASES[1]])
    del sc["parallel"]
    with pytest.raises(InvalidScenario, match=r"^training\.phases\[1\] \('main'\): no parallel plan"):
        api.estimate_training(sc)


def test_plan_without_parallel_searches_the_main_phase():
    """`plan` without a parallel section: the search plans the main phase, the others inherit its
    plan, and a phase on other devices (where it is invalid) gets its own search; the assumptions
    say so, and every phase is estimated."""
    sc = scenario([PHASES[0], PHASES[1], dict(PHASES[0], name="wide", cluster={"num_devices": 16})])
    del sc["parallel"]
    tr = api.plan(sc).to_dict()["training"]
    a, main, wide = tr["phases"]
    found = api.search_training(sc, top=1, workers=1).to_dict()["plans"][0]
    assert all(main["parallel"][k] == found[k] for k in ("tp", "pp", "dp", "cp", "zero_stage", "recompute"))
    assert a["parallel"] == main["parallel"]
    assert wide["num_devices"] == 16 and wide["parallel"]["tp"] * wide["parallel"]["dp"] * wide["parallel"]["pp"] == 16
    names = {x["name"] for x in tr["assumptions"]}
    assert {"parallel", "phases.wide.parallel"} <= names and "phases.short.parallel" not in names


def test_search_plans_one_phase():
    """`search` plans the main phase by default, `phase=` another; the chosen phase's parallel keys
    are held fixed, and the assumptions name the phase. An unknown phase gets 'did you mean'."""
    sc = scenario()
    main = api.search_training(sc, top=1, workers=1).to_dict()
    assert next(a for a in main["assumptions"] if a["name"] == "phase")["value"] == "main"
    long = api.search_training(sc, top=3, workers=1, phase="long").to_dict()
    assert next(a for a in long["assumptions"] if a["name"] == "phase")["value"] == "long"
    assert all(p["cp"] == 2 and p["dp"] == 4 for p in long["plans"])
    with pytest.raises(UnknownName, match="did you mean 'long'"):
        api.search_training(sc, phase="lon")
    plain = copy.deepcopy(BASE) | {"training": {"seq_len": 4096, "global_batch_seqs": 64}}
    with pytest.raises(InvalidScenario, match=r"^--phase: .*no training\.phases"):
        api.search_training(plain, phase="main")


def test_docs_list_every_phase_key():
    """docs/scenario.md documents every key a phase and its cluster mapping accept."""
    text = (ROOT / "docs" / "scenario.md").read_text()
    assert "### training.phases" in text
    missing = sorted(k for k in (*tw.PHASE_KEYS, *tw.PHASE_CLUSTER_KEYS) if f"`{k}`" not in text)
    assert not missing, missing


def _no_nan(text: str) -> dict:
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def test_cli_train_and_plan_json_of_the_example():
    """The example (Meta's Llama 3 405B schedule) runs: `train --json` and `plan --json` print one
    JSON object with no NaN or infinity, a phase list, and totals; its tokens add up to 15.6T."""
    r = run("train", EXAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    d = _no_nan(r.stdout)
    assert [p["name"] for p in d["phases"]] == ["ramp-4m", "ramp-8m", "main", "long-context", "anneal"]
    assert d["total_tokens"] == pytest.approx(15.6e12, rel=1e-12)
    assert d["phases"][3]["parallel"]["cp"] == 16 and d["phases"][3]["num_devices"] == 16384
    r = run("plan", EXAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    tr = _no_nan(r.stdout)["training"]
    assert tr["main_phase"] == "main" and len(tr["phases"]) == 5


def test_cli_human_report_has_a_phase_table():
    """Without --json the training report shows one row per phase and the total."""
    path = ROOT / "examples" / "llama3-405b-phases.yaml"
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "train", str(path)], capture_output=True, text=True,
                       env={"COLUMNS": "200", "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert "Phases (main: main)" in r.stdout
    for name in ("ramp-4m", "ramp-8m", "long-context", "anneal", "total"):
        assert name in r.stdout


@pytest.mark.parametrize("phases", [
    "not a list",
    [{"name": "a", "seq_len": 4096, "global_batch_seqs": 64}],
    [{"name": "a", "seq_lne": 4096, "total_tokens": 1e9}],
])
def test_cli_bad_phases_exit_2(tmp_path, phases):
    """Bad phases on the CLI: exit code 2, one line `error: training.phases...` on stderr, nothing on stdout."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario(phases)))
    for cmd in ("train", "plan", "search"):
        r = run(cmd, path, "--json")
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stdout == "" and r.stderr.startswith("error: ") and "training.phases" in r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_service_accepts_phases():
    """The service takes the same scenario: 200 with the phase list, 422 with one line for bad phases."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from flopcast.web import app as web_app

    client = TestClient(web_app.create_app(), raise_server_exceptions=False)
    r = client.post("/api/train", json=scenario())
    assert r.status_code == 200 and [p["name"] for p in r.json()["phases"]] == ["short", "main", "long"]
    r = client.post("/api/plan", json=scenario([{"name": "a", "seq_len": 4096, "global_batch_seqs": 64}]))
    assert r.status_code == 422 and r.json()["error"].startswith("training.phases[0] ('a'): total_tokens missing")


def _finite(x, where=""):
    if isinstance(x, float):
        assert x == x and abs(x) != float("inf"), where
    elif isinstance(x, dict):
        for k, v in x.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _finite(v, f"{where}[{i}]")


def test_awkward_phases_are_refused_or_estimated():
    """Hypothesis-generated phase lists (phases or their keys replaced by awkward values: huge,
    negative, wrong types, unknown keys, strings with units): `train` and `plan` either return finite
    JSON or raise flopcast's own error, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from flopcast.errors import FlopcastError

    values = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 10**9, 10**30, 2**63]), st.integers(-3, 24),
                       st.sampled_from([0.0, 0.5, 1e-300, 1e300, 1.5, 4096.0]), st.text(max_size=5),
                       st.sampled_from(["", "main", "bf16", "fp8", "1e9", "4 GiB", "max", "none", "full"]),
                       st.none(), st.booleans(), st.lists(st.integers(0, 9), max_size=3),
                       st.dictionaries(st.sampled_from(["tp", "dp", "cp", "num_devices", "x"]), st.integers(0, 9),
                                       max_size=2))
    keys = st.sampled_from([*tw.PHASE_KEYS, "parallel.dp", "parallel.cp", "parallel.tp", "parallel.recompute",
                            "cluster.num_devices", "unknown"])

    @st.composite
    def cases(draw):
        phases = copy.deepcopy(PHASES[:draw(st.integers(1, 3))])
        if draw(st.integers(0, 9)) == 0:
            return draw(values)
        for _ in range(draw(st.integers(1, 3))):
            ph = phases[draw(st.integers(0, len(phases) - 1))]
            key, value = draw(keys), draw(values)
            if "." in key:
                outer, inner = key.split(".")
                if not isinstance(ph.get(outer), dict):
                    ph[outer] = {}
                ph[outer][inner] = value
            else:
                ph[key] = value
        return phases

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(cases())
    def check(phases):
        for call in (api.estimate_training, api.plan):
            try:
                _finite(call(scenario(phases)).to_dict())
            except FlopcastError as e:
                assert "\n" not in str(e)

    check()
