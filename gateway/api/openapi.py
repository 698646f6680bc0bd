"""The admin API described as OpenAPI 3.1, served at /openapi.json; a test keeps it equal to the router."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.api.responses import json_response

_PROBLEMS = {
    "description": "Every problem at once, each with the JSON path it is about",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problems"}}},
}
_UNAUTHORIZED = {"description": "Missing or wrong bearer token", **_PROBLEMS}
_NOT_FOUND = {"description": "No such instance", **_PROBLEMS}
_INSTANCE = {
    "description": (
        "The stored instance: secrets and callback header values masked as ********,"
        " the callback URL as scheme://host[:port]/********"
    ),
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Instance"}}},
}
_INSTANCE_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SUBSCRIPTION_ID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
_SUBSCRIPTION = {
    "description": "The stored subscription, secrets masked as in instances",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscription"}}},
}
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_TIME = {"type": "string", "format": "date-time"}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_BODY_REFUSED = {
    "413": {"description": "The body is larger than 1 MiB", **_PROBLEMS},
    "415": {"description": "The body is not declared application/json", **_PROBLEMS},
}


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    refusals = _BODY_REFUSED if "requestBody" in extra else {}
    return {"summary": summary, "responses": {**responses, **refusals, "401": _UNAUTHORIZED}, **extra}


def _probe(summary: str) -> dict[str, Any]:
    return {"summary": summary, "security": [], "responses": {"200": {"description": "Yes"}}}


def openapi_document() -> dict[str, Any]:
    instance_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstanceBody"}}},
    }
    subscription_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscription"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "event-gateway admin API", "version": __version__},
        "security": [{"bearer": []}],
        "paths": {
            "/instances": {
                "get": _operation("List instances", {"200": {"description": "Every instance", **_JSON}}),
                "post": _operation(
                    "Create an instance from a Cloud Elements instance body",
                    {"201": _INSTANCE, "400": _PROBLEMS},
                    requestBody=instance_body,
                ),
            },
            "/instances/{id}": {
                "parameters": [_INSTANCE_ID],
                "get": _operation("Read an instance", {"200": _INSTANCE, "404": _NOT_FOUND}),
                "patch": _operation(
                    "Change an instance with an RFC 7396 merge patch; its pollers are reconfigured",
                    {"200": _INSTANCE, "400": _PROBLEMS, "404": _NOT_FOUND},
                    requestBody={"required": True, **_JSON},
                ),
                "delete": _operation(
                    "Stop an instance's pollers and forget it",
                    {"204": {"description": "Deleted"}, "404": _NOT_FOUND},
                ),
            },
            "/instances/{id}/status": {
                "parameters": [_INSTANCE_ID],
                "get": _operation(
                    "Each resource's last poll (time, outcome, duration, records fetched, events published), "
                    "checkpoint age and last error, as the replica answering polls it",
                    {"200": {"description": "The figures by resource", **_JSON}, "404": _NOT_FOUND},
                ),
            },
            "/instances/{id}/events/stream": {
                "parameters": [_INSTANCE_ID],
                "get": _operation(
                    "The instance's change events as Server-Sent Events, as they are committed to Kafka "
                    "(read_committed), from when the stream opens: an `event: ready` once it listens, "
                    "then an `event: change` per event (id, time, type, resource, eventType, objectId)",
                    {
                        "200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                        "400": _PROBLEMS,
                        "404": _NOT_FOUND,
                    },
                    parameters=[
                        _query("resource", "Only this resource's events", {"type": "string"}),
                        _query("eventType", "Only this kind", {"enum": ["CREATED", "UPDATED", "DELETED"]}),
                    ],
                ),
            },
            "/instances/{id}/test-event": {
                "parameters": [_INSTANCE_ID],
                "post": _operation(
                    "Deliver one signed test notification to the callback URL now, as a delivery would "
                    "(not through Kafka, never retried), and tell what the receiver answered: "
                    "delivered, status, error, durationMs, webhookId",
                    {
                        "200": {"description": "The receiver's answer", **_JSON},
                        "400": _PROBLEMS,
                        "404": _NOT_FOUND,
                    },
                ),
            },
            "/instances/{id}/deliveries": {
                "parameters": [_INSTANCE_ID],
                "get": _operation(
                    "Deliveries of an instance, newest first: its dead letters (`status=failed`, the "
                    "default), or the delivery history of each webhook (schemas/delivery.schema.json), "
                    "a page at a time",
                    {
                        "200": {"description": "`deadLetters`, or `deliveries` and `nextCursor`", **_JSON},
                        "400": _PROBLEMS,
                    },
                    parameters=[
                        _query(
                            "status",
                            "`failed` (the default) lists the dead letters; `all`, or one or more of "
                            "`delivered`, `retrying`, `failed` joined by commas, lists the history",
                            {"type": "string", "default": "failed"},
                        ),
                        _query(
                            "limit", "At most this many", {"type": "integer", "minimum": 1, "maximum": 1000}
                        ),
                        _query(
                            "since",
                            "Only those decided (dead-lettered) at or after this RFC 3339 time",
                            _TIME,
                        ),
                        _query("until", "Only dead letters written before this RFC 3339 time", _TIME),
                        _query("subscription", "Only this subscription's deliveries", {"type": "string"}),
                        _query(
                            "cursor",
                            "The history's next page: the `nextCursor` of the page before",
                            {"type": "string"},
                        ),
                    ],
                ),
            },
            "/instances/{id}/deliveries/replay": {
                "parameters": [_INSTANCE_ID],
                "post": _operation(
                    "Deliver dead letters again, all or some by `ids`, `since`, `until` and `subscription`",
                    {"200": {"description": "What was replayed", **_JSON}, "400": _PROBLEMS},
                    requestBody={
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "ids": {"type": "array", "items": {"type": "string"}},
                                        "since": _TIME,
                                        "until": _TIME,
                                        "subscription": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                ),
            },
            "/cluster": {
                "get": _operation(
                    "The poller replicas, the state partitions each owns and the instances each polls",
                    {"200": {"description": "The poller group", **_JSON}},
                )
            },
            "/openapi.json": {
                "get": {**_probe("This document"), "responses": {"200": {"description": "OpenAPI"}}}
            },
            "/instances/{id}/subscriptions": {
                "parameters": [_INSTANCE_ID],
                "get": _operation(
                    "List an instance's subscriptions, secrets masked",
                    {"200": {"description": "{subscriptions: [...]}", **_JSON}, "404": _NOT_FOUND},
                ),
                "post": _operation(
                    "Add a subscription (an id is given when the body has none)",
                    {
                        "201": _SUBSCRIPTION,
                        "400": _PROBLEMS,
                        "404": _NOT_FOUND,
                        "409": {"description": "A subscription with that id exists", **_PROBLEMS},
                    },
                    requestBody=subscription_body,
                ),
            },
            "/instances/{id}/endpoints": {
                "parameters": [_INSTANCE_ID],
                "get": _operation(
                    "How delivery goes to the instance's callback and each subscription: off, delivering,"
                    " failing since when, or disabled (by a 410 Gone or a long outage)",
                    {
                        "200": {
                            "description": "{instanceId, endpoints}: schemas/endpoints.schema.json",
                            **_JSON,
                        },
                        "404": _NOT_FOUND,
                    },
                ),
            },
            "/instances/{id}/subscriptions/{sid}/recover": {
                "parameters": [_INSTANCE_ID, _SUBSCRIPTION_ID],
                "post": _operation(
                    "Deliver again the subscription's dead letters written at or after `since` and"
                    " before `until` (default: now), as Svix's recover",
                    {
                        "200": {"description": "{instanceId, subscriptionId, replayed, ids}", **_JSON},
                        "400": _PROBLEMS,
                        "404": _NOT_FOUND,
                    },
                    requestBody={
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["since"],
                                    "properties": {"since": _TIME, "until": _TIME},
                                }
                            }
                        }
                    },
                ),
            },
            "/instances/{id}/subscriptions/{sid}": {
                "parameters": [_INSTANCE_ID, _SUBSCRIPTION_ID],
                "get": _operation("Read a subscription", {"200": _SUBSCRIPTION, "404": _NOT_FOUND}),
                "patch": _operation(
                    "Change a subscription with an RFC 7396 merge patch; masked secrets sent back are kept",
                    {"200": _SUBSCRIPTION, "400": _PROBLEMS, "404": _NOT_FOUND},
                    requestBody={"required": True, **_JSON},
                ),
                "delete": _operation(
                    "Remove a subscription", {"204": {"description": "Deleted"}, "404": _NOT_FOUND}
                ),
            },
            "/healthz": {"get": _probe("The process is alive")},
            "/readyz": {
                "get": {
                    **_probe("Kafka is reachable, assignments are held and the process is not stopping"),
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "InstanceBody": {
                    "type": "object",
                    "description": "The Cloud Elements instance body; see schemas/instance.schema.json",
                    "required": ["element", "configuration", "name"],
                },
                "Subscription": {
                    "type": "object",
                    "description": (
                        "An endpoint beside the instance's callback: id, name, enabled, objectTypes,"
                        " eventTypes, changedColumns, rateLimit, alerts and a configuration of"
                        " event.notification.* keys;"
                        " see schemas/instance.schema.json#/$defs/subscription"
                    ),
                    "required": ["configuration"],
                },
                "Instance": {
                    "type": "object",
                    "required": ["id", "element", "configuration", "name"],
                    "properties": {
                        "id": {"type": "string"},
                        "warnings": {"$ref": "#/components/schemas/Problems"},
                    },
                },
                "Problems": {
                    "type": "object",
                    "required": ["errors"],
                    "properties": {
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["path", "message"],
                                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                            },
                        }
                    },
                },
            },
        },
    }


def add_openapi_route(app: web.Application, document: dict[str, Any]) -> None:
    async def serve(_request: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get("/openapi.json", serve)
