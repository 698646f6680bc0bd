"""The simulator's exceptions; each is an answer the simulated service gives to a client.

GatewayError (gateway.errors)
 └── SimulatorError
      ├── ServiceError        a Dataverse error answer: an HTTP status and {"error": {"code", "message"}}
      │    ├── FilterError    a $filter that does not parse or does not fit the table (400, 0x80060888)
      │    └── Throttled      service protection (429), carries the Retry-After seconds
      ├── Unauthenticated     no, unknown or expired bearer token (401 with a Bearer challenge)
      └── OAuthError          the token endpoint refuses: {"error", "error_description"}
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError

# Dataverse error codes (hex form, as the Web API spells them in error.code).
QUERY_ERROR = "0x80060888"  # OData query option errors: bad $filter, unknown property, unknown segment
EXPIRED_VERSION_STAMP = "0x80044352"  # ExpiredVersionStamp: a change token older than the retention
REQUEST_LIMIT = "0x80072322"  # service protection: number of requests over the window
CONCURRENCY_LIMIT = "0x80072326"  # service protection: concurrent requests
OBJECT_DOES_NOT_EXIST = "0x80040217"  # ObjectDoesNotExist
INVALID_ARGUMENT = "0x80040203"  # InvalidArgument
UNEXPECTED = "0x80040216"  # UnExpected: "An unexpected error occurred."


class SimulatorError(GatewayError):
    """Root of the simulator's errors."""


class ServiceError(SimulatorError):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message}})


class FilterError(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(400, QUERY_ERROR, message)


class Throttled(ServiceError):
    def __init__(self, code: str, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(429, code, message)


class Unauthenticated(SimulatorError):
    pass


class OAuthError(SimulatorError):
    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"{status} {error}: {description}")

    def body(self) -> bytes:
        return orjson.dumps({"error": self.error, "error_description": self.description})
