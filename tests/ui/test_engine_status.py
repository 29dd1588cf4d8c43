"""The dashboard says what serves now; the last failure is a notice of its own (issue 16).

Before, a switch that failed and was rolled back turned the pill and the Engine panel to
"failed" while the previous model served fine, and the failure showed 30 lines of frames
before its cause. Real `talktuah serve`, the stand-in engine (org/noarch fails as
`transformers serve` does on a config without `architectures`), Debian's Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ..support.engine import fail_log
from ..support.server import TalkTuahProcess
from ..support.ui import serve_stand_in
from .test_dashboard import assert_fits, go, open_dashboard, shot, sign_in

pytestmark = pytest.mark.timeout(120)

LONG = "some-org/Qwen2.5-0.5B-Instruct-a-rather-long-model-name-v2"

# Every input's placeholder fits its box (else it reads "*.safetensors, *.j").
PLACEHOLDERS_THAT_DO_NOT_FIT = """() => {
  const canvas = document.createElement("canvas").getContext("2d");
  return [...document.querySelectorAll("input[placeholder], textarea[placeholder]")]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => {
      const style = getComputedStyle(el);
      canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      return canvas.measureText(el.placeholder).width > room + 1;
    })
    .map((el) => `${el.id}: ${el.placeholder}`);
}"""

# Model ids on more than one line: each part ("org/", "name") is one line box.
WRAPPED_IDS = """() => [...document.querySelectorAll(".mid-part")]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => {
    const line = parseFloat(getComputedStyle(el).lineHeight);
    return el.getBoundingClientRect().height > 1.6 * line;
  })
  .map((el) => el.textContent)"""


@pytest.fixture
def status_server(tmp_path: Path) -> Iterator[TalkTuahProcess]:
    yield from serve_stand_in(
        tmp_path / "server", ["org/a", "org/noarch", LONG],
        FAKE_ENGINE_LOAD_DELAY="4",  # longer than a status poll: the chat sees it load
        FAKE_ENGINE_FAIL_ONLY="org/noarch",
        FAKE_ENGINE_FAIL_LOG=fail_log(tmp_path / "noarch.log"),
    )  # fmt: skip


def test_a_rolled_back_switch_reads_as_serving_the_previous_model(
    status_server: TalkTuahProcess, desktop_page: Page, artifacts: Path
) -> None:
    page = desktop_page
    open_dashboard(page, status_server)
    expect(page.locator("#login-view")).to_contain_text(
        "Paste your key — talktuah key on the server shows it"
    )
    sign_in(page)
    pill = page.locator("#engine-pill")
    expect(pill).to_have_attribute("data-state", "ready", timeout=20_000)

    row = page.locator('#models-body tr[data-model-id="org/noarch"]')
    row.get_by_role("button", name="Switch to org/noarch").click()
    switch = page.locator("#switch-status")
    expect(switch).to_contain_text("org/noarch failed to load. org/a still serves.", timeout=20_000)
    expect(switch.locator(".failure-cause")).to_have_text(
        "Cause: TypeError: 'NoneType' object is not subscriptable"
    )
    expect(switch.locator(".failure-hint")).to_contain_text("names no `architectures`")
    expect(switch.locator("details")).not_to_have_attribute("open", "")  # frames folded
    expect(switch.locator("pre")).to_be_hidden()
    expect(pill).to_have_attribute("data-state", "ready")
    expect(page.locator("#engine-pill-label")).to_have_text("ready · org/a")
    shot(page, artifacts, "status-0-switch-rolled-back")

    go(page, "Engine")
    expect(page.locator("#engine-badge")).to_have_text("ready")
    facts = page.locator("#engine-facts")
    expect(facts).to_contain_text("Servingorg/a")
    expect(page.locator("#engine-message")).to_contain_text("org/a still serves")
    notice = page.locator("#engine-failure")
    expect(notice).to_be_visible()
    expect(page.locator("#engine-failure-text")).to_contain_text("org/noarch failed to load")
    expect(page.locator("#engine-failure-cause")).to_have_text(
        "Cause: TypeError: 'NoneType' object is not subscriptable"
    )
    expect(page.locator("#engine-failure-hint")).to_contain_text("architectures")
    expect(page.locator("#engine-log")).to_be_hidden()
    page.locator("#engine-failure-details summary").click()
    expect(page.locator("#engine-log")).to_contain_text("config.architectures[0]")
    shot(page, artifacts, "status-1-engine-rolled-back")
    assert "failed" not in (page.locator("#engine-badge").text_content() or "")
    assert "failed" not in (pill.text_content() or "")

    notice.get_by_role("button", name="Dismiss").click()
    expect(notice).to_be_hidden()
    with status_server.client() as client:
        status = client.get("/api/model-loading-status").json()
    assert status["last_failure"] is None and status["status"] == "ready"
    page.reload()
    go(page, "Engine")
    expect(page.locator("#engine-badge")).to_have_text("ready")
    expect(notice).to_be_hidden()
    shot(page, artifacts, "status-2-engine-dismissed")

    # The chat says which model it waits for while one loads.
    go(page, "Chat")
    with status_server.client() as client:
        assert client.post("/api/switch-model", params={"model_id": LONG}).status_code == 202
    note = page.locator("#chat-note")
    expect(note).to_contain_text(f"Loading {LONG}…", timeout=10_000)
    expect(page.get_by_label("Model", exact=True)).to_be_disabled()
    shot(page, artifacts, "status-3-chat-loading")
    expect(page.get_by_label("Model", exact=True)).to_have_value(LONG, timeout=20_000)
    expect(note).not_to_contain_text("Loading")


def test_ids_do_not_wrap_and_placeholders_fit(
    status_server: TalkTuahProcess, phone_page: Page, desktop_page: Page, artifacts: Path
) -> None:
    for name, page in (("phone", phone_page), ("desktop", desktop_page)):
        open_dashboard(page, status_server)
        assert page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == []
        sign_in(page)
        expect(page.locator(f'#models-body tr[data-model-id="{LONG}"]')).to_be_visible()
        for tab in ("Models", "Engine", "Chat"):
            go(page, tab)
            assert page.evaluate(WRAPPED_IDS) == [], tab
            assert page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == [], (name, tab)
            assert_fits(page)
        go(page, "Models")
        shot(page, artifacts, f"status-4-{name}-model-ids")
