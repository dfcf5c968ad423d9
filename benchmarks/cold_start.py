"""Cold-start time of `flopcast model show` (target: < 0.3 s), median of N fresh processes.

Usage: python benchmarks/cold_start.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 15
CASES = [
    ["model", "show", "llama-3.1-8b", "--json"],
    ["model", "show", "llama-3.1-8b"],
    ["model", "show", "deepseek-v3"],
]


def run_once(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flopcast.cli", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    baseline = statistics.median(run_once_py() for _ in range(N))
    print(f"python -c pass (interpreter floor): {baseline * 1e3:.0f} ms")
    for args in CASES:
        times = [run_once(args) for _ in range(N)]
        print(f"flopcast {' '.join(args):40s} median {statistics.median(times) * 1e3:.0f} ms, "
              f"max {max(times) * 1e3:.0f} ms over {N} runs")


def run_once_py() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
