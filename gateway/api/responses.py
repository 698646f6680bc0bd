"""JSON responses of the admin API, and the one shape every error takes: a list of problems."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import Problem


def json_response(payload: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def problems_response(status: int, problems: Iterable[Problem]) -> web.Response:
    return json_response(
        {"errors": [{"path": p.path, "message": p.message} for p in problems]},
        status=status,
    )


def problem_response(status: int, path: str, message: str) -> web.Response:
    return problems_response(status, [Problem(path, message)])
