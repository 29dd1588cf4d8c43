"""The HTTP API: `create_app` wires routers, auth and error mapping around `Services`."""

from .app import create_app

__all__ = ["create_app"]
