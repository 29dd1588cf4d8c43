"""EngineProxy paths that are hard to reach through a whole server."""

from __future__ import annotations

import asyncio

import pytest

from talktuah.engine.base import EngineState
from talktuah.errors import EngineLoadingError, EngineUnavailableError
from talktuah.services import Services

from .support.server import free_port


@pytest.mark.parametrize(
    ("state", "error"),
    [(EngineState.LOADING, EngineLoadingError), (EngineState.READY, EngineUnavailableError)],
)
def test_an_unreachable_engine_is_503_during_a_switch_else_502(
    services: Services, state: EngineState, error: type[Exception]
) -> None:
    """Regression (found by bench/soak.py): a request that passed the readiness check just
    before a switch stopped the engine got 502; it is a switch in progress, so 503."""
    driver = services.engine.driver
    driver.port = free_port()  # type: ignore[attr-defined]  # nothing listens there
    services.engine._state = state
    with pytest.raises(error):
        asyncio.run(services.proxy._send("POST", "/v1/chat/completions", {"model": "x"}))
