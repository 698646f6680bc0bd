"""Faults switched on at run time, through `/_sim/faults` or `Simulator.faults`.

They apply to the data API (`/api/data/...`) only, never to the token or admin endpoints:

- `error_rate`: the share of requests answered 500 or 503 at random (seedable);
- `latency_ms`: added to every admitted request, inside the concurrency limit;
- `fail_next` / `fail_status`: the next N requests answer that 5xx status;
- `throttle_next` / `throttle_retry_after`: the next N requests answer 429 with that Retry-After;
- `malformed_next`: the next N successful answers carry invalid JSON (the first half of the body);
- `truncate_next`: the next N successful answers announce the full Content-Length, send half
  the body and close the connection;
- `skew_seconds`: added to every createdon/modifiedon the server stamps from now on.
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import Field

from gateway.sim._errors import REQUEST_LIMIT, UNEXPECTED, ServiceError, Throttled
from gateway.sim._limits import Limits


class BodyFault(enum.Enum):
    MALFORMED = "malformed"
    TRUNCATED = "truncated"


_Count = Annotated[int, Field(ge=0)]


@dataclass(slots=True, kw_only=True)
class Faults:
    """Mutable on purpose: tests and the admin endpoint switch faults on and off while serving."""

    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    latency_ms: Annotated[float, Field(ge=0)] = 0.0
    skew_seconds: float = 0.0
    fail_next: _Count = 0
    fail_status: Annotated[int, Field(ge=500, le=599)] = 503
    throttle_next: _Count = 0
    throttle_retry_after: _Count = 5
    malformed_next: _Count = 0
    truncate_next: _Count = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def take_request_fault(self, rng: random.Random, limits: Limits) -> ServiceError | None:
        """The error this request must answer with, if a fault says so; counts bursts down."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return _server_error(self.fail_status)
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return Throttled(
                REQUEST_LIMIT, limits.request_limit_message(), retry_after=self.throttle_retry_after
            )
        if self.error_rate > 0 and rng.random() < self.error_rate:
            return _server_error(rng.choice((500, 503)))
        return None

    def take_body_fault(self) -> BodyFault | None:
        if self.malformed_next > 0:
            self.malformed_next -= 1
            return BodyFault.MALFORMED
        if self.truncate_next > 0:
            self.truncate_next -= 1
            return BodyFault.TRUNCATED
        return None


def _server_error(status: int) -> ServiceError:
    return ServiceError(status, UNEXPECTED, "An unexpected error occurred.")
