"""`flopcast sweep`: a plan search per combination of varied scenario values, written as a table."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario, UnknownName
from flopcast.run.search import search_training

SWEEP_COLUMNS = ("tp", "pp", "dp", "cp", "ep", "sp", "vpp", "zero_stage", "recompute", "microbatch_seqs", "offload",
                 "step_time_s", "tokens_per_s", "tokens_per_s_per_device", "mfu", "memory_per_device_bytes",
                 "num_evaluated", "num_fitting", "error")
# a serving sweep (an inference section and no training section): the analytic estimate per
# combination, at the full batch and at the SLO (at_slo), ranked by cost per token at the SLO
SERVING_SWEEP_COLUMNS = ("fits", "batch_size", "output_tokens_per_s", "cost_per_million_output_tokens_usd",
                         "slo_met", "slo_batch_size", "slo_output_tokens_per_s", "slo_output_tokens_per_s_per_device",
                         "slo_tpot_s", "slo_cost_per_million_output_tokens_usd", "error")


def parse_vary(vary: list[str]) -> list[tuple[str, list[Any]]]:
    from flopcast import inputs

    out: list[tuple[str, list[Any]]] = []
    for item in vary:
        if "=" not in item:
            raise InvalidScenario(f"--vary: {item!r} should read KEY=V1,V2 (e.g. hardware=h100-sxm,b200)")
        key, values = item.split("=", 1)
        vals = [inputs.load_yaml(v, what=f"--vary {key}") for v in values.split(",") if v.strip()]
        inputs.check_finite(vals, where=f"--vary {key}")
        if not key or not vals:
            raise InvalidScenario(f"--vary: {item!r} should read KEY=V1,V2 with at least one value")
        if any(k == key.strip() for k, _ in out):
            raise InvalidScenario(f"--vary: {key.strip()!r} is given twice; list all its values once "
                                  f"({key.strip()}=V1,V2,...)")
        out.append((key.strip(), vals))
    return out


def set_path(data: dict, dotted: str, value: Any) -> None:
    from flopcast.specs.scenario import TOP_LEVEL_KEYS

    keys = dotted.split(".")
    if keys[0] not in TOP_LEVEL_KEYS:
        raise UnknownName("--vary key", keys[0], TOP_LEVEL_KEYS)
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def _scaled(progress: Callable[[int, int], Any] | None, index: int, count: int) -> Callable[[int, int], Any] | None:
    """The progress of combination `index` of `count`, in thousandths of the whole sweep."""
    if progress is None:
        return None
    progress(1000 * index, 1000 * count)

    def inner(done: int, total: int) -> None:
        progress(1000 * index + (1000 * done) // max(total, 1), 1000 * count)
    return inner


def sweep_training(scenario: str | Path | Mapping[str, Any], *, vary: list[str], objective: str = "throughput",
                   backend: str = "local", ray_address: str | None = None, workers: int | None = None,
                   out: str | None = None, progress: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """`flopcast sweep`: one search per combination of the varied values; the best plan of each. A
    scenario with an inference section and no training section is a serving sweep: the serving
    estimate of each combination, ranked by cost per output token at its SLO (`serving_row`).
    Writes `out` as CSV, or as Parquet when its name ends in .parquet (pyarrow, the `parquet` extra).
    `progress(done, total)` counts combinations in thousandths (each search's own progress inside)."""
    import copy
    import itertools

    from flopcast.errors import FlopcastError
    from flopcast.specs.scenario import load_scenario

    write = table_writer(Path(out)) if out else None
    base = load_scenario(scenario)
    base_dir = base.pop("_base_dir")
    axes = parse_vary(vary)
    from flopcast.specs import limits

    limits.check_count(math.prod(len(v) for _, v in axes), limits.MAX_SWEEP_COMBINATIONS,
                       field="--vary: combinations", hint="one search each; vary fewer values")
    serving = "inference" in base and "training" not in base
    rows = []
    combos = list(itertools.product(*[vals for _, vals in axes])) if axes else [()]
    for index, combo in enumerate(combos):
        inner = _scaled(progress, index, len(combos))
        sc = copy.deepcopy(base)
        sc.pop("parallel", None)
        for (key, _), value in zip(axes, combo, strict=True):
            set_path(sc, key, value)
        if isinstance(sc.get("model"), str) and sc["model"].endswith(".json") and not Path(sc["model"]).is_absolute():
            sc["model"] = str(Path(base_dir) / sc["model"])
        row: dict[str, Any] = {key: value for (key, _), value in zip(axes, combo, strict=True)}
        if serving:
            rows.append(row | serving_row(sc))
            continue
        try:
            res = search_training(sc, top=1, objective=objective, backend=backend, ray_address=ray_address,
                                  workers=workers, progress=inner)
            best = res.to_dict()["plans"][0] if res.plans else {}
            row.update({c: best.get(c) for c in SWEEP_COLUMNS if c in best})
            row.update(num_evaluated=res.num_evaluated, num_fitting=res.num_fitting,
                       error=None if res.plans else "no plan fits in memory")
        except FlopcastError as e:
            row["error"] = str(e)
        rows.append(row)
    columns = [k for k, _ in axes] + list(SERVING_SWEEP_COLUMNS if serving else SWEEP_COLUMNS)
    if serving:
        rows.sort(key=_serving_rank)
    written = []
    if write:
        written.append(write(columns, rows))
    return {"columns": columns, "rows": rows, "written": written}


def serving_row(sc: Mapping[str, Any]) -> dict[str, Any]:
    """One combination of a serving sweep: the estimate at the configured (or largest) batch and its
    operating point at the SLO; an invalid combination is a row with its error."""
    from flopcast.errors import FlopcastError
    from flopcast.run.serving import estimate_serving

    try:
        d = estimate_serving(sc).to_dict()
    except FlopcastError as e:
        return {"error": str(e)}
    row = {c: d.get(c) for c in ("fits", "batch_size", "output_tokens_per_s", "cost_per_million_output_tokens_usd")}
    a = d.get("at_slo") or {}
    row.update(slo_met=a.get("met"), slo_batch_size=a.get("batch_size"),
               slo_output_tokens_per_s=a.get("output_tokens_per_s"),
               slo_output_tokens_per_s_per_device=a.get("output_tokens_per_s_per_device"), slo_tpot_s=a.get("tpot_s"),
               slo_cost_per_million_output_tokens_usd=a.get("cost_per_million_output_tokens_usd"),
               error=None if d["fits"] else d.get("infeasible_reason"))
    return row


def _serving_rank(row: dict[str, Any]) -> tuple[float, float]:
    """Cheapest per output token at the SLO first (without an SLO, at the full batch); rows with no
    cost (no price, missed SLO, errors) last, by throughput at the SLO."""
    cost = row.get("slo_cost_per_million_output_tokens_usd")
    if row.get("slo_met") is None:
        cost = row.get("cost_per_million_output_tokens_usd")
    rate = row.get("slo_output_tokens_per_s") or row.get("output_tokens_per_s") or 0.0
    return (cost if cost is not None else math.inf, -rate)


def table_writer(path: Path):
    """A function writing (columns, rows) to `path`: .csv, or .parquet with pyarrow (the `parquet` extra).
    Other suffixes, and Parquet without pyarrow, are refused here, before any work is done."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidScenario(f"--out {path}: writing Parquet needs pyarrow (pip install 'flopcast[parquet]'); "
                                  "or give a .csv file") from None

        def write(columns: list[str], rows: list[dict[str, Any]]) -> str:
            pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), path)
            return str(path)
    elif suffix == ".csv":
        import csv

        def write(columns: list[str], rows: list[dict[str, Any]]) -> str:
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow({c: r.get(c) for c in columns})
            return str(path)
    else:
        raise InvalidScenario(f"--out {path}: give a file name ending in .csv or .parquet")
    return write

