"""Disaggregated serving with a layout per pool (`inference.prefill`, `inference.decode`): each pool is
timed by its own hardware and layout, the KV cache's transfer is part of TTFT, the JSON reports each
pool, and bad pool keys are one-line errors naming the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flopcast import api, catalog
from flopcast.errors import FlopcastError
from flopcast.estimate.counts import kv_cache_bytes_per_sequence

XFER = catalog._read_yaml(catalog.CATALOG_DIR / "efficiency.yaml")["kv_transfer"]


def scenario(prefill=None, decode=None, *, n=300, rate=20.0, inp=1024, out=64, **inference):
    base = {"tp": 1, "dp": 1, "workload": {"num_requests": n, "arrival": {"process": "poisson", "rate_per_s": rate},
                                          "input_tokens": inp, "output_tokens": out}}
    section = base | inference
    if prefill is not None:
        section["prefill"] = prefill
    if decode is not None:
        section["decode"] = decode
    return {"model": "llama-3.1-8b", "hardware": "h100-sxm", "inference": section}


def test_faster_prefill_hardware_lowers_ttft():
    """The same load with the prefill pool on B200 instead of H100 (decode unchanged): every TTFT
    percentile falls."""
    slow = api.simulate_serving(scenario({"dp": 1}, {"dp": 2}, rate=40, inp=2048))
    fast = api.simulate_serving(scenario({"dp": 1, "hardware": "b200"}, {"dp": 2}, rate=40, inp=2048))
    assert fast.num_completed == slow.num_completed == 300
    assert fast.ttft_p50_s < slow.ttft_p50_s and fast.ttft_p99_s < slow.ttft_p99_s
    assert [p["hardware"] for p in fast.pools] == ["b200", "h100-sxm"]


def test_kv_transfer_time_is_in_ttft():
    """One request at a time: TTFT = the prefill pool's unloaded prefill time + the KV transfer
    (latency + prompt KV bytes / (NICs of the slower side x catalog efficiency)). Halving the decode
    side's NIC bandwidth adds exactly one more transfer's bandwidth term to every TTFT."""
    model = catalog.get_model("llama-3.1-8b")
    h100 = catalog.get_hardware("h100-sxm")
    low = dict(n=10, rate=0.01, inp=4096, out=16)
    res = api.simulate_serving(scenario({"tp": 2}, {"tp": 1}, **low))
    prefill = api.estimate_serving({"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 2},
                                    "inference": {"tp": 2, "input_tokens": 4096, "output_tokens": 16}}).ttft_unloaded_s
    nbytes = kv_cache_bytes_per_sequence(model, 4096, "bf16")
    # prefill side: 2 NICs; decode side: 1 NIC (tp 1) is the slower side
    bw = h100.scale_out_bandwidth_bytes_per_s * XFER["bandwidth_frac"]
    transfer = XFER["latency_s"] + nbytes / bw
    assert res.ttft_p50_s == pytest.approx(prefill + transfer, rel=1e-6)
    assert res.ttft_p99_s == pytest.approx(prefill + transfer, rel=1e-6)
    assert res.kv_transfer_p50_s == pytest.approx(transfer, rel=1e-9)
    half = {"base": "h100-sxm", "scale_out_bandwidth": h100.scale_out_bandwidth_bytes_per_s / 2}
    slow = api.simulate_serving(scenario({"tp": 2}, {"tp": 1, "hardware": half}, **low))
    assert slow.ttft_p50_s - res.ttft_p50_s == pytest.approx(nbytes / bw, rel=1e-6)


def test_pools_are_reported_in_the_json():
    """`flopcast simulate --json` keeps every contract key and adds `pools` (one row per pool: role,
    hardware, replicas, layout, devices, busy share) and the total `num_devices`."""
    sc = scenario({"tp": 2, "dp": 1}, {"tp": 1, "dp": 3, "kv_dtype": "fp8"})
    d = api.simulate_serving(sc).to_dict()
    assert d["num_devices"] == 2 + 3 and d["num_replicas"] == 4 and d["scheduler"] == "disaggregated"
    rows = {p["role"]: p for p in d["pools"]}
    assert rows["prefill"]["num_devices"] == 2 and rows["prefill"]["tp"] == 2 and rows["prefill"]["replicas"] == 1
    assert rows["decode"]["num_devices"] == 3 and rows["decode"]["kv_dtype"] == "fp8"
    assert all(0 < p["busy_frac"] <= 1 for p in d["pools"])
    assert d["kv_transfer_p99_s"] >= d["kv_transfer_p50_s"] > 0
    colocated = api.simulate_serving(scenario(dp=2) | {"cluster": {"num_devices": 2}}).to_dict()
    assert [p["role"] for p in colocated["pools"]] == ["both"] and colocated["num_devices"] == 2
    assert colocated["kv_transfer_p50_s"] is None


def test_identical_pools_match_the_split_of_identical_replicas():
    """inference.prefill {dp: 1} + inference.decode {dp: 3} on a dense model is the section's
    replicas split by `prefill_replicas: 1`: the same request times."""
    pools = api.simulate_serving(scenario({"dp": 1}, {"dp": 3}))
    split = api.simulate_serving(scenario(dp=4, scheduler={"name": "disaggregated", "prefill_replicas": 1})
                                 | {"cluster": {"num_devices": 4}})
    assert pools.ttft_p99_s == pytest.approx(split.ttft_p99_s, rel=1e-12)
    assert pools.tpot_p50_s == pytest.approx(split.tpot_p50_s, rel=1e-12)
    assert pools.num_devices == split.num_devices == 4


def test_expert_parallel_decode_over_two_nodes():
    """A DeepSeek-style deployment: MoE decode pool of 16 attention-data-parallel ranks with ep 16
    (two 8-GPU nodes), prefill tp 2: every request completes and the pool reports 16 devices."""
    sc = {"model": "qwen3-30b-a3b", "hardware": "h100-sxm",
          "inference": {"weights_dtype": "fp8", "kv_dtype": "fp8",
                        "workload": {"num_requests": 200, "arrival": {"process": "poisson", "rate_per_s": 20},
                                     "input_tokens": 1024, "output_tokens": 64},
                        "prefill": {"tp": 2, "dp": 1}, "decode": {"tp": 1, "ep": 16, "dp": 16}}}
    res = api.simulate_serving(sc)
    assert res.num_completed == 200 and res.num_rejected == 0
    dec = next(p for p in res.pools if p["role"] == "decode")
    assert dec["num_devices"] == 16 and dec["ep"] == 16 and res.num_devices == 18


@pytest.mark.parametrize(("inference", "needle"), [
    ({"prefill": {"tpp": 2}, "decode": {}}, "inference.prefill field 'tpp'"),
    ({"prefill": {"tp": 0}, "decode": {}}, "inference.prefill.tp"),
    ({"prefill": {}}, "inference.decode: missing"),
    ({"prefill": {}, "decode": {"hardware": "h1000"}}, "inference.decode.hardware"),
    ({"prefill": {}, "decode": {"engine": "vlm"}}, "inference.decode.engine"),
    ({"prefill": {}, "decode": "fast"}, "inference.decode: expected a mapping"),
    ({"prefill": {"tp": 3}, "decode": {}}, "inference.prefill.tp: 3 must divide"),
    ({"prefill": {}, "decode": {"kv_dtype": "fp8", "hardware": "a100-sxm-80gb"}}, "inference.decode.kv_dtype"),
    ({"prefill": {}, "decode": {}, "scheduler": "vllm"}, "inference.scheduler"),
    ({"prefill": {}, "decode": {}, "scheduler": {"name": "disaggregated", "prefill_replicas": 1}},
     "prefill_replicas"),
])
def test_bad_pool_keys_are_one_line_errors(inference, needle):
    """Each bad pool key is an error naming its field, on one line."""
    sc = scenario(**inference)
    with pytest.raises(FlopcastError, match=needle.replace("(", r"\(")) as e:
        api.simulate_serving(sc)
    assert "\n" not in str(e.value)


def test_cluster_must_hold_the_pools(tmp_path):
    """A stated cluster.num_devices must equal the pools' devices; the CLI exits 2 with one line."""
    sc = scenario({"tp": 2}, {"dp": 2}) | {"cluster": {"num_devices": 8}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "simulate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "cluster.num_devices: 8" in r.stderr and "2 + 2 = 4" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    sc["cluster"]["num_devices"] = 4
    path.write_text(json.dumps(sc))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "simulate", str(path), "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_devices"] == 4
