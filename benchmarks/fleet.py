"""Serving fleets: speed of `flopcast fleet` and the DeepSeek production day.

Usage: python benchmarks/fleet.py
- Speed: 10T output tokens per week of Llama 3.1 70B over three regions with diurnal load, three
  candidate deployments, N+1 and neighbour failover (examples/fleet-three-regions.yaml), with and
  without the simulation of the binding hours. Target: under 10 s.
- Accuracy: DeepSeek-V3/R1's published production day (examples/deepseek-production-day.yaml): the
  mean number of H800 nodes flopcast sizes from its own throughputs, against the published average of
  226.75 nodes (open-infra-index day 6; groundtruth more_runs.csv DS-PROD-*). Target: within 25%.
  Also the per-node throughputs against the published 73.7k input tokens/s per prefill node
  (including cache hits) and 14.8k output tokens/s per decode node.
"""

from __future__ import annotations

import time
from pathlib import Path

from flopcast import api

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PUBLISHED_NODES_MEAN = 226.75
PUBLISHED_NODES_PEAK = 278
PUBLISHED_PREFILL_INPUT_TOKENS_PER_S_PER_NODE = 73_700      # including prefix-cache hits
PUBLISHED_DECODE_OUTPUT_TOKENS_PER_S_PER_NODE = 14_800


def main() -> None:
    path = EXAMPLES / "fleet-three-regions.yaml"
    for confirm in (False, True):
        t0 = time.perf_counter()
        r = api.plan_fleet(path, confirm=confirm).to_dict()
        dt = time.perf_counter() - t0
        print(f"three regions, {r['output_tokens_per_day'] * 7 / 1e12:.1f}T output tokens/week, "
              f"{len(r['deployments'])} candidates, {'with' if confirm else 'without'} binding-hour simulation: "
              f"{dt:.2f} s (target < 10 s); chosen {r['selected']}, peak {r['num_devices_peak']:,} devices, "
              f"${r['cost_per_million_output_tokens_usd']:.3f} per million output tokens")

    r = api.plan_fleet(EXAMPLES / "deepseek-production-day.yaml").to_dict()
    nodes = r["num_nodes_mean"]
    err = nodes / PUBLISHED_NODES_MEAN - 1
    peak_nodes = r["num_devices_peak"] / 8
    print(f"DeepSeek production day: {nodes:,.1f} H800 nodes on average (published {PUBLISHED_NODES_MEAN}): "
          f"{100 * err:+.1f}% ({'within' if abs(err) <= 0.25 else 'outside'} the 25% target); peak "
          f"{peak_nodes:,.0f} nodes (published {PUBLISHED_NODES_PEAK}); chosen {r['selected']}")
    for p in r["regions"][0]["pools"]:
        per_node = p["tokens_per_s_per_unit"] / (p["unit_devices"] / 8)
        if p["role"] == "prefill":
            published = PUBLISHED_PREFILL_INPUT_TOKENS_PER_S_PER_NODE
            what = "input tokens/s per prefill node (cache hits included)"
        else:
            published = PUBLISHED_DECODE_OUTPUT_TOKENS_PER_S_PER_NODE
            what = "output tokens/s per decode node"
        print(f"  {what}: flopcast {per_node:,.0f} (batch {p['batch_size']} per dp rank), published {published:,.0f} "
              f"({per_node / published:.2f}x)")
    for d in r["deployments"]:
        if not d["feasible"]:
            print(f"  candidate {d['deployment']}: infeasible today: {d['infeasible_reason']}")
        else:
            print(f"  candidate {d['deployment']}: {d['num_devices_mean'] / 8:,.1f} nodes on average "
                  f"({100 * (d['num_devices_mean'] / 8 / PUBLISHED_NODES_MEAN - 1):+.1f}%), peak "
                  f"{d['num_devices_peak'] / 8:,.0f}, ${d['cost_usd_per_day']:,.0f} per day")
    for a in r["assumptions"]:
        if a["value"] == "not applied":
            print(f"  {a['name']}: not applied ({a['why']})")


if __name__ == "__main__":
    main()
