"""The pull form lists a GGUF repo's quants with sizes before anything downloads (issue 17).

Why: a GGUF repo is many models' worth of bytes; the person pulling chooses one quant, and
needs its size to choose. The list comes from GET /api/hub/quants; the pull then fetches the
chosen quant only (the hub's request log shows it).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from ..support.hub import Hub
from ..support.server import TalkTuahProcess
from .test_dashboard import go, open_dashboard, shot, sign_in

REPO = "org/pick-GGUF"


def test_the_pull_form_lists_quants_and_pulls_the_one_chosen(
    ui_server: TalkTuahProcess, ui_hub: Hub, desktop_page: Page, artifacts: Path
) -> None:
    ui_hub.add_repo(
        REPO,
        {
            "README.md": b"# pick\n",
            "model-Q2_K.gguf": b"q2" * 30_000,
            "model-Q4_K_M.gguf": b"q4" * 60_000,
            "model-Q8_0.gguf": b"q8" * 120_000,
        },
    )
    ui_hub.add_repo("org/plain", {"config.json": b"{}", "model.safetensors": b"w" * 4096})
    page = desktop_page
    open_dashboard(page, ui_server)
    sign_in(page)
    expect(page.locator("#app-view")).to_be_visible()

    model = page.get_by_label("Model ID")
    model.fill(REPO)
    quant = page.get_by_label("Quantization")
    expect(quant).to_be_visible()
    options = quant.locator("option")
    expect(options).to_have_text(
        ["Q2_K (58.6 KiB)", "Q4_K_M (117.2 KiB, default)", "Q8_0 (234.4 KiB)"]
    )
    expect(quant).to_have_value("Q4_K_M")  # what the id alone would pull
    shot(page, artifacts, "desktop-pull-quants")

    quant.select_option("Q8_0")
    page.get_by_role("button", name="Pull model").click()
    expect(page.get_by_role("tab", name="Downloads")).to_have_attribute("aria-selected", "true")
    card = page.locator("#downloads-list > li").filter(has_text=f"{REPO}:Q8_0")
    expect(card.locator(".job-status")).to_have_text("complete", timeout=20_000)
    assert ui_hub.fetched_files(REPO) == ["model-Q8_0.gguf"]

    go(page, "Models")
    expect(page.locator(f'#models-body tr[data-model-id="{REPO}:Q8_0"]')).to_contain_text(
        "Downloaded"
    )

    # A repo without GGUF files: no list, the pull fetches the repo.
    model.fill("org/plain")
    page.wait_for_timeout(800)  # longer than the form's debounce
    expect(page.get_by_label("Quantization")).to_be_hidden()
    # Typing the repo again lists its quants, the downloaded one marked.
    model.fill(f"{REPO}:q2_k")
    expect(page.get_by_label("Quantization")).to_have_value("Q2_K")
    expect(quant.locator("option").nth(2)).to_have_text("Q8_0 (234.4 KiB, downloaded)")
