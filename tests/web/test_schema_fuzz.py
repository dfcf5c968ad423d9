"""Schemathesis against the service's own OpenAPI schema: generated requests to every endpoint
(bodies, path and query parameters, including malformed ones) never get a 5xx answer."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from flopcast.web.app import create_app  # noqa: E402

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
EXAMPLES = int(os.environ.get("FLOPCAST_SCHEMA_EXAMPLES", "25"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx(case):
    """Every generated request is answered 2xx or 4xx, with a JSON body; errors are one line."""
    response = case.call()
    assert response.status_code < 500, (case.path, case.body, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert "\n" not in error and "Traceback" not in error
