"""The long-lived objects of one TalkTuah process, built without the web layer.

Tests build `Services` directly around a temp `TALKTUAH_HOME`; the API receives it through
`api.deps`, so routers never construct anything themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from .config import Settings
from .downloads.jobs import JobStatus
from .downloads.manager import DownloadManager
from .engine.base import EngineState
from .engine.drivers import make_driver
from .engine.supervisor import EngineSupervisor, SwitchOutcome
from .keys import KeyStore
from .logs import remember_secret
from .metrics import Metrics, gauge
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
    def build(cls, settings: Settings, api_key: ApiKey) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        state = StateDB(settings.db_path)
        state.seed_default_model(settings.default_model)
        store = ModelStore(settings.models_dir, state, engine=settings.engine)
        store.ensure_dir()
        downloads = DownloadManager(settings, state, store)
        metrics = Metrics()
        engine = EngineSupervisor(settings, state, store, make_driver(settings), metrics)
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
