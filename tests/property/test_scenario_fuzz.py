"""Hypothesis-generated scenario mappings (valid bases with 1-4 fields replaced by awkward values:
NaN, inf, huge and negative numbers, wrong units, wrong types, unknown keys) fed to `resolve` and to
every estimator: each either returns a report whose JSON has no NaN / inf, or raises flopcast's own
FlopcastError; never another exception, never more than 10 s.

CI runs FLOPCAST_FUZZ_EXAMPLES (default 40) examples; `python benchmarks/fuzz.py` runs 10,000."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flopcast import api
from flopcast.errors import FlopcastError
from flopcast.specs.scenario import resolve

EXAMPLES = int(os.environ.get("FLOPCAST_FUZZ_EXAMPLES", "40"))
MAX_CASE_S = 10.0

BASES = {
    "train": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 4},
              "training": {"seq_len": 4096, "global_batch_seqs": 16, "total_tokens": 1e12},
              "parallel": {"tp": 1, "pp": 1, "dp": 4}},
    "moe": {"model": "mixtral-8x7b", "hardware": "h100-sxm", "cluster": {"num_devices": 4},
            "training": {"seq_len": 4096, "global_batch_seqs": 8},
            "parallel": {"tp": 1, "pp": 1, "dp": 4, "ep": 4}},
    "serve": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 2}, "site": "us-average",
              "inference": {"tp": 1, "dp": 2, "input_tokens": 512, "output_tokens": 32,
                            "workload": {"num_requests": 40, "arrival": {"process": "poisson", "rate_per_s": 10}},
                            "slo": {"ttft_p99": "1 s", "tpot_p99": "50 ms"}}},
    "inline": {"model": {"model_type": "llama", "hidden_size": 512, "num_attention_heads": 8,
                         "num_key_value_heads": 2, "intermediate_size": 1024, "num_hidden_layers": 4,
                         "vocab_size": 1000},
               "hardware": {"base": "a100-sxm-80gb", "tdp": "300 W"}, "cluster": {"num_devices": 4},
               "site": {"grid_intensity": 300, "electricity_price": "9 cents/kWh"},
               "pricing": {"price_per_device_hour": "$1.50/device-hour"},
               "training": {"seq_len": 1024, "global_batch_seqs": 16}, "parallel": {"tp": 1, "dp": 4},
               "inference": {"tp": 1, "dp": 4, "input_tokens": 256, "output_tokens": 16,
                             "workload": {"num_requests": 20, "arrival": {"process": "burst"}}}},
}
PATHS = [
    "model", "hardware", "hardware.tdp", "hardware.hbm_capacity", "hardware.scale_out_bandwidth",
    "hardware.peak_flops.bf16", "hardware.efficiency.matmul.bf16", "model.num_hidden_layers", "model.hidden_size",
    "model.num_key_value_heads", "model.vocab_size", "cluster", "cluster.num_devices", "cluster.devices_per_node",
    "cluster.scale_out_bandwidth", "site", "site.pue", "site.grid_intensity", "site.electricity_price",
    "pricing", "pricing.price_per_device_hour", "pricing.mode", "pricing.capex_usd", "training", "training.seq_len",
    "training.global_batch_seqs", "training.total_tokens", "training.precision", "parallel", "parallel.tp",
    "parallel.pp", "parallel.dp", "parallel.cp", "parallel.ep", "parallel.vpp", "parallel.zero_stage",
    "parallel.recompute", "parallel.microbatch_seqs", "parallel.sp", "parallel.offload", "inference",
    "inference.tp", "inference.dp", "inference.batch_size", "inference.input_tokens", "inference.output_tokens",
    "inference.weights_dtype", "inference.kv_dtype", "inference.scheduler", "inference.workload",
    "inference.workload.num_requests", "inference.workload.arrival.process", "inference.workload.arrival.rate_per_s",
    "inference.workload.arrival.cv", "inference.workload.input_tokens", "inference.workload.output_tokens",
    "inference.workload.seed", "inference.slo.ttft_p99", "inference.prefix_cache_hit_frac", "x-note", "unknown_key",
    "training.framework", "training.moe_routing", "training.compile", "training.moe_max_nodes_per_token",
    "parallel.etp", "parallel.pipeline_layout", "parallel.pp_schedule", "parallel.ep_comm_overlap",
    "inference.engine", "inference.max_num_tokens", "inference.max_batch_size", "inference.eplb", "inference.pool",
    "inference.speculative", "inference.speculative.method", "inference.speculative.num_draft_tokens",
    "inference.speculative.acceptance_length", "inference.two_batch_overlap", "inference.ep", "calibration",
]
WORDS = ["", "abc", "nan", "inf", "-inf", "1e999", "80 GiB", "80 gb", "400 Gb/s", "400", "8 cents/kWh",
         "0.4 kgCO2e/kWh", "989 TFLOP/s", "1 s", "0 s", "max", "h100-sxm", "b200", "llama-3.1-8b", "gpt2", "bf16",
         "fp8", "vllm", "static", "disaggregated", "burst", "poisson", "gamma", "-5 W", "1e12", "$2/h", "700 W",
         "hourly", "tco", "selective", "full", "cpu", "lognormal", "megatron-core", "torchtitan", "dualpipe",
         "zero_bubble", "Et|(tt|)*30L", "mtp", "eagle", "sglang", "trtllm", "prefill", "decode", "forced_balance",
         "default", "none"]
# Valid counts stay small (a search over 64 devices is seconds of legitimate work, not what this
# test looks for); past-the-limit counts are there to be refused.
VALUES = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3, 4, 7, 8, 16, 10**9, 2**63, 10**30]),
    st.integers(-3, 24),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1e-300, 1e300, -0.0, 0.999, 1.5]),
    st.sampled_from(WORDS),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["a", "tp", "base", "value", "process"]), st.integers(0, 9), max_size=2),
)


def _set(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = {"base": child} if k == "hardware" and isinstance(child, str) else {}
            node[k] = child
        node = child
    node[keys[-1]] = value


@st.composite
def scenarios(draw):
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 4))):
        _set(data, draw(st.sampled_from(PATHS)), draw(VALUES))
    return data


def _finite(x, where="") -> None:
    if isinstance(x, float):
        assert math.isfinite(x), f"{where}: {x}"
    elif isinstance(x, dict):
        for k, v in x.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _finite(v, f"{where}[{i}]")


CALLS = {
    "resolve": lambda sc: None if resolve(sc) is None else None,
    "train": lambda sc: api.estimate_training(sc).to_dict(),
    "search": lambda sc: api.search_training(sc, workers=1, top=3).to_dict(),
    "infer": lambda sc: api.estimate_serving(sc).to_dict(),
    "simulate": lambda sc: api.simulate_serving(sc).to_dict(),
    "plan": lambda sc: api.plan(sc).to_dict(),
}


class _Hang(Exception):
    pass


def check(sc: dict) -> None:
    """Every call returns finite JSON or raises FlopcastError, each within MAX_CASE_S."""
    def hang(signum, frame):
        raise _Hang

    old = signal.signal(signal.SIGALRM, hang)
    try:
        for name, call in CALLS.items():
            signal.setitimer(signal.ITIMER_REAL, MAX_CASE_S)
            t0 = time.perf_counter()
            try:
                out = call(copy.deepcopy(sc))
            except FlopcastError as e:
                assert "\n" not in str(e).strip(), (name, str(e))
                continue
            except _Hang:
                pytest.fail(f"{name} ran past {MAX_CASE_S} s on {sc!r}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert time.perf_counter() - t0 < MAX_CASE_S
            if out is not None:
                _finite(out, name)
                json.dumps(out, allow_nan=False)
    finally:
        signal.signal(signal.SIGALRM, old)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=EXAMPLES <= 100)
@given(scenarios())
def test_generated_scenarios_never_crash_or_give_nan(sc):
    """resolve and every estimator: a finite report or a FlopcastError, within 10 s, for any scenario."""
    check(sc)


@settings(max_examples=max(10, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=EXAMPLES <= 100)
@given(hardware=st.sampled_from(["b200", "h100-sxm", "nope", 5, None]), days=VALUES,
       power=st.one_of(st.none(), st.sampled_from(["100 MW", "1 W", "1e30 W", "nan MW", "-5 MW", "5"]), VALUES),
       budget_usd=st.one_of(st.none(), VALUES))
def test_budget_never_crashes_or_gives_nan(hardware, days, power, budget_usd):
    """api.budget with any arguments: a finite result or a FlopcastError."""
    try:
        out = api.budget(hardware=hardware, days=days, power=power, budget_usd=budget_usd)
    except FlopcastError:
        return
    _finite(out)
    json.dumps(out, allow_nan=False)
