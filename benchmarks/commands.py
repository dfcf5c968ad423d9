"""Wall time of every command that plans, each beside its target (issue 24), as a user runs it:
a fresh `flopcast` process per command, so imports and catalog loading count.

Usage: python benchmarks/commands.py [--only plan|sweep|sizing|calibrate|validate|cold]
Targets: `plan` on every example <= 3 s; `sweep` of the README example <= 10 s; `simulate
--size-fleet` of the 70B benchmark fleet (benchmarks/simulate.py --only sizing) <= 10 s;
`calibrate training inference` <= 5 s; `validate` (no target; printed); `flopcast --version` <= 0.3 s.
Figures move with the machine's load: run it on an idle machine and read them side by side; each
line also prints the CPU-seconds of the command's process and its children, which move less.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SIZING_70B = {"model": "llama-3.1-70b", "hardware": "h100-sxm",
              "inference": {"tp": 8, "slo": {"ttft_p99": "2 s", "tpot_p99": "100 ms"},
                            "workload": {"num_requests": 1000, "arrival": {"process": "poisson", "rate_per_s": 620},
                                         "input_tokens": {"dist": "lognormal", "mean": 1024, "max": 8192},
                                         "output_tokens": {"dist": "lognormal", "mean": 256, "max": 2048}}}}


def _children_cpu_s() -> float:
    """CPU-seconds (user + system) of every finished child process so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(args: list[str]) -> tuple[float, int, float]:
    """Seconds of one `flopcast ARGS` in a fresh process, its exit code, and the CPU-seconds it (and
    its own children: search workers) used: the figure that does not move with the machine's load."""
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "flopcast.cli", *args], capture_output=True).returncode
    return time.perf_counter() - t0, rc, _children_cpu_s() - cpu0


def line(what: str, seconds: float, rc: int, cpu_s: float | None, target_s: float | None) -> None:
    verdict = "" if target_s is None else ("  ok" if seconds <= target_s and rc == 0 else "  MISSED")
    target = "" if target_s is None else f"  (target <= {target_s:g} s)"
    status = "" if rc == 0 else f"  exit {rc}"
    cpu = "" if cpu_s is None else f"  cpu {cpu_s:6.2f} s"
    print(f"{what:58s} {seconds:7.2f} s{cpu}{target}{status}{verdict}")


def plan() -> None:
    for path in EXAMPLES:
        line(f"plan {path.name}", *timed(["plan", str(path), "--json"]), 3.0)


def sweep() -> None:
    args = ["sweep", str(ROOT / "examples" / "gpt3-175b-search.yaml"), "--vary",
            "hardware=a100-sxm-80gb,h100-sxm", "--json"]
    line("sweep gpt3-175b-search --vary hardware=a100,h100", *timed(args), 10.0)


def sizing() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet-70b.json"
        path.write_text(json.dumps(SIZING_70B))
        line("simulate --size-fleet (Llama 3.1 70B tp 8, 620 req/s)", *timed(["simulate", str(path),
                                                                                "--size-fleet", "--json"]), 10.0)


def calibrate() -> None:
    line("calibrate training inference", *timed(["calibrate", "training", "inference", "--json"]), 5.0)


def validate() -> None:
    for kind in ("training", "inference"):
        line(f"validate {kind} --cv source", *timed(["validate", kind, "--cv", "source", "--json"]), None)


def cold() -> None:
    best = min(timed(["--version"])[0] for _ in range(7))
    line("flopcast --version (best of 7)", best, 0, None, 0.3)


PARTS = {"plan": plan, "sweep": sweep, "sizing": sizing, "calibrate": calibrate, "validate": validate, "cold": cold}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(PARTS))
    args = ap.parse_args()
    for name, part in PARTS.items():
        if args.only in (None, name):
            part()


if __name__ == "__main__":
    main()
