"""Re-derive the shipped calibration profile and print the honest accuracy figures.

    python benchmarks/calibrate.py          # compare with src/flopcast/catalog/calibration.yaml
    python benchmarks/calibrate.py --write  # rewrite it (the same as
                                            # `flopcast calibrate training inference --out ...`)
    python benchmarks/calibrate.py --choose-ridge [training|inference]
                                            # the ridge weight by cross-validation and its nested
                                            # cross-validated error (validation/fit.py RIDGE_BY_KIND;
                                            # slow: about 30 fits a fold)

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


def choose_ridge(kinds: list[str]) -> int:
    """Print, per kind, each grid weight's leave-one-source-out median, the weight chosen, and the nested
    leave-one-source-out median (each outer fold's weight chosen on its training folds alone)."""
    import statistics

    from flopcast.validation import fit, runs

    for kind in kinds:
        cases = runs.load([kind])[0][kind]
        ridge, medians = fit.choose_ridge(cases, kind)
        print(f"{kind}: " + ", ".join(f"ridge {r:g}: {m:.2%}" for r, m in medians.items())
              + f" -> {ridge:g} (RIDGE_BY_KIND: {fit.ridge_for(kind):g})")
        errors, chosen = fit.nested_cross_validate(cases, kind)
        print(f"  nested leave-one-source-out median {statistics.median(abs(e) for e in errors.values()):.2%}; "
              "weight chosen without each family: " + ", ".join(f"{g} {r:g}" for g, r in chosen.items()))
    return 0


def main() -> int:
    if "--choose-ridge" in sys.argv:
        return choose_ridge([k for k in ("training", "inference") if k in sys.argv[2:]] or ["training", "inference"])
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
