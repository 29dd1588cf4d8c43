"""The long-lived objects of one TalkTuah process, built without the web layer.

Tests build `Services` directly around a temp `TALKTUAH_HOME`; the API receives it through
`api.deps`, so routers never construct anything themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Settings
from .downloads.manager import DownloadManager
from .engine.drivers import make_driver
from .engine.supervisor import EngineSupervisor
from .keys import KeyStore
from .proxy import EngineProxy
from .ratelimit import RateLimits
from .security import ApiKey
from .state import StateDB
from .store import ModelStore


@dataclass
class Services:
    settings: Settings
    api_key: ApiKey
    state: StateDB
    store: ModelStore
    downloads: DownloadManager
    engine: EngineSupervisor
    proxy: EngineProxy
    keys: KeyStore
    limits: RateLimits
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, api_key: ApiKey) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        state = StateDB(settings.db_path)
        state.seed_default_model(settings.default_model)
        store = ModelStore(settings.models_dir, state)
        store.ensure_dir()
        downloads = DownloadManager(settings, state, store)
        engine = EngineSupervisor(settings, state, store, make_driver(settings))
        services = cls(
            settings=settings,
            api_key=api_key,
            state=state,
            store=store,
            downloads=downloads,
            engine=engine,
            proxy=EngineProxy(settings, engine),
            keys=KeyStore(state, api_key),
            limits=RateLimits(settings),
        )
        downloads.on_activate = services.activate
        return services

    def activate(self, model_id: str) -> None:
        """Make `model_id` the served model: a switch when TalkTuah runs the engine."""
        if self.engine.driver.manages_models:
            self.engine.switch(model_id)
        else:
            self.state.active_model = model_id

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
