"""GET /instances/{id}/status: each resource's last poll, as this process's pollers saw it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api.instances import poller_configuration, stored_body
from gateway.api.responses import json_response
from gateway.polling.status import PollReport, PollStatus, ResourceStatus

POLL_STATUS: web.AppKey[PollStatus | None] = web.AppKey("poll_status")


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _failure(report: PollReport | None) -> dict[str, Any] | None:
    return None if report is None else {"at": _time(report.at), "message": report.error}


def _resource(status: ResourceStatus | None, *, polled_here: bool, now: float) -> dict[str, Any]:
    if status is None or not polled_here:
        return {"outcome": "never" if polled_here else "unknown"}
    last = status.last
    return {
        "outcome": "ok" if last.ok else "failed",
        "lastPollAt": _time(last.at),
        "durationSeconds": round(last.duration_seconds, 4),
        "recordsFetched": last.fetched,
        "eventsPublished": last.published,
        "checkpointAgeSeconds": None if status.committed_at is None else round(now - status.committed_at, 1),
        "lastError": _failure(status.last_failure),
    }


def instance_status(
    instance_id: str, body: Mapping[str, Any], book: PollStatus | None, *, now: float
) -> dict[str, Any]:
    """The figures of each configured resource. `never`: this process polls it but has not yet;
    `unknown`: this process does not poll it (another replica does, or nobody: events are off)."""
    statuses = {} if book is None else book.of(instance_id)
    polled = frozenset() if book is None else book.polls(instance_id)
    return {
        "id": instance_id,
        "polledHere": bool(polled),
        "resources": {
            name: _resource(statuses.get(name), polled_here=name in polled, now=now)
            for name in poller_configuration(body)
        },
    }


async def get_status(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    body = stored_body(request.app, instance_id)
    return json_response(instance_status(instance_id, body, request.app[POLL_STATUS], now=time.time()))


def add_status_routes(app: web.Application, book: PollStatus | None) -> None:
    app[POLL_STATUS] = book
    app.router.add_get("/instances/{id}/status", get_status)
