"""The few numbers of a GGUF header that say how much memory a model's context needs, read
from the first bytes of its file before the file is downloaded.

A GGUF file starts with its metadata: magic `GGUF`, version, tensor count, key-value count,
then typed key-values (GGUF v2/v3, little-endian). The architecture's block count, embedding
length and attention head counts come early (llama.cpp's converter writes them before the
tokenizer's big arrays), so a Range request for the first few MB is enough; the `gguf`
package's reader wants a whole file. Every count and length in the header comes from the
hub and is untrusted: nothing here allocates or loops more than the byte budget allows.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session

logger = logging.getLogger(__name__)

MAGIC = b"GGUF"
MAX_HEADER_BYTES = 8 * 1024 * 1024
"""Read no further: the numbers we need sit in the first kilobytes of every real file."""
MAX_KEY_BYTES = 64 * 1024
MAX_KEPT_ARRAY = 65_536
"""Longest per-layer array (`head_count_kv` of some models) we keep; longer ones are skipped."""
_READ_CHUNK = 64 * 1024
HEADER_DEADLINE = 30.0
"""Seconds a header read may take in all: a hub dripping a byte per read timeout must not
hold a download request for hours."""

# GGUF value types: (struct format, size) of the fixed-size ones.
_FIXED = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_MAX_FOUND = 64  # shape keys kept: a hostile file repeating them gets no further
_SUFFIXES = (
    "block_count",
    "embedding_length",
    "context_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
)
_REQUIRED = ("block_count", "embedding_length", "attention.head_count")


class HeaderError(Exception):
    """The bytes are not a GGUF header we can read within the budget."""


@dataclass(frozen=True)
class ModelShape:
    """What the KV cache's size depends on (llama.cpp: K and V per layer, per token)."""

    architecture: str
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # one per layer, or one for all
    key_length: int | None
    value_length: int | None
    context_length: int | None

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes of an F16 KV cache (llama.cpp's default type) for `n_ctx` tokens."""
        head_k = self.key_length or self.n_embd // self.n_head
        head_v = self.value_length or self.n_embd // self.n_head
        if len(self.n_head_kv) == 1:
            kv_heads = self.n_head_kv[0] * self.n_layers
        else:
            kv_heads = sum(self.n_head_kv[: self.n_layers])
        return n_ctx * kv_heads * (head_k + head_v) * 2

    def context(self, wanted: int) -> int:
        """The context llama.cpp's server gets from TalkTuah: the setting, capped at the
        model's own."""
        return min(wanted, self.context_length) if self.context_length else wanted


class _Stream:
    """Bytes from an iterator of chunks, at most `budget` of them in all."""

    def __init__(self, chunks: Iterable[bytes], budget: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self._pos = 0
        self._budget = budget
        self.consumed = 0

    def read(self, n: int) -> bytes:
        if self.consumed + n > self._budget:
            raise HeaderError(f"the metadata runs past the first {self._budget} bytes")
        while len(self._buffer) - self._pos < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise HeaderError("the file ends inside its metadata")
            self._buffer, self._pos = self._buffer[self._pos :] + chunk, 0
        data = self._buffer[self._pos : self._pos + n]
        self._pos += n
        self.consumed += n
        return data

    def skip(self, n: int) -> None:
        if self.consumed + n > self._budget:
            raise HeaderError(f"the metadata runs past the first {self._budget} bytes")
        while n > 0:
            step = min(n, _READ_CHUNK)
            self.read(step)
            n -= step

    def unpack(self, fmt: str, size: int) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.read(size))[0]
        return value


def parse_shape(chunks: Iterable[bytes], *, budget: int = MAX_HEADER_BYTES) -> ModelShape:
    """Read a GGUF header from `chunks` until the model's shape is known; raise HeaderError
    for anything else (not GGUF, an old version, hostile lengths, missing keys)."""
    stream = _Stream(chunks, budget)
    if stream.read(4) != MAGIC:
        raise HeaderError("not a GGUF file (no GGUF magic)")
    version = stream.unpack("<I", 4)
    if version not in (2, 3):
        raise HeaderError(f"GGUF version {version} (TalkTuah reads versions 2 and 3)")
    stream.unpack("<Q", 8)  # tensor count: not needed
    kv_count = int(stream.unpack("<Q", 8))
    architecture: str | None = None
    found: dict[str, int | tuple[int, ...]] = {}
    for _ in range(kv_count):  # each key-value takes bytes: the budget bounds the loop
        key = _read_string(stream, MAX_KEY_BYTES)
        if architecture is not None and key.startswith("tokenizer."):
            if _have(found, architecture, _REQUIRED):
                break  # the shape comes before the tokenizer's arrays (megabytes of them)
        kind = int(stream.unpack("<I", 4))
        if key == "general.architecture" and kind == _STRING:
            architecture = _read_string(stream, MAX_KEY_BYTES)
        elif _wanted(key) and len(found) < _MAX_FOUND:
            value = _read_value(stream, kind, keep=True)
            if value is not None:
                found[key] = value
        else:
            _read_value(stream, kind, keep=False)
        if architecture is not None and _have(found, architecture, _SUFFIXES):
            break
    if architecture is None:
        raise HeaderError("no general.architecture in the metadata")
    return _shape(architecture, found)


def _wanted(key: str) -> bool:
    """`<arch>.block_count` and the like (at most a few dozen such keys in any file)."""
    return key.split(".", 1)[-1] in _SUFFIXES


def _have(found: dict[str, int | tuple[int, ...]], arch: str, suffixes: Iterable[str]) -> bool:
    return all(f"{arch}.{suffix}" in found for suffix in suffixes)


def _read_string(stream: _Stream, limit: int) -> str:
    length = int(stream.unpack("<Q", 8))
    if length > limit:
        raise HeaderError(f"a metadata key or string of {length} bytes (over {limit})")
    return stream.read(length).decode("utf-8", errors="replace")


def _read_value(stream: _Stream, kind: int, *, keep: bool) -> int | tuple[int, ...] | None:
    """One value; integers (and arrays of them) are returned when `keep`, the rest skipped."""
    if kind in _FIXED:
        fmt, size = _FIXED[kind]
        value = stream.unpack(fmt, size)
        return int(value) if keep and kind not in (6, 7, 12) else None
    if kind == _STRING:
        stream.skip(int(stream.unpack("<Q", 8)))
        return None
    if kind != _ARRAY:
        raise HeaderError(f"unknown metadata value type {kind}")
    item_kind = int(stream.unpack("<I", 4))
    count = int(stream.unpack("<Q", 8))
    if item_kind in _FIXED:
        fmt, size = _FIXED[item_kind]
        if keep and count <= MAX_KEPT_ARRAY and item_kind not in (6, 7, 12):
            return tuple(int(stream.unpack(fmt, size)) for _ in range(count))
        stream.skip(count * size)  # the budget refuses a hostile count before any read
        return None
    if item_kind == _STRING:
        for _ in range(count):  # each string takes at least 8 bytes: bounded by the budget
            stream.skip(int(stream.unpack("<Q", 8)))
        return None
    raise HeaderError(f"an array of metadata type {item_kind}")


def _shape(arch: str, found: dict[str, int | tuple[int, ...]]) -> ModelShape:
    def number(suffix: str) -> int | None:
        value = found.get(f"{arch}.{suffix}")
        if isinstance(value, tuple):
            return max(value) if value else None
        return value

    n_layers, n_embd, n_head = (number(s) for s in _REQUIRED)
    if not n_layers or not n_embd or not n_head:
        raise HeaderError(f"no {arch}.block_count / embedding_length / attention.head_count")
    kv = found.get(f"{arch}.attention.head_count_kv")
    if isinstance(kv, tuple) and kv:
        n_head_kv = kv  # per layer: hybrid models have none in their recurrent layers
    else:
        n_head_kv = (kv if isinstance(kv, int) and kv > 0 else n_head,)
    return ModelShape(
        architecture=arch,
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=number("attention.key_length"),
        value_length=number("attention.value_length"),
        context_length=number("context_length"),
    )


def read_local_shape(path: Path) -> ModelShape:
    """The shape from a GGUF file already on disk (a re-download, another quant)."""
    with path.open("rb") as handle:
        return parse_shape(iter(lambda: handle.read(_READ_CHUNK), b""))


def fetch_shape(
    repo_id: str,
    filename: str,
    *,
    commit: str,
    endpoint: str | None,
    token: str | None,
    timeout: float,
) -> ModelShape:
    """The shape from the first bytes of `filename` on the Hub: one Range request through
    huggingface_hub's own client (its endpoint, token and hooks), closed once read."""
    url = hf_hub_url(repo_id, filename, revision=commit, endpoint=endpoint)
    headers = build_hf_headers(token=token or False)
    headers["Range"] = f"bytes=0-{MAX_HEADER_BYTES - 1}"
    deadline = time.monotonic() + HEADER_DEADLINE
    with get_session().stream(
        "GET", url, headers=headers, follow_redirects=True, timeout=timeout
    ) as response:
        if response.status_code not in (200, 206):
            raise HeaderError(f"the hub answered {response.status_code} for its first bytes")
        return parse_shape(_until(deadline, response.iter_bytes()))  # as the bytes arrive


def _until(deadline: float, chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise HeaderError(f"its first bytes took over {HEADER_DEADLINE:.0f} s to arrive")
        yield chunk
