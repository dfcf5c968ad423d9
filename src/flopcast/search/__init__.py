"""Plan search: evaluate every valid parallel plan with the training estimator, keep those that fit,
rank them, and report the best and the Pareto front.

The ranking recommends what holds (`recommend_order`): plans within the step-time band of the
fastest plan (the estimator's cross-validated error, estimate/training/bands.py) are ties, ordered
by fewer mechanisms with little validation for the model's class (search/evidence.py), then memory
headroom (in whole memory bands, at most two), then fewer mechanisms, then step time; a plan whose
memory is within the memory band of capacity is marginal and comes after every plan with headroom.

Every plan is sized by the training estimator's code: the plans come in blocks that differ only
in ZeRO stage and offload (space.plan_blocks); what a block shares (layer costs, stage work, the
candidate ranks' parameters and activations) is computed once with a memo cache
(step.block_sizing), and the memory of every (plan, candidate rank) of a task is one numpy pass
(estimate/training/arrays.py: memory.rank_memory's arithmetic in its order, the same bytes;
search/vector.py). A fitting plan is timed (`sized_step_s`: the pipeline schedule simulated)
unless a lower bound on its step proves it is in none of the task's results (search/prune.py);
`prune=False` sizes every plan with the scalar `size_plan` and times every fitting one (the
exhaustive pass the vectorised one is tested against, with the same result).
The (tp, cp, pp) groups are dealt into tasks run on processes (local backend, all cores) or Ray
tasks (`backend="ray"`); each task enumerates its own plans and returns only its best plans and
Pareto front, so the results do not depend on the backend or the dealing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.training import TrainingEstimate, estimate_training, step_summary
from flopcast.estimate.training.bands import MEMORY_BAND_FRAC, TIME_BAND_FRAC
from flopcast.search.evidence import little_validated, mechanisms, model_class
from flopcast.search.space import SearchSpace, nearest_valid_device_counts, plan_groups, plans_in_group
from flopcast.search.vector import evaluate_blocks
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

OBJECTIVES = ("throughput", "time-to-train", "cost", "energy")
BACKENDS = ("local", "ray")
# Candidates the recommendation orders, whatever `top` asks for (up to it): the fastest POOL plans
# and the fastest POOL with memory headroom, so `flopcast plan` (top 1) and `search` (top 10) agree.
POOL = 16
MAX_HEADROOM_BANDS = 2   # headroom past two memory bands does not make a plan more likely to fit


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
    roomy_memory_bytes: float = float("inf")   # memory at or under which a plan has the default headroom
    prune: bool = True     # skip timing the plans a lower bound rules out (search/prune.py); False: time all


# A fitting plan, as a sortable key: (step_time_s, memory_bytes, group index, index in group)
Key = tuple[float, float, int, int]


@dataclass(frozen=True, slots=True)
class TaskResult:
    num_evaluated: int
    num_fitting: int
    best: list[tuple[Key, ParallelPlan]]       # this task's `top` fastest, and `top` fastest with headroom
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


def _ties_first(items: Sequence[tuple[float, float, ParallelPlan]], idx: list[int], *, capacity_bytes: float,
                cls: str, time_band_frac: float, memory_band_frac: float) -> list[int]:
    """`idx` (fastest first) with the plans within the time band of the fastest (step <= fastest x
    (1 + band)) first, in the recommendation's order; the rest by step time."""
    if not idx:
        return []
    tie_s = items[idx[0]][0] * (1 + time_band_frac)
    ties = [i for i in idx if items[i][0] <= tie_s]

    def key(i: int) -> tuple:
        step, mem, plan = items[i]
        bands = min(MAX_HEADROOM_BANDS, int((1 - mem / capacity_bytes) / memory_band_frac))
        return (len(little_validated(plan, cls)), -bands, len(mechanisms(plan)), step, mem, i)

    return sorted(ties, key=key) + [i for i in idx if items[i][0] > tie_s]


def recommend_order(items: Sequence[tuple[float, float, ParallelPlan]], *, capacity_bytes: float, cls: str,
                    time_band_frac: float, memory_band_frac: float) -> list[int]:
    """Indices of (step_time_s, memory_bytes, plan) items in the order the search recommends them:
    plans with the default memory headroom (memory <= capacity x (1 - memory band)) before marginal
    ones; within each, the ties of the fastest (within the time band) ordered by fewer little-
    validated mechanisms, more headroom (whole memory bands, at most MAX_HEADROOM_BANDS), fewer
    mechanisms, then step time; the other plans by step time."""
    by_time = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1], i))
    roomy_bytes = capacity_bytes * (1 - memory_band_frac)

    def order(idx: list[int]) -> list[int]:
        return _ties_first(items, idx, capacity_bytes=capacity_bytes, cls=cls, time_band_frac=time_band_frac,
                           memory_band_frac=memory_band_frac)

    return (order([i for i in by_time if items[i][1] <= roomy_bytes])
            + order([i for i in by_time if items[i][1] > roomy_bytes]))


def _evaluate_all(job: Job, numbered: Iterable[tuple[int, int, ParallelPlan]], cache: dict[Any, Any]
                  ) -> tuple[int, int, list[Key], dict[tuple[int, int], ParallelPlan]]:
    """Every plan timed (the exhaustive pass the pruned one is tested against)."""
    n = 0
    fitting: list[Key] = []
    plans: dict[tuple[int, int], ParallelPlan] = {}
    for gi, pi, plan in numbered:
        n += 1
        step, mem, fits = step_summary(job.model, job.hw, plan, job.train, devices_per_node=job.devices_per_node,
                                       scale_out_bandwidth_bytes_per_s=job.scale_out_bandwidth_bytes_per_s,
                                       cache=cache)
        if fits:
            fitting.append((step, mem, gi, pi))
            plans[(gi, pi)] = plan
    return n, len(fitting), fitting, plans


def evaluate_groups(job: Job, groups: Sequence[tuple[int, tuple[int, int, int]]], token: str = "") -> TaskResult:
    """Enumerate and evaluate every plan of the given (index, (tp, cp, pp)) groups; keep the task's
    best plans and Pareto front (the global ones are among their union)."""
    cache = _WORKER_CACHE.get(token)
    if cache is None or not token:
        _WORKER_CACHE.clear()
        cache = _WORKER_CACHE[token] = {}
    if job.prune:
        n, num_fitting, fitting, plans = evaluate_blocks(job, groups, cache)
    else:
        numbered = ((gi, pi, plan) for gi, group in groups
                    for pi, plan in enumerate(plans_in_group(job.model, group, num_devices=job.num_devices,
                                                             global_batch_seqs=job.train.global_batch_seqs,
                                                             space=job.space, seq_len=job.train.seq_len)))
        n, num_fitting, fitting, plans = _evaluate_all(job, numbered, cache)
    fitting.sort()
    roomy = [k for k in fitting if k[1] <= job.roomy_memory_bytes][:job.top]
    keep = sorted(set(fitting[:job.top]) | set(roomy))
    front = pareto(fitting)
    return TaskResult(n, num_fitting, [(k, plans[k[2], k[3]]) for k in keep],
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
    model_class: str = "dense"
    memory_band_frac: float = MEMORY_BAND_FRAC

    @property
    def time_band_frac(self) -> float:
        """The step-time band: the profile's cross-validated error, else the shipped one's."""
        return self.model_error_frac if self.model_error_frac is not None else TIME_BAND_FRAC

    def row(self, e: TrainingEstimate, best_s: float) -> dict[str, Any]:
        """One plan as --json shows it: its `parallel` section (exactly what reproduces it with
        `flopcast train`), its keys flat, the figures, the step-time band and whether it ties the
        best, the memory headroom and band, and its mechanisms (those with little validation apart)."""
        band, mem_band = self.time_band_frac, self.memory_band_frac
        d = e.to_dict()
        par = d.pop("parallel")
        d.pop("assumptions")
        d.pop("ops", None)
        headroom = 1 - e.memory_per_device_bytes / e.memory_capacity_bytes
        d |= {"step_time_s_band": [e.step_time_s * (1 - band), e.step_time_s * (1 + band)],
              "within_error_of_best": e.step_time_s <= best_s * (1 + band) / (1 - band),
              "memory_headroom_frac": headroom, "memory_band_frac": mem_band, "marginal": headroom < mem_band,
              "mechanisms": list(mechanisms(e.plan)),
              "little_validated_mechanisms": list(little_validated(e.plan, self.model_class))}
        return {**par, **d, "parallel": {k: v for k, v in par.items() if v is not None}}

    def to_dict(self) -> dict[str, Any]:
        best = min((e.step_time_s for e in self.plans), default=0.0)   # rows exist only with plans
        return {
            "objective": self.objective,
            "backend": self.backend,
            "num_evaluated": self.num_evaluated,
            "num_fitting": self.num_fitting,
            "num_pruned": self.num_evaluated - self.num_fitting,  # sized, found not to fit, never timed
            "model_error_frac": self.model_error_frac,
            "time_band_frac": self.time_band_frac,
            "memory_band_frac": self.memory_band_frac,
            "model_class": self.model_class,
            "plans": [self.row(e, best) for e in self.plans],
            "pareto": [self.row(e, best) for e in self.pareto],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def _recommended_candidates(results: list[TaskResult], model: ModelSpec, hw: AcceleratorSpec,
                            time_band_frac: float) -> list[tuple[Key, ParallelPlan]]:
    """Every task's candidates (its fastest, and fastest with headroom), in the recommendation's order."""
    cands = sorted({kp[0]: kp for r in results for kp in r.best}.values(), key=lambda kp: kp[0])
    order = recommend_order([(k[0], k[1], p) for k, p in cands], capacity_bytes=hw.hbm_capacity_bytes,
                            cls=model_class(model), time_band_frac=time_band_frac, memory_band_frac=MEMORY_BAND_FRAC)
    return [cands[i] for i in order]


def search(model: ModelSpec, hw: AcceleratorSpec, train: TrainingSpec, *, num_devices: int, devices_per_node: int,
           scale_out_bandwidth_bytes_per_s: float | None, top: int = 10, objective: str = "throughput",
           backend: str = "local", ray_address: str | None = None, workers: int | None = None,
           space: SearchSpace = SearchSpace(), progress: Callable[[int, int], None] | None = None,
           assumptions: tuple[Assumption, ...] = (), prune: bool = True) -> SearchResult:
    """Evaluate every valid plan; return the `top` best that fit and the Pareto front. `prune`: time
    only the plans a lower bound cannot rule out (search/prune.py; the same result as False, which
    times every fitting plan)."""
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
    band = train.profile.cv_median_abs_error_frac
    job = Job(model, hw, train, devices_per_node, scale_out_bandwidth_bytes_per_s, num_devices, space, max(top, POOL),
              roomy_memory_bytes=hw.hbm_capacity_bytes * (1 - MEMORY_BAND_FRAC), prune=prune)
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
    # proportional to step time); the candidates (each task's fastest and fastest with headroom)
    # are put in the recommendation's order (enumeration order last: deterministic on any backend).
    best = _recommended_candidates(results, model, hw, band if band is not None else TIME_BAND_FRAC)[:top]
    candidates = {kp[0]: kp[1] for r in results for kp in r.front}
    front = pareto(list(candidates))

    def full(plan: ParallelPlan) -> TrainingEstimate:
        return estimate_training(model, hw, plan, train, devices_per_node=devices_per_node,
                                 scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s)

    return SearchResult(
        model_error_frac=band, model_class=model_class(model),
        plans=tuple(full(p) for _, p in best), pareto=tuple(full(candidates[k]) for k in front),
        num_evaluated=sum(r.num_evaluated for r in results), num_fitting=sum(r.num_fitting for r in results),
        objective=objective, backend=backend, assumptions=assumptions,
    )


