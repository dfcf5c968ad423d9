"""Validate the serving estimator against published runs (validation/inference_runs.csv, copied with
its sources from the project's ground-truth collection).

Usable rows state the model, hardware, tensor parallelism, precision and the input/output lengths of
a throughput benchmark (trtllm-bench "max throughput": requests issued at infinite rate, so the
server runs at the largest batch memory and its token budget allow: `batch_size: max`). They are
compared on output tokens/s of the whole configuration. MLPerf rows do not state the input lengths
and TTFT/TPOT rows are at a Poisson load (the simulator's job): they are listed as skipped.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopcast.errors import FlopcastError

CSV_PATH = Path(__file__).resolve().parent / "inference_runs.csv"
# the metrics a serving row can measure (estimate/serving.py serving_rates); any other: output tokens/s
RATE_METRICS = ("output_tokens_per_s", "output_tokens_per_s_per_device", "total_tokens_per_s",
                "input_tokens_per_s", "tpot_s")
HARDWARE = (("GB200", "gb200"), ("B200", "b200"), ("H200", "h200-sxm"), ("H100", "h100-sxm"))
MODELS = {"Llama 3.3 70B": "llama-3.1-70b", "Llama 3.1 70B": "llama-3.1-70b", "Llama 3.1 8B": "llama-3.1-8b",
          "Llama 2 70B": "llama-2-70b", "Mixtral 8x7B": "mixtral-8x7b"}


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    model: str
    hardware: str
    num_devices: int
    measured: float | None
    predicted: float | None
    error_frac: float | None
    batch_size: int | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def row_to_scenario(row: dict[str, str]) -> dict[str, Any] | str:
    if row["metric"] != "output_tokens_per_s":
        return f"metric {row['metric']} is measured under a Poisson load (the simulator's job)"
    m = re.search(r"ISL/OSL (\d+)/(\d+)", row["workload"])
    if not m:
        return "input/output lengths not in the row"
    hw = next((h for key, h in HARDWARE if key in row["hardware"]), None)
    model = next((mid for key, mid in MODELS.items() if row["model"].startswith(key)), None)
    tp = re.match(r"\s*(\d+)", row["tp"] or "")
    if not (hw and model and tp):
        return "model, hardware or tensor parallelism not in the row"
    prec = row["precision"].lower()
    wd = "fp4" if "fp4" in prec else "fp8" if "fp8" in prec else "bf16"
    n = int(row["num_devices"])
    t = int(tp.group(1))
    return {
        "name": row["id"], "model": model, "hardware": hw, "cluster": {"num_devices": n},
        "inference": {"tp": t, "dp": n // t, "weights_dtype": wd, "kv_dtype": "fp8" if wd != "bf16" else "bf16",
                      "engine": "trtllm" if row["engine"].lower().startswith(("trt", "tensorrt")) else "vllm",
                      "batch_size": "max", "input_tokens": int(m.group(1)), "output_tokens": int(m.group(2))},
    }


def load_rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="") as f:
        return list(csv.DictReader(f))


def run(rows: list[dict[str, str]] | None = None) -> list[Result]:
    from flopcast.run.serving import estimate_serving

    out = []
    for row in rows if rows is not None else load_rows():
        sc = row_to_scenario(row)
        if isinstance(sc, str):
            out.append(Result(row["id"], row["model"], row["hardware"], int(row["num_devices"] or 0), None, None, None,
                              skipped=sc))
            continue
        try:
            est = estimate_serving(sc)
        except FlopcastError as e:
            out.append(Result(row["id"], row["model"], sc["hardware"], int(row["num_devices"]), None, None, None,
                              skipped=f"invalid: {e}"))
            continue
        meas = float(row["value"])
        pred = est.output_tokens_per_s
        out.append(Result(row["id"], row["model"], sc["hardware"], int(row["num_devices"]), meas, pred,
                          (pred - meas) / meas, est.batch_size))
    return out


def summary(results: list[Result]) -> dict[str, Any]:
    used = [abs(r.error_frac) for r in results if r.error_frac is not None]
    worst = max(((r, abs(r.error_frac)) for r in results if r.error_frac is not None), key=lambda re: re[1],
                default=(None, 0.0))[0]
    return {"num_rows": len(results), "num_used": len(used), "num_skipped": len(results) - len(used),
            "median_abs_error": statistics.median(used) if used else None,
            "max_abs_error": max(used) if used else None, "worst_row": worst.id if worst else None}


# --------------------------------------------------------------------------- cases for fitting
def source_family(row_id: str) -> str:
    """Rows of one benchmark series leave together in cross-validation."""
    for prefix, family in (("MLPI41", "mlperf-inference-4.1"), ("TRT-", "trtllm-bench"), ("SGL-", "sglang-blog"),
                           ("DS-PROD", "deepseek-production"), ("DSTACK", "dstack"), ("VLLM", "vllm-blog")):
        if row_id.startswith(prefix):
            return family
    return row_id.split("-")[0].lower()


def _serving_case(rid: str, source: str, model_label: str, scenario: Any, metric: str, value: float):
    """A fit.Case predicting a serving throughput under a calibration profile."""
    from dataclasses import replace

    from flopcast.estimate.calibration import Profile
    from flopcast.estimate.efficiency import generation_of
    from flopcast.estimate.serving import estimate_serving, serving_rates
    from flopcast.specs.scenario import resolve
    from flopcast.specs.serving import validate_inference
    from flopcast.validation.fit import Case

    rs = resolve(scenario)
    if "inference" not in rs.sections:
        raise FlopcastError(f"runs: {rid}: the scenario has no inference section")
    spec = rs.inference
    validate_inference(spec, rs.model, num_devices=rs.cluster.num_devices)

    key = metric if metric in RATE_METRICS else "output_tokens_per_s"
    memo: dict[Any, Any] = {}   # what no profile changes (op rows, admitted batch), kept across trial profiles

    def predict(profile: Profile) -> float:
        # the rates alone: the same numbers as estimate_serving's fields (a test checks)
        return serving_rates(rs.model, rs.hardware, replace(spec, profile=profile), memo)[key]

    m = rs.model
    baseline = roofline_baseline(m, rs.hardware, spec, metric,
                                 estimate_serving(m, rs.hardware, replace(spec, profile=Profile("inference"))))
    gen = generation_of(rs.hardware.lookup_id)
    return Case(id=rid, source=source, model=model_label, hardware=rs.hardware.lookup_id, quantity=metric,
                measured=value, predict=predict, baseline=baseline,
                params=(f"compute.{gen}", f"memory.{gen}", f"engine.{spec.engine}") + ((f"moe.{gen}",) if m.is_moe else ()),
                generation=gen, classes=serving_classes(m.is_moe, gen, spec.weights_dtype,
                                                        metric == "tpot_s" or spec.batch_size == 1),
                scenario=scenario)


def roofline_baseline(m: Any, hw: Any, spec: Any, metric: str, est: Any) -> float:
    """The fair one-efficiency roofline baseline at efficiency 1 (issue 22): each replica's iteration
    of B sequences (the batch memory admits, from `est`) takes

        t = max(F / (n P), (W + KV) / BW)
        F = B (F_tok + F_prompt / O)  FLOPs over the replica's n devices (F_tok: forward FLOPs of a
            token at the whole length I + O; F_prompt = I F_tok(I), left out in a decode pool, whose
            prompts arrive prefilled)
        W = weight bytes per device, KV = B (I + O / 2) kv bytes per token / n: bytes read per step,

    P the dense peak in the weights' dtype, BW the HBM bandwidth. A prefill pool is compute-bound:
    input tokens/s = devices x P x I / F_prompt. The rate scales with one fitted efficiency eta (a
    time as 1 / eta), the same for compute and memory."""
    from flopcast.estimate import counts

    I, O = spec.input_tokens, spec.output_tokens
    peaks = hw.peak_flops_per_s
    peak = peaks.get(spec.weights_dtype) or peaks.get("bf16") or max(peaks.values())
    f_prompt = I * counts.forward_flops_per_token(m, I, "causal")
    if spec.pool == "prefill":
        in_tps = spec.num_devices * peak * I / f_prompt
        rates = {"input_tokens_per_s": in_tps, "output_tokens_per_s": in_tps / I,
                 "output_tokens_per_s_per_device": in_tps / I / spec.num_devices,
                 "total_tokens_per_s": in_tps * (I + 1) / I}
        return rates[metric] if metric in rates else 1.0 / rates["output_tokens_per_s"]
    n = spec.num_devices / spec.dp
    B = max(1, est.batch_size)
    prompt = 0.0 if spec.pool == "decode" else f_prompt / O
    t_compute = B * (counts.forward_flops_per_token(m, I + O, "causal") + prompt) / (n * peak)
    t_memory = (est.memory_breakdown_bytes["weights"] + B * (I + O / 2) * est.kv_cache_bytes_per_token / n) \
        / hw.hbm_bandwidth_bytes_per_s
    t_iter = max(t_compute, t_memory)
    out_tps = spec.dp * B / t_iter
    rates = {"output_tokens_per_s": out_tps, "output_tokens_per_s_per_device": out_tps / spec.num_devices,
             "total_tokens_per_s": out_tps * (I + O) / O, "input_tokens_per_s": out_tps * I / O}
    return rates.get(metric, t_iter)


def serving_classes(is_moe: bool, generation: str, weights_dtype: str, batch1_latency: bool) -> tuple[str, ...]:
    """The by-class report's classes of a serving row: dense / moe, hardware generation, weight
    precision (fp4, fp8, bf16) and batch1-latency (a TPOT or a batch-1 run) / throughput."""
    prec = "fp4" if "fp4" in weights_dtype else "fp8" if "fp8" in weights_dtype else weights_dtype
    return ("moe" if is_moe else "dense", generation, prec, "batch1-latency" if batch1_latency else "throughput")


def cases() -> tuple[list, list[dict[str, Any]]]:
    """Every usable serving row as a fit.Case, and the skipped rows with their reasons."""
    out, skipped = [], []
    for row in load_rows():
        sc = row_to_scenario(row)
        if isinstance(sc, str):
            skipped.append({"id": row["id"], "why": sc})
            continue
        try:
            out.append(_serving_case(row["id"], source_family(row["id"]), row["model"], sc, "output_tokens_per_s",
                                     float(row["value"])))
        except FlopcastError as e:
            skipped.append({"id": row["id"], "why": f"invalid: {e}"})
    import yaml

    here = Path(__file__).resolve().parent
    spec = yaml.safe_load((here / "more_runs.yaml").read_text(encoding="utf-8"))
    written = spec.get("inference", {})
    why_not = spec.get("inference_skipped", {})
    with (here / "more_runs.csv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["kind"] != "serving":
                continue
            entry = written.get(r["id"])
            if entry is None:
                skipped.append({"id": r["id"], "why": why_not.get(r["id"], "no scenario written for this row")})
                continue
            try:
                out.append(_serving_case(r["id"], source_family(r["id"]), r["model"], entry["scenario"],
                                         entry["metric"], float(entry["value"])))
            except FlopcastError as e:
                skipped.append({"id": r["id"], "why": f"invalid: {e}"})
    extra = yaml.safe_load((here / "extra_runs.yaml").read_text(encoding="utf-8"))
    for entry in extra.get("inference", []):
        try:
            out.append(_serving_case(entry["id"], source_family(entry["id"]), entry["scenario"]["model"],
                                     entry["scenario"], entry["metric"], float(entry["value"])))
        except FlopcastError as e:
            skipped.append({"id": entry["id"], "why": f"invalid: {e}"})
    return out, skipped
