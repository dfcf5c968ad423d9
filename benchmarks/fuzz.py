"""10,000 hypothesis-generated scenarios through resolve and every estimator (issue 13's target):
counts reports, flopcast errors, other exceptions (tracebacks), NaN / inf in a report and calls over
10 s. Exit code 1 unless the last three are all zero.

    python benchmarks/fuzz.py                 # 10,000 scenarios (~15-30 min on 2 cores)
    python benchmarks/fuzz.py --examples 500

The generator and the checks are those of tests/property/test_scenario_fuzz.py (which CI runs at 40).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from tests.property.test_scenario_fuzz import CALLS, MAX_CASE_S, scenarios  # noqa: E402

from flopcast.errors import FlopcastError  # noqa: E402


def _has_nan(x) -> bool:
    if isinstance(x, float):
        return not math.isfinite(x)
    if isinstance(x, dict):
        return any(_has_nan(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(_has_nan(v) for v in x)
    return False


class _Hang(Exception):
    pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=10_000)
    args = p.parse_args()
    counts: collections.Counter = collections.Counter()
    samples: dict[str, list] = collections.defaultdict(list)
    slowest = [0.0, ""]
    seen: set[str] = set()

    def hang(signum, frame):
        raise _Hang

    signal.signal(signal.SIGALRM, hang)
    start = time.perf_counter()

    @settings(max_examples=args.examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(scenarios())
    def run(sc):
        counts["scenarios"] += 1
        if counts["scenarios"] % 250 == 0:   # partial counts on stderr, for long runs
            print(json.dumps({"elapsed_s": round(time.perf_counter() - start, 1), **counts}), file=sys.stderr, flush=True)
        for name, call in CALLS.items():
            signal.setitimer(signal.ITIMER_REAL, MAX_CASE_S)
            t0 = time.perf_counter()
            try:
                out = call(copy.deepcopy(sc))
                kind = "nan_or_inf" if out is not None and _has_nan(out) else "report"
            except FlopcastError as e:
                kind = "flopcast_error" if "\n" not in str(e).strip() else "multi_line_error"
            except _Hang:
                kind = "hang_over_10_s"
            except Exception as e:   # a traceback in the CLI's terms
                import traceback

                kind = "other_exception"
                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{Path(frame.filename).name}:{frame.lineno}"
                if where not in seen:   # one sample per place it was raised
                    seen.add(where)
                    samples[kind].append(f"{name}: {type(e).__name__} at {where}: {e} on {sc!r}"[:600])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            dt = time.perf_counter() - t0
            if dt > slowest[0]:
                slowest[:] = [dt, name]
            counts[kind] += 1
            if kind in ("nan_or_inf", "hang_over_10_s", "multi_line_error"):
                samples[kind].append(f"{name} on {sc!r}"[:600])

    run()
    bad = sum(counts[k] for k in ("other_exception", "nan_or_inf", "hang_over_10_s", "multi_line_error"))
    print(json.dumps({**counts, "calls": sum(v for k, v in counts.items() if k != "scenarios"),
                      "slowest_call_s": round(slowest[0], 3), "slowest_call": slowest[1],
                      "wall_s": round(time.perf_counter() - start, 1),
                      "samples": {k: v[:20] for k, v in samples.items()}}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
