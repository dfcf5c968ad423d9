"""`Assumption`: a default that resolution or an estimator filled in, printed with every report.

A ground module (imports nothing of flopcast): specs, estimators, workflows and reports all record
assumptions, so the type lives below all of them.
"""

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
