"""docs/configuration.md is generated from the Settings class and must not drift from it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from talktuah.config import Settings

from .doc_examples import DOCS, ROOT

SCRIPT = ROOT / "scripts" / "gen_config_docs.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_md_is_the_generator_output() -> None:
    expected = generator().render()
    current = (DOCS / "configuration.md").read_text()
    assert current == expected, (
        "docs/configuration.md is stale: run `python scripts/gen_config_docs.py` "
        "(after changing a field or its description in src/talktuah/config.py)"
    )


def test_every_setting_has_a_description_and_a_row() -> None:
    gen = generator()
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name, f in Settings.model_fields.items() if not (f.description or "")]
    assert not missing, f"add description=... to these Settings fields: {missing}"
    for name, field in Settings.model_fields.items():
        assert f"| `{gen.env_name(name, field)}` |" in text, name


def test_env_names_are_the_ones_settings_reads() -> None:
    """The documented variable really sets the field (aliases and the TALKTUAH_ prefix)."""
    gen = generator()
    names = {name: gen.env_name(name, f) for name, f in Settings.model_fields.items()}
    assert names["proxy_api_key"] == "PROXY_API_KEY" and names["hf_token"] == "HF_TOKEN"
    assert names["download_workers"] == "TALKTUAH_DOWNLOAD_WORKERS"
    env = {names["download_workers"]: "7", names["default_model"]: "org/x", "PATH": "/usr/bin"}
    probe = (
        "from talktuah.config import Settings; s = Settings(_env_file=None); "
        "print(s.download_workers, s.default_model)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["7", "org/x"]


def test_check_mode_passes_on_the_committed_file() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
