"""Scenario files: read (YAML/JSON/mapping), check top-level keys, resolve names into specs.

Resolution parses every section once into frozen specs (training, parallel, inference and its
traffic, site, pricing) and records every filled-in default as an Assumption. The sections as
written are kept only to echo them in a report's inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flopcast import catalog, files, inputs, units
from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs import limits
from flopcast.specs.hardware import AcceleratorSpec, accelerator_from_mapping
from flopcast.specs.hf import from_hf_config, load_config_file
from flopcast.specs.model import ModelSpec
from flopcast.specs.site import (
    PricingSpec,
    ReliabilitySpec,
    SiteSpec,
    pricing_from_mapping,
    reliability_from_mapping,
    resolve_site,
)
from flopcast.specs.traffic import SLO, SchedulerSpec, WorkloadSpec

if TYPE_CHECKING:
    from flopcast.estimate.calibration import Profile
    from flopcast.specs.parallel import ParallelPlan
    from flopcast.specs.serving import InferenceSpec, PoolLayout
    from flopcast.specs.workload import TrainingPhase, TrainingSpec

TOP_LEVEL_KEYS = ("name", "model", "hardware", "cluster", "site", "pricing", "training", "parallel",
                  "inference", "description", "calibration", "fleet", "reliability")
CLUSTER_KEYS = ("num_devices", "devices_per_node", "scale_out_bandwidth")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """The devices a scenario runs on. Bandwidths per device, each direction."""

    num_devices: int
    devices_per_node: int
    scale_out_bandwidth_bytes_per_s: float | None

    @property
    def num_nodes(self) -> int:
        return -(-self.num_devices // self.devices_per_node)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedScenario:
    """A scenario with its names resolved and every section parsed once into frozen specs (None, or
    the default, when the scenario has no such section). Estimators and workflows read these; a
    variant (a phase, a fleet trial) is `dataclasses.replace` of it."""

    name: str
    model: ModelSpec
    model_ref: str
    hardware: AcceleratorSpec
    cluster: ClusterSpec
    # the sections as written (pricing with its units parsed, calibration as its profiles): echoed
    # in a report's inputs, never read by an estimator
    sections: Mapping[str, Any] = field(default_factory=dict)
    assumptions: tuple[Assumption, ...] = ()
    training: TrainingSpec | None = None
    parallel: ParallelPlan | None = None
    inference: InferenceSpec | None = None
    # training.phases (in order); when present, `training` is the main phase's spec (the phase with
    # the most tokens)
    phases: tuple[TrainingPhase, ...] = ()
    # the inference section's traffic: its workload (None: none given, a simulation runs a burst of
    # the section's lengths), latency targets, scheduler and disaggregated pools (prefill, decode)
    workload: WorkloadSpec | None = None
    slo: SLO = SLO()
    scheduler: SchedulerSpec = SchedulerSpec()
    pools: tuple[PoolLayout, ...] = ()
    site: SiteSpec | None = None          # None: not given (the workflows default it, with an Assumption)
    pricing: PricingSpec | None = None    # None: not given (catalog prices, hourly)
    reliability: ReliabilitySpec | None = None   # None: catalog/reliability.yaml and the checkpoint defaults


def load_scenario(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A scenario mapping from a YAML/JSON file path or a mapping (returned as a plain dict)."""
    if isinstance(source, Mapping):
        data = dict(source)
        base = Path.cwd()
    else:
        path = Path(source)
        data = inputs.load_yaml(inputs.read_text(path, what="scenario"), what=f"scenario: {str(path)!r}")
        if not isinstance(data, dict):
            raise InvalidScenario(f"scenario: {path} must hold a mapping (model:, hardware:, ...)")
        base = path.parent
    inputs.check_finite(data)
    for key in data:
        if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-"):
            err = UnknownName("scenario key", str(key), TOP_LEVEL_KEYS)
            raise UnknownName(err.kind, err.name, TOP_LEVEL_KEYS, message=f"{err} (keys: docs/scenario.md)")
    data.setdefault("_base_dir", str(base))
    return data


def resolve_model(value: Any, *, base_dir: Path | None = None, field_name: str = "model") -> tuple[ModelSpec, str]:
    """A catalog id, a path to a config.json, or an inline config mapping -> (ModelSpec, label)."""
    if isinstance(value, Mapping):
        inputs.check_finite(value, where=field_name)      # NaN, inf and 5,000-digit integers, before any str()
        cfg = value["config"] if "config" in value and "model_type" not in value else value
        label = str(value.get("name") or value.get("id") or cfg.get("_name_or_path") or cfg.get("model_type"))
        return from_hf_config(cfg, name=label, source=str(value.get("source", "inline config"))), label
    if not isinstance(value, str) or not value:
        raise InvalidScenario(f"{field_name}: expected a catalog id, a path to a config.json or a mapping")
    if value in catalog.model_registry():
        return catalog.get_model(value), value
    path = Path(files.permitted(value, field=field_name))    # the service's allow-list (flopcast.files)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if path.suffix == ".json" or path.exists() or "/" in value:
        with files.reading(field_name, path, "model config (config.json)"):
            cfg = load_config_file(path)
            return from_hf_config(cfg, name=path.stem if path.name != "config.json" else path.parent.name,
                                  source=str(path)), str(path)
    raise UnknownName("model", value, catalog.model_ids())


def resolve_hardware(value: Any, *, field_name: str = "hardware") -> AcceleratorSpec:
    """A catalog id, or a mapping of hardware fields (`base: <id>` inherits and overrides)."""
    if isinstance(value, str):
        return catalog.get_hardware(value)
    if isinstance(value, Mapping):
        base = None
        if "base" in value:
            base = catalog.get_hardware(str(value["base"]))
        data = {k: v for k, v in value.items() if k != "base"}
        return accelerator_from_mapping(data, base=base, prefix=field_name)
    raise InvalidScenario(f"{field_name}: expected a catalog id (e.g. h100-sxm) or a mapping of fields")


def resolve(scenario: str | Path | Mapping[str, Any]) -> ResolvedScenario:
    """Resolve names into specs and fill defaults, recording each as an Assumption."""
    data = load_scenario(scenario)
    base_dir = Path(data.pop("_base_dir"))
    assumptions: list[Assumption] = []
    model, model_ref, hw = _model_and_hardware(data, base_dir, assumptions)
    cluster = _cluster(data.get("cluster") or {}, hw, assumptions)
    sections: dict[str, Any] = {k: data[k] for k in ("site", "pricing", "training", "parallel", "inference",
                                                     "reliability") if k in data}
    if "pricing" in sections:
        sections["pricing"] = limits.normalize_pricing(sections["pricing"])
    profiles = _profiles(data, base_dir)
    if "calibration" in data:
        sections["calibration"] = profiles
    training, parallel, phases = _training_sections(data, profiles["training"])
    serving = _serving_sections(data, profiles["inference"])
    for t in [training, *(p.training for p in phases)]:
        if t is not None and t.precision == "fp4":
            _check_fp4(hw)
    from flopcast.specs.applicability import check_applicable

    check_applicable(model, hw, training=training, parallel=parallel, inference=serving.get("inference"),
                     phases=phases)
    return ResolvedScenario(
        name=str(data.get("name") or f"{model_ref} on {cluster.num_devices}x {hw.id}"),
        model=model, model_ref=model_ref, hardware=hw, cluster=cluster, sections=sections,
        assumptions=tuple(assumptions), training=training, parallel=parallel, phases=phases, **serving,
        site=resolve_site(data["site"]) if "site" in data else None,
        pricing=pricing_from_mapping(data.get("pricing")),
        reliability=reliability_from_mapping(data.get("reliability")),
    )


def _model_and_hardware(data: Mapping[str, Any], base_dir: Path,
                        assumptions: list[Assumption]) -> tuple[ModelSpec, str, AcceleratorSpec]:
    """The scenario's model (within the parameter limit unless from the catalog) and hardware."""
    if "model" not in data:
        raise InvalidScenario("model: missing; give a catalog id (see `flopcast models`), "
                              "a path to a config.json, or an inline config mapping")
    if "hardware" not in data:
        raise InvalidScenario("hardware: missing; give a catalog id (see `flopcast hardware`) or a mapping")
    model, model_ref = resolve_model(data["model"], base_dir=base_dir)
    if not (isinstance(data["model"], str) and data["model"] in catalog.model_registry()):
        from flopcast.estimate.counts import params_total

        limits.check_params(params_total(model))
    hw = resolve_hardware(data["hardware"])
    if hw.efficiency_overrides:
        assumptions.append(Assumption(
            "hardware.efficiency", ", ".join(f"{k}={v}" for k, v in hw.efficiency_overrides),
            "given in the scenario: replaces catalog/efficiency.yaml for these kernels"))
    return model, model_ref, hw


def _cluster(cl: Any, hw: AcceleratorSpec, assumptions: list[Assumption]) -> ClusterSpec:
    """The `cluster` section; a key left out is the hardware's reference system's (an Assumption)."""
    if not isinstance(cl, Mapping):
        raise InvalidScenario("cluster: expected a mapping with num_devices, devices_per_node, scale_out_bandwidth")
    for key in cl:
        if key not in CLUSTER_KEYS:
            raise UnknownName("cluster field", str(key), CLUSTER_KEYS)
    if "num_devices" in cl:
        num_devices = units.parse_count(cl["num_devices"], field="cluster.num_devices")
        if num_devices < 1:
            raise InvalidScenario(f"cluster.num_devices: expected a positive integer, got {cl['num_devices']!r}")
        limits.check_count(num_devices, limits.MAX_DEVICES, field="cluster.num_devices")
    else:
        num_devices = hw.node_size
        assumptions.append(Assumption("cluster.num_devices", num_devices, f"one {hw.id} node"))
    if "devices_per_node" in cl:
        per_node = units.parse_count(cl["devices_per_node"], field="cluster.devices_per_node")
        if per_node < 1:
            raise InvalidScenario("cluster.devices_per_node: expected a positive integer")
        limits.check_count(per_node, limits.MAX_DEVICES, field="cluster.devices_per_node")
    else:
        per_node = min(hw.node_size, num_devices)
        assumptions.append(Assumption("cluster.devices_per_node", per_node,
                                      f"the node size of {hw.id} in its reference system"))
    if "scale_out_bandwidth" in cl:
        so = units.parse(cl["scale_out_bandwidth"], "bytes_per_s", field="cluster.scale_out_bandwidth")
        limits.check_plausible("cluster.scale_out_bandwidth", cl["scale_out_bandwidth"], so, "bytes_per_s")
    else:
        so = hw.scale_out_bandwidth_bytes_per_s
        if so is not None:
            assumptions.append(Assumption("cluster.scale_out_bandwidth_bytes_per_s", so,
                                          f"the per-device NIC of the {hw.id} reference system"))
    return ClusterSpec(num_devices=num_devices, devices_per_node=per_node, scale_out_bandwidth_bytes_per_s=so)


def _profiles(data: Mapping[str, Any], base_dir: Path) -> dict[str, Profile]:
    """The calibration profile per kind: the scenario's `calibration`, else the shipped ones."""
    from flopcast.estimate.calibration import resolve_profile, shipped

    if "calibration" in data:
        return {kind: resolve_profile(data["calibration"], kind, base_dir=base_dir) for kind in ("training", "inference")}
    return {kind: shipped(kind) for kind in ("training", "inference")}


def _training_sections(data: Mapping[str, Any], profile: Profile,
                       ) -> tuple[TrainingSpec | None, ParallelPlan | None, tuple[TrainingPhase, ...]]:
    """(training, parallel, phases): with training.phases, the main phase's training spec and each
    phase's own (the scenario's plan is parsed first: each phase's plan is it with its keys over it)."""
    from flopcast.specs.parallel import plan_from_mapping
    from flopcast.specs.workload import main_phase, training_from_mapping, training_phases

    section = data.get("training")
    if isinstance(section, Mapping) and "phases" in section:
        parallel = plan_from_mapping(data["parallel"]) if data.get("parallel") is not None else None
        phases = training_phases(section, data.get("parallel"), profile=profile)
        return phases[main_phase(phases)].training, parallel, phases
    training = training_from_mapping(section, profile=profile) if "training" in data else None
    parallel = plan_from_mapping(data["parallel"]) if data.get("parallel") is not None else None
    return training, parallel, ()


def _serving_sections(data: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """The inference section's specs: the InferenceSpec, its workload (None when not given), SLO,
    scheduler (disaggregated by default with prefill and decode pools) and pools."""
    from flopcast.estimate.efficiency import serving_engine
    from flopcast.specs.serving import inference_from_mapping, pools_from_mapping
    from flopcast.specs.traffic import scheduler_spec, slo_from_mapping, workload_from_mapping

    if "inference" not in data:
        return {}
    section = data["inference"]
    spec = inference_from_mapping(section, profile=profile)
    pools = pools_from_mapping(section, profile)
    workload = None
    if "workload" in section:
        workload = workload_from_mapping(section["workload"], input_tokens=spec.input_tokens,
                                         output_tokens=spec.output_tokens)
    return {"inference": spec, "workload": workload, "slo": slo_from_mapping(section.get("slo")),
            "scheduler": scheduler_spec(section.get("scheduler"), pools=bool(pools),
                                        default=serving_engine(spec.engine).scheduler), "pools": pools}


def _check_fp4(hw: AcceleratorSpec) -> None:
    """fp4 training needs fp4 tensor cores with a measured fp4 GEMM efficiency."""
    from flopcast.estimate.efficiency import fp4_matmul_frac

    if "fp4" not in hw.peak_flops_per_s or fp4_matmul_frac(hw.lookup_id) is None:
        raise InvalidScenario(f"training.precision: fp4 (NVFP4) needs fp4 tensor cores with a measured fp4 "
                              f"GEMM efficiency (catalog/efficiency.yaml fp4_matmul); {hw.id} has none: "
                              "use fp8 or bf16, or a Blackwell part (b200, gb200, b300, gb300)")


def phase_scenario(rs: ResolvedScenario, phase: TrainingPhase) -> ResolvedScenario:
    """The scenario as one phase of its training run sees it: the phase's training spec and plan
    (`parallel` None when the phase has none) and its device count; the `parallel` section is its plan."""
    import dataclasses

    cluster = rs.cluster
    if phase.num_devices is not None:
        cluster = dataclasses.replace(cluster, num_devices=phase.num_devices,
                                      devices_per_node=min(cluster.devices_per_node, phase.num_devices))
    sections = {k: v for k, v in rs.sections.items() if k != "parallel"}
    if phase.plan is not None:
        sections["parallel"] = phase.plan.to_dict()
    return dataclasses.replace(rs, training=phase.training, parallel=phase.plan, cluster=cluster,
                               sections=sections, phases=())
