"""The search and plan tables show every key that makes a plan (issue 21: schedule, layout and vpp
were left out, so a plan copied from the table into `parallel:` gave different numbers)."""

from flopcast import api
from flopcast.report.render import PLAN_HEADERS, PLAN_KEYS, _plan_cols, plan_text
from flopcast.specs.parallel import PARALLEL_KEYS

SC = {"model": "mixtral-8x7b", "hardware": "h100-sxm", "cluster": {"num_devices": 64},
      "training": {"seq_len": 4096, "global_batch_seqs": 256}}


def test_every_parallel_key_has_a_column():
    """The table's columns are exactly the `parallel` section's keys."""
    assert set(PLAN_KEYS.values()) == set(PARALLEL_KEYS) and len(PLAN_HEADERS) == len(PARALLEL_KEYS)


def test_a_plan_copied_from_the_search_gives_the_same_figures():
    """Each best plan of a search, written into `parallel:` with the keys the table shows, estimates
    to the same step time and memory as the search reported."""
    d = api.search_training(SC, top=3, workers=1).to_dict()
    assert d["plans"]
    for p in d["plans"]:
        assert len(_plan_cols(p)) == len(PLAN_HEADERS) and plan_text(p).startswith(f"tp {p['tp']} pp {p['pp']}")
        parallel = {key: p[key] for key in PLAN_KEYS.values() if p.get(key) is not None}
        e = api.estimate_training(SC | {"parallel": parallel}).to_dict()
        assert e["step_time_s"] == p["step_time_s"]
        assert e["memory_per_device_bytes"] == p["memory_per_device_bytes"]
