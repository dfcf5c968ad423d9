"""Calibrated global parameters: the part of the cost model that physics and measured kernel curves
do not fix, fitted by `flopcast calibrate` to measured runs, never set per run.

A profile is a small set of named multipliers (1.0 = the uncalibrated physical model):

- ``compute.<generation>``: achieved GEMM and attention rates of every accelerator of a hardware
  generation (catalog/efficiency.yaml `generations`), relative to the microbenchmark fractions:
  what sustained clocks, data-dependent power and kernel selection inside a real step cost;
- ``stack.<framework>`` (training) / ``engine.<engine>`` (serving): achieved compute and memory
  rates under one software stack: fusion, synchronisation and host effects beyond the ones
  catalog/frameworks.yaml models explicitly;
- ``memory.<generation>`` (serving): achieved HBM bandwidth of memory-bound decode kernels;
- ``moe.<generation>`` (serving): achieved rate of the grouped expert GEMMs of MoE layers relative to
  dense GEMMs of the same shape (fitted only on MoE runs);
- ``<prefix>.*``: the pooled value of every ``<prefix>.<name>`` without a parameter of its own. A
  parameter that only one source family informs is indistinguishable from that family's own bias
  (leave that family out and nothing identifies it), so the fit pools it with its neighbours of the
  same prefix (`pooled_names`); the pooled value also applies to a stack, engine or generation no
  measured run uses, where the physical model's 1.0 sits above every fitted neighbour.

The shipped profiles (catalog/calibration.yaml) are produced by the same command from the shipped
validation rows (`python benchmarks/calibrate.py` re-derives them; a test checks they match).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from flopcast import files
from flopcast.errors import InvalidScenario

KINDS = ("training", "inference")
PREFIXES = {"training": ("compute", "stack"), "inference": ("compute", "memory", "engine", "moe")}
# A multiplier outside this range is not a calibration but a different machine: refused.
MIN_VALUE, MAX_VALUE = 0.2, 2.0
POOLED = "*"                # `<prefix>.*`: the pooled parameter of a prefix
MIN_SOURCES = 2             # source families that must inform a parameter of its own


@dataclass(frozen=True, slots=True)
class Profile:
    """Named multipliers of one estimator (training or inference); missing names are 1.0."""

    kind: str
    params: tuple[tuple[str, float], ...] = ()
    source: str = "uncalibrated (every parameter 1.0)"
    cv_median_abs_error_frac: float | None = None   # the fit's leave-one-source-out median error

    def get(self, name: str) -> float:
        """The multiplier `name`; else its prefix's pooled value (`<prefix>.*`); else 1.0."""
        pooled = name.split(".")[0] + "." + POOLED
        fallback = 1.0
        for k, v in self.params:
            if k == name:
                return v
            if k == pooled:
                fallback = v
        return fallback

    def as_dict(self) -> dict[str, float]:
        return dict(self.params)

    def with_params(self, values: Mapping[str, float], source: str | None = None) -> Profile:
        merged = {**self.as_dict(), **values}
        return Profile(self.kind, tuple(sorted(merged.items())), source or self.source, self.cv_median_abs_error_frac)


def _check(kind: str, params: Mapping[str, Any], where: str) -> tuple[tuple[str, float], ...]:
    out = []
    for name, value in params.items():
        prefix = str(name).split(".")[0]
        if prefix not in PREFIXES[kind] or "." not in str(name):
            raise InvalidScenario(f"{where}.{name}: unknown {kind} parameter; accepted: "
                                  + ", ".join(f"{p}.<name>" for p in PREFIXES[kind]))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidScenario(f"{where}.{name}: expected a number, got {value!r}")
        if not MIN_VALUE <= value <= MAX_VALUE:
            raise InvalidScenario(f"{where}.{name}: {value} is outside [{MIN_VALUE}, {MAX_VALUE}]; a multiplier "
                                  "that far from 1 means the model is missing a mechanism, not a calibration")
        out.append((str(name), float(value)))
    return tuple(sorted(out))


# Prefixes whose one-family parameters are not pooled but left at the physical model's 1.0: a serving
# engine's own mechanisms (CUDA-graph coverage, kernel launches, host time per iteration:
# catalog/frameworks.yaml `inference`) are modelled from its published profiles, and a pooled
# `engine.*` fitted on the engines of other families carried their bias into every engine no second
# family measures (issue 22: with `engine.*` the trtllm-bench rows, left out, took LMDeploy's, FastGen's
# and TGI's bias; leave-one-source-out median 10.4% with it, 9.2% without).
UNPOOLED_PREFIXES = ("engine",)


def pooled_names(sources_of: Mapping[str, set[str]]) -> dict[str, str | None]:
    """The fitted name of each parameter, given the source families whose runs touch it: itself when
    at least MIN_SOURCES families inform it, else its prefix's pooled parameter `<prefix>.*`
    (issue 22: a parameter identified by one family is pooled with its neighbours), or None (not
    fitted: 1.0) for a prefix of UNPOOLED_PREFIXES."""
    out: dict[str, str | None] = {}
    for name, srcs in sources_of.items():
        prefix = name.split(".")[0]
        if len(srcs) >= MIN_SOURCES:
            out[name] = name
        else:
            out[name] = None if prefix in UNPOOLED_PREFIXES else prefix + "." + POOLED
    return out


def profile_from_mapping(data: Mapping[str, Any], kind: str, *, where: str = "calibration",
                         source: str = "given in the scenario") -> Profile:
    """A profile from `{training: {params...}, inference: {params...}}` or a flat mapping of params."""
    if not isinstance(data, Mapping):
        raise InvalidScenario(f"{where}: expected a mapping of parameters or a path to a profile YAML")
    if kind in data:
        section = data[kind]
    elif any(k in data for k in KINDS):
        section = {}
    else:
        section = data
    cv = section.get("cv_median_abs_error_frac") if isinstance(section, Mapping) else None
    if isinstance(section, Mapping) and "parameters" in section:
        section = section["parameters"]
    if not isinstance(section, Mapping):
        raise InvalidScenario(f"{where}.{kind}: expected a mapping of parameter: value")
    params = {k: v for k, v in section.items() if k not in ("source", "fitted_on", "fit", "cv_median_abs_error_frac")}
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, (int, float)) or not 0 <= cv < 1):
        raise InvalidScenario(f"{where}.{kind}.cv_median_abs_error_frac: expected a fraction in [0, 1), got {cv!r}")
    return Profile(kind, _check(kind, params, f"{where}.{kind}"), str(data.get("source", source)),
                   float(cv) if cv is not None else None)


def load_profile_file(path: str | Path, kind: str) -> Profile:
    from flopcast import inputs

    p = Path(path)
    with files.reading("calibration", p, "calibration profile"):    # generic errors on the service
        data = inputs.load_yaml(inputs.read_text(p, what="calibration"), what=f"calibration: {str(p)!r}")
        inputs.check_finite(data, where="calibration")
        return profile_from_mapping(data or {}, kind, where="calibration", source=str(p))


@cache
def shipped(kind: str) -> Profile:
    """The profile fitted on the shipped validation rows (catalog/calibration.yaml)."""
    from flopcast.catalog import CATALOG_DIR

    path = CATALOG_DIR / "calibration.yaml"
    if not path.is_file():
        return Profile(kind)
    return load_profile_file(path, kind)


def resolve_profile(value: Any, kind: str, *, base_dir: Path | None = None) -> Profile:
    """The scenario's `calibration` key: absent or `shipped` -> the shipped profile; `none` ->
    uncalibrated; a path to a profile YAML; or an inline mapping."""
    if value is None or value == "shipped":
        return shipped(kind)
    if value == "none":
        return Profile(kind)
    if isinstance(value, Mapping):
        return profile_from_mapping(value, kind)
    if isinstance(value, str):
        path = Path(files.permitted(value, field="calibration"))    # the service's allow-list
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = base_dir / path
        return load_profile_file(path, kind)
    raise InvalidScenario("calibration: expected `shipped`, `none`, a path to a profile YAML or a mapping")
