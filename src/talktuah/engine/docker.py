"""The engine in a container, run through the docker SDK (no `docker compose` subprocess).

As the seed's compose setup did, the container is vLLM's OpenAI image with the models dir
mounted and `HF_HOME` pointing at it; TalkTuah publishes the container's port 8000 on
`engine_host:port` and talks to it like any other engine.

The entrypoint is set explicitly to `vllm serve`. vLLM's `docker/Dockerfile` (target
`vllm-openai`) now ends with `ENTRYPOINT ["vllm", "serve"]`, but images built before that
change, and some variants (the XPU image, per vllm-project/recipes#783), still use
`python3 -m vllm.entrypoints.openai.api_server`, which takes `--model` and rejects a
positional model. Naming the entrypoint makes the same command work with every vLLM image.

Ownership: every container carries the labels `talktuah.engine=1` and
`talktuah.home=<TALKTUAH_HOME>`; TalkTuah only ever stops or removes containers labelled
with its own home, so two TalkTuahs on one Docker host leave each other's engines alone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped]
import docker.errors  # type: ignore[import-untyped]
import docker.types  # type: ignore[import-untyped]

from ..config import Settings
from ..errors import EngineStartError
from .base import EngineDriver
from .env import url_host
from .ports import pick_port
from .vllm import VLLM_APIS, vllm_serve_args

logger = logging.getLogger(__name__)

CONTAINER_PORT = 8000
CONTAINER_HF_HOME = "/models"
CONTAINER_HUB_CACHE = "/models/hub"
ENGINE_LABEL = "talktuah.engine"
HOME_LABEL = "talktuah.home"
MODEL_LABEL = "talktuah.model"

#: Errors that mean "the daemon could not be asked": DockerException covers the SDK's own,
#: OSError covers requests' connection errors (RequestException is an IOError).
_UNREACHABLE = (docker.errors.DockerException, OSError)


def _home(settings: Settings) -> Path:
    # Binds need an absolute path, and labels must compare equal across restarts.
    return settings.home.expanduser().resolve()


def gpu_device_requests(gpus: str) -> list[Any]:
    """`docker run --gpus` as device requests: "all", a count ("2"), "device=0,1", "none"."""
    value = gpus.strip().lower()
    if value in ("", "none", "0"):
        return []
    if value == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if value.isdigit():
        return [docker.types.DeviceRequest(count=int(value), capabilities=[["gpu"]])]
    if value.startswith("device="):
        ids = [part.strip() for part in value.removeprefix("device=").split(",") if part.strip()]
        if ids:
            return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    raise EngineStartError(
        f"TALKTUAH_DOCKER_GPUS={gpus!r} is not understood: use all, a count such as 2, "
        "device=0,1, or none."
    )


def container_spec(settings: Settings, model_id: str, port: int) -> dict[str, Any]:
    """The keyword arguments of `client.containers.run(**spec)` for `model_id` on `port`."""
    home = _home(settings)
    spec: dict[str, Any] = {
        "image": settings.docker_image,
        "entrypoint": ["vllm", "serve"],
        "command": vllm_serve_args(settings, model_id, "0.0.0.0", CONTAINER_PORT),
        "name": settings.docker_container_name,
        "detach": True,
        "labels": {ENGINE_LABEL: "1", HOME_LABEL: str(home), MODEL_LABEL: model_id},
        "volumes": {
            str(home / "models" / "hub"): {"bind": CONTAINER_HUB_CACHE, "mode": "rw"},
        },
        # No HF_TOKEN: the engine is offline and never uses it, and a container's
        # environment is readable by anyone who may run `docker inspect`.
        "environment": {
            "HF_HOME": CONTAINER_HF_HOME,
            "HF_HUB_CACHE": CONTAINER_HUB_CACHE,
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        },
        "ports": {f"{CONTAINER_PORT}/tcp": (settings.engine_host, port)},
        # As TalkTuah's own user: whatever the engine writes in the shared models dir stays
        # deletable through the API (the seed's root-owned files needed sudo). HOME/USER
        # because torch asks for the user name, which an unnamed uid does not have.
        "user": f"{os.getuid()}:{os.getgid()}",
    }
    spec["environment"].update({"HOME": "/tmp", "USER": "talktuah"})
    # vLLM's tensor-parallel workers share memory through /dev/shm; Docker's default 64 MB
    # is far too small. TALKTUAH_DOCKER_SHM_SIZE=host shares the host's IPC namespace.
    if settings.docker_shm_size.strip().lower() == "host":
        spec["ipc_mode"] = "host"
    else:
        spec["shm_size"] = settings.docker_shm_size
    requests = gpu_device_requests(settings.docker_gpus)
    if requests:
        spec["device_requests"] = requests
    return spec


class DockerDriver(EngineDriver):
    name = "docker"
    apis = VLLM_APIS  # the container is vLLM's image

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[], docker.DockerClient] = docker.from_env,
    ) -> None:
        self.settings = settings
        self.port = pick_port(settings.engine_host, settings.engine_port)
        self._client_factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._container: Any = None
        self._last_logs: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.settings.engine_host)}:{self.port}"

    # -- the daemon -------------------------------------------------------------------------

    def client(self) -> Any:
        """The docker client, created on first use; EngineStartError if the daemon is not there."""
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._client_factory()
                except _UNREACHABLE as exc:
                    raise _daemon_unreachable(exc) from exc
            return self._client

    # -- the driver interface ---------------------------------------------------------------

    def start(self, model_id: str) -> None:
        client = self.client()
        spec = container_spec(self.settings, model_id, self.port)
        name = spec["name"]
        (_home(self.settings) / "models" / "hub").mkdir(parents=True, exist_ok=True)
        try:
            stale = self._by_name(client, name)
            if stale is not None:
                self._check_ours(stale)
                logger.info("removing the earlier engine container %s", name)
                self._stop_and_remove(stale)
            self._container = None
            self._last_logs = []
            logger.info("starting engine container %s from %s", name, spec["image"])
            self._container = client.containers.run(**spec)
        except docker.errors.ImageNotFound as exc:
            raise EngineStartError(
                f"The engine image {spec['image']} is not available ({_explain(exc)}). "
                f"Pull it with `docker pull {spec['image']}` or set TALKTUAH_DOCKER_IMAGE."
            ) from exc
        except docker.errors.APIError as exc:
            # Created but not started (no GPU, port taken): keep it for log_tail and stop.
            try:
                self._container = self._by_name(client, name)
            except _UNREACHABLE:
                self._container = None
            raise EngineStartError(_api_error_message(exc, self.settings)) from exc
        except _UNREACHABLE as exc:
            raise _daemon_unreachable(exc) from exc

    def stop(self, *, idle: bool = False) -> None:
        """Stop and remove our container. Never raises: shutdown must go on regardless."""
        if self._client is None:
            return  # nothing was ever started by this driver
        try:
            container = self._container or self._by_name(
                self._client, self.settings.docker_container_name
            )
            if container is not None and self._owned(container):
                self._last_logs = self._stop_and_remove(container)
        except _UNREACHABLE as exc:
            logger.warning("could not stop the engine container: %s", exc)
        finally:
            self._container = None

    def running(self) -> bool:
        container = self._container
        if container is None:
            return False
        try:
            container.reload()
        except docker.errors.NotFound:
            return False
        except _UNREACHABLE as exc:
            logger.warning("cannot ask Docker about the engine container: %s", exc)
            return False
        return bool(container.status == "running")

    def log_tail(self, lines: int = 50) -> list[str]:
        container = self._container
        if container is None:
            return self._last_logs[-lines:]
        try:
            return self._logs(container, lines)
        except _UNREACHABLE:
            return self._last_logs[-lines:]

    def cleanup_orphans(self) -> None:
        """Remove engine containers of this TALKTUAH_HOME left by a killed TalkTuah."""
        try:
            client = self.client()
            orphans = client.containers.list(
                all=True,
                filters={"label": [f"{ENGINE_LABEL}=1", f"{HOME_LABEL}={_home(self.settings)}"]},
            )
            for container in orphans:
                logger.warning(
                    "removing engine container %s left by a killed TalkTuah", container.name
                )
                self._stop_and_remove(container)
        except (EngineStartError, *_UNREACHABLE) as exc:
            # Not fatal here: start() reports the same problem where the user sees it.
            logger.warning("could not look for orphaned engine containers: %s", exc)

    def served_name(self, model_id: str) -> str:
        return model_id  # the command passes --served-model-name <model_id>

    # -- helpers ----------------------------------------------------------------------------

    def _by_name(self, client: Any, name: str) -> Any:
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _owned(self, container: Any) -> bool:
        labels = container.labels or {}
        return bool(
            labels.get(ENGINE_LABEL) == "1" and labels.get(HOME_LABEL) == str(_home(self.settings))
        )

    def _check_ours(self, container: Any) -> None:
        if self._owned(container):
            return
        name = self.settings.docker_container_name
        owner = (container.labels or {}).get(HOME_LABEL)
        whose = f"the TalkTuah at {owner}" if owner else "something other than TalkTuah"
        raise EngineStartError(
            f"A container named {name} already exists and belongs to {whose}; TalkTuah "
            f"will not remove it. Remove it yourself (`docker rm -f {name}`) or set "
            "TALKTUAH_DOCKER_CONTAINER_NAME to another name."
        )

    def _stop_and_remove(self, container: Any) -> list[str]:
        """SIGTERM (SIGKILL after the stop timeout), then remove; returns its last log lines."""
        try:
            container.reload()
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=int(self.settings.engine_stop_timeout))
            logs = self._logs(container, 200)
            container.remove(force=True)
        except docker.errors.NotFound:
            return []  # already gone
        return logs

    @staticmethod
    def _logs(container: Any, lines: int) -> list[str]:
        raw = container.logs(stdout=True, stderr=True, tail=lines)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return [line for line in text.splitlines() if line.strip()][-lines:]


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _daemon_unreachable(exc: BaseException) -> EngineStartError:
    return EngineStartError(
        f"Cannot reach the Docker daemon ({exc}). Start Docker (for example "
        "`sudo systemctl start docker`) or point DOCKER_HOST at it, or choose another engine "
        "with TALKTUAH_ENGINE=transformers|vllm|external."
    )


def _api_error_message(exc: Any, settings: Settings) -> str:
    detail = _explain(exc)
    if "could not select device driver" in detail or "nvidia" in detail.lower():
        return (
            f"Docker cannot give the engine a GPU ({detail}). Install the NVIDIA Container "
            "Toolkit and restart Docker, or set TALKTUAH_DOCKER_GPUS=none for a CPU image."
        )
    if "port is already allocated" in detail or "address already in use" in detail:
        return (
            f"The engine port is taken ({detail}). Set TALKTUAH_ENGINE_PORT to a free port, "
            "or 0 to let TalkTuah pick one."
        )
    return (
        f"Docker refused to run the engine container ({detail}). Check "
        f"`docker logs {settings.docker_container_name}` and the TALKTUAH_DOCKER_* settings."
    )
