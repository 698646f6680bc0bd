"""Deliveries in the admin API: their history, the dead letters, and replay (auth is the app's
middleware).

- `GET /instances/{id}/deliveries?status=failed&limit=N&since=T&until=U&subscription=S`
  (status=failed is the default) lists an instance's dead letters, newest first, each with its
  reason, attempts and history, and the event without its `data`: what a replay can send again.
- `GET /instances/{id}/deliveries?status=S&limit=N&since=T&subscription=S&cursor=C`, with `S` one
  or more of `delivered`, `retrying`, `failed` joined by commas, or `all`, lists the delivery
  history (`delivery/history.py`): each webhook's status, attempts and next retry, newest first, a
  page at a time; `nextCursor` fetches the next page and is null on the last.
- `POST /instances/{id}/deliveries/replay` with `{"ids": [...], "since": T, "until": U,
  "subscription": S}` (all optional) sends them again: each goes back through delivery with a fresh
  attempt count and leaves the dead letters. `POST /instances/{id}/subscriptions/{sid}/recover`
  (`subscriptions.py`) is the same for one subscription, as Svix's `recover {since, until}`.

`T` and `U` are RFC 3339 times: only dead letters written at or after `T`, and before `U`;
`subscription` keeps one subscription's only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.api.instances import stored_body
from gateway.api.responses import RequestProblem, json_response, read_json
from gateway.api.subscriptions import subscription_bodies, subscription_index
from gateway.delivery.dead_letters import DeadLetters
from gateway.delivery.history import STATUSES, DeliveryHistory, Status
from gateway.errors import Problem

DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
DELIVERY_HISTORY = web.AppKey("delivery_history", DeliveryHistory)
_DEFAULT_LIMIT = 100
_MAX_LIMIT = 1000


def _bad(path: str, message: str) -> RequestProblem:
    return RequestProblem(400, [Problem(path, message)])


def moment_ms(value: Any, path: str) -> int | None:
    """An RFC 3339 time with a zone as epoch milliseconds; None when absent; 400 naming `path`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return int(moment.timestamp() * 1000)
    raise _bad(path, "must be an RFC 3339 time with a zone, such as 2026-01-31T12:00:00Z")


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", str(_DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise _bad("$.limit", f"must be an integer from 1 to {_MAX_LIMIT}")
    return int(raw)


async def _list(request: web.Request, instance_id: str) -> web.Response:
    query = request.query
    letters = await request.app[DEAD_LETTERS].find(
        instance_id,
        limit=_limit(query),
        since_ms=moment_ms(query.get("since"), "$.since"),
        until_ms=moment_ms(query.get("until"), "$.until"),
        subscription_id=query.get("subscription"),
    )
    shown = [letter.to_json(with_data=False) for letter in letters]
    return json_response({"instanceId": instance_id, "count": len(shown), "deadLetters": shown})


async def _replay(request: web.Request, instance_id: str, body: Mapping[str, Any]) -> web.Response:
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise _bad("$.ids", "must be an array of event ids")
    subscription = body.get("subscription")
    if subscription is not None and not isinstance(subscription, str):
        raise _bad("$.subscription", "must be a subscription's id")
    wanted = None if ids is None else set(ids)
    replayed = await request.app[DEAD_LETTERS].replay(
        instance_id,
        since_ms=moment_ms(body.get("since"), "$.since"),
        until_ms=moment_ms(body.get("until"), "$.until"),
        event_ids=wanted,
        subscription_id=subscription,
    )
    done = [letter.event_id for letter in replayed]
    payload: dict[str, Any] = {"instanceId": instance_id, "replayed": len(done), "ids": done}
    if wanted is not None:
        payload["notFound"] = sorted(wanted - set(done))
    return json_response(payload)


async def recover_subscription(request: web.Request) -> web.Response:
    """Svix's `recover`: send again what one subscription failed to deliver in [since, until)."""
    instance_id, subscription_id = request.match_info["id"], request.match_info["sid"]
    subscription_index(subscription_bodies(dict(stored_body(request.app, instance_id))), subscription_id)
    body = await _body(request)
    since = moment_ms(body.get("since"), "$.since")
    if since is None:
        raise _bad("$.since", "is required: an RFC 3339 time, such as 2026-01-31T12:00:00Z")
    until = moment_ms(body.get("until"), "$.until")
    if until is not None and until <= since:
        raise _bad("$.until", "must be later than since")
    replayed = await request.app[DEAD_LETTERS].replay(
        instance_id, since_ms=since, until_ms=until, subscription_id=subscription_id
    )
    done = [letter.event_id for letter in replayed]
    return json_response(
        {"instanceId": instance_id, "subscriptionId": subscription_id, "replayed": len(done), "ids": done}
    )


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _bad("$", "must be a JSON object")
    return body


def _statuses(raw: str) -> frozenset[Status]:
    if raw == "all":
        return frozenset(STATUSES)
    chosen = raw.split(",")
    unknown = [name for name in chosen if name not in STATUSES]
    if unknown:
        raise _bad("$.status", f"must be all, or one or more of {', '.join(STATUSES)} joined by commas")
    return frozenset(name for name in STATUSES if name in chosen)


async def _history(request: web.Request, instance_id: str) -> web.Response:
    query = request.query
    cursor = query.get("cursor")
    try:
        page = await request.app[DELIVERY_HISTORY].page(
            instance_id,
            limit=_limit(query),
            statuses=_statuses(query["status"]),
            since_ms=moment_ms(query.get("since"), "$.since"),
            subscription_id=query.get("subscription"),
            cursor=cursor,
        )
    except ValueError as exc:
        raise _bad("$.cursor", str(exc)) from exc
    shown = [record.to_json() for record in page.records]
    return json_response(
        {"instanceId": instance_id, "count": len(shown), "deliveries": shown, "nextCursor": page.next_cursor}
    )


async def list_instance_deliveries(request: web.Request) -> web.Response:
    if request.query.get("status", "failed") == "failed":
        return await _list(request, request.match_info["id"])
    return await _history(request, request.match_info["id"])


async def replay_instance_deliveries(request: web.Request) -> web.Response:
    return await _replay(request, request.match_info["id"], await _body(request))


def add_delivery_routes(app: web.Application, dead_letters: DeadLetters, history: DeliveryHistory) -> None:
    """Register the routes; errors render through the app's `problems_middleware`."""
    app[DEAD_LETTERS] = dead_letters
    app[DELIVERY_HISTORY] = history
    app.router.add_get("/instances/{id}/deliveries", list_instance_deliveries)
    app.router.add_post("/instances/{id}/deliveries/replay", replay_instance_deliveries)
    app.router.add_post("/instances/{id}/subscriptions/{sid}/recover", recover_subscription)
