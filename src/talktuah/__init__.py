"""TalkTuah: a self-hosted LLM server with a model-lifecycle API and an OpenAI-compatible proxy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("talktuah")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
