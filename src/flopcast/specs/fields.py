"""Small field readers shared by the scenario sections (training, parallel, inference): unknown keys
and values get suggestions, flags must be booleans. One place for the messages' wording."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName

DOC = "docs/scenario.md"   # every scenario key with its type, default, unit and an example


def check_keys(data: Mapping[str, Any], section: str, accepted: tuple[str, ...]) -> None:
    """Every key of `data` must be in `accepted` (an unknown one gets 'did you mean' and the docs page)."""
    for key in data:
        if key not in accepted:
            err = UnknownName(f"{section} field", str(key), accepted)
            raise UnknownName(err.kind, err.name, accepted, message=f"{err} (keys: {DOC})")


def choice(data: Mapping[str, Any], section: str, key: str, default: str, accepted: tuple[str, ...]) -> str:
    """A value from a closed set of names."""
    value = str(data.get(key, default))
    if value not in accepted:
        raise UnknownName(f"{section}.{key}", value, accepted)
    return value


def flag(data: Mapping[str, Any], section: str, key: str, default: bool) -> bool:
    """A true/false value (no truthy strings or numbers)."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InvalidScenario(f"{section}.{key}: expected true or false, got {value!r}")
    return value


def bounded_int(value: Any, field: str, lo: int, hi: int) -> int:
    """An integer in lo..hi (booleans and floats refused), named `field` in the error."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidScenario(f"{field}: expected an integer {lo}..{hi}, got {value!r}")
    return value
