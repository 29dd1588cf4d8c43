"""SQLite state: the single source of truth for the active model and, later, jobs and keys.

WAL mode lets the HTTP handlers read while a download worker writes. Migrations are an
ordered list of functions, each recorded in `PRAGMA user_version` once applied (the shape
of simonw/llm's `migrations.py`), so an old `state.db` is upgraded in place and never
rebuilt.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Migration = Callable[[sqlite3.Connection], None]


def _m001_meta(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")


def _m002_download_jobs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE download_jobs (
            id TEXT PRIMARY KEY,
            model_id TEXT NOT NULL,
            revision TEXT NOT NULL,
            commit_hash TEXT,
            allow_patterns TEXT,
            ignore_patterns TEXT,
            status TEXT NOT NULL,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            bytes_total INTEGER,
            files_done INTEGER NOT NULL DEFAULT 0,
            files_total INTEGER,
            files TEXT,
            verified TEXT,
            speed_bps REAL,
            eta_seconds REAL,
            activate INTEGER NOT NULL DEFAULT 0,
            callback_url TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            updated_at TEXT NOT NULL,
            completed_at TEXT
        )
        """
    )
    # At most one live job per model: the database itself refuses a duplicate, so twenty
    # simultaneous requests cannot create two jobs whatever the threads do.
    db.execute(
        "CREATE UNIQUE INDEX one_live_job_per_model ON download_jobs(model_id) "
        "WHERE status IN ('queued', 'downloading')"
    )
    db.execute("CREATE INDEX download_jobs_by_created ON download_jobs(created_at)")


def _m003_api_keys(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked_at TEXT,
            rate_limit TEXT,
            proxy_rate_limit TEXT,
            max_streams INTEGER
        )
        """
    )


def _m004_verified_revisions(db: sqlite3.Connection) -> None:
    """What is known verified on disk, per revision: the files of every job that completed
    for it. A revision's completeness comes from here, not from its latest job (a cancelled
    or failed re-download must not unlist a model that is whole on disk)."""
    db.execute(
        """
        CREATE TABLE verified_revisions (
            model_id TEXT NOT NULL,
            commit_hash TEXT NOT NULL,
            files TEXT NOT NULL,
            verified_at TEXT NOT NULL,
            PRIMARY KEY (model_id, commit_hash)
        )
        """
    )
    found: dict[tuple[str, str], tuple[set[str], str]] = {}
    for row in db.execute(
        "SELECT model_id, commit_hash, files, completed_at FROM download_jobs "
        "WHERE status = 'complete' AND commit_hash IS NOT NULL"
    ):
        paths, stamp = found.setdefault((row[0], row[1]), (set(), row[3] or ""))
        paths.update(f["path"] for f in json.loads(row[2] or "[]"))
        found[(row[0], row[1])] = (paths, max(stamp, row[3] or ""))
    for (model_id, commit), (paths, stamp) in found.items():
        db.execute(
            "INSERT INTO verified_revisions VALUES (?, ?, ?, ?)",
            (model_id, commit, json.dumps(sorted(paths)), stamp),
        )


MIGRATIONS: list[Migration] = [
    _m001_meta,
    _m002_download_jobs,
    _m003_api_keys,
    _m004_verified_revisions,
]

ACTIVE_MODEL = "active_model"
DEFAULT_MODEL_SEEDED = "default_model_seeded"


class StateDB:
    """One connection shared by all threads, serialised by a lock.

    SQLite connections are not safe to use from two threads at once; a single guarded
    connection is simpler than a pool and fast enough for the handful of writes per second
    TalkTuah makes (progress writes are throttled by the download manager).
    """

    def __init__(self, path: Path) -> None:
        # The database holds key hashes and callback URLs: owner-only, like its folder
        # (TALKTUAH_HOME). The file is made 0600 before SQLite opens it, as SQLite gives its
        # -wal and -shm the database's mode; a home made with looser modes is tightened.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600)
        for suffix in ("", "-wal", "-shm"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                sidecar.chmod(0o600)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this TalkTuah "
                    f"understands ({len(MIGRATIONS)}). Upgrade TalkTuah or point "
                    "TALKTUAH_HOME at another directory."
                )
            for number, migration in enumerate(MIGRATIONS[current:], start=current + 1):
                with self.transaction() as db:
                    migration(db)
                    db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(
        self, sql: str, params: tuple[object, ...] | dict[str, object] = ()
    ) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[object, ...] | dict[str, object] = ()) -> int:
        """Run one statement in autocommit mode; returns the number of rows changed."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def active_model(self) -> str | None:
        return self.get_meta(ACTIVE_MODEL)

    @active_model.setter
    def active_model(self, model_id: str | None) -> None:
        self.set_meta(ACTIVE_MODEL, model_id)

    def seed_default_model(self, default_model: str | None) -> None:
        """Apply `DEFAULT_MODEL` on the first start only.

        Later starts keep whatever the user switched to (or deleted), even if the environment
        still names the old default: state wins over the environment.
        """
        with self.transaction():
            if self.get_meta(DEFAULT_MODEL_SEEDED) is not None:
                return
            if default_model:
                self.set_meta(ACTIVE_MODEL, default_model)
            self.set_meta(DEFAULT_MODEL_SEEDED, default_model or "")

    def close(self) -> None:
        with self._lock:
            self._db.close()
