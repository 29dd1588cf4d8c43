"""The web dashboard: static files served at /ui by the API itself."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
