"""The Engine panel lists the loaded models (GET /api/ps) with unload buttons, and the page
keeps one engine-status source: a switch follows the app's poller instead of polling the
same endpoint on its own (issue 18). Real `talktuah serve`, the stand-in engine, Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from ..support.constants import API_KEY
from ..support.server import TalkTuahProcess
from ..support.ui import serve_stand_in
from .test_dashboard import go, open_dashboard, shot, sign_in

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pool_server(tmp_path: Path) -> Iterator[TalkTuahProcess]:
    yield from serve_stand_in(
        tmp_path / "server", ["org/a", "org/b", "org/c"],
        FAKE_ENGINE_LOAD_DELAY="3",  # a switch takes a few status polls
    )  # fmt: skip


def test_the_engine_panel_lists_loaded_models_and_unloads_one(
    pool_server: TalkTuahProcess, desktop_page: Page, artifacts: Path
) -> None:
    page = desktop_page
    open_dashboard(page, pool_server)
    sign_in(page)
    expect(page.locator("#engine-pill")).to_have_attribute("data-state", "ready", timeout=30_000)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    loaded = httpx.post(
        f"{pool_server.url}/api/load-model", params={"model_id": "org/b"}, headers=headers
    )
    assert loaded.status_code == 202, loaded.text

    go(page, "Engine")
    rows = page.locator("#loaded-body tr")
    row_a = page.locator('#loaded-body tr[data-model="org/a"]')
    row_b = page.locator('#loaded-body tr[data-model="org/b"]')
    expect(row_b).to_contain_text("ready", timeout=20_000)
    expect(row_a).to_contain_text("never (default model)")
    expect(row_b).to_contain_text("in 4 min")  # TALKTUAH_KEEP_ALIVE's 5m, counting down
    expect(rows).to_have_count(2)
    shot(page, artifacts, "pool-0-loaded-models")

    row_b.get_by_role("button", name="Unload org/b").click()
    expect(row_b).to_have_count(0, timeout=20_000)
    expect(rows).to_have_count(1)
    expect(page.locator("#loaded-error")).to_have_text("")


def test_a_switch_follows_the_one_engine_status_poller(
    pool_server: TalkTuahProcess, desktop_page: Page
) -> None:
    page = desktop_page
    open_dashboard(page, pool_server)
    sign_in(page)
    expect(page.locator("#engine-pill")).to_have_attribute("data-state", "ready", timeout=30_000)
    asked: list[float] = []
    in_flight = {"now": 0, "most": 0}

    def started(request: Request) -> None:
        if "/api/model-loading-status" in request.url:
            asked.append(time.monotonic())
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])

    def ended(request: Request) -> None:
        if "/api/model-loading-status" in request.url:
            in_flight["now"] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    began = time.monotonic()
    row = page.locator('#models-body tr[data-model-id="org/c"]')
    row.get_by_role("button", name="Switch to org/c").click()
    switch = page.locator("#switch-status")
    expect(switch).to_contain_text("Loading org/c", timeout=10_000)
    expect(switch).to_contain_text("org/c is ready and serving.", timeout=30_000)
    took = time.monotonic() - began
    expect(page.locator("#engine-pill-label")).to_have_text("ready · org/c")
    assert in_flight["most"] == 1, "one status request at a time: one poller"
    # One poller at its loading pace (1 s) plus the switch's own refresh; two pollers (the
    # switch's 0.5 s and the app's) asked about three times a second.
    assert len(asked) <= took * 1.5 + 3, (len(asked), took)
