"""The HTTP face of the simulator: the data API, the token endpoint, and the request log.

Requests to `/api/...` pass, in order: request faults (bursts and random 5xx), authentication
(401 with a Bearer challenge), service protection (429), added latency, the handler, and body
faults on a successful answer. Every request except those to `/_sim/` is logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import timedelta
from typing import Any, Protocol

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from gateway.sim._admin import AdminParts, add_admin_routes
from gateway.sim._annotations import annotate
from gateway.sim._auth import Authority, challenge
from gateway.sim._clock import Clock
from gateway.sim._errors import OAuthError, ServiceError, Throttled, Unauthenticated
from gateway.sim._faults import BodyFault
from gateway.sim._limits import ServiceProtection
from gateway.sim._metadata import entity_definitions
from gateway.sim._query import Page, Preferences, Query, deltatoken, parse_query, run_query
from gateway.sim._request_log import RequestRecord
from gateway.sim._store import Table

API_ROOT = "/api/data/v9.2"
_JSON = "application/json; odata.metadata=minimal"


class SimulatorParts(AdminParts, Protocol):
    """What the app reads of a `Simulator`, at each request: tests change these while it serves."""

    clock: Clock
    fault_rng: random.Random
    authority: Authority
    protection: ServiceProtection
    change_tracking_expiry: timedelta


def create_app(sim: SimulatorParts) -> web.Application:
    """The aiohttp application of `sim`, for an AppRunner or aiohttp's test utilities."""
    app = web.Application(middlewares=[_middleware(sim)])
    routes = _DataRoutes(sim)
    app.router.add_get(f"{API_ROOT}/EntityDefinitions", routes.entity_definitions)
    app.router.add_get(f"{API_ROOT}/{{entity_set}}", routes.entity_set)
    app.router.add_post("/adfs/oauth2/token", routes.token)
    add_admin_routes(app, sim)
    return app


def _middleware(sim: SimulatorParts) -> Middleware:
    @web.middleware
    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        principal: str | None = None
        status = 500
        try:
            if request.path.startswith("/api/"):
                response, principal = await _serve_api(sim, request, handler)
            else:
                response = await handler(request)
        except web.HTTPException as error:
            status = error.status
            raise
        else:
            status = response.status
            return response
        finally:
            sim.requests.append(
                RequestRecord(
                    sim.clock(),
                    request.method,
                    request.path,
                    dict(request.query),
                    principal,
                    status,
                    request.headers.get(hdrs.USER_AGENT),
                )
            )

    return serve


async def _serve_api(
    sim: SimulatorParts, request: web.Request, handler: Handler
) -> tuple[web.StreamResponse, str | None]:
    principal: str | None = None
    try:
        fault = sim.faults.take_request_fault(sim.fault_rng, sim.protection.limits)
        if fault is not None:
            raise fault
        principal = sim.authority.authenticate(request.headers.get(hdrs.AUTHORIZATION))
        with sim.protection.admit(principal):
            if sim.faults.latency_ms > 0:
                await asyncio.sleep(sim.faults.latency_ms / 1000)
            return await handler(request), principal
    except ServiceError as error:
        headers = {hdrs.CONTENT_TYPE: _JSON, "OData-Version": "4.0"}
        if isinstance(error, Throttled):
            headers[hdrs.RETRY_AFTER] = str(error.retry_after)
        return web.Response(status=error.status, body=error.body(), headers=headers), principal
    except Unauthenticated:
        origin = str(request.url.origin())
        return web.Response(status=401, headers={hdrs.WWW_AUTHENTICATE: challenge(origin)}), principal


class _DataRoutes:
    def __init__(self, sim: SimulatorParts) -> None:
        self._sim = sim

    async def entity_definitions(self, request: web.Request) -> web.Response:
        """GET `/api/data/v9.2/EntityDefinitions`: a table's definition with its columns."""
        tables = {name: table.spec for name, table in self._sim.state.tables.items()}
        body = orjson.dumps(entity_definitions(tables, request.query))
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: _JSON, "OData-Version": "4.0"})

    async def entity_set(self, request: web.Request) -> web.StreamResponse:
        """GET `/api/data/v9.2/<entity set>`: a page of rows, or of changes under change tracking."""
        sim = self._sim
        table = sim.state.table(request.match_info["entity_set"])
        prefs = Preferences.parse(request.headers.getall("Prefer", ()))
        query = parse_query(
            table, request.query, prefs, now=sim.clock(), token_expiry=sim.change_tracking_expiry
        )
        page = run_query(table, query)
        headers = {hdrs.CONTENT_TYPE: _JSON, "OData-Version": "4.0"}
        if (applied := prefs.applied()) is not None:
            headers["Preference-Applied"] = applied
        if prefs.annotations:
            rows = [annotate(row, table.spec, prefs.annotations, self._name_of) for row in page.rows]
            page = dataclasses.replace(page, rows=rows)
        body = orjson.dumps(self._body(request, table, query, page))
        fault = sim.faults.take_body_fault()
        if fault is BodyFault.MALFORMED:
            return web.Response(body=body[: len(body) // 2], headers=headers)
        if fault is BodyFault.TRUNCATED:
            response = web.StreamResponse(headers=headers)
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.close()
            return response
        return web.Response(body=body, headers=headers)

    def _name_of(self, logical_name: str, row_id: str) -> str | None:
        """The name of a row a lookup points to, when the simulator holds it."""
        for entity_set, table in self._sim.state.tables.items():
            if table.spec.entity_type == logical_name:
                row = self._sim.state.get(entity_set, row_id)
                return None if row is None else row.get("name") or row.get("fullname")
        return None

    def _body(self, request: web.Request, table: Table, query: Query, page: Page) -> dict[str, Any]:
        base = f"{request.url.origin()}{API_ROOT}/$metadata#{table.spec.entity_set}"
        context = base + (f"({','.join(query.select)})" if query.select else "")
        body: dict[str, Any] = {"@odata.context": context + ("/$delta" if query.since is not None else "")}
        if page.delta_version is not None:
            params = {name: value for name, value in request.query.items() if name != "$skiptoken"}
            params["$deltatoken"] = deltatoken(page.delta_version, self._sim.clock())
            body["@odata.deltaLink"] = str(request.url.with_query(params))
        deleted = [
            {"@odata.context": f"{base}/$deletedEntity", "id": record_id, "reason": "deleted"}
            for record_id in page.deleted_ids
        ]
        body["value"] = page.rows + deleted
        if page.skiptoken is not None:
            body["@odata.nextLink"] = str(request.url.update_query({"$skiptoken": page.skiptoken}))
        return body

    async def token(self, request: web.Request) -> web.Response:
        """POST `/adfs/oauth2/token` with a form: the password or client credentials grant."""
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        headers = {hdrs.CACHE_CONTROL: "no-store"}
        try:
            answer = self._sim.authority.issue(fields, base_url=str(request.url.origin()))
        except OAuthError as error:
            return web.Response(
                status=error.status, body=error.body(), content_type="application/json", headers=headers
            )
        return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=headers)
