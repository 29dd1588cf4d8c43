"""The long-lived objects of one TalkTuah process, built without the web layer.

Tests build `Services` directly around a temp `TALKTUAH_HOME`; the API receives it through
`api.deps`, so routers never construct anything themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings
from .security import ApiKey
from .state import StateDB
from .store import ModelStore


@dataclass
class Services:
    settings: Settings
    api_key: ApiKey
    state: StateDB
    store: ModelStore

    @classmethod
    def build(cls, settings: Settings, api_key: ApiKey) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        state = StateDB(settings.db_path)
        state.seed_default_model(settings.default_model)
        store = ModelStore(settings.models_dir, state)
        store.ensure_dir()
        return cls(settings=settings, api_key=api_key, state=state, store=store)

    def close(self) -> None:
        self.state.close()
