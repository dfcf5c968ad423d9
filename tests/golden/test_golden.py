"""Guard rails for the redesign (issue 19): every golden case recomputed and compared with the JSON
frozen in tests/golden/data/ before the moves. Floats may differ by summation order only (relative
1e-9); everything else must be equal. A figure that changes on purpose is a named defect fix: freeze
it again with `python -m tests.golden.cases --write NAME` and state it in the commit."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.golden.cases import DATA, cases, scrub

REL_TOL = 1e-9
CASES = dict(cases())


def _diff(want: Any, got: Any, path: str, out: list[str]) -> None:
    if len(out) >= 8:
        return
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got or k not in want:
                out.append(f"{path}.{k}: {'missing' if k not in got else 'new'}")
            else:
                _diff(want[k], got[k], f"{path}.{k}", out)
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            out.append(f"{path}: length {len(want)} -> {len(got)}")
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            _diff(a, b, f"{path}[{i}]", out)
    elif isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(want, got, rel_tol=REL_TOL, abs_tol=1e-300):
            out.append(f"{path}: {want!r} -> {got!r}")
    elif isinstance(want, int) and isinstance(got, float) and not isinstance(want, bool):
        if not math.isclose(want, got, rel_tol=REL_TOL):
            out.append(f"{path}: {want!r} -> {got!r}")
    elif want != got:
        out.append(f"{path}: {want!r} -> {got!r}")


def test_every_case_is_frozen():
    """The frozen files and the case list are the same set (a new case is frozen before it counts)."""
    frozen = {p.stem for p in DATA.glob("*.json")}
    assert frozen == set(CASES), (sorted(frozen - set(CASES))[:5], sorted(set(CASES) - frozen)[:5])


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    """The case's JSON equals its frozen copy (floats to 1e-9 relative)."""
    want = json.loads((DATA / f"{name}.json").read_text())
    try:
        got = scrub(json.loads(json.dumps(CASES[name](), default=str)))
    except Exception as exc:
        got = {"error": f"{type(exc).__name__}: {exc}"}
    out: list[str] = []
    _diff(want, got, name, out)
    assert not out, "\n".join(out)
