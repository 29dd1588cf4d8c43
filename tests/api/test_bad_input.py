"""Bad input answers 4xx with a message, never 500 (issue 15, "Bad input never answers 500").

Each case here answered 500 (or 502) before: a RecursionError from the JSON parser, NaN or
1e309 reaching `timedelta` or httpx's encoder, a 20-digit integer reaching SQLite, control
characters reaching the download planner, a failed `last_used_at` write during auth.

Refused requests leave nothing behind: their tests share the module's app (`module_client`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.errors import BadRequestError
from talktuah.keys import MAX_EXPIRES_IN_DAYS, MAX_STREAMS, KeyStore
from talktuah.proxy import MAX_JSON_DEPTH, parse_body
from talktuah.services import Services

from ..support.engine import CHAT, MakeClient, wait_status

PROXY_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/chat"]


def nested(depth: int) -> bytes:
    """`{"messages": [[[...]]]}` with the whole body `depth` levels deep."""
    return b'{"messages":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def assert_error(response: Any, status: int, *words: str) -> str:
    """The reply is `status` in our error shape (OpenAI's `error` too on /v1) and says `words`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["request_id"], body
    for word in words:
        assert word in body["detail"], body
    if response.request.url.path.startswith("/v1/"):
        assert body["error"]["message"] == body["detail"]
        assert body["error"]["code"] == status
    return str(body["detail"])


# -- deeply nested JSON on the proxy ------------------------------------------------------


@pytest.mark.parametrize("path", PROXY_ROUTES)
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, nested(100_000), nested(MAX_JSON_DEPTH + 1)],
    ids=["100k-brackets", "messages-100k-deep", "one-level-too-deep"],
)
def test_deeply_nested_json_is_a_400_not_a_recursion_error(
    module_client: TestClient, path: str, body: bytes
) -> None:
    """Python's JSON parser raises RecursionError (not ValueError) past ~1,000 levels: that
    was a 500 on every proxy route. Between 100 and 1,000 levels the body parsed, and failed
    to encode when forwarded."""
    client = module_client
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "nests deeper than", "flatter")
    assert client.get("/api/healthz").status_code == 200  # the worker lives on


def test_the_depth_limit_is_exact() -> None:
    """A body exactly MAX_JSON_DEPTH deep is taken, one level more is not; brackets inside
    strings do not count (the bracket count only decides whether to look closer)."""
    assert parse_body(nested(MAX_JSON_DEPTH))["messages"] is not None
    with pytest.raises(BadRequestError, match="deeper than"):
        parse_body(nested(MAX_JSON_DEPTH + 1))
    text = json.dumps({"messages": [{"role": "user", "content": "[" * 5000}]}).encode()
    assert parse_body(text)["messages"][0]["content"] == "[" * 5000
    wide = json.dumps({"messages": [[[]] for _ in range(5000)]}).encode()
    assert len(parse_body(wide)["messages"]) == 5000


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"], ids=lambda n: n
)
def test_non_finite_numbers_in_a_proxy_body_are_a_400(
    module_client: TestClient, number: str
) -> None:
    """httpx refuses to encode NaN/Infinity (`allow_nan=False`) when forwarding: a 500."""
    body = '{"messages":[{"role":"user","content":"hi"}],"temperature":' + number + "}"
    response = module_client.post("/v1/chat/completions", content=body)
    assert_error(response, 400, "finite number")


def test_non_finite_numbers_are_refused_before_the_engine_sees_them(
    make_client: MakeClient,
) -> None:
    """With an engine serving, NaN got past parsing and failed in httpx's encoder (500)."""
    client = make_client()
    wait_status(client, lambda s: s["status"] == "ready")
    body = json.dumps(CHAT)[:-1] + ', "temperature": NaN}'
    assert_error(client.post("/v1/chat/completions", content=body), 400, "NaN")
    assert_error(client.post("/v1/chat/completions", content=nested(2000)), 400, "deeper")
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


# -- numbers in key creation ----------------------------------------------------------------

HUGE_INT = "9" * 4000  # parses (Python allows 4,300 digits) and overflowed SQLite's INTEGER
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "1e300", HUGE_INT, "-1", "0"]


def create_key(client: TestClient, raw_field: str) -> Any:
    body = '{"name": "n8n", "scopes": ["infer"], ' + raw_field + "}"
    return client.post("/api/keys", content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("field", ["expires_in_days", "max_streams"])
@pytest.mark.parametrize("number", BAD_NUMBERS, ids=lambda n: n[:10])
def test_bad_numbers_in_key_creation_are_a_422(
    module_client: TestClient, field: str, number: str
) -> None:
    """NaN days crashed `timedelta`, 1e309 and 1e300 overflowed it, a 4,000-digit
    max_streams overflowed SQLite: all 500s before."""
    assert_error(create_key(module_client, f'"{field}": {number}'), 422, field)
    assert module_client.get("/api/keys").json()["count"] == 0


@pytest.mark.parametrize("field", ["expires_in_days", "max_streams"])
def test_a_number_too_long_to_parse_is_a_4xx(module_client: TestClient, field: str) -> None:
    """5,000 digits is over Python's int-parsing limit: FastAPI's body parser answers 400."""
    response = create_key(module_client, f'"{field}": {"9" * 5000}')
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("field", ["rate_limit", "proxy_rate_limit"])
@pytest.mark.parametrize(
    "limit",
    ["0/second", "9" * 30 + "/second", "1/" + "9" * 30 + " second", "1 per 99999 years"],
    ids=["zero", "huge-amount", "huge-window", "years"],
)
def test_out_of_range_rate_limits_are_a_422(
    module_client: TestClient, field: str, limit: str
) -> None:
    """Accepted before: 0/second locked the key out, 1 per 10^30 seconds answered
    `Retry-After: 1000000000000000019884624838656`."""
    assert_error(create_key(module_client, f'"{field}": "{limit}"'), 422, field, "out of range")


def test_the_largest_allowed_values_work(client: TestClient) -> None:
    body = {
        "name": "edge", "scopes": ["infer"], "expires_in_days": MAX_EXPIRES_IN_DAYS,
        "max_streams": MAX_STREAMS, "rate_limit": "1000000000/day", "proxy_rate_limit": "1/year",
    }  # fmt: skip
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["max_streams"] == MAX_STREAMS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expires_in_days": float("nan")},
        {"expires_in_days": float("inf")},
        {"expires_in_days": 1e300},
        {"max_streams": 10**30},
        {"rate_limit": "0/minute"},
    ],
    ids=["nan", "inf", "1e300", "10^30", "zero-limit"],
)
def test_the_key_store_refuses_them_too(services: Services, kwargs: dict[str, Any]) -> None:
    """KeyStore.create checks again for callers other than the HTTP route."""
    with pytest.raises(ValueError, match="must be|out of range"):
        services.keys.create("direct", ["infer"], **kwargs)


# -- control characters in download parameters ----------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "words"),
    [
        ("revision", "ma\x00in", ("revision", "control character")),
        ("revision", "main\n", ("revision", "control character")),
        ("revision", "v" * 300, ("revision", "at most 255")),
        ("allow_patterns", "*.json\x00", ("allow_patterns", "control character")),
        ("ignore_patterns", "*\x1b[31m.bin", ("ignore_patterns", "control character")),
        ("allow_patterns", "x" * 2000, ("allow_patterns", "at most 1024")),
        ("allow_patterns", ",".join(["*.json"] * 1001), ("allow_patterns", "at most 1000")),
    ],
    ids=["nul", "newline", "long", "pattern-nul", "pattern-escape", "long-pattern", "1001"],
)
def test_control_characters_in_download_parameters_are_a_422(
    module_client: TestClient, param: str, value: str, words: tuple[str, ...]
) -> None:
    """NUL in a revision or a glob went on to the planner (a 502 from the hub call, or worse
    with a reachable hub); refused at the API boundary without contacting anything."""
    params = {"model_id": "org/a", "auto": "true", param: value}
    assert_error(module_client.post("/api/download-model", params=params), 422, *words)
    assert module_client.get("/api/downloads").json()["count"] == 0


# -- a database that cannot be written does not break authentication ------------------------


def fill_to_the_last_byte(db: sqlite3.Connection) -> None:
    """Make the database full, for real: cap it at its current size (`max_page_count`), then
    add rows to api_keys until not even the smallest fits. The key's row then shares a page
    with no room left, so writing its 32-character `last_used_at` needs a page SQLite may
    not add: `sqlite3.OperationalError: database or disk is full`, as on a full disk."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    n = 0
    for size in (100, 30, 10, 3, 1, 0):
        while True:
            n += 1
            try:
                db.execute(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, created_at) "
                    "VALUES (?, ?, '', ?, '[]', '')",
                    (f"f{n}", "x" * size, f"h{n}"),
                )
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
                break


@pytest.mark.parametrize("failure", ["disk-full", "read-only"])
def test_a_database_that_cannot_be_written_does_not_break_auth(
    client: TestClient,
    anon_client: TestClient,
    services: Services,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Auth wrote `last_used_at` unguarded: a full disk made every scoped key's request a 500.
    The write is best effort now, logged once, not retried on every request."""
    key = client.post("/api/keys", json={"name": "n8n", "scopes": ["models:read"]}).json()
    db = services.state._db  # the one connection every write goes through
    if failure == "disk-full":
        fill_to_the_last_byte(db)
    else:
        db.execute("PRAGMA query_only = ON")  # SQLite refuses writes: a read-only database
    headers = {"Authorization": f"Bearer {key['key']}"}
    with caplog.at_level(logging.WARNING, logger="talktuah.keys"):
        for _ in range(3):
            assert anon_client.get("/api/models/local", headers=headers).status_code == 200
            services.keys._touched.clear()  # due again: each request tries the write
    warnings = [r for r in caplog.records if "last used" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert ("full" if failure == "disk-full" else "readonly") in warnings[0].getMessage()
    assert services.keys.get(key["id"]).last_used_at is None  # the write really failed


def test_an_unknown_key_is_still_a_401_with_a_read_only_database(
    client: TestClient, anon_client: TestClient, services: Services
) -> None:
    """Best effort only for the write: an unknown key is still a 401 with the disk full."""
    services.state._db.execute("PRAGMA query_only = ON")
    response = anon_client.get("/api/models/local", headers={"Authorization": "Bearer tt_nope"})
    assert response.status_code == 401


def test_keystore_touch_is_throttled_after_a_failure(services: Services) -> None:
    """A failed write still counts as the key's write for this window: no write per request."""
    keys: KeyStore = services.keys
    plaintext = keys.create("n8n", ["infer"]).plaintext
    assert plaintext is not None
    services.state._db.execute("PRAGMA query_only = ON")
    calls: list[str] = []
    services.state._db.set_trace_callback(calls.append)
    for _ in range(5):
        assert keys.authenticate(plaintext) is not None
    assert sum(sql.startswith("UPDATE api_keys") for sql in calls) == 1


def test_empty_messages_are_a_400(module_client: TestClient) -> None:
    """Found by tests/api/test_openapi_fuzz.py: `messages: []` went to the engine, which
    dropped the connection (transformers serve answers a bare 500): a 502 for a caller's
    mistake."""
    response = module_client.post("/v1/chat/completions", json={"messages": []})
    assert_error(response, 400, "'messages' is empty")
