"""Catalog views (`flopcast hardware`, `flopcast sites`): accelerators and sites in SI base units,
with their sources."""

from __future__ import annotations

from typing import Any

from flopcast import catalog
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.site import site_registry


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
    reg = site_registry()
    out = []
    for i in reg.names():
        s = reg.get(i)
        out.append({"id": i, "name": s.name, "grid_intensity_gco2e_per_kwh": s.grid_intensity_gco2e_per_kwh,
                    "electricity_price_usd_per_kwh": s.electricity_price_usd_per_kwh, "pue": s.pue,
                    "cooling": s.cooling, "year": s.year, "sources": dict(s.sources)})
    return out


def list_hardware() -> list[dict[str, Any]]:
    """`flopcast hardware`: every catalog accelerator (hardware_dict of each)."""
    return [hardware_dict(catalog.get_hardware(i)) for i in catalog.hardware_ids()]


def show_hardware(hw_id: str) -> dict[str, Any]:
    """`flopcast hardware ID`: one accelerator (hardware_dict)."""
    return hardware_dict(catalog.get_hardware(hw_id))

