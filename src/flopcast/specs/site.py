"""Sites (grid carbon, electricity price, PUE) and pricing, from catalogs or scenario mappings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from flopcast import units
from flopcast.catalog import CATALOG_DIR, _read_yaml
from flopcast.errors import InvalidScenario, UnknownName
from flopcast.registry import Registry
from flopcast.specs import limits

SITES_DIR = CATALOG_DIR / "sites"
COOLING = ("air", "liquid", "immersion")
# Facility PUE by cooling when a site gives none: Uptime Institute Global Data Center Survey 2023
# (industry average 1.58, mostly air-cooled); direct-to-chip liquid cooling ~1.2 and single-phase
# immersion ~1.05-1.1 (vendor and hyperscaler disclosures, e.g. Google fleet 1.10 with its own designs).
DEFAULT_PUE = {"air": 1.5, "liquid": 1.2, "immersion": 1.08}
SITE_KEYS = ("id", "name", "grid_intensity_gco2e_per_kwh", "electricity_price_usd_per_kwh", "pue", "cooling", "year",
             "sources", "notes", "grid_intensity", "electricity_price")


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSpec:
    id: str
    name: str
    grid_intensity_kgco2e_per_j: float
    electricity_price_usd_per_j: float
    pue: float
    cooling: str
    year: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    # True when a scenario states this site's `pue` or `cooling`: used as given. False for catalog
    # sites and for mappings without either (their PUE is an air-cooled facility's, which a
    # liquid-cooled system lowers: estimate/datacenter.py facility_pue)
    pue_given: bool = False

    @property
    def grid_intensity_gco2e_per_kwh(self) -> float:
        return self.grid_intensity_kgco2e_per_j * 1e3 * units.KWH_J

    @property
    def electricity_price_usd_per_kwh(self) -> float:
        return self.electricity_price_usd_per_j * units.KWH_J


def _num(data: Mapping[str, Any], keys: tuple[str, ...], field_name: str, default: float | None = None) -> float:
    for k in keys:
        if k in data and data[k] is not None:
            from flopcast import inputs

            return inputs.finite_number(data[k], field=field_name, minimum=0, accepted="a non-negative number")
    if default is None:
        raise InvalidScenario(f"{field_name}: missing")
    return default


def _with_unit(data: Mapping[str, Any], keys: tuple[str, ...], prefix: str, parse, default: float | None) -> float:
    """The first of `keys` present, parsed with its unit by `parse` (limits.py); else the default."""
    for k in keys:
        if k in data and data[k] is not None:
            return parse(data[k], field=f"{prefix}.{k}")
    if default is None:
        raise InvalidScenario(f"{prefix}.{keys[-1]}: missing")
    return default


def site_from_mapping(data: Mapping[str, Any], prefix: str = "site", base: SiteSpec | None = None) -> SiteSpec:
    if not isinstance(data, Mapping):
        raise InvalidScenario(f"{prefix}: expected a site id (see `flopcast sites`) or a mapping of pue, grid_intensity, "
                              "electricity_price, cooling")
    for key in data:
        if key not in SITE_KEYS and key != "base":
            raise UnknownName(f"{prefix} field", str(key), SITE_KEYS)
    cooling = str(data.get("cooling", base.cooling if base else "air"))
    if cooling not in COOLING:
        raise UnknownName(f"{prefix}.cooling", cooling, COOLING)
    pue = _num(data, ("pue",), f"{prefix}.pue", base.pue if base else DEFAULT_PUE[cooling])
    if pue < 1.0:
        raise InvalidScenario(f"{prefix}.pue: {pue} is below 1; PUE is facility power / IT power (>= 1.0)")
    gi = _with_unit(data, ("grid_intensity_gco2e_per_kwh", "grid_intensity"), prefix,
                    limits.grid_intensity_gco2e_per_kwh, base.grid_intensity_gco2e_per_kwh if base else None)
    price = _with_unit(data, ("electricity_price_usd_per_kwh", "electricity_price"), prefix,
                       limits.electricity_price_usd_per_kwh, base.electricity_price_usd_per_kwh if base else None)
    if pue > 5:
        raise InvalidScenario(f"{prefix}.pue: {pue} is above 5; PUE is facility power / IT power (1.0..5)")
    return SiteSpec(
        id=str(data.get("id", base.id if base else "custom")), name=str(data.get("name", base.name if base else "custom")),
        grid_intensity_kgco2e_per_j=gi / 1e3 / units.KWH_J, electricity_price_usd_per_j=price / units.KWH_J,
        pue=pue, cooling=cooling, year=data.get("year", base.year if base else None),
        sources=dict(data.get("sources", base.sources if base else {})),
        pue_given=not prefix.startswith("catalog") and any(data.get(k) is not None for k in ("pue", "cooling")),
    )


@cache
def site_registry() -> Registry[SiteSpec]:
    reg: Registry[SiteSpec] = Registry("site")
    for path in sorted(SITES_DIR.glob("*.yaml")):
        reg.register(path.stem, loader=lambda p=path: site_from_mapping(_read_yaml(p), prefix=f"catalog site {p.stem}"))
    return reg


def resolve_site(value: Any) -> SiteSpec:
    if isinstance(value, str):
        return site_registry().get(value)
    if isinstance(value, Mapping) and "base" in value:
        return site_from_mapping(value, base=site_registry().get(str(value["base"])))
    return site_from_mapping(value)


@cache
def prices() -> dict[str, Any]:
    path = CATALOG_DIR / "prices.yaml"
    return _read_yaml(path) if path.exists() else {"devices": {}, "nodes": {}}


@cache
def systems() -> dict[str, Any]:
    return _read_yaml(CATALOG_DIR / "systems.yaml")


@cache
def reliability_rates() -> dict[str, Any]:
    path = CATALOG_DIR / "reliability.yaml"
    return _read_yaml(path) if path.exists() else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class PricingSpec:
    """The scenario's `pricing` section, parsed: how devices are paid for. `mode` hourly rents them
    at `price_per_device_hour_usd` (None: the catalog's price, power included); tco buys them
    (`capex_usd` per device, `node_capex_usd` per node; None: the catalog's) and writes them off over
    `depreciation_years` (None: the default lifetime), paying facility and electricity."""

    mode: str = "hourly"
    price_per_device_hour_usd: float | None = None
    capex_usd: float | None = None
    node_capex_usd: float | None = None
    depreciation_years: float | None = None


def pricing_from_mapping(data: Any) -> PricingSpec | None:
    """The `pricing` section (units parsed, bounds and keys checked by limits.normalize_pricing);
    None when there is none."""
    if data is None:
        return None
    given = limits.normalize_pricing(data)
    return PricingSpec(mode=given.get("mode", "hourly"),
                       price_per_device_hour_usd=given.get("price_per_device_hour"),
                       capex_usd=given.get("capex_usd"), node_capex_usd=given.get("node_capex_usd"),
                       depreciation_years=given.get("depreciation_years"))


RELIABILITY_KEYS = ("failures_per_device_hour", "checkpoint_bytes", "checkpoint_bytes_per_param",
                    "checkpoint_bandwidth", "restart_time")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReliabilitySpec:
    """The scenario's `reliability` section: what replaces the catalog's failure and checkpoint
    constants (catalog/reliability.yaml, estimate/datacenter.py). None keeps the default.
    failures_per_device_hour: unexpected interruptions per device-hour, all causes (Llama 3: 1.97e-5);
    checkpoint_bytes (or checkpoint_bytes_per_param, default 14): the size of one checkpoint;
    checkpoint_bandwidth: the aggregate write bandwidth to storage; restart_time: detection,
    rescheduling and reload after a failure (default 600 s)."""

    failures_per_device_hour: float | None = None
    checkpoint_bytes: float | None = None
    checkpoint_bytes_per_param: float | None = None
    checkpoint_bandwidth_bytes_per_s: float | None = None
    restart_s: float | None = None


def _positive(data: Mapping[str, Any], key: str, dimension: str, maximum: float) -> float | None:
    if data.get(key) is None:
        return None
    name = f"reliability.{key}"
    if dimension == "number":
        from flopcast import inputs

        return inputs.finite_number(data[key], field=name, minimum=0, exclusive_minimum=True, maximum=maximum,
                                    accepted=f"a positive number up to {maximum:g}")
    value = units.parse(data[key], dimension, field=name)
    if not 0 < value <= maximum:
        what = {"bytes": "size such as '10 TB'", "bytes_per_s": "bandwidth such as '500 GB/s'"}[dimension]
        raise InvalidScenario(f"{name}: {data[key]!r} is outside (0, {maximum:g}] in base units; give a positive {what}")
    return value


def reliability_from_mapping(data: Any) -> ReliabilitySpec | None:
    """The `reliability` section parsed (keys, units and bounds checked); None when there is none."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidScenario("reliability: expected a mapping of " + ", ".join(RELIABILITY_KEYS))
    for key in data:
        if key not in RELIABILITY_KEYS:
            raise UnknownName("reliability field", str(key), RELIABILITY_KEYS)
    if data.get("checkpoint_bytes") is not None and data.get("checkpoint_bytes_per_param") is not None:
        raise InvalidScenario("reliability: give checkpoint_bytes or checkpoint_bytes_per_param, not both")
    restart = data.get("restart_time")
    restart_s = None
    if restart is not None:
        restart_s = units.parse(restart, "s", field="reliability.restart_time")
        if not 0 <= restart_s <= 7 * units.DAY_S:
            raise InvalidScenario(f"reliability.restart_time: {restart!r} is outside 0..7 days")
    return ReliabilitySpec(
        failures_per_device_hour=_positive(data, "failures_per_device_hour", "number", 1.0),
        checkpoint_bytes=_positive(data, "checkpoint_bytes", "bytes", 1e18),
        checkpoint_bytes_per_param=_positive(data, "checkpoint_bytes_per_param", "number", 100.0),
        checkpoint_bandwidth_bytes_per_s=_positive(data, "checkpoint_bandwidth", "bytes_per_s", 1e15),
        restart_s=restart_s)
