"""Validate the per-rank memory model against published peak-memory measurements
(validation/memory_runs.yaml), and check the fits verdict on every training validation run.

Each row names what its figure counts (`kind`): `allocated` (torch.cuda.max_memory_allocated: live
tensors only) or `reserved` (max_memory_reserved: allocated plus the caching allocator's
fragmentation). flopcast predicts the same quantity from the busiest rank of its estimate:
allocated = weights + gradients + optimizer state + activations; reserved adds the fragmentation
(a fraction of allocated, estimate/training/memory.py::FRAGMENTATION_FRAC). The fraction is the one
calibrated quantity: `--cv source` refits it without each source family and predicts that family
with it (leave one source out), as validation/fit.py does for step time. A row's `overrides` set
what its source states beyond the step-time row's scenario (e.g. the loss kernel of that software
version)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopcast import units

RUNS_YAML = Path(__file__).resolve().parent / "memory_runs.yaml"
MORE_RUNS_YAML = Path(__file__).resolve().parent / "more_runs.yaml"
KINDS = ("allocated", "reserved")
# fragmentation fractions tried when refitting (0 to 25% of allocated, in steps of 0.5%)
FRAG_GRID = tuple(i / 200 for i in range(51))


@dataclass(frozen=True, slots=True)
class MemoryCase:
    """One published peak: what it counts (`kind`), in bytes, and the scenario that ran."""

    id: str
    family: str
    kind: str
    measured_bytes: float
    scenario: dict[str, Any]
    source: str
    first_seen_error_frac: float | None


def load_cases() -> list[MemoryCase]:
    """Every row of memory_runs.yaml with its scenario (from more_runs.yaml where it says so)."""
    import yaml

    doc = yaml.safe_load(RUNS_YAML.read_text(encoding="utf-8"))
    more = yaml.safe_load(MORE_RUNS_YAML.read_text(encoding="utf-8"))["training"]
    out = []
    for r in doc["runs"]:
        if r["kind"] not in KINDS:
            raise ValueError(f"memory_runs.yaml {r['id']}: kind {r['kind']!r}; accepted: {', '.join(KINDS)}")
        scenario = more[r["id"]]["scenario"] if r.get("scenario_from") == "more_runs" else r["scenario"]
        scenario = _merged(scenario, r.get("overrides") or {})
        out.append(MemoryCase(id=r["id"], family=r["family"], kind=r["kind"],
                              measured_bytes=units.parse(r["measured"], "bytes", field=f"{r['id']}.measured"),
                              scenario=dict(scenario, name=r["id"]), source=r["source"],
                              first_seen_error_frac=r.get("first_seen_error_frac")))
    return out


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with the keys of `over` set, section by section (a row's `overrides`: what its source
    states beyond the step-time row's scenario, e.g. the loss kernel of that software version)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True, slots=True)
class Parts:
    """The busiest rank's memory as the measurement kinds need it: allocated bytes and the
    fragmentation-free device total's other parts."""

    allocated_bytes: float
    total_bytes: float


def predicted_parts(case: MemoryCase) -> Parts:
    from flopcast.run.training import estimate_training

    est = estimate_training(case.scenario)
    rank = max(est.memory_per_rank, key=lambda r: r["total_bytes"])
    return Parts(allocated_bytes=rank["allocated_bytes"], total_bytes=est.memory_per_device_bytes)


def predict(parts: Parts, kind: str, frag_frac: float) -> float:
    """The measured kind's figure at fragmentation `frag_frac` (of allocated bytes)."""
    if kind == "allocated":
        return parts.allocated_bytes
    return parts.allocated_bytes * (1 + frag_frac)


def _abs_errors(cases: list[MemoryCase], parts: dict[str, Parts], frag_frac: float) -> list[float]:
    return [abs(predict(parts[c.id], c.kind, frag_frac) / c.measured_bytes - 1) for c in cases]


def fit_fragmentation(cases: list[MemoryCase], parts: dict[str, Parts]) -> float:
    """The fraction on FRAG_GRID with the least median absolute error over the rows that count
    fragmentation (reserved); the smallest such fraction on ties."""
    reserved = [c for c in cases if c.kind == "reserved"]
    if not reserved:
        from flopcast.estimate.training.memory import FRAGMENTATION_FRAC

        return FRAGMENTATION_FRAC
    return min(FRAG_GRID, key=lambda f: (statistics.median(_abs_errors(reserved, parts, f)), f))


def cross_validate(cases: list[MemoryCase], parts: dict[str, Parts]) -> dict[str, tuple[float, float]]:
    """id -> (error with the fraction fitted without the row's family, that fraction)."""
    out = {}
    for fam in sorted({c.family for c in cases}):
        frac = fit_fragmentation([c for c in cases if c.family != fam], parts)
        for c in cases:
            if c.family == fam:
                out[c.id] = (predict(parts[c.id], c.kind, frac) / c.measured_bytes - 1, frac)
    return out


def report(*, cv: bool = False) -> dict[str, Any]:
    """The `validate memory --json` object: rows with measured / predicted / error (and the
    first-seen error), the in-sample median, and with `cv` the leave-one-source-out figures."""
    from flopcast.estimate.training.memory import FRAGMENTATION_FRAC, MEMORY_BAND_FRAC

    cases = load_cases()
    parts = {c.id: predicted_parts(c) for c in cases}
    rows: list[dict[str, Any]] = []
    for c in cases:
        p = predict(parts[c.id], c.kind, FRAGMENTATION_FRAC)
        rows.append({"id": c.id, "source": c.family, "model": _model_name(c.scenario), "hardware": _hw_name(c.scenario),
                     "quantity": f"peak_{c.kind}_bytes", "measured": c.measured_bytes, "predicted": p,
                     "error_frac": p / c.measured_bytes - 1, "first_seen_error_frac": c.first_seen_error_frac,
                     "url": c.source})
    errs = [abs(r["error_frac"]) for r in rows]
    out: dict[str, Any] = {"kind": "memory", "num_rows": len(rows), "num_sources": len({c.family for c in cases}),
                           "fragmentation_frac": FRAGMENTATION_FRAC, "memory_band_frac": MEMORY_BAND_FRAC,
                           "profile_source": "estimate/training/memory.py (FRAGMENTATION_FRAC, MEMORY_BAND_FRAC)",
                           "median_abs_error_frac": statistics.median(errs), "max_abs_error_frac": max(errs),
                           "rows": rows, "fits_verdict": fits_on_validation_runs()}
    first = [abs(c.first_seen_error_frac) for c in cases if c.first_seen_error_frac is not None]
    if first:
        out["first_seen_median_abs_error_frac"] = statistics.median(first)
    if cv:
        cvs = cross_validate(cases, parts)
        for r in rows:
            r["cv_error_frac"], r["cv_fragmentation_frac"] = cvs[r["id"]]
        a = sorted(abs(v) for v, _ in cvs.values())
        out["cv_median_abs_error_frac"] = statistics.median(a)
        out["cv_max_abs_error_frac"] = a[-1]
        # the memory band is set from this figure (memory.py::MEMORY_BAND_FRAC)
        out["cv_p80_abs_error_frac"] = a[min(len(a) - 1, int(0.8 * len(a)))]
    return out


def _model_name(scenario: dict[str, Any]) -> str:
    m = scenario["model"]
    return str(m.get("name", m.get("model_type", "?"))) if isinstance(m, dict) else str(m)


def _hw_name(scenario: dict[str, Any]) -> str:
    h = scenario["hardware"]
    return str(h.get("base", "?")) if isinstance(h, dict) else str(h)


# --------------------------------------------------------------------------- the fits verdict
def fits_on_validation_runs() -> dict[str, Any]:
    """The fits verdict on every training validation run that ran (training_runs.csv and
    more_runs.csv rows with a plan): a run that ran fitted, so each should say fits or marginal."""
    from flopcast.errors import FlopcastError
    from flopcast.run.training import estimate_training
    from flopcast.validation import training as tv

    scenarios = []
    for row in tv.load_rows():
        case = tv.row_to_case(row)
        if not isinstance(case, str):
            scenarios.append((case.id, case.scenario))
    more, _ = tv._more_runs()
    scenarios += [(e["row"]["id"], e["scenario"]) for e in more]
    verdicts: dict[str, str] = {}
    for rid, sc in scenarios:
        try:
            est = estimate_training(sc)
        except FlopcastError:
            continue
        verdicts[rid] = est.memory_verdict
    ran = len(verdicts)
    ok = sum(v in ("fits", "marginal") for v in verdicts.values())
    return {"num_runs": ran, "num_fits_or_marginal": ok, "frac": ok / ran if ran else None,
            "does_not_fit": sorted(k for k, v in verdicts.items() if v == "does not fit")}
