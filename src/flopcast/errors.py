"""Errors for invalid input. Exceptions are for bad input and bugs; an infeasible plan is a result.

Every message is one line that names the field, what was given and what is accepted.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FlopcastError(Exception):
    """Base class of every error flopcast raises on purpose (the CLI turns these into exit code 2)."""


class InvalidScenario(FlopcastError, ValueError):
    """A scenario, quantity or config field is malformed or violates a rule."""


class UnknownName(FlopcastError, KeyError):
    """A name (catalog id, model_type, option) is not known; the message lists close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], *, message: str | None = None):
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(message or unknown_name_message(kind, name, self.known))

    def __str__(self) -> str:  # KeyError would otherwise print the repr with quotes
        return str(self.args[0])


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of `name` among `known`, best first (case-insensitive)."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(str(name).lower(), list(lowered), n=n, cutoff=0.5)
    out = [lowered[h] for h in hits]
    # Substring matches help for short inputs such as "h100" -> "h100-sxm", "h100-pcie".
    for k in known:
        if len(out) >= n:
            break
        if str(name).lower() in k.lower() and k not in out:
            out.append(k)
    return out


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    hints = did_you_mean(name, known)
    if hints:
        msg = f"unknown {kind} {name!r}; did you mean {', '.join(repr(h) for h in hints)}?"
        if len(known) <= 12:
            msg += f" (accepted: {', '.join(known)})"
        return msg
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f"unknown {kind} {name!r}; known: {shown}"
