"""The golden cases: every example through the commands that apply to it, 200 seeded random
training plans, search top-5, random serving scenarios and seeded simulations.

`python -m tests.golden.cases --write` freezes their JSON into tests/golden/data/; the test
(test_golden.py) recomputes and compares. A figure that changes must be a named defect fix, stated
in the commit that rewrites the file.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"
SCENARIOS = Path(__file__).resolve().parent / "random_scenarios.json"   # frozen with the data

# keys whose values are wall-clock or machine facts, never figures
VOLATILE_KEYS = frozenset({"elapsed_s", "wall_s", "plans_per_s", "evaluations_per_s", "seconds", "duration_s",
                           "catalog_revision", "version", "wall_time_s", "cpu_s"})

TRAIN_EXAMPLES = ("llama3-8b-train-h100", "llama3-405b-pretrain", "deepseek-v3-pretrain", "llama3-405b-phases")
SERVE_EXAMPLES = ("mixtral-serving", "llama3-8b-serving-sim", "llama3-3b-on-device")
SIM_EXAMPLES = ("llama3-8b-serving-sim",)
PLAN_EXAMPLES = ("llama3-8b-train-h100", "llama3-405b-pretrain", "deepseek-v3-pretrain", "mixtral-serving",
                 "llama3-8b-serving-sim", "custom-config", "llama3-405b-phases")
FLEET_EXAMPLES = ("fleet-three-regions", "deepseek-production-day")

# random training plans: (model, hardware, devices, seq_len, global batch)
TRAIN_SETUPS = (
    ("llama-3-8b", "h100-sxm", 64, 4096, 256),
    ("llama-3.1-70b", "h100-sxm", 256, 8192, 512),
    ("mixtral-8x7b", "a100-sxm-80gb", 128, 4096, 256),
    ("deepseek-v2-lite", "h800-sxm", 64, 4096, 128),
    ("qwen3-30b-a3b", "b200", 64, 4096, 256),
    ("gpt3-175b", "a100-sxm-80gb", 512, 2048, 1536),
)
SEARCH_SETUPS = (
    ("llama-3-8b", "h100-sxm", 32, 4096, 128),
    ("mixtral-8x7b", "h100-sxm", 64, 4096, 256),
)
SERVE_MODELS = ("llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3")
SERVE_HARDWARE = ("h100-sxm", "a100-sxm-80gb", "b200", "mi300x", "h200-sxm")


def _load(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def _example(name: str) -> Path:
    return EXAMPLES / f"{name}.yaml"


def _training_scenario(setup: tuple, plan: Any) -> dict[str, Any]:
    model, hw, n, seq, gbs = setup
    par = {k: v for k, v in plan.to_dict().items() if v is not None}
    return {"name": "golden", "model": model, "hardware": hw, "cluster": {"num_devices": n},
            "training": {"seq_len": seq, "global_batch_seqs": gbs, "total_tokens": 1e11}, "parallel": par}


def _random_training(rng: random.Random, count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    from flopcast import catalog
    from flopcast.search.space import enumerate_plans

    per = -(-count // len(TRAIN_SETUPS))
    made = 0
    for setup in TRAIN_SETUPS:
        model, hw, n, seq, gbs = setup
        spec = catalog.get_model(model)
        node = catalog.get_hardware(hw).scale_up_domain
        plans = list(enumerate_plans(spec, num_devices=n, global_batch_seqs=gbs, seq_len=seq, scale_up_domain=node))
        for plan in rng.sample(plans, min(per, len(plans))):
            if made == count:
                return
            made += 1
            yield f"train-random-{made:03d}", _training_scenario(setup, plan)


def _random_serving(rng: random.Random, count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(count):
        model, hw = rng.choice(SERVE_MODELS), rng.choice(SERVE_HARDWARE)
        tp = rng.choice((1, 2, 4, 8))
        inf: dict[str, Any] = {"tp": tp, "dp": 8 // tp, "weights_dtype": rng.choice(("bf16", "fp8")),
                               "kv_dtype": rng.choice(("bf16", "fp8")), "input_tokens": rng.choice((128, 1024, 4096)),
                               "output_tokens": rng.choice((64, 256, 1024)),
                               "batch_size": rng.choice(("max", 1, 8, 64))}
        if hw == "a100-sxm-80gb":
            inf["weights_dtype"] = inf["kv_dtype"] = "bf16"
        yield f"serve-random-{i:03d}", {"name": "golden", "model": model, "hardware": hw,
                                        "cluster": {"num_devices": 8}, "inference": inf}


def cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, thunk) for every golden case, in a fixed order."""
    from flopcast import api

    for name in PLAN_EXAMPLES:
        yield f"plan-{name}", lambda n=name: api.plan(_example(n)).to_dict()
    for name in TRAIN_EXAMPLES:
        yield f"train-{name}", lambda n=name: api.estimate_training(_example(n)).to_dict()
    for name in SERVE_EXAMPLES:
        yield f"infer-{name}", lambda n=name: api.estimate_serving(_example(n)).to_dict()
    for name in SIM_EXAMPLES:
        yield f"simulate-{name}", lambda n=name: api.simulate_serving(_example(n), max_requests=400).to_dict()
    for name in FLEET_EXAMPLES:
        yield f"fleet-{name}", lambda n=name: api.plan_fleet(_example(n), confirm=False)
    for kind in ("training", "inference", "on-device"):
        yield f"validate-{kind}-cv", lambda k=kind: api.validate(k, cv=True)
    yield "validate-simulation", lambda: api.validate("simulation")
    frozen = _random_scenarios()
    for name, sc in frozen["training"]:
        yield name, lambda s=sc: api.estimate_training(s).to_dict()
    for i, setup in enumerate(SEARCH_SETUPS):
        model, hw, n, seq, gbs = setup
        sc = {"name": "golden", "model": model, "hardware": hw, "cluster": {"num_devices": n},
              "training": {"seq_len": seq, "global_batch_seqs": gbs, "total_tokens": 1e11}}
        yield f"search-{i}-{model}", lambda s=sc: api.search_training(s, top=5).to_dict()
    for name, sc in frozen["serving"]:
        yield name, lambda s=sc: api.estimate_serving(s).to_dict()
    for i in range(4):
        inf: dict[str, Any] = {
            "tp": 1, "weights_dtype": "bf16", "batch_size": "max", "input_tokens": 512, "output_tokens": 128,
            "workload": {"num_requests": 300, "seed": 7 + i,
                         "arrival": {"process": "poisson", "rate_per_s": [2.0, 8.0, 30.0, 60.0][i]},
                         "input_tokens": {"dist": "lognormal", "mean": 512, "cv": 1.0, "max": 4096},
                         "output_tokens": {"dist": "lognormal", "mean": 128, "cv": 1.0, "max": 1024}},
            "scheduler": ["vllm", "sarathi", "vllm", "static"][i]}
        if i in (1, 2):
            inf["max_batch_size"] = [16, 64][i - 1]
        sc = {"name": "golden", "model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 1},
              "inference": inf}
        yield f"simulate-random-{i}", lambda s=sc: api.simulate_serving(s).to_dict()


def _random_scenarios(fresh: bool = False) -> dict[str, list]:
    """The seeded random scenarios, read from their frozen file (drawn anew only with --write), so a
    change in the search space does not change what the golden cases ask."""
    if SCENARIOS.exists() and not fresh:
        return json.loads(SCENARIOS.read_text())
    rng = random.Random(20261207)
    drawn = {"training": [list(x) for x in _random_training(rng, 200)],
             "serving": [list(x) for x in _random_serving(rng, 40)]}
    SCENARIOS.write_text(json.dumps(drawn, indent=1) + "\n")
    return drawn


def scrub(value: Any) -> Any:
    """JSON-normal form with wall-clock keys dropped and the checkout's path written <root>."""
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if hasattr(value, "to_dict"):
        return scrub(value.to_dict())
    if isinstance(value, str) and str(ROOT) in value:     # the checkout's place is no figure
        return value.replace(str(ROOT), "<root>")
    return value


def compute(name_filter: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, thunk in cases():
        if name_filter and name_filter not in name:
            continue
        try:
            out[name] = scrub(json.loads(json.dumps(thunk(), default=str)))
        except Exception as exc:  # a case that errors is frozen as its error
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main() -> None:
    if "--write" not in sys.argv:
        print("usage: python -m tests.golden.cases --write [FILTER]")
        return
    rest = [a for a in sys.argv[1:] if a != "--write"]
    if not rest:
        _random_scenarios(fresh=True)
    got = compute(rest[0] if rest else None)
    DATA.mkdir(exist_ok=True)
    for name, value in got.items():
        (DATA / f"{name}.json").write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(got)} golden files to {DATA}")


if __name__ == "__main__":
    main()
