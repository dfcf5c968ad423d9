"""The one way in: the CLI, the web service and Python users call these functions.

Each returns a small frozen report whose `to_dict()` is the `--json` output (keys in SCENARIO.md),
or the JSON-ready dict itself. This module is a face (docs/architecture.md): it re-exports the
workflows of `flopcast.run` and the consumers (`flopcast.fleet`, `flopcast.validation`,
`flopcast.audit`); the one function defined here, `size_fleet`, adds the face's part (the curve's
SVG, a renderer of `flopcast.report`) to its workflow. `__all__` is the public surface, pinned by
tests/unit/test_architecture.py; every other name here is private (a leading underscore), so
`__all__` is exactly the module's public names. The re-exports load on first use (`__getattr__`),
which keeps the CLI's cold start to the modules a command needs.
"""


import importlib as _importlib
from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from pathlib import Path as _Path
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from flopcast.assumption import Assumption
    from flopcast.audit import audit_claims
    from flopcast.fleet import FleetReport, plan_fleet
    from flopcast.run.budget import BUDGET_BUSY, BUDGET_MFU, budget
    from flopcast.run.hardware import hardware_dict, list_hardware, list_sites, show_hardware
    from flopcast.run.models import DEFAULT_KV_DTYPE, DEFAULT_SEQ_LEN, ModelReport, list_models, model_counts, show_model
    from flopcast.run.plan import PlanReport, plan
    from flopcast.run.search import MAX_MICROBATCH_TOKENS, search_training
    from flopcast.run.serving import estimate_serving, simulate_serving
    from flopcast.run.sweep import SWEEP_COLUMNS, sweep_training
    from flopcast.run.training import estimate_training
    from flopcast.validation.commands import calibrate, validate

# Where each re-exported name lives. They are imported on first use (PEP 562), so a command loads
# only the workflows it runs: `flopcast model show` does not import the simulator or the fleet.
_HOMES = {
    "flopcast.assumption": ("Assumption",),
    "flopcast.audit": ("audit_claims",),
    "flopcast.fleet": ("FleetReport", "plan_fleet"),
    "flopcast.run.budget": ("BUDGET_BUSY", "BUDGET_MFU", "budget"),
    "flopcast.run.hardware": ("hardware_dict", "list_hardware", "list_sites", "show_hardware"),
    "flopcast.run.models": ("DEFAULT_KV_DTYPE", "DEFAULT_SEQ_LEN", "ModelReport", "list_models", "model_counts",
                            "show_model"),
    "flopcast.run.plan": ("PlanReport", "plan"),
    "flopcast.run.search": ("MAX_MICROBATCH_TOKENS", "search_training"),
    "flopcast.run.serving": ("estimate_serving", "simulate_serving"),
    "flopcast.run.sweep": ("SWEEP_COLUMNS", "sweep_training"),
    "flopcast.run.training": ("estimate_training",),
    "flopcast.validation.commands": ("calibrate", "validate"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> _Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'flopcast.api' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BUDGET_BUSY",
    "BUDGET_MFU",
    "DEFAULT_KV_DTYPE",
    "DEFAULT_SEQ_LEN",
    "MAX_MICROBATCH_TOKENS",
    "SWEEP_COLUMNS",
    "Assumption",
    "FleetReport",
    "ModelReport",
    "PlanReport",
    "audit_claims",
    "budget",
    "calibrate",
    "estimate_serving",
    "estimate_training",
    "hardware_dict",
    "list_hardware",
    "list_models",
    "list_sites",
    "model_counts",
    "plan",
    "plan_fleet",
    "search_training",
    "show_hardware",
    "show_model",
    "simulate_serving",
    "size_fleet",
    "sweep_training",
    "validate",
]


def size_fleet(scenario: str | _Path | _Mapping[str, _Any], *, max_replicas: int = 1024,
               max_requests: int | None = None, plot: str | _Path | None = None,
               progress: _Callable[[int, int], _Any] | None = None) -> dict[str, _Any]:
    """`flopcast simulate --size-fleet`: the cheapest fleet whose steady-state p99 TTFT and p99 TPOT
    meet `inference.slo` under the workload (flopcast.run.sizing: unit, floor, steady state,
    search); the simulation at that size, every trial as a latency-throughput `curve`, and (`plot`,
    a .svg file checked before any simulation) an SVG of it."""
    from flopcast.run import sizing as _sizing

    if plot is not None:
        _sizing.check_plot_path(plot)
    out = _sizing.size_fleet(scenario, max_replicas=max_replicas, max_requests=max_requests, progress=progress)
    if plot is not None and "steady_state" in out:   # a layout that fits nothing has no curve
        from flopcast.report.sizing_plot import write_curve_svg

        out["plot"] = write_curve_svg(out, plot)
    return out
