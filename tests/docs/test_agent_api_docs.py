"""docs/api/agents.md, run: its curl commands and its Python (SDK) examples.

Why: the page is what Claude Code, Codex and n8n users copy. Its commands run with real
curl, in order, against a real `talktuah serve` whose engine is llama.cpp's server (the
default for GGUF models) on a tiny GGUF installed under the very id the page uses; each
must answer with the status written after it. Each ```python block runs in its own
interpreter with the page's environment (`$PROXY_API_KEY`) and must exit 0 having printed
something. Only the address is rewritten.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.server import TalkTuahProcess
from ..support.tiny_gguf import tiny_gguf_bytes
from ..support.tiny_model import install_in_cache
from .doc_examples import DOCS, curl_examples
from .test_curl_examples import DOC_BASE, KEY, failure, run_curl, shell_env

pytestmark = pytest.mark.timeout(240)

PAGE = DOCS / "api" / "agents.md"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = tmp_path_factory.mktemp("agent-docs") / "home"
    gguf = {"qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_gguf_bytes(seed=41)}
    install_in_cache(home / "models" / "hub", MODEL, gguf)
    env = {"DEFAULT_MODEL": MODEL, "TALKTUAH_ENGINE_THREADS": "1"}
    proc = TalkTuahProcess(home, api_key=KEY, env=env).start()
    try:
        proc.wait_engine(MODEL, timeout=60)
        yield proc
    finally:
        proc.stop()


def python_examples(path: Path) -> list[str]:
    return _PYTHON.findall(path.read_text())


def test_the_curl_examples_answer_as_documented(server: TalkTuahProcess, tmp_path: Path) -> None:
    examples = curl_examples(PAGE)
    assert len(examples) >= 8, "the page lost its examples"
    unannotated = [e.source for e in examples if e.expected is None]
    assert not unannotated, f"curl lines without '# -> <status>': {unannotated}"
    for index, example in enumerate(examples):
        command = example.command.replace(DOC_BASE, server.url)
        code, body = run_curl(command, shell_env({"PROXY_API_KEY": KEY}), tmp_path / f"{index}")
        assert code == example.expected, failure(example, code, body, server)
        if 'stream": true' in command:
            final = "message_stop" if "/v1/messages" in command else "response.completed"
            assert f"event: {final}" in body, body[-500:]


def test_the_sdk_examples_run(server: TalkTuahProcess, tmp_path: Path) -> None:
    examples = python_examples(PAGE)
    assert len(examples) == 2, "one SDK example per API"
    env = shell_env({"PROXY_API_KEY": KEY}) | {"PYTHONPATH": os.pathsep.join(sys.path)}
    for example in examples:
        code = example.replace(DOC_BASE, server.url)
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{code}\n--- stderr ---\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), code
