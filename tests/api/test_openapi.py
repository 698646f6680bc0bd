from __future__ import annotations

from typing import Any, cast

import aiohttp

from gateway.api import create_api_app
from gateway.delivery.runner import DeliveryViews
from gateway.health import Health
from gateway.runtime import RunningGateway

_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


def _routed() -> set[tuple[str, str]]:
    """The API's routes; the console's pages (/console/) are not part of the API."""
    # Routing does not touch the dependencies, so none is needed to list the routes.
    unused = cast(Any, None)
    app = create_api_app(
        instance_log=unused,
        admin_token="t",
        health=Health(),
        poller_group=unused,
        delivery=DeliveryViews(unused, unused),
        delivery_history=unused,
        event_tail=unused,
        test_events=unused,
        rates=unused,
        column_check=unused,
    )
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method in _METHODS
        and route.resource is not None
        and not route.resource.canonical.startswith("/console")
    }


async def test_the_openapi_document_describes_exactly_the_routes_the_api_serves(
    gateway: RunningGateway,
) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.api_url}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in _METHODS
    }
    assert described == _routed()
    assert document["openapi"].startswith("3.")
