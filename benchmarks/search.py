"""Plan search speed and quality (issue 4 targets).

Usage: python benchmarks/search.py
- GPT-3 175B / 1024 A100-80GB / seq 2048 / batch 1536: whole space in <= 60 s wall on this 2-core
  machine (Calculon: ~51 evaluations per CPU-second, 11.7M configurations, ~32 h).
- Llama 3.1 405B / 16384 H100 / seq 8192 / batch 2048: <= 60 s, and the best plan predicted at
  least as fast as Meta's published plan (tp 8, pp 16, dp 128), and fitting.
"""

from __future__ import annotations

import time

from flopcast import api

CALCULON_EVALS_PER_CPU_S = 51


def run(name: str, scenario) -> object:
    t0 = time.perf_counter()
    r = api.search_training(scenario, top=3)
    dt = time.perf_counter() - t0
    rate = r.num_evaluated / dt
    print(f"{name}: {r.num_evaluated:,} plans ({r.num_fitting:,} fit) in {dt:.1f} s wall = {rate:,.0f} plans/s "
          f"({rate / CALCULON_EVALS_PER_CPU_S:,.0f}x Calculon's 51/s)")
    for e in r.plans:
        p = e.plan
        print(f"   tp {p.tp} pp {p.pp} dp {p.dp} cp {p.cp} vpp {p.vpp} sp {p.sp} zero {p.zero_stage} "
              f"recompute {p.recompute} mb {p.microbatch_seqs} offload {p.offload}: step {e.step_time_s:.3f} s, "
              f"MFU {100 * e.mfu:.1f}%, {e.memory_per_device_bytes / 2**30:.1f} GiB")
    return r


def main() -> None:
    run("GPT-3 175B / 1024 A100", "examples/gpt3-175b-search.yaml")
    best = run("Llama 3.1 405B / 16384 H100", "examples/llama3-405b-pretrain.yaml").plans[0]
    meta = api.estimate_training("examples/llama3-405b-pretrain.yaml")
    print(f"Meta's plan (tp 8, pp 16, dp 128): step {meta.step_time_s:.3f} s, fits {meta.fits} "
          f"({meta.memory_per_device_bytes / 2**30:.1f} GiB); best found {best.step_time_s:.3f} s, fits {best.fits}: "
          f"{'at least as fast' if best.step_time_s <= meta.step_time_s else 'SLOWER'}")


if __name__ == "__main__":
    main()
