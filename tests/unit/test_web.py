"""The web service: the same reports as the CLI's --json over HTTP; bad input is HTTP 422 with a
one-line error; unknown paths 404; the server reads no client-named files."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from flopcast import api
from flopcast.web.server import make_server

TRAIN = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
         "training": {"seq_len": 4096, "global_batch_seqs": 64},
         "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 1, "recompute": "selective"}}
SERVE = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 2},
         "inference": {"tp": 1, "dp": 2, "input_tokens": 512, "output_tokens": 64,
                       "workload": {"num_requests": 50, "arrival": {"process": "poisson", "rate_per_s": 5}}}}


@pytest.fixture(scope="module")
def base():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_reports_equal_the_api(base):
    """POST /api/train and /api/simulate return exactly the api's to_dict (the CLI's --json)."""
    status, text = call(base + "/api/train", TRAIN)
    assert status == 200 and json.loads(text) == json.loads(json.dumps(api.estimate_training(TRAIN).to_dict()))
    status, text = call(base + "/api/simulate", SERVE)
    assert status == 200 and json.loads(text) == json.loads(json.dumps(api.simulate_serving(SERVE).to_dict()))


def test_yaml_body_and_listings(base):
    """A YAML body works; GET listings and one model's counts."""
    yaml_body = b"model: llama-3.1-8b\nhardware: h100-sxm\ncluster: {num_devices: 8}\n"
    status, text = call(base + "/api/plan", yaml_body, "application/yaml")
    assert status == 200 and json.loads(text)["model"]["params_total"] == 8_030_261_248
    for path, key in (("/api/models", "models"), ("/api/hardware", "hardware"), ("/api/sites", "sites"),
                      ("/api/audit", "claims")):
        status, text = call(base + path)
        assert status == 200 and len(json.loads(text)[key]) > 10
    status, text = call(base + "/api/model/llama-3.1-8b?seq_len=8192&kv_dtype=fp8")
    assert status == 200 and json.loads(text)["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128
    status, text = call(base + "/")
    assert status == 200 and "<textarea" in text


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("/api/train", TRAIN | {"parallel": {"tp": 3, "dp": 8}}, "tp"),
    ("/api/train", TRAIN | {"hardware": "h100-sxn"}, "did you mean"),
    ("/api/infer", SERVE | {"model": "/etc/passwd"}, "model"),
    ("/api/simulate", SERVE | {"inference": SERVE["inference"] | {"workload": {"trace": "/etc/hosts"}}}, "reads no files"),
    ("/api/simulate", SERVE | {"inference": SERVE["inference"] | {"workload": {"arrival": {"trace": "/etc/hosts"}}}},
     "reads no files"),
    ("/api/plan", b"{not: [valid", "not valid JSON or YAML"),
    ("/api/plan", [1, 2], "expected a scenario mapping"),
    ("/api/budget", {"hardware": "b200", "days": 90, "power": "-5 MW"}, "power"),
])
def test_bad_input_is_422_with_one_line(base, path, body, needle):
    """Invalid scenarios, unknown names, file paths, malformed bodies: HTTP 422, {"error": one line}."""
    status, text = call(base + path, body)
    d = json.loads(text)
    assert status == 422 and needle in d["error"] and "\n" not in d["error"]


def test_unknown_paths_are_404(base):
    """Unknown GET and POST paths say what exists."""
    assert call(base + "/api/nothing")[0] == 404
    status, text = call(base + "/api/nothing", {"a": 1})
    assert status == 404 and "/api/plan" in json.loads(text)["error"]
