"""`flopcast plan`: every section a scenario has, in one report: model counts, hardware and cluster,
training (the given plan, or the search's best), serving, the simulation of a workload, datacenter."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flopcast import catalog, units
from flopcast.assumption import Assumption
from flopcast.inputs import jsonable
from flopcast.run.hardware import hardware_dict
from flopcast.run.models import DEFAULT_KV_DTYPE, DEFAULT_SEQ_LEN, ModelReport, check_seq_len, model_counts
from flopcast.run.phases import search_phases
from flopcast.run.search import search_training_resolved
from flopcast.run.serving import estimate_serving_resolved, simulate_serving_resolved
from flopcast.run.training import estimate_training_resolved
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.scenario import ClusterSpec, ResolvedScenario, resolve


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReport:
    """`flopcast plan`: every section the scenario has that this version estimates."""

    name: str
    model: ModelReport
    hardware: AcceleratorSpec
    cluster: ClusterSpec
    pending_sections: tuple[str, ...] = ()
    training: Any = None
    serving: Any = None
    simulation: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)   # the scenario's sections as given
    assumptions: tuple[Assumption, ...] = field(default=())

    def cluster_dict(self) -> dict[str, Any]:
        hw, cl = self.hardware, self.cluster
        weights = self.model.weights_bytes
        return {
            "num_devices": cl.num_devices,
            "devices_per_node": cl.devices_per_node,
            "num_nodes": cl.num_nodes,
            "scale_out_bandwidth_bytes_per_s": cl.scale_out_bandwidth_bytes_per_s,
            "peak_flops_per_s": {d: p * cl.num_devices for d, p in hw.peak_flops_per_s.items()},
            "hbm_capacity_bytes": hw.hbm_capacity_bytes * cl.num_devices,
            "hbm_bandwidth_bytes_per_s": hw.hbm_bandwidth_bytes_per_s * cl.num_devices,
            "tdp_w": hw.tdp_w * cl.num_devices if hw.tdp_w is not None else None,
            # Weights alone, evenly sharded, no KV/activations/optimizer: a lower bound on devices.
            "min_devices_for_weights": {
                d: -(-int(b) // int(hw.hbm_capacity_bytes)) for d, b in weights.items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flopcast_version": catalog.flopcast_version(),
            "catalog_revision": catalog.revision(),
            "inputs": jsonable(self.inputs),
            "model": self.model.to_dict(),
            "hardware": hardware_dict(self.hardware),
            "cluster": self.cluster_dict(),
            "training": self.training.to_dict() if self.training is not None else None,
            "serving": self.serving.to_dict() if self.serving is not None else None,
            "simulation": self.simulation.to_dict() if self.simulation is not None else None,
            "pending_sections": list(self.pending_sections),
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def _seq_len(rs: ResolvedScenario, assumptions: list[Assumption]) -> int:
    """The sequence length of the model counts: the main phase's, the training section's, the
    inference lengths' sum, else DEFAULT_SEQ_LEN (an assumption)."""
    training = rs.sections.get("training")
    inference = rs.sections.get("inference")
    if rs.phases:
        return rs.training.seq_len   # the main phase's
    if isinstance(training, Mapping) and "seq_len" in training:
        return check_seq_len(training["seq_len"])
    if isinstance(inference, Mapping) and "input_tokens" in inference:
        return check_seq_len(units.parse_count(inference["input_tokens"], field="inference.input_tokens")
                             + units.parse_count(inference.get("output_tokens", 0), field="inference.output_tokens"))
    assumptions.append(Assumption("seq_len", DEFAULT_SEQ_LEN, "no training.seq_len or inference lengths given"))
    return DEFAULT_SEQ_LEN


def _model(rs: ResolvedScenario, seq_len: int) -> ModelReport:
    inference = rs.sections.get("inference")
    kv_dtype = DEFAULT_KV_DTYPE
    if isinstance(inference, Mapping) and "kv_dtype" in inference:
        kv_dtype = str(inference["kv_dtype"])
    reported = None
    if rs.model_ref in catalog.model_registry():
        reported = catalog.model_entry(rs.model_ref).get("reported_params")
    return model_counts(rs.model, seq_len=seq_len, kv_dtype=kv_dtype, name=rs.model_ref, reported_params=reported)


def _searched_training(rs: ResolvedScenario, assumptions: list[Assumption], workers: int | None,
                       progress: Callable[..., Any] | None) -> Any:
    """A training section without a parallel one: the search chooses the plan (SCENARIO.md), or each
    phase's (flopcast.run.phases.search_phases), and the report says so; None when no plan fits."""
    if rs.phases:
        est, failed = search_phases(
            rs, lambda prs, fixed: search_training_resolved(prs, top=1, fixed=fixed, two_pass=False, workers=workers,
                                                            progress=progress),
            estimate_training_resolved)
        if est is None:
            assumptions.append(Assumption("training", "not estimated", f"no parallel section, and no plan of the "
                                          f"search fits in memory for phase {failed!r}"))
        return est
    found = search_training_resolved(rs, top=1, two_pass=False, workers=workers, progress=progress)
    if not found.plans:
        assumptions.append(Assumption("training", "not estimated",
                                      "no parallel section, and no plan of the search fits in memory"))
        return None
    best = found.plans[0].plan.to_dict()
    chosen = dataclasses.replace(rs, sections=dict(rs.sections) | {"parallel": best}, parallel=found.plans[0].plan)
    est = estimate_training_resolved(chosen)
    note = Assumption("parallel", ", ".join(f"{k}={v}" for k, v in best.items()),
                      f"no parallel section: the fastest of {found.num_evaluated:,} plans flopcast's "
                      f"search evaluated ({found.num_fitting:,} fit)")
    return dataclasses.replace(est, assumptions=est.assumptions + (note,))


def _training(rs: ResolvedScenario, assumptions: list[Assumption], workers: int | None,
              progress: Callable[..., Any] | None) -> Any:
    if "training" in rs.sections and "parallel" in rs.sections:
        return estimate_training_resolved(rs)
    if "training" in rs.sections or rs.phases:
        return _searched_training(rs, assumptions, workers, progress)
    return None


def plan(scenario: str | Path | Mapping[str, Any], *, workers: int | None = None,
         progress: Callable[..., Any] | None = None) -> PlanReport:
    """`flopcast plan`: resolve the scenario and report every section it has: model counts, hardware
    and cluster; training (the given plan, or the search's best when there is no `parallel`
    section), serving, the simulation when the inference section has a workload, datacenter keys.
    `workers`: local processes of that search (1: in this process, as the web service runs it;
    None: all cores). `progress(done, total)` is called by the search and the simulation (the
    service stops the work from it at its deadline)."""
    rs = resolve(scenario)
    assumptions = list(rs.assumptions)
    model = _model(rs, _seq_len(rs, assumptions))
    training_est = _training(rs, assumptions, workers, progress)
    done = {"training", "parallel"} if training_est is not None else set()
    serving_est = None
    simulation = None
    inference = rs.sections.get("inference")
    if "inference" in rs.sections:
        serving_est = estimate_serving_resolved(rs)
        done.add("inference")
        if isinstance(inference, Mapping) and "workload" in inference:
            simulation = simulate_serving_resolved(rs, progress=progress)
    if (training_est is not None and training_est.datacenter) or (serving_est is not None and serving_est.datacenter):
        done |= {"site", "pricing"}
    pending = tuple(k for k in ("training", "parallel", "inference", "site", "pricing")
                    if k in rs.sections and k not in done)
    return PlanReport(name=rs.name, model=model, hardware=rs.hardware, cluster=rs.cluster,
                      pending_sections=pending, training=training_est, serving=serving_est,
                      simulation=simulation, inputs={"model": rs.model_ref, "hardware": rs.hardware.id,
                                                     **{k: v for k, v in rs.sections.items()}},
                      assumptions=tuple(assumptions))
