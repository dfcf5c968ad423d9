"""Re-derive the shipped calibration profile and print the honest accuracy figures.

    python benchmarks/calibrate.py          # compare with src/flopcast/catalog/calibration.yaml
    python benchmarks/calibrate.py --write  # rewrite it (the same as
                                            # `flopcast calibrate training inference --out ...`)

Prints, per estimator: fitted parameters, in-sample and leave-one-source-out median/max error, and
the one-parameter baseline's leave-one-source-out median.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flopcast import api
from flopcast.estimate.calibration import shipped

OUT = Path(__file__).resolve().parents[1] / "src" / "flopcast" / "catalog" / "calibration.yaml"


def main() -> int:
    t, cpu = time.perf_counter(), time.process_time()
    fresh = api.calibrate(["training", "inference"], out=OUT if "--write" in sys.argv else None)
    print(f"fit of both profiles with leave-one-source-out: {time.perf_counter() - t:.1f} s "
          f"({time.process_time() - cpu:.1f} CPU-s)")
    same = True
    for kind in ("training", "inference"):
        f = fresh[kind]
        print(f"\n{kind}: {f['num_rows']} rows")
        extra = sorted(set(shipped(kind).as_dict()) - set(f["parameters"]))
        if extra:   # a committed parameter the fit no longer derives
            same = False
            print(f"  committed but not derived: {', '.join(extra)}")
        for name, v in f["parameters"].items():
            old = shipped(kind).get(name)
            # the fit rounds each parameter to 4 decimals: a re-derived profile equals the committed one
            flag = "" if abs(old - v) <= 1e-9 else f"   (committed {old:.4f})"
            same &= not flag
            print(f"  {name:24s} {v:.4f}  from {len(f['rows_per_parameter'][name])} rows{flag}")
        # after --write the shipped profile in memory is the old one: validate the file just written
        rep = api.validate(kind, cv=True, baseline=True, profile=str(OUT) if "--write" in sys.argv else None)
        print(f"  in-sample median {rep['median_abs_error_frac']:.1%}, max {rep['max_abs_error_frac']:.1%}")
        print(f"  leave-one-source-out median {rep['cv_median_abs_error_frac']:.1%}, max {rep['cv_max_abs_error_frac']:.1%}"
              f" over {rep['num_sources']} sources")
        print(f"  baseline leave-one-source-out median {rep['baseline_cv_median_abs_error_frac']:.1%}")
    if "--write" in sys.argv:
        print(f"\nwrote {OUT.name}" + ("" if same else " (it differed from the committed profile)"))
    else:
        print("\ncommitted profile matches" if same else "\ncommitted profile DIFFERS: run with --write")
    return 0 if same or "--write" in sys.argv else 1


if __name__ == "__main__":
    sys.exit(main())
