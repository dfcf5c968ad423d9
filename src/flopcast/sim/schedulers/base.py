"""What every scheduler is: the engine calls `start` on an idle replica that may run an iteration,
`finish` when an iteration ends, and `on_event` for any other engine event a scheduler scheduled
(the disaggregated KV transfer). Schedulers register by the name users write in
`inference.scheduler`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from flopcast.registry import Registry
from flopcast.sim.state import Replica, SimState


class Scheduler(ABC):
    """One scheduling policy, bound to the state of one simulation."""

    name: ClassVar[str]

    def __init__(self, st: SimState):
        self.st = st

    @abstractmethod
    def start(self, rep: Replica, now: float) -> None:
        """Form the next iteration of the idle replica `rep` and launch it (or leave it idle)."""

    @abstractmethod
    def finish(self, rep: Replica, now: float, plan: Any) -> None:
        """The iteration `plan` (what `start` launched) of `rep` ends at `now`."""

    def on_event(self, kind: str, rep: Replica, data: Any, now: float) -> None:
        """An engine event other than an iteration's `end`."""
        raise ValueError(f"scheduler {self.name}: no engine event {kind!r}")


SCHEDULERS: Registry[type[Scheduler]] = Registry("scheduler")
