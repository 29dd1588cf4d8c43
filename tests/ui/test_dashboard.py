"""The web dashboard at /ui, end to end in Chromium.

The page talks to the real server (which pulls from the test hub and supervises the stand-in
engine) exactly as a person's browser would: every call with the bearer key, progress from
the SSE endpoint read through fetch(), chat streamed from /v1/chat/completions.
Screenshots of every panel at both viewports land in tests/artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ..support.constants import API_KEY
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess

pytestmark = pytest.mark.timeout(120)

# Every value a progress bar showed, in order (a bar that jumps 0 -> 100 proves nothing).
RECORD_PROGRESS = """() => {
  window.__progress = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.getAttribute("role") === "progressbar") {
        window.__progress.push(Number(r.target.getAttribute("aria-valuenow")));
      }
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"]});
}"""

# Every text the answer bubble showed while it streamed.
RECORD_ANSWER = """() => {
  window.__answers = [];
  const log = document.querySelector("#chat-log");
  new MutationObserver(() => {
    const last = [...log.querySelectorAll(".msg-assistant .msg-text")].pop();
    if (last) window.__answers.push(last.textContent);
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""

NO_HORIZONTAL_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && (box.right > width + 1 || box.left < -1) && !el.closest(".sr-only");
  }).map((el) => el.tagName + (el.id ? "#" + el.id : "") + "." + el.className);
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10)};
}"""


def shot(page: Page, artifacts: Path, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=full_page)


def open_dashboard(page: Page, server: TalkTuahProcess) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page.locator("#login-view")).to_be_visible()


def sign_in(page: Page, key: str = API_KEY) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def go(page: Page, tab: str) -> None:
    page.get_by_role("tab", name=tab).click()
    expect(page.get_by_role("tab", name=tab)).to_have_attribute("aria-selected", "true")


def assert_fits(page: Page) -> None:
    result = page.evaluate(NO_HORIZONTAL_OVERFLOW)
    assert result["scroll"] <= result["width"] and not result["wide"], result


def test_pull_switch_chat_and_delete(
    ui_server: TalkTuahProcess, ui_hub: Hub, desktop_page: Page, artifacts: Path
) -> None:
    page = desktop_page
    ui_hub.add_repo("org/pulled", make_files(n_files=3, size=96 * 1024, seed=7))
    open_dashboard(page, ui_server)
    shot(page, artifacts, "desktop-0-sign-in")
    sign_in(page)

    # Models: what is on disk, the default model active once the engine serves it.
    expect(page.locator("#app-view")).to_be_visible()
    pill = page.locator("#engine-pill")
    expect(pill).to_have_attribute("data-state", "ready", timeout=20_000)
    expect(pill).to_contain_text("org/a")
    expect(page.locator('#models-body tr[data-model-id="org/a"]')).to_contain_text("Active")
    expect(page.locator('#models-body tr[data-model-id="org/old"]')).to_contain_text("Downloaded")

    # Pull from the hub, throttled so the bar has to move through the middle.
    ui_hub.faults.throttle_bps = 150_000
    try:
        page.evaluate(RECORD_PROGRESS)
        page.get_by_label("Model ID").fill("org/pulled")
        page.get_by_role("button", name="Pull model").click()
        expect(page.get_by_role("tab", name="Downloads")).to_have_attribute("aria-selected", "true")
        card = page.locator("#downloads-list > li").filter(has_text="org/pulled")
        bar = card.get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    finally:
        ui_hub.faults.throttle_bps = None
    expect(card.locator(".job-status")).to_have_text("complete")
    expect(card).to_contain_text("6 / 6")  # files: 3 shards + config, README, tokenizer config
    expect(card.get_by_role("button", name="Cancel the download of org/pulled")).to_be_hidden()
    expect(page.locator("#toasts")).to_contain_text("Download of org/pulled complete")
    seen = page.evaluate("window.__progress")
    assert any(0 < value < 100 for value in seen), f"the bar never moved through: {seen}"
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    shot(page, artifacts, "desktop-2-downloads")

    # Switch to it: loading, then ready, live in the page.
    go(page, "Models")
    row = page.locator('#models-body tr[data-model-id="org/pulled"]')
    expect(row).to_contain_text("Downloaded")
    row.get_by_role("button", name="Switch to org/pulled").click()
    switch = page.locator("#switch-status")
    expect(switch).to_contain_text("Loading org/pulled")
    expect(pill).to_have_attribute("data-state", "loading")
    expect(switch).to_contain_text("org/pulled is ready and serving", timeout=20_000)
    expect(row).to_contain_text("Active")
    expect(pill).to_contain_text("org/pulled")
    expect(page.locator('#models-body tr[data-model-id="org/a"]')).not_to_contain_text("Active")
    shot(page, artifacts, "desktop-1-models")

    # Engine and health.
    go(page, "Engine")
    expect(page.locator("#engine-badge")).to_have_text("ready")
    expect(page.locator("#engine-facts")).to_contain_text("org/pulled")
    expect(page.locator("#health-badge")).to_have_text("healthy")
    expect(page.locator("#health-facts")).to_contain_text("database")
    shot(page, artifacts, "desktop-3-engine")

    # Chat: the picker offers the served model; the answer streams in; history is kept.
    bodies: list[dict[str, object]] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/v1/chat/completions")
            else None
        ),
    )
    go(page, "Chat")
    expect(page.get_by_label("Model", exact=True)).to_have_value("org/pulled")
    page.get_by_label("Max tokens").fill("12")
    page.evaluate(RECORD_ANSWER)
    page.get_by_label("Message").fill("Hello there")
    page.get_by_label("Message").press("Enter")
    answers = page.locator("#chat-log .msg-assistant .msg-text")
    expect(answers.last).to_contain_text("t11", timeout=15_000)
    expect(page.locator("#chat-log .msg-user .msg-text")).to_have_text(["Hello there"])
    streamed = page.evaluate("window.__answers")
    assert any(0 < len(text) < len("t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11") for text in streamed), (
        f"the answer did not stream: {streamed}"
    )
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_label("Message").fill("And again")
    page.get_by_role("button", name="Send").click()
    expect(answers).to_have_count(2)
    expect(answers.last).to_contain_text("t11", timeout=15_000)
    assert [m["content"] for m in bodies[-1]["messages"]] == [  # type: ignore[union-attr]
        "Hello there",
        "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 ",
        "And again",
    ]
    assert bodies[-1]["stream"] is True and bodies[-1]["model"] == "org/pulled"
    shot(page, artifacts, "desktop-4-chat")

    # Delete, with a confirmation that can be declined.
    go(page, "Models")
    old = page.locator('#models-body tr[data-model-id="org/old"]')
    dialog = page.locator("#delete-dialog")
    old.get_by_role("button", name="Delete org/old").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete org/old?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(old).to_have_count(1)
    old.get_by_role("button", name="Delete org/old").click()
    shot(page, artifacts, "desktop-5-delete-confirm", full_page=False)
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(old).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("Successfully deleted org/old")
    with ui_server.client() as client:
        local = {m["model_id"] for m in client.get("/api/models/local").json()["models"]}
    assert local == {"org/a", "org/pulled"}


def test_cancel_a_running_download(
    ui_server: TalkTuahProcess, ui_hub: Hub, desktop_page: Page, artifacts: Path
) -> None:
    page = desktop_page
    ui_hub.add_repo("org/slow", make_files(n_files=2, size=256 * 1024, seed=8))
    open_dashboard(page, ui_server)
    sign_in(page)
    ui_hub.faults.throttle_bps = 30_000  # ~17 s for the repo: it is still running when cancelled
    try:
        page.get_by_label("Model ID").fill("org/slow")
        page.get_by_label("Include files").fill("*.safetensors, *.json")
        page.get_by_role("button", name="Pull model").click()
        card = page.locator("#downloads-list > li").filter(has_text="org/slow")
        expect(card.locator(".job-status")).to_have_text("downloading", timeout=10_000)
        expect(card).to_contain_text("include *.safetensors, *.json")
        expect(page.locator("#downloads-count")).to_have_text("1")
        expect(card.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "0")
        shot(page, artifacts, "desktop-2-downloads-running")
        card.get_by_role("button", name="Cancel the download of org/slow").click()
        expect(card.locator(".job-status")).to_have_text("cancelled", timeout=15_000)
    finally:
        ui_hub.faults.throttle_bps = None
    expect(page.locator("#downloads-count")).to_be_hidden()
    with ui_server.client() as client:
        job = client.get("/api/download-progress", params={"model_id": "org/slow"}).json()
    assert job["status"] == "cancelled"
    assert job["allow_patterns"] == ["*.safetensors", "*.json"]


def test_a_failed_switch_shows_the_engine_log(
    failing_server: TalkTuahProcess, desktop_page: Page, artifacts: Path
) -> None:
    page = desktop_page
    open_dashboard(page, failing_server)
    sign_in(page)
    expect(page.locator("#engine-pill")).to_have_attribute("data-state", "stopped")
    row = page.locator('#models-body tr[data-model-id="org/broken"]')
    row.get_by_role("button", name="Switch to org/broken").click()
    switch = page.locator("#switch-status")
    expect(switch).to_contain_text("Loading org/broken")
    expect(switch).to_contain_text("org/broken failed to load", timeout=20_000)
    log = switch.locator("pre")
    expect(log).to_contain_text("ValueError: the weights of org/broken are corrupt")
    expect(page.locator("#engine-pill")).to_have_attribute("data-state", "failed")
    shot(page, artifacts, "desktop-6-switch-failed")

    go(page, "Engine")
    expect(page.locator("#engine-badge")).to_have_text("failed")
    expect(page.locator("#engine-failure")).to_be_visible()
    expect(page.locator("#engine-log")).to_contain_text("ValueError: the weights of org/broken")
    expect(page.locator("#health-badge")).to_have_text("degraded")
    shot(page, artifacts, "desktop-7-engine-failed")

    go(page, "Chat")
    expect(page.get_by_label("Model", exact=True)).to_be_disabled()
    expect(page.locator("#chat-note")).to_contain_text("Switch to a model in the Models tab")


def test_a_wrong_key_is_refused_and_sign_out_forgets_the_key(
    ui_server: TalkTuahProcess, desktop_page: Page
) -> None:
    page = desktop_page
    open_dashboard(page, ui_server)
    sign_in(page, "tt-not-the-key-0000000000000000")
    error = page.locator("#login-error")
    expect(error).to_contain_text("That key was not accepted")
    expect(error).to_contain_text("Invalid API key")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('talktuah.apiKey')") is None

    sign_in(page)
    expect(page.locator("#app-view")).to_be_visible()
    page.reload()
    expect(page.locator("#app-view")).to_be_visible()  # the key was remembered
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#login-view")).to_be_visible()
    assert page.evaluate("localStorage.getItem('talktuah.apiKey')") is None
    page.reload()
    expect(page.locator("#login-view")).to_be_visible()


def test_keyboard_moves_between_tabs(ui_server: TalkTuahProcess, desktop_page: Page) -> None:
    page = desktop_page
    open_dashboard(page, ui_server)
    sign_in(page)
    models = page.get_by_role("tab", name="Models")
    models.focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Downloads")).to_be_focused()
    expect(page.locator("#panel-downloads")).to_be_visible()
    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="Chat")).to_be_focused()
    expect(page.locator("#panel-chat")).to_be_visible()
    page.keyboard.press("ArrowRight")  # wraps around
    expect(page.get_by_role("tab", name="Models")).to_have_attribute("aria-selected", "true")
    assert page.url.endswith("#models")


def test_every_panel_fits_a_phone(
    ui_server: TalkTuahProcess, phone_page: Page, artifacts: Path
) -> None:
    page = phone_page
    open_dashboard(page, ui_server)
    assert_fits(page)
    shot(page, artifacts, "phone-0-sign-in")
    sign_in(page)
    expect(page.locator("#engine-pill")).to_have_attribute("data-state", "ready", timeout=20_000)

    expect(page.locator("#models-body tr")).not_to_have_count(0)
    assert_fits(page)
    shot(page, artifacts, "phone-1-models")

    go(page, "Downloads")
    expect(page.locator("#downloads-list > li, #downloads-empty").first).to_be_visible()
    assert_fits(page)
    shot(page, artifacts, "phone-2-downloads")

    go(page, "Engine")
    expect(page.locator("#health-badge")).not_to_be_empty()
    assert_fits(page)
    shot(page, artifacts, "phone-3-engine")

    go(page, "Chat")
    expect(page.get_by_label("Model", exact=True)).not_to_have_value("")
    page.get_by_label("Message").fill("Hi from a phone")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-log .msg-assistant .msg-text")).to_contain_text("t4")
    assert_fits(page)
    shot(page, artifacts, "phone-4-chat")


def test_the_event_stream_parser_survives_any_chunking(
    ui_server: TalkTuahProcess, desktop_page: Page
) -> None:
    """sse-starlette ends lines in \\r\\n; a network chunk may end between \\r and \\n."""
    page = desktop_page
    open_dashboard(page, ui_server)
    stream = (
        ': ping\r\n\r\nevent: progress\r\ndata: {"a": 1}\r\n\r\n'
        "data: first\ndata: second\n\nevent: progress\rdata: x\r\r"
    )
    results = page.evaluate(
        """async (stream) => {
          const { SseParser } = await import("./js/api.js");
          const runs = [];
          for (let size = 1; size <= stream.length; size++) {
            const events = [];
            const parser = new SseParser((e) => events.push(e));
            for (let i = 0; i < stream.length; i += size) parser.feed(stream.slice(i, i + size));
            parser.end();
            runs.push(JSON.stringify(events));
          }
          return runs;
        }""",
        stream,
    )
    expected = [
        {"event": "progress", "data": '{"a": 1}'},
        {"event": "message", "data": "first\nsecond"},
        {"event": "progress", "data": "x"},
    ]
    assert set(results) == {json.dumps(expected, separators=(",", ":"))}
