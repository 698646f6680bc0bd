"""The gateway's exceptions, one tree rooted at GatewayError.

Most are defined here; a few live beside the one module that raises them, named below with it.

GatewayError
 ├── ConfigError                  bad settings or a bad instance body
 │    ├── ProblemsError           every problem found at once, each where it was found
 │    │    ├── SettingsError      one per environment variable, never with the value given
 │    │    └── InstanceValidationError  one per JSON path
 │    ├── SecretKeyMismatch       no configured key decrypts a stored secret; names the instance
 │    ├── settings._Conflict      settings that do not fit together; also a ValueError, for pydantic
 │    ├── formats.DateFormatError a date format or time zone name; also a ValueError
 │    ├── formats.CeqlError       a CEQL where clause; also a ValueError
 │    ├── formats.HubUrlError     a poller URL not of the form /hubs/<hub>/<resource>; also a ValueError
 │    ├── formats.TemplateError   a poller URL template; also a ValueError
 │    ├── polling.CheckpointError a stored checkpoint that cannot be read
 │    └── polling.RowStateError   a stored row state that cannot be read
 ├── SourceError                  talking to a CRM API (retriable unless noted)
 │    ├── SourceUnavailable       connection errors, timeouts, 5xx
 │    │    └── SourceTimeout      also a TimeoutError
 │    ├── SourceRateLimited       429, carries the Retry-After delay
 │    ├── SourceAuthError         token endpoint refused us (not retriable)
 │    ├── SourceRequestError      4xx other than 401/429 (not retriable)
 │    └── SourceResponseError     malformed JSON, a body of the wrong shape (not retriable)
 │         └── formats.DateValueError  a date its format cannot read or render; also a ValueError
 ├── PublishError                 Kafka produce or transaction failures
 │    └── RecordTooLarge          a record over the producer's or the broker's size limit (not retriable)
 ├── TaskCrashed                  a task the process cannot work without ended by itself; carries its name
 ├── EventDecodeError             a record on an event topic that is not a change event; names the field
 │    └── delivery.ParkedDecodeError  a retry record whose `gw-*` headers are missing or malformed
 ├── DeliveryError                webhook delivery failures (retriable unless noted); each class says
 │    │                           what follows a failed attempt (see DeliveryError)
 │    ├── CallbackRefused         the callback's address is one we must not reach (not retriable)
 │    │    └── delivery._ConnectRefused  the same, in the OSError form aiohttp's resolver expects
 │    ├── InvalidSigningKey       a `whsec_` signing key that is not base64 (not retriable)
 │    ├── CallbackFailed          the receiver answered other than 2xx (3xx included); carries the status
 │    │    ├── CallbackGone       410: the receiver asks us to stop (not retriable; disables the instance)
 │    │    └── CallbackThrottled  429, 502, 503, 504; carries the Retry-After delay, if any
 │    ├── CallbackUnreachable     no answer: connection refused or reset, DNS, TLS
 │    │    └── CallbackTimeout    no answer in time; also a TimeoutError
 │    ├── CallbackSkipped         not attempted: the host's circuit is open, or it is too slow for its backlog
 │    └── RateLimited             not attempted: the subscription's rate limit gives no turn soon enough
 ├── api.RequestProblem           an API request answered with an error status and its problems
 └── sim.SimulatorError           the Dynamics simulator's own (`gateway/sim/_errors.py`)
      ├── ServiceError            an OData error answer
      │    ├── FilterError        a $filter the simulator cannot read
      │    └── Throttled          service protection; carries Retry-After
      ├── Unauthenticated         a request without a valid bearer token
      └── OAuthError              the token endpoint's error answer
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


class RecordTooLarge(PublishError):
    """A record, or the batch that holds it, is over a size limit: a retry would fail the same way.

    `size` and `limit` are in bytes: the record's against the producer's max_request_size or the
    gateway's own bound, or a batch's against the topic's max.message.bytes; `limit` is None when the
    broker's could not be read. `resource` names what wrote it, once known.
    """

    retriable = False

    def __init__(self, *, topic: str, size: int, limit: int | None, resource: str | None = None) -> None:
        self.topic = topic
        self.size = size
        self.limit = limit
        self.resource = resource
        writer = f"resource {resource!r}: " if resource is not None else ""
        bound = f"the limit of {limit} bytes" if limit is not None else "the broker's max.message.bytes"
        super().__init__(f"{writer}a record of {size} bytes for topic {topic!r} is over {bound}")

    def of(self, resource: str, *, limit: int | None) -> RecordTooLarge:
        """The same error, naming the resource that wrote it and, if it was not known, the limit."""
        return RecordTooLarge(
            topic=self.topic,
            size=self.size,
            limit=self.limit if self.limit is not None else limit,
            resource=resource,
        )


class TaskCrashed(GatewayError):
    """A vital background task ended without its owner stopping it; the original error is the cause."""

    def __init__(self, message: str, *, task: str) -> None:
        self.task = task
        super().__init__(message)


class EventDecodeError(GatewayError):
    """A record on an event topic that is not a change event of ours. `field` names the attribute at
    fault (`data.instanceId`), None when the record is not even JSON."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class DeliveryError(GatewayError):
    """A failed attempt. Its class says what follows, for the handler to read instead of the type:

    `outcome` labels the attempt in the metrics and the delivery history; `status` is the receiver's
    answer and `retry_after` the wait it asked for, when it gave them; a retriable error may be tried
    again in memory unless `retries_inline` is off; one that is not retriable is dead-lettered for
    `dead_letter_reason`, and `disables_instance` also stops the instance's deliveries until a PATCH;
    an error that is not `attempted` is flow control: parked without counting as an attempt.
    """

    retriable = True
    outcome = "unreachable"
    dead_letter_reason = "callback-refused"
    disables_instance = False
    retries_inline = True
    attempted = True
    status: int | None = None
    retry_after: float | None = None


class CallbackRefused(DeliveryError):
    """The callback URL, or an address its host resolved to, is loopback, private, link-local or reserved.

    Carries the host and the refused address, never the whole URL: a callback URL may hold a token.
    """

    retriable = False
    outcome = "refused"

    def __init__(self, message: str, *, host: str, address: str | None = None) -> None:
        self.host = host
        self.address = address
        super().__init__(message)


class InvalidSigningKey(DeliveryError):
    retriable = False


class CallbackFailed(DeliveryError):
    """The receiver answered with a status other than 2xx. Carries the host, never the URL."""

    outcome = "failed"

    def __init__(self, message: str, *, host: str, status: int) -> None:
        self.host = host
        self.status = status
        super().__init__(message)


class CallbackGone(CallbackFailed):
    retriable = False
    outcome = "gone"
    dead_letter_reason = "endpoint-gone"
    disables_instance = True


class CallbackThrottled(CallbackFailed):
    """`retry_after` is the receiver's Retry-After in seconds (already clamped), or None without one."""

    outcome = "throttled"

    def __init__(self, message: str, *, host: str, status: int, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(message, host=host, status=status)


class CallbackUnreachable(DeliveryError):
    def __init__(self, message: str, *, host: str) -> None:
        self.host = host
        super().__init__(message)


class CallbackTimeout(CallbackUnreachable, TimeoutError):
    outcome = "timeout"


class CallbackSkipped(DeliveryError):
    """No request was made: the host's circuit breaker is open, or the host is failing or slow and
    already holds its whole backlog. The event is parked as if the attempt had failed, except that a
    full backlog is flow control, not an attempt. A skipped host is not tried again in memory."""

    outcome = "skipped"
    retries_inline = False

    def __init__(self, message: str, *, host: str, reason: str, retry_after: float) -> None:
        self.host = host
        self.reason = reason
        self.retry_after = retry_after
        self.attempted = reason != "backlog"
        super().__init__(message)


class RateLimited(DeliveryError):
    """No request was made: the target's rate limit has no turn for it within the wait a delivery may
    hold in memory. Flow control, not an attempt: the event is parked until about its turn."""

    outcome = "rate-limited"
    retries_inline = False
    attempted = False

    def __init__(self, message: str, *, target: str, retry_after: float) -> None:
        self.target = target
        self.retry_after = retry_after
        super().__init__(message)
