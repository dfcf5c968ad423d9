"""The first-seen log (validation/first_seen.csv): each validation row's error as the code stood
before the row was added to the validation data (issue 22), the prospective figure beside the
cross-validated one.

Columns: id, kind (training | inference | simulation), first_commit (the commit whose validation data first held
the row as a usable case), quantity, measured, predicted, error_frac, note. `error_frac` is `unknown`
when the code before that commit could not predict the row (no estimator yet, a model or key it did
not know): never a guess. A row added from now on is logged when it is added, from the code before
the change (`python -m flopcast.validation.first_seen --add ID...` with the new rows in place and the
model not yet changed: the code in the work tree is then the code before the row).

A simulation row (validation/simulation_runs.yaml) measures several statistics: it is logged as one
entry per measured statistic, with id `RUN:metric` (e.g. `NIM-...-C25:ttft_mean_s`) and the metric as
its quantity; `--add RUN` logs every statistic of the run.

Derivation of the existing rows (`--derive`, a developer tool): the git history of the validation
data files gives each row's first commit; the parent commit's source tree (`git archive`, unpacked
outside the repository) predicts the row's scenario as written today, with today's measured value.
Scenario keys that the old code refused are dropped when they are knobs (kernels, overlap flags,
framework); a row whose refused key changes what is deployed (pools, expert parallelism,
speculation, fine-tuning, precision) is `unknown`.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOG_PATH = HERE / "first_seen.csv"
COLUMNS = ("id", "kind", "first_commit", "quantity", "measured", "predicted", "error_frac", "note")
DATA_FILES = ("training_runs.csv", "inference_runs.csv", "more_runs.yaml", "extra_runs.yaml", "ondevice_runs.yaml")
# refused keys that change what is deployed: without them the old code predicts another deployment
STRUCTURAL_KEYS = ("pool", "prefill", "decode", "ep", "speculative", "finetune", "eplb", "mtp_layers",
                   "precision", "weights_dtype", "kv_dtype", "moe_capacity_factor", "moe_routing")


def load(path: Path = LOG_PATH) -> dict[str, dict[str, str]]:
    """{row id: its log entry}; empty when the log does not exist."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def prospective(ids: Iterable[str], log: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """First-seen figures of these rows: how many are logged, how many with a known error, and the
    median |error| and signed mean over those (None when none is known)."""
    log = load() if log is None else log
    ids = list(ids)
    known = [float(log[i]["error_frac"]) for i in ids if i in log and log[i]["error_frac"] != "unknown"]
    a = [abs(e) for e in known]
    return {"num_logged": sum(i in log for i in ids), "num_known": len(known),
            "median_abs_error_frac": statistics.median(a) if a else None,
            "signed_mean_error_frac": statistics.fmean(known) if known else None}


def write(entries: Sequence[dict[str, Any]], path: Path = LOG_PATH) -> None:
    """Write the log (sorted by kind, then id)."""
    rows = sorted(entries, key=lambda e: (e["kind"], e["id"]))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in rows:
            w.writerow({k: _cell(e.get(k, "")) for k in COLUMNS})


def _cell(v: Any) -> str:
    return f"{v:.10g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- derivation (git)
RUNNER = r"""
import copy, json, re, sys
from flopcast import api
STRUCTURAL = set(sys.argv[1].split(","))
PAT = re.compile(r"unknown ([\w.]+?)(?: field| key)? '([^']+)'")
def refused(msg, sc):
    m = PAT.search(msg)
    if not m:
        return None
    sect, key = (m.group(1).split(".", 1) if "." in m.group(1) else (m.group(1), m.group(2)))
    if isinstance(sc.get(sect), dict) and key in sc[sect]:
        return sect, key
    return None
out = {}
for job in json.load(sys.stdin):
    sc, dropped = copy.deepcopy(job["scenario"]), []
    for _ in range(16):
        try:
            if job["kind"] == "training":
                v = api.estimate_training(sc).step_time_s
            else:
                v = getattr(api.estimate_serving(sc), job["quantity"])
            out[job["id"]] = {"predicted": float(v), "dropped": dropped}
            break
        except Exception as e:
            msg = (str(e).splitlines() or [type(e).__name__])[0]
            hit = refused(msg, sc)
            if hit is None or hit[1] in STRUCTURAL:
                out[job["id"]] = {"error": msg[:160], "dropped": dropped}
                break
            del sc[hit[0]][hit[1]]
            dropped.append(".".join(hit))
print(json.dumps(out))
"""


def _git(*args: str) -> str:
    """git at the repository's top (paths relative to it)."""
    top = HERE.parents[2]
    return subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, check=True).stdout


def _ids_at(commit: str) -> set[str]:
    """Ids of the rows the validation data held at `commit` (CSV rows and written scenarios)."""
    import io

    import yaml

    out: set[str] = set()
    for name in DATA_FILES:
        try:
            text = _git("show", f"{commit}:src/flopcast/validation/{name}")
        except subprocess.CalledProcessError:
            continue
        if name.endswith(".csv"):
            out |= {r["id"] for r in csv.DictReader(io.StringIO(text))}
            continue
        doc = yaml.safe_load(text) or {}
        for kind in ("training", "inference"):
            v = doc.get(kind) or {}
            out |= set(v) if isinstance(v, dict) else {e["id"] for e in v}
    return out


def first_commits() -> dict[str, str]:
    """{row id: the first commit whose validation data held it} from the data files' history."""
    commits = _git("log", "--reverse", "--format=%H", "--",
                   *(f"src/flopcast/validation/{n}" for n in DATA_FILES)).split()
    first: dict[str, str] = {}
    for c in commits:
        for rid in _ids_at(c):
            first.setdefault(rid, c)
    return first


def _jsonable(scenario: Any) -> Any:
    """The scenario as a mapping (a file is read)."""
    if isinstance(scenario, (str, Path)):
        from flopcast.specs.scenario import load_scenario

        return load_scenario(scenario)
    return scenario


def run_at(commit: str, jobs: list[dict[str, Any]], tmp_root: Path = Path("/tmp")) -> dict[str, Any]:
    """Predict `jobs` with the source tree of `commit` (unpacked under tmp_root/fs_<sha>)."""
    where = tmp_root / f"fs_{commit[:10]}"
    if not (where / "src" / "flopcast").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(HERE.parents[2]), "archive", commit, "src"],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    env = {"PYTHONPATH": str(where / "src"), "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run([sys.executable, "-c", RUNNER, ",".join(STRUCTURAL_KEYS)], input=json.dumps(jobs),
                          capture_output=True, text=True, env=env, cwd=str(where))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {j["id"]: {"error": f"the code at {commit[:10]} does not run: {tail[:120]}"} for j in jobs}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _entry(case: Any, kind: str, commit: str, res: dict[str, Any]) -> dict[str, Any]:
    e: dict[str, Any] = {"id": case.id, "kind": kind, "first_commit": commit, "quantity": case.quantity,
                         "measured": float(case.measured), "predicted": "", "error_frac": "unknown", "note": ""}
    if "predicted" in res:
        e["predicted"] = res["predicted"]
        e["error_frac"] = (res["predicted"] - case.measured) / case.measured
        if res.get("dropped"):
            e["note"] = "the old code refused and ran without: " + " ".join(res["dropped"])
    else:
        e["note"] = "the code before the row could not predict it: " + res.get("error", "")
    return e


def derive(kinds: Sequence[str] = ("training", "inference")) -> list[dict[str, Any]]:
    """Log entries of every current validation row, each predicted by its first commit's parent."""
    from flopcast.validation import runs

    first = first_commits()
    by_commit: dict[str, list[tuple[str, Any]]] = {}
    for kind in kinds:
        for case in runs.builtin(kind)[0]:
            by_commit.setdefault(first.get(case.id, ""), []).append((kind, case))
    out = []
    for commit, items in by_commit.items():
        if not commit:
            out += [_entry(c, k, "", {"error": "no commit of the validation data holds the row"}) for k, c in items]
            continue
        jobs = [{"id": c.id, "kind": k, "quantity": c.quantity, "scenario": _jsonable(c.scenario)} for k, c in items]
        parent = _git("rev-parse", f"{commit}^").strip()
        res = run_at(parent, jobs)
        out += [_entry(c, k, commit[:10], res.get(c.id, {"error": "no result"})) for k, c in items]
    return out


def add(ids: Sequence[str], note: str = "") -> list[dict[str, Any]]:
    """Log rows just added (before any model change): their error under the code as it stands now."""
    from flopcast.estimate.calibration import resolve_profile
    from flopcast.validation import runs

    log = load()
    head = _git("rev-parse", "HEAD").strip()[:10]
    new = []
    from flopcast.validation import speculative

    for kind in ("training", "inference", "on-device", "speculative"):
        profile = None if kind == "speculative" else resolve_profile(None, "inference" if kind == "on-device"
                                                                        else kind)
        for case in speculative.load_cases() if kind == "speculative" else runs.builtin(kind)[0]:
            if case.id in ids:
                p = case.predict(profile)
                new.append(_entry(case, kind, f"after {head}", {"predicted": p}) | {"note": note})
    new += _simulation_entries(ids, head, note)
    write([*log.values(), *new])
    return new


def _simulation_entries(ids: Sequence[str], head: str, note: str) -> list[dict[str, Any]]:
    """Entries of the simulation runs named in `ids` (a run id: all its statistics; `RUN:metric`:
    one), simulated by the code as it stands."""
    from flopcast.validation import simulation

    out = []
    for run in simulation.load_runs():
        wanted = [m for m in run.measured if run.id in ids or f"{run.id}:{m}" in ids]
        if not wanted:
            continue
        pred = simulation.predict(run)
        for m in wanted:
            e = {"id": f"{run.id}:{m}", "kind": "simulation", "first_commit": f"after {head}", "quantity": m,
                 "measured": run.measured[m], "predicted": "", "error_frac": "unknown", "note": note}
            if m in pred:
                e["predicted"] = pred[m]
                e["error_frac"] = (pred[m] - run.measured[m]) / run.measured[m]
            out.append(e)
    return out


def main(argv: Sequence[str]) -> None:
    if argv[:1] == ["--derive"]:
        write(derive())
    elif argv[:1] == ["--add"]:
        add(argv[1:], note="logged before the model changed for it")
    else:
        raise SystemExit("usage: python -m flopcast.validation.first_seen --derive | --add ID...")


if __name__ == "__main__":
    main(sys.argv[1:])
