"""Serving estimator: accuracy against published throughput runs and speed of one estimate.

Usage: python benchmarks/validate_inference.py
Targets (issue 5): median |error| <= 15%, none worse than 35%; one estimate <= 2 ms in-process.
"""

from __future__ import annotations

import time

from flopcast.validation import inference as vi


def main() -> None:
    results = vi.run()
    for r in results:
        if r.error_frac is not None:
            print(f"{r.id:30s} {r.hardware:10s} batch {r.batch_size:5d}  measured {r.measured:9.0f}  "
                  f"predicted {r.predicted:9.0f} tok/s  error {100 * r.error_frac:+6.1f}%")
    s = vi.summary(results)
    print(f"\nrows used {s['num_used']}, skipped {s['num_skipped']}")
    print(f"median |error| {100 * s['median_abs_error']:.1f}%, max {100 * s['max_abs_error']:.1f}% ({s['worst_row']})")

    from flopcast import catalog
    from flopcast.estimate.serving import estimate_serving
    from flopcast.specs.serving import InferenceSpec

    model, hw = catalog.get_model("llama-3.1-70b"), catalog.get_hardware("h100-sxm")
    spec = InferenceSpec(tp=2, weights_dtype="fp8", kv_dtype="fp8", input_tokens=1000, output_tokens=1000)
    estimate_serving(model, hw, spec)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        estimate_serving(model, hw, spec)
    print(f"one estimate (Llama 3.1 70B, TP2 H100, resolved specs): {(time.perf_counter() - t0) / n * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
