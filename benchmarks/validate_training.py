"""Training estimator: accuracy against published runs and speed of one estimate.

Usage: python benchmarks/validate_training.py
Targets (issue 3): KORTH-E2E mean |error| <= 3%, max <= 8%; all usable rows median <= 10%, max
<= 25%; one estimate <= 1 ms in-process.
"""

from __future__ import annotations

import time

from flopcast import api
from flopcast.validation import training as vt


def main() -> None:
    results = vt.run()
    for r in results:
        if r.error_frac is not None:
            print(f"{r.id:22s} {r.hardware:14s} {r.num_devices:6d}  measured {r.measured_step_s:9.3f} s  "
                  f"predicted {r.predicted_step_s:9.3f} s  error {100 * r.error_frac:+6.1f}%")
    s = vt.summary(results)
    print()
    print(f"rows used {s['num_used']}, skipped {s['num_skipped']}")
    print(f"KORTH-E2E (8 rows): mean |error| {100 * s['korth_e2e_mean_abs_error']:.1f}%, "
          f"max {100 * s['korth_e2e_max_abs_error']:.1f}%")
    print(f"all usable rows: median |error| {100 * s['median_abs_error']:.1f}%, max {100 * s['max_abs_error']:.1f}% "
          f"({s['worst_row']})")

    from flopcast.estimate.training import estimate_training
    from flopcast.specs.scenario import resolve

    rs = resolve("examples/llama3-405b-pretrain.yaml")
    train, plan = api._training_inputs(rs)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        estimate_training(rs.model, rs.hardware, plan, train, devices_per_node=8,
                          scale_out_bandwidth_bytes_per_s=rs.cluster.scale_out_bandwidth_bytes_per_s)
    dt = (time.perf_counter() - t0) / n
    print(f"one estimate (Llama 3.1 405B, 16384 H100, resolved specs): {dt * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
