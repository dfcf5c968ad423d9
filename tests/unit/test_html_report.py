"""`flopcast plan --html`: one self-contained report (verdict first, at least four matplotlib charts inlined
as SVG, loads no external resource); the roofline's op rows; matplotlib stays out of the plain CLI."""

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from flopcast import api  # noqa: E402
from flopcast.report.mpl import op_intensities  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class _Loads(HTMLParser):
    """Collects every attribute that makes a browser fetch something, and the chart figures."""

    def __init__(self):
        super().__init__()
        self.fetches: list[str] = []
        self.charts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        for key in ("src", "href", "xlink:href", "srcset", "data", "poster", "action"):
            if a.get(key):
                self.fetches.append(a[key])
        if tag == "figure" and a.get("data-chart"):
            self.charts.append(a["data-chart"])


def _external(ref: str) -> bool:
    return bool(re.match(r"^\s*(https?:|//|file:|ftp:)", ref, re.I)) or not (ref.startswith("#") or ref.startswith("data:"))


def test_plan_html_is_self_contained(tmp_path):
    """The report holds at least four charts (inline <svg>), the verdict before the first chart, and no
    reference a browser would fetch: no src/href outside the page, no CSS url() or @import, no <script>,
    <link>, <img> or <iframe>."""
    out = tmp_path / "report.html"
    example = ROOT / "examples" / "llama3-405b-pretrain.yaml"   # the flagship
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "plan", example, "--html", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    p = _Loads()
    p.feed(text)
    assert len(p.charts) >= 4, p.charts
    assert text.count("<svg") >= 4
    assert [f for f in p.fetches if _external(f)] == []
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(p.tags)
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(?!#|data:)", text)
    assert text.index('id="verdict"') < text.index("<figure")
    assert "Assumptions (" in text


def test_charts_of_a_training_and_serving_plan():
    """A plan with training, serving and a simulation gets every chart: memory, step time, Pareto front,
    latency curve, CDFs, roofline, power and cost."""
    from flopcast.report.mpl import figures, gather

    sc = {"model": "llama-3.2-1b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 2048, "global_batch_seqs": 64, "total_tokens": 1e10},
          "inference": {"tp": 1, "dp": 8, "input_tokens": 512, "output_tokens": 64,
                        "workload": {"num_requests": 200, "arrival": {"process": "poisson", "rate_per_s": 20}},
                        "slo": {"ttft_p99": "500 ms", "tpot_p99": "30 ms"}}}
    report = api.plan(sc)
    data = gather(report, sc)
    assert data.search and data.search["pareto"] and len(data.latency_curve) >= 3
    assert len(data.ttft_s) == report.simulation.num_completed and data.slo_s == {"ttft_p99": 0.5, "tpot_p99": 0.03}
    names = [n for n, _, _ in figures(report.to_dict(), data)]
    assert names == ["memory", "step-time", "pareto", "latency", "cdf", "roofline", "power-cost"]


def test_roofline_gemm_flops_are_twice_tokens_times_weights():
    """The roofline's GEMM rows of a dense model sum to 2 * M * (matmul weights of one layer / tp) per
    layer plus the LM head: the op rows use the model's exact parameter breakdown."""
    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 4096, "global_batch_seqs": 64},
          "parallel": {"tp": 2, "pp": 1, "dp": 4, "microbatch_seqs": 1}}
    d = api.plan(sc).to_dict()
    rows = op_intensities(d)
    bd = d["model"]["params_breakdown"]
    layers = d["model"]["architecture"]["num_layers"]
    per_layer = sum(v for k, v in bd.items() if k.startswith(("attention/", "mlp/")) and "norm" not in k) / layers
    m = 4096
    gemm = sum(r["flops"] for r in rows if r["op"] != "attention core")
    assert gemm == pytest.approx(2 * m * (per_layer + bd["head/lm_head"]) / 2, rel=1e-12)
    assert all(r["bytes"] > 0 for r in rows)


def test_roofline_places_training_ops_where_the_cost_model_times_them():
    """When the training report carries its timed ops, each roofline point of a training op is at the
    op's own arithmetic intensity and achieved FLOP/s (no second model of the same op)."""
    from flopcast.report.mpl import _roofline_points

    sc = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
          "training": {"seq_len": 4096, "global_batch_seqs": 64},
          "parallel": {"tp": 2, "pp": 1, "dp": 4, "microbatch_seqs": 1}}
    d = api.plan(sc).to_dict()
    ops = {o["name"]: o for o in d["training"].get("ops") or []}
    if not ops:
        pytest.skip("this version's training report has no per-op rows")
    hw = d["hardware"]
    points = {label: (x, y) for label, x, y, _ in _roofline_points(d, hw["peak_flops_per_s"]["bf16"],
                                                                    hw["hbm_bandwidth_bytes_per_s"])}
    for name, o in ops.items():
        if o.get("arithmetic_intensity_flops_per_byte"):
            assert points[f"training: {name}"] == (o["arithmetic_intensity_flops_per_byte"], o["achieved_flops_per_s"])


def test_plain_cli_never_imports_matplotlib():
    """`flopcast plan` without --html/--plots leaves matplotlib unimported (cold start)."""
    code = ("import sys, io, contextlib\n"
            "from flopcast.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['plan', sys.argv[1]]) == 0\n"
            "assert 'matplotlib' not in sys.modules and 'pyarrow' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "llama3-8b-serving-sim.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
