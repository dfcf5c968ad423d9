"""The plan search of a scenario (`flopcast search`): the search space the scenario implies (fixed
keys, ZeRO stages of its stack, offload only when nothing fits without it), a space past the plan
limit searched structure first, and the best pipelined plans again with a balanced layout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate.efficiency import stack_for
from flopcast.estimate.training import TrainingEstimate
from flopcast.run.training import estimate_plan
from flopcast.search import POOL, SearchResult, recommend_order, search
from flopcast.search.space import SearchSpace, plan_space_bound
from flopcast.specs import limits
from flopcast.specs.parallel import OFFLOAD, ParallelPlan, pinned_plan_keys
from flopcast.specs.scenario import ResolvedScenario, phase_scenario, resolve
from flopcast.specs.workload import main_phase

MAX_MICROBATCH_TOKENS = 65536   # the plan search's largest micro-batch, tokens per device
STRUCTURE_KEYS = ("tp", "cp", "pp", "ep", "etp", "pp_schedule", "vpp")
REFINED_STRUCTURES = 8
LIMIT_HINT = "fix some plan keys (--fix tp=8 --fix pp=4) or search fewer devices; see docs/limits.md"


def search_training(scenario: str | Path | Mapping[str, Any], *, top: int = 10, objective: str = "throughput",
                    backend: str = "local", ray_address: str | None = None, workers: int | None = None,
                    progress: Callable[..., Any] | None = None, fixed: Mapping[str, Any] | None = None,
                    phase: str | None = None, two_pass: bool = True) -> SearchResult:
    """`flopcast search`: every valid plan for the scenario's model, devices and batch, best first.
    `fixed`: plan keys held at the given values (e.g. {"tp": 8, "pp": 16}); the search chooses the
    rest. The scenario's own `parallel` section is not used (it is what the search replaces).
    With `training.phases`, one phase is searched: `phase` (a name), else the main phase (the most
    tokens); the keys that phase's own `parallel` gives are held fixed too (`fixed` wins).
    `two_pass`: a space past the plan limit is searched structure first (False: refused, as the
    service does, whose work per request is bounded). `workers`: local processes (1: in this
    process, no pool; None: all cores)."""
    rs = resolve(scenario)
    if "training" not in rs.sections:
        raise InvalidScenario("training: missing; give seq_len and global_batch_seqs (see docs/scenario.md)")
    notes: tuple[Assumption, ...] = ()
    if rs.phases:
        rs, fixed, notes = _phase_to_search(rs, phase, fixed)
    elif phase is not None:
        raise InvalidScenario(f"--phase: {phase!r} given, but the scenario has no training.phases")
    return search_training_resolved(rs, top=top, objective=objective, backend=backend, ray_address=ray_address,
                                    workers=workers, progress=progress, fixed=fixed, notes=notes,
                                    two_pass=two_pass)


def _phase_to_search(rs: ResolvedScenario, phase: str | None, fixed: Mapping[str, Any] | None
                     ) -> tuple[ResolvedScenario, Mapping[str, Any] | None, tuple[Assumption, ...]]:
    """The phase of a multi-phase run the search plans (named, else the main one) as a scenario of
    its own, the keys held fixed (the phase's parallel keys, `fixed` over them) and the note."""
    names = [p.name for p in rs.phases]
    if phase is None:
        chosen = rs.phases[main_phase(rs.phases)]
        why = "the main phase (the most tokens); choose another with --phase NAME"
    elif phase in names:
        chosen = rs.phases[names.index(phase)]
        why = "chosen with --phase"
    else:
        raise UnknownName("--phase: training phase", str(phase), names)
    total = sum(p.training.total_tokens for p in rs.phases)
    over = dict(chosen.parallel_overrides or {})
    note = Assumption(
        "phase", chosen.name,
        f"training.phases: the search plans one phase, {why}; its shape ({chosen.training.seq_len} x "
        f"{chosen.training.global_batch_seqs} sequences, {100 * chosen.training.total_tokens / total:.1f}% of "
        "the tokens) and devices" + (f", holding its parallel keys {', '.join(f'{k}={v}' for k, v in over.items())}"
                                     if over else "") + "; time to train and cost are this phase's")
    held = over | dict(fixed or {}) if (over or fixed) else None
    return phase_scenario(rs, chosen), held, (note,)


def _space(rs: ResolvedScenario, fixed: Mapping[str, Any] | None, objective: str,
           assumptions: list[Assumption]) -> SearchSpace:
    """The search space of the scenario (appending the assumptions that describe it). Micro-batches
    past 64K tokens per device only add activation memory (GEMMs are at full shape efficiency long
    before); offload never shortens a step: it is searched only when no plan fits without it (or when
    fixed); a stack that reduces gradients once per step (Megatron-Core's distributed optimizer) has
    no ZeRO-2 distinct from ZeRO-1, so the search leaves it out there."""
    if rs.sections.get("parallel"):
        assumptions.append(Assumption("parallel", "not used", "the search chooses the plan (fix keys with --fix)"))
    zeros = tuple(z for z in (0, 1, 2, 3) if not (z == 2 and stack_for(rs.training).grad_reduce == "per_step"))
    space = SearchSpace(max_microbatch_tokens=MAX_MICROBATCH_TOKENS, offload=("none",), zero_stages=zeros)
    assumptions.append(Assumption("search_space", f"micro-batches <= {MAX_MICROBATCH_TOKENS:,} tokens per device",
                                  "larger ones only add activation memory; offload searched when nothing fits without it"))
    if fixed:
        pinned = pinned_plan_keys(fixed)
        space = dataclasses.replace(space, pinned=pinned,
                                    offload=OFFLOAD if "offload" in fixed else space.offload,
                                    zero_stages=(0, 1, 2, 3) if "zero_stage" in fixed else space.zero_stages)
        assumptions.append(Assumption("fixed", ", ".join(f"{k}={v}" for k, v in pinned),
                                      "held fixed (--fix); the search chooses the rest"))
    assumptions.append(Assumption(
        "objective_equivalence", objective,
        "for a fixed device count, cost, energy and time-to-train all rank plans as step time does"))
    return space


def search_training_resolved(rs: ResolvedScenario, *, top: int = 10, objective: str = "throughput",
                             backend: str = "local", ray_address: str | None = None, workers: int | None = None,
                             progress: Callable[..., Any] | None = None, fixed: Mapping[str, Any] | None = None,
                             notes: tuple[Assumption, ...] = (), two_pass: bool = True) -> SearchResult:
    """The search of a resolved scenario (search_training's rules; `notes` join its assumptions)."""
    train = rs.training
    assumptions = list(rs.assumptions) + list(notes)
    space = _space(rs, fixed, objective, assumptions)

    def bound_of(space_: SearchSpace) -> int:
        return plan_space_bound(rs.model, num_devices=rs.cluster.num_devices,
                                global_batch_seqs=train.global_batch_seqs, seq_len=train.seq_len,
                                scale_up_domain=rs.hardware.scale_up_domain, space=space_)

    def run(space_: SearchSpace, k: int = max(top, POOL)) -> SearchResult:
        return search(rs.model, rs.hardware, train, num_devices=rs.cluster.num_devices,
                      devices_per_node=rs.cluster.devices_per_node,
                      scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, top=k,
                      objective=objective, backend=backend, ray_address=ray_address, workers=workers,
                      space=space_, progress=progress, assumptions=tuple(assumptions))

    def balanced(res: SearchResult) -> SearchResult:
        if "pipeline_layout" not in (fixed or {}):
            res = _with_balanced_layouts(res, lambda plan: estimate_plan(rs, train, plan))
        return recommended(res, top)

    bound = bound_of(space)
    if bound > limits.MAX_PLANS and not two_pass:
        limits.check_count(bound, limits.MAX_PLANS, field="search: plans to evaluate", hint=LIMIT_HINT)
    if bound > limits.MAX_PLANS:
        return balanced(_search_in_two_passes(space, bound, bound_of, run_search=run, top=max(top, POOL),
                                              hint=LIMIT_HINT))
    result = run(space)
    if not result.plans and space.offload == ("none",):
        with_offload = dataclasses.replace(space, offload=OFFLOAD)
        limits.check_count(bound_of(with_offload), limits.MAX_PLANS,
                           field="search: plans to evaluate (with offload: nothing fits without)", hint=LIMIT_HINT)
        result = run(with_offload)
    return balanced(result)


def recommended(result: SearchResult, top: int) -> SearchResult:
    """The result's plans in the order the search recommends (flopcast.search.recommend_order), the
    first `top` of them."""
    if not result.plans:
        return result
    items = [(e.step_time_s, e.memory_per_device_bytes, e.plan) for e in result.plans]
    order = recommend_order(items, capacity_bytes=result.plans[0].memory_capacity_bytes, cls=result.model_class,
                            time_band_frac=result.time_band_frac, memory_band_frac=result.memory_band_frac)
    return dataclasses.replace(result, plans=tuple(result.plans[i] for i in order[:top]))


def _with_balanced_layouts(result: SearchResult, estimate: Callable[[ParallelPlan], TrainingEstimate]) -> SearchResult:
    """The candidate plans with pipelines again with `pipeline_layout: balanced` (the split that
    evens the stages' work, head and embedding counted); a balanced variant that is faster and fits
    joins the candidates. Cheap: one more estimate a candidate."""
    extra = []
    for e in result.plans:
        if e.plan.pp > 1 and e.plan.pipeline_layout is None:
            b = estimate(dataclasses.replace(e.plan, pipeline_layout="balanced"))
            if b.fits and b.step_time_s < e.step_time_s:
                extra.append(b)
    if not extra:
        return result
    ranked = sorted((*result.plans, *extra), key=lambda e: (e.step_time_s, e.memory_per_device_bytes))
    return dataclasses.replace(result, plans=tuple(ranked), num_evaluated=result.num_evaluated + len(extra),
                               num_fitting=result.num_fitting + len(extra),
                               assumptions=(*result.assumptions, Assumption(
                            "balanced_layouts", len(extra), "best plans re-estimated with pipeline_layout: "
                            "balanced; the faster ones joined the ranking")))


def _search_in_two_passes(space: SearchSpace, bound: int, bound_of: Callable[[SearchSpace], int], *,
                          run_search: Callable[[SearchSpace, int], SearchResult], top: int, hint: str) -> SearchResult:
    """A plan space past the limit is searched structure first: every (tp, cp, pp, ep, etp,
    schedule, vpp) with sequence parallelism on, power-of-two micro-batches, ZeRO 1 or 3 and
    selective or full recompute; then the best REFINED_STRUCTURES structures with every option.
    The result says so; it is exhaustive over structures, not over every option of each."""
    coarse = dataclasses.replace(space, coarse=True, recompute=("selective", "full"), zero_stages=(1, 3))
    limits.check_count(bound_of(coarse), limits.MAX_PLANS, field="search: plans to evaluate (structure pass)",
                       hint=hint)
    first = run_search(coarse, max(top, 4 * REFINED_STRUCTURES))
    pinned = dict(space.pinned)
    structures: list[tuple[tuple[str, Any], ...]] = []
    for e in first.plans:
        key = tuple((k, e.plan.expert_tp if k == "etp" else getattr(e.plan, k)) for k in STRUCTURE_KEYS)
        if key not in structures:
            structures.append(key)
    results = [first]
    for key in structures[:REFINED_STRUCTURES]:
        pins = tuple(pinned.items()) + tuple((k, v) for k, v in key if k not in pinned)
        results.append(run_search(dataclasses.replace(space, pinned=pins), top))
    everything = {e.plan: e for r in results for e in (*r.plans, *r.pareto)}
    ranked = sorted(everything.values(), key=lambda e: (e.step_time_s, e.memory_per_device_bytes))
    front, best_mem = [], float("inf")
    for e in ranked:
        if e.memory_per_device_bytes < best_mem:
            front.append(e)
            best_mem = e.memory_per_device_bytes
    refined = len(structures[:REFINED_STRUCTURES])
    note = Assumption("search_passes", f"{bound:,} plans: structure first, then the best {refined} "
                      "structures with every option",
                      "past the plan limit the search enumerates every (tp, cp, pp, ep, etp, schedule, vpp) with "
                      "sp on, power-of-two micro-batches, ZeRO 1/3 and selective/full recompute, then refines")
    return dataclasses.replace(first, plans=tuple(ranked), pareto=tuple(front),
                               num_evaluated=sum(r.num_evaluated for r in results),
                               num_fitting=sum(r.num_fitting for r in results),
                               assumptions=(*first.assumptions, note))

