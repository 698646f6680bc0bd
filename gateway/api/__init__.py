"""The admin API (instances, cluster view) and the health and metrics endpoints."""

from __future__ import annotations

from gateway.api.app import create_api_app
from gateway.api.health import create_metrics_app

__all__ = ["create_api_app", "create_metrics_app"]
