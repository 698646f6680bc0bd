"""The /instances resource: create, list, read, patch and delete polling instances."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api.responses import RequestProblem, json_response, read_json
from gateway.delivery.ssrf import check_callback_url
from gateway.errors import CallbackRefused, Problem
from gateway.instances import (
    MASK,
    PREVIOUS_SIGNATURE_KEY,
    SECRET_KEYS,
    SIGNATURE_KEY,
    SIGNATURE_ROTATED_AT,
    ValidatedInstance,
    apply_patch,
    mask_body,
    validate_instance,
)
from gateway.kafka.instance_log import Body, InstanceLog
from gateway.settings import IPNetwork

INSTANCE_LOG = web.AppKey("instance_log", InstanceLog)
CALLBACK_NETWORKS: web.AppKey[tuple[IPNetwork, ...]] = web.AppKey("callback_networks")
_CALLBACK_URL_PATH = "$.configuration['event.notification.callback.url']"


def _validated(request: web.Request, body: Any, instance_id: str) -> ValidatedInstance:
    """The shared validator, then the SSRF guard's save-time check of the callback URL."""
    validated = validate_instance(body, instance_id=instance_id)
    callback_url = validated.instance.notification.callback_url
    allowed: tuple[IPNetwork, ...] = request.app[CALLBACK_NETWORKS]
    if callback_url is not None:
        try:
            check_callback_url(callback_url, allowed)
        except CallbackRefused as refused:
            raise RequestProblem(400, [Problem(_CALLBACK_URL_PATH, str(refused))]) from refused
    return validated


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _public(body: Body, warnings: tuple[Problem, ...] = ()) -> dict[str, Any]:
    shown = mask_body(body)
    if warnings:
        shown["warnings"] = [{"path": w.path, "message": w.message} for w in warnings]
    return shown


def _stored(request: web.Request) -> tuple[str, Body]:
    instance_id = request.match_info["id"]
    body = request.app[INSTANCE_LOG].get(instance_id)
    if body is None:
        raise RequestProblem(404, [Problem("$", f"no instance with id {instance_id!r}")])
    return instance_id, body


def _without_echoed_masks(patch: dict[str, Any]) -> dict[str, Any]:
    """A client that sends back a body it read gets masks where secrets were; keep the stored secrets."""
    configuration = patch.get("configuration")
    if not isinstance(configuration, dict):
        return patch
    kept = {k: v for k, v in configuration.items() if not (k in SECRET_KEYS and v == MASK)}
    return {**patch, "configuration": kept}


def _remember_rotated_signature_key(before: Body, after: dict[str, Any]) -> None:
    """Keep the replaced key, so that deliveries carry both signatures while receivers switch over."""
    old_config, new_config = before.get("configuration"), after.get("configuration")
    if not isinstance(old_config, dict) or not isinstance(new_config, dict):
        return
    old_key, new_key = old_config.get(SIGNATURE_KEY), new_config.get(SIGNATURE_KEY)
    if isinstance(old_key, str) and old_key != new_key:
        new_config[PREVIOUS_SIGNATURE_KEY] = old_key
        new_config[SIGNATURE_ROTATED_AT] = time.time()


async def create_instance(request: web.Request) -> web.Response:
    body = await read_json(request)
    instance_id = str(uuid.uuid4())
    validated = _validated(request, body, instance_id)
    now = _now()
    stored = {**body, "id": instance_id, "createdDate": now, "updatedDate": now}
    await request.app[INSTANCE_LOG].put(instance_id, stored)
    return json_response(_public(stored, validated.warnings), status=201)


async def list_instances(request: web.Request) -> web.Response:
    log = request.app[INSTANCE_LOG]
    bodies = [body for body in (log.get(i) for i in log.ids()) if body is not None]
    return json_response([_public(body) for body in bodies])


async def get_instance(request: web.Request) -> web.Response:
    _instance_id, body = _stored(request)
    return json_response(_public(body))


async def patch_instance(request: web.Request) -> web.Response:
    instance_id, body = _stored(request)
    patch = await read_json(request)
    if not isinstance(patch, dict):
        raise RequestProblem(400, [Problem("$", "a patch must be a JSON object (RFC 7396 merge patch)")])
    merged = apply_patch(body, _without_echoed_masks(patch))
    _remember_rotated_signature_key(body, merged)
    merged.update(id=instance_id, createdDate=body.get("createdDate"), updatedDate=_now())
    validated = _validated(request, merged, instance_id)
    await request.app[INSTANCE_LOG].put(instance_id, merged)
    return json_response(_public(merged, validated.warnings))


async def delete_instance(request: web.Request) -> web.Response:
    instance_id, _body = _stored(request)
    await request.app[INSTANCE_LOG].delete(instance_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/instances", create_instance)
    app.router.add_get("/instances", list_instances)
    app.router.add_get("/instances/{id}", get_instance)
    app.router.add_patch("/instances/{id}", patch_instance)
    app.router.add_delete("/instances/{id}", delete_instance)
