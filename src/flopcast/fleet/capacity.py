"""What one serving unit delivers at full load, from flopcast's serving estimator (`flopcast.run.serving.estimate_serving`,
called through its public interface so that the fleet improves when the estimator does).

A unit is one `inference` layout: tp * pp * dp devices (with ep > 1 the dp ranks run attention data
parallel and share the experts). Three kinds, each one of the estimator's `inference.pool` roles:
- colocated (`pool: both`): continuous batching with chunked prefill; capacity = the steady-state
  output tokens/s of the unit (prefill of the prompts included, prefix-cache hits credited);
- prefill (`pool: prefill`): every iteration fills the token budget with prompts and emits their
  first token; capacity = prompt tokens/s, cached ones included (only the uncached share is
  computed); TTFT = one iteration;
- decode (`pool: decode`): prompts arrive prefilled with their KV cache; capacity = output
  tokens/s of B sequences at mean context I + O/2; TPOT = one step.
With a latency SLO the batch B per dp rank is the largest that meets it (TPOT at or under
tpot_p99, TTFT at or under ttft_p99; both grow with B, so a bisection over 1..B_max finds it),
else the largest that memory and the iteration budget allow. The analytic times are means: the
SLO is applied to them, and the simulator checks percentiles where the fleet asks it to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName

# Contract keys (SCENARIO.md) that a serving estimator may or may not honour yet: passed through when
# specs.serving accepts them, else dropped and reported.
OPTIONAL_ESTIMATOR_KEYS = ("engine", "speculative", "prefix_cache_hit_frac", "eplb", "max_batch_size",
                           "max_num_tokens")
COMM_KEYS = ("tp_comm", "ep_comm", "pp_comm")


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolCapacity:
    """One unit of a pool at full load."""

    role: str                      # colocated | prefill | decode
    unit_devices: int
    batch_size: int                # concurrent sequences per dp rank
    tokens_per_s: float            # colocated, decode: output tokens/s; prefill: prompt tokens/s (cached included)
    ttft_s: float | None
    tpot_s: float | None
    busy_frac: float               # compute share of the time at full load (for the power model)
    infeasible_reason: str | None = None
    dropped_keys: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        return self.infeasible_reason is None and self.tokens_per_s > 0

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "unit_devices": self.unit_devices, "batch_size": self.batch_size,
                "tokens_per_s": self.tokens_per_s, "tokens_per_s_per_device": self.tokens_per_s / self.unit_devices,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "busy_frac": self.busy_frac,
                "feasible": self.feasible, "infeasible_reason": self.infeasible_reason}


def accepted_keys() -> tuple[str, ...]:
    from flopcast.specs.serving import INFERENCE_KEYS

    return tuple(INFERENCE_KEYS)


def _degree(layout: Mapping[str, Any], key: str, where: str) -> int:
    v = layout.get(key, 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InvalidScenario(f"{where}.{key}: expected a positive integer, got {v!r}")
    return v


def unit_devices(layout: Mapping[str, Any], where: str) -> int:
    return _degree(layout, "tp", where) * _degree(layout, "pp", where) * _degree(layout, "dp", where)


def _busy(bd: Mapping[str, float]) -> float:
    total = sum(bd.values())
    return (total - sum(bd.get(k, 0.0) for k in COMM_KEYS)) / total if total > 0 else 1.0


class _Runner:
    """Calls the estimator for one (model, hardware, layout) at given lengths and batch: the
    scenario is resolved once (its first call) and each call is a `dataclasses.replace` of its
    inference spec (lengths, batch, pool and token budget), checked for the model's context."""

    def __init__(self, model: Any, hardware: Any, layout: Mapping[str, Any], where: str,
                 devices_per_node: int | None, extra: Mapping[str, Any], context: Mapping[str, Any]):
        ok = accepted_keys()
        full = dict(layout) | dict(extra)
        self.dropped = tuple(k for k in full if k in OPTIONAL_ESTIMATOR_KEYS and k not in ok)
        self.layout = {k: v for k, v in full.items() if k not in self.dropped}
        self.n = unit_devices(self.layout, where)
        self.dp = _degree(self.layout, "dp", where)
        cluster: dict[str, Any] = {"num_devices": self.n}
        if devices_per_node:
            cluster["devices_per_node"] = min(devices_per_node, self.n)
        self.base = dict(context) | {"model": model, "hardware": hardware, "cluster": cluster}
        self._resolved: Any = None

    def __call__(self, input_tokens: int, output_tokens: int, batch: int | str, **over: Any):
        import dataclasses

        from flopcast.run.serving import estimate_serving_resolved
        from flopcast.specs.applicability import check_inference
        from flopcast.specs.scenario import resolve

        if self._resolved is None:
            self._resolved = resolve(self.base | {"inference": self.layout | {
                "input_tokens": input_tokens, "output_tokens": output_tokens}})
        rs = self._resolved
        spec = dataclasses.replace(rs.inference, input_tokens=input_tokens, output_tokens=output_tokens,
                                   batch_size=None if batch == "max" else batch, **over)
        check_inference(rs.model, spec)
        return estimate_serving_resolved(dataclasses.replace(rs, inference=spec))


def _largest(lo: int, hi: int, ok) -> int | None:
    """Largest b in lo..hi with ok(b), for ok true up to some point and false after; None if not ok(lo)."""
    if not ok(lo):
        return None
    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms"


def colocated(run: _Runner, I: int, O: int, slo_ttft_s: float | None, slo_tpot_s: float | None) -> PoolCapacity:
    fixed = run.layout.get("batch_size", "max")
    first = run(I, O, fixed)
    if not first.fits:
        return PoolCapacity(role="colocated", unit_devices=run.n, batch_size=0, tokens_per_s=0.0, ttft_s=None,
                            tpot_s=None, busy_frac=1.0, infeasible_reason=first.infeasible_reason,
                            dropped_keys=run.dropped)
    cache = {first.batch_size: first}

    def est(b: int):
        if b not in cache:
            cache[b] = run(I, O, b)
        return cache[b]

    def ok(b: int) -> bool:
        e = est(b)
        return (slo_tpot_s is None or e.tpot_s <= slo_tpot_s) and (slo_ttft_s is None or e.ttft_s <= slo_ttft_s)

    reason = None
    b = first.batch_size
    if (slo_ttft_s or slo_tpot_s) and fixed == "max":
        found = _largest(1, first.batch_size, ok)
        if found is None:
            e1 = est(1)
            reason = (f"no batch meets the SLO: at batch 1 per replica TTFT {_ms(e1.ttft_s)}, TPOT {_ms(e1.tpot_s)}")
        b = found or 1
    elif (slo_ttft_s or slo_tpot_s) and not ok(b):
        reason = f"batch_size {b} misses the SLO (TTFT {_ms(first.ttft_s)}, TPOT {_ms(first.tpot_s)})"
    e = est(b)
    return PoolCapacity(role="colocated", unit_devices=run.n, batch_size=e.batch_size,
                        tokens_per_s=e.output_tokens_per_s, ttft_s=e.ttft_s, tpot_s=e.tpot_s,
                        busy_frac=_busy(e.decode_step_breakdown_s), infeasible_reason=reason,
                        dropped_keys=run.dropped)


def decode(run: _Runner, I: int, O: int, slo_tpot_s: float | None) -> PoolCapacity:
    """A decode unit: the estimator's `pool: decode` (prompts arrive prefilled with their KV cache)."""
    fixed = run.layout.get("batch_size", "max")
    first = run(I, O, fixed, pool="decode")
    if not first.fits:
        return PoolCapacity(role="decode", unit_devices=run.n, batch_size=0, tokens_per_s=0.0, ttft_s=None,
                            tpot_s=None, busy_frac=1.0, infeasible_reason=first.infeasible_reason,
                            dropped_keys=run.dropped)
    cache = {first.batch_size: first}

    def est(b: int):
        if b not in cache:
            cache[b] = run(I, O, b, pool="decode")
        return cache[b]

    reason = None
    b = first.batch_size
    if slo_tpot_s is not None and fixed == "max":
        found = _largest(1, first.batch_size, lambda x: est(x).tpot_s <= slo_tpot_s)
        if found is None:
            reason = f"no batch meets tpot_p99 {_ms(slo_tpot_s)}: a decode step at batch 1 takes {_ms(est(1).tpot_s)}"
        b = found or 1
    elif slo_tpot_s is not None and est(b).tpot_s > slo_tpot_s:
        reason = f"batch_size {b} misses tpot_p99 {_ms(slo_tpot_s)} (decode step {_ms(est(b).tpot_s)})"
    e = est(b)
    return PoolCapacity(role="decode", unit_devices=run.n, batch_size=e.batch_size,
                        tokens_per_s=e.output_tokens_per_s, ttft_s=None, tpot_s=e.tpot_s,
                        busy_frac=_busy(e.decode_step_breakdown_s), infeasible_reason=reason,
                        dropped_keys=run.dropped)


def prefill(run: _Runner, I: int, slo_ttft_s: float | None) -> PoolCapacity:
    """A prefill unit: the estimator's `pool: prefill` (every iteration fills the token budget with
    prompts and emits their first token). Capacity in prompt tokens/s, cached ones included (the
    estimator computes only the uncached share). With a TTFT SLO the token budget per iteration is
    the largest (down to one prompt) whose iteration time meets it."""
    budget = int(run.layout.get("max_tokens_per_iteration", 8192))
    first = run(I, 1, "max", pool="prefill")
    if not first.fits:
        return PoolCapacity(role="prefill", unit_devices=run.n, batch_size=0, tokens_per_s=0.0, ttft_s=None,
                            tpot_s=None, busy_frac=1.0, infeasible_reason=first.infeasible_reason,
                            dropped_keys=run.dropped)
    cache = {budget: first}

    def est(tokens: int):
        if tokens not in cache:
            cache[tokens] = run(I, 1, "max", pool="prefill", max_tokens_per_iteration=tokens)
        return cache[tokens]

    reason = None
    tokens = budget
    if slo_ttft_s is not None and first.ttft_s > slo_ttft_s:
        lo = min(I, budget)
        found = _largest(lo, budget, lambda x: est(x).ttft_s <= slo_ttft_s)
        if found is None:
            reason = (f"no token budget meets ttft_p99 {_ms(slo_ttft_s)}: one prompt of {I} tokens takes "
                      f"{_ms(est(lo).ttft_s)}")
        tokens = found or lo
    e = est(tokens)
    return PoolCapacity(role="prefill", unit_devices=run.n, batch_size=e.batch_size, tokens_per_s=e.input_tokens_per_s,
                        ttft_s=e.ttft_s, tpot_s=None, busy_frac=_busy(e.decode_step_breakdown_s),
                        infeasible_reason=reason, dropped_keys=run.dropped)


def pools(model: Any, hardware: Any, dep, where: str, I: float, O: float, hit: float,
          slo_ttft_s: float | None, slo_tpot_s: float | None,
          context: Mapping[str, Any] | None = None) -> tuple[PoolCapacity, ...]:
    """The pools of deployment `dep` for requests of mean I prompt and O output tokens, a share
    `hit` of prompt tokens from a prefix cache. `context`: scenario sections every estimator call
    carries (e.g. `calibration`). The estimator's own input errors (a layout that breaks a
    divisibility rule, a model that does not fit) make the deployment infeasible, with the reason."""
    context = context or {}
    I_i, O_i = max(1, round(I)), max(1, round(O))
    extra: dict[str, Any] = {"engine": dep.engine} if dep.engine else {}

    def guard(role: str, layout, fn) -> PoolCapacity:
        try:
            return fn()
        except UnknownName as e:       # a misspelt layout key or value: bad input, named with its field
            key = "inference" if role == "colocated" else role
            raise UnknownName(e.kind, e.name, e.known, message=f"{where}.{key}: {e}") from None
        except InvalidScenario as e:
            n = unit_devices(layout, f"{where}.{role}")
            ok = accepted_keys()
            dropped = tuple(k for k in dict(layout) | extra if k in OPTIONAL_ESTIMATOR_KEYS and k not in ok)
            return PoolCapacity(role=role, unit_devices=n, batch_size=0, tokens_per_s=0.0, ttft_s=None, tpot_s=None,
                                busy_frac=1.0, infeasible_reason=str(e), dropped_keys=dropped)

    cached = {"prefix_cache_hit_frac": hit} if hit > 0 else {}
    if not dep.disaggregated:
        return (guard("colocated", dep.inference, lambda: colocated(
            _Runner(model, hardware, dep.inference, f"{where}.inference", dep.devices_per_node, extra | cached,
                    context),
            I_i, O_i, slo_ttft_s, slo_tpot_s)),)
    return (
        guard("prefill", dep.prefill, lambda: prefill(
            _Runner(model, hardware, dep.prefill, f"{where}.prefill", dep.devices_per_node, extra | cached, context), I_i,
            slo_ttft_s)),
        guard("decode", dep.decode, lambda: decode(
            _Runner(model, hardware, dep.decode, f"{where}.decode", dep.devices_per_node, extra, context), I_i, O_i,
            slo_tpot_s)),
    )


def ceil_units(load, capacity: float, target_utilisation: float):
    """Units to carry `load` (a number or numpy array) at `target_utilisation` of each unit's capacity."""
    import numpy as np

    return np.ceil(np.asarray(load, dtype=float) / (capacity * target_utilisation) - 1e-9).clip(min=0)
