"""`flopcast validate` and `flopcast calibrate`: predicted against measured runs (in sample and leave
one source out, beside the one-parameter baseline) and the fit of a calibration profile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario


def validate(kind: str, *, cv: bool | str | None = False, baseline: bool = False, profile: Any = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`flopcast validate training|inference|on-device|memory|ranking|simulation|speculative`: predicted vs
    measured on every usable published run, under the shipped calibration profile (or `profile`: none, a
    path, a mapping), with
    the figures by class; with `cv` (True or "source": leave one source family out; "generation":
    leave one hardware generation out, training and inference only), the cross-validated figures;
    with `baseline`, the one-parameter baseline's. `memory`: peak memory per device
    (validation/memory.py); `ranking`: the order of the plans of one job against the measured order
    (validation/ranking.py; shipped profile); `simulation`: latency percentiles under load through the
    discrete-event simulator (validation/simulation.py; `cv` refits the serving profile without each
    row's family or generation); `speculative`: published speedups of speculative decoding
    (validation/speculative.py; shipped profile, nothing fitted)."""
    from flopcast.estimate.calibration import resolve_profile
    from flopcast.validation import fit, runs

    if kind == "memory":   # peak memory per device (validation/memory.py); one calibrated fraction
        from flopcast.validation import memory

        if cv == "generation":
            raise InvalidScenario("validate memory: --cv generation applies to training and inference; "
                                  "accepted: --cv source")
        return memory.report(cv=bool(cv))
    if kind == "speculative":   # published speedups of speculative decoding (validation/speculative.py)
        if cv or baseline:
            raise InvalidScenario("validate speculative: nothing is fitted to these rows (the in-sample figure is "
                                  "out of sample); --cv and --baseline apply to training and inference")
        return _speculative_report()
    if kind == "ranking":
        from flopcast.validation.ranking import validate_ranking

        if cv or baseline:
            raise InvalidScenario("validate ranking: --cv and --baseline apply to training and inference only")
        return validate_ranking(resolve_profile(profile, "training"), progress=progress)
    if kind == "simulation":   # latency under load through the simulator (validation/simulation.py)
        return _validate_simulation(cv=cv, baseline=baseline, profile=profile, progress=progress)
    if kind not in ("training", "inference", "on-device"):
        raise InvalidScenario(f"validate: {kind!r}; accepted: training, inference, on-device, memory, ranking, "
                              "simulation, speculative")
    from flopcast.validation import first_seen

    cases, skipped = runs.builtin(kind)
    fit_kind = "inference" if kind == "on-device" else kind   # on-device rows: serving, validated only
    out = fit.report(cases, kind, resolve_profile(profile, fit_kind), cv=cv, baseline=baseline, skipped=skipped,
                     progress=progress)
    log = first_seen.load()
    out["first_seen"] = first_seen.prospective([c.id for c in cases], log)
    for name, entry in out["by_class"].items():
        entry["first_seen_median_abs_error_frac"] = first_seen.prospective(
            [c.id for c in cases if name in c.classes], log)["median_abs_error_frac"]
    return out


def _validate_simulation(*, cv: bool | str | None, baseline: bool, profile: Any,
                         progress: Callable[[str], None] | None) -> dict[str, Any]:
    """`validate simulation`: validation/simulation.py's report with the first-seen figures, overall,
    per metric and per class (first_seen imports the simulation module, so they are added here)."""
    from flopcast.validation import first_seen, simulation

    if baseline or profile is not None:
        raise InvalidScenario("validate simulation: --baseline and --profile apply to training and inference; "
                              "the simulation runs under the shipped serving profile (--cv refits it)")
    out = simulation.report(cv=cv, progress=progress)
    stats = [(r, m) for r in out["rows"] for m in r["error_frac"]]
    log = first_seen.load()
    out["first_seen"] = first_seen.prospective([f"{r['id']}:{m}" for r, m in stats], log)
    for group, sel in (("by_metric", lambda r, m, g: m == g), ("by_class", lambda r, m, g: g in r["classes"])):
        for name, entry in out[group].items():
            entry["first_seen_median_abs_error_frac"] = first_seen.prospective(
                [f"{r['id']}:{m}" for r, m in stats if sel(r, m, name)], log)["median_abs_error_frac"]
    return out


def _speculative_report() -> dict[str, Any]:
    """validation/speculative.py's report with the prospective (first-seen) figures, overall and by class."""
    from flopcast.validation import first_seen, speculative

    log = first_seen.load()
    out = speculative.report(log)
    out["first_seen"] = first_seen.prospective([r["id"] for r in out["rows"]], log)
    for name, entry in out["by_class"].items():
        entry["first_seen_median_abs_error_frac"] = first_seen.prospective(
            [r["id"] for r in out["rows"] if name in r["classes"]], log)["median_abs_error_frac"]
    return out


def calibrate(runs_: list[str], *, out: str | Path | None = None, hardware: str | None = None,
              framework: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`flopcast calibrate RUNS... --out PROFILE.yaml`: fit the named global parameters (compute.<gen>,
    stack.<framework> for training; compute/memory.<gen>, engine.<engine> for serving) to measured runs
    (the built-in sets `training` / `inference`, or RUNS.csv files), print before / after /
    leave-one-source-out error, and write a profile a scenario can name (`calibration: PROFILE.yaml`)."""
    import yaml

    from flopcast.estimate.calibration import Profile
    from flopcast.validation import fit, runs

    if not runs_:
        raise InvalidScenario("calibrate: give at least one RUNS.csv or a built-in set (training, inference)")
    by_kind, skipped = runs.load(list(runs_))
    result: dict[str, Any] = {"skipped": skipped}
    doc: dict[str, Any] = {"source": "flopcast calibrate " + " ".join(runs_)
                           + (f" --hardware {hardware}" if hardware else "")
                           + (f" --framework {framework}" if framework else "")}
    for kind, cases in by_kind.items():
        if hardware:
            cases = [c for c in cases if c.hardware == hardware]
        if framework:
            cases = [c for c in cases if f"stack.{framework}" in c.params or f"engine.{framework}" in c.params]
        if not cases:
            continue
        profile, details = fit.fit(cases, kind)
        before = fit.report(cases, kind, Profile(kind))
        after = fit.report(cases, kind, profile)
        loo = fit.cross_validate(cases, kind, progress=progress)
        import statistics

        loo_abs = [abs(v) for v in loo.values()]
        result[kind] = {
            "num_rows": len(cases), "parameters": details["parameters"], "rows_per_parameter": details["rows"],
            "median_abs_error_frac_before": before["median_abs_error_frac"],
            "median_abs_error_frac_after": after["median_abs_error_frac"],
            "max_abs_error_frac_after": after["max_abs_error_frac"],
            "cv_median_abs_error_frac": statistics.median(loo_abs),
            "cv_max_abs_error_frac": max(loo_abs),
        }
        doc[kind] = {"parameters": details["parameters"],
                     "fitted_on": {n: len(r) for n, r in details["rows"].items()},
                     "cv_median_abs_error_frac": round(statistics.median(loo_abs), 4)}
    if out is not None:
        path = Path(out)
        if path.is_dir():
            raise InvalidScenario(f"calibrate --out: {path} is a directory; give a .yaml file path")
        if not path.parent.exists():
            raise InvalidScenario(f"calibrate --out: directory {path.parent} does not exist")
        header = ("# Calibration profile written by `flopcast calibrate` (robust least squares on log error,\n"
                  "# leave-one-source-out checked). Name it in a scenario: `calibration: <this file>`.\n")
        path.write_text(header + yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
        result["written"] = str(path)
    return result
