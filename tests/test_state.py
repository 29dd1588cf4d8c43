"""SQLite state: WAL, versioned migrations, and the active model surviving restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from talktuah.state import MIGRATIONS, StateDB


def test_new_database_is_wal_and_fully_migrated(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    assert db.journal_mode == "wal"
    assert db.schema_version == len(MIGRATIONS)
    db.close()


def test_active_model_persists_across_reopen(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    db.active_model = "org/one"
    db.close()
    db = StateDB(tmp_path / "state.db")
    assert db.active_model == "org/one"
    db.active_model = None
    assert db.active_model is None
    db.close()


def test_default_model_seeds_the_first_start_only(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    db.seed_default_model("org/default")
    assert db.active_model == "org/default"
    db.active_model = "org/switched"
    db.seed_default_model("org/default")
    assert db.active_model == "org/switched"
    db.active_model = None
    db.seed_default_model("org/default")
    assert db.active_model is None, "a deleted default must not come back on restart"
    db.close()


def test_migrations_run_only_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB(path).close()
    StateDB(path).close()  # a second run of migration 1 would fail: the table exists
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.close()


def test_newer_schema_is_refused_not_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    raw.close()
    with pytest.raises(RuntimeError, match="Upgrade TalkTuah"):
        StateDB(path)


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    db.active_model = "org/kept"
    with pytest.raises(ZeroDivisionError), db.transaction():
        db.set_meta("active_model", "org/lost")
        raise ZeroDivisionError
    assert db.active_model == "org/kept"
    db.close()
