"""Schemathesis over the app's own OpenAPI schema: no server errors, responses match it.

The engine is the stand-in (tests/support/fake_engine.py), so proxy routes answer for
real. Allowed 5xx are the documented proxy answers: 502 (engine failed or down), 503
(loading), 504 (timeout). Examples are bounded so the run stays short.

The schema is read from a throwaway app at import (schemathesis parametrizes at collection
time; its `from_fixture` does not work with pytest 9 here), and the generated requests go
to a fully started app through its TestClient.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY
from ..support.engine import start_client, wait_status

PROXY_ERRORS = {502, 503, 504}


def _openapi() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        services = Services.build(Settings(home=Path(home)), ApiKey(API_KEY, "env"))
        try:
            return create_app(services).openapi()
        finally:
            services.close()


schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for every operation: starting one per operation would dominate the run."""
    app = start_client(
        tmp_path_factory.mktemp("fuzz") / "home",
        rate_limit="100000/minute",
        proxy_rate_limit="100000/minute",
    )
    wait_status(app, lambda s: s["status"] == "ready")
    yield app
    app.__exit__(None, None, None)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, client: TestClient
) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {API_KEY}"}
    kwargs.pop("cookies", None)  # the API has no cookie parameters
    if isinstance(kwargs.get("data"), (bytes, str)):
        kwargs["content"] = kwargs.pop("data")  # raw bodies; `data=` is for forms
    response = client.request(**kwargs)
    if response.status_code >= 500:
        documented = case.path.startswith(("/v1/", "/api/chat", "/api/models"))
        assert documented and response.status_code in PROXY_ERRORS, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
        )
    if response.status_code >= 400:
        assert response.json().get("request_id"), response.text
    case.validate_response(response, checks=[response_schema_conformance])
