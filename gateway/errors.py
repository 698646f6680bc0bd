"""The gateway's exceptions, one tree rooted at GatewayError.

GatewayError
 ├── ConfigError                  bad settings or a bad instance body
 │    ├── ProblemsError           every problem found at once, each where it was found
 │    │    ├── SettingsError      one per environment variable, never with the value given
 │    │    └── InstanceValidationError  one per JSON path
 │    └── SecretKeyMismatch       no configured key decrypts a stored secret; names the instance
 ├── SourceError                  talking to a CRM API (retriable unless noted)
 │    ├── SourceUnavailable       connection errors, timeouts, 5xx
 │    │    └── SourceTimeout      also a TimeoutError
 │    ├── SourceRateLimited       429, carries the Retry-After delay
 │    ├── SourceAuthError         token endpoint refused us (not retriable)
 │    ├── SourceRequestError      4xx other than 401/429 (not retriable)
 │    └── SourceResponseError     malformed JSON, a body of the wrong shape (not retriable)
 ├── PublishError                 Kafka produce or transaction failures
 ├── TaskCrashed                  a task the process cannot work without ended by itself; carries its name
 └── DeliveryError                webhook delivery failures (retriable unless noted)
      ├── CallbackRefused         the callback's address is one we must not reach (not retriable)
      ├── InvalidSigningKey       a `whsec_` signing key that is not base64 (not retriable)
      ├── CallbackFailed          the receiver answered other than 2xx (3xx included); carries the status
      │    ├── CallbackGone       410: the receiver asks us to stop (not retriable; disables the instance)
      │    └── CallbackThrottled  429, 502, 503, 504; carries the Retry-After delay, if any
      ├── CallbackUnreachable     no answer: connection refused or reset, DNS, TLS
      │    └── CallbackTimeout    no answer in time; also a TimeoutError
      └── CallbackSkipped         not attempted: the host's circuit is open, or it is too slow for its backlog
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    retriable: bool = False


class ConfigError(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document, located by a JSON path such as `$.configuration.foo`, or with
    the settings, located by an environment variable such as `GATEWAY_API_PORT`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProblemsError(ConfigError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class SettingsError(ProblemsError):
    """Bad settings. The messages never hold the value given: it may be a secret."""


class InstanceValidationError(ProblemsError):
    pass


class SecretKeyMismatch(ConfigError):
    """A stored secret was encrypted with none of the configured keys (or the token is damaged)."""


class SourceError(GatewayError):
    retriable = True

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class SourceUnavailable(SourceError):
    pass


class SourceTimeout(SourceUnavailable, TimeoutError):
    pass


class SourceRateLimited(SourceError):
    def __init__(self, message: str, *, retry_after: float, url: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, url=url, status=429)


class SourceAuthError(SourceError):
    retriable = False


class SourceRequestError(SourceError):
    retriable = False


class SourceResponseError(SourceError):
    retriable = False


class PublishError(GatewayError):
    retriable = True


class TaskCrashed(GatewayError):
    """A vital background task ended without its owner stopping it; the original error is the cause."""

    def __init__(self, message: str, *, task: str) -> None:
        self.task = task
        super().__init__(message)


class DeliveryError(GatewayError):
    retriable = True


class CallbackRefused(DeliveryError):
    """The callback URL, or an address its host resolved to, is loopback, private, link-local or reserved.

    Carries the host and the refused address, never the whole URL: a callback URL may hold a token.
    """

    retriable = False

    def __init__(self, message: str, *, host: str, address: str | None = None) -> None:
        self.host = host
        self.address = address
        super().__init__(message)


class InvalidSigningKey(DeliveryError):
    retriable = False


class CallbackFailed(DeliveryError):
    """The receiver answered with a status other than 2xx. Carries the host, never the URL."""

    def __init__(self, message: str, *, host: str, status: int) -> None:
        self.host = host
        self.status = status
        super().__init__(message)


class CallbackGone(CallbackFailed):
    retriable = False


class CallbackThrottled(CallbackFailed):
    """`retry_after` is the receiver's Retry-After in seconds (already clamped), or None without one."""

    def __init__(self, message: str, *, host: str, status: int, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(message, host=host, status=status)


class CallbackUnreachable(DeliveryError):
    def __init__(self, message: str, *, host: str) -> None:
        self.host = host
        super().__init__(message)


class CallbackTimeout(CallbackUnreachable, TimeoutError):
    pass


class CallbackSkipped(DeliveryError):
    """No request was made: the host's circuit breaker is open, or the host is failing or slow and
    already holds its whole backlog. The event is parked as if the attempt had failed."""

    def __init__(self, message: str, *, host: str, reason: str, retry_after: float) -> None:
        self.host = host
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)
