"""GGUF repos: which file is which quantization, and which one an id like `org/repo:Q4_K_M`
means.

A GGUF repo on the Hub holds one model in many quantizations (often 10-100x the size of one),
plus files that are not models (`mmproj` vision projectors, `imatrix` data, draft models).
Every tool our users compare us with picks the quantization at pull time (Ollama
`hf.co/user/repo:Q4_K_M`, LM Studio `@q4_k_m`, llama.cpp `-hf user/repo:quant`); the rule
here is llama.cpp's, so one id means the same file in TalkTuah, `llama-server -hf` and
Ollama: the tag, case-insensitive; without a tag Q4_K_M, then Q8_0, then the first model file.

Sharded quants (`...-00001-of-00003.gguf`, often in a per-quant folder) are one entry: all
shards are fetched together, and llama.cpp is given the first (it finds the rest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import InvalidModelIdError, UnknownQuantError

DEFAULT_ORDER = ("Q4_K_M", "Q8_0")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})$")
# A quantization name inside a file name: Q4_K_M, q8_0, IQ2_XXS, Q4_0_4_4, BF16, F16, F32,
# MXFP4_MOE, TQ1_0 ... bounded by '-', '_', '.' or the ends of the name.
_QUANT = re.compile(
    r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|(?:TQ\d_\d)|(?:MXFP4(?:_MOE)?)|BF16|F16|F32|FP16|FP32)"
    r"(?=$|[-_.])",
    re.IGNORECASE,
)
_NOT_A_MODEL = re.compile(r"mmproj|imatrix|draft", re.IGNORECASE)


def split_tag(model_id: str) -> tuple[str, str | None]:
    """`org/repo:Q4_K_M` -> (`org/repo`, `Q4_K_M`); no tag -> (`org/repo`, None).

    The tag is upper-cased (tags are case-insensitive); its grammar is checked because it
    ends up in file-name matching and in listings.
    """
    repo, sep, tag = model_id.partition(":")
    if not sep:
        return model_id, None
    if not _TAG.fullmatch(tag):
        raise InvalidModelIdError(
            f"{model_id!r}: the quantization tag after ':' must be letters, digits, '_', '.' "
            "or '-' (at most 32), e.g. 'org/repo-GGUF:Q4_K_M'."
        )
    return repo, tag.upper()


def with_tag(repo_id: str, quant: str | None) -> str:
    """The id of one quant of a repo (`org/repo:Q8_0`); the repo id itself without one."""
    return f"{repo_id}:{quant}" if quant else repo_id


def is_gguf_repo(files: Iterable[str]) -> bool:
    """A repo whose model is GGUF: a GGUF model file and no safetensors weights. A repo with
    both is a Transformers repo that also ships GGUF; a tag still picks one of its quants."""
    names = list(files)
    return any(is_model_file(p) for p in names) and not any(
        p.endswith(".safetensors") for p in names
    )


def is_gguf(path: str) -> bool:
    return path.lower().endswith(".gguf")


def is_model_file(path: str) -> bool:
    """A GGUF file llama.cpp could load as the model: not a projector, imatrix or draft."""
    return is_gguf(path) and not _NOT_A_MODEL.search(path.rsplit("/", 1)[-1])


def quant_of(path: str) -> str | None:
    """The quantization named in a GGUF file's name (upper case), else in its folder's
    (`Q8_0/model-00001-of-00002.gguf`), or None."""
    folder, _, name = path.rpartition("/")
    stem = _SHARD.sub("", name[: -len(".gguf")] if is_gguf(name) else name)
    found = _QUANT.findall(stem) or _QUANT.findall(folder.rsplit("/", 1)[-1])
    return found[-1].upper() if found else None


def shard_count(path: str) -> int | None:
    """N of a `-0000k-of-0000N.gguf` shard, or None for a file that is not a shard."""
    match = _SHARD.search(path.rsplit("/", 1)[-1][: -len(".gguf")])
    return int(match.group(2)) if match else None


def _tag_for(stem: str) -> str:
    """A tag for a model file whose name names no quantization: its stem, made to fit the
    tag grammar, so `org/repo:<tag>` is an id that validates and can be typed back."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("_.-")[:32].upper()
    return tag or "MODEL"


@dataclass(frozen=True)
class Quant:
    """One loadable model file of a GGUF repo: all its shards, first shard first."""

    tag: str
    files: tuple[str, ...]
    size: int | None

    @property
    def first(self) -> str:
        return self.files[0]

    @property
    def whole(self) -> bool:
        """Every shard is listed: a quant read from a disk a crash left half-written, or
        from a repo missing a shard, is not."""
        count = shard_count(self.first)
        return count is None or len(self.files) == count


@dataclass(frozen=True)
class Selection:
    quant: Quant
    mmproj: str | None

    @property
    def files(self) -> list[str]:
        return [*self.quant.files, *([self.mmproj] if self.mmproj else [])]


def available(files: Mapping[str, int | None] | Iterable[str]) -> list[Quant]:
    """The repo's model files as quants, in file-list order; a file without a quant name in
    it (or its folder's) is listed under its name without `.gguf`, fitted to the tag
    grammar."""
    sizes: Mapping[str, int | None] = files if isinstance(files, Mapping) else dict.fromkeys(files)
    groups: dict[tuple[str, str], list[str]] = {}
    for path in sizes:
        if not is_model_file(path):
            continue
        folder, _, name = path.rpartition("/")
        stem = _SHARD.sub("", name[: -len(".gguf")])
        groups.setdefault((folder, stem), []).append(path)
    quants: list[Quant] = []
    seen: set[str] = set()
    for (_folder, stem), paths in groups.items():
        paths.sort()
        tag = quant_of(paths[0]) or _tag_for(stem)
        if tag in seen:
            continue  # the same quant twice (two names): the first in the list wins
        seen.add(tag)
        known = [sizes[p] for p in paths]
        size = None if any(s is None for s in known) else sum(s for s in known if s is not None)
        quants.append(Quant(tag=tag, files=tuple(paths), size=size))
    return quants


def default_quant(quants: list[Quant]) -> Quant:
    """llama.cpp's rule for an id without a tag: Q4_K_M, then Q8_0, then the first."""
    by_tag = {q.tag: q for q in quants}
    return next((by_tag[t] for t in DEFAULT_ORDER if t in by_tag), quants[0])


def mmproj_of(files: Iterable[str]) -> str | None:
    """The vision projector to fetch with the model: F16 if there is one, else the first."""
    projectors = sorted(p for p in files if is_gguf(p) and "mmproj" in p.lower())
    if not projectors:
        return None
    return next((p for p in projectors if quant_of(p) == "F16"), projectors[0])


def select(
    files: Mapping[str, int | None] | Iterable[str], tag: str | None, *, repo_id: str = ""
) -> Selection:
    """The files an id means: its quant's shards, plus the mmproj file of a vision model.

    Raises UnknownQuantError (its message lists the quants with sizes) for an unknown tag.
    """
    names = list(files)
    quants = available(files)
    if not quants:
        raise UnknownQuantError(repo_id, tag, [])
    by_tag = {q.tag: q for q in quants}
    if tag is None:
        chosen = default_quant(quants)
    elif tag.upper() in by_tag:
        chosen = by_tag[tag.upper()]
    else:
        raise UnknownQuantError(repo_id, tag, quants, default_quant(quants).tag)
    return Selection(quant=chosen, mmproj=mmproj_of(names))
