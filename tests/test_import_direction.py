"""Imports run one way (issue 20): the model store is below the download machinery, never
above it. store.py reads the job table (talktuah/jobs_table.py, a record like the API keys)
and the model id check (talktuah/model_id.py); nothing it imports may reach
talktuah.downloads, or a change there could break listing and deleting models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


def imported_by(module: str) -> list[str]:
    """Every talktuah module a fresh interpreter has loaded after importing `module`."""
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('talktuah'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize("module", ["talktuah.store", "talktuah.model_id", "talktuah.jobs_table"])
def test_the_store_does_not_reach_the_downloads(module: str) -> None:
    loaded = imported_by(module)
    assert module in loaded
    reached = [m for m in loaded if m.startswith("talktuah.downloads")]
    assert not reached, f"{module} imports {reached}: move what it needs out of downloads/"


def test_the_download_code_still_names_its_jobs() -> None:
    from talktuah.downloads.jobs import JobStore
    from talktuah.jobs_table import JobStore as Table
    from talktuah.store import validate_model_id

    assert JobStore is Table and validate_model_id("org/a") == "org/a"


def test_no_test_imports_from_a_conftest() -> None:
    """Helpers live in tests/support (importable); conftest files only hold fixtures, which
    pytest injects. Importing from a conftest loads it twice under two names."""
    tests = Path(__file__).parent
    offenders = [
        str(path.relative_to(tests))
        for path in tests.rglob("*.py")
        if re.search(r"^from \.+conftest import", path.read_text(), re.M)
    ]
    assert not offenders, f"move what these import into tests/support/: {offenders}"
