"""AcceleratorSpec: one accelerator package as its datasheet states it.

Peak rates are dense (never 2:4-sparse), per package, keyed by operand dtype. Link bandwidths are per
device and per direction. Host memory is per node (the reference system's DRAM).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flopcast import units
from flopcast.dtypes import COMPUTE_DTYPES
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.specs import limits

STATUSES = ("shipping", "announced")
MEMORY_KINDS = ("hbm", "unified", "gddr", "lpddr", "sram")   # sram: on-die SRAM only (Dojo D1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceleratorSpec:
    """One accelerator package. Optional figures are None where no credible source publishes them."""

    id: str
    name: str
    vendor: str
    status: str
    memory_kind: str
    hbm_capacity_bytes: float
    hbm_bandwidth_bytes_per_s: float
    peak_flops_per_s: Mapping[str, float]          # dense, by dtype
    scale_up_bandwidth_bytes_per_s: float | None   # per device, each direction
    scale_up_domain: int
    scale_out_bandwidth_bytes_per_s: float | None  # per device, each direction
    node_size: int
    tdp_w: float | None
    host_memory_bytes_per_node: float | None
    host_link_bandwidth_bytes_per_s: float | None  # device <-> host, each direction
    compute_units: int | None = None               # SMs / CUs / cores that run matmul tiles
    power_idle_w: float | None = None              # measured chip power, idle (where published)
    power_max_w: float | None = None               # measured chip power under full load (where published)
    catalog_id: str | None = None                  # the catalog entry this spec derives from (for lookups)
    # user calibration of catalog/efficiency.yaml (the `efficiency` field of an inline hardware
    # mapping): ((key, value), ...) with keys matmul.<dtype>, attention.<kernel>, memory, scale_up, scale_out
    efficiency_overrides: tuple[tuple[str, Any], ...] = ()
    # local NVMe of the reference node (ZeRO-Infinity offload): capacity and aggregate read bandwidth
    nvme_capacity_bytes_per_node: float | None = None
    nvme_bandwidth_bytes_per_s_per_node: float | None = None
    # unified-memory devices (phones, laptops): the memory one app may hold (the OS keeps the rest);
    # serving's capacity check is against it. None: the whole hbm_capacity.
    app_memory_bytes: float | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""

    @property
    def lookup_id(self) -> str:
        """The catalog id used for efficiency, system-power and price lookups."""
        return self.catalog_id or self.id

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for `dtype`; raises naming the dtypes this device supports."""
        if dtype not in self.peak_flops_per_s:
            raise UnknownName(
                f"dtype for {self.id}", dtype, self.peak_flops_per_s,
                message=f"{self.id} has no published dense {dtype} peak; it supports "
                f"{', '.join(self.peak_flops_per_s) or 'none'}",
            )
        return self.peak_flops_per_s[dtype]


# field in files -> (attribute, dimension or kind, required)
_FIELDS: dict[str, tuple[str, str, bool]] = {
    "hbm_capacity": ("hbm_capacity_bytes", "bytes", True),
    "hbm_bandwidth": ("hbm_bandwidth_bytes_per_s", "bytes_per_s", True),
    "scale_up_bandwidth": ("scale_up_bandwidth_bytes_per_s", "bytes_per_s", False),
    "scale_up_domain": ("scale_up_domain", "int", False),
    "scale_out_bandwidth": ("scale_out_bandwidth_bytes_per_s", "bytes_per_s", False),
    "node_size": ("node_size", "int", False),
    "tdp": ("tdp_w", "w", False),
    "host_memory": ("host_memory_bytes_per_node", "bytes", False),
    "host_link_bandwidth": ("host_link_bandwidth_bytes_per_s", "bytes_per_s", False),
    "compute_units": ("compute_units", "int", False),
    "power_idle": ("power_idle_w", "w", False),
    "power_max": ("power_max_w", "w", False),
    "nvme_capacity": ("nvme_capacity_bytes_per_node", "bytes", False),
    "nvme_bandwidth": ("nvme_bandwidth_bytes_per_s_per_node", "bytes_per_s", False),
    "app_memory": ("app_memory_bytes", "bytes", False),
}
_TEXT = ("id", "name", "vendor", "status", "memory_kind", "notes")
NUMERIC_FIELDS = (*_FIELDS, "peak_flops")
ACCEPTED_KEYS = (*_TEXT, *NUMERIC_FIELDS, "sources", "base", "efficiency")
EFFICIENCY_KEYS = ("matmul", "attention", "memory", "scale_up", "scale_out")
ATTENTION_KERNELS = ("flash2", "flash3")


def _parse_field(key: str, value: Any, kind: str, prefix: str) -> Any:
    name = f"{prefix}.{key}"
    if kind == "int":
        n = units.parse_count(value, field=name)
        if n < 1:
            raise InvalidScenario(f"{name}: expected a positive integer, got {value!r}")
        limits.check_count(n, limits.MAX_DEVICES, field=name)
        return n
    return limits.check_plausible(name, value, units.parse(value, kind, field=name), kind)


def _parse_peaks(value: Any, prefix: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidScenario(f"{prefix}.peak_flops: expected a mapping of dtype to FLOP/s, "
                              f"e.g. {{bf16: '989 TFLOP/s'}}")
    peaks: dict[str, float] = {}
    for dtype, rate in value.items():
        if dtype not in COMPUTE_DTYPES:
            raise UnknownName(f"{prefix}.peak_flops dtype", str(dtype), COMPUTE_DTYPES)
        name = f"{prefix}.peak_flops.{dtype}"
        peaks[dtype] = limits.check_plausible(name, rate, units.parse(rate, "flops_per_s", field=name), "flops_per_s")
    return peaks


def _fraction(value: Any, name: str) -> float:
    # below 1% of the datasheet is not a kernel measurement but a unit slip (and 1e-300 makes times infinite)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 1:
        raise InvalidScenario(f"{name}: expected a fraction of the datasheet figure in [0.01, 1], got {value!r}")
    return float(value)


def _parse_efficiency(value: Any, prefix: str) -> tuple[tuple[str, Any], ...]:
    """Measured efficiencies that replace the catalog's for this device: matmul fraction of the dense
    peak per dtype (at large, well-shaped GEMMs), [forward, backward] fused-attention fractions per
    kernel generation, and streaming-memory / scale-up / scale-out bandwidth fractions."""
    name = f"{prefix}.efficiency"
    if not isinstance(value, Mapping):
        raise InvalidScenario(f"{name}: expected a mapping such as {{matmul: {{bf16: 0.7}}, attention: "
                              f"{{flash3: [0.55, 0.4]}}, memory: 0.85}}")
    out: list[tuple[str, Any]] = []
    for key, v in value.items():
        if key not in EFFICIENCY_KEYS:
            raise UnknownName(f"{name} field", str(key), EFFICIENCY_KEYS)
        if key == "matmul":
            if not isinstance(v, Mapping):
                raise InvalidScenario(f"{name}.matmul: expected a mapping of dtype to fraction, e.g. {{bf16: 0.7}}")
            for dtype, frac in v.items():
                if dtype not in COMPUTE_DTYPES:
                    raise UnknownName(f"{name}.matmul dtype", str(dtype), COMPUTE_DTYPES)
                out.append((f"matmul.{dtype}", _fraction(frac, f"{name}.matmul.{dtype}")))
        elif key == "attention":
            if not isinstance(v, Mapping):
                raise InvalidScenario(f"{name}.attention: expected {{flash3: [forward, backward]}} fractions")
            for kernel, pair in v.items():
                if kernel not in ATTENTION_KERNELS:
                    raise UnknownName(f"{name}.attention kernel", str(kernel), ATTENTION_KERNELS)
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise InvalidScenario(f"{name}.attention.{kernel}: expected [forward, backward] fractions")
                out.append((f"attention.{kernel}", (_fraction(pair[0], f"{name}.attention.{kernel}[0]"),
                                                    _fraction(pair[1], f"{name}.attention.{kernel}[1]"))))
        else:
            out.append((key, _fraction(v, f"{name}.{key}")))
    return tuple(out)


def accelerator_from_mapping(data: Mapping[str, Any], *, base: AcceleratorSpec | None = None,
                             prefix: str = "hardware") -> AcceleratorSpec:
    """Build an AcceleratorSpec from catalog/scenario fields; with `base`, `data` overrides it."""
    if not isinstance(data, Mapping):
        raise InvalidScenario(f"{prefix}: expected a catalog id or a mapping of hardware fields")
    for key in data:
        if key not in ACCEPTED_KEYS:
            raise UnknownName(f"{prefix} field", str(key), ACCEPTED_KEYS)
    values = _given_values(data, base, prefix)
    if "status" in values and values["status"] not in STATUSES:
        raise InvalidScenario(f"{prefix}.status: {values['status']!r}; accepted: {', '.join(STATUSES)}")
    if "memory_kind" in values and values["memory_kind"] not in MEMORY_KINDS:
        raise InvalidScenario(
            f"{prefix}.memory_kind: {values['memory_kind']!r}; accepted: {', '.join(MEMORY_KINDS)}"
        )
    if base is not None:
        if "id" not in values:
            values["id"] = f"{base.id}-custom" if set(values) - {"name"} else base.id
        values.setdefault("catalog_id", base.lookup_id)
        return replace(base, **values)
    return _new_accelerator(data, values, prefix)


def _given_values(data: Mapping[str, Any], base: AcceleratorSpec | None, prefix: str) -> dict[str, Any]:
    """The AcceleratorSpec fields `data` gives, parsed (peaks, sources and efficiency merged over
    `base`'s when there is one)."""
    values: dict[str, Any] = {}
    for key, (attr, kind, _required) in _FIELDS.items():
        if key in data and data[key] is not None:
            values[attr] = _parse_field(key, data[key], kind, prefix)
    if "peak_flops" in data:
        peaks = _parse_peaks(data["peak_flops"], prefix)
        values["peak_flops_per_s"] = {**(base.peak_flops_per_s if base else {}), **peaks}
    for key in _TEXT:
        if key in data and data[key] is not None:
            values[key] = str(data[key]).strip()
    if "sources" in data:
        values["sources"] = {**(base.sources if base else {}), **dict(data["sources"])}
    if data.get("efficiency") is not None:
        given = _parse_efficiency(data["efficiency"], prefix)
        keys = {k for k, _ in given}
        values["efficiency_overrides"] = tuple(
            (k, v) for k, v in (base.efficiency_overrides if base else ()) if k not in keys) + given
    return values


def _new_accelerator(data: Mapping[str, Any], values: dict[str, Any], prefix: str) -> AcceleratorSpec:
    """An accelerator from its fields alone: the required ones present, the rest defaulted."""
    for key, (attr, _kind, required) in _FIELDS.items():
        if required and attr not in values:
            raise InvalidScenario(f"{prefix}.{key}: missing (required for an accelerator)")
    if not values.get("peak_flops_per_s"):
        raise InvalidScenario(f"{prefix}.peak_flops: missing; give dense peaks, e.g. {{bf16: '989 TFLOP/s'}}")
    values.setdefault("id", str(data.get("name", "custom")))
    values.setdefault("name", values["id"])
    values.setdefault("vendor", "unknown")
    values.setdefault("status", "shipping")
    values.setdefault("memory_kind", "hbm")
    values.setdefault("scale_up_domain", 1)
    values.setdefault("node_size", 1)
    for attr in ("scale_up_bandwidth_bytes_per_s", "scale_out_bandwidth_bytes_per_s", "tdp_w",
                 "host_memory_bytes_per_node", "host_link_bandwidth_bytes_per_s"):
        values.setdefault(attr, None)
    return AcceleratorSpec(**values)


def missing_sources(data: Mapping[str, Any]) -> list[str]:
    """Numeric fields of a catalog file without a `sources` entry (the catalog test's rule)."""
    sources = data.get("sources") or {}
    missing = [k for k in _FIELDS if data.get(k) is not None and not sources.get(k)]
    for dtype in (data.get("peak_flops") or {}):
        if not (sources.get(f"peak_flops.{dtype}") or sources.get("peak_flops")):
            missing.append(f"peak_flops.{dtype}")
    return missing
