"""The console's routes under /console/: sign-in and sign-out, the instances list, the instance form.

Every response carries a Content-Security-Policy that allows only the console's own files (no inline
script or style), and may not be framed. Every page but sign-in needs a session; every POST must come
from a page of this origin, and a signed-in one must carry its session's CSRF token.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from gateway.api.cluster import cluster_view
from gateway.api.console._dead_letters import dead_letters_page
from gateway.api.console._deliveries import deliveries_page
from gateway.api.console._form import FormState, form_of, new_form, place_problems, read_form
from gateway.api.console._overview import overview_page
from gateway.api.console._pages import (
    error_page,
    form_page,
    instance_page,
    instances_page,
    sign_in_page,
)
from gateway.api.console._session import COOKIE, LIFETIME_SECONDS, Session, SessionSigner
from gateway.api.console._subscriptions import (
    new_subscription_form,
    place_subscription_problems,
    read_subscription_form,
    subscriptions_page,
)
from gateway.api.deliveries import DEAD_LETTERS, DELIVERY_HISTORY
from gateway.api.endpoints import ENDPOINT_STATES, endpoint_states
from gateway.api.instances import INSTANCE_LOG, store_new, store_replace, stored_body
from gateway.api.rates import RATES
from gateway.api.responses import RequestProblem
from gateway.api.status import POLL_STATUS, instance_status
from gateway.api.stream import stream_events
from gateway.api.subscriptions import (
    add_subscription,
    remove_subscription,
    subscription_bodies,
    subscription_index,
)
from gateway.api.test_event import send_test_event
from gateway.delivery.history import STATUSES, Status
from gateway.errors import InstanceValidationError, Problem, ProblemsError, PublishError
from gateway.instances import mask_body, validate_instance

SIGNER = web.AppKey("console_signer", SessionSigner)
_SESSION = web.RequestKey("console_session", Session)
_STATIC = Path(str(files("gateway.api.console") / "static"))
_DEAD_LETTERS_SHOWN = 200
_DELIVERIES_SHOWN = 50
_DELIVERY_FILTERS: dict[str, frozenset[Status]] = {
    "all": frozenset(STATUSES),
    **{status: frozenset([status]) for status in STATUSES},
}
_OPEN = frozenset({"/console/sign-in"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send `Origin: null` with the console's own form posts.
    "Referrer-Policy": "same-origin",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response of the console, error pages, files and event streams included."""
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "no-store"


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin with every POST; one from another site is refused before anything else.
    Only the host is compared: behind a proxy that ends TLS, the scheme seen here is not the browser's."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        return URL(origin).authority == request.host
    except ValueError:
        return False


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The console's refusals as pages, before the API's middleware would make JSON problems of them."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        signed_in = _SESSION in request
        text = error.text if error.text and not error.text.startswith(f"{error.status}:") else error.reason
        page = error_page(error.status, error.reason, text, signed_in=signed_in)
        return _html(page, status=error.status)


@web.middleware
async def _sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/console/static/"):
        return await handler(request)
    if request.method == "POST" and not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin form posts are refused")
    if request.path in _OPEN:
        return await handler(request)
    signer = request.app[SIGNER]
    session = signer.verify(request.cookies.get(COOKIE))
    if session is None:
        raise web.HTTPSeeOther("/console/sign-in")
    if request.method == "POST":
        form = await request.post()
        if not signer.csrf_matches(session, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong; reload the page")
    request[_SESSION] = session
    return await handler(request)


def _html(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _csrf(request: web.Request) -> str:
    session = request[_SESSION]
    return request.app[SIGNER].csrf_token(session)


async def _home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/instances")


async def _sign_in_form(request: web.Request) -> web.Response:
    return _html(sign_in_page())


async def _sign_in(request: web.Request) -> web.Response:
    form = await request.post()
    signer = request.app[SIGNER]
    if not signer.token_matches(str(form.get("token", ""))):
        return _html(sign_in_page(problem="That is not the admin token."), status=401)
    response = web.HTTPSeeOther("/console/instances")
    response.set_cookie(
        COOKIE,
        signer.issue(),
        max_age=LIFETIME_SECONDS,
        path="/console/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise response


async def _sign_out(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/console/sign-in")
    response.del_cookie(COOKIE, path="/console/")
    raise response


async def _instances(request: web.Request) -> web.Response:
    log = request.config_dict[INSTANCE_LOG]
    bodies = [body for body in (log.get(i) for i in log.ids()) if body is not None]
    bodies.sort(key=lambda body: str(body.get("name", "")).lower())
    return _html(instances_page(bodies, request.config_dict[POLL_STATUS], csrf=_csrf(request)))


async def _overview(request: web.Request) -> web.Response:
    series = request.config_dict[RATES].series()
    try:
        cluster = await cluster_view(request.config_dict)
    except PublishError as unread:
        page = overview_page(series, None, csrf=_csrf(request), cluster_problem=str(unread))
    else:
        page = overview_page(series, cluster, csrf=_csrf(request))
    return _html(page)


async def _new_form(request: web.Request) -> web.Response:
    return _html(_form(request, new_form(), None))


def _form(request: web.Request, state: Any, instance_id: str | None) -> str:
    if instance_id is None:
        return form_page(
            state,
            title="New instance",
            action="/console/instances/new",
            submit="Create Instance",
            csrf=_csrf(request),
        )
    return form_page(
        state,
        title=f"Edit {state.values.get('name') or 'instance'}",
        action=f"/console/instances/{instance_id}/edit",
        submit="Save Instance",
        csrf=_csrf(request),
    )


async def _save(request: web.Request, instance_id: str | None) -> web.Response:
    """Validate the posted form as the API would its body; store it, or show it again with each
    problem beside its field."""
    before = None if instance_id is None else stored_body(request.config_dict, instance_id)
    state, body = read_form(await request.post(), before=before)
    if not state.problems:
        try:
            if instance_id is None:
                await store_new(request.config_dict, body)
            else:
                await store_replace(request.config_dict, instance_id, body)
        except (InstanceValidationError, RequestProblem) as invalid:
            place_problems(state, invalid.problems)
        else:
            raise web.HTTPSeeOther("/console/instances")
    else:
        place_problems(state, _validator_problems(body))
    return _html(_form(request, state, instance_id), status=400)


def _validator_problems(body: Any) -> tuple[Problem, ...]:
    """What the validator says of the rest of a form that already has problems of its own."""
    try:
        validate_instance(body)
    except ProblemsError as invalid:
        return invalid.problems
    return ()


async def _create(request: web.Request) -> web.Response:
    return await _save(request, None)


async def _detail(request: web.Request) -> web.Response:
    return _instance_page(request, test_answer=None)


def _instance_page(request: web.Request, *, test_answer: dict[str, Any] | None) -> web.Response:
    instance_id = request.match_info["id"]
    body = _found(request, instance_id)
    status = instance_status(instance_id, body, request.config_dict[POLL_STATUS], now=time.time())
    return _html(instance_page(body, status, csrf=_csrf(request), test_answer=test_answer))


async def _test_event(request: web.Request) -> web.Response:
    """Send a test notification and show the instance's page with the receiver's answer."""
    _found(request, request.match_info["id"])
    try:
        answer = await send_test_event(request.config_dict, request.match_info["id"])
    except RequestProblem as problem:
        answer = {"delivered": False, "error": "; ".join(str(p) for p in problem.problems)}
    return _instance_page(request, test_answer=answer)


async def _events(request: web.Request) -> web.StreamResponse:
    instance_id = request.match_info["id"]
    _found(request, instance_id)
    try:
        return await stream_events(request, instance_id)
    except RequestProblem as bad:
        raise web.HTTPBadRequest(text=str(bad)) from bad


async def _dead_letters(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    body = _found(request, instance_id)
    letters = await request.config_dict[DEAD_LETTERS].find(instance_id, limit=_DEAD_LETTERS_SHOWN)
    replayed = request.query.get("replayed", "")
    notice = (
        f"Replayed {int(replayed)} dead letter{'s' if replayed != '1' else ''}."
        if replayed.isdigit()
        else None
    )
    name = str(body.get("name", instance_id))
    return _html(dead_letters_page(instance_id, name, letters, csrf=_csrf(request), notice=notice))


async def _deliveries(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    body = _found(request, instance_id)
    status = request.query.get("status", "all")
    if status not in _DELIVERY_FILTERS:
        raise web.HTTPBadRequest(text=f"the status must be one of {', '.join(_DELIVERY_FILTERS)}")
    try:
        shown = await request.config_dict[DELIVERY_HISTORY].page(
            instance_id,
            limit=_DELIVERIES_SHOWN,
            statuses=_DELIVERY_FILTERS[status],
            cursor=request.query.get("cursor"),
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text="that page of deliveries does not exist; start from the first") from exc
    name = str(body.get("name", instance_id))
    return _html(deliveries_page(instance_id, name, shown, status=status, csrf=_csrf(request)))


def _since_ms(text: str) -> int | None:
    """A datetime-local value, read as UTC; empty is no bound."""
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError as exc:
        raise web.HTTPBadRequest(text="the time must look like 2026-01-31T12:00") from exc


async def _replay(request: web.Request) -> web.Response:
    """One (the row's button), the selected, or all since a time; then the page again, saying how many."""
    instance_id = request.match_info["id"]
    _found(request, instance_id)
    form = await request.post()
    since_ms = None
    if form.get("one"):
        ids: set[str] | None = {str(form["one"])}
    elif form.get("selection"):
        ids = {str(value) for value in form.getall("selected", [])}
    else:
        ids, since_ms = None, _since_ms(str(form.get("since", "")))
    replayed = (
        []
        if ids == set()
        else await request.config_dict[DEAD_LETTERS].replay(instance_id, since_ms=since_ms, event_ids=ids)
    )
    raise web.HTTPSeeOther(f"/console/instances/{instance_id}/dead-letters?replayed={len(replayed)}")


async def _subscriptions(request: web.Request) -> web.Response:
    return _subscriptions_page(request, new_subscription_form())


def _subscriptions_page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    instance_id = request.match_info["id"]
    body = _found(request, instance_id)
    query = request.query
    notice = None
    if "added" in query:
        notice = f"Added the subscription {query['added']}."
    elif "removed" in query:
        notice = f"Removed the subscription {query['removed']}."
    elif "enabled" in query:
        notice = (
            "Enabled the instance's disabled endpoints again: recover what they failed to deliver "
            "while they were disabled."
        )
    elif query.get("recovered", "").isdigit() and "of" in query:
        count = int(query["recovered"])
        notice = f"Recovered {count} dead letter{'s' if count != 1 else ''} of {query['of']}."
    states = endpoint_states(request.config_dict[ENDPOINT_STATES], instance_id, dict(body))
    page = subscriptions_page(
        instance_id,
        str(body.get("name", instance_id)),
        mask_body(dict(body)).get("configuration"),
        [mask_body(s) for s in subscription_bodies(dict(body))],
        {endpoint.pop("subscriptionId"): endpoint for endpoint in states},
        form,
        csrf=_csrf(request),
        notice=notice,
    )
    return _html(page, status=status)


async def _add_subscription(request: web.Request) -> web.Response:
    """Add the posted subscription as POST /instances/{id}/subscriptions would, or show the form
    again with each problem beside its field."""
    instance_id = request.match_info["id"]
    _found(request, instance_id)
    state, subscription = read_subscription_form(await request.post())
    try:
        added = await add_subscription(request.config_dict, instance_id, subscription)
    except RequestProblem as invalid:
        place_subscription_problems(state, invalid.problems)
        return _subscriptions_page(request, state, status=invalid.status)
    raise web.HTTPSeeOther(_subscriptions_url(instance_id, added=added["id"]))


async def _remove_subscription(request: web.Request) -> web.Response:
    instance_id, subscription_id = request.match_info["id"], request.match_info["sid"]
    _found(request, instance_id)
    try:
        await remove_subscription(request.config_dict, instance_id, subscription_id)
    except RequestProblem as refused:
        return web.Response(status=refused.status, text=str(refused))
    raise web.HTTPSeeOther(_subscriptions_url(instance_id, removed=subscription_id))


async def _enable_endpoints(request: web.Request) -> web.Response:
    """Store the instance again unchanged: a new revision, which lifts the disabling of all its
    endpoints as any PATCH does."""
    instance_id = request.match_info["id"]
    body = dict(_found(request, instance_id))
    await store_replace(request.config_dict, instance_id, body)
    raise web.HTTPSeeOther(_subscriptions_url(instance_id, enabled="1"))


async def _recover_subscription(request: web.Request) -> web.Response:
    """Send again what the subscription dead-lettered between the two times, as its API route does."""
    instance_id, subscription_id = request.match_info["id"], request.match_info["sid"]
    try:
        subscription_index(subscription_bodies(dict(_found(request, instance_id))), subscription_id)
    except RequestProblem as missing:
        return web.Response(status=missing.status, text=str(missing))
    form = await request.post()
    since_ms = _since_ms(str(form.get("since", "")))
    if since_ms is None:
        raise web.HTTPBadRequest(text="say since when: the time must look like 2026-01-31T12:00")
    replayed = await request.config_dict[DEAD_LETTERS].replay(
        instance_id,
        since_ms=since_ms,
        until_ms=_since_ms(str(form.get("until", ""))),
        subscription_id=subscription_id,
    )
    raise web.HTTPSeeOther(_subscriptions_url(instance_id, recovered=str(len(replayed)), of=subscription_id))


def _subscriptions_url(instance_id: str, **query: str) -> str:
    return str(URL(f"/console/instances/{instance_id}/subscriptions").with_query(query))


async def _edit_form(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    return _html(_form(request, form_of(_found(request, instance_id)), instance_id))


def _found(request: web.Request, instance_id: str) -> Any:
    try:
        return stored_body(request.config_dict, instance_id)
    except RequestProblem as missing:
        raise web.HTTPNotFound(text=f"no instance with id {instance_id!r}") from missing


async def _edit(request: web.Request) -> web.Response:
    instance_id = request.match_info["id"]
    _found(request, instance_id)
    return await _save(request, instance_id)


def create_console_app(*, admin_token: str) -> web.Application:
    app = web.Application(middlewares=[_error_pages, _sessions])
    app.on_response_prepare.append(_security_headers)
    app[SIGNER] = SessionSigner(admin_token)
    app.router.add_get("/", _home)
    app.router.add_get("/sign-in", _sign_in_form)
    app.router.add_post("/sign-in", _sign_in)
    app.router.add_post("/sign-out", _sign_out)
    app.router.add_get("/overview", _overview)
    app.router.add_get("/instances", _instances)
    app.router.add_get("/instances/new", _new_form)
    app.router.add_post("/instances/new", _create)
    app.router.add_get("/instances/{id}", _detail)
    app.router.add_get("/instances/{id}/events", _events)
    app.router.add_get("/instances/{id}/dead-letters", _dead_letters)
    app.router.add_get("/instances/{id}/deliveries", _deliveries)
    app.router.add_post("/instances/{id}/test-event", _test_event)
    app.router.add_post("/instances/{id}/dead-letters/replay", _replay)
    app.router.add_get("/instances/{id}/subscriptions", _subscriptions)
    app.router.add_post("/instances/{id}/subscriptions", _add_subscription)
    app.router.add_post("/instances/{id}/subscriptions/{sid}/remove", _remove_subscription)
    app.router.add_post("/instances/{id}/subscriptions/{sid}/recover", _recover_subscription)
    app.router.add_post("/instances/{id}/enable", _enable_endpoints)
    app.router.add_get("/instances/{id}/edit", _edit_form)
    app.router.add_post("/instances/{id}/edit", _edit)
    app.router.add_static("/static/", _STATIC, append_version=False)
    return app
