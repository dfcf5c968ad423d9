"""Terminal output for people: the plan reads as a briefing (verdict first), each block once, numbers
formatted for people, fronts trimmed, --version, Parquet written or refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flopcast import api
from flopcast.errors import InvalidScenario
from flopcast.report.briefing import duration, money, verdict
from flopcast.report.render import sweep_table, to_markdown, trim_front
from flopcast.units import format_count

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "flopcast.cli", *map(str, args)], capture_output=True, text=True)


def test_counts_pick_their_prefix_after_rounding():
    """A count just under a prefix boundary rounds into the next prefix: 999.6M is 1B, never 1e+03M."""
    assert format_count(999.6e6) == "1B"
    assert format_count(8.03e9) == "8.03B" and format_count(124e6) == "124M" and format_count(999.7) == "1K"
    assert "e+" not in "".join(format_count(10 ** (k / 7)) for k in range(100))


def test_money_and_durations_for_people():
    """Money gets k/M/B suffixes at three figures; durations pick days, hours, minutes, s or ms."""
    assert money(85_896_738) == "$85.9M" and money(0.0629) == "$0.0629" and money(None) == "n/a"
    assert duration(7_002_929) == "81.1 days" and duration(7.53) == "7.53 s" and duration(0.0129) == "12.9 ms"


def test_flagship_plan_reads_as_a_briefing():
    """`flopcast plan` on the flagship example starts with the headline and the verdict (fit, time,
    cost, power, carbon) before any table, and prints the Assumptions block exactly once."""
    r = run("plan", ROOT / "examples" / "llama3-405b-pretrain.yaml")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Training llama-3.1-405b on 16,384 x h100-sxm")
    assert lines[1].startswith("Verdict")
    head = "\n".join(lines[:10])
    for label in ("training fits", "time to train", "cost per run", "power", "carbon per run"):
        assert label in head, label
    assert r.stdout.index("Verdict") < r.stdout.index("Memory per device") < r.stdout.index("Model llama-3.1-405b")
    assert r.stdout.count("Assumptions") == 1


@pytest.mark.parametrize("example", ["llama3-8b-serving-sim.yaml", "mixtral-serving.yaml", "llama3-8b-train-h100.yaml"])
def test_every_block_printed_once(example):
    """Section and plan assumptions are merged into one block; each (name, value) appears once."""
    r = run("plan", ROOT / "examples" / example)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Assumptions") == 1
    assert r.stdout.count("cluster.devices_per_node") <= 1


def test_verdict_flags_what_does_not_work():
    """A plan that does not fit is a finding with ok=False, first in the verdict; the Markdown form
    of the report carries the verdict too."""
    sc = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 4096, "global_batch_seqs": 8},
          "parallel": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 0, "recompute": "none"}}
    d = api.plan(sc).to_dict()
    first = verdict(d)[0]
    assert first.label == "training fits" and first.ok is False
    from flopcast.report.render import plan_tables

    md = to_markdown(plan_tables(d))
    assert md.index("does not fit in memory") < md.index("### Verdict") < md.index("### Cluster")


def test_pareto_front_is_trimmed():
    """trim_front keeps the points within half the best throughput, at most max_rows of them, with the
    best and the last kept point included."""
    front = [{"tokens_per_s_per_device": 1000 - 10 * i} for i in range(100)]
    rows = trim_front(front, max_rows=10)
    assert len(rows) == 10 and rows[0] is front[0] and rows[-1] is front[50]
    assert all(r["tokens_per_s_per_device"] >= 500 for r in rows)
    assert trim_front(front[:3], max_rows=10) == front[:3]


def test_sweep_headers_are_not_truncated():
    """Sweep tables use short headers and fold constant plan keys into the title; no header is cut."""
    from rich.console import Console

    rows = [{"hardware": h, "tp": 8, "pp": 4, "dp": 32, "cp": 1, "ep": 1, "sp": True, "vpp": 1, "zero_stage": 1,
             "recompute": "none", "microbatch_seqs": 1, "offload": "none", "step_time_s": 14.1,
             "tokens_per_s": 222865.0, "tokens_per_s_per_device": 218.0, "mfu": 0.741,
             "memory_per_device_bytes": 8.3e10, "num_evaluated": 369780, "num_fitting": 1, "error": None}
            for h in ("a100-sxm-80gb", "h100-sxm")]
    cols = list(rows[0])
    console = Console(width=100, record=True, markup=False)
    console.print(sweep_table({"columns": cols, "rows": rows}))
    text = console.export_text()
    assert "…" not in text and "a100-sxm-80gb" in text and "74.1%" in text and "(all: cp 1" in text


def test_version():
    """`flopcast --version` prints the package version and exits 0."""
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("flopcast ")


def test_sweep_out_parquet_or_refused(tmp_path):
    """`--out x.parquet` writes a Parquet file (with pyarrow); any other suffix than .csv/.parquet is
    refused before the sweep runs."""
    pq = pytest.importorskip("pyarrow.parquet")
    base = tmp_path / "base.yaml"
    base.write_text(json.dumps({"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
                                "training": {"seq_len": 4096, "global_batch_seqs": 64}}))
    out = tmp_path / "sweep.parquet"
    api.sweep_training(str(base), vary=["hardware=h100-sxm,a100-sxm-80gb"], workers=1, out=str(out))
    table = pq.read_table(out)
    assert table.num_rows == 2 and set(table.column("hardware").to_pylist()) == {"h100-sxm", "a100-sxm-80gb"}
    with pytest.raises(InvalidScenario, match=r"\.csv or \.parquet"):
        api.sweep_training(str(base), vary=["hardware=h100-sxm"], out=str(tmp_path / "x.xlsx"))


def test_docs_scenario_lists_every_accepted_key():
    """docs/scenario.md, which error messages point to, has a row for every key the parsers accept
    (top level, cluster, training, parallel, inference, workload, arrival, lengths, SLO, scheduler,
    hardware fields, efficiency)."""
    from flopcast.sim import workload as wl
    from flopcast.specs import hardware, parallel, scenario, serving
    from flopcast.specs import workload as tw

    text = (ROOT / "docs" / "scenario.md").read_text()
    keys = {*scenario.TOP_LEVEL_KEYS, *scenario.CLUSTER_KEYS, *tw.TRAINING_KEYS, *parallel.ALL_PARALLEL_KEYS,
            *serving.INFERENCE_KEYS, *wl.WORKLOAD_KEYS, *wl.ARRIVAL_KEYS, *wl.LENGTH_KEYS, *wl.SLO_KEYS,
            *wl.DISAGG_KEYS, *hardware.ACCEPTED_KEYS, *hardware.EFFICIENCY_KEYS}
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, missing


def test_unknown_keys_point_to_the_docs(tmp_path):
    """An unknown scenario or section key names docs/scenario.md, which exists in the repository."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llama-3.1-8b\nhardware: h100-sxm\ntraining: {seq_len: 10, global_bach_seqs: 3}\n")
    r = run("plan", bad)
    assert r.returncode == 2 and "docs/scenario.md" in r.stderr and "global_batch_seqs" in r.stderr
    assert (ROOT / "docs" / "scenario.md").is_file()
