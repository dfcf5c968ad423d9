"""Serving workflows: the analytic estimate of the inference section (`flopcast infer`) and the
discrete-event simulation of its workload (`flopcast simulate`), each with the assumptions the
scenario's defaults imply and the datacenter keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario
from flopcast.estimate.admission import concurrent_sequences, token_budget
from flopcast.estimate.efficiency import serving_engine
from flopcast.estimate.serving import ServingEstimate
from flopcast.estimate.serving import estimate_serving as _estimate
from flopcast.run.datacenter import serving_datacenter, simulation_datacenter, with_datacenter, with_pools_datacenter
from flopcast.run.steady import steady_state
from flopcast.sim.engine import SimulationResult, simulate
from flopcast.sim.pools import kv_transfer_assumption, scenario_pools
from flopcast.sim.workload import SLO, WorkloadSpec
from flopcast.specs import limits
from flopcast.specs.scenario import ResolvedScenario, resolve
from flopcast.specs.serving import validate_inference
from flopcast.specs.traffic import default_workload

DEFAULT_SCHEDULER_WHY = {
    "sarathi": "continuous batching with chunked prefill (vLLM v1, TensorRT-LLM in-flight batching)",
    "splitfuse": "inference.engine fastgen: Dynamic SplitFuse, forwards of a fixed token budget composed of "
                 "decodes and prompt chunks",
    "tgi": "inference.engine tgi: TGI's router, prefills in their own forwards when enough requests wait "
           "(waiting_served_ratio) or after max_waiting_tokens decode steps"}


def estimate_serving_resolved(rs: ResolvedScenario) -> ServingEstimate:
    """The serving estimate of a resolved scenario's inference section (estimate_serving)."""
    if "inference" not in rs.sections:
        raise InvalidScenario("inference: missing; give tp, weights_dtype, batch_size, input_tokens, output_tokens")
    spec = rs.inference
    pools = bool(rs.pools)
    # with disaggregated pools the cluster holds both; `infer` estimates the section's own layout
    validate_inference(spec, rs.model, num_devices=spec.num_devices if pools else rs.cluster.num_devices)
    assumptions = list(rs.assumptions) + [
        Assumption("calibration", spec.profile.as_dict() or "none", spec.profile.source),
        Assumption("engine", spec.engine, "inference.engine: CUDA-graph coverage and host time per iteration "
                   "(catalog/frameworks.yaml)"),
        kv_memory_assumption(spec),
        Assumption("max_tokens_per_iteration", spec.max_tokens_per_iteration,
                   "engine token budget per forward (vLLM max_num_batched_tokens / TensorRT-LLM max_num_tokens)"),
        Assumption("kv_block_size", spec.block_size, "paged KV cache blocks (vLLM default 16 tokens)"),
        Assumption("steady_state", "continuous batching with chunked prefill", "every iteration: one token "
                   "per decoding sequence plus B*I/O prompt tokens on average") if serving_engine(spec.engine).fused_prefill
        else Assumption("steady_state", "continuous batching, prefill in its own forwards",
                        "every decode step of the B sequences, plus B*I/O prompt tokens per step prefilled in "
                        "separate forwards while the batch waits (TGI)"),
    ]
    if spec.batch_size is None:
        assumptions.append(Assumption("batch_size", "max", "largest by KV-cache memory and the iteration budget"))
    if pools:
        assumptions.append(Assumption("inference.prefill/decode", "not estimated here",
                                      "infer estimates the section's own layout; `flopcast simulate` runs the "
                                      "disaggregated pools"))
    est = with_datacenter(rs, _estimate(rs.model, rs.hardware, spec, assumptions=tuple(assumptions)),
                          serving_datacenter)
    return dataclasses.replace(est, at_slo=at_slo(rs, est)) if not pools else est


def kv_memory_assumption(spec) -> Assumption:
    """The engine's KV-cache memory rule (catalog/frameworks.yaml kv_memory) as an assumption."""
    eng = serving_engine(spec.engine)
    frac = spec.kv_memory_fraction or eng.kv_frac
    rule = {"total": "KV = f x memory - weights - activations - 1 GiB runtime",
            "static": "KV = f x memory - weights (f = mem_fraction_static)",
            "free": "KV = f x (memory - weights - activations - 1 GiB runtime)"
                    + (f" - {eng.kv_reserve_bytes / 1e9:g} GB reserve" if eng.kv_reserve_bytes else ""),
            "free_weights": "KV = f x (memory - weights - 1 GiB runtime)"}[eng.kv_of]
    f = f"{frac:g}" if frac is not None else "SGLang's rule from memory, token budget and tp"
    why = "inference.kv_memory_fraction" if spec.kv_memory_fraction is not None else \
        f"{spec.engine}'s default ({eng.kv_source})"
    return Assumption("kv_memory", f"{rule}, f = {f}", why)


def at_slo(rs: ResolvedScenario, est: ServingEstimate) -> dict[str, Any] | None:
    """The operating point at the scenario's SLO (`inference.slo`): the largest batch per replica,
    up to what memory, the token budget and max_batch_size allow, whose steady-state TTFT and TPOT
    meet the targets, with its throughput, cost and energy per token beside the saturated figures.
    TTFT and TPOT grow with the batch (each iteration carries more tokens), so a bisection finds it.
    None without an SLO or when nothing fits; a result with a reason when batch 1 misses it."""
    slo = rs.slo
    if slo is None or (slo.ttft_s is None and slo.tpot_s is None) or not est.fits or est.spec.pool != "both":
        return None

    def at(batch: int) -> ServingEstimate:
        return _estimate(rs.model, rs.hardware, dataclasses.replace(est.spec, batch_size=batch))

    def meets(e: ServingEstimate) -> bool:
        return e.fits and (slo.ttft_s is None or e.ttft_s <= slo.ttft_s) and (slo.tpot_s is None or e.tpot_s <= slo.tpot_s)

    largest = at_largest = _estimate(rs.model, rs.hardware, dataclasses.replace(est.spec, batch_size=None)).batch_size
    out: dict[str, Any] = {"ttft_p99_target_s": slo.ttft_s, "tpot_p99_target_s": slo.tpot_s,
                           "largest_batch_size": largest,
                           "basis": "the analytic steady-state TTFT and TPOT against the p99 targets; `flopcast "
                                    "simulate` checks the percentiles under the workload's arrivals"}
    one = at(1)
    if not meets(one):
        return {**out, "met": False, "batch_size": None,
                "reason": f"at batch 1 TTFT is {one.ttft_s * 1e3:,.1f} ms and TPOT {one.tpot_s * 1e3:,.2f} ms: "
                          "more tensor parallelism, a faster part or a lower precision is needed"}
    lo, hi = 1, at_largest
    if meets(at(hi)):
        lo = hi
    while hi - lo > 1:                  # meets(lo) and, unless lo == hi, not meets(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if meets(at(mid)) else (lo, mid)
    best = with_datacenter(rs, at(lo), serving_datacenter)
    dc = best.datacenter or {}
    return {**out, "met": True, "batch_size": lo, "ttft_s": best.ttft_s, "tpot_s": best.tpot_s,
            "output_tokens_per_s": best.output_tokens_per_s,
            "output_tokens_per_s_per_device": best.output_tokens_per_s_per_device,
            "output_tokens_per_s_per_sequence": 1.0 / best.tpot_s,
            "cost_per_million_output_tokens_usd": dc.get("cost_per_million_output_tokens_usd"),
            "energy_per_output_token_j": dc.get("energy_per_output_token_j")}


def cap_workload(workload: WorkloadSpec, max_requests: int | None, limit: int | None
                 ) -> tuple[WorkloadSpec, str | None]:
    """The workload cut to `max_requests` (the first ones, in arrival order) and why; past `limit`
    (flopcast's bound on one simulation) it is refused before any request is generated."""
    why = None
    if max_requests is not None:
        if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
            raise InvalidScenario(f"max_requests: expected a positive integer, got {max_requests!r}")
        if workload.num_requests > max_requests:
            why = f"capped from {workload.num_requests:,} (--max-requests): the first requests in arrival order"
            workload = dataclasses.replace(workload, num_requests=max_requests)
    limit = limits.MAX_SIM_REQUESTS if limit is None else limit
    limits.check_count(workload.num_requests, limit, field="inference.workload.num_requests",
                       hint="simulate fewer requests, or cap them with `flopcast simulate --max-requests N`")
    if workload.trace is None:
        tokens = workload.num_requests * (workload.input_tokens.mean + workload.output_tokens.mean)
        limits.check_count(round(tokens), limits.MAX_SIM_TOKENS, field="inference.workload: expected tokens "
                           "(num_requests x mean input + output)",
                           hint="simulate fewer or shorter requests, or cap them with --max-requests N")
    return workload, why


def simulate_serving_resolved(rs: ResolvedScenario, *, max_requests: int | None = None,
                              limit_requests: int | None = None, progress: Callable[[int, int], Any] | None = None,
                              workload: WorkloadSpec | None = None) -> SimulationResult:
    """The simulation of a resolved scenario's inference workload (simulate_serving); `workload`
    replaces the section's (fleet sizing passes each trial's)."""
    if rs.inference is None:
        raise InvalidScenario("inference: missing; give tp, weights_dtype, input_tokens, output_tokens and a workload")
    spec = rs.inference
    scheduler, prefill_replicas = rs.scheduler.name, rs.scheduler.prefill_replicas
    explicit = bool(rs.pools)
    pools, pool_notes = scenario_pools(rs, spec, scheduler, prefill_replicas)
    if workload is None:
        workload = rs.workload or default_workload(input_tokens=spec.input_tokens, output_tokens=spec.output_tokens)
    workload, capped = cap_workload(workload, max_requests, limit_requests)
    slo = rs.slo
    assumptions = [a for a in rs.assumptions if not (explicit and a.name == "cluster.num_devices")] + pool_notes
    if rs.workload is None:
        assumptions.append(Assumption("workload", f"burst of {workload.num_requests} requests of "
                                      f"{spec.input_tokens} + {spec.output_tokens} tokens",
                                      "no inference.workload: every request arrives at t = 0 (the saturated server); "
                                      "give inference.workload.arrival for a load"))
    if not rs.scheduler.given:
        assumptions.append(Assumption("scheduler", "disaggregated", "inference.prefill and inference.decode pools")
                           if explicit else Assumption("scheduler", scheduler, DEFAULT_SCHEDULER_WHY.get(
                               scheduler, f"inference.engine {spec.engine}'s own batching policy")))
    assumptions += [
        Assumption("routing", "fewest outstanding requests", "each new request goes to the least-loaded replica"),
        Assumption("kv_admission", "on demand + preemption" if scheduler in ("vllm", "vllm-v1", "sglang")
                   else "whole sequence reserved", KV_ADMISSION_WHY.get(scheduler, KV_ADMISSION_WHY[""])),
        Assumption("max_concurrent_sequences", concurrent_sequences(spec, unlimited=token_budget(spec)),
                   "inference.batch_size, or the token budget when batch_size is max"
                   + ("; capped by inference.max_batch_size" if spec.max_batch_size is not None else "")),
        Assumption("iteration_cost", "the analytic serving model (flopcast infer)",
                   "every engine iteration is timed by the per-op roofline of its decode and prompt tokens"),
    ]
    if scheduler == "disaggregated":
        assumptions.append(kv_transfer_assumption())
    if spec.speculative is not None:
        assumptions.append(speculative_assumption(rs.model, spec))
    if slo.ttft_s is None and slo.tpot_s is None:
        assumptions.append(Assumption("slo", "none", "no inference.slo: slo_attainment_frac and goodput are null"))
    if capped:
        assumptions.append(Assumption("num_requests", workload.num_requests, capped))
    res = simulate(rs.model, rs.hardware, spec, workload, scheduler=scheduler, slo=slo, pools=pools,
                   assumptions=tuple(assumptions), progress=progress)
    res = with_pools_datacenter(rs, res, pools) if explicit else with_datacenter(rs, res, simulation_datacenter)
    return with_steady_state(res, slo)


KV_ADMISSION_WHY = {
    "": "vllm allocates pages as tokens arrive and recomputes preempted sequences; the others reserve "
        "prompt + output pages at admission (TensorRT-LLM guaranteed-no-evict)",
    "vllm-v1": "vLLM V1 allocates pages as tokens arrive (admission on the prompt's pages) and recomputes the "
               "newest sequence when they run out",
    "sglang": "SGLang allocates pages as tokens arrive, admits a prompt while the free pool covers it plus "
              "new_token_ratio (0.7 decaying to 0.098) of the outputs still to come, and retracts the newest "
              "request when a decode step finds no page",
}


def speculative_assumption(model: Any, spec: Any) -> Assumption:
    """The acceptance length the simulator's speculative cost uses (sim/cost.py SpeculativeCost):
    the scenario's, or the one predicted from published acceptance data."""
    from flopcast.estimate import speculative as spec_mod

    filled, why = spec_mod.with_acceptance(model, spec)
    a = filled.speculative.acceptance_length
    return Assumption("speculative.acceptance_length", round(a, 4),
                      f"predicted from published acceptance data: {why}; every decode iteration is 1 / {a:.3g} "
                      "of a speculative step" if why else
                      f"inference.speculative.acceptance_length; every decode iteration is 1 / {a:.3g} of a "
                      "speculative step")


def with_steady_state(res: SimulationResult, slo: SLO) -> SimulationResult:
    """The simulation with its steady state (run/steady.py): the requests after the warm-up, whether
    the run settled (an assumption says so when it did not), and the cost and energy per output
    token at the steady-state throughput (the run's cost and facility energy per simulated second,
    which include its warm-up and drain, over the tokens per second after the warm-up)."""
    empty = res.num_requests == 0 if res.requests is None else not len(res.requests["arrival_s"])
    if (res.requests is None and res.stream is None) or empty or res.simulated_s <= 0:
        return res
    out = {k: v for k, v in steady_state(res, slo).items() if not k.startswith("_")}
    achieved = out.get("achieved_output_tokens_per_s")
    dc = res.datacenter or {}
    for key, total in (("cost_per_million_output_tokens_usd", dc.get("cost_usd")),
                       ("energy_per_output_token_j", dc.get("energy_facility_j"))):
        scale = 1e6 if key.startswith("cost") else 1.0
        out[key] = total / res.simulated_s / achieved * scale if total is not None and achieved else None
    notes: tuple[Assumption, ...] = ()
    if not out["settled"]:
        notes = (Assumption("steady_state", "not settled",
                            "the run is too short to settle: the p99 of the two halves of the requests after the "
                            "warm-up disagree by more than 10%; simulate more requests (inference.workload."
                            "num_requests) before reading the percentiles as steady state"),)
    return dataclasses.replace(res, steady_state=out, assumptions=res.assumptions + notes)


def simulate_serving(scenario: str | Path | Mapping[str, Any], *, max_requests: int | None = None,
                     limit_requests: int | None = None,
                     progress: Callable[[int, int], Any] | None = None) -> SimulationResult:
    """`flopcast simulate`: discrete-event simulation of the inference section's workload.
    `max_requests` caps the workload (the first requests, recorded as an assumption); `limit_requests`
    lowers flopcast's bound on one simulation (the service's); `progress(done, total)` is called
    as requests arrive in the simulation (it may raise to stop it)."""
    return simulate_serving_resolved(resolve(scenario), max_requests=max_requests, limit_requests=limit_requests,
                                      progress=progress)


def estimate_serving(scenario: str | Path | Mapping[str, Any]) -> ServingEstimate:
    """`flopcast infer`: KV capacity, TTFT, TPOT and steady-state throughput of the inference section."""
    return estimate_serving_resolved(resolve(scenario))

