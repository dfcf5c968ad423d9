"""The CLI: JSON keys of SCENARIO.md, one-line errors with exit code 2, no heavy imports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llama3-405b-pretrain.yaml"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flopcast.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def test_model_show_json_keys():
    """`model show --json` prints one object with the contract keys, in SI units."""
    r = run("model", "show", "llama-3.1-8b", "--json", "--seq-len", "8192", "--kv-dtype", "fp8")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("params_total", "params_active", "params_breakdown", "forward_flops_per_token",
                "kv_cache_bytes_per_token"):
        assert key in d
    assert d["params_total"] == 8_030_261_248
    assert d["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 1
    assert d["seq_len"] == 8192


def test_model_show_human_table():
    """Without --json a table with the counts is printed."""
    r = run("model", "show", "mixtral-8x7b")
    assert r.returncode == 0 and "46,702,792,704" in r.stdout


def test_catalog_listings_json():
    """models and hardware --json print one object each."""
    models = json.loads(run("models", "--json").stdout)["models"]
    hardware = json.loads(run("hardware", "--json").stdout)["hardware"]
    assert {m["id"] for m in models} >= {"llama-3.1-405b", "deepseek-v3"}
    assert {h["id"] for h in hardware} >= {"h100-sxm", "b200"}
    one = json.loads(run("hardware", "h100-sxm", "--json").stdout)
    assert one["sources"]["hbm_bandwidth"]


def test_plan_example():
    """The README's main command works and reports model, hardware and cluster."""
    r = run("plan", EXAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["model"]["params_total"] == 405_853_388_800
    assert d["cluster"]["num_nodes"] == 2048
    assert d["training"]["step_time_s"] > 0
    assert d["training"]["power_facility_w"] > 0 and d["training"]["cost_usd"] > 0
    assert d["pending_sections"] == []
    human = run("plan", EXAMPLE)
    assert human.returncode == 0 and "Cluster" in human.stdout


def _assert_one_line_error(r, *fragments):
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_unknown_model_suggests(tmp_path):
    """An unknown model id: did you mean, exit 2, one line."""
    _assert_one_line_error(run("model", "show", "llama-3.1-8", cwd=tmp_path), "did you mean", "llama-3.1-8b")


def test_unsupported_model_type_lists_supported(tmp_path):
    """A config.json with an unsupported model_type lists the supported ones."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    _assert_one_line_error(run("model", "show", cfg), "not supported", "qwen3_moe", "gpt_oss")


def test_malformed_quantity_names_the_field(tmp_path):
    """A malformed quantity in a scenario names the field and the accepted form."""
    sc = tmp_path / "s.yaml"
    sc.write_text("model: gpt2\nhardware: {base: h100-sxm, hbm_capacity: 80 gb}\n")
    _assert_one_line_error(run("plan", sc), "hardware.hbm_capacity", "ambiguous")


def test_unknown_scenario_key_and_hardware(tmp_path):
    """Unknown top-level keys and hardware ids get suggestions."""
    sc = tmp_path / "s.yaml"
    sc.write_text("model: gpt2\nhardware: h100-sxm\ntrainig: {}\n")
    _assert_one_line_error(run("plan", sc), "did you mean 'training'")
    sc.write_text("model: gpt2\nhardware: h100\n")
    _assert_one_line_error(run("plan", sc), "did you mean", "h100-sxm")


def test_bad_options_and_files(tmp_path):
    """Bad option values and missing files are one-line errors with exit code 2."""
    _assert_one_line_error(run("model", "show", "gpt2", "--seq-len", "0"), "--seq-len")
    _assert_one_line_error(run("model", "show", "gpt2", "--kv-dtype", "fp7"), "kv_dtype", "fp8")
    _assert_one_line_error(run("plan", tmp_path / "missing.yaml"), "file not found")
    _assert_one_line_error(run("frobnicate"), "invalid choice")


def test_cli_does_not_import_heavy_oracles():
    """The CLI never imports torch, transformers or pandas (cold start budget)."""
    code = ("import sys, io, contextlib\n"
            "from flopcast.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['model', 'show', 'deepseek-v3']) == 0\n"
            "    assert main(['plan', sys.argv[1]]) == 0\n"
            "bad = [m for m in ('torch', 'transformers', 'pandas', 'pydantic') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")))
def test_every_example_plans(example):
    """Every shipped example scenario resolves and plans."""
    assert run("plan", example, "--json").returncode == 0


def test_plan_markdown_and_plots(tmp_path):
    """`plan --markdown` prints the report as Markdown tables; `--plots DIR` writes one well-formed SVG
    chart per chart the report has (matplotlib's with the `plots` extra, plain bars without) and lists
    them (in --json under `plots`)."""
    import xml.etree.ElementTree as ET

    example = ROOT / "examples" / "llama3-8b-train-h100.yaml"
    r = run("plan", example, "--markdown")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# flopcast plan:") and "### Model" in r.stdout and "|---|---|" in r.stdout
    assert "### Step time" in r.stdout
    r = run("plan", example, "--json", "--plots", tmp_path / "charts")
    assert r.returncode == 0, r.stderr
    written = json.loads(r.stdout)["plots"]
    names = {Path(p).stem for p in written}
    try:
        import matplotlib  # noqa: F401
        assert {"memory", "step-time", "pareto", "roofline", "power-cost"} <= names   # the `plots` extra
    except ImportError:
        assert {"params", "training-memory", "training-step"} <= names   # plain SVG bars without it
    for p in written:
        root = ET.parse(p).getroot()
        assert root.tag.endswith("svg") and len(root) > 3


def test_train_timeline_svg_and_per_rank_table(tmp_path):
    """`train --timeline FILE.svg` writes a well-formed SVG Gantt chart with one row per pipeline
    rank and a chunk per F/B of every micro-batch; the table shows the per-rank bubble."""
    import xml.etree.ElementTree as ET

    out = tmp_path / "tl.svg"
    r = run("train", EXAMPLE, "--timeline", out)
    assert r.returncode == 0, r.stderr
    assert "Pipeline (" in r.stdout and "bubble" in r.stdout and "timeline written" in r.stdout
    root = ET.fromstring(out.read_text())
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "rank 0" in texts and "rank 15" in texts and "forward" in texts


def test_train_timeline_json(tmp_path):
    """With --json the events are under `timeline`, and `pipeline.ranks` gives each rank's work, sends
    and bubble, which add up to the pipelined part; a FILE.json gets the same events."""
    out = tmp_path / "tl.json"
    r = run("train", EXAMPLE, "--json", "--timeline", out)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    pipe = d["pipeline"]
    assert len(pipe["ranks"]) == d["parallel"]["pp"]
    for row in pipe["ranks"]:
        assert row["busy_s"] + row["p2p_s"] + row["bubble_s"] == pytest.approx(pipe["pipelined_s"], rel=1e-9)
        assert row["bubble_s"] >= 0
    events = d["timeline"]
    assert {e["kind"] for e in events} == {"F", "B"}
    # the step is the cached timeline's critical path (stage times rounded to 16ths of the
    # slowest) summed with the exact times; the events are simulated with the exact times
    assert max(e["end_s"] for e in events) == pytest.approx(pipe["pipelined_s"], rel=2e-2)
    assert json.loads(out.read_text())["events"] == events


def test_train_timeline_refuses_a_plan_without_pipeline(tmp_path):
    """--timeline on a pp 1 plan is a one-line error (exit 2)."""
    r = run("train", ROOT / "examples" / "llama3-8b-train-h100.yaml", "--timeline", tmp_path / "x.svg")
    assert r.returncode == 2 and "pp 1" in r.stderr and "Traceback" not in r.stderr
