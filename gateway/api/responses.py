"""JSON responses of the admin API, and the one shape every error takes: a list of problems."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import InstanceValidationError, Problem


def json_response(payload: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def problems_response(status: int, problems: Iterable[Problem]) -> web.Response:
    return json_response(
        {"errors": [{"path": p.path, "message": p.message} for p in problems]},
        status=status,
    )


def problem_response(status: int, path: str, message: str) -> web.Response:
    return problems_response(status, [Problem(path, message)])


class RequestProblem(Exception):
    """Raised by handlers to answer with an error; `problems_middleware` renders it."""

    def __init__(self, status: int, problems: Iterable[Problem]) -> None:
        self.status = status
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestProblem as problem:
        return problems_response(problem.status, problem.problems)
    except InstanceValidationError as invalid:
        return problems_response(400, invalid.problems)
