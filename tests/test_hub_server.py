"""The test hub, checked with the real ``huggingface_hub`` client.

Why: every download test in this project trusts ``tests.support.hub`` to behave like the real
Hub. These tests pin down what huggingface_hub 2.4 actually sends and how it reacts (retries,
resume, error classes), so a protocol drift shows up here first and not as a confusing failure
in a TalkTuah test. Assertions describe measured client behaviour, not hopes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx2
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import (
    DryRunFileInfo,
    HfApi,
    hf_hub_download,
    scan_cache_dir,
    snapshot_download,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.support.fixtures import HubRepo
from tests.support.hub import Hub, commit_sha, make_files

MIB = 1024 * 1024
CLIENT_CHUNK = hf_constants.DOWNLOAD_CHUNK_SIZE  # 10 MiB in 2.4: resume granularity


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_snapshot_download_is_byte_identical_and_cached(
    hub: Hub, hub_repo: HubRepo, hf_cache: Path
) -> None:
    path = Path(snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache))

    assert path == hf_cache / "models--org--tiny-model" / "snapshots" / hub_repo.sha
    assert hub_repo.sha == commit_sha(hub_repo.files)
    for name, data in hub_repo.files.items():
        assert (path / name).read_bytes() == data, name
    assert (hf_cache / "models--org--tiny-model" / "refs" / "main").read_text() == hub_repo.sha

    info = scan_cache_dir(hf_cache)
    (repo,) = info.repos
    assert repo.repo_id == hub_repo.repo_id
    assert repo.size_on_disk == sum(len(d) for d in hub_repo.files.values())
    assert repo.nb_files == len(hub_repo.files)
    (rev,) = repo.revisions
    assert rev.commit_hash == hub_repo.sha
    assert rev.refs == frozenset({"main"})
    assert not info.warnings

    # The protocol as huggingface_hub 2.4 speaks it (documented in DESIGN.md).
    log = hub.log
    assert [(r.method, r.url_path, r.query) for r in log[:2]] == [
        ("GET", "/api/models/org/tiny-model/revision/main", ""),
        ("GET", f"/api/models/org/tiny-model/tree/{hub_repo.sha}", "recursive=true&expand=false"),
    ]
    heads = {r.path for r in log if r.method == "HEAD" and r.kind == "resolve"}
    gets = {r.path for r in log if r.method == "GET" and r.kind == "resolve"}
    assert heads == gets == set(hub_repo.files)
    assert all(r.revision == hub_repo.sha for r in log if r.kind == "resolve")
    assert all(r.headers.get("accept-encoding") == "identity" for r in log if r.method == "HEAD")
    assert hub.unexpected() == []
    assert sorted(hub.fetched_files(hub_repo.repo_id)) == sorted(hub_repo.files)

    # A second run costs one request: the tree listing is cached on disk per commit
    # (``trees/<sha>.json``) and every file already has its snapshot pointer.
    hub.clear_log()
    snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    assert [r.kind for r in hub.log] == ["model_info"]
    assert (hf_cache / "models--org--tiny-model" / "trees" / f"{hub_repo.sha}.json").exists()


def test_dry_run_lists_names_and_sizes_without_downloading(
    hub: Hub, hub_repo: HubRepo, hf_cache: Path
) -> None:
    plan = snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache, dry_run=True)

    assert isinstance(plan, list) and all(isinstance(p, DryRunFileInfo) for p in plan)
    assert {p.filename: p.file_size for p in plan} == {
        name: len(data) for name, data in hub_repo.files.items()
    }
    assert all(p.commit_hash == hub_repo.sha and p.will_download for p in plan)
    assert not any(p.is_cached for p in plan)
    # Dry run still HEADs every file (sizes come from X-Linked-Size / Content-Length) ...
    assert {r.path for r in hub.log if r.method == "HEAD"} == set(hub_repo.files)
    # ... but never GETs content, and writes nothing into the cache.
    assert hub.fetched_files(hub_repo.repo_id) == []
    assert not (hf_cache / "models--org--tiny-model" / "snapshots").exists()

    snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    again = snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache, dry_run=True)
    assert all(p.is_cached and not p.will_download for p in again)


def test_model_info_with_files_metadata(hub: Hub, hub_repo: HubRepo) -> None:
    api = HfApi(endpoint=hub.url)
    info = api.model_info(hub_repo.repo_id, files_metadata=True, revision="main")

    assert info.id == hub_repo.repo_id and info.sha == hub_repo.sha
    assert info.siblings is not None
    by_name = {s.rfilename: s for s in info.siblings}
    assert set(by_name) == set(hub_repo.files)
    for name, data in hub_repo.files.items():
        sib = by_name[name]
        assert sib.size == len(data)
        if name.endswith(".safetensors"):
            assert sib.lfs is not None
            assert sib.lfs.sha256 == sha256(data) and sib.lfs.size == len(data)
        else:
            assert sib.lfs is None  # small text files are plain git blobs
    assert hub.log[-1].url_path == "/api/models/org/tiny-model/revision/main"
    assert hub.log[-1].query == "blobs=true"

    # Like the real Hub, sizes are only sent when asked for.
    plain = api.model_info(hub_repo.repo_id)
    assert plain.siblings is not None and all(s.size is None for s in plain.siblings)
    assert hub.log[-1].url_path == "/api/models/org/tiny-model"


def test_tree_paths_info_and_refs(hub: Hub) -> None:
    files = {"a/b/c.txt": b"c", "a/d.bin": b"d" * 10, "top.json": b"{}"}
    sha = hub.add_repo("org/nested", files)
    api = HfApi(endpoint=hub.url)

    flat = list(api.list_repo_tree("org/nested"))
    assert {(type(e).__name__, e.path) for e in flat} == {
        ("RepoFolder", "a"),
        ("RepoFile", "top.json"),
    }
    deep = list(api.list_repo_tree("org/nested", recursive=True, revision=sha))
    assert {e.path for e in deep if isinstance(e, RepoFile)} == set(files)
    assert {e.path for e in deep if isinstance(e, RepoFolder)} == {"a", "a/b"}
    (d_bin,) = [e for e in deep if isinstance(e, RepoFile) and e.path == "a/d.bin"]
    assert d_bin.lfs is not None and d_bin.lfs.sha256 == sha256(b"d" * 10)  # *.bin is LFS
    sub = list(api.list_repo_tree("org/nested", path_in_repo="a/b"))
    assert [e.path for e in sub] == ["a/b/c.txt"]

    infos = api.get_paths_info("org/nested", ["a", "top.json", "missing"])
    assert {e.path for e in infos} == {"a", "top.json"}

    refs = api.list_repo_refs("org/nested")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", sha)]
    assert hub.unexpected() == []


def test_interrupted_transfer_resumes_with_range(hub: Hub, hf_cache: Path) -> None:
    # huggingface_hub writes in DOWNLOAD_CHUNK_SIZE (10 MiB) chunks and only resumes from what
    # it wrote, so the drop must come after the first full chunk for a Range to be sent.
    data = make_files(n_files=1, size=CLIENT_CHUNK + MIB // 2, seed=7)["model.safetensors"]
    hub.add_repo("org/big", {"model.safetensors": data})
    hub.faults.drop_after(CLIENT_CHUNK + 64 * 1024, path_glob="*.safetensors")

    path = hf_hub_download("org/big", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache)

    assert sha256(Path(path).read_bytes()) == sha256(data)
    gets = hub.requests(method="GET", kind="resolve")
    assert [(g.status, g.range, g.dropped) for g in gets] == [
        (200, None, True),
        (206, f"bytes={CLIENT_CHUNK}-", False),
    ]
    assert gets[0].bytes_sent == CLIENT_CHUNK + 64 * 1024
    assert gets[1].bytes_sent == len(data) - CLIENT_CHUNK
    assert hub.faults.pending() == 0


def test_drop_inside_first_chunk_restarts_from_zero(hub: Hub, hf_cache: Path) -> None:
    data = make_files(n_files=1, size=300_000, seed=8)["model.safetensors"]
    hub.add_repo("org/m", {"model.safetensors": data})
    hub.faults.drop_after(100_000)

    path = hf_hub_download("org/m", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache)

    assert Path(path).read_bytes() == data
    gets = hub.requests(method="GET", kind="resolve")
    assert [(g.range, g.bytes_sent, g.dropped) for g in gets] == [
        (None, 100_000, True),
        (None, 300_000, False),  # no Range: nothing had been written yet
    ]


def test_hub_serves_ranges(hub: Hub) -> None:
    data = bytes(range(256)) * 40
    hub.add_repo("org/r", {"w.bin": data})
    url = f"{hub.url}/org/r/resolve/main/w.bin"
    with httpx2.Client() as client:
        r = client.get(url, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == data[100:200]
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        r = client.get(url, headers={"Range": "bytes=10000-"})
        assert r.status_code == 206 and r.content == data[10000:]
        r = client.get(url, headers={"Range": "bytes=-16"})
        assert r.status_code == 206 and r.content == data[-16:]
        r = client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
        head = client.head(url)
        assert head.headers["X-Linked-Etag"] == f'"{sha256(data)}"'
        assert head.headers["X-Linked-Size"] == str(len(data))
        assert head.headers["Content-Length"] == str(len(data))
        assert "X-Xet-Hash" not in head.headers


def test_error_classes(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    api = HfApi(endpoint=hub.url)
    hub.add_repo("org/gated", {"config.json": b"{}"}, gated=True)

    with pytest.raises(RepositoryNotFoundError) as exc:
        snapshot_download("org/missing", endpoint=hub.url, cache_dir=hf_cache)
    assert not isinstance(exc.value, GatedRepoError)
    assert exc.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json", endpoint=hub.url, cache_dir=hf_cache)
    hub.add_repo("org/private", {"config.json": b"{}"}, private=True)
    with pytest.raises(RepositoryNotFoundError) as private:
        api.model_info("org/private")
    assert not isinstance(private.value, GatedRepoError)  # private looks exactly like missing
    assert api.model_info("org/private", token=hub.token).id == "org/private"

    # GatedRepoError subclasses RepositoryNotFoundError: catch it first.
    for call in (
        lambda: snapshot_download("org/gated", endpoint=hub.url, cache_dir=hf_cache),
        lambda: hf_hub_download("org/gated", "config.json", endpoint=hub.url, cache_dir=hf_cache),
        lambda: api.model_info("org/gated"),
    ):
        with pytest.raises(GatedRepoError) as gated:
            call()
        assert gated.value.response.status_code == 401
    ok = snapshot_download("org/gated", endpoint=hub.url, cache_dir=hf_cache, token=hub.token)
    assert (Path(ok) / "config.json").read_bytes() == b"{}"
    assert hub.log[-1].authorization == f"Bearer {hub.token}"
    hub.gated_status = 403  # logged-in user without access: same exception
    with pytest.raises(GatedRepoError):
        api.model_info("org/gated", token="hf_someone_else")

    with pytest.raises(RevisionNotFoundError):
        snapshot_download(hub_repo.repo_id, revision="v9", endpoint=hub.url, cache_dir=hf_cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            hub_repo.repo_id, "config.json", revision="v9", endpoint=hub.url, cache_dir=hf_cache
        )
    # Remote, not Local: LocalEntryNotFoundError is also an EntryNotFoundError (hub down).
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(hub_repo.repo_id, "nope.txt", endpoint=hub.url, cache_dir=hf_cache)
    no_exist = hf_cache / "models--org--tiny-model" / ".no_exist" / hub_repo.sha / "nope.txt"
    assert no_exist.exists()  # the client caches the miss thanks to X-Repo-Commit on the 404
    assert hub.unexpected() == []


def test_5xx_on_repo_info_is_not_retried(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    hub.faults.fail_next(1, 503, path_glob="/api/models/*/revision/*")
    with pytest.raises(LocalEntryNotFoundError) as exc:
        snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    cause = exc.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 503
    assert [(r.kind, r.status) for r in hub.log] == [("model_info", 503)]


def test_5xx_on_head_is_retried_with_backoff(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    hub.faults.fail_next(2, 503, method="HEAD")
    t0 = time.monotonic()
    path = hf_hub_download(hub_repo.repo_id, "config.json", endpoint=hub.url, cache_dir=hf_cache)
    elapsed = time.monotonic() - t0
    assert Path(path).read_bytes() == hub_repo.files["config.json"]
    # First HEAD is tried without retry; with nothing cached the client retries with backoff
    # (1 s, 2 s, 4 s, 8 s, 8 s: up to 5 retries), so a 2-request burst costs ~1 s.
    assert [(r.method, r.status) for r in hub.log] == [
        ("HEAD", 503),
        ("HEAD", 503),
        ("HEAD", 200),
        ("GET", 200),
    ]
    assert elapsed >= 1.0


def test_5xx_on_content_get_is_not_retried(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    hub.faults.fail_next(1, 503, method="GET", path_glob="*.safetensors")
    name = "model-00001-of-00002.safetensors"
    with pytest.raises(HfHubHTTPError) as exc:
        hf_hub_download(hub_repo.repo_id, name, endpoint=hub.url, cache_dir=hf_cache)
    assert exc.value.response.status_code == 503
    assert [(r.method, r.status) for r in hub.log] == [("HEAD", 200), ("GET", 503)]
    # Nothing half-written is left behind in the cache.
    assert not list((hf_cache / "models--org--tiny-model" / "blobs").glob("*"))


def test_5xx_on_tree_listing_is_retried(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    hub.faults.fail_next(1, 502, path_glob="*/tree/*")
    snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    assert [(r.kind, r.status) for r in hub.log[:3]] == [
        ("model_info", 200),
        ("tree", 502),
        ("tree", 200),
    ]


def test_hub_down_and_back(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    hub.faults.down = True
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    hub.faults.down = False
    first = snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)

    # With the snapshot cached, an outage (503 or refused connection) falls back to the cache.
    hub.faults.down = True
    assert snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache) == first
    hub.faults.down = False
    port = hub.port
    hub.stop()
    assert snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache) == first
    hub.start()
    assert hub.port == port
    assert snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache) == first


def test_hangup_surfaces_as_protocol_error(hub: Hub, hub_repo: HubRepo, hf_cache: Path) -> None:
    # A peer that closes without answering is *not* treated as "offline" by snapshot_download:
    # the raw transport error escapes (measured), unlike 5xx / refused connections.
    hub.faults.hangup = True
    with pytest.raises(httpx2.RemoteProtocolError):
        snapshot_download(hub_repo.repo_id, endpoint=hub.url, cache_dir=hf_cache)
    assert hub.log[0].dropped


def test_throttle_sets_a_lower_bound(hub: Hub, hf_cache: Path) -> None:
    data = make_files(n_files=1, size=200_000, seed=3)["model.safetensors"]
    hub.add_repo("org/slow", {"model.safetensors": data})
    hub.faults.throttle_bps = 400_000
    t0 = time.monotonic()
    path = hf_hub_download("org/slow", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache)
    assert time.monotonic() - t0 >= 200_000 / 400_000
    assert Path(path).read_bytes() == data


def test_stall_hits_client_read_timeout_then_recovers(
    hub: Hub, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The read timeout is HF_HUB_DOWNLOAD_TIMEOUT (10 s default), read at call time.
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    data = make_files(n_files=1, size=200_000, seed=4)["model.safetensors"]
    hub.add_repo("org/stall", {"model.safetensors": data})
    hub.faults.stall(5, after_bytes=50_000)
    t0 = time.monotonic()
    path = hf_hub_download("org/stall", "model.safetensors", endpoint=hub.url, cache_dir=hf_cache)
    elapsed = time.monotonic() - t0
    assert Path(path).read_bytes() == data
    assert 1.0 <= elapsed < 5.0  # gave up after the 1 s read timeout, not after the stall
    # The stalled response is still "in flight" on the hub; stopping it ends it at once.
    (done,) = [r for r in hub.log_now() if r.method == "GET"]
    assert (done.status, done.range, done.bytes_sent) == (200, None, len(data))
    hub.stop()
    stalled = [r for r in hub.log if r.method == "GET" and r.dropped]
    assert [r.bytes_sent for r in stalled] == [50_000]


def test_corrupt_bytes_pass_the_client_size_check(
    hub: Hub, hub_repo: HubRepo, hf_cache: Path
) -> None:
    name = "model-00002-of-00002.safetensors"
    hub.faults.corrupt(hub_repo.repo_id, name)
    path = hf_hub_download(hub_repo.repo_id, name, endpoint=hub.url, cache_dir=hf_cache)

    got = Path(path).read_bytes()
    info = HfApi(endpoint=hub.url).model_info(hub_repo.repo_id, files_metadata=True)
    (sib,) = [s for s in info.siblings or [] if s.rfilename == name]
    assert sib.lfs is not None
    assert len(got) == sib.lfs.size  # the only thing huggingface_hub checks ...
    assert sha256(got) != sib.lfs.sha256  # ... so corruption lands in the cache unnoticed
    # and the blob is even stored under the advertised sha256 name.
    assert Path(path).resolve().name == sib.lfs.sha256


def test_lfs_redirect_to_cdn_origin(tmp_path: Path, hf_cache: Path) -> None:
    files = make_files(n_files=1, size=100_000, seed=5)
    with Hub(tmp_path / "cdn-hub", redirect_lfs=True) as hub:
        hub.add_repo("org/gated-cdn", files, gated=True)
        path = snapshot_download(
            "org/gated-cdn", endpoint=hub.url, cache_dir=hf_cache, token=hub.token
        )
        for name, data in files.items():
            assert (Path(path) / name).read_bytes() == data
        head = [r for r in hub.log if r.method == "HEAD" and r.path == "model.safetensors"]
        assert [r.status for r in head] == [302]
        (cdn,) = hub.requests(kind="cdn")
        assert cdn.authorization is None  # the client drops the token off the Hub origin
        assert set(hub.fetched_files("org/gated-cdn")) == set(files)


def test_stop_is_prompt_even_mid_stall(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "h")
    hub.start()
    hub.add_repo("org/s", {"w.bin": b"x" * 10_000})
    hub.faults.stall(30, after_bytes=10)
    client = httpx2.Client(timeout=30)
    with client.stream("GET", f"{hub.url}/org/s/resolve/main/w.bin") as resp:
        assert resp.status_code == 200
        t0 = time.monotonic()
        hub.stop()
        assert time.monotonic() - t0 < 2.0
        with pytest.raises(httpx2.HTTPError):
            resp.read()
    client.close()
