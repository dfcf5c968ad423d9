"""The plan workflow's search as the web service runs it: in the serving process, with one worker."""

from __future__ import annotations

import concurrent.futures

import pytest

from flopcast import web
from flopcast.run import search as run_search

# a training section without a parallel one: `plan` searches for the plan
SEARCHED = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 8},
            "training": {"seq_len": 4096, "global_batch_seqs": 64}}


@pytest.fixture
def spied(monkeypatch):
    """Record the `workers` each search receives; refuse any process pool (a fork per request)."""
    seen: list[int | None] = []
    real = run_search.search

    def spy(*args, **kwargs):
        seen.append(kwargs.get("workers"))
        return real(*args, **kwargs)

    def refuse(*a, **k):
        raise AssertionError("a process pool was created for a request")

    monkeypatch.setattr(run_search, "search", spy)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", refuse)
    return seen


def test_service_plan_searches_in_process(spied):
    """POST /api/plan (its endpoint called as the service calls it) runs the plan's search with
    workers=1: no process pool is forked inside a request thread. Before the fix the endpoint called
    `api.plan(sc)` and the search got workers=None (all cores, a pool per request)."""
    out = web.endpoints()["plan"].run(SEARCHED, web.Context())
    assert spied and all(w == 1 for w in spied)
    assert out["training"] is not None and out["training"]["fits"]


def test_plan_workers_reach_the_search(spied):
    """`plan(..., workers=N)` hands N to every search it runs; the default (None) leaves the choice
    to the search (all cores, the CLI's)."""
    from flopcast.run.plan import plan

    plan(SEARCHED, workers=1)
    assert spied == [1]
