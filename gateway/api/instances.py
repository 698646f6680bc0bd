"""The /instances resource: create, list, read, patch and delete polling instances."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import ChainMapProxy, web

from gateway.api.columns import COLUMN_CHECK
from gateway.api.responses import RequestProblem, json_response, read_json
from gateway.delivery.ssrf import check_callback_url
from gateway.errors import CallbackRefused, InstanceValidationError, Problem
from gateway.instances import (
    PREVIOUS_SIGNATURE_KEY,
    SIGNATURE_KEY,
    SIGNATURE_ROTATED_AT,
    ValidatedInstance,
    apply_patch,
    mask_body,
    unmasked_patch,
    validate_instance,
)
from gateway.instances.log import Body, InstanceLog
from gateway.settings import IPNetwork

INSTANCE_LOG = web.AppKey("instance_log", InstanceLog)
CALLBACK_NETWORKS: web.AppKey[tuple[IPNetwork, ...]] = web.AppKey("callback_networks")
_CALLBACK_KEY = "event.notification.callback.url"
_POLLER = "event.poller.configuration"
_CALLBACK_URL_PATH = f"$.configuration['{_CALLBACK_KEY}']"


def _validated(body: Any, instance_id: str, allowed: tuple[IPNetwork, ...]) -> ValidatedInstance:
    """The shared validator, then the SSRF guard's save-time check of the callback URL; a body with
    other problems gets the guard's too, so that every problem is told at once."""
    try:
        validated = validate_instance(body, instance_id=instance_id)
    except InstanceValidationError as invalid:
        also = _refused_callback(_raw_callback_url(body), allowed)
        if also is None or any(p.path == _CALLBACK_URL_PATH for p in invalid.problems):
            raise
        raise InstanceValidationError([*invalid.problems, also]) from invalid
    refused = [
        problem
        for url, path in _callback_urls(validated)
        if (problem := _refused_callback(url, allowed, path)) is not None
    ]
    if refused:
        raise RequestProblem(400, refused)
    return validated


def _callback_urls(validated: ValidatedInstance) -> list[tuple[str | None, str]]:
    """Every callback URL of an instance, its own and its subscriptions', with its JSON path."""
    instance = validated.instance
    urls = [(instance.notification.callback_url, _CALLBACK_URL_PATH)]
    urls.extend(
        (subscription.notification.callback_url, f"$.subscriptions[{index}].configuration['{_CALLBACK_KEY}']")
        for index, subscription in enumerate(instance.subscriptions)
    )
    return urls


def _raw_callback_url(body: Any) -> str | None:
    configuration = body.get("configuration") if isinstance(body, dict) else None
    url = configuration.get(_CALLBACK_KEY) if isinstance(configuration, dict) else None
    # A value that is no URL at all (a placeholder) is the validator's warning, not the guard's refusal.
    return url if isinstance(url, str) and "://" in url else None


def _refused_callback(
    callback_url: str | None, allowed: tuple[IPNetwork, ...], path: str = _CALLBACK_URL_PATH
) -> Problem | None:
    if callback_url is None:
        return None
    try:
        check_callback_url(callback_url, allowed)
    except CallbackRefused as refused:
        return Problem(path, str(refused))
    return None


def poller_configuration(body: Mapping[str, Any]) -> dict[str, Any]:
    """The resources of a stored body, whose poller configuration may be a JSON string."""
    configuration = body.get("configuration")
    poller = configuration.get(_POLLER) if isinstance(configuration, Mapping) else None
    if isinstance(poller, str):
        try:
            poller = json.loads(poller)
        except ValueError:
            return {}
    return dict(poller) if isinstance(poller, Mapping) else {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _public(body: Body, warnings: tuple[Problem, ...] = ()) -> dict[str, Any]:
    shown = mask_body(body)
    if warnings:
        shown["warnings"] = [{"path": w.path, "message": w.message} for w in warnings]
    return shown


def stored_body(app: web.Application | ChainMapProxy, instance_id: str) -> Body:
    """The stored body of an instance (secrets in the clear), or a 404 problem."""
    body = app[INSTANCE_LOG].get(instance_id)
    if body is None:
        raise RequestProblem(404, [Problem("$", f"no instance with id {instance_id!r}")])
    return body


def _remember_rotated_signature_key(before: Body, after: dict[str, Any]) -> None:
    """Keep the replaced key, so that deliveries carry both signatures while receivers switch over."""
    old_config, new_config = before.get("configuration"), after.get("configuration")
    if not isinstance(old_config, dict) or not isinstance(new_config, dict):
        return
    old_key, new_key = old_config.get(SIGNATURE_KEY), new_config.get(SIGNATURE_KEY)
    if isinstance(old_key, str) and old_key != new_key:
        new_config[PREVIOUS_SIGNATURE_KEY] = old_key
        new_config[SIGNATURE_ROTATED_AT] = time.time()


async def store_new(app: web.Application | ChainMapProxy, body: Any) -> tuple[Body, tuple[Problem, ...]]:
    """Validate a Cloud Elements instance body and store it under a new id: POST /instances and the
    console's form both come here. Returns the stored body and the validator's warnings."""
    instance_id = str(uuid.uuid4())
    validated = _validated(body, instance_id, app[CALLBACK_NETWORKS])
    warnings = validated.warnings + await app[COLUMN_CHECK].warnings(validated.instance)
    now = _now()
    stored = {**body, "id": instance_id, "createdDate": now, "updatedDate": now}
    await app[INSTANCE_LOG].put(instance_id, stored)
    return stored, warnings


async def store_patch(
    app: web.Application | ChainMapProxy, instance_id: str, patch: Any
) -> tuple[Body, tuple[Problem, ...]]:
    """Merge a patch (RFC 7396) into a stored instance, validate and store the result: PATCH
    /instances/{id} and the console's edit form both come here. A secret sent back as its mask is kept."""
    body = stored_body(app, instance_id)
    if not isinstance(patch, dict):
        raise RequestProblem(400, [Problem("$", "a patch must be a JSON object (RFC 7396 merge patch)")])
    merged = apply_patch(body, unmasked_patch(patch, body))
    _remember_rotated_signature_key(body, merged)
    merged.update(id=instance_id, createdDate=body.get("createdDate"), updatedDate=_now())
    validated = _validated(merged, instance_id, app[CALLBACK_NETWORKS])
    warnings = validated.warnings + await app[COLUMN_CHECK].warnings(validated.instance)
    await app[INSTANCE_LOG].put(instance_id, merged)
    return merged, warnings


async def store_replace(
    app: web.Application | ChainMapProxy, instance_id: str, body: Any
) -> tuple[Body, tuple[Problem, ...]]:
    """Replace a stored instance's body with a whole new one, validated: the console's edit form,
    which starts from the stored body, so nothing it does not show is lost."""
    before = stored_body(app, instance_id)
    if not isinstance(body, dict):
        raise RequestProblem(400, [Problem("$", f"must be an object, got {type(body).__name__}")])
    replaced = {**body, "id": instance_id, "createdDate": before.get("createdDate"), "updatedDate": _now()}
    _remember_rotated_signature_key(before, replaced)
    validated = _validated(replaced, instance_id, app[CALLBACK_NETWORKS])
    warnings = validated.warnings + await app[COLUMN_CHECK].warnings(validated.instance)
    await app[INSTANCE_LOG].put(instance_id, replaced)
    return replaced, warnings


async def create_instance(request: web.Request) -> web.Response:
    stored, warnings = await store_new(request.app, await read_json(request))
    return json_response(_public(stored, warnings), status=201)


async def list_instances(request: web.Request) -> web.Response:
    log = request.app[INSTANCE_LOG]
    bodies = [body for body in (log.get(i) for i in log.ids()) if body is not None]
    return json_response([_public(body) for body in bodies])


async def get_instance(request: web.Request) -> web.Response:
    return json_response(_public(stored_body(request.app, request.match_info["id"])))


async def patch_instance(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    stored_body(request.app, instance_id)  # a missing instance is a 404 before a bad body is a 400
    merged, warnings = await store_patch(request.app, instance_id, await read_json(request))
    return json_response(_public(merged, warnings))


async def delete_instance(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    stored_body(request.app, instance_id)
    await request.app[INSTANCE_LOG].delete(instance_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/instances", create_instance)
    app.router.add_get("/instances", list_instances)
    app.router.add_get("/instances/{id}", get_instance)
    app.router.add_patch("/instances/{id}", patch_instance)
    app.router.add_delete("/instances/{id}", delete_instance)
