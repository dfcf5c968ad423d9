"""The service opens no path named in a request: scenario keys that name files (model configs,
fleet model configs, calibration profiles, workload traces) are refused over HTTP (422, one line,
naming the field) unless they name a catalog entry or a file inside a `--data-dir` folder; no answer
ever shows what a file outside that folder holds, and an error about a permitted file's contents is
generic. The CLI and the Python API keep reading local files."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from flopcast import api, files  # noqa: E402
from flopcast.errors import InvalidScenario  # noqa: E402
from flopcast.web.app import create_app  # noqa: E402

SECRET = "hunter2-0xSECRET"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAIN = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
         "training": {"seq_len": 4096, "global_batch_seqs": 64},
         "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 1, "recompute": "selective"}}
SERVE = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
         "inference": {"tp": 1, "dp": 1, "input_tokens": 64, "output_tokens": 4,
                       "workload": {"num_requests": 20, "arrival": {"process": "poisson", "rate_per_s": 20}}}}
FLEET = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "fleet": {
    "regions": [{"name": "r", "site": "us-average", "demand": {"requests_per_s": 1, "input_tokens": 512,
                                                                "output_tokens": 64}}],
    "deployments": [{"name": "h100", "hardware": "h100-sxm", "inference": {"tp": 1}}]}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """data/ (the allow-list) beside outside/ (secrets), with symbolic links from one to the other."""
    root = tmp_path_factory.mktemp("files")
    outside, data = root / "outside", root / "data"
    outside.mkdir()
    data.mkdir()
    # secrets shaped as each kind of file, so that a parse or validation error would echo them
    (outside / "secret.yaml").write_text(f"training: {{{SECRET}: 1}}\nroot: {SECRET}\n")
    (outside / "secret.json").write_text(json.dumps({"model_type": SECRET, SECRET: SECRET}))
    (outside / "secret.csv").write_text(f"arrival_s,input_tokens,output_tokens\n{SECRET},1,1\n")
    (data / "link.yaml").symlink_to(outside / "secret.yaml")
    (data / "link.json").symlink_to(outside / "secret.json")
    (data / "sub").symlink_to(outside, target_is_directory=True)
    # permitted files
    (data / "prof.yaml").write_text(yaml.safe_dump({"training": {"parameters": {"compute.hopper": 0.5}}}))
    shutil.copy(EXAMPLES / "configs" / "my-moe.json", data / "my-moe.json")
    (data / "trace.csv").write_text("arrival_s,input_tokens,output_tokens\n0.0,64,4\n0.5,32,8\n1.0,16,2\n")
    (data / "bad.yaml").write_text(f"training: {{{SECRET}: 1}}\n")          # permitted, but not a profile
    (data / "bad.json").write_text(json.dumps({"model_type": SECRET}))     # permitted, but not a config
    (data / "bad.csv").write_text(f"arrival_s,input_tokens,output_tokens\n{SECRET},1,1\n")
    (data / "nested").mkdir()
    (data / "nested" / "prof.yaml").write_text((data / "prof.yaml").read_text())
    return root


@pytest.fixture(scope="module")
def served(tree):
    return TestClient(create_app([tree / "data"]), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def bare():
    return TestClient(create_app(), raise_server_exceptions=False)


def _with(key: str, value: str) -> tuple[str, dict]:
    """(endpoint, body) naming `value` in the scenario key `key`."""
    body = json.loads(json.dumps(SERVE if "trace" in key or key == "model" else TRAIN))
    if key == "model":
        return "/api/infer", body | {"model": value}
    if key == "calibration":
        return "/api/train", body | {"calibration": value}
    if key == "inference.workload.trace":
        body["inference"]["workload"] = {"num_requests": 3, "trace": value}
        return "/api/simulate", body
    if key == "inference.workload.arrival.trace":
        body["inference"]["workload"] = {"num_requests": 3, "arrival": {"trace": value}}
        return "/api/simulate", body
    fleet = json.loads(json.dumps(FLEET))
    if key == "fleet.models[].model":
        fleet["fleet"]["models"] = [{"model": "llama-3.1-8b", "share": 0.5}, {"model": value, "share": 0.5}]
        return "/api/fleet-plan", fleet
    assert key == "fleet calibration"
    return "/api/fleet-plan", fleet | {"calibration": value}


KEYS = ["model", "calibration", "inference.workload.trace", "inference.workload.arrival.trace",
        "fleet.models[].model", "fleet calibration"]
FIELD = {"fleet.models[].model": "fleet.models[1].model", "fleet calibration": "calibration",
         "inference.workload.arrival.trace": "trace"}


def _refused(r, key: str) -> str:
    error = r.json()["error"]
    assert r.status_code == 422, (r.status_code, error)
    assert "\n" not in error and SECRET not in r.text
    assert FIELD.get(key, key) in error, error
    return error


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("name", ["{outside}/secret.{ext}", "../outside/secret.{ext}", "link.{ext}",
                                  "sub/secret.{ext}", "nested/../../outside/secret.{ext}", "/etc/passwd",
                                  "~/secret.{ext}", "no-such-file.{ext}"])
def test_files_outside_the_data_folder_are_refused(served, tree, key, name):
    """Absolute paths, `..`, symbolic links out of the data folder (a file or a folder), missing files:
    422 naming the field, one line, and never a word of the file."""
    ext = {"model": "json", "fleet.models[].model": "json"}.get(key, "csv" if "trace" in key else "yaml")
    path, body = _with(key, name.format(outside=tree / "outside", ext=ext))
    _refused(served.post(path, json=body), key)


def test_no_refused_file_is_opened(served, tree):
    """Python's audit hook sees every open(): while the service refuses every key x every bad name,
    no file of the test tree is opened at all (not even the symbolic links inside the data folder)."""
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple) -> None:
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)     # cannot be removed: switched off below
    try:
        for key in KEYS:
            for name in (f"{tree}/outside/secret.yaml", "../outside/secret.csv", "link.yaml", "link.json",
                         "sub/secret.yaml", "sub/secret.json", "/etc/passwd"):
                path, body = _with(key, name)
                _refused(served.post(path, json=body), key)
    finally:
        watching[0] = False
    assert not [p for p in opened if str(tree) in p or p.startswith("/etc")], opened


@pytest.mark.parametrize("key", KEYS)
def test_without_a_data_folder_no_file_is_read(bare, tree, key):
    """A service started without --data-dir reads no file at all, whatever the name."""
    ext = "json" if "model" in key else "csv" if "trace" in key else "yaml"
    for name in (str(tree / "outside" / f"secret.{ext}"), str(tree / "data" / f"bad.{ext}"), f"bad.{ext}"):
        path, body = _with(key, name)
        error = _refused(bare.post(path, json=body), key)
        assert "reads no files" in error or "unknown model" in error


@pytest.mark.parametrize("key", ["model", "calibration", "inference.workload.trace"])
def test_a_permitted_file_with_bad_contents_is_a_generic_error(served, key):
    """A file inside the data folder that is not what the key expects: 422 naming the field and the
    file, and nothing of what it holds."""
    ext = "json" if key == "model" else "csv" if "trace" in key else "yaml"
    path, body = _with(key, f"bad.{ext}")
    error = _refused(served.post(path, json=body), key)
    assert f"bad.{ext}" in error and "does not show" in error


def test_permitted_files_give_the_cli_answers(served, tree):
    """Files inside the data folder (also in a sub-folder) are read: the answers equal the API's with
    the same files named by absolute path (as the CLI reads them)."""
    data = tree / "data"
    for name in ("prof.yaml", "nested/prof.yaml"):
        r = served.post("/api/train", json=TRAIN | {"calibration": name})
        local = api.estimate_training(TRAIN | {"calibration": str(data / name)}).to_dict()
        assert r.status_code == 200 and r.json()["step_time_s"] == local["step_time_s"]
    r = served.post("/api/infer", json=SERVE | {"model": "my-moe.json"})
    local = api.estimate_serving(SERVE | {"model": str(data / "my-moe.json")}).to_dict()
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(local))
    body = json.loads(json.dumps(SERVE))
    body["inference"]["workload"] = {"num_requests": 3, "trace": "trace.csv"}
    r = served.post("/api/simulate", json=body)
    assert r.status_code == 200 and r.json()["num_requests"] == 3


def test_the_cli_policy_reads_local_files(tree):
    """Outside the service (the CLI, Python) a scenario names any local file, as before, and errors
    say what is wrong inside it."""
    assert files.current() == files.LOCAL
    with pytest.raises(InvalidScenario, match=SECRET):
        api.estimate_training(TRAIN | {"calibration": str(tree / "outside" / "secret.yaml")})
    slow = api.estimate_training(TRAIN | {"calibration": str(tree / "data" / "prof.yaml")})
    assert slow.to_dict()["step_time_s"] > api.estimate_training(TRAIN).to_dict()["step_time_s"]


def test_policy_unit(tree):
    """files.permitted: LOCAL returns the name; a service policy the resolved path inside its folder."""
    data = tree / "data"
    assert files.permitted("anything/../x", field="f") == "anything/../x"
    with files.access(files.FileAccess.service([data])):
        assert files.permitted("nested/prof.yaml", field="f") == str((data / "nested" / "prof.yaml").resolve())
        for bad in ("link.yaml", "../data/prof.yaml", str(data / "prof.yaml"), "", "a\x00b", "nested"):
            with pytest.raises(InvalidScenario, match="^f: "):
                files.permitted(bad, field="f")
    assert files.current() == files.LOCAL
    with pytest.raises(InvalidScenario, match="--data-dir"):
        files.FileAccess.service([tree / "no-such-folder"])
