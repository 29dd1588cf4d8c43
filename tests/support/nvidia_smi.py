"""A stand-in `nvidia-smi` on PATH, for the code that reads GPU memory (host_memory.py).

This machine has no GPU. The stand-in answers each query with the text a test gave it, in
the form the real one prints for `--format=csv,noheader,nounits` ("0, 81559" per GPU,
"4242, 512" per process), or fails as the real one does without a driver. The real one is
run on a lent GPU machine by scripts/gpu/memory_check.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

GPUS = "--query-gpu=index,memory.total"
APPS = "--query-compute-apps=pid,used_memory"


class FakeNvidiaSmi:
    def __init__(self, where: Path) -> None:
        self.where = where

    def _file(self, query: str) -> Path:
        """The file printed for `query` (named for it: a-z kept, anything else `_`)."""
        return self.where / ("smi-" + "".join(c if "a" <= c <= "z" else "_" for c in query))

    def says(self, query: str, text: str) -> None:
        self._file(query).write_text(text)

    def fails(self, query: str) -> None:
        self._file(query).with_suffix(".rc").write_text("9")


def install_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvidiaSmi:
    """Put the stand-in first on PATH (and forget CUDA_VISIBLE_DEVICES) for one test."""
    bin_dir = tmp_path / "fake-nvidia-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'out="{tmp_path}/smi-$(echo "$1" | tr -c "a-z\\n" _)"\n'
        '[ -f "$out.rc" ] && { echo "NVIDIA-SMI has failed" >&2; exit "$(cat "$out.rc")"; }\n'
        'cat "$out" 2>/dev/null\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return FakeNvidiaSmi(tmp_path)
