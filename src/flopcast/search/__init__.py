"""Plan search: evaluate every valid parallel plan with the training estimator, keep those that fit,
rank them, and report the best and the Pareto front.

Every plan is timed by the training estimator itself (`step_summary` shares `estimate_training`'s
code path, with a memo cache so that the parts shared by many plans, the per-layer costs for a
given tp, cp, sp, ep and micro-batch, are computed once). The (tp, cp, pp) groups are dealt into
tasks run on processes (local backend, all cores) or Ray tasks (`backend="ray"`); each task
enumerates its own plans and returns only its best plans and Pareto front, so the results do not
depend on the backend or the dealing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.training import TrainingEstimate, estimate_training, step_summary
from flopcast.search.space import SearchSpace, nearest_valid_device_counts, plan_groups, plans_in_group
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

OBJECTIVES = ("throughput", "time-to-train", "cost", "energy")
BACKENDS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class Job:
    """What every worker needs: the resolved specs and the search space (groups come per task)."""

    model: ModelSpec
    hw: AcceleratorSpec
    train: TrainingSpec
    devices_per_node: int
    scale_out_bandwidth_bytes_per_s: float | None
    num_devices: int
    space: SearchSpace
    top: int


# A fitting plan, as a sortable key: (step_time_s, memory_bytes, group index, index in group)
Key = tuple[float, float, int, int]


@dataclass(frozen=True, slots=True)
class TaskResult:
    num_evaluated: int
    num_fitting: int
    best: list[tuple[Key, ParallelPlan]]       # this task's `top` best
    front: list[tuple[Key, ParallelPlan]]      # this task's Pareto front (step time vs memory)


# Per-process memo of estimator partial results, keyed by search token: tasks of one search that
# land on the same worker process reuse the per-layer and per-shape costs. Results do not depend
# on it (the estimator's cache is transparent); it holds one search at a time.
_WORKER_CACHE: dict[str, dict] = {}


def pareto(keys: list[Key]) -> list[Key]:
    """Non-dominated keys in (step time, memory), fastest first."""
    front: list[Key] = []
    best_mem = float("inf")
    for k in sorted(keys):
        if k[1] < best_mem:
            front.append(k)
            best_mem = k[1]
    return front


def evaluate_groups(job: Job, groups: Sequence[tuple[int, tuple[int, int, int]]], token: str = "") -> TaskResult:
    """Enumerate and evaluate every plan of the given (index, (tp, cp, pp)) groups; keep the task's
    best plans and Pareto front (the global ones are among their union)."""
    cache = _WORKER_CACHE.get(token)
    if cache is None or not token:
        _WORKER_CACHE.clear()
        cache = _WORKER_CACHE[token] = {}
    n = 0
    fitting: list[Key] = []
    plans: dict[tuple[int, int], ParallelPlan] = {}
    for gi, group in groups:
        for pi, plan in enumerate(plans_in_group(job.model, group, num_devices=job.num_devices,
                                                 global_batch_seqs=job.train.global_batch_seqs, space=job.space,
                                                 seq_len=job.train.seq_len)):
            n += 1
            step, mem, fits = step_summary(job.model, job.hw, plan, job.train, devices_per_node=job.devices_per_node,
                                           scale_out_bandwidth_bytes_per_s=job.scale_out_bandwidth_bytes_per_s,
                                           cache=cache)
            if fits:
                fitting.append((step, mem, gi, pi))
                plans[(gi, pi)] = plan
    fitting.sort()
    keep = fitting[:job.top]
    front = pareto(fitting)
    return TaskResult(n, len(fitting), [(k, plans[k[2], k[3]]) for k in keep],
                      [(k, plans[k[2], k[3]]) for k in front])


def _tasks(groups: list[tuple[int, int, int]], workers: int) -> list[list[tuple[int, tuple[int, int, int]]]]:
    """Groups dealt round-robin into a few tasks per worker (deterministic)."""
    n = max(1, min(len(groups), 16 * workers))
    tasks: list[list[tuple[int, tuple[int, int, int]]]] = [[] for _ in range(n)]
    for i, g in enumerate(groups):
        tasks[i % n].append((i, g))
    return tasks


def _run_local(job: Job, tasks: list, workers: int, progress: Callable[[int], None] | None,
               token: str) -> list[TaskResult]:
    if workers == 1 or len(tasks) == 1:
        out = []
        for t in tasks:
            out.append(evaluate_groups(job, t, token))
            if progress:
                progress(len(t))
        return out
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(evaluate_groups, job, t, token) for t in tasks]
        out = []
        for t, f in zip(tasks, futures, strict=True):
            out.append(f.result())
            if progress:
                progress(len(t))
        return out


def _run_ray(job: Job, tasks: list, address: str | None, progress: Callable[[int], None] | None,
             token: str) -> list[TaskResult]:
    try:
        import ray
    except ImportError:
        raise InvalidScenario("backend: ray is not installed; install the extra: pip install 'flopcast[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote: Any = ray.remote(evaluate_groups)
    job_ref = ray.put(job)
    refs = [remote.remote(job_ref, t, token) for t in tasks]
    out = []
    for t, r in zip(tasks, refs, strict=True):
        out.append(ray.get(r))
        if progress:
            progress(len(t))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    plans: tuple[TrainingEstimate, ...]           # best first
    pareto: tuple[TrainingEstimate, ...]          # throughput vs memory headroom
    num_evaluated: int
    num_fitting: int
    objective: str
    backend: str
    assumptions: tuple[Assumption, ...] = field(default=())
    model_error_frac: float | None = None   # leave-one-source-out median error of the profile used

    def to_dict(self) -> dict[str, Any]:
        band = self.model_error_frac
        best = self.plans[0].step_time_s if self.plans else 0.0   # rows exist only with plans

        def row(e: TrainingEstimate) -> dict[str, Any]:
            d = e.to_dict()
            par = d.pop("parallel")
            d.pop("assumptions")
            d.pop("ops", None)
            if band is not None:
                # the model's cross-validated error: a plan within it of the best is not shown to be slower
                d["step_time_s_band"] = [e.step_time_s * (1 - band), e.step_time_s * (1 + band)]
                d["within_error_of_best"] = e.step_time_s <= best * (1 + band) / (1 - band)
            return {**par, **d}

        return {
            "objective": self.objective,
            "backend": self.backend,
            "num_evaluated": self.num_evaluated,
            "num_fitting": self.num_fitting,
            "num_pruned": self.num_evaluated - self.num_fitting,  # sized, found not to fit, never timed
            "model_error_frac": band,
            "plans": [row(e) for e in self.plans],
            "pareto": [row(e) for e in self.pareto],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def search(model: ModelSpec, hw: AcceleratorSpec, train: TrainingSpec, *, num_devices: int, devices_per_node: int,
           scale_out_bandwidth_bytes_per_s: float | None, top: int = 10, objective: str = "throughput",
           backend: str = "local", ray_address: str | None = None, workers: int | None = None,
           space: SearchSpace = SearchSpace(), progress: Callable[[int, int], None] | None = None,
           assumptions: tuple[Assumption, ...] = ()) -> SearchResult:
    """Evaluate every valid plan; return the `top` best that fit and the Pareto front."""
    if objective not in OBJECTIVES:
        raise UnknownName("objective", objective, OBJECTIVES)
    if backend not in BACKENDS:
        raise UnknownName("backend", backend, BACKENDS)
    if top < 1:
        raise InvalidScenario(f"top: expected a positive number of plans, got {top}")
    groups = list(plan_groups(model, num_devices=num_devices, global_batch_seqs=train.global_batch_seqs,
                              seq_len=train.seq_len, scale_up_domain=hw.scale_up_domain, space=space))
    if not groups and space.pinned:
        raise InvalidScenario(
            "search: no valid plan with the fixed " + ", ".join(f"parallel.{k}={v}" for k, v in space.pinned)
            + f" for {num_devices} devices and global batch {train.global_batch_seqs} (num_devices = tp x pp x dp x cp, "
            "tp must divide the heads, dp the batch); drop or change a --fix key")
    if not groups:
        near = nearest_valid_device_counts(model, num_devices=num_devices, global_batch_seqs=train.global_batch_seqs,
                                           seq_len=train.seq_len, scale_up_domain=hw.scale_up_domain, space=space)
        raise InvalidScenario(
            f"search: no valid plan for {num_devices} devices with global batch {train.global_batch_seqs} "
            f"(tp must divide the heads within the scale-up domain of {hw.scale_up_domain}, dp must divide the "
            f"batch, pp <= layers); nearest device counts with plans: {', '.join(map(str, near))}")
    job = Job(model, hw, train, devices_per_node, scale_out_bandwidth_bytes_per_s, num_devices, space, top)
    n_workers = 1 if backend == "local" and workers == 1 else (workers or os.cpu_count() or 1)
    tasks = _tasks(groups, n_workers)
    done = [0]

    def tick(n_groups: int) -> None:
        done[0] += n_groups
        if progress:
            progress(done[0], len(groups))

    import uuid

    token = uuid.uuid4().hex
    if backend == "ray":
        results = _run_ray(job, tasks, ray_address, tick, token)
    else:
        results = _run_local(job, tasks, n_workers, tick, token)
    # All objectives rank alike for a fixed device count (cost, energy and time-to-train are all
    # proportional to step time); ties go to the plan with less memory (more headroom), then to
    # the earlier plan in enumeration order (deterministic, whatever the backend).
    best = sorted((kp for r in results for kp in r.best), key=lambda kp: kp[0])[:top]
    candidates = {kp[0]: kp[1] for r in results for kp in r.front}
    front = pareto(list(candidates))

    def full(plan: ParallelPlan) -> TrainingEstimate:
        return estimate_training(model, hw, plan, train, devices_per_node=devices_per_node,
                                 scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s)

    return SearchResult(
        model_error_frac=train.profile.cv_median_abs_error_frac,
        plans=tuple(full(p) for _, p in best), pareto=tuple(full(candidates[k]) for k in front),
        num_evaluated=sum(r.num_evaluated for r in results), num_fitting=sum(r.num_fitting for r in results),
        objective=objective, backend=backend, assumptions=assumptions,
    )


