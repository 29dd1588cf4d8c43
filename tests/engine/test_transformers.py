"""The transformers driver's thread budget (the real engine runs in tests/e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from talktuah.config import Settings
from talktuah.engine.transformers import TransformersDriver, engine_threads


def test_by_default_the_engine_leaves_one_cpu_to_talktuah(tmp_path: Path) -> None:
    usable = len(os.sched_getaffinity(0))
    assert engine_threads(Settings(home=tmp_path), {}) == max(1, usable - 1)


def test_a_users_omp_num_threads_is_kept(tmp_path: Path) -> None:
    assert engine_threads(Settings(home=tmp_path), {"OMP_NUM_THREADS": "7"}) is None


def test_the_setting_wins_over_everything(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, engine_threads=3)
    assert engine_threads(settings, {"OMP_NUM_THREADS": "7"}) == 3


def test_the_driver_puts_it_in_the_engines_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    driver = TransformersDriver(Settings(home=tmp_path, engine_threads=2))
    assert driver.extra_env() == {"OMP_NUM_THREADS": "2"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert TransformersDriver(Settings(home=tmp_path)).extra_env() == {}


def test_zero_threads_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine_threads"):
        Settings(home=tmp_path, engine_threads=0)
