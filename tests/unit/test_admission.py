"""The admission limits shared by the serving estimator and the simulator (estimate/admission.py):
batch_size when given, else what the caller's other limits allow, never above max_batch_size; the
token budget is max_num_tokens (alias max_tokens_per_iteration)."""

from __future__ import annotations

import pytest

from flopcast.estimate.admission import concurrent_sequences, token_budget
from flopcast.specs.serving import inference_from_mapping


@pytest.mark.parametrize(("section", "unlimited", "expected"), [
    ({}, 500, 500),                                            # batch_size max: the caller's limit
    ({"batch_size": 32}, 500, 32),                             # batch_size given: it, even past the limit
    ({"batch_size": 800}, 500, 800),
    ({"max_batch_size": 16}, 500, 16),                         # the cap applies to max ...
    ({"batch_size": 32, "max_batch_size": 16}, 500, 16),       # ... and to a given batch_size
    ({"batch_size": 8, "max_batch_size": 16}, 500, 8),
    ({"max_batch_size": 1000}, 500, 500),
])
def test_concurrent_sequences(section, unlimited, expected):
    """batch_size when given, else `unlimited`; never above max_batch_size."""
    assert concurrent_sequences(inference_from_mapping(section), unlimited=unlimited) == expected


def test_token_budget_is_max_num_tokens_under_either_name():
    """max_num_tokens and max_tokens_per_iteration are one key; 8192 when neither is given."""
    assert token_budget(inference_from_mapping({"max_num_tokens": 2048})) == 2048
    assert token_budget(inference_from_mapping({"max_tokens_per_iteration": 2048})) == 2048
    assert token_budget(inference_from_mapping({})) == 8192
