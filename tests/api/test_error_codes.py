"""The error contract (issue 20): every TalkTuahError has a stable `code`, a status in
`STATUS_FOR`, a place in the tree that `errors.py`'s docstring draws and a row in
docs/api/errors.md; every error body carries `code` and the error's data beside `detail`, on
/api, on /v1 (OpenAI's shape) and on /v1/messages (Anthropic's).

The tree is rendered from the classes (each under its first TalkTuahError base) and compared
with the docstring's: adding a class, moving one or changing a code or status without the
other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from talktuah import errors
from talktuah.api.errors import HTTP_CODES, RESERVED, STATUS_FOR
from talktuah.errors import TalkTuahError

from ..support.engine import CHAT, MakeClient, wait_status

DOCS = Path(__file__).parents[2] / "docs" / "api" / "errors.md"
CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

#: (parent, code, status) by class name.
Tree = dict[str, tuple[str | None, str, int]]


def error_classes() -> list[type[TalkTuahError]]:
    """Every TalkTuahError class `errors.py` defines, the base included."""
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, TalkTuahError)
        and value.__module__ == errors.__name__
    ]


def parent_of(cls: type[TalkTuahError]) -> str | None:
    """Where the tree draws a class: under its first base that is a TalkTuahError."""
    bases = [b for b in cls.__bases__ if issubclass(b, TalkTuahError)]
    return bases[0].__name__ if bases else None


def rendered_tree() -> Tree:
    return {
        cls.__name__: (parent_of(cls), cls.code, STATUS_FOR[cls])
        for cls in error_classes()
        if cls in STATUS_FOR
    }


def docstring_tree() -> Tree:
    """The tree in errors.py's docstring: name, code, status, each line's depth its parent."""
    assert errors.__doc__ is not None
    block = errors.__doc__.split("```")[1].strip("\n")
    tree: Tree = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^([│├└─ ]*)([A-Za-z]+)\s+([a-z0-9_]+)\s+(\d{3})\b", line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match.group(1)) // 4
        del stack[depth:]
        tree[match.group(2)] = (stack[-1] if stack else None, match.group(3), int(match.group(4)))
        stack.append(match.group(2))
    return tree


def test_every_class_has_a_unique_snake_case_code_and_a_status() -> None:
    classes = error_classes()
    assert set(STATUS_FOR) == set(classes), "STATUS_FOR and errors.py list other classes"
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), f"a code is used twice: {sorted(codes)}"
    for cls in classes:
        assert "code" in vars(cls), f"{cls.__name__} inherits its code; give it its own"
        assert CODE.match(cls.code), f"{cls.__name__}.code {cls.code!r} is not snake_case"
        assert not set(cls.fields) & RESERVED, f"{cls.__name__} data shadows the body's names"
    others = list(HTTP_CODES.values())
    assert not set(others) & set(codes) and len(others) == len(set(others))


def test_the_docstring_tree_is_the_class_tree_and_the_mapping() -> None:
    assert docstring_tree() == rendered_tree()


def test_docs_list_every_code_with_its_status_and_data() -> None:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\d{3}|4xx) \| (.*)\|$", DOCS.read_text(), re.M)
    documented = {code: (status, rest) for code, status, rest in rows}
    for cls in error_classes():
        status, rest = documented.pop(cls.code)
        # an engine's refusal is sent with the engine's own 4xx (STATUS_FOR: its fallback)
        expected = "4xx" if cls is errors.EngineRejectedError else str(STATUS_FOR[cls])
        assert status == expected and f"`{cls.__name__}`" in rest, cls
        for field in cls.fields:
            assert f"`{field}`" in rest, (cls, field)
    for status, code in HTTP_CODES.items():
        assert documented.pop(code)[0] == str(status)
    assert not documented, f"docs/api/errors.md lists codes that do not exist: {documented}"


def test_error_bodies_carry_code_and_data_on_every_surface(client: TestClient) -> None:
    missing = client.get("/api/downloads/nope")
    assert missing.status_code == 404
    assert missing.json() | {"request_id": None} == {
        "detail": missing.json()["detail"],
        "code": "job_not_found",
        "job_id": "nope",
        "request_id": None,
    }
    unauthorized = client.get("/api/models/local", headers={"Authorization": "Bearer tt_no"})
    assert unauthorized.json()["code"] == "unauthorized"
    invalid = client.get("/api/download-progress", params={"model_id": "../etc"})
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_model_id"
    openai = client.post("/v1/chat/completions", content=b"[")
    assert openai.status_code == 400
    assert openai.json()["code"] == "invalid_request_body"
    assert openai.json()["error"]["code"] == 400  # OpenAI's object keeps what SDKs read
    anthropic = client.post("/v1/messages", json=[1])
    assert anthropic.status_code == 400 and anthropic.json()["type"] == "error"
    assert anthropic.json()["code"] == "invalid_request_body"


def test_data_is_what_init_set() -> None:
    busy = errors.ModelBusyError("busy. Cancel it.", model_id="org/a", job_id="j1")
    assert busy.data() == {"model_id": "org/a", "job_id": "j1"}
    assert errors.EngineLoadingError("wait", retry_after=3).data() == {"retry_after": 3}
    hub = errors.HubNotFoundError("gone", repo_id="org/x")
    assert isinstance(hub, errors.ModelNotFoundError) and hub.data() == {"repo_id": "org/x"}


def test_an_engines_error_answer_is_an_engine_error_with_its_status(
    make_client: MakeClient,
) -> None:
    """The engine's own error answers are raised (EngineFailedError, EngineRejectedError)
    and answered by the one translator: OpenAI's `error` object as before, with `code` and
    the engine's status as data; streamed or not."""
    client = make_client()
    wait_status(client, lambda s: s["status"] == "ready")
    broken = CHAT | {"messages": [{"role": ""}]}  # the stand-in's plain 500, as the engine's
    for body in (broken, broken | {"stream": True}):
        failed = client.post("/v1/chat/completions", json=body)
        assert failed.status_code == 502
        answer = failed.json()
        assert answer["code"] == "engine_failed" and answer["engine_status"] == 500
        assert answer["error"] == {
            "message": answer["detail"],
            "type": "engine_error",
            "code": 502,
        }
        assert answer["request_id"] == failed.headers["x-request-id"]
    missing = client.post("/v1/embeddings", json={"model": "org/a", "input": "x"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "engine_rejected" and missing.json()["engine_status"] == 404
    assert missing.json()["error"]["type"] == "not_found"
