# TalkTuah: the API server with its embedded CPU engine (`transformers serve`).
#
#   docker build -t talktuah .
#   docker run -d -p 8787:8787 -v talktuah-data:/data --name talktuah talktuah
#   docker exec talktuah cat /data/api_key        # the generated key, if PROXY_API_KEY is unset
#
# compose.yaml runs it with the CPU engine (profile `cpu`) or in front of a vLLM container
# (profile `gpu`). Our CI cannot build images (no Docker daemon there): tests/docs lint this
# file (hadolint when it is installed) and check its key properties instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, pinned, from the CPU wheel index: `pip install .[cpu]` would otherwise resolve
# torch from PyPI and pull the multi-GB CUDA build. The `cpu` extra pins the same version,
# which the installed 2.13.0+cpu satisfies, so pip keeps it.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# The project itself from its own tree; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[cpu]"

# One non-root user, uid/gid 1000, owns everything under /data. The gpu profile runs the
# vLLM container as the same uid, so every file in the models dir has one owner and
# DELETE /api/delete-model never needs sudo.
RUN groupadd --gid 1000 talktuah \
    && useradd --uid 1000 --gid 1000 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin talktuah \
    && mkdir -p /data/models/hub \
    && chown -R 1000:1000 /data

# /data: models dir (/data/models/hub, Hugging Face cache layout), state.db, the generated
# api_key (0600) and engine logs. A new named volume is initialised from this directory, so
# it starts out owned by uid 1000; a host directory bound here must be `chown 1000:1000`.
ENV TALKTUAH_HOME=/data \
    TALKTUAH_HOST=0.0.0.0 \
    TALKTUAH_PORT=8787 \
    HOME=/data \
    HF_HOME=/data/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
VOLUME ["/data"]

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 1000:1000
EXPOSE 8787

# No curl in the slim image: Python asks /api/healthz (public). 200 means the API, the
# database and the models dir work ("healthy", or "degraded" while no model is loaded);
# 503 ("unhealthy") and connection errors make the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('TALKTUAH_PORT', '8787'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/api/healthz', timeout=4).status == 200 else 1)"]

# Binding 0.0.0.0 needs a strong PROXY_API_KEY; without one, TalkTuah generates a key,
# stores it in /data/api_key and prints it once in the log.
CMD ["talktuah", "serve"]
