"""`flopcast validate simulation`: the discrete-event simulator's latency under load against published
measurements (validation/simulation_runs.yaml: each run's scenario, load generator, measured TTFT /
TPOT / end-to-end statistics and source).

Each run is simulated by `flopcast simulate` (run/serving.py `simulate_serving`) with a workload that
reproduces its load generator:

- a closed loop of C clients (`load: {concurrency: C}`: genai-perf, `vllm bench --max-concurrency`,
  SGLang `bench_serving --max-concurrency`): each client sends its next request when its previous
  one completes. Replayed exactly as a burst of N requests on an engine admitting at most C
  sequences (`max_batch_size` = min(C, the engine's)): the engine then admits request j >= C when
  the (j - C + 1)-th request completes, which is when the closed loop would send it, and admission
  is FIFO in both. Request j's arrival is therefore the (j - C + 1)-th completion time (0 for the
  first C), and its TTFT is counted from there. Warm-up as the load generator has it
  (`load.warmup_per_client`, default 2): genai-perf reports measurement windows only once three in
  a row agree within 10% (perf_analyzer's stability rule), after the start transient in which all C
  clients send at once and queue behind each other's prompts, so the first 2 C requests (each
  client's first two) are not measured; `vllm bench serve` and SGLang's `bench_serving` measure every
  request of the main run (their one "initial single prompt test run" comes before it), start
  transient included: warmup_per_client 0.
- Poisson arrivals at a rate (`load: {rate_per_s: R}`: `vllm bench --request-rate`, MLPerf Server).
- a burst (`load: {burst: N}`: a fixed batch, or `--request-rate inf`): every request measured.

Errors are (predicted - measured) / measured per measured statistic (`ttft`, `tpot`, `e2e` x `mean`,
`p50`, `p99`), reported per metric, by class and against the issue-22 targets (the centre of TTFT and
TPOT, means and medians, <= 15%; their p99 <= 25%). No parameter is fitted on these rows: the
simulator's iteration cost is the serving model under the shipped calibration profile. With
`cv="source"` each row is simulated under a profile refitted without the serving rows of its
publisher's family (`fit_family`); with `cv="generation"` without the rows of its hardware
generation.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flopcast.errors import InvalidScenario

RUNS_PATH = Path(__file__).resolve().parent / "simulation_runs.yaml"
METRICS = tuple(f"{q}_{s}_s" for q in ("ttft", "tpot", "e2e") for s in ("mean", "p50", "p99"))
CENTRE = ("ttft_mean_s", "ttft_p50_s", "tpot_mean_s", "tpot_p50_s")
TAIL = ("ttft_p99_s", "tpot_p99_s")
TARGETS = {"centre": 0.15, "tail": 0.25}        # issue 22: p50 median <= 15%, p99 <= 25%
WARMUP_CLIENT_REQUESTS = 2                      # a closed loop's first requests per client, not measured (genai-perf)
LOADS = ("concurrency", "rate_per_s", "burst")


@dataclass(frozen=True, slots=True)
class Run:
    """One published measurement under load (a row of simulation_runs.yaml)."""

    id: str
    family: str
    fit_family: str
    source: str
    scenario: dict[str, Any]
    load: dict[str, Any]
    measured: dict[str, float]
    lengths: dict[str, Any] = field(default_factory=dict)
    verified: bool = True
    note: str = ""

    @property
    def load_kind(self) -> str:
        return next(k for k in LOADS if k in self.load)


def _run_from_mapping(e: Any) -> Run:
    rid = e.get("id", "?") if isinstance(e, dict) else "?"
    if not isinstance(e, dict) or any(k not in e for k in ("id", "family", "source", "scenario", "load", "measured")):
        raise InvalidScenario(f"simulation_runs.yaml: run {rid}: needs id, family, source, scenario, load and measured")
    load = e["load"]
    if not isinstance(load, dict) or sum(k in load for k in LOADS) != 1:
        raise InvalidScenario(f"simulation_runs.yaml: run {rid}: load needs exactly one of {', '.join(LOADS)}")
    warm = load.get("warmup_per_client", WARMUP_CLIENT_REQUESTS)
    if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0 or ("warmup_per_client" in load
                                                                             and "concurrency" not in load):
        raise InvalidScenario(f"simulation_runs.yaml: run {rid}: load.warmup_per_client is a whole number >= 0 "
                              "of a closed loop (load.concurrency)")
    bad = sorted(set(e["measured"]) - set(METRICS))
    if bad or not e["measured"]:
        raise InvalidScenario(f"simulation_runs.yaml: run {rid}: measured keys {bad}; accepted: {', '.join(METRICS)}")
    return Run(id=e["id"], family=e["family"], fit_family=str(e.get("fit_family") or e["family"]), source=e["source"],
               scenario=e["scenario"], load=load, measured={k: float(v) for k, v in e["measured"].items()},
               lengths=e.get("lengths", {}), verified=bool(e.get("verified", True)), note=e.get("note", ""))


def load_runs(path: Path = RUNS_PATH) -> list[Run]:
    """The runs of simulation_runs.yaml (unique ids, one load kind each, known metrics)."""
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    runs = [_run_from_mapping(e) for e in doc.get("runs", [])]
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        raise InvalidScenario("simulation_runs.yaml: duplicate run ids")
    return runs


def scenario_of(run: Run, calibration: dict[str, float] | None = None) -> dict[str, Any]:
    """The run's flopcast scenario with the workload of its load generator (module docstring);
    `calibration` replaces the shipped serving profile."""
    sc = copy.deepcopy(run.scenario)
    sc.setdefault("name", run.id)
    inf = sc["inference"]
    load = run.load
    lengths = {"input_tokens": inf["input_tokens"], "output_tokens": inf["output_tokens"], **run.lengths}
    if "concurrency" in load:
        c = int(load["concurrency"])
        inf["max_batch_size"] = min(c, int(inf.get("max_batch_size", c)))
        workload = {"num_requests": int(load.get("num_requests", 10 * c)), "arrival": {"process": "burst"}}
    elif "rate_per_s" in load:
        workload = {"num_requests": int(load["num_requests"]),
                    "arrival": {"process": "poisson", "rate_per_s": float(load["rate_per_s"])}}
    else:
        workload = {"num_requests": int(load["burst"]), "arrival": {"process": "burst"}}
    inf["workload"] = {**workload, **lengths, "seed": int(load.get("seed", 0))}
    if calibration is not None:
        sc["calibration"] = {"inference": dict(calibration)}
    return sc


def latency_stats(requests: dict[str, np.ndarray], concurrency: int | None,
                  warmup_per_client: int = WARMUP_CLIENT_REQUESTS) -> dict[str, float]:
    """Every statistic of METRICS from a simulation's per-request arrays. A closed loop's requests
    arrive when a client's previous request completes (the (j - C + 1)-th completion) and its first
    warmup_per_client x C are not measured."""
    arrival = np.asarray(requests["arrival_s"], dtype=float)
    first = np.asarray(requests["first_token_s"], dtype=float)
    done = np.asarray(requests["done_s"], dtype=float)
    out = np.asarray(requests["output_tokens"], dtype=float)
    keep = ~np.isnan(done)
    if concurrency is not None:
        n = len(done)
        order = np.sort(np.where(np.isnan(done), np.inf, done))
        arrival = np.zeros(n)
        if n > concurrency:
            arrival[concurrency:] = order[: n - concurrency]
        skip = warmup_per_client * concurrency
        if n > skip:
            keep &= np.arange(n) >= skip
    values = {"ttft": (first - arrival)[keep], "e2e": (done - arrival)[keep]}
    multi = keep & (out > 1)
    values["tpot"] = ((done - first) / np.maximum(out - 1, 1))[multi]
    stats: dict[str, float] = {}
    for q, x in values.items():
        if len(x):
            stats.update({f"{q}_mean_s": float(np.mean(x)), f"{q}_p50_s": float(np.percentile(x, 50)),
                          f"{q}_p99_s": float(np.percentile(x, 99))})
    return stats


def predict(run: Run, calibration: dict[str, float] | None = None) -> dict[str, float]:
    """The simulated statistics of `run` (every metric the simulation yields)."""
    from flopcast.run.serving import simulate_serving

    res = simulate_serving(scenario_of(run, calibration))
    if res.requests is None:
        raise InvalidScenario(f"validate simulation: {run.id}: the simulation kept no per-request figures")
    conc = int(run.load["concurrency"]) if "concurrency" in run.load else None
    return latency_stats(res.requests, conc, int(run.load.get("warmup_per_client", WARMUP_CLIENT_REQUESTS)))


def classes_of(run: Run) -> tuple[str, ...]:
    """By-class groups of a run: dense / moe, hardware generation, load kind, source family."""
    from flopcast.estimate.efficiency import generation_of
    from flopcast.specs.scenario import resolve

    rs = resolve(run.scenario)
    load = {"concurrency": "closed-loop", "rate_per_s": "poisson", "burst": "burst"}[run.load_kind]
    return ("moe" if rs.model.is_moe else "dense", generation_of(rs.hardware.lookup_id), load, run.family)


def _cv_profiles(runs: list[Run], method: str, progress: Callable[[str], None] | None) -> dict[str, dict[str, float]]:
    """{run id: the serving profile fitted without its group's rows} (`source`: the run's
    fit_family; `generation`: its hardware generation)."""
    from flopcast.estimate.efficiency import generation_of
    from flopcast.specs.scenario import resolve
    from flopcast.validation import fit
    from flopcast.validation import runs as runs_mod

    cases, _ = runs_mod.builtin("inference")
    group_of = {r.id: (r.fit_family if method == "source" else generation_of(resolve(r.scenario).hardware.lookup_id))
                for r in runs}
    fitted: dict[str, dict[str, float]] = {}
    for grp in sorted(set(group_of.values())):
        if progress:
            progress(grp)
        train = [c for c in cases if fit.group_of(c, method) != grp]
        fitted[grp] = fit.fit(train, "inference")[0].as_dict()
    return {rid: fitted[g] for rid, g in group_of.items()}


def _figures(errs: list[float], prefix: str = "") -> dict[str, Any]:
    a = [abs(e) for e in errs]
    return {f"{prefix}median_abs_error_frac": statistics.median(a) if a else None,
            f"{prefix}max_abs_error_frac": max(a) if a else None,
            f"{prefix}signed_mean_error_frac": statistics.fmean(errs) if errs else None}


def _errors(run: Run, predicted: dict[str, float]) -> dict[str, float]:
    return {m: (predicted[m] - v) / v for m, v in run.measured.items() if m in predicted}


def _group(entries: list[tuple[str, str, float, float | None]]) -> dict[str, Any]:
    """Figures of (run id, metric, error, cv error) entries."""
    out: dict[str, Any] = {"num_rows": len({e[0] for e in entries}), "num_values": len(entries),
                           **_figures([e[2] for e in entries])}
    cvs = [e[3] for e in entries if e[3] is not None]
    if cvs:
        out.update(_figures(cvs, "cv_"))
    return out


def report(*, cv: bool | str | None = False, progress: Callable[[str], None] | None = None,
           runs: list[Run] | None = None) -> dict[str, Any]:
    """The `validate simulation --json` object: per run the measured and simulated statistics and
    their errors, the figures per metric, by class and against the targets (the first-seen figures
    are added by validation/commands.py: first_seen imports this module)."""
    from flopcast.validation.fit import _cv_method

    runs = load_runs() if runs is None else runs
    method = _cv_method(cv)
    cv_prof = _cv_profiles(runs, method, progress) if method else {}
    rows, entries = [], []
    for run in runs:
        if progress:
            progress(run.id)
        pred = predict(run)
        errs = _errors(run, pred)
        cv_errs = _errors(run, predict(run, cv_prof[run.id])) if method else {}
        cls = classes_of(run)
        rows.append({"id": run.id, "family": run.family, "source": run.source, "load": dict(run.load),
                     "classes": list(cls), "verified": run.verified, "measured": dict(run.measured),
                     "predicted": {m: pred.get(m) for m in run.measured}, "error_frac": errs,
                     **({"cv_error_frac": cv_errs} if method else {})})
        entries += [(run.id, m, e, cv_errs.get(m), cls) for m, e in errs.items()]
    return _summary(runs, rows, entries, method)


def _targets(flat: list[tuple[Any, ...]], method: str | None) -> dict[str, Any]:
    """The issue-22 targets: the centre (means and medians of TTFT and TPOT) and the tail (their
    p99), each met when its median |error| (cross-validated with `method`) is within the target."""
    key = "cv_median_abs_error_frac" if method else "median_abs_error_frac"
    targets = {}
    for part, metrics in (("centre", CENTRE), ("tail", TAIL)):
        sel = [e for e in flat if e[1] in metrics]
        g = _group(sel) if sel else {"num_rows": 0, "num_values": 0, key: None}
        value = g.get(key)
        targets[part] = {"metrics": list(metrics), "target_frac": TARGETS[part], **g,
                         "met": value is not None and value <= TARGETS[part]}
    return targets


def _summary(runs: list[Run], rows: list[dict[str, Any]], entries: list[tuple[Any, ...]],
             method: str | None) -> dict[str, Any]:
    flat = [e[:4] for e in entries]
    out: dict[str, Any] = {"kind": "simulation", "num_rows": len(rows), "num_values": len(flat),
                           "num_sources": len({r.family for r in runs}), "rows": rows, **_figures([e[2] for e in flat])}
    out["by_metric"] = {m: _group([e for e in flat if e[1] == m]) for m in METRICS if any(e[1] == m for e in flat)}
    names = sorted({c for e in entries for c in e[4]})
    out["by_class"] = {c: _group([e[:4] for e in entries if c in e[4]]) for c in names}
    out["targets"] = _targets(flat, method)
    if method:
        a = [abs(e[3]) for e in flat if e[3] is not None]
        out.update({"cv_method": method, "cv_median_abs_error_frac": statistics.median(a) if a else None,
                    "cv_max_abs_error_frac": max(a) if a else None})
    return out
