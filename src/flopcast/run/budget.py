"""`flopcast budget`: what a power, energy or dollar budget buys."""

from __future__ import annotations

import math
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario

BUDGET_MFU = 0.40      # Llama 3 405B reported 38-43% MFU on 16K H100 (Dubey et al. 2024, Table 4)


BUDGET_BUSY = 0.90     # share of the step devices compute at that MFU (power model)


def budget(*, hardware: str, days: float, power: Any = None, energy: Any = None, budget_usd: float | None = None,
           site: Any = None, mfu: float = BUDGET_MFU) -> dict[str, Any]:
    """`flopcast budget`: how many devices a power, energy or dollar budget buys for `days`, the
    compute they deliver and the compute-optimal (Chinchilla: D = 20 N, C = 6 N D) model and tokens."""
    from flopcast import units as u
    from flopcast.estimate import datacenter as dc
    from flopcast.specs.scenario import resolve_hardware
    from flopcast.specs.site import resolve_site, site_registry

    given = [x is not None for x in (power, energy, budget_usd)]
    if sum(given) != 1:
        raise InvalidScenario("budget: give exactly one of --power, --energy, --budget-usd")
    from flopcast import inputs
    from flopcast.specs import limits

    days = inputs.finite_number(days, field="days", minimum=0, exclusive_minimum=True,
                                maximum=limits.MAX_BUDGET_DAYS, accepted="a positive number of days up to 36,525")
    if budget_usd is not None:
        budget_usd = inputs.finite_number(budget_usd, field="budget_usd", minimum=0, exclusive_minimum=True,
                                          maximum=1e15, accepted="a positive dollar amount up to 1e15")
    if not 0 < mfu <= 1:
        raise InvalidScenario(f"mfu: expected a fraction in (0, 1], got {mfu!r}")
    hw = resolve_hardware(hardware)
    site_spec = resolve_site(site if site is not None else ("us-average" if "us-average" in site_registry() else
                                                             {"grid_intensity": 400, "electricity_price": 0.08}))
    seconds = days * u.DAY_S
    per_dev = dc.power(hw, 1000, BUDGET_BUSY, site_spec).facility_w / 1000
    assumptions = dc.power_assumptions(hw, site_spec) + [
        Assumption("mfu", mfu, "model FLOPs utilisation of the run (Llama 3 405B: 38-43%)"),
        Assumption("busy_frac", BUDGET_BUSY, "share of time devices compute, for the power model")]
    price, why = dc.device_hour_price(hw, None)
    if power is not None:
        p = u.parse(power, "w", field="power")
        if p <= 0:
            raise InvalidScenario(f"power: expected a positive power such as '100 MW', got {power!r}")
        n = int(p // per_dev)
    elif energy is not None:
        e = u.parse(energy, "j", field="energy")
        if e <= 0:
            raise InvalidScenario(f"energy: expected a positive energy such as '1 GWh', got {energy!r}")
        n = int(e // (per_dev * seconds))
    else:
        if not isinstance(budget_usd, (int, float)) or budget_usd <= 0:
            raise InvalidScenario(f"budget_usd: expected a positive dollar amount, got {budget_usd!r}")
        if price is None:
            raise InvalidScenario(f"budget_usd: no device-hour price for {hw.id} in the catalog ({why})")
        n = int(budget_usd // (price * seconds / u.HOUR_S))
        assumptions.append(Assumption("price_per_device_hour", price, why))
    limits.check_count(n, limits.MAX_DEVICES, field="budget: devices bought", hint="give a smaller budget")
    if n < 1:
        raise InvalidScenario(f"budget: not enough for one {hw.id} for {days:g} days "
                              f"(one device draws {per_dev:,.0f} W at the facility)")
    peak = hw.peak_flops_per_s.get("bf16") or hw.peak_flops_per_s.get("fp16") or max(hw.peak_flops_per_s.values())
    compute = n * peak * mfu * seconds
    n_opt = math.sqrt(compute / 120.0)
    cost = price * n * seconds / u.HOUR_S if price is not None else None
    return {
        "hardware": hw.id, "days": days, "num_devices": n, "power_facility_w": n * per_dev,
        "energy_facility_j": n * per_dev * seconds, "cost_usd": cost, "compute_flops": compute,
        "optimal_params": n_opt, "optimal_tokens": 20 * n_opt, "site": site_spec.id,
        "assumptions": [a.to_dict() for a in assumptions],
    }

