"""Admin endpoints under `/_sim/` that drive the simulator from tests, demos and benchmarks.

They need no authentication: the simulator is a test double that listens on loopback. They are
neither logged nor subject to faults or limits. Errors answer 400/404 with a Dataverse-shaped body.

    GET    /_sim/faults                           the faults now in force
    PUT    /_sim/faults                           change some of them: {"fail_next": 3, ...}
    GET    /_sim/tables                           rows, version and tombstones of each table
    POST   /_sim/tables/<set>/records             create or upsert one row {...} or several [{...}]
    PATCH  /_sim/tables/<set>/records/<id>        change columns of a row
    DELETE /_sim/tables/<set>/records/<id>        delete a row (it leaves a tombstone)
    POST   /_sim/tables/<set>/bulk                {"count": N}: add N realistic rows quickly
    GET    /_sim/generator                        whether the change generator runs, and how far
    POST   /_sim/generator                        start it: {"rate": 20, "tables": [...], "create": .3, ...}
    DELETE /_sim/generator                        stop it
    GET    /_sim/requests                         the request log, oldest first
    DELETE /_sim/requests                         clear it
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import TypeAdapter

from gateway.sim._errors import INVALID_ARGUMENT, ServiceError
from gateway.sim._faults import Faults
from gateway.sim._generator import ChangeGenerator, GeneratorSettings
from gateway.sim._request_log import RequestRecord
from gateway.sim._store import DataverseState

MAX_BULK = 1_000_000
_FAULTS = TypeAdapter(Faults)
_GENERATOR = TypeAdapter(GeneratorSettings)
_AdminHandler = Callable[["_Admin", web.Request], Awaitable[web.Response]]


class AdminParts(Protocol):
    """What the admin endpoints drive of a `Simulator`."""

    state: DataverseState
    faults: Faults
    generator: ChangeGenerator
    requests: deque[RequestRecord]


def add_admin_routes(app: web.Application, sim: AdminParts) -> None:
    admin = _Admin(sim)
    records = "/_sim/tables/{entity_set}/records"
    app.router.add_get("/_sim/faults", admin.get_faults)
    app.router.add_put("/_sim/faults", admin.put_faults)
    app.router.add_get("/_sim/tables", admin.get_tables)
    app.router.add_post(records, admin.post_records)
    app.router.add_patch(records + "/{record_id}", admin.patch_record)
    app.router.add_delete(records + "/{record_id}", admin.delete_record)
    app.router.add_post("/_sim/tables/{entity_set}/bulk", admin.post_bulk)
    app.router.add_get("/_sim/generator", admin.get_generator)
    app.router.add_post("/_sim/generator", admin.post_generator)
    app.router.add_delete("/_sim/generator", admin.delete_generator)
    app.router.add_get("/_sim/requests", admin.get_requests)
    app.router.add_delete("/_sim/requests", admin.delete_requests)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _answers_errors(handler: _AdminHandler) -> _AdminHandler:
    """Turn the simulator's errors and bad input (invalid JSON, failed validation) into answers."""

    @functools.wraps(handler)
    async def wrapper(self: _Admin, request: web.Request) -> web.Response:
        try:
            return await handler(self, request)
        except ServiceError as error:
            return web.Response(status=error.status, body=error.body(), content_type="application/json")
        except ValueError as error:  # orjson.JSONDecodeError and pydantic.ValidationError among them
            return _json({"error": {"code": INVALID_ARGUMENT, "message": str(error)}}, status=400)

    return wrapper


class _Admin:
    def __init__(self, sim: AdminParts) -> None:
        self._sim = sim

    async def get_faults(self, request: web.Request) -> web.Response:
        return _json(self._sim.faults.as_json())

    @_answers_errors
    async def put_faults(self, request: web.Request) -> web.Response:
        faults = self._sim.faults
        changes = await _read_object(request)
        unknown = set(changes) - set(faults.as_json())
        if unknown:
            raise ServiceError(400, INVALID_ARGUMENT, f"Unknown faults: {sorted(unknown)}.")
        updated = _FAULTS.validate_python({**faults.as_json(), **changes})
        for field in dataclasses.fields(Faults):
            setattr(faults, field.name, getattr(updated, field.name))
        return _json(faults.as_json())

    async def get_tables(self, request: web.Request) -> web.Response:
        return _json(
            {
                name: {
                    "count": len(table.rows),
                    "version": table.version,
                    "tombstones": len(table.tombstones),
                }
                for name, table in self._sim.state.tables.items()
            }
        )

    @_answers_errors
    async def post_records(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        items = body if isinstance(body, list) else [body]
        if not all(isinstance(item, dict) for item in items):
            raise ServiceError(400, INVALID_ARGUMENT, "Send a JSON object or an array of objects.")
        entity_set = request.match_info["entity_set"]
        return _json({"value": [self._sim.state.upsert(entity_set, item) for item in items]})

    @_answers_errors
    async def patch_record(self, request: web.Request) -> web.Response:
        info = request.match_info
        return _json(
            self._sim.state.update(info["entity_set"], info["record_id"], await _read_object(request))
        )

    @_answers_errors
    async def delete_record(self, request: web.Request) -> web.Response:
        self._sim.state.delete(request.match_info["entity_set"], request.match_info["record_id"])
        return web.Response(status=204)

    @_answers_errors
    async def post_bulk(self, request: web.Request) -> web.Response:
        body = await _read_object(request)
        count, within = body.get("count"), body.get("withinSeconds")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_BULK:
            raise ServiceError(400, INVALID_ARGUMENT, f"count must be an integer from 1 to {MAX_BULK}.")
        if within is not None and (not isinstance(within, int) or isinstance(within, bool) or within < 0):
            raise ServiceError(400, INVALID_ARGUMENT, "withinSeconds must be an integer from 0.")
        table = self._sim.state.table(request.match_info["entity_set"])
        self._sim.state.bulk_load(table.spec.entity_set, count, within_seconds=within)
        return _json({"count": len(table.rows), "version": table.version})

    async def get_generator(self, request: web.Request) -> web.Response:
        generator = self._sim.generator
        settings = generator.settings
        return _json(
            {
                "running": generator.running,
                "changes": generator.changes,
                "settings": None if settings is None else dataclasses.asdict(settings),
            }
        )

    @_answers_errors
    async def post_generator(self, request: web.Request) -> web.Response:
        await self._sim.generator.start(_GENERATOR.validate_python(await _read_object(request)))
        return await self.get_generator(request)

    async def delete_generator(self, request: web.Request) -> web.Response:
        await self._sim.generator.stop()
        return await self.get_generator(request)

    async def get_requests(self, request: web.Request) -> web.Response:
        return _json({"value": [record.as_json() for record in self._sim.requests]})

    async def delete_requests(self, request: web.Request) -> web.Response:
        self._sim.requests.clear()
        return web.Response(status=204)


async def _read_object(request: web.Request) -> dict[str, Any]:
    body = orjson.loads(await request.read())
    if not isinstance(body, dict):
        raise ServiceError(400, INVALID_ARGUMENT, "Send a JSON object.")
    return body
