"""Validate on-device inference (issue 23): batch-1 decode and prompt processing of 1-8B models on
phone and laptop NPUs/GPUs against published benchmarks (validation/ondevice_runs.yaml).

Each row is a scenario (model, edge hardware, weight and KV formats, prompt and output lengths) and
one measured quantity: `decode_tokens_per_s` (1 / TPOT of a lone sequence), `prefill_tokens_per_s`
(prompt tokens / the unloaded prompt-processing time) or `ttft_s` (unloaded time to first token).
The rows are validated, never fitted (`fitted=False`): no calibration parameter touches them, so
`flopcast validate on-device` reports an out-of-fit error. Cross-validation leaves a source family
out as for `validate inference` (with nothing fitted, it equals the in-sample figure).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from flopcast.errors import FlopcastError, InvalidScenario

RUNS_PATH = Path(__file__).resolve().parent / "ondevice_runs.yaml"
METRICS = ("decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s")
KIND = "on-device"


@cache
def load_rows() -> tuple[dict[str, Any], ...]:
    import yaml

    doc = yaml.safe_load(RUNS_PATH.read_text(encoding="utf-8")) or {}
    return tuple(doc.get("inference", []))


def source_family(row_id: str) -> str:
    """Rows of one benchmark series (the id's first field) leave together in cross-validation."""
    return row_id.split("-")[0].lower()


def measure(est: Any, metric: str) -> float:
    """The row's quantity from a ServingEstimate of a batch-1 deployment."""
    I = est.spec.input_tokens
    if metric == "decode_tokens_per_s":
        return 1.0 / est.tpot_s
    if metric == "prefill_tokens_per_s":
        return I / est.ttft_unloaded_s
    if metric == "ttft_s":
        return est.ttft_unloaded_s
    raise InvalidScenario(f"on-device runs: metric {metric!r}; accepted: {', '.join(METRICS)}")


def _case(entry: dict[str, Any]):
    """A fit.Case (validated, not fitted) predicting one row under a calibration profile."""
    from flopcast.estimate.calibration import Profile
    from flopcast.estimate.efficiency import generation_of
    from flopcast.estimate.serving import estimate_serving
    from flopcast.specs.scenario import resolve
    from flopcast.specs.serving import validate_inference
    from flopcast.validation.fit import Case
    from flopcast.validation.inference import serving_classes

    rid, metric = entry["id"], entry["metric"]
    if metric not in METRICS:
        raise InvalidScenario(f"on-device runs: {rid}: metric {metric!r}; accepted: {', '.join(METRICS)}")
    rs = resolve(entry["scenario"])
    spec = rs.inference
    validate_inference(spec, rs.model, num_devices=rs.cluster.num_devices)

    def predict(profile: Profile) -> float:
        return measure(estimate_serving(rs.model, rs.hardware, replace(spec, profile=profile)), metric)

    gen = generation_of(rs.hardware.lookup_id)
    classes = (KIND, *serving_classes(rs.model.is_moe, gen, spec.weights_dtype, True)[:3],
               "decode" if metric == "decode_tokens_per_s" else "prefill")
    return Case(id=rid, source=source_family(rid), model=str(entry["scenario"]["model"]),
                hardware=rs.hardware.lookup_id, quantity=metric, measured=float(entry["value"]), predict=predict,
                params=(), generation=gen, classes=classes, scenario=entry["scenario"], fitted=False)


def cases() -> tuple[list, list[dict[str, Any]]]:
    """Every on-device row as a fit.Case, and the rows that could not be predicted with why."""
    out, skipped = [], []
    for entry in load_rows():
        try:
            out.append(_case(entry))
        except FlopcastError as e:
            skipped.append({"id": entry["id"], "why": f"invalid: {e}"})
    return out, skipped
