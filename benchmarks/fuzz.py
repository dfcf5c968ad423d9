"""Random scenario mutations through every api function (issue 20's fuzz): counts reports, flopcast
errors, foreign exceptions (tracebacks), NaN / inf in a report, reports that are not JSON and calls over
10 s. Exit code 1 unless the last four are all zero.

    python benchmarks/fuzz.py --calls 100000          # the issue's target (hours on 2 cores)
    python benchmarks/fuzz.py --calls 2000 --seed 7   # a quick look
    python benchmarks/fuzz.py --hypothesis 500        # tests/property's generator (resolve + estimators)

Each call takes one of the bases below (training, MoE, serving, speculative, disaggregated pools, inline
model, phases, fleet), replaces 1-4 fields by awkward values (NaN, inf, 5,000-digit integers, 1e300,
wrong units and types, layout bombs, unknown keys) and calls one api function on it; budget, sweep,
show_model and calibrate get awkward arguments of their own. One sample per place an exception was raised.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.property.test_scenario_fuzz import BASES as PROPERTY_BASES  # noqa: E402
from tests.property.test_scenario_fuzz import PATHS as PROPERTY_PATHS  # noqa: E402
from tests.property.test_scenario_fuzz import WORDS  # noqa: E402

from flopcast import api  # noqa: E402
from flopcast.errors import FlopcastError  # noqa: E402
from flopcast.specs.scenario import resolve  # noqa: E402

MAX_CASE_S = 10.0
BASES: dict[str, dict[str, Any]] = copy.deepcopy(PROPERTY_BASES) | {
    "speculative": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 2},
                    "inference": {"tp": 1, "dp": 2, "input_tokens": 512, "output_tokens": 64,
                                  "speculative": {"method": "eagle", "num_draft_tokens": 3,
                                                  "acceptance_length": 2.5},
                                  "workload": {"num_requests": 20, "arrival": {"process": "poisson",
                                                                               "rate_per_s": 5}}}},
    "pools": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 4},
              "inference": {"pool": "both", "input_tokens": 1024, "output_tokens": 64,
                            "prefill": {"tp": 1, "dp": 1}, "decode": {"tp": 1, "dp": 3},
                            "workload": {"num_requests": 20, "arrival": {"process": "poisson", "rate_per_s": 4}}}},
    "phases": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
               "training": {"seq_len": 4096, "global_batch_seqs": 64,
                            "phases": [{"name": "a", "total_tokens": 1e11},
                                       {"name": "b", "total_tokens": 1e10, "seq_len": 8192}]},
               "parallel": {"tp": 1, "pp": 1, "dp": 8}},
    "fleet": {"model": "llama-3.1-8b", "hardware": "h100-sxm",
              "fleet": {"slo": {"ttft_p99": "2 s", "tpot_p99": "60 ms"},
                        "regions": [{"name": "r1", "site": "us-virginia", "power_cap": "30 MW",
                                     "demand": {"output_tokens_per_week": 1e10, "input_tokens": 1024,
                                                "output_tokens": 256, "peak_to_mean": 1.5}}],
                        "deployments": [{"name": "d1", "hardware": "h100-sxm", "inference": {"tp": 1}}],
                        "policy": {"spare_replicas": 1, "target_utilisation": 0.85}}},
}
PATHS = PROPERTY_PATHS + [
    "calibration", "inference.prefill.tp", "inference.decode.tp", "inference.decode.dp", "inference.prefill.pp",
    "inference.decode.hardware", "inference.decode.speculative", "inference.speculative.draft_model",
    "training.phases", "training.global_batch_tokens", "training.total_tokens", "parallel.pipeline_layout",
    "parallel.recompute_modules", "training.lora", "inference.slo.tpot_p99", "inference.workload.duration",
    "fleet.regions", "fleet.regions.0.power_cap", "fleet.regions.0.demand.output_tokens_per_week",
    "fleet.regions.0.demand.peak_to_mean", "fleet.regions.0.demand.input_tokens", "fleet.policy.spare_replicas",
    "fleet.policy.target_utilisation", "fleet.deployments.0.inference.tp", "fleet.slo.ttft_p99",
    "fleet.deployments.0.hardware", "hardware.hbm_bandwidth", "site.pue",
]
BIG_INT = 10**5000 - 1          # 5,000 digits (built without a string: Python will not print it)
AWKWARD = [None, True, False, 0, -1, 1, 2, 3, 8, 1.5, 0.5, -0.0, 1e-320, 1e-300, 1e300, 1e308, 2**63, 10**30, BIG_INT,
           -BIG_INT, float("nan"), float("inf"), float("-inf"), [], [1, 2], {}, {"tp": 1}, {"a": None},
           "(tttttttttt)*99999999", "Et|(tt|)*30L", "t" * 20, "010", "1:30", "0x10", "1e999", "-5", "none",
           "shipped", "5 ms", "2000", "700 kW", "3.35 Tb/s", "400 GB/s", "80 $/MWh", "30", "30 MW"] + WORDS


# values a careful user might give: most calls reach the estimators (awkward values mostly stop at parsing)
MILD = [1, 2, 4, 8, 16, 64, 0.5, 0.9, 512, 4096, 1e12, True, False, None, "bf16", "fp8", "fp4", "int4", "1 s",
        "50 ms", "80 GiB", "3.35 TB/s", "400 Gb/s", "700 W", "sglang", "vllm", "trtllm", "mtp", "eagle",
        "selective", "full", "balanced", "Et|(tt|)*15L", "lognormal", "burst", "h200-sxm", "b200", "a100-sxm-80gb",
        "mi300x", "mixtral-8x7b", "deepseek-v3", "llama-3.2-1b", "qwen3-30b-a3b", {"method": "lora"},
        {"method": "mtp", "num_draft_tokens": 2, "acceptance_length": 1.8}, [4, 4, 4, 4], ["mlp"]]


def _set(data: dict, dotted: str, value: Any) -> None:
    node: Any = data
    keys = dotted.split(".")
    for k in keys[:-1]:
        if isinstance(node, list):
            idx = int(k) if k.isdigit() else 0
            if not node or idx >= len(node):
                return
            node = node[idx]
            continue
        if not isinstance(node, dict):      # an earlier mutation put a scalar here: nothing to set
            return
        child = node.get(k)
        if not isinstance(child, (dict, list)):
            child = {"base": child} if k == "hardware" and isinstance(child, str) else {}
            node[k] = child
        node = child
    if isinstance(node, dict):
        node[keys[-1]] = value


def mutate(rng: random.Random) -> dict[str, Any]:
    data = copy.deepcopy(BASES[rng.choice(sorted(BASES))])
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        _set(data, rng.choice(PATHS), copy.deepcopy(rng.choice(MILD if rng.random() < 0.5 else AWKWARD)))
    return data


def _show(x: Any) -> str:
    try:
        return repr(x)
    except ValueError:        # an integer too long to print
        return "<input with a 5,000-digit integer>"


def _small_search(sc):
    return api.search_training(sc, workers=1, top=3, two_pass=False).to_dict()


def _budget(rng: random.Random) -> Any:
    kw = {k: rng.choice(AWKWARD + ["100 MW", "1 GWh"]) for k in ("days", "power", "energy", "budget_usd", "site")
          if rng.random() < 0.6}
    kw.setdefault("days", rng.choice([1, 30, 1e-320, 1e300, BIG_INT, "nan"]))
    return api.budget(hardware=rng.choice(["h100-sxm", "b200", "nope", 5]), **kw)


def _sweep(rng: random.Random) -> Any:
    sc = copy.deepcopy(BASES["search"] if "search" in BASES else PROPERTY_BASES["train"])
    vary = rng.choice([["parallel.tp=1,2"], ["training.seq_len=2048,4096", "training.seq_len=1024"],
                       ["hardware=h100-sxm,nope"], ["x=" + "1," * 3000], ["cluster.num_devices=4"],
                       ["training.global_batch_seqs=" + _show(rng.choice(AWKWARD))],
                       ["parallel.tp=1,2", "parallel.tp=4"]])
    return api.sweep_training(sc, vary=vary, workers=1)


def _show_model(rng: random.Random) -> Any:
    cfg = copy.deepcopy(PROPERTY_BASES["inline"]["model"])
    for _ in range(rng.randint(1, 3)):
        cfg[rng.choice(list(cfg) + ["head_dim", "max_position_embeddings", "num_local_experts"])] = rng.choice(AWKWARD)
    return api.show_model(cfg, seq_len=rng.choice([None, 1024, 0, BIG_INT])).to_dict()


CSV_HEADERS = ["id,source,scenario,metric,value", "id,source,scenario,metric,value,extra", "id,value", ""]


def _calibrate(rng: random.Random, tmp: Path) -> Any:
    path = tmp / f"runs{rng.randrange(10**6)}.csv"
    fields = [rng.choice(["r1", "", "s", "scenario.yaml", "step_time_s", "tpot_s", "output_tokens_per_s"])
              for _ in range(4)] + [_show(rng.choice(AWKWARD))[:80]]
    row = ",".join(fields[: rng.randint(0, 6)])
    (tmp / "scenario.yaml").write_text(json.dumps(rng.choice([PROPERTY_BASES["train"], PROPERTY_BASES["serve"]])))
    path.write_text(rng.choice(CSV_HEADERS) + "\n" + row + "\n", encoding="utf-8")
    return api.calibrate([str(path)], out=None)


SCENARIO_CALLS = {
    "resolve": lambda sc: None if resolve(sc) is None else None,
    "train": lambda sc: api.estimate_training(sc).to_dict(),
    "search": _small_search,
    "infer": lambda sc: api.estimate_serving(sc).to_dict(),
    "simulate": lambda sc: api.simulate_serving(sc, max_requests=200).to_dict(),
    "plan": lambda sc: api.plan(sc).to_dict(),
}
FLEET_CALLS = {"plan_fleet": lambda sc: _to_data(api.plan_fleet(sc, confirm=False))}


def _to_data(out: Any) -> Any:
    return out.to_dict() if hasattr(out, "to_dict") else out


def _has_nan(x: Any) -> bool:
    if isinstance(x, float):
        return not math.isfinite(x)
    if isinstance(x, dict):
        return any(_has_nan(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(_has_nan(v) for v in x)
    return False


class _Hang(Exception):
    pass


def one_call(rng: random.Random, tmp: Path) -> tuple[str, str, Any]:
    """(api function, a description of the input, the thunk) of one random call."""
    r = rng.random()
    if r < 0.04:
        return "budget", "budget", lambda: _budget(rng)
    if r < 0.06:
        return "sweep", "sweep", lambda: _sweep(rng)
    if r < 0.10:
        return "show_model", "show_model", lambda: _show_model(rng)
    if r < 0.12:
        return "calibrate", "calibrate", lambda: _calibrate(rng, tmp)
    sc = mutate(rng)
    calls = FLEET_CALLS if "fleet" in sc and rng.random() < 0.7 else SCENARIO_CALLS
    name = rng.choice(sorted(calls))
    return name, _show(sc), lambda: calls[name](sc)


def classify(thunk) -> tuple[str, BaseException | None]:
    signal.setitimer(signal.ITIMER_REAL, MAX_CASE_S)
    try:
        out = thunk()
    except FlopcastError as e:
        return ("flopcast_error" if "\n" not in str(e).strip() else "multi_line_error"), None
    except _Hang:
        return "hang_over_10_s", None
    except Exception as e:   # a traceback in the CLI's terms
        return "foreign_exception", e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if out is not None and _has_nan(out):
        return "nan_or_inf", None
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        return "not_json", e
    return "report", None


BAD = ("foreign_exception", "nan_or_inf", "not_json", "hang_over_10_s", "multi_line_error")


def run_random(calls: int, seed: int) -> int:
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    samples: dict[str, list[str]] = collections.defaultdict(list)
    seen: set[str] = set()

    def hang(signum, frame):
        raise _Hang

    signal.signal(signal.SIGALRM, hang)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(calls):
            name, what, thunk = one_call(rng, Path(tmp))
            kind, exc = classify(thunk)
            counts[kind] += 1
            counts[f"calls.{name}"] += 1
            if kind in BAD:
                where = kind
                if exc is not None and exc.__traceback__ is not None:
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    where = f"{kind} {type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
                if where not in seen:
                    seen.add(where)
                    samples[kind].append(f"{name}: {where}: {_show(exc)[:200]} on {what[:400]}")
            if (i + 1) % 500 == 0:
                print(json.dumps({"elapsed_s": round(time.perf_counter() - start, 1), "calls": i + 1,
                                  **{k: counts[k] for k in BAD if counts[k]}}), file=sys.stderr, flush=True)
    bad = sum(counts[k] for k in BAD)
    print(json.dumps({"calls": calls, "seed": seed, **dict(sorted(counts.items())),
                      "wall_s": round(time.perf_counter() - start, 1),
                      "samples": {k: v[:30] for k, v in samples.items()}}, indent=2))
    return 1 if bad else 0


def run_hypothesis(examples: int) -> int:
    """The generator of tests/property/test_scenario_fuzz.py, at `examples` scenarios."""
    from hypothesis import HealthCheck, given, settings
    from tests.property.test_scenario_fuzz import CALLS, scenarios

    counts: collections.Counter = collections.Counter()
    samples: list[str] = []

    def hang(signum, frame):
        raise _Hang

    signal.signal(signal.SIGALRM, hang)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(scenarios())
    def run(sc):
        for name, call in CALLS.items():
            kind, exc = classify(lambda c=call: c(copy.deepcopy(sc)))
            counts[kind] += 1
            if kind in BAD and len(samples) < 30:
                samples.append(f"{name}: {kind} {exc!r} on {sc!r}"[:600])

    run()
    print(json.dumps({**counts, "samples": samples}, indent=2))
    return 1 if sum(counts[k] for k in BAD) else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hypothesis", type=int, default=0, metavar="N",
                   help="run tests/property's hypothesis generator for N scenarios instead")
    args = p.parse_args()
    return run_hypothesis(args.hypothesis) if args.hypothesis else run_random(args.calls, args.seed)


if __name__ == "__main__":
    sys.exit(main())
