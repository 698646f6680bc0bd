"""JSON responses of the admin API, and the one shape every error takes: a list of problems."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import GatewayError, InstanceValidationError, Problem


def json_response(payload: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def problems_response(status: int, problems: Iterable[Problem]) -> web.Response:
    return json_response(
        {"errors": [{"path": p.path, "message": p.message} for p in problems]},
        status=status,
    )


def problem_response(status: int, path: str, message: str) -> web.Response:
    return problems_response(status, [Problem(path, message)])


class RequestProblem(GatewayError):
    """Raised by handlers to answer with an error; `problems_middleware` renders it."""

    def __init__(self, status: int, problems: Iterable[Problem]) -> None:
        self.status = status
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


_JSON_TYPES = ("application/json",)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (None when it is empty). A body of another declared type is refused
    (415), and so is one that is not JSON, or not UTF-8 (400)."""
    raw = await request.read()
    if not raw:
        return None
    declared = request.content_type
    if declared not in _JSON_TYPES and not declared.endswith("+json"):
        given = request.headers.get("Content-Type", "none")
        raise RequestProblem(415, [Problem("$", f"Content-Type must be application/json, not {given}")])
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestProblem(400, [Problem("$", f"body is not valid JSON: {exc}")]) from exc


def _http_error_message(request: web.Request, error: web.HTTPException) -> str:
    if isinstance(error, web.HTTPNotFound):
        return f"no route for {request.method} {request.path}"
    if isinstance(error, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed here; allowed: {', '.join(sorted(error.allowed_methods))}"
    return error.text or error.reason  # 413: "Maximum request body size 1048576 exceeded, ..."


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestProblem as problem:
        return problems_response(problem.status, problem.problems)
    except InstanceValidationError as invalid:
        return problems_response(400, invalid.problems)
    except web.HTTPException as error:
        # aiohttp's own refusals (no route, wrong method, body too large) in the same JSON shape.
        if error.status < 400:
            raise
        response = problems_response(error.status, [Problem("$", _http_error_message(request, error))])
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
