"""The request log: what `/_sim/requests` lists and tests read from `Simulator.requests`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.sim._clock import format_timestamp


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request to the data API or the token endpoint, as `/_sim/requests` lists it."""

    time: datetime
    method: str
    path: str
    query: Mapping[str, str]
    principal: str | None  # the user name or client id of its bearer token
    status: int
    user_agent: str | None = None  # which client sent it, e.g. `event-gateway/0.1.0 (<replica>)`

    def as_json(self) -> dict[str, Any]:
        return {
            "time": format_timestamp(self.time),
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "principal": self.principal,
            "status": self.status,
            "user_agent": self.user_agent,
        }
