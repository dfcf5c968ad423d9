"""Plan search speed and quality (issues 4 and 24).

Usage: python benchmarks/search.py [--calculon PATH] [--only gpt3|llama405b|deepseek] [--exhaustive]
- GPT-3 175B / 1024 A100-80GB / seq 2048 / batch 1536: the whole space (issue 24's target: <= 5 s wall
  and >= 1,000x Calculon per CPU-second, measured side by side).
- Llama 3.1 405B / 16384 H100 / seq 8192 / batch 2048: the best plan predicted at least as fast as
  Meta's published plan (tp 8, pp 16, dp 128), and fitting.
- DeepSeek-V3 / 2048 H800 with no key fixed (issue 24's target: <= 10 s).
Each search's rate is printed per wall second and per CPU-second (this process and its worker
processes). What is counted as a plan: every complete plan of the space (num_evaluated) whose
memory the search decided (sized: its largest rank's bytes against capacity; the search sizes
plans in blocks that differ only in ZeRO stage and offload, the memory of the block's plans as
arrays, flopcast/search/vector.py). Of the plans that fit, each is either timed (its pipeline
schedule simulated) or ruled out by a lower bound on its step that proves it in none of the
search's results (search/prune.py); a plan is counted once, whichever decided it.
With --calculon PATH (a local checkout of github.com/calculon-ai/calculon, which is
not on the package index; nothing of it enters this repository), Calculon's own evaluation of
GPT-3 175B on 1,024 A100 (its models/gpt3-175B.json and systems/a100_80g.json, tp 8, pp 16,
dp 8, micro-batch 1, batch 1536) is timed in a child process for a few CPU-seconds in the same run,
and the ratio per CPU-second is printed. With --exhaustive, each search is run again timing every
fitting plan (no pruning, flopcast.search.search(prune=False)) and the two answers are compared
(the same JSON is expected: best plans, their order, the Pareto front, the counts).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flopcast import api

ROOT = Path(__file__).resolve().parents[1]

# timed in a child process; pandas and psutil (imported by Calculon's package, unused by one
# evaluation) are stubbed when missing so that the checkout runs without installing them
CALCULON_TIMER = r"""
import json, logging, sys, time, types
sys.path.insert(0, sys.argv[1])
for mod in ("pandas", "psutil"):
    try:
        __import__(mod)
    except ImportError:
        sys.modules[mod] = types.ModuleType(mod)
import calculon
from calculon.llm import Llm
from calculon.system import System
root = sys.argv[1]
app = Llm.Application(calculon.io.read_json_file(root + "/models/gpt3-175B.json"))
syst = System(calculon.io.read_json_file(root + "/systems/a100_80g.json"))
exe = calculon.io.read_json_file(root + "/examples/3072_t4_p64_d12_mbs4_full.json")
exe.update(num_procs=1024, tensor_par=8, pipeline_par=16, data_par=8, batch_size=1536, microbatch_size=1,
           activation_recompute="none", pipeline_interleaving=1)
log = logging.getLogger("calculon")
t0, n = time.process_time(), 0
while time.process_time() - t0 < float(sys.argv[2]):
    m = Llm(app, log)
    m.compile(syst, Llm.Execution.from_json(exe))
    m.run(syst)
    n += 1
print(json.dumps({"evaluations": n, "cpu_s": time.process_time() - t0, "step_s": m.get_total_time()}))
"""


def cpu_s() -> float:
    """CPU-seconds of this process and its finished children (the search's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def calculon_rate(path: str, seconds: float = 5.0) -> float:
    """Calculon's evaluations per CPU-second of its GPT-3 175B / 1,024 A100 reference evaluation."""
    out = subprocess.run([sys.executable, "-c", CALCULON_TIMER, path, str(seconds)], capture_output=True,
                         text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    rate = r["evaluations"] / r["cpu_s"]
    print(f"Calculon ({path}): {r['evaluations']:,} evaluations in {r['cpu_s']:.1f} CPU-s = {rate:,.0f} per CPU-second "
          f"(its step time for tp 8, pp 16, dp 8: {r['step_s']:.2f} s)")
    return rate


def run(name: str, scenario, calculon: float | None, exhaustive: bool = False) -> Any:
    c0, t0 = cpu_s(), time.perf_counter()
    r = api.search_training(scenario, top=3)
    dt, dc = time.perf_counter() - t0, cpu_s() - c0
    if exhaustive:
        compare_exhaustive(name, scenario, r)
    per_cpu = r.num_evaluated / max(dc, 1e-9)
    ratio = f", {per_cpu / calculon:,.0f}x Calculon per CPU-second" if calculon else ""
    print(f"{name}: {r.num_evaluated:,} plans ({r.num_fitting:,} fit) in {dt:.1f} s wall, {dc:.1f} CPU-s: "
          f"{r.num_evaluated / dt:,.0f} plans/s wall, {per_cpu:,.0f} per CPU-second{ratio}")
    for e in r.plans:
        p = e.plan
        print(f"   tp {p.tp} pp {p.pp} dp {p.dp} cp {p.cp} ep {p.ep} vpp {p.vpp} schedule {p.pp_schedule} zero "
              f"{p.zero_stage} recompute {p.recompute} mb {p.microbatch_seqs} offload {p.offload}: step "
              f"{e.step_time_s:.3f} s, MFU {100 * e.mfu:.1f}%, {e.memory_per_device_bytes / 2**30:.1f} GiB")
    return r


def compare_exhaustive(name: str, scenario, pruned) -> None:
    """The same search timing every fitting plan; prints its cost and whether the answers are equal."""
    from flopcast import search as search_mod
    from flopcast.run import search as run_search

    pruning = run_search.search
    run_search.search = functools.partial(search_mod.search, prune=False)
    try:
        c0, t0 = cpu_s(), time.perf_counter()
        full = api.search_training(scenario, top=3)
        dt, dc = time.perf_counter() - t0, cpu_s() - c0
    finally:
        run_search.search = pruning
    same = json.dumps(full.to_dict(), sort_keys=True, default=str) == json.dumps(pruned.to_dict(), sort_keys=True,
                                                                                default=str)
    print(f"{name}, exhaustive (every fitting plan timed): {dt:.1f} s wall, {dc:.1f} CPU-s; "
          f"{'the SAME answer as the pruned search' if same else 'a DIFFERENT answer from the pruned search'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calculon", metavar="PATH", help="a local checkout of calculon-ai/calculon")
    ap.add_argument("--only", choices=("gpt3", "llama405b", "deepseek"))
    ap.add_argument("--exhaustive", action="store_true", help="also search timing every plan and compare")
    args = ap.parse_args()
    calculon = calculon_rate(args.calculon) if args.calculon else None
    if args.only in (None, "gpt3"):
        run("GPT-3 175B / 1024 A100", str(ROOT / "examples/gpt3-175b-search.yaml"), calculon, args.exhaustive)
    if args.only in (None, "llama405b"):
        path = str(ROOT / "examples/llama3-405b-pretrain.yaml")
        best = run("Llama 3.1 405B / 16384 H100", path, calculon, args.exhaustive).plans[0]
        meta = api.estimate_training(path)
        print(f"Meta's plan (tp 8, pp 16, dp 128): step {meta.step_time_s:.3f} s, fits {meta.fits} "
              f"({meta.memory_per_device_bytes / 2**30:.1f} GiB); best found {best.step_time_s:.3f} s, "
              f"fits {best.fits}: {'at least as fast' if best.step_time_s <= meta.step_time_s else 'SLOWER'}")
    if args.only in (None, "deepseek"):
        run("DeepSeek-V3 / 2048 H800 (no key fixed)", str(ROOT / "examples/deepseek-v3-pretrain.yaml"), calculon,
            args.exhaustive)


if __name__ == "__main__":
    main()
