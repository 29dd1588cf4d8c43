"""Revisions whose files TalkTuah downloaded and verified: the record completeness rests on.

A revision is complete when every file a finished job verified for it is still on disk. The
record outlives the jobs (they are pruned) and is not touched by later jobs for the same
model: a re-download that is cancelled, or fails because the Hub is down, adds nothing and
takes nothing away. Listings read it on every call, so the decoded file sets are kept in
memory and only rows whose `verified_at` changed are decoded again.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from .state import StateDB

RevisionKey = tuple[str, str]  # (model_id, commit_hash)


class VerifiedRevisions:
    def __init__(self, state: StateDB) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._decoded: dict[RevisionKey, tuple[str, frozenset[str]]] = {}

    def record(self, model_id: str, commit_hash: str, paths: list[str]) -> None:
        """Add `paths` (verified just now) to what is known good for this revision."""
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT files FROM verified_revisions WHERE model_id = ? AND commit_hash = ?",
                (model_id, commit_hash),
            ).fetchone()
            known = set(json.loads(row[0])) if row is not None else set()
            db.execute(
                "INSERT INTO verified_revisions (model_id, commit_hash, files, verified_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(model_id, commit_hash) DO UPDATE SET "
                "files = excluded.files, verified_at = excluded.verified_at",
                (
                    model_id,
                    commit_hash,
                    json.dumps(sorted(known | set(paths))),
                    datetime.now(UTC).isoformat(),
                ),
            )

    def forget(self, model_id: str) -> None:
        """The model was deleted: what was verified is gone with it."""
        self.state.execute("DELETE FROM verified_revisions WHERE model_id = ?", (model_id,))

    def forget_files(self, model_id: str, commit_hash: str, paths: list[str]) -> None:
        """Some files of a revision were deleted (one quant of a GGUF repo): the record keeps
        vouching only for what is still here, so a later download of them verifies anew."""
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT files FROM verified_revisions WHERE model_id = ? AND commit_hash = ?",
                (model_id, commit_hash),
            ).fetchone()
            if row is None:
                return
            kept = sorted(set(json.loads(row[0])) - set(paths))
            db.execute(
                "UPDATE verified_revisions SET files = ?, verified_at = ? "
                "WHERE model_id = ? AND commit_hash = ?",
                (json.dumps(kept), datetime.now(UTC).isoformat(), model_id, commit_hash),
            )

    def _stamp(self, key: RevisionKey) -> str | None:
        decoded = self._decoded.get(key)
        return decoded[0] if decoded is not None else None

    def all(self) -> dict[RevisionKey, frozenset[str]]:
        """Every verified revision's files; decodes only rows that changed since last call."""
        stamps = {
            (row["model_id"], row["commit_hash"]): row["verified_at"]
            for row in self.state.query(
                "SELECT model_id, commit_hash, verified_at FROM verified_revisions"
            )
        }
        with self._lock:
            stale = [key for key, stamp in stamps.items() if self._stamp(key) != stamp]
            for model_id, commit in stale:
                rows = self.state.query(
                    "SELECT files, verified_at FROM verified_revisions "
                    "WHERE model_id = ? AND commit_hash = ?",
                    (model_id, commit),
                )
                if rows:
                    files = frozenset(json.loads(rows[0]["files"]))
                    self._decoded[(model_id, commit)] = (rows[0]["verified_at"], files)
            for key in set(self._decoded) - set(stamps):
                del self._decoded[key]
            return {key: files for key, (_stamp, files) in self._decoded.items()}
