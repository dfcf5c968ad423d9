"""Datacenter layer: power, energy, cost, carbon and failures, for training runs and serving.

Power (per device, averaged over a step): P = P_idle + (P_max - P_idle) u, with u the share of the
step the device computes (from the training or serving breakdown); P_idle and P_max are the
measured chip power where the vendor publishes it (TPU v4: 90 W and 192 W), else 15% of TDP and TDP. Host
(CPUs, memory, NICs, NVSwitch, fans): the reference system's maximum power minus its accelerators'
TDPs (catalog/systems.yaml: DGX A100 6.5 kW, DGX H100 10.2 kW, DGX B200 14.3 kW, GB200 NVL72 132 kW),
drawing (0.5 + 0.5 u) of it on average. Network: 60 W per device for a two-tier fat tree (about 2.5
switch ports at ~25 W and 4 optical transceivers at ~15 W per device; NVIDIA QM9700 NDR switch: 64
ports, 1.7 kW). Facility = IT x PUE: the scenario's site PUE, except that a liquid-cooled system
(catalog/systems.yaml `cooling`) on a site whose PUE is an air-cooled facility's (a catalog site, or a
mapping that states neither pue nor cooling) gets that site's cooling overhead cut in the ratio of the
reference PUEs: 1 + (PUE_site - 1)(1.2 - 1)/(1.5 - 1) (us-average 1.5 -> 1.2).

Reliability: interruptions arrive as a Poisson process with rate N lambda_gpu + nodes lambda_node +
N (lambda_network + lambda_software) (catalog/reliability.yaml, from the Llama 3 interruption table).
A run alternates tau of work with a checkpoint of delta seconds; a failure loses the work since the
last checkpoint plus a restart of R. With s = tau + delta and MTBF M, the expected time to complete
one segment is (M + R)(e^{s/M} - 1) (exponential failures, none during restart); goodput is tau over
that, and the interval tau is chosen to maximise it (Young's sqrt(2 delta M) is its first-order
approximation, reported too). A seeded Monte Carlo of the same process checks the formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flopcast import units
from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario
from flopcast.specs.hardware import AcceleratorSpec
from flopcast.specs.site import DEFAULT_PUE, PricingSpec, ReliabilitySpec, SiteSpec, prices, reliability_rates, systems

IDLE_FRAC_OF_TDP = 0.15
NETWORK_W_PER_DEVICE = 60.0
CHECKPOINT_BYTES_PER_PARAM = 14.0        # bf16 weights 2 + fp32 master, Adam m and v 12 (gradients are not saved)
CHECKPOINT_WRITE_BYTES_PER_S_PER_NODE = 2e9   # parallel file system client bandwidth per node (1-5 GB/s typical)
# ... up to what the storage system sustains: Meta's Tectonic for Llama 3 sustained 2 TB/s (peak 7 TB/s)
# (Dubey et al. 2024, sec. 3.3.1).
CHECKPOINT_STORAGE_MAX_BYTES_PER_S = 2e12
DEFAULT_RESTART_S = 600.0                # re-schedule, NCCL init, checkpoint load
DEFAULT_LIFETIME_YEARS = 4.0             # depreciation and embodied-carbon amortisation
FACILITY_CAPEX_USD_PER_W = 10.0          # datacenter build cost ~$10M per MW of IT (industry estimates)
FACILITY_LIFETIME_YEARS = 15.0
# Fallback failure rate when no reliability catalog is present: 419 unexpected interruptions in 54
# days on 16,384 H100 (Llama 3, Table 5), per device-hour.
FALLBACK_FAILURES_PER_DEVICE_HOUR = 419 / (16384 * 54 * 24)


@dataclass(frozen=True, slots=True)
class Power:
    device_w: float       # all accelerators, average
    host_w: float         # host share, average
    network_w: float
    it_w: float
    facility_w: float
    peak_it_w: float
    pue: float = 1.0      # the facility PUE applied (facility_pue)

    def to_dict(self) -> dict[str, float]:
        return {"devices_w": self.device_w, "hosts_w": self.host_w, "network_w": self.network_w,
                "it_w": self.it_w, "facility_w": self.facility_w, "peak_it_w": self.peak_it_w}


def has_power(hw: AcceleratorSpec) -> bool:
    """A TDP or a measured full-load power is published for this device."""
    return hw.tdp_w is not None or hw.power_max_w is not None


def device_power_range_w(hw: AcceleratorSpec) -> tuple[float, float, str]:
    """(idle, full-load) power of one device and where they come from: measured chip power where
    the vendor publishes it (TPU v4: 90 W min, 192 W max), else 15% of TDP idle and TDP."""
    if hw.power_max_w is not None:
        idle = hw.power_idle_w if hw.power_idle_w is not None else IDLE_FRAC_OF_TDP * hw.power_max_w
        return idle, hw.power_max_w, "measured"
    tdp = device_tdp_w(hw)
    return IDLE_FRAC_OF_TDP * tdp, tdp, "tdp"


def device_tdp_w(hw: AcceleratorSpec) -> float:
    if hw.tdp_w is None and hw.power_max_w is not None:
        return hw.power_max_w
    if hw.tdp_w is None:
        raise InvalidScenario(f"hardware.tdp: {hw.id} has no published power; give one inline "
                              f"(hardware: {{base: {hw.id}, tdp: '... W'}}) for energy, cost and carbon")
    return hw.tdp_w


def host_max_w_per_device(hw: AcceleratorSpec) -> float:
    """Non-accelerator power of the reference system at its maximum, per accelerator."""
    if hw.memory_kind == "unified":
        return 0.0   # phones, laptops, SoCs: the TDP figure is the whole package
    sys = systems()
    entry = sys["systems"].get(hw.lookup_id)
    tdp = device_tdp_w(hw)
    if entry and entry.get("system_max_power_w"):
        return max(0.0, entry["system_max_power_w"] / entry["devices"] - tdp)
    return sys["default"]["host_overhead_frac_of_accelerator_tdp"] * tdp


def system_cooling(hw: AcceleratorSpec) -> tuple[str, str]:
    """(air | liquid, the reference system) of this device, from catalog/systems.yaml."""
    sys = systems()
    entry = sys["systems"].get(hw.lookup_id) or {}
    if entry.get("cooling"):
        return str(entry["cooling"]), str(entry.get("system", hw.lookup_id))
    return str(sys["default"].get("cooling", "air")), "a typical server"


def cooling_pue(cooling: str) -> float:
    """Reference facility PUE of a cooling type (catalog/systems.yaml cooling_pue, sourced there)."""
    entry = (systems().get("cooling_pue") or {}).get(cooling) or {}
    return float(entry.get("pue", DEFAULT_PUE[cooling]))


def facility_pue(hw: AcceleratorSpec, site: SiteSpec) -> tuple[float, str]:
    """The PUE of `hw`'s systems at `site`, and why. The site's PUE, unless the system is liquid-cooled
    and the site's figure is an air-cooled facility's that the scenario did not state: then the
    site's cooling overhead shrinks in the ratio of the liquid and air reference PUEs."""
    cooling, system = system_cooling(hw)
    if site.pue_given or hw.memory_kind == "unified" or not (cooling == "liquid" and site.cooling == "air"):
        return site.pue, f"site {site.id} ({site.cooling}-cooled)"
    air, liquid = cooling_pue("air"), cooling_pue("liquid")
    pue = 1.0 + (site.pue - 1.0) * (liquid - 1.0) / (air - 1.0)
    return pue, (f"{system} is liquid-cooled: the {site.id} air-cooled PUE {site.pue:g} with its cooling overhead "
                 f"x {(liquid - 1) / (air - 1):.2f} (reference PUEs: air {air:g}, liquid {liquid:g}, catalog/systems.yaml)")


def power(hw: AcceleratorSpec, num_devices: int, busy_frac: float, site: SiteSpec) -> Power:
    """Average and peak power of `num_devices` accelerators busy `busy_frac` of the time."""
    if num_devices < 1:
        raise InvalidScenario(f"num_devices: expected a positive count, got {num_devices}")
    u = min(1.0, max(0.0, busy_frac))
    idle, full, _ = device_power_range_w(hw)
    dev = num_devices * (idle + (full - idle) * u)
    host_max = num_devices * host_max_w_per_device(hw)
    host = host_max * (0.5 + 0.5 * u)
    net = num_devices * NETWORK_W_PER_DEVICE if hw.memory_kind != "unified" and num_devices > 1 else 0.0
    it = dev + host + net
    pue, _ = facility_pue(hw, site)
    return Power(dev, host, net, it, it * pue, num_devices * full + host_max + net, pue)


def power_assumptions(hw: AcceleratorSpec, site: SiteSpec) -> list[Assumption]:
    idle, full, kind = device_power_range_w(hw)
    what = (f"measured {idle:.0f} W idle to {full:.0f} W under load" if kind == "measured"
            else f"{IDLE_FRAC_OF_TDP:.0%} of TDP idle, TDP when computing")
    pue, why = facility_pue(hw, site)
    liquid = [Assumption("pue", round(pue, 4), why)] if pue != site.pue else []
    return [
        Assumption("device_power", what, "average over the step by the compute share of the step time"),
        Assumption("host_power_w_per_device", round(host_max_w_per_device(hw), 1),
                   "reference system max power minus accelerator TDPs (catalog/systems.yaml), (0.5 + 0.5 u) of it"),
        Assumption("network_w_per_device", NETWORK_W_PER_DEVICE,
                   "two-tier fat tree: ~2.5 switch ports and ~4 optical transceivers per device"),
        Assumption("site", site.id, f"PUE {site.pue}, {site.grid_intensity_gco2e_per_kwh:.0f} gCO2e/kWh, "
                                    f"${site.electricity_price_usd_per_kwh:.3f}/kWh"),
    ] + liquid


# ------------------------------------------------------------------------------------------ cost
def device_hour_price(hw: AcceleratorSpec, pricing: PricingSpec | None) -> tuple[float | None, str]:
    """$ per device-hour for the hourly mode, and where it came from."""
    if pricing is not None and pricing.price_per_device_hour_usd is not None:
        p = float(pricing.price_per_device_hour_usd)
        if p < 0:
            raise InvalidScenario("pricing.price_per_device_hour: expected a non-negative $/hour")
        return p, "given"
    entry = prices().get("devices", {}).get(hw.lookup_id)
    if not entry:
        return None, f"no price for {hw.id} in the catalog"
    committed = entry.get("committed_usd_per_hour")
    if committed:
        lo, hi = committed if isinstance(committed, (list, tuple)) else (committed, committed)
        return (lo + hi) / 2, f"midpoint of the committed range {lo}-{hi} $/h ({prices().get('as_of', 'undated')})"
    if entry.get("on_demand_usd_per_hour"):
        return float(entry["on_demand_usd_per_hour"]), f"on-demand ({prices().get('as_of', 'undated')})"
    return None, f"no price for {hw.id} in the catalog"


def cost_usd(hw: AcceleratorSpec, num_devices: int, seconds: float, facility_energy_j: float, site: SiteSpec,
             pricing: PricingSpec | None) -> tuple[float | None, str]:
    """Cost of holding `num_devices` for `seconds`: hourly rental (power included in the price), or
    TCO (device and node capex over their lifetime, facility capex, electricity)."""
    pricing = pricing or PricingSpec()
    mode = pricing.mode
    hours = seconds / units.HOUR_S
    if mode == "hourly":
        p, why = device_hour_price(hw, pricing)
        return (None, why) if p is None else (p * num_devices * hours, f"hourly: ${p:.2f}/device-hour, {why}")
    if mode != "tco":
        raise InvalidScenario(f"pricing.mode: {mode!r}; accepted: hourly, tco")
    entry = prices().get("devices", {}).get(hw.lookup_id, {})
    capex = float((entry.get("capex_usd", 0.0) if pricing.capex_usd is None else pricing.capex_usd) or 0.0)
    if capex <= 0:
        raise InvalidScenario(f"pricing.capex_usd: no device price for {hw.id}; give capex_usd")
    node = prices().get("nodes", {}).get(entry.get("node", "hgx-8gpu"), {})
    node_capex = float((node.get("capex_usd", 0.0) if pricing.node_capex_usd is None else pricing.node_capex_usd)
                       or 0.0) / max(1, hw.node_size)
    years = float(DEFAULT_LIFETIME_YEARS if pricing.depreciation_years is None else pricing.depreciation_years)
    if years <= 0:
        raise InvalidScenario("pricing.depreciation_years: expected a positive number of years")
    life_s = years * units.YEAR_S
    peak_it = (device_tdp_w(hw) + host_max_w_per_device(hw) + NETWORK_W_PER_DEVICE) * num_devices
    facility = peak_it * FACILITY_CAPEX_USD_PER_W * seconds / (FACILITY_LIFETIME_YEARS * units.YEAR_S)
    hardware = (capex + node_capex) * num_devices * seconds / life_s
    energy = facility_energy_j * site.electricity_price_usd_per_j
    return hardware + facility + energy, (f"TCO: ${capex:,.0f}/device + ${node_capex:,.0f} node share over {years:g} y, "
                                          f"facility ${FACILITY_CAPEX_USD_PER_W}/W over {FACILITY_LIFETIME_YEARS:g} y, "
                                          f"electricity at the site price")


def embodied_kgco2e(hw: AcceleratorSpec, num_devices: int, seconds: float) -> tuple[float | None, str]:
    entry = prices().get("devices", {}).get(hw.lookup_id, {})
    dev = entry.get("embodied_kgco2e")
    if dev is None:
        return None, f"no embodied-carbon estimate for {hw.id}"
    node_entry = prices().get("nodes", {}).get(entry.get("node", "hgx-8gpu"), {})   # node `none`: no host
    node = (node_entry.get("embodied_kgco2e") or 0.0) / max(1, node_entry.get("devices_per_node") or hw.node_size)
    life = DEFAULT_LIFETIME_YEARS * units.YEAR_S
    return (dev + node) * num_devices * seconds / life, f"amortised over {DEFAULT_LIFETIME_YEARS:g} years"


# ----------------------------------------------------------------------------------- reliability
def failure_rate_per_s(num_devices: int, devices_per_node: int) -> tuple[float, str]:
    """Interruptions per second of wall time for a job on `num_devices`."""
    rel = reliability_rates()
    rates = rel.get("rates") if rel else None
    if not rates:
        return num_devices * FALLBACK_FAILURES_PER_DEVICE_HOUR / units.HOUR_S, "Llama 3: 419 / (16384 GPUs x 54 days)"
    nodes = math.ceil(num_devices / devices_per_node)
    total = 0.0
    for r in rates.values():
        per = r.get("per", "device")
        count = nodes if per == "node" else num_devices
        total += count * float(r["failures_per_hour"])
    return total / units.HOUR_S, rel.get("basis", "catalog/reliability.yaml")


def segment_time_s(tau: float, delta: float, mtbf: float, restart: float) -> float:
    """Expected wall time to complete tau of work plus a delta checkpoint under Poisson failures of
    mean `mtbf`, each costing the lost work plus `restart`: (M + R)(exp((tau + delta)/M) - 1)."""
    return (mtbf + restart) * math.expm1((tau + delta) / mtbf)


def optimal_interval_s(delta: float, mtbf: float, restart: float) -> float:
    """The checkpoint interval maximising goodput tau / segment_time (golden-section search)."""
    f = lambda tau: segment_time_s(tau, delta, mtbf, restart) / tau  # noqa: E731
    lo, hi = 1e-3 * mtbf, 10 * mtbf
    g = (math.sqrt(5) - 1) / 2
    a, b = math.log(lo), math.log(hi)
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(100):
        if f(math.exp(c)) < f(math.exp(d)):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return math.exp((a + b) / 2)


def goodput_frac(tau: float, delta: float, mtbf: float, restart: float) -> float:
    return tau / segment_time_s(tau, delta, mtbf, restart)


def monte_carlo_wall_s(work_s: float, tau: float, delta: float, mtbf: float, restart: float, seed: int) -> float:
    """Simulate the run: segments of min(tau, remaining) work plus a checkpoint; failures with
    exponential gaps (seeded numpy Generator), each losing the segment in progress plus a restart."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wall = 0.0
    remaining = work_s
    next_failure = rng.exponential(mtbf)
    while remaining > 1e-9:
        seg = min(tau, remaining) + delta
        if next_failure >= seg:
            wall += seg
            next_failure -= seg
            remaining -= min(tau, remaining)
        else:
            wall += next_failure + restart
            next_failure = rng.exponential(mtbf)
    return wall


@dataclass(frozen=True, slots=True)
class Reliability:
    mtbf_s: float
    checkpoint_bytes: float
    checkpoint_write_s: float
    restart_s: float
    interval_s: float
    young_interval_s: float
    goodput_frac: float
    source: str
    given: tuple[str, ...] = ()       # the scenario's `reliability` keys that replaced a default


def _given_keys(given: ReliabilitySpec | None) -> tuple[str, ...]:
    if given is None:
        return ()
    names = {"failures_per_device_hour": "failures_per_device_hour", "checkpoint_bytes": "checkpoint_bytes",
             "checkpoint_bytes_per_param": "checkpoint_bytes_per_param",
             "checkpoint_bandwidth_bytes_per_s": "checkpoint_bandwidth", "restart_s": "restart_time"}
    return tuple(key for attr, key in names.items() if getattr(given, attr) is not None)


def reliability(params_total: int, num_devices: int, devices_per_node: int,
                checkpoint_bandwidth_bytes_per_s: float | None = None, restart_s: float | None = None,
                given: ReliabilitySpec | None = None) -> Reliability:
    """Failure rate, checkpoint cost and the goodput-optimal interval of a job; `given` (the
    scenario's `reliability` section) replaces any of the catalog's rates and checkpoint defaults."""
    g = given or ReliabilitySpec()
    if g.failures_per_device_hour is not None:
        rate = num_devices * g.failures_per_device_hour / units.HOUR_S
        source = f"reliability.failures_per_device_hour {g.failures_per_device_hour:g} (given) x {num_devices} devices"
    else:
        rate, source = failure_rate_per_s(num_devices, devices_per_node)
    mtbf = 1 / rate
    size = g.checkpoint_bytes or params_total * (g.checkpoint_bytes_per_param or CHECKPOINT_BYTES_PER_PARAM)
    nodes = math.ceil(num_devices / devices_per_node)
    bw = (g.checkpoint_bandwidth_bytes_per_s or checkpoint_bandwidth_bytes_per_s
          or min(nodes * CHECKPOINT_WRITE_BYTES_PER_S_PER_NODE, CHECKPOINT_STORAGE_MAX_BYTES_PER_S))
    delta = size / bw
    rel = reliability_rates()
    catalog_restart = float(rel.get("restart_time_s", DEFAULT_RESTART_S)) if rel else DEFAULT_RESTART_S
    r = g.restart_s if g.restart_s is not None else restart_s if restart_s is not None else catalog_restart
    tau = optimal_interval_s(delta, mtbf, r)
    return Reliability(mtbf, size, delta, r, tau, math.sqrt(2 * delta * mtbf), goodput_frac(tau, delta, mtbf, r),
                       source, _given_keys(given))


def reliability_assumptions(rel: Reliability) -> list[Assumption]:
    checkpoint_why = (f"{CHECKPOINT_BYTES_PER_PARAM:g} B/param (bf16 weights + fp32 master, m, v) at "
                      f"{CHECKPOINT_WRITE_BYTES_PER_S_PER_NODE / 1e9:g} GB/s per node, at most "
                      f"{CHECKPOINT_STORAGE_MAX_BYTES_PER_S / 1e12:g} TB/s (Llama 3's storage, sustained)")
    ckpt_keys = [k for k in rel.given if k.startswith("checkpoint")]
    if ckpt_keys:
        checkpoint_why = f"given: reliability.{', reliability.'.join(ckpt_keys)}; the rest: {checkpoint_why}"
    restart_why = ("given: reliability.restart_time" if "restart_time" in rel.given
                   else "re-schedule, NCCL init, checkpoint load")
    return [
        Assumption("failure_model", f"MTBF {rel.mtbf_s / 3600:.2f} h for this job", rel.source),
        Assumption("checkpoint", f"{units.format_bytes(rel.checkpoint_bytes)} in {rel.checkpoint_write_s:.0f} s",
                   checkpoint_why),
        Assumption("restart_s", rel.restart_s, restart_why),
        Assumption("checkpoint_interval", f"{rel.interval_s:.0f} s (Young: {rel.young_interval_s:.0f} s)",
                   "maximises goodput under the exact exponential-failure model"),
    ]
