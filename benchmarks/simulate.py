"""Serving simulator: agreement with the analytic model and speed.

Usage: python benchmarks/simulate.py [--only agreement|speed|million|ten-million|sizing]   (or FLOPCAST_BENCH_ONLY=...)
- Low load (one request at a time): simulated TTFT vs the analytic unloaded TTFT.
- Saturation (a burst of fixed-length requests, chunked prefill): simulated output tokens/s vs the
  analytic steady state, for a few model / hardware / length combinations.
- Speed: wall time, iterations and requests simulated per second for 10,000 Poisson requests.
- million: 1,000,000 Poisson requests of Llama 3.1 70B on 4 replicas of 8 x H100 (tp 8), lognormal
  lengths (mean 1024 in, 256 out), at ~85% of the analytic capacity (issue 12's target: <= 60 s).
- ten-million: the same workload, 10,000,000 requests, statistics streamed (issue 24's target: <= 60 s
  with peak memory <= 1 GiB; run it alone: the peak RSS printed is the process's).
- sizing: `flopcast simulate --size-fleet` to steady state (issue 12's target: <= 30 s): Llama 3.1 8B on
  H100 (tp 1) at 150 requests/s, p99 TTFT 1 s / TPOT 50 ms; a disaggregated 8B fleet (prefill tp 1,
  decode tp 1) with its two pools sized; and, for scale, a Llama 3.1 70B fleet of ~45 replicas of
  8 x H100 at 620 requests/s (p99 TTFT 2 s / TPOT 100 ms), whose steady state needs ~10^5 requests a trial.
"""

from __future__ import annotations

import argparse
import os
import time

from flopcast import catalog
from flopcast.estimate.serving import estimate_serving
from flopcast.sim.engine import simulate
from flopcast.sim.workload import LengthDist, WorkloadSpec
from flopcast.specs.serving import InferenceSpec

CASES = [
    ("llama-3.1-8b", "h100-sxm", InferenceSpec(tp=1, input_tokens=1024, output_tokens=256)),
    ("llama-3.1-8b", "h100-sxm", InferenceSpec(tp=1, input_tokens=128, output_tokens=1024)),
    ("llama-3.1-70b", "h100-sxm", InferenceSpec(tp=4, weights_dtype="fp8", kv_dtype="fp8", input_tokens=2048,
                                                output_tokens=512)),
    ("mixtral-8x7b", "h200-sxm", InferenceSpec(tp=2, input_tokens=1024, output_tokens=512)),
]


def fixed(n: int, spec: InferenceSpec, **kw) -> WorkloadSpec:
    return WorkloadSpec(num_requests=n, input_tokens=LengthDist(value=spec.input_tokens),
                        output_tokens=LengthDist(value=spec.output_tokens), **kw)


def agreement() -> None:
    for model_id, hw_id, spec in CASES:
        m, hw = catalog.get_model(model_id), catalog.get_hardware(hw_id)
        a = estimate_serving(m, hw, spec)
        low = simulate(m, hw, spec, fixed(20, spec, process="poisson", rate_per_s=1e-3))
        sat = simulate(m, hw, spec, fixed(20 * a.batch_size, spec, process="burst"))
        print(f"{model_id} on {hw_id} tp {spec.tp} ({spec.input_tokens}/{spec.output_tokens}): TTFT low load "
              f"{low.ttft_p50_s * 1e3:.2f} ms vs analytic {a.ttft_unloaded_s * 1e3:.2f} ms; saturated "
              f"{sat.output_tokens_per_s:,.0f} vs analytic {a.output_tokens_per_s:,.0f} output tokens/s "
              f"({100 * (sat.output_tokens_per_s / a.output_tokens_per_s - 1):+.1f}%)")


def speed() -> None:
    m, hw = catalog.get_model("llama-3.1-8b"), catalog.get_hardware("h100-sxm")
    spec = InferenceSpec(tp=1, dp=8)
    w = WorkloadSpec(num_requests=10_000, process="poisson", rate_per_s=200,
                     input_tokens=LengthDist(dist="lognormal", mean=1024, max=8192),
                     output_tokens=LengthDist(dist="lognormal", mean=256, max=2048))
    for scheduler in ("sarathi", "vllm", "static", "disaggregated"):
        t0 = time.perf_counter()
        r = simulate(m, hw, spec, w, scheduler=scheduler)
        dt = time.perf_counter() - t0
        print(f"10,000 Poisson requests at 200/s on 8 x H100 ({scheduler}): {dt:.2f} s wall, "
              f"{r.num_iterations / dt:,.0f} iterations/s; TTFT p99 {r.ttft_p99_s * 1e3:,.0f} ms, "
              f"TPOT p99 {r.tpot_p99_s * 1e3:.1f} ms, {r.output_tokens_per_s:,.0f} output tokens/s")


def million(n: int = 1_000_000, stream: bool | None = None) -> None:
    m, hw = catalog.get_model("llama-3.1-70b"), catalog.get_hardware("h100-sxm")
    spec = InferenceSpec(tp=8, dp=4)
    lengths = dict(input_tokens=LengthDist(dist="lognormal", mean=1024, max=8192),
                   output_tokens=LengthDist(dist="lognormal", mean=256, max=2048))
    cap = estimate_serving(m, hw, InferenceSpec(tp=8, dp=4, input_tokens=1024, output_tokens=256))
    rate = 0.85 * cap.output_tokens_per_s / 256
    w = WorkloadSpec(num_requests=n, process="poisson", rate_per_s=rate, **lengths)
    t0, c0 = time.perf_counter(), time.process_time()
    r = simulate(m, hw, spec, w, scheduler="sarathi", stream=stream)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    import resource

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mode = "streamed" if r.stream is not None else "every request kept"
    print(f"[{mode}; peak RSS of the process {peak_mib:,.0f} MiB] {n:,} Poisson requests at {rate:.1f}/s "
          f"(85% of the analytic capacity) on 4 x (8 x H100, tp 8), "
          f"Llama 3.1 70B, sarathi: {dt:.1f} s wall ({cpu:.1f} CPU-s), {n / dt:,.0f} requests/s, "
          f"{r.num_iterations / dt:,.0f} iterations/s; {r.simulated_s:,.0f} s simulated, "
          f"TTFT p99 {r.ttft_p99_s * 1e3:,.0f} ms, "
          f"TPOT p99 {r.tpot_p99_s * 1e3:.1f} ms, {r.output_tokens_per_s:,.0f} output tokens/s")


def sizing() -> None:
    from flopcast import api

    lengths = {"input_tokens": {"dist": "lognormal", "mean": 1024, "max": 8192},
               "output_tokens": {"dist": "lognormal", "mean": 256, "max": 2048}}

    def scenario(model, tp, rate, ttft, tpot, **extra):
        return {"model": model, "hardware": "h100-sxm",
                "inference": {"tp": tp, "workload": {"num_requests": 1000, "arrival": {"process": "poisson",
                                                                                         "rate_per_s": rate}} | lengths,
                              "slo": {"ttft_p99": ttft, "tpot_p99": tpot}} | extra}

    cases = [("Llama 3.1 8B, 150 req/s", scenario("llama-3.1-8b", 1, 150, "1 s", "50 ms")),
             ("Llama 3.1 8B disaggregated, 100 req/s",
              scenario("llama-3.1-8b", 1, 100, "1 s", "50 ms", prefill={}, decode={})),
             ("Llama 3.1 70B tp 8, 620 req/s", scenario("llama-3.1-70b", 8, 620, "2 s", "100 ms"))]
    for name, sc in cases:
        t0, c0 = time.perf_counter(), time.process_time()
        out = api.size_fleet(sc, max_replicas=512)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = out["steady_state"]
        pools = (f" ({out['prefill_replicas']} prefill + {out['decode_replicas']} decode)"
                 if "prefill_replicas" in out else "")
        print(f"size-fleet {name}: {dt:.1f} s wall ({cpu:.1f} CPU-s), {len(out['curve'])} trials, "
              f"{sum(r['num_requests'] for r in out['curve']):,} requests simulated; answer {out['replicas']} "
              f"replicas{pools} = {out['num_devices']} devices (analytic floor {out['analytic_min_replicas']}); "
              f"steady state after {st['warmup_requests']:,} of {st['num_requests']:,} requests "
              f"({'settled' if st['settled'] else 'not settled'}), p99 TTFT {st['ttft_p99_s'] * 1e3:,.0f} ms, "
              f"TPOT {st['tpot_p99_s'] * 1e3:.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("agreement", "speed", "million", "ten-million", "sizing"),
                   default=os.environ.get("FLOPCAST_BENCH_ONLY"))
    p.add_argument("--requests", type=int, default=1_000_000, help="requests of the million case")
    args = p.parse_args()
    if args.only in (None, "agreement"):
        agreement()
    if args.only in (None, "speed"):
        speed()
    if args.only in (None, "million"):
        million(args.requests)
    if args.only == "ten-million":      # not in the default run: over a minute
        million(10_000_000)
    if args.only in (None, "sizing"):
        sizing()


if __name__ == "__main__":
    main()
