"""Built-in catalogs: one data file per accelerator (hardware/*.yaml) and per model
(models/*.json, the Hugging Face config.json plus its source). Files are read on first use."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flopcast.registry import Registry
from flopcast.specs.hardware import AcceleratorSpec, accelerator_from_mapping
from flopcast.specs.hf import from_hf_config
from flopcast.specs.model import ModelSpec

CATALOG_DIR = Path(__file__).resolve().parent
HARDWARE_DIR = CATALOG_DIR / "hardware"
MODELS_DIR = CATALOG_DIR / "models"


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # imported here: the model-only commands do not pay for it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)


@cache
def hardware_entry(hw_id: str) -> dict[str, Any]:
    """The raw catalog file of an accelerator (numbers as written, with sources)."""
    return _read_yaml(HARDWARE_DIR / f"{hw_id}.yaml")


@cache
def model_entry(model_id: str) -> dict[str, Any]:
    """The raw catalog file of a model: {id, name, hf_repo, source, reported_params, config}."""
    return json.loads((MODELS_DIR / f"{model_id}.json").read_text())


def _load_hardware(hw_id: str) -> AcceleratorSpec:
    return accelerator_from_mapping(hardware_entry(hw_id), prefix=f"catalog hardware {hw_id}")


def _load_model(model_id: str) -> ModelSpec:
    entry = model_entry(model_id)
    return from_hf_config(entry["config"], name=model_id, source=entry.get("source", ""))


@cache
def hardware_registry() -> Registry[AcceleratorSpec]:
    reg: Registry[AcceleratorSpec] = Registry("hardware")
    for path in sorted(HARDWARE_DIR.glob("*.yaml")):
        reg.register(path.stem, loader=lambda i=path.stem: _load_hardware(i))
    return reg


@cache
def model_registry() -> Registry[ModelSpec]:
    reg: Registry[ModelSpec] = Registry("model")
    for path in sorted(MODELS_DIR.glob("*.json")):
        reg.register(path.stem, loader=lambda i=path.stem: _load_model(i))
    return reg


def get_hardware(hw_id: str) -> AcceleratorSpec:
    return hardware_registry().get(hw_id)


def get_model(model_id: str) -> ModelSpec:
    return model_registry().get(model_id)


def hardware_ids() -> list[str]:
    return hardware_registry().names()


def model_ids() -> list[str]:
    return model_registry().names()


@cache
def revision() -> str:
    """A short digest of every catalog file (names and contents): reports carry it, so a number can be
    traced to the catalog it came from."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in CATALOG_DIR.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".md")):
        h.update(path.relative_to(CATALOG_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@cache
def flopcast_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flopcast")
    except PackageNotFoundError:
        return "unknown"


@cache
def reference_runs() -> dict[str, dict[str, Any]]:
    """Published training runs with GPU-hours, tokens, energy and emissions (reference_runs.yaml)."""
    return dict(_read_yaml(CATALOG_DIR / "reference_runs.yaml").get("runs") or {})
