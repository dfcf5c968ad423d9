"""The shape of the code (issue 19 targets): functions over 80 lines or cyclomatic complexity 25,
import cycles among flopcast modules (function-level imports count), and imports from the lower
storeys (specs, catalog, estimate, sim, search) up to the faces (api, cli, web, report). The import
graph and the checks are tests/unit/test_architecture.py's; this prints the figures.

Usage: python benchmarks/architecture.py        (radon: `pip install radon`, in the test extra)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.test_architecture import GRAPH, _cycles, big_functions  # noqa: E402

FACES = ("api", "cli", "web", "report")
LOWER = ("specs", "catalog", "estimate", "sim", "search")


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def main() -> int:
    big = big_functions()
    cycles = [sorted(c) for c in _cycles()]
    upward = sorted((m, t) for m, ts in GRAPH.items() if _top(m) in LOWER for t in ts if _top(t) in FACES)
    print(f"functions over 80 lines or complexity 25: {len(big)}")
    for row in big:
        print(f"   {row}")
    print(f"import cycles: {len(cycles)} ({sum(map(len, cycles))} modules)")
    for c in cycles:
        print("   " + " <-> ".join(c))
    print(f"imports from specs/catalog/estimate/sim/search up to api/cli/web/report: {len(upward)}")
    for a, b in upward:
        print(f"   {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
