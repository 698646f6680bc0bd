"""JSON-lines logging: one object per line with time, level, logger, message and context fields.

Context comes from `extra=` at the call site, or from `task_context()`, which tags every line a
task logs (a poller's lines, its source's included, carry its instance id and resource) through the
handler's `TaskContext` filter. Only the fields named in `_CONTEXT_FIELDS` are written: a record's
other attributes never reach the output.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

_CONTEXT_FIELDS = (
    "role",
    "instance_id",
    "resource",
    "event_id",
    "partition",
    "error",
    "resources",
    "unfinished",
    "api",
    "metrics",
)

_task_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("gateway_log_fields")


def task_context(**fields: str) -> contextvars.Context:
    """A copy of the current context whose log lines carry `fields`; for `asyncio.create_task(context=)`."""
    context = contextvars.copy_context()
    context.run(_task_fields.set, {**_task_fields.get({}), **fields})
    return context


class TaskContext(logging.Filter):
    """Copies the fields of the logging task's `task_context()` onto each record as it is handled,
    where `extra=` did not set them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _task_fields.get({}).items():
            if record.__dict__.get(name) is None:
                record.__dict__[name] = value
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, *, role: str | None = None) -> None:
        super().__init__()
        self._role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._role is not None:
            entry["role"] = self._role
        for name in _CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, *, role: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role=role))
    handler.addFilter(TaskContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every retriable broker hiccup at WARNING/ERROR; our own lines say what matters.
    # Never below WARNING: at DEBUG it prints every record it sends, event data and instances included.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
