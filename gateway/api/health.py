"""Liveness and readiness (`/healthz`, `/readyz`), served on the metrics port by every role and on the
API port too. The conditions are kept in `gateway.health`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.api.responses import json_response
from gateway.health import Health


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
