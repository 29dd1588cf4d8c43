"""ModelStore: repo-id validation, listing through scan_cache_dir, library-driven deletion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talktuah.errors import (
    InvalidModelIdError,
    ModelBusyError,
    ModelInUseError,
    ModelNotFoundError,
    StoragePermissionError,
)
from talktuah.services import Services
from talktuah.store import validate_model_id

from .support.fs import read_only, tree_snapshot
from .support.repos import PutModel, model_files

HOSTILE_IDS = [
    "../x", "../../etc", "/etc/passwd", "a/b/c", "a b", "x" * 300, "", "   ", "a\\b",
    "..", "org/..", "~/models", "org/na--me", "org/.hidden", "org/name.git", "org/na;me",
    "org/name\n", "%2e%2e/x",
]  # fmt: skip


@pytest.mark.parametrize("model_id", HOSTILE_IDS)
def test_hostile_ids_are_rejected_with_a_hint(model_id: str) -> None:
    with pytest.raises(InvalidModelIdError, match="repo id"):
        validate_model_id(model_id)


@pytest.mark.parametrize("model_id", ["gpt2", "Qwen/Qwen2.5-0.5B-Instruct", "org/a_b.c-d"])
def test_real_ids_are_accepted(model_id: str) -> None:
    assert validate_model_id(model_id) == model_id


def test_long_id_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidModelIdError) as info:
        validate_model_id("x" * 300)
    assert len(str(info.value)) < 300


def test_list_reports_size_revisions_active_and_complete(
    services: Services, put_model: PutModel
) -> None:
    files = model_files(seed=1, weights_size=5000)
    snapshot = put_model("org/alpha", files)
    put_model("org/beta", seed=2)
    services.state.active_model = "org/beta"

    models = services.store.list()
    assert [m.model_id for m in models] == ["org/alpha", "org/beta"]
    alpha, beta = models
    assert alpha.size_bytes == sum(len(b) for b in files.values())
    assert not alpha.active and beta.active
    assert alpha.complete and beta.complete
    (revision,) = alpha.revisions
    assert revision.commit_hash == snapshot.name
    assert revision.refs == ["main"]
    assert revision.files == sorted(files)
    assert revision.last_modified.endswith("+00:00")


def test_empty_or_missing_models_dir_lists_nothing(services: Services) -> None:
    assert services.store.list() == []
    services.store.models_dir.rmdir()
    assert services.store.list() == []


def test_partial_download_is_not_complete(services: Services, put_model: PutModel) -> None:
    snapshot = put_model("org/partial")
    blobs = snapshot.parents[1] / "blobs"
    (blobs / "0123abcd.4f5e.incomplete").write_bytes(b"half")
    (model,) = services.store.list()
    assert not model.complete


def test_sharded_model_missing_a_shard_is_not_complete(
    services: Services, put_model: PutModel
) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}  # fmt: skip
    files = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"\x01" * 2048,
    }
    put_model("org/sharded", files)
    (model,) = services.store.list()
    assert not model.complete
    files["model-00002-of-00002.safetensors"] = b"\x02" * 2048
    put_model("org/sharded-ok", files)
    assert {m.model_id: m.complete for m in services.store.list()} == {
        "org/sharded": False,
        "org/sharded-ok": True,
    }


def test_delete_frees_the_model_through_the_library(
    services: Services, put_model: PutModel
) -> None:
    put_model("org/gone", seed=3)
    put_model("org/kept", seed=4)
    deleted = services.store.delete("org/gone")
    assert deleted.size_bytes > 4096 and not deleted.was_active
    assert [m.model_id for m in services.store.list()] == ["org/kept"]
    assert not (services.store.models_dir / "models--org--gone").exists()


def test_delete_unknown_is_not_found(services: Services) -> None:
    with pytest.raises(ModelNotFoundError, match="org/nope"):
        services.store.delete("org/nope")


def test_delete_active_needs_force_and_then_clears_it(
    services: Services, put_model: PutModel
) -> None:
    put_model("org/active")
    services.state.active_model = "org/active"
    with pytest.raises(ModelInUseError, match="force=true"):
        services.store.delete("org/active")
    assert services.store.exists("org/active")
    assert services.store.delete("org/active", force=True).was_active
    assert services.state.active_model is None


def test_delete_while_downloading_is_refused(services: Services, put_model: PutModel) -> None:
    put_model("org/busy")
    store = services.store
    job = store.jobs.insert(store.jobs.new("org/busy", "main"))
    with pytest.raises(ModelBusyError, match=f"DELETE /api/downloads/{job.id}"):
        store.delete("org/busy")
    assert store.exists("org/busy")
    assert not store.list()[0].complete, "a model being downloaded is not complete"


def test_delete_in_read_only_models_dir_touches_nothing(
    services: Services, put_model: PutModel
) -> None:
    put_model("org/locked")
    models_dir = services.store.models_dir
    before = tree_snapshot(models_dir)
    with read_only(models_dir):
        with pytest.raises(StoragePermissionError, match="chown"):
            services.store.delete("org/locked")
    assert tree_snapshot(models_dir) == before
    assert services.store.exists("org/locked")


def test_delete_refuses_hostile_ids_before_touching_disk(
    services: Services, put_model: PutModel, tmp_path: Path
) -> None:
    put_model("org/safe")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    before = tree_snapshot(tmp_path)
    for model_id in ["../victim", "../../victim", str(victim), "org/../../victim"]:
        with pytest.raises(InvalidModelIdError):
            services.store.delete(model_id, force=True)
    assert tree_snapshot(tmp_path) == before
