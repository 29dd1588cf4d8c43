"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real
`talktuah serve` process, the test hub and the stand-in engine.

One server, hub and browser for the module (the tests run in file order); every process
started here is stopped by its fixture's teardown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from ..support.constants import FAST_DOWNLOADS
from ..support.fixtures import serve_hub
from ..support.hub import Hub
from ..support.server import TalkTuahProcess
from ..support.ui import serve_stand_in

CHROMIUM = os.environ.get("TALKTUAH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Installed before the server starts: `org/a` is served at start, `org/old` is there to delete.
INSTALLED = ("org/a", "org/old")


@pytest.fixture(scope="module")
def ui_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    yield from serve_hub(tmp_path_factory.mktemp("ui-hub"))


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, ui_hub: Hub) -> Iterator[TalkTuahProcess]:
    yield from serve_stand_in(
        tmp_path_factory.mktemp("ui"), INSTALLED, HF_ENDPOINT=ui_hub.url, **FAST_DOWNLOADS,
        FAKE_ENGINE_START_DELAY="1",  # long enough to see "loading" in the page
    )  # fmt: skip


@pytest.fixture
def failing_server(tmp_path: Path) -> Iterator[TalkTuahProcess]:
    """A server whose engine dies at start with a message in its log; nothing active."""
    yield from serve_stand_in(
        tmp_path / "failing", ["org/broken"], default_model=None,
        FAKE_ENGINE_FAIL="the weights of org/broken are corrupt", FAKE_ENGINE_START_DELAY="0.5",
    )  # fmt: skip


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def _new_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport, color_scheme="light", locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 500 or (r.status == 404 and "/ui/" in r.url)
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def desktop_page(browser: Browser) -> Iterator[Page]:
    yield from _new_page(browser, DESKTOP)


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    yield from _new_page(browser, PHONE)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
