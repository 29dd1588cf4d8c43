"""The long-lived objects of one TalkTuah process, built without the web layer.

Tests build `Services` directly around a temp `TALKTUAH_HOME`; the API receives it through
`api.deps`, so routers never construct anything themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import EllipsisType

import httpx
from prometheus_client.core import Metric

from .config import Settings
from .downloads.jobs import JobStatus
from .downloads.manager import DownloadManager, DownloadRequest, RequestOutcome
from .downloads.plan import RepoQuants, repo_quants
from .downloads.worker import make_api
from .engine.base import EngineState
from .engine.budget import NoRoom
from .engine.drivers import make_driver
from .engine.instance import Clock
from .engine.lifecycle import InstanceState
from .engine.supervisor import EngineSupervisor, SwitchOutcome
from .errors import (
    ModelNotReadyError,
    ModelNotServedError,
    PoolFullError,
    SwitchNotSupportedError,
)
from .keys import KeyStore
from .logs import remember_secret
from .metrics import Metrics, gauge
from .model_id import ModelId
from .proxy import EngineProxy
from .ratelimit import RateLimits
from .security import ApiKey, rotate_generated_key
from .state import StateDB
from .store import DeletedModel, ModelStore


@dataclass
class Services:
    settings: Settings
    state: StateDB
    store: ModelStore
    downloads: DownloadManager
    engine: EngineSupervisor
    proxy: EngineProxy
    keys: KeyStore
    limits: RateLimits
    metrics: Metrics
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def build(
        cls, settings: Settings, api_key: ApiKey, *, clock: Clock = time.monotonic
    ) -> Services:
        """Everything, wired. `clock`: what the engines' keep-alive and restart backoff are
        measured on (tests pass one they advance)."""
        settings.home.mkdir(parents=True, exist_ok=True)
        state = StateDB(settings.db_path)
        state.seed_default_model(settings.default_model)
        store = ModelStore(settings.models_dir, state, engine=settings.engine)
        store.ensure_dir()
        downloads = DownloadManager(settings, state, store)
        metrics = Metrics()
        engine = EngineSupervisor(
            settings, state, store, make_driver(settings), metrics, clock=clock
        )
        services = cls(
            settings=settings,
            state=state,
            store=store,
            downloads=downloads,
            engine=engine,
            proxy=EngineProxy(settings, engine, metrics),
            keys=KeyStore(state, api_key),
            limits=RateLimits(settings),
            metrics=metrics,
        )
        downloads.on_activate = services.activate_downloaded
        downloads.on_bytes = metrics.download_bytes.inc
        metrics.watch(services._live_metrics)
        return services

    def rotate_admin_key(self) -> ApiKey:
        """Replace the generated admin key (file and memory) and return the new one: the
        old one stops working at once, and the new one is masked in logs from now on.
        KeyRotationError when the admin key comes from the environment."""
        new = rotate_generated_key(self.settings, self.keys.env_key)
        self.keys.env_key = new
        remember_secret(new.value)
        return new

    def _live_metrics(self) -> Iterator[Metric]:
        jobs = gauge("talktuah_download_jobs", "Download jobs by status", ["status"])
        counts = self.downloads.jobs.counts()
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs
        speed = gauge("talktuah_download_speed_bytes_per_second", "Current total download speed")
        speed.add_metric([], self.downloads.jobs.current_speed())
        yield speed
        engine = gauge("talktuah_engine_state", "1 for the engine's current state", ["state"])
        for state in EngineState:
            engine.add_metric([state.value], 1 if self.engine.state == state else 0)
        yield engine
        restarts = gauge("talktuah_engine_restarts", "Automatic engine restarts in a row")
        restarts.add_metric([], self.engine.restarts)
        yield restarts
        loaded = gauge("talktuah_models_loaded", "Models loaded or loading, each its own engine")
        loaded.add_metric([], self.engine.pool.loaded())
        yield loaded
        models = gauge("talktuah_models_local", "Models in the models dir")
        models.add_metric([], len(self.store.model_ids()))
        yield models

    def activate(self, model_id: str, *, force: bool = False) -> SwitchOutcome:
        """Make `model_id` the served model: a switch when TalkTuah runs the engine; nothing
        to do when it serves already, unless `force`."""
        if self.engine.driver.manages_models:
            return self.engine.switch(model_id, force=force)
        self.state.active_model = model_id
        return SwitchOutcome.SWITCHING

    def delete_model(self, model_id: str, *, force: bool = False) -> DeletedModel:
        """Delete a model's files, forget its failure, and stop its engine if it was the
        active one (only when TalkTuah runs the engine). ModelInUseError for the active
        model without `force`; ModelBusyError while a download of it runs."""
        deleted = self.store.delete(model_id, force=force)
        self.engine.forget(model_id)
        if deleted.was_active and self.engine.driver.manages_models:
            self.engine.unload(f"The active model {model_id} was deleted.")
        return deleted

    def activate_downloaded(self, model_id: str) -> None:
        """A download job with `activate` finished: its files are new (a new revision of the
        served model, say), so the engine loads them even if it serves that model."""
        self.activate(model_id, force=True)

    def download(self, req: DownloadRequest) -> tuple[RequestOutcome, SwitchOutcome | None]:
        """Ask for a download (DownloadManager.request) and, with `activate`, activate the
        model at once when it is here in full already (a job with `activate` is activated
        when it completes: activate_downloaded). The switch's outcome, None without one."""
        outcome = self.downloads.request(req)
        if not (req.activate and outcome.already_complete):
            return outcome, None
        return outcome, self.activate(outcome.model_id or req.model_id)

    def load_model(self, model_id: str, keep_alive: float | None | EllipsisType = ...) -> bool:
        """Load a downloaded model beside those loaded (the pool evicts the least recently
        used idle one if its limits say so); True when it is loaded and ready already.
        `keep_alive`: seconds it stays loaded idle (None: for ever; ...: the default's).

        SwitchNotSupportedError for an external engine, ModelNotFoundError, ModelNotReadyError
        for a model still downloading, PoolFullError when nothing can make room."""
        pool = self.engine.pool
        if pool.external:
            raise SwitchNotSupportedError(
                "The external engine serves what it serves: load models where it runs "
                "(TALKTUAH_ENGINE=auto|transformers|llamacpp|vllm|docker lets TalkTuah load "
                "them)."
            )
        model_id = ModelId(model_id)
        if not self.store.get(model_id).complete:
            raise ModelNotReadyError(
                f"{model_id} is not completely downloaded. Wait for its download "
                "(GET /api/download-progress?model_id=...) or download it again.",
                model_id=model_id,
            )
        before = pool.instances.get(model_id)
        keep = None if model_id == pool.default_id else keep_alive  # the default stays
        try:
            instance = pool.ensure(model_id, keep_alive=keep)
        except NoRoom as full:
            raise PoolFullError(str(full), retry_after=5, model_id=model_id) from full
        return before is instance and instance.status.state == InstanceState.READY

    def unload_model(self, model_id: str) -> None:
        """Stop a loaded model's engine now (the default too: a request with no `model`
        loads it again). ModelNotServedError when it is not loaded."""
        if not self.engine.pool.unload(model_id, "unloaded on request (POST /api/unload-model)."):
            raise ModelNotServedError(
                f"{model_id} is not loaded; GET /api/ps lists the loaded models.",
                model_id=model_id,
            )

    def hub_quants(self, repo_id: str, revision: str) -> tuple[RepoQuants, set[str]]:
        """A repo's GGUF quants on the Hub at `revision`, and the ids of the models complete
        here (which of its quants are downloaded). Blocking: the Hub, then a scan."""
        api = make_api(self.settings.hf_endpoint, self.settings.hf_token)
        found = repo_quants(api, repo_id, revision)
        return found, {m.model_id for m in self.store.list() if m.complete}

    def metrics_text(self) -> bytes:
        """TalkTuah's metrics in Prometheus' text format, then the engine's own when it has
        them (vLLM does). Blocking: asks the engine, for at most 2 s."""
        body = self.metrics.render()
        engine = self.engine
        if engine.model is None or not engine.driver.manages_models:
            return body
        try:
            upstream = httpx.get(f"{engine.driver.base_url}/metrics", timeout=2)
        except httpx.HTTPError:
            return body
        if upstream.status_code != 200:
            return body
        name = engine.driver.name.encode()
        return body + b"# Metrics of the engine (" + name + b")\n" + upstream.content

    def start(self) -> None:
        """Start background work: download workers (resuming jobs), the engine. Idempotent."""
        if not self._started:
            self._started = True
            self.downloads.start()
            self.engine.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self.downloads.stop()
            self.engine.stop()
        self.state.close()
