"""Liveness and readiness, served on the metrics port by every role and on the API port too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.api.responses import json_response


@dataclass(slots=True)
class Health:
    """Readiness conditions, each read from the component that owns it when a probe asks."""

    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    shutting_down: bool = False

    def watch(self, name: str, check: Callable[[], bool]) -> None:
        self.checks[name] = check

    def set(self, name: str, ok: bool) -> None:
        """A condition that changes only when its owner says so."""
        self.checks[name] = lambda: ok

    def conditions(self) -> dict[str, bool]:
        return {name: check() for name, check in self.checks.items()}

    @property
    def ready(self) -> bool:
        return not self.shutting_down and all(self.conditions().values())


def add_health_routes(app: web.Application, health: Health) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        payload = {
            "ready": health.ready,
            "shuttingDown": health.shutting_down,
            "conditions": health.conditions(),
        }
        return json_response(payload, status=200 if health.ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def create_metrics_app(*, registry: CollectorRegistry, health: Health) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    add_health_routes(app, health)
    return app
