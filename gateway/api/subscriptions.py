"""/instances/{id}/subscriptions: the endpoints beside an instance's callback, each with its filter.

Subscriptions live in the instance's body (`subscriptions`), so that they are stored, encrypted,
versioned and read by every replica with it; these routes edit that list and save the whole body
through the same validator. A problem of the subscription being written is told at its path inside
it (`$.configuration[...]`); one elsewhere in the instance keeps its instance path.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway.api.instances import store_replace, stored_body
from gateway.api.responses import RequestProblem, json_response, read_json
from gateway.errors import InstanceValidationError, Problem
from gateway.instances import apply_patch, mask_body, unmasked_patch


def subscription_bodies(body: dict[str, Any]) -> list[dict[str, Any]]:
    listed = body.get("subscriptions", [])
    return [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []


def subscription_index(subscriptions: list[dict[str, Any]], subscription_id: str) -> int:
    for index, subscription in enumerate(subscriptions):
        if subscription.get("id") == subscription_id:
            return index
    raise RequestProblem(404, [Problem("$", f"no subscription with id {subscription_id!r}")])


async def _save(
    app: web.Application | ChainMapProxy,
    instance_id: str,
    subscriptions: list[dict[str, Any]],
    index: int | None,
) -> list[dict[str, Any]]:
    """Store the instance with `subscriptions`; problems of the one at `index` are told at its paths."""
    body = {**stored_body(app, instance_id), "subscriptions": subscriptions}
    try:
        saved, _warnings = await store_replace(app, instance_id, body)
    except (InstanceValidationError, RequestProblem) as invalid:
        problems = invalid.problems
        status = invalid.status if isinstance(invalid, RequestProblem) else 400
        if index is not None:
            problems = tuple(_relative(p, f"$.subscriptions[{index}]") for p in problems)
        raise RequestProblem(status, problems) from invalid
    return subscription_bodies(dict(saved))


def _relative(problem: Problem, prefix: str) -> Problem:
    if problem.path == prefix or problem.path.startswith((f"{prefix}.", f"{prefix}[")):
        return Problem("$" + problem.path[len(prefix) :], problem.message)
    return problem


async def list_subscriptions(request: web.Request) -> web.Response:
    body = stored_body(request.app, request.match_info["id"])
    return json_response({"subscriptions": [mask_body(s) for s in subscription_bodies(dict(body))]})


async def add_subscription(
    app: web.Application | ChainMapProxy, instance_id: str, given: dict[str, Any]
) -> dict[str, Any]:
    """Store `given` as the instance's last subscription, with an id made when it has none; the stored
    subscription. Its problems are told at paths inside it; an id in use already is a 409."""
    subscriptions = subscription_bodies(dict(stored_body(app, instance_id)))
    subscription = {"id": uuid.uuid4().hex[:12], **given}
    if any(s.get("id") == subscription["id"] for s in subscriptions):
        raise RequestProblem(409, [Problem("$.id", f"a subscription {subscription['id']!r} exists already")])
    saved = await _save(app, instance_id, [*subscriptions, subscription], len(subscriptions))
    return saved[-1]


async def remove_subscription(
    app: web.Application | ChainMapProxy, instance_id: str, subscription_id: str
) -> None:
    subscriptions = subscription_bodies(dict(stored_body(app, instance_id)))
    del subscriptions[subscription_index(subscriptions, subscription_id)]
    await _save(app, instance_id, subscriptions, None)


async def create_subscription(request: web.Request) -> web.Response:
    given = await read_json(request)
    if not isinstance(given, dict):
        raise RequestProblem(400, [Problem("$", "a subscription must be a JSON object")])
    saved = await add_subscription(request.app, request.match_info["id"], given)
    return json_response(mask_body(saved), status=201)


async def get_subscription(request: web.Request) -> web.Response:
    subscriptions = subscription_bodies(dict(stored_body(request.app, request.match_info["id"])))
    return json_response(
        mask_body(subscriptions[subscription_index(subscriptions, request.match_info["sid"])])
    )


async def patch_subscription(request: web.Request) -> web.Response:
    """A JSON merge patch (RFC 7396) of one subscription; secrets sent back as their masks are kept."""
    instance_id, subscription_id = request.match_info["id"], request.match_info["sid"]
    subscriptions = subscription_bodies(dict(stored_body(request.app, instance_id)))
    index = subscription_index(subscriptions, subscription_id)
    patch = await read_json(request)
    if not isinstance(patch, dict):
        raise RequestProblem(400, [Problem("$", "a patch must be a JSON object (RFC 7396 merge patch)")])
    stored = subscriptions[index]
    subscriptions[index] = {**apply_patch(stored, unmasked_patch(patch, stored)), "id": subscription_id}
    saved = await _save(request.app, instance_id, subscriptions, index)
    return json_response(mask_body(saved[index]))


async def delete_subscription(request: web.Request) -> web.Response:
    await remove_subscription(request.app, request.match_info["id"], request.match_info["sid"])
    return web.Response(status=204)


def add_subscription_routes(app: web.Application) -> None:
    app.router.add_get("/instances/{id}/subscriptions", list_subscriptions)
    app.router.add_post("/instances/{id}/subscriptions", create_subscription)
    app.router.add_get("/instances/{id}/subscriptions/{sid}", get_subscription)
    app.router.add_patch("/instances/{id}/subscriptions/{sid}", patch_subscription)
    app.router.add_delete("/instances/{id}/subscriptions/{sid}", delete_subscription)
