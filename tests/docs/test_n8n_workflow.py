"""The importable n8n workflows in docs/examples/ call routes the app really has.

Every HTTP Request node's method, URL path and query parameter names are checked against
the app's OpenAPI schema; bodies must be valid OpenAI chat requests; every `$json.<field>`
an expression reads must be a field the node feeding it really returns; and the Webhook
node must be where a download's `callback_url` POSTs the final job (what that POST carries
is checked live in test_curl_examples.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talktuah.api import create_app
from talktuah.api.errors import HTTP_CODES, STATUS_FOR
from talktuah.config import Settings
from talktuah.downloads.jobs import DownloadJob, JobStatus
from talktuah.security import ApiKey
from talktuah.services import Services

from .doc_examples import DOCS

EXAMPLES = sorted((DOCS / "examples").glob("*.json"))
BASE = "http://talktuah:8787"
N8N_WEBHOOK_BASE = "http://n8n:5678/webhook/"
PASS_THROUGH = {"n8n-nodes-base.if", "n8n-nodes-base.wait"}  # output their input items
KEY = "tt-docs-test-key-0123456789abcdefghij"
_EXPR = re.compile(r"\{\{.*?\}\}", re.S)
#: What an error body carries: `detail`, `code`, the request id and any error's data.
ERROR_FIELDS = {"detail", "code", "request_id"} | {
    field for cls in STATUS_FOR for field in cls.fields
}
CODES = {cls.code for cls in STATUS_FOR} | set(HTTP_CODES.values())


def load(path: Path) -> dict[str, Any]:
    workflow = json.loads(path.read_text())
    assert isinstance(workflow.get("nodes"), list) and isinstance(workflow["connections"], dict)
    return workflow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app's OpenAPI schema and the fields its JSON answers carry."""
    home = tmp_path_factory.mktemp("n8n") / "home"
    services = Services.build(Settings(home=home, proxy_api_key=KEY), ApiKey(KEY, "env"))
    try:
        job = DownloadJob(
            id="0" * 12, model_id="org/name", revision="main", status=JobStatus.QUEUED,
            created_at="", updated_at="",
        ).to_api()  # fmt: skip
        loading = set(services.engine.status()) | {"loading", "error", "failed_model", "log_tail"}
        yield {
            "openapi": create_app(services).openapi(),
            "job": set(job),
            "answers": {
                "/api/download-model": set(job) | {"message", "info", "instructions"},
                "/api/download-progress": set(job),
                "/api/downloads/{job_id}": set(job),
                "/api/model-loading-status": loading,
                "/api/switch-model": {"status", "model_id", "message", "info"},
                "/api/delete-model": {"status", "model_id", "size_mb", "size_bytes", "message"},
            },
        }
    finally:
        services.close()


def route_of(url: str, openapi: dict[str, Any]) -> str:
    """The OpenAPI path template a node's URL hits (expressions stand for path params)."""
    assert url.startswith(BASE + "/"), f"{url!r} does not start with {BASE}"
    path = _EXPR.sub("X", url.removeprefix(BASE))
    for template in openapi["paths"]:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, path):
            return str(template)
    raise AssertionError(f"no route matches {url!r}")


def parents(workflow: dict[str, Any], name: str) -> list[str]:
    return [
        source
        for source, outputs in workflow["connections"].items()
        for branch in outputs.get("main", [])
        for link in branch
        if link["node"] == name
    ]


def sources(workflow: dict[str, Any], name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The nodes whose output reaches `name` as `$json`, looking through IF and Wait nodes."""
    by_name = {n["name"]: n for n in workflow["nodes"]}
    found: set[str] = set()
    for parent in parents(workflow, name):
        if parent in seen:
            continue
        if by_name[parent]["type"] in PASS_THROUGH:
            found |= sources(workflow, parent, seen | {parent})
        else:
            found.add(parent)
    return found


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from _EXPR.findall(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def never_errors(node: dict[str, Any]) -> bool:
    """An HTTP Request node with *Never Error* on: an error answer reaches the next node."""
    options = node["parameters"].get("options", {})
    return bool(options.get("response", {}).get("response", {}).get("neverError"))


def answer_fields(node: dict[str, Any], api: dict[str, Any]) -> set[str]:
    """What `$json` holds after `node`: an HTTP answer (with *Never Error*, an error body's
    fields too), a Set node's fields, a webhook call."""
    if node["type"] == "n8n-nodes-base.httpRequest":
        route = route_of(node["parameters"]["url"].lstrip("="), api["openapi"])
        assert route in api["answers"], f"{node['name']}: add {route} to the known answers"
        errors = ERROR_FIELDS if never_errors(node) else set()
        return set(api["answers"][route]) | errors
    if node["type"] == "n8n-nodes-base.set":
        return {a["name"] for a in node["parameters"]["assignments"]["assignments"]}
    if node["type"] == "n8n-nodes-base.webhook":
        return {"body", "headers", "query", "params"}
    raise AssertionError(f"unexpected source node type {node['type']}")


def test_there_are_example_workflows() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "n8n-talktuah-workflow.json",
        "n8n-talktuah-callback-workflow.json",
    }
    n8n_doc = (DOCS / "n8n.md").read_text()
    for path in EXAMPLES:
        assert f"examples/{path.name}" in n8n_doc, f"docs/n8n.md does not point at {path.name}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_http_request_nodes_match_the_api(path: Path, api: dict[str, Any]) -> None:
    workflow = load(path)
    openapi = api["openapi"]
    requests = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.httpRequest"]
    assert requests
    for node in requests:
        params = node["parameters"]
        where = f"{path.name}: {node['name']}"
        route = route_of(params["url"].lstrip("="), openapi)
        method = params.get("method", "GET").lower()
        assert method in openapi["paths"][route], f"{where}: {method.upper()} {route} not in API"
        operation = openapi["paths"][route][method]
        query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        declared = {p["name"] for p in query}
        required = {p["name"] for p in query if p.get("required")}
        sent = [q["name"] for q in params.get("queryParameters", {}).get("parameters", [])]
        assert params.get("sendQuery", False) == bool(sent), where
        assert set(sent) <= declared, f"{where}: unknown query parameters {set(sent) - declared}"
        assert required <= set(sent), f"{where}: missing required {required - set(sent)}"
        # The key goes in a Header Auth credential (Authorization: Bearer <key>), never inline.
        assert params["authentication"] == "genericCredentialType", where
        assert params["genericAuthType"] == "httpHeaderAuth", where
        assert "httpHeaderAuth" in node.get("credentials", {}), where
        assert "Bearer" not in json.dumps(params), f"{where}: a key is written into the node"
        if params.get("sendBody"):
            assert params.get("specifyBody") == "json", where
            body = json.loads(_EXPR.sub("x", params["jsonBody"].lstrip("=")))
            assert "requestBody" in operation or route in ("/api/chat", "/v1/chat/completions")
            if route in ("/api/chat", "/v1/chat/completions"):
                assert isinstance(body["messages"], list) and body["messages"], where
                assert all({"role", "content"} <= set(m) for m in body["messages"]), where
                assert body.get("stream") is False, f"{where}: n8n needs a JSON answer"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_expressions_read_fields_the_api_returns(path: Path, api: dict[str, Any]) -> None:
    workflow = load(path)
    by_name = {n["name"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        where = f"{path.name}: {node['name']}"
        for expr in expressions(node["parameters"]):
            for match in re.finditer(r"\$\('([^']+)'\)\.item\.json\.(\w+)", expr):
                named, field = match.groups()
                assert named in by_name, f"{where}: no node {named!r}"
                assert field in answer_fields(by_name[named], api), f"{where}: {named}.{field}"
            for match in re.finditer(r"(?<![\w)])\$json\.(\w+)(?:\.(\w+))?", expr):
                field, sub = match.groups()
                feeding = sources(workflow, node["name"])
                assert feeding, f"{where}: reads $json but nothing feeds it"
                for source in feeding:
                    fields = answer_fields(by_name[source], api)
                    assert field in fields, f"{where}: {source} has no field {field!r}"
                    if by_name[source]["type"] == "n8n-nodes-base.webhook" and field == "body":
                        assert sub in api["job"], f"{where}: the callback has no {sub!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_connections_are_whole(path: Path) -> None:
    workflow = load(path)
    names = [n["name"] for n in workflow["nodes"]]
    assert len(names) == len(set(names)), "node names must be unique"
    assert len({n["id"] for n in workflow["nodes"]}) == len(names), "node ids must be unique"
    for source, outputs in workflow["connections"].items():
        assert source in names, source
        for branch in outputs["main"]:
            for link in branch:
                assert link["node"] in names and link["type"] == "main", link
    triggers = {"n8n-nodes-base.manualTrigger", "n8n-nodes-base.webhook"}
    for node in workflow["nodes"]:
        if node["type"] not in triggers:
            assert parents(workflow, node["name"]), f"{node['name']} is not connected"
        if node["type"] == "n8n-nodes-base.if":
            assert len(workflow["connections"][node["name"]]["main"]) == 2, node["name"]


def test_an_if_node_branches_on_the_error_code_and_retries() -> None:
    """docs/n8n.md's pattern: after a request with *Never Error*, IF `$json.code` is a code
    TalkTuah publishes (model_busy) → Wait → the same request again."""
    workflow = load(DOCS / "examples" / "n8n-talktuah-workflow.json")
    by_name = {n["name"]: n for n in workflow["nodes"]}
    branching = [
        (node, condition)
        for node in workflow["nodes"]
        if node["type"] == "n8n-nodes-base.if"
        for condition in node["parameters"]["conditions"]["conditions"]
        if condition["leftValue"] == "={{ $json.code }}"
    ]
    assert branching, "no IF node branches on $json.code"
    for node, condition in branching:
        assert condition["rightValue"] in CODES, f"{condition['rightValue']!r} is no code"
        (request,) = parents(workflow, node["name"])
        assert by_name[request]["type"] == "n8n-nodes-base.httpRequest"
        assert never_errors(by_name[request]), f"{request}: errors must reach {node['name']}"
        (wait,) = [link["node"] for link in workflow["connections"][node["name"]]["main"][0]]
        assert by_name[wait]["type"] == "n8n-nodes-base.wait"
        assert [link["node"] for link in workflow["connections"][wait]["main"][0]] == [request]
    assert "{{ $json.code }}" in (DOCS / "n8n.md").read_text()


def test_the_webhook_node_receives_the_download_callback() -> None:
    workflow = load(DOCS / "examples" / "n8n-talktuah-callback-workflow.json")
    webhooks = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    assert len(webhooks) == 1
    hook = webhooks[0]["parameters"]
    # TalkTuah POSTs JSON once and does not wait for a workflow's answer.
    assert hook["httpMethod"] == "POST" and hook["responseMode"] == "onReceived"
    callbacks = [
        q["value"]
        for n in workflow["nodes"]
        if n["type"] == "n8n-nodes-base.httpRequest"
        for q in n["parameters"].get("queryParameters", {}).get("parameters", [])
        if q["name"] == "callback_url"
    ]
    assert callbacks == [N8N_WEBHOOK_BASE + hook["path"]]
