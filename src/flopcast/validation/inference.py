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
                      "batch_size": "max", "input_tokens": int(m.group(1)), "output_tokens": int(m.group(2))},
    }


def load_rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="") as f:
        return list(csv.DictReader(f))


def run(rows: list[dict[str, str]] | None = None) -> list[Result]:
    from flopcast import api

    out = []
    for row in rows if rows is not None else load_rows():
        sc = row_to_scenario(row)
        if isinstance(sc, str):
            out.append(Result(row["id"], row["model"], row["hardware"], int(row["num_devices"] or 0), None, None, None,
                              skipped=sc))
            continue
        try:
            est = api.estimate_serving(sc)
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
    worst = max((r for r in results if r.error_frac is not None), key=lambda r: abs(r.error_frac), default=None)
    return {"num_rows": len(results), "num_used": len(used), "num_skipped": len(results) - len(used),
            "median_abs_error": statistics.median(used) if used else None,
            "max_abs_error": max(used) if used else None, "worst_row": worst.id if worst else None}
