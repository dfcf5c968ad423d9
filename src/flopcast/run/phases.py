"""Multi-phase training runs (`training.phases`): each phase is estimated by the single-plan
training estimator as a scenario of its own (specs.scenario.phase_scenario), and the run is their
sum. A layer above the estimator: nothing here times a step.

Rules (docs/scenario.md, "training.phases"):
- time_to_train_s, device_hours, num_steps, energy_*, emissions_*, cost_usd, expected_interruptions
  and effective_time_to_train_s of the run are sums over the phases (in phase order);
  goodput_frac is the run's time to train over its effective time (one phase: the phase's own);
- the single-plan keys (parallel, memory, step time, throughput, MFU, power, ops) describe the main
  phase, the one with the most tokens (`main_phase` names it); power_facility_peak_w is the
  highest phase's;
- the run fits when every phase fits; otherwise the reason names each phase that does not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flopcast.assumption import Assumption
from flopcast.errors import FlopcastError, InvalidScenario, UnknownName
from flopcast.specs.scenario import ResolvedScenario, phase_scenario
from flopcast.specs.workload import TrainingPhase, main_phase

# Datacenter keys of a run that add up over its phases (seconds, joules, kilograms, dollars, counts).
SUMMED_KEYS = ("energy_it_j", "energy_facility_j", "emissions_operational_kgco2e", "emissions_embodied_kgco2e",
               "cost_usd", "expected_interruptions", "effective_time_to_train_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseEstimate:
    """One phase of a run: its spec and the single-plan training estimate of it (datacenter included)."""

    phase: TrainingPhase
    estimate: Any          # estimate.training.TrainingEstimate
    main: bool = False

    @property
    def num_steps(self) -> int:
        """Optimizer steps of the phase: its tokens over the tokens per step, the last one partial."""
        t = self.phase.training
        return math.ceil(t.total_tokens / t.tokens_per_step - 1e-9)

    def to_dict(self) -> dict[str, Any]:
        e, t = self.estimate, self.phase.training
        dc = {k: v for k, v in (e.datacenter or {}).items() if k != "power_breakdown_w"}
        return {
            "name": self.phase.name, "main": self.main,
            "seq_len": t.seq_len, "global_batch_seqs": t.global_batch_seqs, "tokens_per_step": t.tokens_per_step,
            "total_tokens": t.total_tokens, "precision": t.precision, "num_devices": e.plan.num_devices,
            "parallel": e.plan.to_dict(), "fits": e.fits, "infeasible_reason": e.infeasible_reason,
            "memory_per_device_bytes": e.memory_per_device_bytes,
            "memory_breakdown_bytes": dict(e.memory_breakdown_bytes),
            "memory_capacity_bytes": e.memory_capacity_bytes,
            "step_time_s": e.step_time_s, "step_time_breakdown_s": dict(e.step_time_breakdown_s),
            "tokens_per_s": e.tokens_per_s, "tokens_per_s_per_device": e.tokens_per_s_per_device,
            "model_flops_per_step": e.model_flops_per_step, "mfu": e.mfu, "hfu": e.hfu,
            "num_microbatches": e.num_microbatches, "num_steps": self.num_steps,
            "time_to_train_s": e.time_to_train_s, "device_hours": e.device_hours,
            **dc,
        }


def _sum(values: list[Any]) -> Any:
    """The sum in order, or None when any phase has none (e.g. no price for the hardware)."""
    if any(v is None for v in values):
        return None
    total = 0.0
    for v in values:
        total += v
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class PhasedTrainingEstimate:
    """A multi-phase training run: the per-phase estimates and their sums (module docstring)."""

    phases: tuple[PhaseEstimate, ...]
    main_index: int
    assumptions: tuple[Assumption, ...] = ()

    @property
    def main(self):
        return self.phases[self.main_index].estimate

    @property
    def fits(self) -> bool:
        return all(p.estimate.fits for p in self.phases)

    @property
    def infeasible_reason(self) -> str | None:
        bad = [f"phase {p.phase.name!r}: {p.estimate.infeasible_reason or 'does not fit'}"
               for p in self.phases if not p.estimate.fits]
        return "; ".join(bad) or None

    @property
    def plan(self):
        return self.main.plan

    @property
    def time_to_train_s(self) -> float:
        return _sum([p.estimate.time_to_train_s for p in self.phases])

    @property
    def device_hours(self) -> float:
        return _sum([p.estimate.device_hours for p in self.phases])

    @property
    def datacenter(self) -> dict[str, Any] | None:
        """The run's datacenter keys: the main phase's power and reliability figures, the sums of SUMMED_KEYS."""
        if any(p.estimate.datacenter is None for p in self.phases):
            return None
        out = dict(self.main.datacenter)
        for k in SUMMED_KEYS:
            out[k] = _sum([p.estimate.datacenter.get(k) for p in self.phases])
        out["power_facility_peak_w"] = max(p.estimate.datacenter["power_facility_w"] for p in self.phases)
        eff = out.get("effective_time_to_train_s")
        if len(self.phases) > 1 and eff:   # one phase: its own figure, exactly
            out["goodput_frac"] = self.time_to_train_s / eff
        return out

    def to_dict(self) -> dict[str, Any]:
        d = self.main.to_dict()
        d.update(self.datacenter or {})
        d.update({
            "fits": self.fits, "infeasible_reason": self.infeasible_reason,
            "time_to_train_s": self.time_to_train_s, "device_hours": self.device_hours,
            "total_tokens": _sum([p.phase.training.total_tokens for p in self.phases]),
            "num_steps": sum(p.num_steps for p in self.phases),
            "main_phase": self.phases[self.main_index].phase.name,
            "phases": [p.to_dict() for p in self.phases],
            "assumptions": [a.to_dict() for a in self.assumptions],
        })
        return d


def phase_error(err: FlopcastError, phase: TrainingPhase) -> FlopcastError:
    """An error from estimating one phase, prefixed with the phase's name (same class, one line)."""
    msg = f"{phase.label}: {err}"
    if isinstance(err, UnknownName):
        return UnknownName(err.kind, err.name, err.known, message=msg)
    return InvalidScenario(msg)


def combine(rs: ResolvedScenario, estimates: list[Any], notes: tuple[Assumption, ...] = ()) -> PhasedTrainingEstimate:
    """The run from one estimate per phase of `rs.phases` (in order): the main phase's assumptions,
    then each other phase's that differ (named `phases.<name>.<assumption>`), then `notes`."""
    k = main_phase(rs.phases)
    parts = tuple(PhaseEstimate(phase=ph, estimate=e, main=i == k) for i, (ph, e) in enumerate(zip(rs.phases, estimates,
                                                                                                   strict=True)))
    main = parts[k]
    total = sum(p.training.total_tokens for p in rs.phases)
    seen = {(a.name, str(a.value)) for a in main.estimate.assumptions}
    merged = list(main.estimate.assumptions)
    merged.append(Assumption(
        "training.phases", f"{len(parts)} phases; main phase {main.phase.name!r} "
        f"({100 * main.phase.training.total_tokens / total:.1f}% of the tokens)",
        "plan, memory, step time, throughput, MFU, power and ops describe the main phase (the most tokens); "
        "time to train, device-hours, energy, emissions and cost are sums over the phases; the run fits when "
        "every phase fits"))
    for p in parts:
        if p.main:
            continue
        for a in p.estimate.assumptions:
            if (a.name, str(a.value)) not in seen:
                seen.add((a.name, str(a.value)))
                merged.append(Assumption(f"phases.{p.phase.name}.{a.name}", a.value, a.why))
    return PhasedTrainingEstimate(phases=parts, main_index=k, assumptions=tuple(merged) + tuple(notes))


def estimate_phases(rs: ResolvedScenario, estimate_one: Callable[[ResolvedScenario], Any]) -> PhasedTrainingEstimate:
    """Estimate every phase of `rs` with its plan (`estimate_one(phase_rs)` is the single-plan
    training workflow, flopcast.run.training); errors name the phase."""
    estimates = []
    for ph in rs.phases:
        if ph.plan is None:
            raise InvalidScenario(f"{ph.label}: no parallel plan; give the scenario a parallel section or the "
                                  "phase a parallel mapping (or run `flopcast plan`, whose search chooses one)")
        try:
            estimates.append(estimate_one(phase_scenario(rs, ph)))
        except FlopcastError as e:
            raise phase_error(e, ph) from None
    return combine(rs, estimates)


def _plan_text(plan: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in plan.to_dict().items() if v is not None)


def search_phases(rs: ResolvedScenario, search_one: Callable[[ResolvedScenario, dict[str, Any] | None], Any],
                  estimate_one: Callable[[ResolvedScenario], Any]) -> tuple[PhasedTrainingEstimate | None, str | None]:
    """`flopcast plan` without a parallel section. The search plans the main phase (holding the keys
    its own `parallel` gives); that plan then plays the parallel section's role for the other phases
    (each phase's own `parallel` keys over it), as one would run it. A phase where the inherited plan
    is invalid (its batch, sequence or devices) or does not fit gets a search of its own, holding its
    own keys. `search_one(phase_rs, fixed)` returns a search report. Returns (the run, None), or
    (None, the name of a phase for which no plan fits)."""
    from flopcast.specs.parallel import plan_from_mapping

    k = main_phase(rs.phases)
    main = rs.phases[k]

    def search(ph: TrainingPhase):
        try:
            return search_one(phase_scenario(rs, ph), dict(ph.parallel_overrides or {}) or None)
        except FlopcastError as e:
            raise phase_error(e, ph) from None

    def held(ph: TrainingPhase) -> str:
        over = ph.parallel_overrides or {}
        return f", holding {', '.join(f'{k}={v}' for k, v in over.items())} (the phase's parallel)" if over else ""

    def run(ph: TrainingPhase, plan):
        prs = phase_scenario(rs, ph)
        return estimate_one(dataclasses.replace(prs, parallel=plan,
                                                sections=dict(prs.sections) | {"parallel": plan.to_dict()}))

    found = search(main)
    if not found.plans:
        return None, main.name
    best = found.plans[0].plan
    estimates: list[Any] = [None] * len(rs.phases)
    estimates[k] = run(main, best)
    notes = [Assumption("parallel", _plan_text(best),
                        f"no parallel section: the fastest of {found.num_evaluated:,} plans flopcast's search evaluated "
                        f"for the main phase {main.name!r} ({found.num_fitting:,} fit){held(main)}; the other phases "
                        "inherit it (with their own parallel keys) unless it is invalid or does not fit for them")]
    base = {key: v for key, v in best.to_dict().items() if v is not None}
    for i, ph in enumerate(rs.phases):
        if i == k:
            continue
        inherited = None
        try:
            plan = plan_from_mapping(base | dict(ph.parallel_overrides or {}))
            inherited = run(ph, plan)
        except FlopcastError:
            plan = None
        if inherited is not None and inherited.fits:
            estimates[i] = inherited
            continue
        own = search(ph)
        why = "invalid for this phase" if inherited is None else "does not fit in this phase"
        if own.plans:
            estimates[i] = run(ph, own.plans[0].plan)
            notes.append(Assumption(f"phases.{ph.name}.parallel", _plan_text(own.plans[0].plan),
                                    f"the main phase's plan is {why}: the fastest of {own.num_evaluated:,} plans "
                                    f"the search evaluated for this phase ({own.num_fitting:,} fit){held(ph)}"))
        elif inherited is not None:
            estimates[i] = inherited   # no plan fits this phase: report the inherited one, which does not
        else:
            return None, ph.name
    return combine(rs, estimates, tuple(notes)), None
