"""`flopcast validate speculative`: predicted against published speedups of speculative decoding
(validation/speculative_runs.yaml).

Each row is a measured ratio, speculation on over off, on one deployment at one batch or concurrency.
flopcast estimates both sides from the same scenario under the shipped calibration profile, the
`speculative` section added on one side (its acceptance length predicted from catalog/speculative.yaml
unless the row gives it), and compares the ratios: throughput rows by output tokens/s at the same
batch, latency rows by a request's end-to-end time (TTFT + O x TPOT). Nothing is fitted to these rows,
so the in-sample figure is also the out-of-sample one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario

HERE = Path(__file__).resolve().parent
RUNS_PATH = HERE / "speculative_runs.yaml"
QUANTITIES = ("throughput", "latency")


@dataclass(frozen=True, slots=True)
class SpeedupCase:
    """One published speedup: its scenario (speculation off), the speculative section to add, the
    quantity compared and the measured ratio."""

    id: str
    family: str
    method: str
    quantity: str
    measured: float
    scenario: dict[str, Any]
    speculative: dict[str, Any]
    source: str = ""
    assumed: str = ""
    classes: tuple[str, ...] = field(default=())
    baseline_overlap: bool = True     # False: the measured baseline ran without the overlap scheduler

    def predict(self, profile: Any = None) -> float:
        """The predicted ratio, speculation on over off (profile: the calibration profile, None: shipped)."""
        return predicted_speedup(self, profile)


def load_cases(path: Path = RUNS_PATH) -> list[SpeedupCase]:
    """The rows of validation/speculative_runs.yaml as cases."""
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for r in doc["rows"]:
        if r["quantity"] not in QUANTITIES:
            raise InvalidScenario(f"{path.name}: {r['id']}: quantity {r['quantity']!r}; accepted: {', '.join(QUANTITIES)}")
        sc = r["scenario"]
        out.append(SpeedupCase(id=r["id"], family=r["family"], method=r["method"], quantity=r["quantity"],
                               measured=float(r["measured"]), scenario=sc, speculative=dict(r["speculative"]),
                               source=r["source"], assumed=r.get("assumed", ""),
                               classes=(r["method"], _batch_class(int(sc["inference"]["batch_size"]))),
                               baseline_overlap=bool(r.get("baseline_overlap_scheduler", True))))
    return out


def _batch_class(batch: int) -> str:
    """Per-replica batch class: memory-bound small batches and the larger ones where verification costs."""
    return "batch<=4" if batch <= 4 else "batch 5-32" if batch <= 32 else "batch>32"


def _estimate(scenario: dict[str, Any], speculative: dict[str, Any] | None, profile: Any) -> Any:
    from dataclasses import replace

    from flopcast.estimate.serving import estimate_serving
    from flopcast.specs.scenario import resolve
    from flopcast.specs.serving import validate_inference

    inf = dict(scenario["inference"])
    if speculative is not None:
        inf["speculative"] = speculative
    rs = resolve({**scenario, "inference": inf})
    spec = rs.inference if profile is None else replace(rs.inference, profile=profile)
    validate_inference(spec, rs.model, num_devices=rs.cluster.num_devices)
    return estimate_serving(rs.model, rs.hardware, spec)


def predicted_speedup(case: SpeedupCase, profile: Any = None) -> float:
    """Speculation on over off: output tokens/s (throughput) or end-to-end request time (latency).
    A baseline measured without the engine's overlap scheduler pays, per iteration, the host time a
    speculative step exposes (estimate/serving.py _speculative_host_s) as the speculative side does."""
    from flopcast.estimate.serving import _speculative_host_s

    off = _estimate(case.scenario, None, profile)
    on = _estimate(case.scenario, case.speculative, profile)
    extra_s = 0.0 if case.baseline_overlap else _speculative_host_s(off.spec.engine)
    if case.quantity == "throughput":
        return on.output_tokens_per_s / (off.output_tokens_per_s * off.tpot_s / (off.tpot_s + extra_s))
    out_tokens = case.scenario["inference"]["output_tokens"]
    return (off.ttft_s + out_tokens * (off.tpot_s + extra_s)) / (on.ttft_s + out_tokens * on.tpot_s)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errs = [r["error_frac"] for r in rows]
    a = [abs(e) for e in errs]
    return {"num_rows": len(rows), "median_abs_error_frac": statistics.median(a), "max_abs_error_frac": max(a),
            "signed_mean_error_frac": statistics.fmean(errs)}


def report(log: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The `validate speculative --json` object: per row measured / predicted speedup, error and
    first-seen error (from `log`, validation/first_seen.csv as loaded); the median, max and signed
    mean |error| overall, by method, by batch class and by source family (each row lists its classes;
    the caller adds the prospective figures)."""
    log = log or {}
    cases = load_cases()
    rows = []
    for c in cases:
        p = c.predict()
        fs = log.get(c.id, {}).get("error_frac")
        rows.append({"id": c.id, "source": c.family, "model": c.scenario["model"], "hardware": c.scenario["hardware"],
                     "quantity": f"speedup_{c.quantity}", "method": c.method,
                     "batch_size": c.scenario["inference"]["batch_size"], "measured": c.measured, "predicted": p,
                     "error_frac": p / c.measured - 1,
                     "first_seen_error_frac": None if fs in (None, "unknown") else float(fs), "url": c.source,
                     "assumed": c.assumed, "classes": [*c.classes, c.family]})
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        for name in r["classes"]:
            groups.setdefault(name, []).append(r)
    return {"kind": "speculative", "profile_source": "shipped (nothing fitted to these rows)",
            "num_sources": len({c.family for c in cases}), "rows": rows, **_summary(rows),
            "by_class": {name: _summary(g) for name, g in groups.items()}, "skipped": []}
