"""Fit before bytes move (issue 17): a GGUF model whose file plus KV cache exceeds the RAM
is refused before its download, with the number and a smaller quant; `force=true` pulls it.

Why: a 70B model pulled onto a 16 GB machine is 40 GB of download for an engine that then
cannot load it. The shape comes from the GGUF header, read with one Range request; the
header is hub data, so hostile counts and lengths must neither allocate nor loop unbounded.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from talktuah.config import Settings
from talktuah.downloads.gguf_header import (
    MAX_HEADER_BYTES,
    HeaderError,
    ModelShape,
    parse_shape,
)
from talktuah.host_memory import total_memory
from talktuah.services import Services

from ..support.downloads import WaitFor
from ..support.gguf_shapes import gguf_with_shape
from ..support.hub import Hub

MiB = 1024 * 1024
REPO = "org/big-GGUF"
# 32 layers, 8 KV heads of 128: 512 MiB of F16 KV cache at a 4096-token context.
SHAPE = {"layers": 32, "embedding": 4096, "heads": 32, "kv_heads": 8}
KV_4096 = 512 * MiB


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """llama.cpp runs GGUF models here, so their RAM is this machine's (the check applies)."""
    return settings.model_copy(update={"engine": "llamacpp", "engine_ctx": 4096})


def chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    """Odd-sized chunks: a value split across two network reads must still parse."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- the header -----------------------------------------------------------------------------


def test_the_shape_comes_from_the_header() -> None:
    shape = parse_shape(chunks(gguf_with_shape(**SHAPE)))
    assert shape == ModelShape("llama", 32, 4096, 32, (8,), None, None, 32768)
    assert shape.kv_cache_bytes(shape.context(4096)) == KV_4096
    assert shape.context(65536) == 32768  # capped at the model's own context


def test_seventy_b_needs_1280_mib_of_kv_at_4k() -> None:
    """The number llama.cpp prints for Llama-3-70B (80 layers, 8 KV heads of 128) at -c 4096."""
    shape = parse_shape([gguf_with_shape(layers=80, embedding=8192, heads=64, kv_heads=8)])
    assert shape.kv_cache_bytes(4096) == 1280 * MiB


def test_reading_stops_before_the_tokenizer() -> None:
    """The shape is read from the first kilobytes; a 150k-token vocabulary after it is not."""
    data = gguf_with_shape(**SHAPE, tokens=150_000)
    assert len(data) > 1 * MiB
    assert parse_shape([data], budget=16 * 1024).n_layers == 32


def _header(*kvs: bytes, kv_count: int | None = None, version: int = 3) -> bytes:
    count = len(kvs) if kv_count is None else kv_count
    return b"GGUF" + struct.pack("<IQQ", version, 0, count) + b"".join(kvs)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", 4, value)


def _kv_str(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", 8) + _string(value)


LLAMA = [
    _kv_str("general.architecture", "llama"),
    _kv_u32("llama.block_count", 2),
    _kv_u32("llama.embedding_length", 64),
    _kv_u32("llama.attention.head_count", 4),
]


def zeros() -> Iterator[bytes]:
    while True:
        yield bytes(64 * 1024)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGML" + bytes(20), "no GGUF magic"),
        (_header(version=1), "version 1"),
        (_header(*LLAMA[1:]), "no general.architecture"),
        (_header(LLAMA[0], LLAMA[1]), "no llama.block_count / embedding_length"),
        (_header(kv_count=2**64 - 1), "ends inside"),  # a count no file could hold
        (_header(struct.pack("<Q", 2**63)), "over"),  # a key 2^63 bytes long
        # an array of 2^62 u32: refused by the budget, not allocated or read
        (_header(_string("x") + struct.pack("<IIQ", 9, 4, 2**62)), "past the first"),
        (_header(_string("x") + struct.pack("<I", 99)), "unknown metadata value type"),
    ],
)
def test_a_header_we_cannot_read_is_an_error(data: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        parse_shape(chunks(data, 4096))


@pytest.mark.parametrize(
    "budget",
    [
        pytest.param(MiB, id="1-MiB"),
        # The default's ~1 M empty strings take seconds to read in Python: out of the inner loop.
        pytest.param(MAX_HEADER_BYTES, id="default", marks=pytest.mark.slow),
    ],
)
def test_hostile_counts_are_bounded_by_the_byte_budget(budget: int) -> None:
    """Endless empty strings in an array, endless key-values: the reader stops at its budget
    (8 MiB by default) in well under a few seconds, whatever the counts say."""
    array = _string("tokenizer.x") + struct.pack("<IIQ", 9, 8, 2**63)  # 2^63 strings
    for data in (_header(LLAMA[0], array), _header(kv_count=2**63)):
        started = time.monotonic()
        with pytest.raises(HeaderError, match="past the first"):
            parse_shape(_then_zeros(data), budget=budget)
        assert time.monotonic() - started < 10


def _then_zeros(data: bytes) -> Iterator[bytes]:
    yield data
    yield from zeros()


def test_per_layer_kv_heads_are_summed_and_huge_arrays_skipped() -> None:
    per_layer = _string("llama.attention.head_count_kv") + struct.pack("<IIQ", 9, 4, 2)
    per_layer += struct.pack("<II", 4, 0)  # a recurrent layer (no KV) beside an attention one
    shape = parse_shape([_header(*LLAMA, per_layer)])
    assert shape.n_head_kv == (4, 0)
    assert shape.kv_cache_bytes(10) == 10 * 4 * (16 + 16) * 2
    huge = _string("llama.attention.head_count_kv") + struct.pack("<IIQ", 9, 4, 1_000_000)
    shape = parse_shape([_header(*LLAMA, huge + bytes(4_000_000))])
    assert shape.n_head_kv == (4,)  # not kept: the head count stands in


def test_this_machine_has_ram() -> None:
    ram = total_memory()
    assert ram is not None and ram > 64 * MiB
    assert MAX_HEADER_BYTES < ram


# -- the check, through the API -------------------------------------------------------------


def big_repo(hub: Hub) -> dict[str, bytes]:
    files = {
        "README.md": b"# big\n",
        "big-Q2_K.gguf": gguf_with_shape(**SHAPE, padding=50_000),
        "big-Q8_0.gguf": gguf_with_shape(**SHAPE, padding=200_000),
    }
    hub.add_repo(REPO, files)
    return files


def test_a_model_over_the_ram_is_refused_before_any_byte_moves(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    files = big_repo(hub)
    # Q8_0 (512 MiB of KV + its file) does not fit; Q2_K does.
    services.downloads.memory = lambda: KV_4096 + 120_000
    response = client.post(
        "/api/download-model", params={"model_id": f"{REPO}:Q8_0", "auto": "true"}
    )
    assert response.status_code == 507, response.text
    detail = response.json()["detail"]
    assert "does not fit in this machine's RAM" in detail
    assert "512.0 MiB KV cache for a 4096-token context" in detail
    assert f"Try a smaller quant: {REPO}:Q2_K" in detail
    assert "TALKTUAH_ENGINE_CTX" in detail and detail.endswith("force=true to download it anyway.")
    # The only request for the file was one Range GET of its first bytes; nothing was saved.
    (get,) = [r for r in hub.requests(repo_id=REPO) if r.kind == "resolve"]
    assert get.method == "GET" and get.path == "big-Q8_0.gguf"
    assert get.range == f"bytes=0-{MAX_HEADER_BYTES - 1}"
    assert not (services.store.models_dir / "models--org--big-GGUF").exists()

    # The smaller quant fits; force=true pulls the big one anyway.
    for model_id, params in ((f"{REPO}:Q2_K", {}), (f"{REPO}:Q8_0", {"force": "true"})):
        started = client.post(
            "/api/download-model", params={"model_id": model_id, "auto": "true", **params}
        )
        assert started.status_code == 202, started.text
        assert wait_for(started.json()["job_id"])["status"] == "complete"
    local = services.store.get(f"{REPO}:Q8_0")
    assert local.complete and local.size_bytes == len(files["big-Q8_0.gguf"])


def test_the_header_of_a_cached_file_is_read_from_disk(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    big_repo(hub)
    started = client.post(
        "/api/download-model", params={"model_id": f"{REPO}:Q8_0", "auto": "true"}
    )
    assert wait_for(started.json()["job_id"])["status"] == "complete"
    # The same commit, one more file: the quant is re-planned, its header read locally.
    hub.clear_log()
    services.downloads.memory = lambda: 1 * MiB
    again = client.post(
        "/api/download-model",
        params={"model_id": f"{REPO}:Q8_0", "auto": "true", "allow_patterns": "*.gguf"},
    )
    assert again.status_code == 507, again.text
    assert [r for r in hub.requests(repo_id=REPO) if r.kind == "resolve"] == []


def test_an_unreadable_header_counts_the_file_only(
    client: TestClient,
    services: Services,
    hub: Hub,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.add_repo("org/odd-GGUF", {"odd-Q4_K_M.gguf": b"not a gguf header" * 100})
    services.downloads.memory = lambda: 10 * MiB
    with caplog.at_level(logging.WARNING, logger="talktuah.downloads.fit"):
        started = client.post(
            "/api/download-model", params={"model_id": "org/odd-GGUF", "auto": "true"}
        )
    assert started.status_code == 202, started.text
    assert "could not read the GGUF header of odd-Q4_K_M.gguf" in caplog.text
    assert "counts the file size only" in caplog.text
    assert wait_for(started.json()["job_id"])["status"] == "complete"


def test_a_dripping_header_ends_at_its_deadline(
    client: TestClient,
    services: Services,
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hub sending a byte now and then (each read inside the stall timeout) holds the
    download request no longer than the header's deadline; the check then counts the file."""
    monkeypatch.setattr("talktuah.downloads.gguf_header.HEADER_DEADLINE", 0.5)
    padding = _string("general.description") + struct.pack("<I", 8) + _string("x" * 60_000)
    hub.add_repo("org/drip-GGUF", {"drip-Q8_0.gguf": _header(LLAMA[0], padding, *LLAMA[1:])})
    hub.faults.throttle_bps = 20_000
    services.downloads.memory = lambda: 10 * MiB
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="talktuah.downloads.fit"):
        answer = client.post(
            "/api/download-model", params={"model_id": "org/drip-GGUF:Q8_0", "auto": "true"}
        )
    assert answer.status_code == 202, answer.text
    assert "to arrive): the RAM check counts the file size only" in caplog.text
    assert time.monotonic() - started < 2.5  # the whole header would take 3 s
