"""Measured runs for `flopcast calibrate` and `flopcast validate`: the built-in sets (`training`,
`inference`) or a user's own CSV.

A user's RUNS.csv has one measured run per row:

    id,source,scenario,metric,value
    my-8b-run,cluster-a,runs/llama8b.yaml,tokens_per_s_per_device,9120
    my-70b-serve,cluster-a,runs/l70-serve.yaml,output_tokens_per_s,4100

`scenario` is a scenario file (relative to the CSV) with the plan as it ran; `source` groups rows
that share a measurement method (cross-validation leaves a whole source out). Training metrics:
step_time_s, tokens_per_s_per_device, tokens_per_s, model_tflops_per_device (flopcast's model FLOPs);
serving metrics: output_tokens_per_s (whole configuration), output_tokens_per_s_per_device,
total_tokens_per_s, input_tokens_per_s (prefill pools), tpot_s.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario

TRAINING_METRICS = ("step_time_s", "tokens_per_s_per_device", "tokens_per_s", "model_tflops_per_device")
SERVING_METRICS = ("output_tokens_per_s", "output_tokens_per_s_per_device", "total_tokens_per_s",
                   "input_tokens_per_s", "tpot_s")
COLUMNS = ("id", "source", "scenario", "metric", "value")
# metric -> plausible (lowest, highest) measured value: a value outside is a unit slip (ms for s, a whole
# cluster's rate as one device's) or a denormal that no fit can take the logarithm of
METRIC_RANGES = {
    "step_time_s": (1e-4, 1e6), "tokens_per_s_per_device": (1e-3, 1e8), "tokens_per_s": (1e-3, 1e13),
    "model_tflops_per_device": (1e-3, 1e5), "output_tokens_per_s": (1e-3, 1e13),
    "output_tokens_per_s_per_device": (1e-3, 1e8), "total_tokens_per_s": (1e-3, 1e13),
    "input_tokens_per_s": (1e-3, 1e13), "tpot_s": (1e-6, 1e3),
}


def builtin(kind: str) -> tuple[list, list[dict[str, Any]]]:
    if kind == "training":
        from flopcast.validation import training

        return training.cases()
    if kind == "on-device":
        from flopcast.validation import ondevice

        return ondevice.cases()
    from flopcast.validation import inference

    return inference.cases()


def _training_case(rid: str, source: str, scenario: Any, metric: str, value: float):
    from flopcast.validation.training import _case_from_scenario

    def measured(model_flops: float, sc=scenario) -> float:
        from flopcast.specs.scenario import load_scenario

        data = load_scenario(sc)
        t = data["training"]
        n = data["cluster"]["num_devices"]
        tokens = int(t["seq_len"]) * int(t.get("global_batch_seqs") or int(t["global_batch_tokens"]) // int(t["seq_len"]))
        if metric == "step_time_s":
            return value
        if metric == "tokens_per_s_per_device":
            return tokens / (value * n)
        if metric == "tokens_per_s":
            return tokens / value
        return model_flops / (value * 1e12 * n)

    return _case_from_scenario(rid, str(scenario), scenario, measured, source)


def read_runs_csv(path: str | Path) -> tuple[list, list[dict[str, Any]]]:
    """Cases from a user's RUNS.csv (training or serving rows, told apart by the metric)."""
    from flopcast.validation.inference import _serving_case

    p = Path(path)
    if not p.is_file():
        raise InvalidScenario(f"runs: file not found: {p} (or use the built-in sets: training, inference)")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error):
        raise InvalidScenario(f"runs: {p} is not a UTF-8 CSV file with columns {', '.join(COLUMNS)}") from None
    if not rows:
        raise InvalidScenario(f"runs: {p} has no rows; columns: {', '.join(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise InvalidScenario(f"runs: {p} lacks the column(s) {', '.join(missing)}; columns: {', '.join(COLUMNS)}")
    cases: list[Any] = []
    skipped: list[dict[str, Any]] = []
    for i, r in enumerate(rows, start=2):
        where = f"runs: {p.name} line {i}"
        metric, value = _row_metric_value(r, where)
        scenario = p.parent / r["scenario"]
        if metric in TRAINING_METRICS:
            cases.append(_training_case(r["id"], r["source"] or r["id"], scenario, metric, value))
        else:
            cases.append(_serving_case(r["id"], r["source"] or r["id"], str(scenario), scenario, metric, value))
    return cases, skipped


def _row_metric_value(r: dict[Any, Any], where: str) -> tuple[str, float]:
    """The row's metric and its measured value, or InvalidScenario naming the line: every column
    filled (no extra fields), a known metric, a finite value within the metric's plausible range."""
    if None in r:
        raise InvalidScenario(f"{where}: {len(COLUMNS) + len(r[None])} fields; expected {len(COLUMNS)} "
                              f"({', '.join(COLUMNS)}); quote a field that holds a comma")
    empty = [c for c in ("id", "scenario", "metric", "value") if not (r.get(c) or "").strip()]
    if empty:
        raise InvalidScenario(f"{where}: column {empty[0]} is empty; expected {', '.join(COLUMNS)}")
    metric = r["metric"].strip()
    if metric not in METRIC_RANGES:
        raise InvalidScenario(f"{where}: metric {metric!r}; accepted: " + ", ".join(TRAINING_METRICS + SERVING_METRICS))
    text = r["value"].strip()
    if len(text) > 40:
        raise InvalidScenario(f"{where}: value has {len(text)} characters; expected a number such as 9120 or 1.2e4")
    try:
        value = float(text)
    except ValueError:
        raise InvalidScenario(f"{where}: value {r['value']!r} is not a number") from None
    lo, hi = METRIC_RANGES[metric]
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InvalidScenario(f"{where}: value {r['value']!r} is outside the plausible range of {metric} "
                              f"({lo:g}..{hi:g}); check its unit")
    return metric, value


def load(runs: list[str]) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """{kind: cases} from built-in set names and RUNS.csv paths."""
    by_kind: dict[str, list] = {"training": [], "inference": []}
    skipped: list[dict[str, Any]] = []
    for r in runs:
        if r in ("training", "inference"):
            c, s = builtin(r)
            by_kind[r] += c
        else:
            c, s = read_runs_csv(r)
            for case in c:
                kind = "training" if any(p.startswith("stack.") for p in case.params) else "inference"
                by_kind[kind].append(case)
        skipped += s
    return by_kind, skipped
