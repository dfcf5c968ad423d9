"""The bad-input corpus (tests/corpus/bad_inputs.yaml): every case exits with code 2 and prints one
line `error: <field>: ...` on stderr, with no traceback and nothing on stdout, within 10 s."""

from __future__ import annotations

import copy
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flopcast import cli

CORPUS = yaml.safe_load((Path(__file__).parent / "bad_inputs.yaml").read_text())
CASES = CORPUS["cases"]
MAX_CASE_S = 10.0


def _set(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def _drop(data: dict, dotted: str) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]


def write_case(case: dict, tmp: Path) -> list[str]:
    """Write the case's files into `tmp`; its argv with the placeholders filled in."""
    scenario = tmp / "scenario.yaml"
    if "bytes_hex" in case:
        scenario.write_bytes(bytes.fromhex(case["bytes_hex"]))
    elif "text" in case:
        scenario.write_text(case["text"], encoding="utf-8")
    else:
        data = copy.deepcopy(CORPUS["bases"][case.get("base", "train")])
        for path, value in (case.get("set") or {}).items():
            _set(data, path, value)
        for path in case.get("drop") or ():
            _drop(data, path)
        scenario.write_text(yaml.safe_dump(data), encoding="utf-8")
    for name, content in (case.get("files") or {}).items():
        target = tmp / name
        if isinstance(content, dict):
            target.write_bytes(bytes.fromhex(content["hex"]))
        else:
            target.write_text(content, encoding="utf-8")
    (tmp / "a-folder").mkdir(exist_ok=True)
    (tmp / "a-file.txt").write_text("not a folder\n")
    fill = {"{scenario}": str(scenario), "{tmp}": str(tmp), "{dir}": str(tmp / "a-folder"),
            "{file}": str(tmp / "a-file.txt")}
    argv = []
    for arg in case["argv"]:
        for k, v in fill.items():
            arg = arg.replace(k, v)
        argv.append(arg)
    return argv


class _Hang(Exception):
    pass


def run_case(case: dict, tmp: Path) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of one case run in this process (SIGALRM stops a hang)."""
    import contextlib
    import io

    argv = write_case(case, tmp)
    out, err = io.StringIO(), io.StringIO()

    def hang(signum, frame):
        raise _Hang

    old = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, MAX_CASE_S)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def test_corpus_is_large_and_ids_are_unique():
    """At least 150 cases, each with a unique id."""
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch):
    """Exit 2; stderr is exactly one line `error: ...` containing the expected words; no traceback."""
    monkeypatch.chdir(tmp_path)
    code, out, err, seconds = run_case(case, tmp_path)
    assert code == 2, (code, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if "expect" in case:
        assert case["expect"] in lines[0], lines[0]
    assert seconds < MAX_CASE_S
