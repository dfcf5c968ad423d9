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
from flopcast.estimate.serving import ServingEstimate
from flopcast.estimate.serving import estimate_serving as _estimate
from flopcast.run.datacenter import serving_datacenter, simulation_datacenter, with_datacenter, with_pools_datacenter
from flopcast.sim.engine import SimulationResult, simulate
from flopcast.sim.pools import kv_transfer_assumption, scenario_pools
from flopcast.sim.workload import WorkloadSpec
from flopcast.specs import limits
from flopcast.specs.scenario import ResolvedScenario, resolve
from flopcast.specs.serving import validate_inference
from flopcast.specs.traffic import default_workload


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
        Assumption("runtime_reserve", "1 GiB + 5% of device memory",
                   "CUDA context and workspaces, CUDA graphs, NCCL; engines keep 5-10% of memory free"),
        Assumption("max_tokens_per_iteration", spec.max_tokens_per_iteration,
                   "engine token budget per forward (vLLM max_num_batched_tokens / TensorRT-LLM max_num_tokens)"),
        Assumption("kv_block_size", spec.block_size, "paged KV cache blocks (vLLM default 16 tokens)"),
        Assumption("steady_state", "continuous batching with chunked prefill",
                   "every iteration: one token per decoding sequence plus B*I/O prompt tokens on average"),
    ]
    if spec.batch_size is None:
        assumptions.append(Assumption("batch_size", "max", "largest by KV-cache memory and the iteration budget"))
    if pools:
        assumptions.append(Assumption("inference.prefill/decode", "not estimated here",
                                      "infer estimates the section's own layout; `flopcast simulate` runs the "
                                      "disaggregated pools"))
    est = _estimate(rs.model, rs.hardware, spec, assumptions=tuple(assumptions))
    return with_datacenter(rs, est, serving_datacenter)


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
                           if explicit else
                           Assumption("scheduler", "sarathi", "continuous batching with chunked prefill (vLLM v1, "
                                      "TensorRT-LLM in-flight batching)"))
    assumptions += [
        Assumption("routing", "fewest outstanding requests", "each new request goes to the least-loaded replica"),
        Assumption("kv_admission", "on demand + preemption" if scheduler == "vllm" else "whole sequence reserved",
                   "vllm allocates pages as tokens arrive and recomputes preempted sequences; the others reserve "
                   "prompt + output pages at admission (TensorRT-LLM guaranteed-no-evict)"),
        Assumption("max_concurrent_sequences", concurrent_sequences(spec, unlimited=token_budget(spec)),
                   "inference.batch_size, or the token budget when batch_size is max"
                   + ("; capped by inference.max_batch_size" if spec.max_batch_size is not None else "")),
        Assumption("iteration_cost", "the analytic serving model (flopcast infer)",
                   "every engine iteration is timed by the per-op roofline of its decode and prompt tokens"),
    ]
    if scheduler == "disaggregated":
        assumptions.append(kv_transfer_assumption())
    if slo.ttft_s is None and slo.tpot_s is None:
        assumptions.append(Assumption("slo", "none", "no inference.slo: slo_attainment_frac and goodput are null"))
    if capped:
        assumptions.append(Assumption("num_requests", workload.num_requests, capped))
    res = simulate(rs.model, rs.hardware, spec, workload, scheduler=scheduler, slo=slo, pools=pools,
                   assumptions=tuple(assumptions), progress=progress)
    if explicit:
        return with_pools_datacenter(rs, res, pools)
    return with_datacenter(rs, res, simulation_datacenter)


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

