"""Schemathesis over the app's own OpenAPI schema: no server errors, responses match it.

Issue 15 asks that schemathesis over every `/api` route, *with a reachable hub*, finds no
5xx: so the app talks to the test hub (tests/support/hub.py, `Settings(hf_endpoint=...)`)
and download planning really happens, and the engine is the stand-in
(tests/support/fake_engine.py), so proxy routes answer for real. The only 5xx allowed are
the proxy's documented answers on its own routes: 502 (engine failed or down), 503
(loading), 504 (timeout). Everything else goes through schemathesis' `not_a_server_error`.

Schemathesis cannot guess a model id the hub has, nor send the proxy a body (those routes
read the raw request, so the schema declares none): two hypothesis tests beside it cover
the download parameters against real hub repos and JSON bodies on /v1. Examples are bounded
so the module runs in well under a minute on 2 cores.

The schema is read from a throwaway app at import (schemathesis parametrizes at collection
time; its `from_fixture` does not work with pytest 9 here), and the generated requests go
to a fully started app through its TestClient.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY
from ..support.engine import start_client, wait_status
from ..support.fixtures import serve_hub
from ..support.hub import Hub
from ..support.repos import model_files

PROXY_ERRORS = {502, 503, 504}
PROXY_PATHS = ("/v1/", "/api/chat", "/api/models")
#: On the test hub; org/a and org/b are also in the models dir, org/remote only on the hub.
HUB_REPOS = ("org/a", "org/b", "org/remote")


def _openapi() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        services = Services.build(Settings(home=Path(home)), ApiKey(API_KEY, "env"))
        try:
            return create_app(services).openapi()
        finally:
            services.close()


schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub for the module (the shared `hub` fixture is per test), with real repos."""
    for server in serve_hub(tmp_path_factory.mktemp("hub")):
        for seed, repo_id in enumerate(HUB_REPOS):
            server.add_repo(repo_id, model_files(seed))
        yield server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, hub: Hub) -> Iterator[TestClient]:
    """One app for every operation: starting one per operation would dominate the run."""
    app = start_client(
        tmp_path_factory.mktemp("fuzz") / "home",
        rate_limit="100000/minute",
        proxy_rate_limit="100000/minute",
        hf_endpoint=hub.url,
    )
    wait_status(app, lambda s: s["status"] == "ready")
    yield app
    app.__exit__(None, None, None)


def _check(response: Any, path: str) -> None:
    """No 5xx but the proxy's own; every error carries the request id to quote."""
    if response.status_code >= 500:
        documented = path.startswith(PROXY_PATHS)
        assert documented and response.status_code in PROXY_ERRORS, (
            f"{path} -> {response.status_code}: {response.text}"
        )
    if response.status_code >= 400:
        body = response.json()
        assert body.get("request_id") and body.get("code"), response.text


def test_every_management_answer_has_a_named_schema() -> None:
    """Each /api route's success answer is a component schema (api/schemas.py's
    models), not a free-form object: the conformance check below can then fail on a 2xx.
    The three that stream or pass bytes through are the exceptions, as `/v1` is."""
    openapi = _openapi()
    passthrough = {"/api/chat", "/api/models", "/api/downloads/{job_id}/events"}
    missing = []
    for path, operations in openapi["paths"].items():
        if not path.startswith("/api/") or path in passthrough:
            continue
        for method, operation in operations.items():
            ok = next(c for c in operation["responses"] if c.startswith("2"))
            content = operation["responses"][ok].get("content", {}).get("application/json", {})
            if not json.dumps(content.get("schema", {})).count("#/components/schemas/"):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"answers without a response model: {missing}"


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
    _check(response, case.path)
    checks = [response_schema_conformance]
    if not case.path.startswith(PROXY_PATHS):
        checks.append(not_a_server_error)
    case.validate_response(response, checks=checks)


_text = st.text(max_size=40)
_params = st.fixed_dictionaries(
    {"model_id": st.sampled_from(HUB_REPOS), "auto": st.just("true")},
    optional={
        "revision": st.one_of(st.sampled_from(["main", "v1", "0" * 40, "../x"]), _text),
        "allow_patterns": st.lists(_text, max_size=3),
        "ignore_patterns": st.lists(_text, max_size=3),
    },
)


@given(params=_params)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_download_parameters_against_real_hub_repos(
    client: TestClient, params: dict[str, Any]
) -> None:
    """Repos the hub has, with any revision and patterns: planning talks to the hub, and
    whatever it says, the answer is not a 5xx (a reachable hub's 'no' is a 4xx)."""
    response = client.post("/api/download-model", params=params)
    _check(response, f"/api/download-model {params!r}")
    if response.status_code < 300 and response.json().get("job_id"):
        client.delete(f"/api/downloads/{response.json()['job_id']}")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", ""]) | _json},
    optional={"content": _json},
)
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=3) | _json},
    optional={
        "model": st.sampled_from(["org/a", "org/b"]) | _json,
        "prompt": _json,
        "input": _json,
        "temperature": _json,
        "max_tokens": st.integers(1, 3),
    },
)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/api/chat"])
@given(body=_body)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_proxy_bodies_against_the_stand_in_engine(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    """OpenAI bodies of any shape, forwarded to a serving engine: no 5xx of TalkTuah's own.

    A 502 saying the engine answered 5xx is the stand-in engine's deliberate bug (an empty
    `role`, as transformers serve has it; tests/engine/test_supervisor.py); any other 5xx
    is TalkTuah passing on a body it should have refused (`messages: []` was one)."""
    body["stream"] = False
    response = client.post(path, content=json.dumps(body))
    if response.status_code >= 500:
        engine_bug = response.status_code == 502 and "engine failed" in response.json()["detail"]
        assert engine_bug, f"{path} {body!r} -> {response.status_code}: {response.text}"
