"""Reports are data: frozen results with `to_dict()`; renderers turn them into tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Assumption:
    """A default that resolution filled in: printed with every report so that none is hidden."""

    name: str
    value: Any
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "why": self.why}
