"""The shape of the code (issue 19 targets): functions over 80 lines or cyclomatic complexity 25,
import cycles among flopcast modules (function-level imports count), and imports from the lower
storeys up to the faces.

Usage: python benchmarks/architecture.py        (radon: `pip install radon`)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
FACES = ("flopcast.api", "flopcast.cli", "flopcast.web", "flopcast.report")
LOWER = ("flopcast.specs", "flopcast.catalog", "flopcast.estimate", "flopcast.sim", "flopcast.search")
MAX_LINES, MAX_COMPLEXITY = 80, 25


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every flopcast module each module imports, at any depth of the file."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import sub` is an edge to pkg.sub when sub is a module, else to pkg
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[m] |= {n for n in names if n in mods and n != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    inside = lambda m, tops: any(m == t or m.startswith(t + ".") for t in tops)  # noqa: E731
    return sorted((m, t) for m, ts in graph.items() if inside(m, LOWER) for t in ts if inside(t, FACES))


def big_functions(mods: dict[str, Path]) -> list[tuple[str, int, int]]:
    from radon.complexity import cc_visit

    rows = []
    for p in mods.values():
        blocks = cc_visit(p.read_text())
        for b in blocks:
            for f in [b, *getattr(b, "methods", [])]:
                if type(f).__name__ != "Function":
                    continue
                lines = f.endline - f.lineno + 1
                if lines > MAX_LINES or f.complexity >= MAX_COMPLEXITY:
                    rows.append((f"{p.relative_to(SRC)}:{f.lineno} {f.name}", lines, f.complexity))
    return sorted(set(rows), key=lambda r: -max(r[1] / MAX_LINES, r[2] / MAX_COMPLEXITY))


def main() -> int:
    mods = modules()
    graph = imports(mods)
    cyc, up = cycles(graph), upward(graph)
    big = big_functions(mods)
    print(f"functions over {MAX_LINES} lines or complexity {MAX_COMPLEXITY}: {len(big)}")
    for name, lines, cc in big:
        print(f"   {name}: {lines} lines, complexity {cc}")
    print(f"import cycles: {len(cyc)} ({sum(map(len, cyc))} modules)")
    for c in cyc:
        print("   " + " <-> ".join(c))
    print(f"imports from specs/catalog/estimate/sim/search up to api/cli/web/report: {len(up)}")
    for a, b in up:
        print(f"   {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
