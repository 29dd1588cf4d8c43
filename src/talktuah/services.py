"""The long-lived objects of one TalkTuah process, built without the web layer.

Tests build `Services` directly around a temp `TALKTUAH_HOME`; the API receives it through
`api.deps`, so routers never construct anything themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Settings
from .downloads.manager import DownloadManager
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
        return cls(
            settings=settings, api_key=api_key, state=state, store=store, downloads=downloads
        )

    def start(self) -> None:
        """Start background work (download workers, resuming unfinished jobs). Idempotent."""
        if not self._started:
            self._started = True
            self.downloads.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self.downloads.stop()
        self.state.close()
