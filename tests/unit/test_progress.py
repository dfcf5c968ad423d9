"""Progress reporting of the long commands: the callbacks the CLI's progress bars read."""

from __future__ import annotations

from pathlib import Path

from flopcast.run.sweep import sweep_training

ROOT = Path(__file__).resolve().parents[2]


def test_a_sweep_reports_its_progress_over_every_combination():
    """Rule: `sweep_training(progress=...)` is called with (done, total) in thousandths of the whole
    sweep: the total is 1000 x the combinations, done never goes back and never passes the total,
    and each combination's start is reported."""
    calls: list[tuple[int, int]] = []
    sweep_training(str(ROOT / "examples" / "llama3-8b-train-h100.yaml"), vary=["training.seq_len=2048,4096"],
                   workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls and {t for _, t in calls} == {2000}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] <= 2000
    assert 0 in done and 1000 in done


def test_the_source_progress_bar_counts_the_sources_left_out(monkeypatch):
    """Rule: validate and calibrate report each source they leave out by name; on a terminal the
    CLI's bar counts them (total unknown), and off a terminal there is no bar and no callback."""
    import sys

    from flopcast import cli

    seen: list[tuple[int, int | None]] = []
    monkeypatch.setattr(cli, "_progress_bar", lambda enabled, what: ((lambda d, t: seen.append((d, t))), None)
                        if enabled else (None, None))
    update, close = cli._source_progress(True, "validating")
    for src in ("megatron", "torchtitan", "mlperf"):
        update(src)
    assert seen == [(1, None), (2, None), (3, None)] and close is None
    assert cli._source_progress(False, "validating") == (None, None)
    monkeypatch.undo()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert cli._source_progress(True, "validating") == (None, None)
