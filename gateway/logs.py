"""JSON-lines logging: one object per line with time, level, logger, message and context fields."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Context that call sites pass through `extra=`; anything else in a record's __dict__ is ignored.
_CONTEXT_FIELDS = ("role", "instance_id", "resource", "event_id", "error", "resources", "api", "metrics")


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every retriable broker hiccup at WARNING/ERROR; our own lines say what matters.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
