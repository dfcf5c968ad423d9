"""`flopcast budget`: what a power, energy or dollar budget buys; or, with a deadline, the fewest
devices (and the cheapest hardware) that train a model on its tokens by then."""

from __future__ import annotations

import math
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import InvalidScenario

BUDGET_MFU = 0.40      # Llama 3 405B reported 38-43% MFU on 16K H100 (Dubey et al. 2024, Table 4)


BUDGET_BUSY = 0.90     # share of the step devices compute at that MFU (power model)
# Model and optimizer state per parameter a deadline plan must hold across its devices: bf16 weights
# and gradients (2 + 2) and fp32 master weights, Adam m and v (4 + 4 + 4), sharded over all devices
# (ZeRO-3 / FSDP); activations and fragmentation take the rest of HBM (Rajbhandari et al. 2020, sec. 3.1)
STATE_BYTES_PER_PARAM = 16.0
STATE_MEMORY_FRAC = 0.8      # at most this share of HBM for model state: the rest for activations
DEADLINE_SEQ_LEN = 8192      # attention FLOPs of the run counted at an 8K context (Llama 3 405B's pre-training)
DEFAULT_DAYS = 90.0          # a budget without --days: a 90-day run (Llama 3 405B's pre-training: 54 days of a longer run)


def budget(*, hardware: str | None = None, days: float | None = None, power: Any = None, energy: Any = None,
           budget_usd: float | None = None, site: Any = None, mfu: float = BUDGET_MFU, deadline: Any = None,
           model: str | None = None, tokens: Any = None, scenario: Any = None) -> dict[str, Any]:
    """`flopcast budget`: how many devices a power, energy or dollar budget buys for `days`, the
    compute they deliver and the compute-optimal (Chinchilla: D = 20 N, C = 6 N D) model and tokens,
    with their operational and embodied carbon. With `deadline` (or a `scenario` whose
    training.deadline is set) instead: the fewest devices that train `model` on `tokens` by then
    (`deadline_budget`)."""
    if deadline is not None or scenario is not None:
        if any(x is not None for x in (power, energy, budget_usd, days)):
            raise InvalidScenario("budget: --deadline answers how many devices finish by then; give it without "
                                  "--power, --energy, --budget-usd and --days")
        return deadline_budget(deadline=deadline, model=model, tokens=tokens, hardware=hardware, site=site,
                               mfu=mfu, scenario=scenario)
    if hardware is None:
        raise InvalidScenario("budget: give --hardware with one of --power, --energy, --budget-usd "
                              "(or --deadline with --model and --tokens)")
    out = _bought(hardware=hardware, days=DEFAULT_DAYS if days is None else days, power=power, energy=energy,
                  budget_usd=budget_usd, site=site, mfu=mfu)
    if days is None:
        out["assumptions"].append(Assumption("days", DEFAULT_DAYS, "no --days: energy, cost, compute and carbon "
                                             "are for a 90-day run").to_dict())
    return out


def _checked_inputs(days: Any, budget_usd: Any, mfu: Any) -> tuple[float, float | None, float]:
    from flopcast import inputs
    from flopcast.specs import limits

    days = inputs.finite_number(days, field="days", minimum=limits.MIN_BUDGET_DAYS, maximum=limits.MAX_BUDGET_DAYS,
                                accepted="a number of days from one minute (0.0007) up to 36,525")
    if budget_usd is not None:
        budget_usd = inputs.finite_number(budget_usd, field="budget_usd", minimum=0, exclusive_minimum=True,
                                          maximum=1e15, accepted="a positive dollar amount up to 1e15")
    mfu = inputs.finite_number(mfu, field="mfu", minimum=0, exclusive_minimum=True, maximum=1.0,
                               accepted="a fraction in (0, 1]")
    return days, budget_usd, mfu


def _site(site: Any):
    from flopcast.specs.site import resolve_site, site_registry

    return resolve_site(site if site is not None else ("us-average" if "us-average" in site_registry() else
                                                        {"grid_intensity": 400, "electricity_price": 0.08}))


def _devices_float(u, hw, per_dev: float, seconds: float, power: Any, energy: Any, budget_usd: Any,
                   price: float | None, why: str) -> float:
    """Devices (fractional) the one given budget buys: facility power / per-device facility power,
    energy / (that x the run time), or dollars / (device-hour price x the run's hours)."""
    if power is not None:
        p = u.parse(power, "w", field="power")
        if p <= 0:
            raise InvalidScenario(f"power: expected a positive power such as '100 MW', got {power!r}")
        return p / per_dev
    if energy is not None:
        e = u.parse(energy, "j", field="energy")
        if e <= 0:
            raise InvalidScenario(f"energy: expected a positive energy such as '1 GWh', got {energy!r}")
        return e / (per_dev * seconds)
    if not isinstance(budget_usd, (int, float)) or budget_usd <= 0:
        raise InvalidScenario(f"budget_usd: expected a positive dollar amount, got {budget_usd!r}")
    if price is None:
        raise InvalidScenario(f"budget_usd: no device-hour price for {hw.id} in the catalog ({why})")
    return budget_usd / (price * seconds / u.HOUR_S)


def _bought(*, hardware: str, days: Any, power: Any, energy: Any, budget_usd: Any, site: Any,
            mfu: Any) -> dict[str, Any]:
    from flopcast import units as u
    from flopcast.estimate import datacenter as dc
    from flopcast.specs import limits
    from flopcast.specs.scenario import resolve_hardware

    if sum(x is not None for x in (power, energy, budget_usd)) != 1:
        raise InvalidScenario("budget: give exactly one of --power, --energy, --budget-usd")
    days, budget_usd, mfu = _checked_inputs(days, budget_usd, mfu)
    hw = resolve_hardware(hardware)
    site_spec = _site(site)
    seconds = days * u.DAY_S
    pw = dc.power(hw, 1000, BUDGET_BUSY, site_spec)
    per_dev = pw.facility_w / 1000
    assumptions = dc.power_assumptions(hw, site_spec) + [
        Assumption("mfu", mfu, "model FLOPs utilisation of the run (Llama 3 405B: 38-43%)"),
        Assumption("busy_frac", BUDGET_BUSY, "share of time devices compute, for the power model")]
    price, why = dc.device_hour_price(hw, None)
    n_float = _devices_float(u, hw, per_dev, seconds, power, energy, budget_usd, price, why)
    if budget_usd is not None:
        assumptions.append(Assumption("price_per_device_hour", price, why))
    if not n_float <= limits.MAX_DEVICES:        # also inf and NaN, before int()
        raise InvalidScenario(f"budget: devices bought: {n_float:,.3g} is past the limit of {limits.MAX_DEVICES:,}; "
                              "give a smaller budget or a longer run")
    n = int(n_float)
    if n < 1:
        raise InvalidScenario(f"budget: not enough for one {hw.id} for {days:g} days "
                              f"(one device draws {per_dev:,.0f} W at the facility)")
    compute = n * _training_peak(hw) * mfu * seconds
    n_opt = math.sqrt(compute / 120.0)
    energy_j = n * per_dev * seconds
    carbon, carbon_notes = _carbon(dc, hw, n, seconds, energy_j, site_spec)
    return {
        "hardware": hw.id, "days": days, "num_devices": n, "power_facility_w": n * per_dev,
        "energy_facility_j": energy_j, "cost_usd": price * n * seconds / u.HOUR_S if price is not None else None,
        "compute_flops": compute, "optimal_params": n_opt, "optimal_tokens": 20 * n_opt, "site": site_spec.id,
        "pue": pw.pue, "cooling": dc.system_cooling(hw)[0], **carbon,
        "assumptions": [a.to_dict() for a in assumptions + carbon_notes],
    }


def _training_peak(hw) -> float:
    return hw.peak_flops_per_s.get("bf16") or hw.peak_flops_per_s.get("fp16") or max(hw.peak_flops_per_s.values())


def _carbon(dc, hw, n: int, seconds: float, energy_facility_j: float, site) -> tuple[dict[str, Any], list[Assumption]]:
    """Operational (facility energy x the site's grid intensity) and embodied (the devices' and their
    hosts' manufacturing share for the run time) emissions."""
    embodied, why = dc.embodied_kgco2e(hw, n, seconds)
    return ({"emissions_operational_kgco2e": energy_facility_j * site.grid_intensity_kgco2e_per_j,
             "emissions_embodied_kgco2e": embodied},
            [Assumption("embodied_carbon", why, "catalog/prices.yaml embodied_kgco2e per device and host")])


# ------------------------------------------------------------------------------------ deadline
def _deadline_inputs(deadline: Any, model: Any, tokens: Any, hardware: Any, site: Any,
                     scenario: Any) -> tuple[float, Any, float, Any, Any, Any]:
    """(deadline in s, model spec, tokens, hardware or None, site, reliability) from the flags, or from
    a scenario's model, hardware, site, reliability and training.total_tokens / training.deadline."""
    from flopcast import units as u
    from flopcast.specs.scenario import resolve, resolve_model

    reliability = None
    if scenario is not None:
        rs = resolve(scenario)
        if rs.training is None or rs.training.total_tokens is None:
            raise InvalidScenario("budget: the scenario needs training.total_tokens for a deadline")
        deadline_s = rs.training.deadline_s if deadline is None else None
        if deadline_s is None and deadline is None:
            raise InvalidScenario("budget: give --deadline or the scenario's training.deadline")
        spec, n_tokens, hardware = rs.model, rs.training.total_tokens, hardware or rs.hardware
        site, reliability = site if site is not None else rs.site, rs.reliability
    else:
        if model is None or tokens is None:
            raise InvalidScenario("budget: --deadline needs --model and --tokens (or a scenario with "
                                  "training.total_tokens and training.deadline)")
        spec, n_tokens, deadline_s = resolve_model(model)[0], float(u.parse(tokens, "count", field="tokens")), None
        if not n_tokens >= 1e6:
            raise InvalidScenario(f"tokens: {tokens!r} is implausibly few for a training run; give e.g. 15e12")
    if deadline is not None:
        deadline_s = u.parse(deadline, "s", field="deadline")
    if deadline_s is None or not u.HOUR_S <= deadline_s <= 10 * u.YEAR_S:
        raise InvalidScenario(f"deadline: {deadline!r} is outside one hour..10 years; give a duration such as '90d'")
    return deadline_s, spec, float(n_tokens or 0.0), hardware, site, reliability


def _fewest_devices(dc, hw, flops: float, params: int, deadline_s: float, mfu: float, reliability) -> tuple[int, Any, str]:
    """The fewest devices of `hw` (whole nodes) that hold the model state and finish `flops` by the
    deadline at `mfu`, with failures, checkpoints and restarts (goodput) counted; what bounds them."""
    node = max(1, hw.node_size)
    n_mem = math.ceil(params * STATE_BYTES_PER_PARAM / (STATE_MEMORY_FRAC * hw.hbm_capacity_bytes))
    n = max(1, n_mem, math.ceil(flops / (_training_peak(hw) * mfu * deadline_s)))
    n = math.ceil(n / node) * node
    for _ in range(60):    # goodput falls as the job grows: step up until the wall time fits
        rel = dc.reliability(params, n, node, given=reliability)
        wall = flops / (n * _training_peak(hw) * mfu) / rel.goodput_frac
        if wall <= deadline_s:
            break
        n = math.ceil(n * wall / deadline_s / node) * node
    bound = "memory" if n <= math.ceil(n_mem / node) * node else "compute"
    return n, rel, bound


def _option(hw, *, flops: float, params: int, deadline_s: float, mfu: float, site, reliability) -> dict[str, Any] | None:
    """One hardware's fewest-devices plan for the deadline: devices, wall time, cost, energy, carbon;
    None when it needs more devices than flopcast plans for."""
    from flopcast import units as u
    from flopcast.estimate import datacenter as dc
    from flopcast.specs import limits

    n, rel, bound = _fewest_devices(dc, hw, flops, params, deadline_s, mfu, reliability)
    if n > limits.MAX_DEVICES:
        return None
    wall = flops / (n * _training_peak(hw) * mfu) / rel.goodput_frac
    price, why = dc.device_hour_price(hw, None)
    pw = dc.power(hw, n, BUDGET_BUSY, site)
    energy = pw.facility_w * wall
    carbon, _ = _carbon(dc, hw, n, wall, energy, site)
    return {"hardware": hw.id, "num_devices": n, "limited_by": bound, "time_to_train_s": wall,
            "goodput_frac": rel.goodput_frac, "cost_usd": price * n * wall / u.HOUR_S if price is not None else None,
            "price_source": why, "power_facility_w": pw.facility_w, "energy_facility_j": energy, "pue": pw.pue,
            "cooling": dc.system_cooling(hw)[0], **carbon}


def _candidates(hardware: Any) -> list[Any]:
    """The given hardware, or every shipping datacenter accelerator of the catalog."""
    from flopcast import catalog
    from flopcast.specs.scenario import resolve_hardware

    if hardware is not None:
        return [hardware if not isinstance(hardware, (str, dict)) else resolve_hardware(hardware)]
    out = []
    for hw_id in catalog.hardware_ids():
        hw = catalog.get_hardware(hw_id)
        if hw.status == "shipping" and hw.memory_kind != "unified" and hw.tdp_w is not None:
            out.append(hw)
    return out


def deadline_budget(*, deadline: Any = None, model: Any = None, tokens: Any = None, hardware: Any = None,
                    site: Any = None, mfu: Any = BUDGET_MFU, scenario: Any = None) -> dict[str, Any]:
    """`flopcast budget --deadline D --model M --tokens T [--hardware H]`: the fewest devices of H that
    train M on T tokens by D, at `mfu` with the run's interruptions (goodput) counted, and its cost,
    energy and carbon; without H, that plan for every shipping accelerator of the catalog, the
    cheapest (then the fewest devices) first. Compute C = 3 x forward FLOPs per token at an 8K
    context x T (6 N D plus attention); devices n = max(model state / 80% of HBM, C / (peak x mfu x
    D x goodput(n))), in whole nodes."""
    from flopcast import inputs
    from flopcast.estimate import counts

    deadline_s, spec, n_tokens, hw, site, reliability = _deadline_inputs(deadline, model, tokens, hardware, site,
                                                                         scenario)
    mfu = inputs.finite_number(mfu, field="mfu", minimum=0, exclusive_minimum=True, maximum=1.0,
                               accepted="a fraction in (0, 1]")
    site_spec = site if hasattr(site, "pue") else _site(site)
    flops = 3 * counts.forward_flops_per_token(spec, DEADLINE_SEQ_LEN) * n_tokens
    params = counts.params_total(spec)
    options = [o for o in (_option(h, flops=flops, params=params, deadline_s=deadline_s, mfu=mfu, site=site_spec,
                                   reliability=reliability) for h in _candidates(hw)) if o is not None]
    if not options:
        raise InvalidScenario(f"budget: no hardware finishes {n_tokens:.3g} tokens of {spec.name} within "
                              f"{deadline_s / 86400:g} days below flopcast's device limit")
    options.sort(key=lambda o: (o["cost_usd"] is None, o["cost_usd"] or 0.0, o["num_devices"]))
    best = options[0]
    assumptions = [
        Assumption("mfu", mfu, "model FLOPs utilisation of the run (Llama 3 405B: 38-43%)"),
        Assumption("compute", f"{flops:.3g} FLOPs", f"3 x forward FLOPs per token at a {DEADLINE_SEQ_LEN} context "
                                                   f"x {n_tokens:.3g} tokens"),
        Assumption("model_state_bytes_per_param", STATE_BYTES_PER_PARAM,
                   f"bf16 weights and gradients, fp32 master and Adam moments, sharded over all devices in at "
                   f"most {STATE_MEMORY_FRAC:.0%} of HBM"),
        Assumption("site", site_spec.id, f"grid {site_spec.grid_intensity_gco2e_per_kwh:.0f} gCO2e/kWh"),
    ]
    return {"deadline_s": deadline_s, "model": spec.name, "tokens": n_tokens, "compute_flops": flops,
            **{k: v for k, v in best.items() if k != "price_source"}, "site": site_spec.id,
            "cheapest_hardware": best["hardware"] if best["cost_usd"] is not None else None,
            "fewest_devices_hardware": min(options, key=lambda o: o["num_devices"])["hardware"],
            "options": options, "assumptions": [a.to_dict() for a in assumptions]}
