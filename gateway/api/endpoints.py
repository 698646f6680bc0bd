"""GET /instances/{id}/endpoints: how delivery to each of an instance's endpoints goes, its callback
and every subscription: `off` (switched off, or no callback URL), `delivering`, `failing` since
when, or `disabled` by a 410 Gone or a long outage (`schemas/endpoints.schema.json`).

The states are the deliverers' (`gateway/delivery/endpoint_state.py`), read from the delivery-state
topic that every replica follows; a disabling that a change of the instance lifted shows as
`delivering`, as the deliverer treats it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.instances import stored_body
from gateway.api.responses import json_response
from gateway.delivery.endpoint_state import EndpointStates, endpoint_key
from gateway.errors import InstanceValidationError
from gateway.instances import validate_instance
from gateway.instances.model import Instance

ENDPOINT_STATES = web.AppKey("endpoint_states", EndpointStates)


def endpoint_states(states: EndpointStates, instance_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Each endpoint of the stored instance `body` with its state: the callback first (`subscriptionId`
    null), then the subscriptions in their order."""
    try:
        instance: Instance | None = validate_instance(body, instance_id=instance_id).instance
    except InstanceValidationError:
        instance = None  # the deliverer drops the events of an instance it cannot read
    on: dict[str | None, bool] = {None: False}
    revision = ""
    if instance is not None:
        revision = states.revision(instance)
        on[None] = instance.notification.enabled
        on.update((s.id, s.enabled and s.notification.enabled) for s in instance.subscriptions)
    ids: list[str | None] = [None, *(str(s.get("id")) for s in body.get("subscriptions") or [])]
    return [
        {
            "subscriptionId": sid,
            **(
                states.describe(endpoint_key(instance_id, sid), revision) if on.get(sid) else {"state": "off"}
            ),
        }
        for sid in ids
    ]


async def list_endpoints(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    body = dict(stored_body(request.app, instance_id))
    states = endpoint_states(request.app[ENDPOINT_STATES], instance_id, body)
    return json_response({"instanceId": instance_id, "endpoints": states})


def add_endpoint_routes(app: web.Application, states: EndpointStates) -> None:
    app[ENDPOINT_STATES] = states
    app.router.add_get("/instances/{id}/endpoints", list_endpoints)
