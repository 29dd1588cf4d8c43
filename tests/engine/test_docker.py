"""The docker driver: the exact container it asks for, and its life through the docker SDK.

There is no Docker daemon on these machines, so the lifecycle tests run the real docker SDK
against `FakeDockerDaemon` (fake_docker.py), a small Docker Engine API server: only the
network edge is faked, and the tests check what reached the "daemon" (create body, port
bindings, device requests, stop timeouts), as well as the driver's own view.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped]
import pytest

from talktuah.config import Settings
from talktuah.engine.docker import DockerDriver, container_spec, gpu_device_requests
from talktuah.errors import EngineError

from .fake_docker import FakeDockerDaemon

MODEL = "org/m"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def make_settings(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, engine_port=18123, **overrides)


def ours(home: Path) -> dict[str, str]:
    return {"talktuah.engine": "1", "talktuah.home": str(home.resolve())}


@pytest.fixture
def daemon() -> Iterator[FakeDockerDaemon]:
    with FakeDockerDaemon() as running:
        yield running


# -- the spec -------------------------------------------------------------------------------


def test_spec_for_default_settings(home: Path) -> None:
    spec = container_spec(make_settings(home), MODEL, 18123)
    home = home.resolve()
    assert spec == {
        "image": "vllm/vllm-openai:latest",
        "entrypoint": ["vllm", "serve"],
        "command": [
            "org/m",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--served-model-name",
            "org/m",
            "--tensor-parallel-size",
            "1",
            "--pipeline-parallel-size",
            "1",
            "--gpu-memory-utilization",
            "0.9",
            "--dtype",
            "auto",
        ],  # fmt: skip
        "name": "talktuah-engine",
        "detach": True,
        "labels": {
            "talktuah.engine": "1",
            "talktuah.home": str(home),
            "talktuah.model": "org/m",
        },
        "volumes": {str(home / "models" / "hub"): {"bind": "/models/hub", "mode": "rw"}},
        "environment": {
            "HF_HOME": "/models",
            "HF_HUB_CACHE": "/models/hub",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HOME": "/tmp",
            "USER": "talktuah",
        },
        "ports": {"8000/tcp": ("127.0.0.1", 18123)},
        "user": f"{os.getuid()}:{os.getgid()}",
        "shm_size": "8g",
        "device_requests": [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
    }


def test_vllm_settings_flow_into_the_command(home: Path) -> None:
    settings = make_settings(
        home,
        vllm_tensor_parallel_size=2,
        vllm_pipeline_parallel_size=2,
        vllm_gpu_memory_utilization=0.85,
        vllm_max_model_len=8192,
        engine_dtype="bfloat16",
        vllm_distributed_executor_backend="ray",
        engine_extra_args=["--enable-prefix-caching"],
        engine_host="0.0.0.0",
        docker_image="vllm/vllm-openai:v0.11.0",
        docker_container_name="tt-gpu",
    )
    spec = container_spec(settings, MODEL, 9000)
    assert spec["command"] == [
        "org/m",
        "--host", "0.0.0.0",
        "--port", "8000",  # inside the container; the host side is in `ports`
        "--served-model-name", "org/m",
        "--tensor-parallel-size", "2",
        "--pipeline-parallel-size", "2",
        "--gpu-memory-utilization", "0.85",
        "--dtype", "bfloat16",
        "--max-model-len", "8192",
        "--distributed-executor-backend", "ray",
        "--enable-prefix-caching",
    ]  # fmt: skip
    assert spec["image"] == "vllm/vllm-openai:v0.11.0"
    assert spec["name"] == "tt-gpu"
    assert spec["ports"] == {"8000/tcp": ("0.0.0.0", 9000)}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("all", [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]),
        ("2", [docker.types.DeviceRequest(count=2, capabilities=[["gpu"]])]),
        ("device=0,3", [docker.types.DeviceRequest(device_ids=["0", "3"], capabilities=[["gpu"]])]),
        ("none", []),
    ],
)
def test_gpus_become_device_requests(home: Path, gpus: str, expected: list[Any]) -> None:
    assert gpu_device_requests(gpus) == expected
    spec = container_spec(make_settings(home, docker_gpus=gpus), MODEL, 1)
    if expected:
        assert spec["device_requests"] == expected
    else:
        assert "device_requests" not in spec


def test_unknown_gpus_value_says_what_is_accepted() -> None:
    with pytest.raises(EngineError, match="all, a count such as 2, device=0,1, or none"):
        gpu_device_requests("lots")


def test_shm_size_host_shares_the_ipc_namespace(home: Path) -> None:
    spec = container_spec(make_settings(home, docker_shm_size="host"), MODEL, 1)
    assert spec["ipc_mode"] == "host"
    assert "shm_size" not in spec
    assert container_spec(make_settings(home, docker_shm_size="16g"), MODEL, 1)["shm_size"] == "16g"


def test_settings_come_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKTUAH_DOCKER_GPUS", "2")
    monkeypatch.setenv("TALKTUAH_DOCKER_IMAGE", "registry.local/vllm:1")
    monkeypatch.setenv("TALKTUAH_VLLM_TENSOR_PARALLEL_SIZE", "2")
    spec = container_spec(Settings(home=home), MODEL, 1)
    assert spec["image"] == "registry.local/vllm:1"
    assert spec["device_requests"][0]["Count"] == 2
    assert spec["command"][spec["command"].index("--tensor-parallel-size") + 1] == "2"


# -- the lifecycle, through the real SDK ----------------------------------------------------


def test_client_is_created_lazily(home: Path) -> None:
    def refuse() -> Any:
        raise AssertionError("the client must not be created before it is needed")

    driver = DockerDriver(make_settings(home), client_factory=refuse)
    assert driver.base_url == "http://127.0.0.1:18123"
    assert driver.health_url == "http://127.0.0.1:18123/health"
    assert not driver.running()
    driver.stop()  # nothing started: nothing to do, and no client needed


def test_start_runs_the_container_the_spec_describes(home: Path, daemon: FakeDockerDaemon) -> None:
    driver = DockerDriver(make_settings(home), client_factory=daemon.client)
    driver.start(MODEL)

    container = daemon.named("talktuah-engine")
    assert container is not None and container.status == "running"
    body, host = container.body, container.body["HostConfig"]
    models_dir = home.resolve() / "models" / "hub"
    assert models_dir.is_dir()  # made by us, not by the daemon as root
    assert body["Image"] == "vllm/vllm-openai:latest"
    assert body["Entrypoint"] == ["vllm", "serve"]
    assert body["Cmd"][:5] == ["org/m", "--host", "0.0.0.0", "--port", "8000"]
    assert "HF_HUB_OFFLINE=1" in body["Env"] and "HF_HUB_CACHE=/models/hub" in body["Env"]
    assert body["Labels"] == {**ours(home), "talktuah.model": "org/m"}
    assert host["Binds"] == [f"{models_dir}:/models/hub:rw"]
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18123"}]}
    assert host["ShmSize"] == 8 * 1024**3
    assert [(r["Count"], r["Capabilities"]) for r in host["DeviceRequests"]] == [(-1, [["gpu"]])]

    assert driver.running()
    assert driver.log_tail(1) == ["INFO: Application startup."]
    assert "vllm serve org/m --host 0.0.0.0" in driver.log_tail()[0]
    assert driver.served_name(MODEL) == MODEL


def test_stop_stops_gracefully_then_removes(home: Path, daemon: FakeDockerDaemon) -> None:
    driver = DockerDriver(make_settings(home, engine_stop_timeout=7), client_factory=daemon.client)
    driver.start(MODEL)
    container = daemon.named("talktuah-engine")
    assert container is not None

    driver.stop()
    assert container.stopped_with == [7]
    assert daemon.named("talktuah-engine") is None
    assert not driver.running()
    assert "INFO: shutting down (SIGTERM)" in driver.log_tail()  # kept for failure reports
    driver.stop()  # idempotent


def test_start_replaces_a_stale_container_of_ours(home: Path, daemon: FakeDockerDaemon) -> None:
    stale = daemon.add_container("talktuah-engine", ours(home), status="running")
    driver = DockerDriver(make_settings(home), client_factory=daemon.client)
    driver.start("org/new")

    assert stale.stopped_with == [15]
    current = daemon.named("talktuah-engine")
    assert current is not None and current.id != stale.id
    assert current.body["Cmd"][0] == "org/new"


@pytest.mark.parametrize(
    ("labels", "owner"),
    [
        ({}, "something other than TalkTuah"),
        ({"talktuah.engine": "1", "talktuah.home": "/srv/other"}, "the TalkTuah at /srv/other"),
    ],
)
def test_start_leaves_a_same_named_container_it_does_not_own(
    home: Path, daemon: FakeDockerDaemon, labels: dict[str, str], owner: str
) -> None:
    theirs = daemon.add_container("talktuah-engine", labels, status="running")
    driver = DockerDriver(make_settings(home), client_factory=daemon.client)
    with pytest.raises(EngineError, match=f"belongs to {owner}.*docker rm -f talktuah-engine"):
        driver.start(MODEL)
    assert daemon.named("talktuah-engine") is theirs and theirs.status == "running"


def test_a_crashed_container_is_not_running_and_keeps_its_logs(
    home: Path, daemon: FakeDockerDaemon
) -> None:
    driver = DockerDriver(make_settings(home), client_factory=daemon.client)
    driver.start(MODEL)
    container = daemon.named("talktuah-engine")
    assert container is not None
    container.logs.append("torch.OutOfMemoryError: CUDA out of memory")
    container.status = "exited"

    assert not driver.running()
    assert driver.log_tail(1) == ["torch.OutOfMemoryError: CUDA out of memory"]
    driver.start(MODEL)  # the supervisor's restart: the dead container makes way
    assert driver.running()


def test_cleanup_orphans_removes_only_containers_of_this_home(
    home: Path, daemon: FakeDockerDaemon
) -> None:
    running = daemon.add_container("talktuah-engine", ours(home), status="running")
    exited = daemon.add_container("talktuah-engine-old", ours(home), status="exited")
    other_home = daemon.add_container(
        "their-engine", {"talktuah.engine": "1", "talktuah.home": "/srv/other"}
    )
    unrelated = daemon.add_container("postgres", {})

    DockerDriver(make_settings(home), client_factory=daemon.client).cleanup_orphans()

    assert running.stopped_with == [15]
    remaining = {c.id for c in daemon.containers.values()}
    assert remaining == {other_home.id, unrelated.id}
    assert exited.id not in remaining


def test_missing_image_is_pulled(home: Path) -> None:
    with FakeDockerDaemon(images=(), pullable=("vllm/vllm-openai:latest",)) as daemon:
        driver = DockerDriver(make_settings(home), client_factory=daemon.client)
        driver.start(MODEL)
        assert daemon.pulled == ["vllm/vllm-openai:latest"]
        assert driver.running()


def test_image_that_cannot_be_pulled_says_how_to_get_it(home: Path) -> None:
    with FakeDockerDaemon(images=()) as daemon:
        driver = DockerDriver(make_settings(home), client_factory=daemon.client)
        with pytest.raises(EngineError, match="docker pull vllm/vllm-openai:latest"):
            driver.start(MODEL)


def test_no_gpu_runtime_is_explained_and_the_dead_container_cleaned_up(home: Path) -> None:
    with FakeDockerDaemon(gpu_support=False) as daemon:
        driver = DockerDriver(make_settings(home), client_factory=daemon.client)
        with pytest.raises(
            EngineError, match="NVIDIA Container Toolkit.*TALKTUAH_DOCKER_GPUS=none"
        ):
            driver.start(MODEL)
        assert not driver.running()
        driver.stop()
        assert daemon.named("talktuah-engine") is None


def test_daemon_not_running_gives_a_clear_message(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker.from_env() against a socket nobody listens on, as on a machine without Docker."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    driver = DockerDriver(make_settings(home))  # the default factory: docker.from_env
    with pytest.raises(EngineError) as raised:
        driver.start(MODEL)
    message = str(raised.value)
    assert "Cannot reach the Docker daemon" in message
    assert "Start Docker" in message
    assert "TALKTUAH_ENGINE=transformers|vllm|external" in message
    driver.cleanup_orphans()  # logged, not raised: `talktuah serve` still starts
    driver.stop()
    assert not driver.running()


def test_daemon_going_away_after_start(home: Path) -> None:
    with FakeDockerDaemon() as daemon:
        driver = DockerDriver(make_settings(home), client_factory=daemon.client)
        driver.start(MODEL)
        lines = driver.log_tail()
    # The daemon is gone now: the engine counts as down, and nothing raises.
    assert not driver.running()
    assert driver.log_tail() in (lines, [])
    driver.stop()
