"""`simulate` reports its steady state (issue 20): the requests after the warm-up, whether the run
settled, and the throughput, cost and energy per token there; a run too short to settle says so."""

from pathlib import Path

from flopcast import api

EXAMPLE = Path(__file__).parents[2] / "examples" / "llama3-8b-serving-sim.yaml"


def test_the_example_settles_and_reports_its_steady_state():
    """The README's simulation settles; after the warm-up its throughput is at least the whole run's
    (the empty start and the drain are cut) and so its cost per token at most the whole run's."""
    d = api.simulate_serving(EXAMPLE).to_dict()
    st = d["steady_state"]
    assert st["settled"] and 0 < st["warmup_requests"] <= d["num_requests"] // 2
    assert st["achieved_output_tokens_per_s"] >= d["output_tokens_per_s"]
    assert st["cost_per_million_output_tokens_usd"] <= d["cost_per_million_output_tokens_usd"]
    assert st["energy_per_output_token_j"] <= d["energy_per_output_token_j"]
    # the steady rate is what the workload offers (250 requests/s x 256 mean output tokens), within
    # the run's noise (16,000 requests: the two halves agree within 10%)
    assert abs(st["achieved_output_tokens_per_s"] / st["offered_output_tokens_per_s"] - 1) < 0.1
    assert not any(a["name"] == "steady_state" for a in d["assumptions"])


def test_a_run_too_short_to_settle_says_so():
    """400 requests of the example do not settle: steady_state.settled is false and an assumption
    tells the user to simulate more requests."""
    d = api.simulate_serving(EXAMPLE, max_requests=400).to_dict()
    assert d["steady_state"]["settled"] is False
    note = next(a for a in d["assumptions"] if a["name"] == "steady_state")
    assert "more requests" in note["why"]
