"""A Hub look-alike that lies: the mirror (or the man in the middle on a plain-http mirror)
that the security tests attack TalkTuah with.

It is the ordinary test hub (`hub.py`) with a table of lies applied to what it answers:
etags and commit headers that are paths, a model info whose `sha` is a path, file lists with
hostile names, any revision resolving (so `revision=../..` reaches the refs writer), and
tampered bytes behind an honest blob id. Everything else it serves correctly, so each test
can tell exactly which lie TalkTuah must refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hub import Hub, HubFile, RepoState, _Ctx, _Error


@dataclass
class Lies:
    etag: dict[str, str] = field(default_factory=dict)
    """path -> the `ETag` (and `X-Linked-Etag`) sent for that file."""
    commit_header: str | None = None
    """`X-Repo-Commit` on every resolve answer (404s included)."""
    info_sha: str | None = None
    """The `sha` of every model info answer."""
    extra_siblings: list[str] = field(default_factory=list)
    """File names added to every model info's sibling list (small, non-LFS)."""
    any_revision: bool = False
    """Resolve any revision name (`../..`, `/abs`) to the repo's main commit."""
    lie_to_library_only: bool = False
    """Tell the truth to the first HEAD of each file and lie from the second on (TalkTuah's
    probe comes first, then huggingface_hub's own HEAD)."""


class HostileHub(Hub):
    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.lies = Lies()
        self._heads: dict[str, int] = {}

    def _lying_now(self, ctx: _Ctx) -> bool:
        if not self.lies.lie_to_library_only or ctx.method != "HEAD":
            return True
        key = f"{ctx.repo_id}/{ctx.path}"
        self._heads[key] = self._heads.get(key, 0) + 1
        return self._heads[key] > 1

    def _resolve_revision(self, repo: RepoState, revision: str) -> tuple[str, dict[str, HubFile]]:
        if self.lies.any_revision and revision not in repo.refs and revision not in repo.commits:
            revision = "main"
        return super()._resolve_revision(repo, revision)

    def _model_info_json(  # type: ignore[override]
        self, repo: RepoState, sha: str, files: dict[str, HubFile], *, blobs: bool
    ) -> dict[str, Any]:
        info = Hub._model_info_json(repo, sha, files, blobs=blobs)
        if self.lies.info_sha is not None:
            info["sha"] = self.lies.info_sha
        for name in self.lies.extra_siblings:
            info["siblings"].append({"rfilename": name, "size": 2, "blobId": "0" * 40})
        return info

    def _serve_resolve(
        self, ctx: _Ctx, repo: RepoState, sha: str, files: dict[str, HubFile]
    ) -> None:
        assert ctx.path is not None
        lying = self._lying_now(ctx)
        commit = self.lies.commit_header if lying and self.lies.commit_header else sha
        f = files.get(ctx.path)
        if f is None:
            raise _Error(404, "EntryNotFound", f"{ctx.path} not found", {"X-Repo-Commit": commit})
        etag = self.lies.etag.get(ctx.path) if lying else None
        meta = {
            "X-Repo-Commit": commit,
            "ETag": f'"{etag or f.etag}"',
            "Accept-Ranges": "bytes",
        }
        if f.lfs:
            meta["X-Linked-Etag"] = f'"{etag or f.sha256}"'
            meta["X-Linked-Size"] = str(f.size)
        self._serve_bytes(ctx, f, repo.repo_id, meta)


def serve_hostile_hub(root: Path) -> Iterator[HostileHub]:
    server = HostileHub(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.internal_errors, "hostile hub crashed:\n" + "\n".join(server.internal_errors)


@dataclass(frozen=True)
class Victims:
    """Files planted outside the models dir; `untouched()` says whether they still are."""

    root: Path
    files: dict[Path, bytes]

    @classmethod
    def plant(cls, root: Path) -> Victims:
        root.mkdir(parents=True, exist_ok=True)
        files = {
            root / "victim.txt": b"do not touch\n",
            root / "secrets" / "key": b"0123456789abcdef\n",
        }
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return cls(root, files)

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() or p.is_symlink()
        }

    def untouched(self) -> bool:
        """Byte for byte what was planted, and nothing else appeared under `root`."""
        expected = {str(p.relative_to(self.root)): data for p, data in self.files.items()}
        return self.snapshot() == expected
