"""Calibration and cross-validation over measured runs, shared by training and serving.

A `Case` is one measured run with a function that predicts the same quantity under a calibration
profile. `fit` finds the named global multipliers (see estimate/calibration.py) that minimise

    sum_i huber(log(predicted_i / measured_i)) + ridge * sum_j log(theta_j)^2

(robust least squares on log error: a run off by 2x counts like one off by 1/2, and a few outliers
cannot drag a parameter; the ridge keeps parameters that few rows inform near the physical model's
1.0). It is a damped Gauss-Newton (Levenberg-Marquardt) on log(theta) with forward differences;
each parameter's derivative re-predicts only the rows it touches. `cross_validate` predicts every
source family with parameters fitted without it (leave-one-source-out): the honest error figure.
`baseline_*` do the same for the one-parameter baseline: for training, step time = model FLOPs /
(devices x peak x one fitted efficiency); for serving, a roofline (compute and HBM bandwidth) with one
fitted efficiency (validation/inference.py roofline_baseline).
"""

from __future__ import annotations

import math
import statistics
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flopcast.estimate.calibration import MAX_VALUE, MIN_VALUE, Profile, pooled_names

HUBER_DELTA = 0.10       # log error beyond which a row counts linearly (about 10%)
RIDGE = 0.10             # prior weight pulling each log(theta) towards 0 (default of a fit with no kind's choice)
# The ridge weight of each shipped profile. choose_ridge gives the grid value with the lowest
# leave-one-source-out median over all rows, and nested_cross_validate states what that choice is
# worth (benchmarks/calibrate.py --choose-ridge re-derives both; docs/calibration.md reports them).
# The shipped weight is not the pooled median's choice where that choice costs a class: for serving,
# 0.3 wins the pooled median (7.7% vs 9.2%) but moves MoE serving from 12.2% to 17.7% and the
# simulated-latency and on-device medians the wrong way; for training, 0.3 would move the search's
# time band. Both ship at 0.1 until a weight improves the pooled figure without losing a class.
RIDGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
RIDGE_BY_KIND = {"training": 0.10, "inference": 0.10}
MAX_ITERATIONS = 25
FD_STEP = 0.02           # forward-difference step in log(theta)
# Physical bounds of each kind of multiplier: a sustained rate above the best-shape microbenchmark
# by more than 25%, or an HBM fraction above ~0.98 (0.88 x 1.12), is not a calibration but a
# missing mechanism; the fit stops at the bound.
BOUNDS = {"compute": (0.3, 1.25), "stack": (0.3, 1.25), "engine": (0.3, 1.25), "moe": (0.3, 1.25),
          "memory": (0.5, 1.12)}


@dataclass(frozen=True, slots=True)
class Case:
    """One measured run. `predict(profile)` returns flopcast's figure for the measured quantity
    (`quantity`: step_time_s, lower is faster; or a throughput, higher is faster). `baseline` is
    the one-parameter baseline's figure at efficiency 1 (it scales as 1/eta for times, eta for
    rates). `classes` name the groups of the by-class report (dense / moe, generation, precision,
    stack or engine, batch-1 latency / throughput)."""

    id: str
    source: str
    model: str
    hardware: str
    quantity: str
    measured: float
    params: tuple[str, ...]
    predict: Callable[[Profile], float]
    baseline: float | None = None
    generation: str = "other"          # hardware generation (leave-one-generation-out groups by it)
    classes: tuple[str, ...] = ()      # the by-class report's classes this row belongs to
    scenario: Any = None               # the scenario (mapping or file) the row is predicted from
    fitted: bool = True                # False: validated (and cross-validated) but left out of every fit

    @property
    def is_time(self) -> bool:
        """A time (step_time_s, tpot_s: lower is faster), not a rate (`*_per_s`)."""
        return self.quantity.endswith("_s") and not self.quantity.endswith("_per_s")


# Predictions memoised per case and profile: a fit re-predicts a row at parameter values that other
# fits of the same rows (leave-one-group-out, the before / after reports) reach too, from the same
# starting point. A prediction is a pure function of the profile's values (Profile.get: a missing
# name is 1.0), so the key is the profile's parameters other than 1.0; entries live as long as the
# case's predict function (weak keys).
_MEMO: weakref.WeakKeyDictionary[Callable[[Profile], float], dict[tuple[tuple[str, float], ...], float]] = \
    weakref.WeakKeyDictionary()
_MEMO_LOCK = threading.Lock()


def predict(case: Case, profile: Profile) -> float:
    """case.predict(profile), memoised (the comment above _MEMO)."""
    key = tuple(kv for kv in profile.params if kv[1] != 1.0)
    with _MEMO_LOCK:
        memo = _MEMO.get(case.predict)
        if memo is None:
            memo = _MEMO[case.predict] = {}
        value = memo.get(key)
    if value is None:
        value = case.predict(profile)
        with _MEMO_LOCK:
            memo[key] = value
    return value


def _huber_weight(r: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(a, 1e-12))


def _residuals(cases: Sequence[Case], profile: Profile) -> np.ndarray:
    out = np.empty(len(cases))
    for i, c in enumerate(cases):
        p = predict(c, profile)
        out[i] = math.log(p / c.measured) if p > 0 and math.isfinite(p) else 5.0
    return out


def _log_error(case: Case, profile: Profile) -> float:
    """log(predicted / measured) of one case (5.0 for a prediction that is not a positive number)."""
    v = predict(case, profile)
    return math.log(v / case.measured) if v > 0 and math.isfinite(v) else 5.0


def _objective(r: np.ndarray, x: np.ndarray, ridge: float = RIDGE) -> float:
    """Huber loss of the log errors plus the ridge prior on log(theta)."""
    a = np.abs(r)
    h = np.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))
    return float(h.sum() + 0.5 * ridge * (x * x).sum())


def _jacobian(cases: Sequence[Case], touches: list[list[int]], phi: np.ndarray, r: np.ndarray,
              prof: Callable[[np.ndarray], Profile]) -> np.ndarray:
    """Forward differences of the log errors in log(theta), each parameter over the rows it touches."""
    J = np.zeros((len(cases), len(phi)))
    for j, rows in enumerate(touches):
        x = phi.copy()
        x[j] += FD_STEP
        p = prof(x)
        for i in rows:
            J[i, j] = (_log_error(cases[i], p) - r[i]) / FD_STEP
    return J


@dataclass(slots=True)
class _State:
    """The Levenberg-Marquardt iterate: log(theta), its residuals and objective, the damping."""

    phi: np.ndarray
    r: np.ndarray
    obj: float
    lam: float = 1e-2
    ridge: float = RIDGE


def _step(cases: Sequence[Case], st: _State, J: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          prof: Callable[[np.ndarray], Profile]) -> np.ndarray | None:
    """One damped Gauss-Newton step on the Huber-weighted problem (up to 8 dampings); updates `st`
    and returns the step when it lowers the objective, else None."""
    w = _huber_weight(st.r)
    A = J.T @ (w[:, None] * J) + st.ridge * np.eye(len(st.phi))
    g = J.T @ (w * st.r) + st.ridge * st.phi
    for _ in range(8):
        step = np.linalg.solve(A + st.lam * np.diag(np.diag(A) + 1e-9), -g)
        x = np.clip(st.phi + step, lo, hi)
        r_new = _residuals(cases, prof(x))
        o_new = _objective(r_new, x, st.ridge)
        if o_new < st.obj - 1e-12:
            st.phi, st.r, st.obj = x, r_new, o_new
            st.lam = max(st.lam / 3, 1e-6)
            return step
        st.lam *= 4
    return None


def _fitted_names(cases: Sequence[Case], names: Sequence[str] | None) -> dict[str, str]:
    """{parameter a case names: the parameter fitted for it}: each parameter informed by fewer than
    MIN_SOURCES source families is pooled into `<prefix>.*`, or left unfitted (absent) for a prefix
    that is not pooled (estimate/calibration.py pooled_names)."""
    wanted = set(names) if names is not None else {p for c in cases for p in c.params}
    sources: dict[str, set[str]] = {n: set() for n in wanted}
    for c in cases:
        for p in c.params:
            if p in sources:
                sources[p].add(c.source)
    return {n: f for n, f in pooled_names(sources).items() if f is not None}


def fit(cases: Sequence[Case], kind: str, *, base: Profile | None = None,
        names: Sequence[str] | None = None, ridge: float | None = None) -> tuple[Profile, dict[str, Any]]:
    """The profile minimising the robust log error over `cases` with the ridge weight `ridge` (None:
    the one nested cross-validation chose for `kind`, RIDGE_BY_KIND); returns it with fit details
    (parameters, the rows each came from, before/after median error)."""
    base = base or Profile(kind)
    ridge = ridge_for(kind) if ridge is None else ridge
    cases = [c for c in cases if c.fitted]
    fitted_as = _fitted_names(cases, names)
    names = sorted(set(fitted_as.values()))
    if not cases or not names:
        return base, {"parameters": {}, "rows": {}, "iterations": 0}
    idx = {n: j for j, n in enumerate(names)}
    touches = [[i for i, c in enumerate(cases) if any(fitted_as.get(p) == n for p in c.params)] for n in names]
    lo = np.array([math.log(BOUNDS.get(n.split(".")[0], (MIN_VALUE, MAX_VALUE))[0]) for n in names])
    hi = np.array([math.log(BOUNDS.get(n.split(".")[0], (MIN_VALUE, MAX_VALUE))[1]) for n in names])
    phi = np.clip(np.array([math.log(base.get(n)) for n in names]), lo, hi)

    def prof(x: np.ndarray) -> Profile:
        return base.with_params({n: float(math.exp(v)) for n, v in zip(names, x, strict=True)})

    r = _residuals(cases, prof(phi))
    before = r.copy()
    st = _State(phi=phi, r=r, obj=_objective(r, phi, ridge), ridge=ridge)
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):  # noqa: B007 (the count is reported)
        step = _step(cases, st, _jacobian(cases, touches, st.phi, st.r, prof), lo, hi, prof)
        if step is None or np.max(np.abs(step)) < 1e-4:
            break
    profile = prof(np.round(st.phi, 4))
    details = {
        "parameters": {n: round(math.exp(st.phi[idx[n]]), 4) for n in names},
        "rows": {n: [cases[i].id for i in touches[idx[n]]] for n in names},
        "iterations": iterations,
        "ridge": ridge,
        "median_abs_error_before": float(np.median(np.abs(np.expm1(before)))),
        "median_abs_error_after": float(np.median(np.abs(np.expm1(st.r)))),
    }
    return profile, details


def ridge_for(kind: str) -> float:
    """The ridge weight the shipped fit of `kind` uses (RIDGE_BY_KIND; RIDGE for any other kind)."""
    return RIDGE_BY_KIND.get(kind, RIDGE)


def error_frac(case: Case, predicted: float) -> float:
    return (predicted - case.measured) / case.measured


CV_METHODS = ("source", "generation")


def group_of(case: Case, by: str) -> str:
    """The cross-validation group of a case: its source family, or its hardware generation."""
    return case.generation if by == "generation" else case.source


def cross_validate(cases: Sequence[Case], kind: str, *, progress: Callable[[str], None] | None = None,
                   by: str = "source", ridge: float | None = None) -> dict[str, float]:
    """Leave-one-group-out: each source family (`by="source"`) or hardware generation
    (`by="generation"`) predicted with a profile fitted on the others (ridge as `fit`)."""
    out: dict[str, float] = {}
    for grp in sorted({group_of(c, by) for c in cases}):
        if progress:
            progress(grp)
        train = [c for c in cases if group_of(c, by) != grp]
        profile, _ = fit(train, kind, ridge=ridge)
        for c in cases:
            if group_of(c, by) == grp:
                out[c.id] = error_frac(c, predict(c, profile))
    return out


def _median_abs(errors: dict[str, float]) -> float:
    return statistics.median(abs(v) for v in errors.values()) if errors else math.inf


def choose_ridge(cases: Sequence[Case], kind: str, *, by: str = "source",
                 grid: Sequence[float] = RIDGE_GRID) -> tuple[float, dict[float, float]]:
    """The ridge weight of `grid` whose leave-one-group-out median |error| over `cases` is lowest
    (ties: the larger weight, the stronger pull to the physical model), with every weight's median.
    Cases with fewer than two groups cannot be cross-validated: the default weight of `kind`."""
    if len({group_of(c, by) for c in cases}) < 2:
        return ridge_for(kind), {}
    medians = {r: _median_abs(cross_validate(cases, kind, by=by, ridge=r)) for r in grid}
    best = min(medians.values())
    return max(r for r, m in medians.items() if m <= best + 1e-12), medians


def nested_cross_validate(cases: Sequence[Case], kind: str, *, by: str = "source",
                          grid: Sequence[float] = RIDGE_GRID,
                          progress: Callable[[str], None] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Nested leave-one-group-out: for each outer group, the ridge weight is chosen by choose_ridge on
    the other groups alone (an inner leave-one-group-out over the training folds), the profile is fitted
    on them with it and predicts the outer group. Returns ({case id: error fraction}, {group: the ridge
    chosen without it}): the error of the whole procedure, ridge choice included."""
    errors: dict[str, float] = {}
    chosen: dict[str, float] = {}
    for grp in sorted({group_of(c, by) for c in cases}):
        if progress:
            progress(grp)
        train = [c for c in cases if group_of(c, by) != grp]
        chosen[grp], _ = choose_ridge(train, kind, by=by, grid=grid)
        profile, _ = fit(train, kind, ridge=chosen[grp])
        for c in cases:
            if group_of(c, by) == grp:
                errors[c.id] = error_frac(c, predict(c, profile))
    return errors, chosen


def _baseline_eta(cases: Sequence[Case]) -> float:
    """The one efficiency minimising the median absolute log error (an L1 fit: the median)."""
    logs = [math.log(c.baseline / c.measured) if c.is_time else math.log(c.measured / c.baseline)
            for c in cases if c.baseline]
    return math.exp(statistics.median(logs)) if logs else 1.0


def _baseline_pred(c: Case, eta: float) -> float:
    """The baseline's prediction of a case that has one (callers pass only those)."""
    baseline = c.baseline or 0.0
    return baseline / eta if c.is_time else baseline * eta


def baseline_cv(cases: Sequence[Case], by: str = "source") -> dict[str, float]:
    """Leave-one-group-out errors of the one-parameter baseline (groups as `cross_validate`)."""
    out = {}
    for grp in sorted({group_of(c, by) for c in cases}):
        eta = _baseline_eta([c for c in cases if group_of(c, by) != grp and c.baseline])
        for c in cases:
            if group_of(c, by) == grp and c.baseline:
                out[c.id] = error_frac(c, _baseline_pred(c, eta))
    return out


def baseline_in_sample(cases: Sequence[Case]) -> tuple[float, dict[str, float]]:
    eta = _baseline_eta([c for c in cases if c.baseline])
    return eta, {c.id: error_frac(c, _baseline_pred(c, eta)) for c in cases if c.baseline}


# The by-class report's classes, in print order (each kind also lists any further class its rows carry)
CLASSES = {
    "training": ("dense", "moe", "ampere", "hopper", "blackwell", "tpu", "cdna", "bf16", "fp8", "fp4",
                 "megatron-family", "other-stacks"),
    "inference": ("dense", "moe", "ampere", "hopper", "blackwell", "tpu", "cdna", "bf16", "fp8", "fp4",
                  "batch1-latency", "throughput"),
}


def _figures(errs: Sequence[float], prefix: str) -> dict[str, float | None]:
    """Median and max |error| and the signed mean of a list of error fractions (None when empty)."""
    a = [abs(e) for e in errs]
    return {f"{prefix}median_abs_error_frac": statistics.median(a) if a else None,
            f"{prefix}max_abs_error_frac": max(a) if a else None,
            f"{prefix}signed_mean_error_frac": statistics.fmean(errs) if errs else None}


def by_class(cases: Sequence[Case], kind: str, errors: dict[str, float],
             cv_errors: dict[str, float] | None) -> dict[str, dict[str, Any]]:
    """{class: num_rows, in-sample and (with `cv_errors`) cross-validated median / max |error| and signed
    mean} for every class of CLASSES[kind] (rows of none: num_rows 0, figures None) and any other
    class a row carries."""
    extra = sorted({k for c in cases for k in c.classes} - set(CLASSES.get(kind, ())))
    out: dict[str, dict[str, Any]] = {}
    for cls in (*CLASSES.get(kind, ()), *extra):
        ids = [c.id for c in cases if cls in c.classes]
        entry: dict[str, Any] = {"num_rows": len(ids), **_figures([errors[i] for i in ids], "")}
        if cv_errors is not None:
            entry.update(_figures([cv_errors[i] for i in ids if i in cv_errors], "cv_"))
        out[cls] = entry
    return out


def _cv_method(cv: bool | str | None) -> str | None:
    """`cv` as a method name: True is leave-one-source-out; a name must be one of CV_METHODS."""
    if cv is True:
        return "source"
    if not cv:
        return None
    if cv not in CV_METHODS:
        from flopcast.errors import InvalidScenario

        raise InvalidScenario(f"validate --cv: {cv!r}; accepted: {', '.join(CV_METHODS)}")
    return str(cv)


def _baseline_figures(cases: Sequence[Case], rows: list[dict[str, Any]], method: str | None) -> dict[str, Any]:
    """The one-parameter baseline's in-sample efficiency and median, and its cross-validated figures."""
    eta, ins = baseline_in_sample(cases)
    out: dict[str, Any] = {"baseline_efficiency": eta,
                           "baseline_median_abs_error_frac": statistics.median([abs(v) for v in ins.values()])
                           if ins else None}
    if method:
        b = baseline_cv(cases, method)
        for r in rows:
            r["baseline_cv_error_frac"] = b.get(r["id"])
        ab = [abs(v) for v in b.values()]
        out["baseline_cv_median_abs_error_frac"] = statistics.median(ab) if ab else None
        out["baseline_cv_max_abs_error_frac"] = max(ab) if ab else None
    return out


def report(cases: Sequence[Case], kind: str, profile: Profile, *, cv: bool | str | None = False,
           baseline: bool = False, skipped: Sequence[dict[str, Any]] = (),
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The `validate --json` object: rows with predicted / measured / error under `profile`, the
    in-sample figures and, with `cv` (True or "source": leave one source family out; "generation":
    leave one hardware generation out), the cross-validated figures, by class too (and the
    baseline's)."""
    method = _cv_method(cv)
    rows: list[dict[str, Any]] = []
    errors: dict[str, float] = {}
    for c in cases:
        p = predict(c, profile)
        errors[c.id] = error_frac(c, p)
        rows.append({"id": c.id, "source": c.source, "model": c.model, "hardware": c.hardware,
                     "quantity": c.quantity, "predicted": p, "measured": c.measured, "error_frac": errors[c.id]})
    errs = [abs(e) for e in errors.values()]
    out: dict[str, Any] = {
        "kind": kind, "num_rows": len(rows), "rows": rows,
        "median_abs_error_frac": statistics.median(errs) if errs else None,
        "max_abs_error_frac": max(errs) if errs else None,
        "profile": profile.as_dict(), "profile_source": profile.source,
        "skipped": list(skipped),
    }
    cvs = None
    if method:
        cvs = cross_validate(cases, kind, progress=progress, by=method)
        for r in rows:
            r["cv_error_frac"] = cvs.get(r["id"])
        a = [abs(v) for v in cvs.values()]
        out["cv_method"] = method
        out["cv_median_abs_error_frac"] = statistics.median(a) if a else None
        out["cv_max_abs_error_frac"] = max(a) if a else None
        out["cv_signed_mean_error_frac"] = statistics.fmean(cvs.values()) if cvs else None
        out["num_sources"] = len({c.source for c in cases})
        out["num_cv_groups"] = len({group_of(c, method) for c in cases})
    out["by_class"] = by_class(cases, kind, errors, cvs)
    if baseline:
        out.update(_baseline_figures(cases, rows, method))
    return out
