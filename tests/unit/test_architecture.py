"""The house rules of docs/architecture.md, read from the source: the import graph of every module under
src/flopcast (module-level and function-level imports alike, parsed with ast, nothing imported) has no
cycles and keeps to the storeys; and the public surface of `flopcast.api` is pinned."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from flopcast import api

PACKAGE_DIR = Path(api.__file__).resolve().parent

# docs/architecture.md: each storey imports only itself and the storeys below it (lowest first).
STOREYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "units", "dtypes", "registry", "inputs", "assumption", "files")),
    ("data", ("specs", "catalog")),
    ("engines", ("estimate", "sim", "search")),
    ("workflows", ("run",)),
    ("consumers", ("fleet", "validation", "audit")),
    ("faces", ("api", "cli", "web", "report")),
)
LEVEL = {top: i for i, (_, tops) in enumerate(STOREYS) for top in tops}

# No cycle is exempt (the web package's cycle is gone); an entry here needs a reason beside it.
CYCLE_EXEMPT: frozenset[frozenset[str]] = frozenset()

# Imports from the data storey up to the engines, owned by the specs/estimate helpers of issue 19
# (calibration profiles and framework stacks are resolved into the specs by estimate/ code); delete
# each pair when its import is gone.
STOREY_EXEMPT = frozenset({
    ("flopcast.specs.scenario", "flopcast.estimate.calibration"),
    ("flopcast.specs.scenario", "flopcast.estimate.counts"),
    ("flopcast.specs.scenario", "flopcast.estimate.efficiency"),
    ("flopcast.specs.serving", "flopcast.estimate.calibration"),
    ("flopcast.specs.serving", "flopcast.estimate.efficiency"),
    ("flopcast.specs.workload", "flopcast.estimate.calibration"),
    ("flopcast.specs.workload", "flopcast.estimate.efficiency"),
})

# The public surface of flopcast.api. Adding or removing a name is a conscious change: edit this list.
PUBLIC_API = (
    "Assumption", "BUDGET_BUSY", "BUDGET_MFU", "DEFAULT_KV_DTYPE", "DEFAULT_SEQ_LEN", "FleetReport",
    "MAX_MICROBATCH_TOKENS", "ModelReport", "PlanReport", "SWEEP_COLUMNS", "audit_claims", "budget", "calibrate",
    "estimate_serving", "estimate_training", "hardware_dict", "list_hardware", "list_models", "list_sites",
    "model_counts", "plan", "plan_fleet", "search_training", "show_hardware", "show_model", "simulate_serving",
    "size_fleet", "sweep_training", "validate",
)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every flopcast module by dotted name: its file and whether it is a package's __init__."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The flopcast modules `name` imports anywhere in its source (a name imported from a package
    counts as its submodule when there is one, else as the package)."""
    path, is_pkg = MODULES[name]
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "flopcast"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "flopcast":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return {m for m in found if m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in GRAPH:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(GRAPH[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def _top(module: str) -> str:
    return module.split(".")[1]


def test_the_graph_is_read():
    """The parser sees the imports it must see (a guard against a test that passes on an empty graph)."""
    assert "flopcast.run.plan" in GRAPH["flopcast.api"]
    assert "flopcast.estimate.training" in GRAPH["flopcast.run.training"]
    assert "flopcast.run.serving" in GRAPH["flopcast.fleet.capacity"]   # a function-level import
    assert len(GRAPH) > 50


def test_no_import_cycles():
    """No two flopcast modules import each other, directly or through others; function-level imports
    count (they are cycles deferred, not removed)."""
    cycles = [sorted(c) for c in _cycles() if c not in CYCLE_EXEMPT]
    assert not cycles, f"import cycles: {cycles}"


def test_every_top_level_module_has_a_storey():
    """A new top-level module or package is placed in a storey (here and in docs/architecture.md)."""
    unplaced = sorted({_top(m) for m in MODULES if m != "flopcast"} - set(LEVEL))
    assert not unplaced, f"not in the storey table: {unplaced}"


def test_storeys_import_only_downwards():
    """Each storey imports only its own and the storeys below it: ground < data (specs, catalog) <
    engines (estimate, sim, search) < workflows (run) < consumers (fleet, validation, audit) < faces
    (api, cli, web, report). So the engines never import a workflow or a face, and fleet/validation
    never import api."""
    upward = sorted(
        f"{m} ({STOREYS[LEVEL[_top(m)]][0]}) -> {t} ({STOREYS[LEVEL[_top(t)]][0]})"
        for m, targets in GRAPH.items() if m != "flopcast"
        for t in targets if t != "flopcast" and LEVEL[_top(t)] > LEVEL[_top(m)] and (m, t) not in STOREY_EXEMPT)
    assert not upward, "imports up the storeys:\n" + "\n".join(upward)


def test_consumers_and_workflows_never_import_api():
    """fleet, validation, audit and run reach the workflows through flopcast.run, never the facade."""
    bad = sorted(m for m, targets in GRAPH.items() if m != "flopcast"
                 and _top(m) in ("fleet", "validation", "audit", "run") and "flopcast.api" in targets)
    assert not bad


def test_api_all_is_its_public_names():
    """`api.__all__` is exactly the module's public names (httpx's test_exported_members): nothing
    public by accident, nothing exported that is not there."""
    public = {n for n in vars(api) if not n.startswith("_")} | set(api._HOME_OF)
    assert set(api.__all__) == public
    assert len(api.__all__) == len(set(api.__all__))
    assert all(getattr(api, n) is not None for n in api.__all__)     # every lazy re-export resolves
    with pytest.raises(AttributeError):
        api.resolve  # noqa: B018  (not public: specs.scenario.resolve is the engines' own)


def test_api_surface_is_frozen():
    """The public names of flopcast.api are the frozen list: removing or adding one is a conscious
    change of this test (the CLI, the web service, the tests and the README call them)."""
    assert sorted(api.__all__) == sorted(PUBLIC_API)


@pytest.mark.parametrize("name", [n for n in PUBLIC_API if inspect.isfunction(getattr(api, n))])
def test_api_functions_are_annotated(name):
    """Every api function states its parameter and return types."""
    sig = inspect.signature(getattr(api, name))
    assert sig.return_annotation is not inspect.Signature.empty
    missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not missing, f"api.{name}: parameters without a type: {missing}"


def big_functions() -> list[str]:
    """Functions in src/flopcast over 80 lines or at cyclomatic complexity 25 or more (radon)."""
    from radon.complexity import cc_visit

    src = Path(__file__).resolve().parents[2] / "src" / "flopcast"
    big = []
    for path in sorted(src.rglob("*.py")):
        for block in cc_visit(path.read_text()):
            for f in [block, *getattr(block, "methods", [])]:
                if type(f).__name__ == "Function" and (f.endline - f.lineno + 1 > 80 or f.complexity >= 25):
                    big.append(f"{path.relative_to(src)}:{f.lineno} {f.name} ({f.endline - f.lineno + 1} lines, "
                               f"complexity {f.complexity})")
    return big


def test_no_function_over_80_lines_or_complexity_25():
    """No function in src/flopcast is over 80 lines or at cyclomatic complexity 25 (radon): a new
    mechanism is a new op-row kind or stage function, not a branch in an existing one."""
    pytest.importorskip("radon.complexity")
    big = big_functions()
    assert not big, "\n".join(big)
