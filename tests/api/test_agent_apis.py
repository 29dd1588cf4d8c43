"""/v1/messages and /v1/responses through TalkTuah, in process, around the stand-in engine.

Why: these APIs are passed through, not translated (agent_apis/), so what a client gets
must be the engine's own bytes, event framing included, with only the model id swapped
for the one asked for; and they get what /v1/chat/completions gets (keys, scopes, limits,
request ids, metrics, model routing). The stand-in engine runs as `vllm serve` (which has
both APIs) and names its model `<id>@main`, so the model swap is exercised; under the
transformers driver (no /v1/messages) the documented 501 comes back in Anthropic's shape.
The real engine (llama.cpp) and the SDKs are in tests/e2e/test_agent_apis_llamacpp_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..support.engine import MakeClient, shared_client, wait_status
from ..support.fake_engine import agent_answer, agent_stream
from ..test_metrics import samples, value
from .test_scopes import key_with

MESSAGE = {"model": "org/a", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
RESPONSE = {"model": "org/a", "max_output_tokens": 3, "input": "hi"}


@pytest.fixture(scope="module")
def agents_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agents")


@pytest.fixture(scope="module")
def vllm_client(agents_root: Path) -> Iterator[TestClient]:
    """TalkTuah serving `org/a` on the stand-in engine run as vLLM, one for the module (the
    tests compare token counts before and after, and create keys of their own). The admin
    key's proxy rate limit is out of the way of the hypothesis test's hundreds of calls."""
    with shared_client(agents_root, engine="vllm", proxy_rate_limit="100000/minute") as client:
        wait_status(client, lambda s: s["status"] == "ready")
        yield client


@pytest.fixture
def agent_events(agents_root: Path) -> Path:
    """What the module's stand-in engines received."""
    return agents_root / "engine-events.txt"


def tokens(client: TestClient) -> tuple[float, float]:
    found = samples(client)
    return (
        value(found, "talktuah_tokens_total", kind="prompt"),
        value(found, "talktuah_tokens_total", kind="completion"),
    )


def forwarded(events: Path, path: str) -> list[dict[str, Any]]:
    """The bodies the stand-in engine received on `path`, in order."""
    lines = events.read_text().splitlines() if events.exists() else []
    return [json.loads(line.split(" ", 1)[1]) for line in lines if line.split(" ")[0] == path]


@pytest.mark.parametrize(("path", "body"), [("/v1/messages", MESSAGE), ("/v1/responses", RESPONSE)])
def test_a_stream_is_the_engines_bytes_with_the_model_asked_for(
    vllm_client: TestClient, path: str, body: dict[str, Any]
) -> None:
    before = tokens(vllm_client)
    with vllm_client.stream("POST", path, json=body | {"stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        received = b"".join(response.iter_bytes())
    # The engine wrote `org/a@main`; the same events naming `org/a` are what arrives.
    assert received == b"".join(agent_stream(path, "org/a", 3))
    last = received.rstrip(b"\n").split(b"\n\n")[-1]
    final = "message_stop" if path == "/v1/messages" else "response.completed"
    assert last.startswith(f"event: {final}\n".encode())
    # Messages: 1 input + 2 read from the cache; Responses: 3. Both: 3 generated.
    assert tokens(vllm_client) == (before[0] + 3, before[1] + 3)


@pytest.mark.parametrize(("path", "body"), [("/v1/messages", MESSAGE), ("/v1/responses", RESPONSE)])
def test_a_whole_answer_names_the_model_asked_for_and_counts_its_tokens(
    vllm_client: TestClient, agent_events: Path, path: str, body: dict[str, Any]
) -> None:
    before = tokens(vllm_client)
    answer = vllm_client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == agent_answer(path, "org/a", 3)
    assert tokens(vllm_client) == (before[0] + 3, before[1] + 3)
    sent = forwarded(agent_events, path)[-1]
    assert sent["model"] == "org/a" and sent["stream"] is False  # said, never left out
    if path == "/v1/responses":
        assert sent["store"] is False  # stateless


def test_model_routing_is_the_chat_routes(vllm_client: TestClient, agent_events: Path) -> None:
    """The engine pool routes them as it routes chat: load on demand by `model`, the pool's
    `keep_alive` taken out of the body, the id asked for in the answer."""
    other = vllm_client.post("/v1/messages", json=MESSAGE | {"model": "org/b", "keep_alive": 0})
    assert other.status_code == 200, other.text
    assert other.json()["model"] == "org/b"
    sent = forwarded(agent_events, "/v1/messages")[-1]
    assert sent["model"] == "org/b" and "keep_alive" not in sent
    missing = vllm_client.post("/v1/messages", json=MESSAGE | {"model": "org/nope"})
    assert missing.status_code == 404
    error = missing.json()
    assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    assert "talktuah pull" in error["error"]["message"]
    assert error["detail"] == error["error"]["message"] and error["request_id"]
    unnamed = vllm_client.post("/v1/responses", json={"input": "hi"})
    assert unnamed.status_code == 200 and unnamed.json()["model"] == "org/a"
    wrong = vllm_client.post("/v1/responses", json=RESPONSE | {"model": "org/nope"})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == 404


def test_count_tokens_passes_through_and_counts_nothing(vllm_client: TestClient) -> None:
    before = tokens(vllm_client)
    counted = vllm_client.post(
        "/v1/messages/count_tokens", json={"model": "org/a", "messages": MESSAGE["messages"]}
    )
    assert counted.status_code == 200 and counted.json() == {"input_tokens": 7}
    assert tokens(vllm_client) == before


def test_keys_scopes_and_x_api_key(vllm_client: TestClient) -> None:
    infer = key_with(vllm_client, "infer")
    reader = key_with(vllm_client, "models:read")
    bare = {"Authorization": ""}  # the test client's admin Bearer header left out
    by_x_api_key = vllm_client.post(
        "/v1/messages", json=MESSAGE, headers=bare | {"x-api-key": infer}
    )
    assert by_x_api_key.status_code == 200, by_x_api_key.text

    refused = vllm_client.post("/v1/messages", json=MESSAGE, headers=bare | {"x-api-key": reader})
    assert refused.status_code == 403
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "permission_error"
    assert "lacks the 'infer' scope" in refused.json()["error"]["message"]
    refused = vllm_client.post(
        "/v1/responses", json=RESPONSE, headers={"Authorization": f"Bearer {reader}"}
    )
    assert refused.status_code == 403
    assert (
        refused.json()["error"]["code"] == 403 and "'infer'" in refused.json()["error"]["message"]
    )

    unknown = vllm_client.post(
        "/v1/messages", json=MESSAGE, headers=bare | {"x-api-key": "tt_nope"}
    )
    assert unknown.status_code == 401 and unknown.json()["error"]["type"] == "authentication_error"
    missing = vllm_client.post("/v1/messages", json=MESSAGE, headers=bare)
    assert missing.status_code == 401 and "x-api-key" in missing.json()["error"]["message"]
    # x-api-key is a key like any other: management routes take it too, with their scopes.
    assert (
        vllm_client.get("/api/model-status", headers=bare | {"x-api-key": reader}).status_code
        == 200
    )


def test_the_proxy_rate_limit_covers_them(vllm_client: TestClient) -> None:
    key = key_with(vllm_client, "infer", proxy_rate_limit="2/minute")
    headers = {"Authorization": f"Bearer {key}"}
    assert vllm_client.post("/v1/chat/completions", json={
        "model": "org/a", "messages": MESSAGE["messages"], "stream": False,
    }, headers=headers).status_code == 200  # fmt: skip
    assert vllm_client.post("/v1/responses", json=RESPONSE, headers=headers).status_code == 200
    over = vllm_client.post("/v1/messages", json=MESSAGE, headers=headers)
    assert over.status_code == 429 and over.headers["Retry-After"]
    assert over.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/messages", {"model": "org/a"}, "needs 'messages' (an array)"),
        ("/v1/messages", MESSAGE | {"stream": "yes"}, "'stream' must be true or false"),
        ("/v1/responses", {"model": "org/a"}, "needs 'input' (a string or an array)"),
        ("/v1/responses", RESPONSE | {"previous_response_id": "resp_1"}, "stateless"),
        ("/v1/messages", [1, 2], "must be a JSON object"),
    ],
)
def test_bad_bodies_are_400_in_the_apis_shape(
    vllm_client: TestClient, path: str, body: object, words: str
) -> None:
    answer = vllm_client.post(path, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert words in error["message"]
    if path == "/v1/messages":
        assert error["type"] == "invalid_request_error"
    else:
        assert error["code"] == 400


def test_too_deep_a_body_is_refused_before_any_engine(vllm_client: TestClient) -> None:
    deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = vllm_client.post("/v1/messages", content=deep)
    assert answer.status_code == 400 and "nests deeper" in answer.json()["error"]["message"]


def test_an_engine_without_the_api_is_the_documented_501(make_client: MakeClient) -> None:
    client = make_client()  # transformers serve: /v1/responses, no /v1/messages
    wait_status(client, lambda s: s["status"] == "ready")
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        answer = client.post(path, json=MESSAGE)
        assert answer.status_code == 501, answer.text
        assert answer.headers["x-should-retry"] == "false"
        body = answer.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
        assert message.startswith("The transformers engine serving org/a does not implement")
        assert "llamacpp, vllm, docker, external do" in message
        assert "/v1/chat/completions works on every engine" in message
    responses = client.post("/v1/responses", json=RESPONSE)
    assert responses.status_code == 200 and responses.json()["model"] == "org/a"


def test_the_model_list_speaks_anthropic_when_asked(vllm_client: TestClient) -> None:
    """n8n's Anthropic node fills its model picker from GET /v1/models (with x-api-key and
    anthropic-version), reading `id`, `display_name` and `created_at`."""
    headers = {"Authorization": "", "x-api-key": key_with(vllm_client, "infer")}
    listed = vllm_client.get("/v1/models", headers=headers | {"anthropic-version": "2023-06-01"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    ids = [m["id"] for m in body["data"]]
    assert ids[0] == "org/a"  # the loaded model first, then the other downloaded ones
    for entry in body["data"]:
        assert entry["display_name"] == entry["id"] and entry["type"] == "model"
        assert entry["created_at"]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (ids[0], ids[-1], False)
    plain = vllm_client.get("/v1/models").json()
    assert "display_name" not in plain["data"][0]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
_body = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["org/a", "org/nope", "../x", ""]) | _json,
        "messages": st.lists(_json, max_size=2) | _json,
        "input": st.text(max_size=20) | _json,
        "stream": st.booleans() | _json,
        "max_tokens": st.integers(1, 3) | _json,
        "previous_response_id": st.none() | st.text(max_size=5),
        "keep_alive": _json,
    },
)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens", "/v1/responses"])
@given(body=_body)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_body_gets_an_answer_in_the_apis_shape(
    vllm_client: TestClient, path: str, body: dict[str, Any]
) -> None:
    """Bodies of any shape: never a 5xx of TalkTuah's own, every error in the API's shape."""
    with vllm_client.stream("POST", path, content=json.dumps(body)) as response:
        raw = b"".join(response.iter_bytes())
    assert response.status_code < 500 or response.status_code in (502, 503, 504), raw[:500]
    if response.status_code >= 400:
        error = json.loads(raw)
        assert error["request_id"] and error["detail"]
        if path.startswith("/v1/messages"):
            assert error["type"] == "error" and error["error"]["message"]
        else:
            assert error["error"]["code"] == response.status_code
