"""Plan search: evaluate every valid parallel plan with the training estimator, keep those that fit,
rank them, and report the best and the Pareto front.

Every plan is timed by `estimate.training.estimate_training` itself (one implementation: the search
passes a memo cache so that the parts shared by many plans, the per-layer costs for a given tp, cp,
sp, ep and micro-batch, are computed once). Work is split into chunks of plans sharing tp, cp and
pp and spread over processes (local backend, all cores) or Ray tasks (`backend="ray"`); the
results do not depend on the backend or the chunking.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.training import TrainingEstimate, estimate_training, step_summary
from flopcast.report import Assumption
from flopcast.search.space import SearchSpace, enumerate_plans, nearest_valid_device_counts
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import ParallelPlan
from flopcast.specs.workload import TrainingSpec

OBJECTIVES = ("throughput", "time-to-train", "cost", "energy")
BACKENDS = ("local", "ray")
CHUNK_PLANS = 4000


@dataclass(frozen=True, slots=True)
class Job:
    """What every worker needs: the resolved specs (plans come separately, per chunk)."""

    model: ModelSpec
    hw: AcceleratorSpec
    train: TrainingSpec
    devices_per_node: int
    scale_out_bandwidth_bytes_per_s: float | None


# Per-plan summary a worker returns: (step_time_s, memory_per_device_bytes, fits)
Summary = tuple[float, float, bool]


def evaluate_chunk(job: Job, plans: Sequence[ParallelPlan]) -> list[Summary]:
    """Time and size every plan of a chunk (a pure function of its inputs)."""
    cache: dict = {}
    return [step_summary(job.model, job.hw, plan, job.train, devices_per_node=job.devices_per_node,
                         scale_out_bandwidth_bytes_per_s=job.scale_out_bandwidth_bytes_per_s, cache=cache)
            for plan in plans]


def _chunks(plans: list[ParallelPlan]) -> list[list[ParallelPlan]]:
    """Consecutive runs of plans (enumeration keeps tp/cp/pp groups together), at most CHUNK_PLANS each."""
    return [plans[i:i + CHUNK_PLANS] for i in range(0, len(plans), CHUNK_PLANS)]


def _run_local(job: Job, chunks: list[list[ParallelPlan]], workers: int | None,
               progress: Callable[[int], None] | None) -> list[list[Summary]]:
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(chunks) == 1:
        out = []
        for c in chunks:
            out.append(evaluate_chunk(job, c))
            if progress:
                progress(len(c))
        return out
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(evaluate_chunk, job, c) for c in chunks]
        out = []
        for c, f in zip(chunks, futures, strict=True):
            out.append(f.result())
            if progress:
                progress(len(c))
        return out


def _run_ray(job: Job, chunks: list[list[ParallelPlan]], address: str | None,
             progress: Callable[[int], None] | None) -> list[list[Summary]]:
    try:
        import ray
    except ImportError:
        raise InvalidScenario("backend: ray is not installed; install the extra: pip install 'flopcast[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(evaluate_chunk)
    job_ref = ray.put(job)
    refs = [remote.remote(job_ref, c) for c in chunks]
    out = []
    for c, r in zip(chunks, refs, strict=True):
        out.append(ray.get(r))
        if progress:
            progress(len(c))
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

    def to_dict(self) -> dict[str, Any]:
        def row(e: TrainingEstimate) -> dict[str, Any]:
            d = e.to_dict()
            par = d.pop("parallel")
            d.pop("assumptions")
            return {**par, **d}

        return {
            "objective": self.objective,
            "backend": self.backend,
            "num_evaluated": self.num_evaluated,
            "num_fitting": self.num_fitting,
            "num_pruned": self.num_evaluated - self.num_fitting,  # sized, found not to fit, never timed
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
    plans = list(enumerate_plans(model, num_devices=num_devices, global_batch_seqs=train.global_batch_seqs,
                                 seq_len=train.seq_len, scale_up_domain=hw.scale_up_domain, space=space))
    if not plans:
        near = nearest_valid_device_counts(model, num_devices=num_devices, global_batch_seqs=train.global_batch_seqs,
                                           seq_len=train.seq_len, scale_up_domain=hw.scale_up_domain, space=space)
        raise InvalidScenario(
            f"search: no valid plan for {num_devices} devices with global batch {train.global_batch_seqs} "
            f"(tp must divide the heads within the scale-up domain of {hw.scale_up_domain}, dp must divide the "
            f"batch, pp <= layers); nearest device counts with plans: {', '.join(map(str, near))}")
    job = Job(model, hw, train, devices_per_node, scale_out_bandwidth_bytes_per_s)
    chunks = _chunks(plans)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(plans))

    if backend == "ray":
        results = _run_ray(job, chunks, ray_address, tick)
    else:
        results = _run_local(job, chunks, workers, tick)
    flat = [s for chunk in results for s in chunk]
    cap = hw.hbm_capacity_bytes
    fitting = [i for i, s in enumerate(flat) if s[2]]
    # All objectives rank alike for a fixed device count (cost, energy and time-to-train are all
    # proportional to step time); ties go to the plan with more memory headroom, then to the
    # earlier plan in enumeration order (deterministic).
    order = sorted(fitting, key=lambda i: (flat[i][0], flat[i][1], i))
    pareto_idx: list[int] = []
    best_headroom = -1.0
    for i in order:
        headroom = cap - flat[i][1]
        if headroom > best_headroom:
            pareto_idx.append(i)
            best_headroom = headroom

    def full(i: int) -> TrainingEstimate:
        return estimate_training(model, hw, plans[i], train, devices_per_node=devices_per_node,
                                 scale_out_bandwidth_bytes_per_s=scale_out_bandwidth_bytes_per_s)

    return SearchResult(
        plans=tuple(full(i) for i in order[:top]), pareto=tuple(full(i) for i in pareto_idx),
        num_evaluated=len(plans), num_fitting=len(fitting), objective=objective, backend=backend,
        assumptions=assumptions,
    )
