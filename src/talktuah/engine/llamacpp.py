"""llama.cpp's own HTTP server as a subprocess: the CPU engine for GGUF models.

By default it is the server embedded in the prebuilt `xllamacpp` wheel, started through
`python -m talktuah.engine.llamacpp_server` (engine/llamacpp_server.py) with llama-server's
flags; `TALKTUAH_ENGINE_EXECUTABLE=/path/to/llama-server` runs a user's own binary with the
same arguments. Facts measured from the server, which the driver handles:

- Without `--alias <model id>`, `/v1/models` shows the file path: we pass the id we serve.
- It does not check a request's `model` field: TalkTuah's proxy keeps its own check.
- A stream carries usage only when asked (`stream_options.include_usage`), as an extra chunk
  with `choices: []`: the proxy asks for it (token metrics) and drops that chunk when the
  client did not ask (`stream_usage_on_request`).
- Without `max_tokens` it generates to the end of the context: `-n` gets a default (1024,
  as transformers serve), and the context is `TALKTUAH_ENGINE_CTX` capped at the model's
  (a 32k context for a 7B model is gigabytes of KV cache).
- Embeddings need `--embeddings --pooling <type>`, per model: an embedding GGUF says its
  pooling type in its metadata, and only such a model is started for embeddings.
- Its threads busy-wait like OpenMP (with a busy second CPU, 2 threads ran 8x slower than
  1): `-t`/`-tb` follow `TALKTUAH_ENGINE_THREADS` (default: all CPUs but one).
- `/health` is 503 while loading. Idle, it exits within 0.2 s of SIGTERM; with a stream in
  flight it was seen to stop generating and then not exit for 30 s: it is stopped with a
  bounded wait, then SIGKILL; idle, it is killed at once (nothing to flush).
- It loads `-m <file in the snapshot>` (the first shard of a split model finds the rest),
  offline, without `HF_TOKEN` in its environment (env.py).
- It serves Anthropic's `/v1/messages` (named SSE events `message_start` ... `message_stop`;
  input tokens in `message_start`, output tokens in `message_delta`; a cache hit moves prompt
  tokens from `input_tokens` to `cache_read_input_tokens`), `/v1/messages/count_tokens`
  (`{"input_tokens": N}`) and OpenAI's `/v1/responses` (typed events, each with an `event:`
  line, ending `response.completed` with the usage), streamed and not. Its errors there are
  OpenAI-shaped (a missing `messages` is a 500); it refuses `previous_response_id`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

from ..config import Settings
from ..confine import inside
from ..errors import EngineStartError, UnknownQuantError
from ..quants import Selection, is_model_file, select, split_tag
from .base import SubprocessDriver
from .transformers import engine_threads

logger = logging.getLogger(__name__)

#: `-n`: what a request without `max_tokens` may generate (transformers serve's default).
DEFAULT_MAX_TOKENS = 1024
#: Longest graceful wait for llama.cpp's server, whatever TALKTUAH_ENGINE_STOP_TIMEOUT says.
STOP_WAIT_SECONDS = 5.0
LAUNCHER = "talktuah.engine.llamacpp_server"
_POOLING = {1: "mean", 2: "cls", 3: "last", 4: "rank"}


@dataclass(frozen=True)
class GgufModel:
    """The files llama.cpp gets for a model id, and what its header says."""

    path: Path
    mmproj: Path | None
    context_length: int | None
    pooling: str | None


def snapshot_files(models_dir: Path, repo_id: str) -> list[tuple[Path, list[str]]]:
    """(snapshot dir, its files relative to it), `refs/main`'s snapshot first, then newest."""
    repo_dir = models_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    main = repo_dir / "refs" / "main"
    head = main.read_text().strip() if main.is_file() else None
    found = sorted(
        (p for p in snapshots.iterdir() if p.is_dir()),
        key=lambda p: (p.name != head, -p.stat().st_mtime),
    )
    return [
        (snap, sorted(f.relative_to(snap).as_posix() for f in snap.rglob("*") if not f.is_dir()))
        for snap in found
    ]


def is_gguf_model(models_dir: Path, model_id: str) -> bool:
    """A `:TAG` id, or a repo whose snapshot has GGUF model files and no safetensors."""
    repo_id, tag = split_tag(model_id)
    if tag is not None:
        return True
    for _snap, files in snapshot_files(models_dir, repo_id)[:1]:
        has_gguf = any(is_model_file(f) for f in files)
        return has_gguf and not any(f.endswith(".safetensors") for f in files)
    return False


def find_gguf(models_dir: Path, model_id: str) -> GgufModel:
    """The GGUF file `model_id` means in the models dir (quants.select's rule)."""
    repo_id, tag = split_tag(model_id)
    candidates = snapshot_files(models_dir, repo_id)
    for snapshot, files in candidates:
        try:
            selection: Selection = select(files, tag, repo_id=repo_id)
        except UnknownQuantError:
            continue
        path = snapshot / selection.quant.first
        mmproj = snapshot / selection.mmproj if selection.mmproj else None
        for part in (path, mmproj):
            if part is not None and not inside(models_dir, part):
                raise EngineStartError(
                    f"{part} resolves outside the models dir; refusing to load it."
                )
        context, pooling = read_header(path)
        return GgufModel(path, mmproj, context, pooling)
    raise EngineStartError(
        f"No GGUF model file for {model_id} in {models_dir}. Pull it first "
        f"(`talktuah pull {model_id}`)."
    )


def read_header(path: Path) -> tuple[int | None, str | None]:
    """(context length, pooling type) from a GGUF file's metadata; (None, None) if unreadable.

    The `gguf` package reads the header and tensor index (memory-mapped: no weights are read).
    """
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        arch = _field(reader, "general.architecture")
        if not isinstance(arch, str):
            return None, None
        context = _field(reader, f"{arch}.context_length")
        pooling = _field(reader, f"{arch}.pooling_type")
    except Exception as exc:  # a damaged header is llama.cpp's to report, with its words
        logger.warning("could not read the GGUF header of %s: %s", path, exc)
        return None, None
    return (
        context if isinstance(context, int) and context > 0 else None,
        _POOLING.get(pooling) if isinstance(pooling, int) else None,
    )


def _field(reader: object, key: str) -> object:
    field = getattr(reader, "fields", {}).get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", "replace")
    return int(value[0]) if len(value) == 1 else None


def llamacpp_args(settings: Settings, model_id: str, model: GgufModel, port: int) -> list[str]:
    """llama-server's argv after the executable."""
    threads = engine_threads(settings, os.environ)
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    context = settings.engine_ctx
    if model.context_length is not None:
        context = min(context, model.context_length)
    args = [
        "-m", str(model.path),
        "--host", settings.engine_host, "--port", str(port),
        "--alias", model_id,
        "-c", str(context),
        "-n", str(DEFAULT_MAX_TOKENS),
        "-t", str(threads), "-tb", str(threads),
        "--jinja", "--metrics", "--offline",
    ]  # fmt: skip
    if model.pooling is not None:
        args += ["--embeddings", "--pooling", model.pooling]
    if model.mmproj is not None:
        args += ["--mmproj", str(model.mmproj)]
    return [*args, *settings.engine_extra_args]


class LlamaCppDriver(SubprocessDriver):
    name = "llamacpp"
    kill_when_idle = True
    stream_usage_on_request = True
    apis = frozenset({"messages", "count_tokens", "responses"})
    missing_help = (
        "Install the CPU engines with `pip install torch==2.13.0 && pip install "
        "'talktuah[cpu]'` (it brings the prebuilt xllamacpp wheel), or point "
        "TALKTUAH_ENGINE_EXECUTABLE at your own llama-server."
    )

    def __init__(self, settings: Settings, *, executable: str | None = None) -> None:
        # No executable: llama.cpp's server from the xllamacpp wheel, run by this interpreter.
        self.bundled = executable is None
        super().__init__(settings, executable=executable or sys.executable)

    def start(self, model_id: str) -> None:
        if self.bundled:
            try:
                import xllamacpp  # noqa: F401 - only checking it is installed
            except ImportError as exc:
                raise EngineStartError(
                    f"llama.cpp's server is not installed. {self.missing_help}"
                ) from exc
        self._model = find_gguf(self.settings.models_dir, model_id)
        super().start(model_id)

    def command(self, model_id: str, executable: str) -> list[str]:
        args = llamacpp_args(self.settings, model_id, self._model, self.port)
        return [executable, "-m", LAUNCHER, *args] if self.bundled else [executable, *args]

    def stop(self, *, idle: bool = False) -> None:
        timeout = min(self.settings.engine_stop_timeout, STOP_WAIT_SECONDS)
        self.process.stop(timeout, graceful=not idle)
