"""event-gateway: polls CRM APIs for changes, publishes each once to Kafka, delivers signed webhooks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("event-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
