"""The one way in: the CLI, the web service and Python users call these functions.

Each returns a small frozen report whose `to_dict()` is the `--json` output (keys in SCENARIO.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flopcast import catalog
from flopcast.dtypes import BYTES_PER_ELEMENT, KV_DTYPES
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.estimate import counts
from flopcast.report import Assumption
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.model import ModelSpec
from flopcast.specs.parallel import plan_from_mapping, validate_plan
from flopcast.specs.scenario import ClusterSpec, ResolvedScenario, resolve, resolve_model

MAX_MICROBATCH_TOKENS = 65536   # the plan search's largest micro-batch, tokens per device

DEFAULT_SEQ_LEN = 4096
DEFAULT_KV_DTYPE = "bf16"
WEIGHT_DTYPES = ("fp32", "bf16", "fp8", "fp4")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReport:
    """Exact counts of one model at a sequence length and KV dtype."""

    name: str
    family: str
    source: str
    seq_len: int
    kv_dtype: str
    attention_convention: str
    architecture: Mapping[str, Any]
    params_total: int
    params_active: int
    params_breakdown: Mapping[str, int]
    matmul_flops_per_token: int
    attention_flops_per_token: Mapping[str, float]   # by convention: causal, full
    forward_flops_per_token: float
    kv_cache_bytes_per_token: float
    kv_cache_bytes_per_sequence: float
    weights_bytes: Mapping[str, float]
    reported_params: float | None = None
    params_mtp: int = 0       # multi-token-prediction modules, beyond params_total (transformers does not build them)
    ignored_fields: tuple[str, ...] = ()
    unmodeled_fields: tuple[tuple[str, str], ...] = ()
    assumptions: tuple[Assumption, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "seq_len": self.seq_len,
            "kv_dtype": self.kv_dtype,
            "architecture": dict(self.architecture),
            "params_total": self.params_total,
            "params_active": self.params_active,
            "params_mtp": self.params_mtp,
            "params_breakdown": dict(self.params_breakdown),
            "forward_flops_per_token": self.forward_flops_per_token,
            "forward_flops_convention": self.attention_convention,
            "matmul_flops_per_token": self.matmul_flops_per_token,
            "attention_flops_per_token": dict(self.attention_flops_per_token),
            "training_flops_per_token": 3 * self.forward_flops_per_token,
            "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
            "kv_cache_bytes_per_sequence": self.kv_cache_bytes_per_sequence,
            "weights_bytes": dict(self.weights_bytes),
            "reported_params": self.reported_params,
            "ignored_fields": list(self.ignored_fields),
            "unmodeled_fields": [{"field": f, "why": w} for f, w in self.unmodeled_fields],
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def _check_seq_len(seq_len: Any) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise InvalidScenario(f"seq_len: expected a positive integer number of tokens, got {seq_len!r}")
    from flopcast.specs import limits

    limits.check_count(seq_len, limits.MAX_SEQ_LEN, field="seq_len")
    return seq_len


def model_counts(spec: ModelSpec, *, seq_len: int = DEFAULT_SEQ_LEN, kv_dtype: str = DEFAULT_KV_DTYPE,
                 attention: str = "causal", name: str | None = None,
                 reported_params: float | None = None,
                 assumptions: tuple[Assumption, ...] = ()) -> ModelReport:
    """Counts for a resolved ModelSpec (see flopcast.estimate.counts for every formula)."""
    seq_len = _check_seq_len(seq_len)
    if kv_dtype not in KV_DTYPES:
        raise UnknownName("kv_dtype", kv_dtype, KV_DTYPES)
    if attention not in counts.ATTENTION_CONVENTIONS:
        raise UnknownName("attention convention", attention, counts.ATTENTION_CONVENTIONS)
    parts = counts.model_parts(spec)
    total = sum(p.params for p in parts)
    matmul = 2 * sum(p.matmul for p in parts)
    attn = {c: counts.attention_flops_per_token(spec, seq_len, c) for c in counts.ATTENTION_CONVENTIONS}
    return ModelReport(
        name=name or spec.name, family=spec.family, source=spec.source, seq_len=seq_len,
        kv_dtype=kv_dtype, attention_convention=attention, architecture=spec.summary(),
        params_total=total, params_active=sum(p.active for p in parts),
        params_breakdown={p.key: p.params for p in parts if p.params},
        matmul_flops_per_token=matmul, attention_flops_per_token=attn,
        forward_flops_per_token=matmul + attn[attention],
        kv_cache_bytes_per_token=counts.kv_cache_bytes_per_token(spec, seq_len, kv_dtype),
        kv_cache_bytes_per_sequence=counts.kv_cache_bytes_per_sequence(spec, seq_len, kv_dtype),
        weights_bytes={d: total * BYTES_PER_ELEMENT[d] for d in WEIGHT_DTYPES},
        reported_params=reported_params, params_mtp=counts.params_mtp(spec), ignored_fields=spec.ignored_fields,
        unmodeled_fields=spec.unmodeled_fields, assumptions=assumptions,
    )


def show_model(model: str | Path | Mapping[str, Any], *, seq_len: int | None = None,
               kv_dtype: str | None = None, attention: str = "causal") -> ModelReport:
    """`flopcast model show`: a catalog id, a config.json path or an inline config mapping."""
    assumptions = []
    if seq_len is None:
        seq_len = DEFAULT_SEQ_LEN
        assumptions.append(Assumption("seq_len", seq_len, "default sequence length for FLOP and KV counts"))
    if kv_dtype is None:
        kv_dtype = DEFAULT_KV_DTYPE
        assumptions.append(Assumption("kv_dtype", kv_dtype, "default KV-cache element type"))
    assumptions.append(Assumption(
        "attention_flops_convention", attention,
        "causal: Megatron-Core halving (S/2 keys per query); 'full' is PaLM's count (S keys)"))
    spec, label = resolve_model(str(model) if isinstance(model, Path) else model, base_dir=Path.cwd())
    reported = None
    if isinstance(model, str) and model in catalog.model_registry():
        reported = catalog.model_entry(model).get("reported_params")
    return model_counts(spec, seq_len=seq_len, kv_dtype=kv_dtype, attention=attention, name=label,
                        reported_params=reported, assumptions=tuple(assumptions))


def list_models() -> list[dict[str, Any]]:
    """One row per catalog model: id, family, total and active parameters, source."""
    rows = []
    for model_id in catalog.model_ids():
        spec = catalog.get_model(model_id)
        entry = catalog.model_entry(model_id)
        parts = counts.model_parts(spec)
        rows.append({
            "id": model_id, "name": entry.get("name", model_id), "family": spec.family,
            "attention": spec.attention_kind, "moe": spec.is_moe, "num_layers": spec.num_layers,
            "params_total": sum(p.params for p in parts), "params_active": sum(p.active for p in parts),
            "hf_repo": entry.get("hf_repo"), "source": entry.get("source", ""),
        })
    return rows


def hardware_dict(hw: AcceleratorSpec) -> dict[str, Any]:
    """An accelerator's numbers in SI base units, with their sources."""
    return {
        "id": hw.id, "name": hw.name, "vendor": hw.vendor, "status": hw.status,
        "memory_kind": hw.memory_kind, "hbm_capacity_bytes": hw.hbm_capacity_bytes,
        "hbm_bandwidth_bytes_per_s": hw.hbm_bandwidth_bytes_per_s,
        "peak_flops_per_s": dict(hw.peak_flops_per_s),
        "scale_up_bandwidth_bytes_per_s": hw.scale_up_bandwidth_bytes_per_s,
        "scale_up_domain": hw.scale_up_domain,
        "scale_out_bandwidth_bytes_per_s": hw.scale_out_bandwidth_bytes_per_s,
        "node_size": hw.node_size, "tdp_w": hw.tdp_w, "power_idle_w": hw.power_idle_w, "power_max_w": hw.power_max_w,
        "host_memory_bytes_per_node": hw.host_memory_bytes_per_node,
        "host_link_bandwidth_bytes_per_s": hw.host_link_bandwidth_bytes_per_s,
        "sources": dict(hw.sources), "notes": hw.notes,
    }


def list_sites() -> list[dict[str, Any]]:
    """`flopcast sites`: every catalog site with grid intensity, electricity price, PUE and sources."""
    from flopcast.specs.site import site_registry

    reg = site_registry()
    out = []
    for i in reg.names():
        s = reg.get(i)
        out.append({"id": i, "name": s.name, "grid_intensity_gco2e_per_kwh": s.grid_intensity_gco2e_per_kwh,
                    "electricity_price_usd_per_kwh": s.electricity_price_usd_per_kwh, "pue": s.pue,
                    "cooling": s.cooling, "year": s.year, "sources": dict(s.sources)})
    return out


def list_hardware() -> list[dict[str, Any]]:
    return [hardware_dict(catalog.get_hardware(i)) for i in catalog.hardware_ids()]


def show_hardware(hw_id: str) -> dict[str, Any]:
    return hardware_dict(catalog.get_hardware(hw_id))


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
            "inputs": self.inputs,
            "model": self.model.to_dict(),
            "hardware": hardware_dict(self.hardware),
            "cluster": self.cluster_dict(),
            "training": self.training.to_dict() if self.training is not None else None,
            "serving": self.serving.to_dict() if self.serving is not None else None,
            "simulation": self.simulation.to_dict() if self.simulation is not None else None,
            "pending_sections": list(self.pending_sections),
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


def plan(scenario: str | Path | Mapping[str, Any]) -> PlanReport:
    """`flopcast plan`: resolve the scenario and report every section it has: model counts, hardware
    and cluster; training (the given plan, or the search's best when there is no `parallel`
    section), serving, the simulation when the inference section has a workload, datacenter keys."""
    rs = resolve(scenario)
    seq_len = DEFAULT_SEQ_LEN
    training = rs.sections.get("training")
    inference = rs.sections.get("inference")
    assumptions = list(rs.assumptions)
    if rs.phases:
        seq_len = rs.training.seq_len   # the main phase's
    elif isinstance(training, Mapping) and "seq_len" in training:
        seq_len = _check_seq_len(training["seq_len"])
    elif isinstance(inference, Mapping) and "input_tokens" in inference:
        from flopcast import units

        seq_len = _check_seq_len(units.parse_count(inference["input_tokens"], field="inference.input_tokens")
                                 + units.parse_count(inference.get("output_tokens", 0), field="inference.output_tokens"))
    else:
        assumptions.append(Assumption("seq_len", seq_len, "no training.seq_len or inference lengths given"))
    kv_dtype = DEFAULT_KV_DTYPE
    if isinstance(inference, Mapping) and "kv_dtype" in inference:
        kv_dtype = str(inference["kv_dtype"])
    reported = None
    if rs.model_ref in catalog.model_registry():
        reported = catalog.model_entry(rs.model_ref).get("reported_params")
    model = model_counts(rs.model, seq_len=seq_len, kv_dtype=kv_dtype, name=rs.model_ref,
                         reported_params=reported)
    training_est = None
    if "training" in rs.sections and "parallel" in rs.sections:
        training_est = _estimate_training_resolved(rs)
    elif rs.phases:
        # no parallel section: the search chooses each phase's plan (flopcast.phases.search_phases)
        from flopcast.phases import search_phases

        training_est, failed = search_phases(
            rs, lambda prs, fixed: _search_training_resolved(prs, top=1, fixed=fixed, two_pass=False),
            _estimate_training_resolved)
        if training_est is None:
            assumptions.append(Assumption("training", "not estimated", f"no parallel section, and no plan of the "
                                          f"search fits in memory for phase {failed!r}"))
    elif "training" in rs.sections:
        # no parallel section: the search chooses the plan (SCENARIO.md), and the report says so
        found = search_training(scenario, top=1, two_pass=False)
        if found.plans:
            best = found.plans[0].plan.to_dict()
            chosen = dataclasses.replace(rs, sections=dict(rs.sections) | {"parallel": best},
                                         parallel=found.plans[0].plan)
            training_est = _estimate_training_resolved(chosen)
            note = Assumption("parallel", ", ".join(f"{k}={v}" for k, v in best.items()),
                              f"no parallel section: the fastest of {found.num_evaluated:,} plans flopcast's "
                              f"search evaluated ({found.num_fitting:,} fit)")
            training_est = dataclasses.replace(training_est, assumptions=training_est.assumptions + (note,))
        else:
            assumptions.append(Assumption("training", "not estimated",
                                          "no parallel section, and no plan of the search fits in memory"))
    done = {"training", "parallel"} if training_est is not None else set()
    serving_est = None
    simulation = None
    if "inference" in rs.sections:
        serving_est = _estimate_serving_resolved(rs)
        done.add("inference")
        if isinstance(inference, Mapping) and "workload" in inference:
            simulation = _simulate_serving_resolved(rs)
    if (training_est is not None and training_est.datacenter) or (serving_est is not None and serving_est.datacenter):
        done |= {"site", "pricing"}
    pending = tuple(k for k in ("training", "parallel", "inference", "site", "pricing")
                    if k in rs.sections and k not in done)
    return PlanReport(name=rs.name, model=model, hardware=rs.hardware, cluster=rs.cluster,
                      pending_sections=pending, training=training_est, serving=serving_est,
                      simulation=simulation, inputs={"model": rs.model_ref, "hardware": rs.hardware.id,
                                                     **{k: v for k, v in rs.sections.items()}},
                      assumptions=tuple(assumptions))


def _profile(rs: ResolvedScenario, kind: str):
    """The calibration profile the scenario names (`calibration:`), else the shipped one."""
    from flopcast.estimate.calibration import shipped

    cal = rs.sections.get("calibration")
    return cal[kind] if cal else shipped(kind)


def _training_inputs(rs: ResolvedScenario):
    if rs.training is None:
        raise InvalidScenario("training: missing; give seq_len and global_batch_seqs (see docs/scenario.md)")
    if rs.parallel is None:
        raise InvalidScenario("parallel: missing; give tp/pp/dp (or run `flopcast search` to choose them)")
    train, plan = rs.training, rs.parallel
    validate_plan(plan, rs.model, num_devices=rs.cluster.num_devices,
                  global_batch_seqs=train.global_batch_seqs, seq_len=train.seq_len)
    return train, plan


def estimate_training(scenario: str | Path | Mapping[str, Any]):
    """`flopcast train`: memory per device and step time of the scenario's parallel plan."""

    return _estimate_training_resolved(resolve(scenario))


def _estimate_training_resolved(rs: ResolvedScenario):
    from flopcast.estimate.training import estimate_training as _estimate

    if rs.phases:   # a multi-phase run: this function per phase, and their sums (flopcast.phases)
        from flopcast.phases import estimate_phases

        return estimate_phases(rs, _estimate_training_resolved)
    train, plan = _training_inputs(rs)
    assumptions = list(rs.assumptions)
    assumptions += [
        Assumption("model_state_bytes_per_param", 18,
                   "bf16 weights 2 + fp32 main grads 4 + fp32 master/m/v 12 (Megatron-LM layout)")
        if train.optimizer_moments_dtype == "fp32" else
        Assumption("model_state_bytes_per_param", 14,
                   "bf16 weights 2 + fp32 main grads 4 + fp32 master 4 + bf16 m/v 4 (training.optimizer_moments_dtype)"),
        Assumption("runtime_reserve_bytes", 1.5 * 2**30,
                   "CUDA/ROCm context and workspaces 1 GiB + NCCL buffers 0.5 GiB, "
                   "plus 10% of activations for allocator fragmentation"),
        Assumption("attention_flops_convention", "causal",
                   "model FLOPs count causal attention as half of the S x S scores (Megatron-Core)"),
        Assumption("mfu_peak_dtype", train.precision,
                   "MFU and HFU are relative to the dense peak of the training precision"),
        Assumption("framework", train.framework + (" + torch.compile" if train.compile else ""),
                   "training.framework: fusion, host launch cost, overlap and ZeRO semantics (catalog/frameworks.yaml)"),
        Assumption("calibration", train.profile.as_dict() or "none", train.profile.source),
    ]
    if rs.model.mtp_layers and train.mtp_layers is None:
        assumptions.append(Assumption(
            "training.mtp_layers", 0, f"{rs.model.name} has {rs.model.mtp_layers} multi-token-prediction module(s) "
            "(params_mtp); set training.mtp_layers to train them (they run on the last pipeline stage)"))
    est = _estimate(rs.model, rs.hardware, plan, train, devices_per_node=rs.cluster.devices_per_node,
                    scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s,
                    assumptions=tuple(assumptions))
    return _with_datacenter(rs, est, _training_datacenter)


def search_training(scenario: str | Path | Mapping[str, Any], *, top: int = 10, objective: str = "throughput",
                    backend: str = "local", ray_address: str | None = None, workers: int | None = None,
                    progress=None, fixed: Mapping[str, Any] | None = None, phase: str | None = None,
                    two_pass: bool = True):
    """`flopcast search`: every valid plan for the scenario's model, devices and batch, best first.
    `fixed`: plan keys held at the given values (e.g. {"tp": 8, "pp": 16}); the search chooses the
    rest. The scenario's own `parallel` section is not used (it is what the search replaces).
    With `training.phases`, one phase is searched: `phase` (a name), else the main phase (the most
    tokens); the keys that phase's own `parallel` gives are held fixed too (`fixed` wins).
    `two_pass`: a space past the plan limit is searched structure first (False: refused, as the
    service does, whose work per request is bounded)."""
    rs = resolve(scenario)
    if "training" not in rs.sections:
        raise InvalidScenario("training: missing; give seq_len and global_batch_seqs (see docs/scenario.md)")
    notes = []
    if rs.phases:
        from flopcast.specs.scenario import phase_scenario
        from flopcast.specs.workload import main_phase

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
        notes.append(Assumption(
            "phase", chosen.name,
            f"training.phases: the search plans one phase, {why}; its shape ({chosen.training.seq_len} x "
            f"{chosen.training.global_batch_seqs} sequences, {100 * chosen.training.total_tokens / total:.1f}% of "
            "the tokens) and devices" + (f", holding its parallel keys {', '.join(f'{k}={v}' for k, v in over.items())}"
                                         if over else "") + "; time to train and cost are this phase's"))
        fixed = over | dict(fixed or {}) if (over or fixed) else None
        rs = phase_scenario(rs, chosen)
    elif phase is not None:
        raise InvalidScenario(f"--phase: {phase!r} given, but the scenario has no training.phases")
    return _search_training_resolved(rs, top=top, objective=objective, backend=backend, ray_address=ray_address,
                                     workers=workers, progress=progress, fixed=fixed, notes=tuple(notes),
                                     two_pass=two_pass)


def _search_training_resolved(rs: ResolvedScenario, *, top: int = 10, objective: str = "throughput",
                              backend: str = "local", ray_address: str | None = None, workers: int | None = None,
                              progress=None, fixed: Mapping[str, Any] | None = None,
                              notes: tuple[Assumption, ...] = (), two_pass: bool = True):
    from flopcast.search import search
    from flopcast.search.space import SearchSpace
    from flopcast.specs.parallel import OFFLOAD, PARALLEL_KEYS

    train = rs.training
    assumptions = list(rs.assumptions) + list(notes)
    if rs.sections.get("parallel"):
        assumptions.append(Assumption("parallel", "not used", "the search chooses the plan (fix keys with --fix)"))
    # micro-batches past 64K tokens per device only add activation memory (GEMMs are at full shape
    # efficiency long before); offload never shortens a step: it is searched only when no plan fits
    # without it (or when fixed)
    from flopcast.estimate.efficiency import stack_for

    # a stack that reduces gradients once per step (Megatron-Core's distributed optimizer) has no
    # ZeRO-2 distinct from ZeRO-1: the search leaves it out there
    zeros = tuple(z for z in (0, 1, 2, 3) if not (z == 2 and stack_for(train).grad_reduce == "per_step"))
    space = SearchSpace(max_microbatch_tokens=MAX_MICROBATCH_TOKENS, offload=("none",), zero_stages=zeros)
    assumptions.append(Assumption("search_space", f"micro-batches <= {MAX_MICROBATCH_TOKENS:,} tokens per device",
                                  "larger ones only add activation memory; offload searched when nothing fits without it"))
    if fixed:
        parsed = plan_from_mapping(fixed).to_dict()
        pinned = tuple((k, parsed[k]) for k in PARALLEL_KEYS if k in fixed)
        space = dataclasses.replace(space, pinned=pinned,
                                    offload=OFFLOAD if "offload" in fixed else space.offload,
                                    zero_stages=(0, 1, 2, 3) if "zero_stage" in fixed else space.zero_stages)
        assumptions.append(Assumption("fixed", ", ".join(f"{k}={v}" for k, v in pinned),
                                      "held fixed (--fix); the search chooses the rest"))
    assumptions.append(Assumption(
        "objective_equivalence", objective,
        "for a fixed device count, cost, energy and time-to-train all rank plans as step time does"))
    from flopcast.search.space import plan_space_bound
    from flopcast.specs import limits

    def bound_of(space_) -> int:
        return plan_space_bound(rs.model, num_devices=rs.cluster.num_devices,
                                global_batch_seqs=train.global_batch_seqs, seq_len=train.seq_len,
                                scale_up_domain=rs.hardware.scale_up_domain, space=space_)

    hint = "fix some plan keys (--fix tp=8 --fix pp=4) or search fewer devices; see docs/limits.md"
    bound = bound_of(space)
    def balanced(res):
        if "pipeline_layout" in (fixed or {}):
            return res
        return _with_balanced_layouts(res, lambda plan: _estimate_plan(rs, train, plan), top)

    if bound > limits.MAX_PLANS and not two_pass:
        limits.check_count(bound, limits.MAX_PLANS, field="search: plans to evaluate", hint=hint)
    if bound > limits.MAX_PLANS:
        return balanced(_search_in_two_passes(space, bound, bound_of, run_search=lambda sp, k: search(
            rs.model, rs.hardware, train, num_devices=rs.cluster.num_devices,
            devices_per_node=rs.cluster.devices_per_node,
            scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, top=k,
            objective=objective, backend=backend, ray_address=ray_address, workers=workers,
            space=sp, progress=progress, assumptions=tuple(assumptions)), top=top, hint=hint))

    def run(space_):
        return search(rs.model, rs.hardware, train, num_devices=rs.cluster.num_devices,
                      devices_per_node=rs.cluster.devices_per_node,
                      scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s, top=top,
                      objective=objective, backend=backend, ray_address=ray_address, workers=workers,
                      space=space_, progress=progress, assumptions=tuple(assumptions))

    result = run(space)
    if not result.plans and space.offload == ("none",):
        with_offload = dataclasses.replace(space, offload=OFFLOAD)
        limits.check_count(plan_space_bound(rs.model, num_devices=rs.cluster.num_devices,
                                            global_batch_seqs=train.global_batch_seqs, seq_len=train.seq_len,
                                            scale_up_domain=rs.hardware.scale_up_domain, space=with_offload),
                           limits.MAX_PLANS, field="search: plans to evaluate (with offload: nothing fits without)",
                           hint="fix some plan keys (--fix tp=8 --fix pp=4) or search fewer devices; see docs/limits.md")
        result = run(with_offload)
    return balanced(result)


def _estimate_plan(rs: ResolvedScenario, train, plan):
    from flopcast.estimate.training import estimate_training as _estimate

    return _estimate(rs.model, rs.hardware, plan, train, devices_per_node=rs.cluster.devices_per_node,
                     scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)


def _with_balanced_layouts(result, estimate, top: int):
    """The best plans with pipelines again with `pipeline_layout: balanced` (the split that evens the
    stages' work, head and embedding counted); a balanced variant that is faster and fits joins
    the ranking. Cheap: `top` more estimates."""
    from flopcast.search import SearchResult

    extra = []
    for e in result.plans:
        if e.plan.pp > 1 and e.plan.pipeline_layout is None:
            b = estimate(dataclasses.replace(e.plan, pipeline_layout="balanced"))
            if b.fits and b.step_time_s < e.step_time_s:
                extra.append(b)
    if not extra:
        return result
    ranked = sorted((*result.plans, *extra), key=lambda e: (e.step_time_s, e.memory_per_device_bytes))[:top]
    return SearchResult(plans=tuple(ranked), pareto=result.pareto, num_evaluated=result.num_evaluated + len(extra),
                        num_fitting=result.num_fitting + len(extra), objective=result.objective,
                        backend=result.backend, model_error_frac=result.model_error_frac,
                        assumptions=(*result.assumptions, Assumption(
                            "balanced_layouts", len(extra), "best plans re-estimated with pipeline_layout: "
                            "balanced; the faster ones joined the ranking")))


STRUCTURE_KEYS = ("tp", "cp", "pp", "ep", "etp", "pp_schedule", "vpp")
REFINED_STRUCTURES = 8


def _search_in_two_passes(space, bound: int, bound_of, *, run_search, top: int, hint: str):
    """A plan space past the limit is searched structure first: every (tp, cp, pp, ep, etp,
    schedule, vpp) with sequence parallelism on, power-of-two micro-batches, ZeRO 1 or 3 and
    selective or full recompute; then the best REFINED_STRUCTURES structures with every option.
    The result says so; it is exhaustive over structures, not over every option of each."""
    from flopcast.search import SearchResult
    from flopcast.specs import limits

    coarse = dataclasses.replace(space, coarse=True, recompute=("selective", "full"), zero_stages=(1, 3))
    limits.check_count(bound_of(coarse), limits.MAX_PLANS, field="search: plans to evaluate (structure pass)",
                       hint=hint)
    first = run_search(coarse, max(top, 4 * REFINED_STRUCTURES))
    pinned = dict(space.pinned)
    structures: list[tuple] = []
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
    return SearchResult(plans=tuple(ranked[:top]), pareto=tuple(front),
                        num_evaluated=sum(r.num_evaluated for r in results),
                        num_fitting=sum(r.num_fitting for r in results), objective=first.objective,
                        backend=first.backend, assumptions=(*first.assumptions, note),
                        model_error_frac=first.model_error_frac)


def _estimate_serving_resolved(rs: ResolvedScenario):
    from flopcast.estimate.serving import estimate_serving as _estimate
    from flopcast.specs.serving import validate_inference

    if "inference" not in rs.sections:
        raise InvalidScenario("inference: missing; give tp, weights_dtype, batch_size, input_tokens, output_tokens")
    spec = rs.inference
    pools = "prefill" in rs.sections["inference"] or "decode" in rs.sections["inference"]
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
    return _with_datacenter(rs, est, _serving_datacenter)


def _cap_workload(workload, max_requests: int | None, limit: int | None):
    """The workload cut to `max_requests` (the first ones, in arrival order) and why; past `limit`
    (flopcast's bound on one simulation) it is refused before any request is generated."""
    import dataclasses

    from flopcast.specs import limits

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


def _simulate_serving_resolved(rs: ResolvedScenario, *, max_requests: int | None = None,
                               limit_requests: int | None = None, progress=None, workload=None):
    from flopcast.sim.engine import simulate
    from flopcast.sim.pools import kv_transfer_assumption, scenario_pools
    from flopcast.sim.workload import scheduler_from_mapping, slo_from_mapping, workload_from_mapping

    if "inference" not in rs.sections:
        raise InvalidScenario("inference: missing; give tp, weights_dtype, input_tokens, output_tokens and a workload")
    section = rs.sections["inference"]
    spec = rs.inference
    scheduler, prefill_replicas = scheduler_from_mapping(section.get("scheduler"))
    explicit = "prefill" in section or "decode" in section
    if explicit and "scheduler" not in section:
        scheduler = "disaggregated"
    pools, pool_notes = scenario_pools(rs, section, spec, scheduler, prefill_replicas)
    if workload is None:
        workload = workload_from_mapping(section.get("workload"), input_tokens=spec.input_tokens,
                                         output_tokens=spec.output_tokens)
    workload, capped = _cap_workload(workload, max_requests, limit_requests)
    slo = slo_from_mapping(section.get("slo"))
    assumptions = [a for a in rs.assumptions if not (explicit and a.name == "cluster.num_devices")] + pool_notes
    if "workload" not in section:
        assumptions.append(Assumption("workload", f"burst of {workload.num_requests} requests of "
                                      f"{spec.input_tokens} + {spec.output_tokens} tokens",
                                      "no inference.workload: every request arrives at t = 0 (the saturated server); "
                                      "give inference.workload.arrival for a load"))
    if "scheduler" not in section:
        assumptions.append(Assumption("scheduler", "disaggregated", "inference.prefill and inference.decode pools")
                           if explicit else
                           Assumption("scheduler", "sarathi", "continuous batching with chunked prefill (vLLM v1, "
                                      "TensorRT-LLM in-flight batching)"))
    assumptions += [
        Assumption("routing", "fewest outstanding requests", "each new request goes to the least-loaded replica"),
        Assumption("kv_admission", "on demand + preemption" if scheduler == "vllm" else "whole sequence reserved",
                   "vllm allocates pages as tokens arrive and recomputes preempted sequences; the others reserve "
                   "prompt + output pages at admission (TensorRT-LLM guaranteed-no-evict)"),
        Assumption("max_concurrent_sequences", spec.batch_size or spec.max_tokens_per_iteration,
                   "inference.batch_size, or the token budget when batch_size is max"),
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
        return _with_pools_datacenter(rs, res, pools)
    return _with_datacenter(rs, res, _simulation_datacenter)


def simulate_serving(scenario: str | Path | Mapping[str, Any], *, max_requests: int | None = None,
                     limit_requests: int | None = None, progress=None):
    """`flopcast simulate`: discrete-event simulation of the inference section's workload.
    `max_requests` caps the workload (the first requests, recorded as an assumption); `limit_requests`
    lowers flopcast's bound on one simulation (the service's); `progress(done, total)` is called
    as requests arrive in the simulation (it may raise to stop it)."""
    return _simulate_serving_resolved(resolve(scenario), max_requests=max_requests, limit_requests=limit_requests,
                                      progress=progress)


def estimate_serving(scenario: str | Path | Mapping[str, Any]):
    """`flopcast infer`: KV capacity, TTFT, TPOT and steady-state throughput of the inference section."""
    return _estimate_serving_resolved(resolve(scenario))


# ------------------------------------------------------------------------------- datacenter


def audit_claims(path: str | Path | None = None) -> dict[str, Any]:
    """`flopcast audit`: check each quantitative claim of a claims CSV (default: the built-in industry
    claims) against flopcast's catalog and estimators; a verdict and the computation for each."""
    from flopcast import audit

    verdicts = audit.audit(audit.load_claims(path))
    return {"claims": [v.to_dict() for v in verdicts], "summary": audit.summary(verdicts),
            "source": str(path) if path else "built-in industry claims (validation/claims.csv)"}


def plan_fleet(scenario: str | Path | Mapping[str, Any], *, backend: str = "local", ray_address: str | None = None,
               confirm: bool = True):
    """`flopcast fleet`: a serving fleet over regions and hours from the scenario's `fleet` section:
    devices, utilisation, power, energy, cost and carbon per region and hour, for each candidate
    deployment, and the chosen one (see docs/fleet.md). backend: local | ray (same results); confirm:
    simulate each region's binding hour."""
    from flopcast.fleet import plan_fleet as _plan_fleet

    return _plan_fleet(scenario, backend=backend, ray_address=ray_address, confirm=confirm)


# Parts of the facade that live in their own modules (re-exported; api stays thin).
from flopcast.budgeting import BUDGET_BUSY, BUDGET_MFU, budget  # noqa: E402,F401
from flopcast.costing import (  # noqa: E402,F401
    _serving_datacenter,
    _serving_energy_cost,
    _simulation_datacenter,
    _site,
    _training_datacenter,
    _with_datacenter,
    _with_pools_datacenter,
)
from flopcast.sizing import size_fleet  # noqa: E402,F401
from flopcast.sweep import SWEEP_COLUMNS, _parse_vary, _set_path, _table_writer, sweep_training  # noqa: E402,F401
from flopcast.validation.commands import calibrate, validate  # noqa: E402,F401
