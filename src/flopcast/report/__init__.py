"""Reports are data: frozen results with `to_dict()`; renderers turn them into tables.

`Assumption` lives in the ground module `flopcast.assumption`; it is re-exported here for callers
that import it from `flopcast.report`.
"""

from __future__ import annotations

from flopcast.assumption import Assumption

__all__ = ["Assumption"]
