"""downloads/plan.py pieces that need no Hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from huggingface_hub import try_to_load_from_cache

from talktuah.downloads.plan import cached_file

from ..support.eventually import eventually
from ..support.hub import Hub

COMMIT = "0" * 40


def test_a_repo_removed_while_it_is_looked_up_is_not_cached(tmp_path: Path) -> None:
    """Regression (bench/soak.py, a 500 on POST /api/download-model): the library checks that
    the snapshots folder exists, then lists it; a delete in between raised out of planning."""
    snapshots = tmp_path / "models--org--x" / "snapshots"
    snapshots.mkdir(parents=True)
    churn = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\n"
         "while True:\n"
         "    try: os.rmdir(sys.argv[1])\n"
         "    except FileNotFoundError: pass\n"
         "    os.mkdir(sys.argv[1])\n",
         str(snapshots)],
    )  # fmt: skip
    library_raised = 0

    def one_try() -> int:
        """Ours never raises; count the times the library did (the race happened)."""
        nonlocal library_raised
        assert cached_file("org/x", "a.txt", tmp_path, COMMIT) is None
        try:
            try_to_load_from_cache("org/x", "a.txt", cache_dir=tmp_path, revision=COMMIT)
        except FileNotFoundError:
            library_raised += 1
        return library_raised

    try:
        # Without the race three times, nothing was tested.
        eventually(one_try, lambda raised: raised >= 3, timeout=10, interval=0,
                   what="the library raising in the race three times")  # fmt: skip
    finally:
        churn.kill()
        churn.wait(5)


def test_a_cached_file_is_found(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--org--x" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "a.txt").write_text("a")
    assert cached_file("org/x", "a.txt", tmp_path, COMMIT) == snapshot / "a.txt"
    assert cached_file("org/x", "b.txt", tmp_path, COMMIT) is None


def test_a_hub_404_for_the_file_list_is_not_found(client: TestClient, hub: Hub) -> None:
    """Regression (issue 15): a mirror answering 404 (without the Hub's error code header)
    for a repo's file list was a 502 "Hub unavailable"; it means "not found"."""
    hub.add_repo("org/gone", {"config.json": b"{}"})
    hub.faults.fail_next(1, 404, "/api/models/*")
    response = client.post("/api/download-model", params={"model_id": "org/gone", "auto": "true"})
    assert response.status_code == 404, response.text
    assert "has no file list" in response.json()["detail"]
    assert hub.url in response.json()["detail"]
