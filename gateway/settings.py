"""The gateway's settings: environment variables prefixed GATEWAY_, read once in main()."""

from __future__ import annotations

import ipaddress
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.errors import ConfigError, Problem, SettingsError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MIN_SECRET_KEY_LENGTH = 32
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)


def _split_commas(value: Any) -> Any:
    """Operators write lists as `a,b,c` in env files and Helm values."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, comma-separated host:port.",
        json_schema_extra={"allowed": "host:port, comma-separated"},
    )
    topic_prefix: str = Field(
        "events", description="Prefix of the event topics: `<prefix>.<hub>.<objectType>`."
    )
    topic_partitions: int = Field(3, ge=1, description="Partitions of each event topic created on demand.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of the topics the gateway creates."
    )
    state_topic_prefix: str = Field(
        "gateway",
        description="Prefix of the gateway's own topics: `<prefix>.instances`, `<prefix>.checkpoints`.",
    )
    state_partitions: int = Field(
        12,
        ge=1,
        description="Partitions of the instances and checkpoints topics, co-partitioned; fixed once created.",
    )
    api_host: str = Field(
        "127.0.0.1",
        description="Address the admin API and metrics listen on.",
        json_schema_extra={"allowed": "an IP address or host name"},
    )
    api_port: int = Field(8080, ge=0, le=65535, description="Port of the admin API (0 picks a free one).")
    metrics_port: int = Field(
        9100, ge=0, le=65535, description="Port of `/metrics`, `/healthz` and `/readyz`."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin API; generated into GATEWAY_ADMIN_TOKEN_FILE when unset."
    )
    admin_token_file: Path = Field(
        Path.home() / ".event-gateway" / "admin-token",
        description="Where a generated admin token is written (mode 0600) when GATEWAY_ADMIN_TOKEN is unset.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key (at least 32 characters) that encrypts instance secrets at rest.",
        json_schema_extra={"allowed": "text of at least 32 characters"},
    )
    secret_key_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "Former values of GATEWAY_SECRET_KEY, comma-separated: they still decrypt what they encrypted"
            " until `event-gateway reencrypt` has rewritten it with the current key."
        ),
        json_schema_extra={"allowed": "texts of at least 32 characters, comma-separated"},
    )
    callback_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="Private or loopback networks that callback URLs may reach, comma-separated CIDRs.",
        json_schema_extra={"allowed": "CIDR networks, comma-separated"},
    )
    retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE),
        description="Delays in seconds before each webhook retry, comma-separated.",
        json_schema_extra={"allowed": "numbers, at least 0, comma-separated"},
    )
    group_instance_id: str | None = Field(
        None,
        description="Stable identity of this replica, e.g. a StatefulSet pod name, for static membership.",
    )
    leave_group_on_shutdown: Literal["never", "always", "if-scaled-down"] = Field(
        "never",
        description=(
            "Whether a replica with GATEWAY_GROUP_INSTANCE_ID leaves its consumer groups on SIGTERM, so "
            "its partitions move at once instead of after its session: `never` (a restart gets them "
            "back), `always`, or `if-scaled-down`: only when its StatefulSet has been scaled below its "
            "pod (replicas <= ordinal) or is gone."
        ),
    )
    kubernetes_statefulset: str | None = Field(
        None,
        description="For `if-scaled-down`: the StatefulSet whose pod GATEWAY_GROUP_INSTANCE_ID names.",
    )
    kubernetes_api_url: str = Field(
        "https://kubernetes.default.svc",
        description="The Kubernetes API, for `if-scaled-down`.",
        json_schema_extra={"allowed": "an http or https URL"},
    )
    kubernetes_service_account_dir: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount"),
        description="The pod's service account (`token`, `namespace`, `ca.crt`), for `if-scaled-down`.",
    )
    poller_session_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a silent poller replica keeps its partitions before they move."
    )
    poll_overlap_seconds: float = Field(
        10.0,
        ge=0,
        description="How far each poll reaches back before its watermark, for late commits and skew.",
    )
    poll_concurrency: int = Field(64, ge=1, description="Polls running at once in this process.")
    source_concurrency: int = Field(8, ge=1, le=52, description="Concurrent requests to one CRM instance.")
    http_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one request to a CRM API.")
    event_mode: Literal["structured", "binary"] = Field(
        "structured",
        description="CloudEvents Kafka binding: whole event in the value, or attributes in `ce_` headers.",
    )
    row_state: bool = Field(
        True,
        description="Keep each row's last published state in the row-state topic: UPDATED events say "
        "which columns changed, saves without changes publish nothing, an expired change token resyncs.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    delivery_timeout_seconds: float = Field(
        15.0, gt=0, description="Timeout of one webhook request, connecting included."
    )
    delivery_concurrency: int = Field(
        256, ge=1, description="Webhook requests in flight at once in one deliverer process."
    )
    delivery_host_concurrency: int = Field(
        8, ge=1, description="Webhook requests in flight at once to one callback host (host:port)."
    )
    delivery_host_backlog: int = Field(
        256,
        ge=1,
        description="Events a failing or slow callback host may hold in memory; more are parked for a retry.",
    )
    delivery_max_pending: int = Field(
        2048,
        ge=1,
        description="Events read from Kafka and not yet finished, per process; reading pauses beyond it.",
    )
    delivery_inline_retry_max_seconds: float = Field(
        1.0,
        ge=0,
        description="Retries due within this many seconds wait in memory; later ones wait in a retry topic.",
    )
    delivery_retry_after_max_seconds: float = Field(
        300.0, ge=0, description="Upper bound on the Retry-After a throttling receiver asks for."
    )
    delivery_breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed requests that open a callback host's circuit breaker."
    )
    delivery_breaker_cooldown_seconds: float = Field(
        30.0,
        gt=0,
        description="How long an open circuit breaker parks a host's events before one probe request.",
    )
    delivery_metadata_max_age_ms: int = Field(
        5000,
        ge=100,
        description="How often the deliverer refreshes topic metadata, to find new event topics.",
    )
    delivery_topic_partitions: int = Field(
        6,
        ge=1,
        description="Partitions of the retry, dead-letter and delivery-state topics created on demand.",
    )
    delivery_history_retention_hours: float = Field(
        168.0,
        ge=0,
        description="How long each webhook's status and attempts are kept for the deliveries API and the "
        "console (the `<state_prefix>.deliveries` topic); 0 keeps no history.",
    )
    delivery_disable_after_hours: float = Field(
        120.0,
        ge=0,
        description="How long every attempt to an endpoint (a callback or a subscription) may fail before "
        "it is disabled until its instance changes, as Svix does after five days; 0 never disables.",
    )
    metrics_per_instance: bool = Field(
        False,
        description="Label checkpoint ages and webhook attempts per instance: one series per instance.",
    )
    signature_rotation_grace_seconds: float = Field(
        86400.0, ge=0, description="How long the replaced signing key keeps signing after a key change."
    )
    shutdown_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "Bound of the graceful shutdown on SIGTERM; past it the rest is cancelled, exit status 1."
        ),
    )

    def delivery(self) -> DeliverySettings:
        """The part of the settings the deliverer (`gateway.delivery`) reads."""
        return DeliverySettings(
            kafka_bootstrap_servers=self.kafka_bootstrap_servers,
            group_instance_id=self.group_instance_id,
            topic_partitions=self.delivery_topic_partitions,
            metadata_max_age_ms=self.delivery_metadata_max_age_ms,
            callback_allowed_networks=tuple(self.callback_allowed_networks),
            timeout_seconds=self.delivery_timeout_seconds,
            concurrency=self.delivery_concurrency,
            host_concurrency=self.delivery_host_concurrency,
            host_backlog=self.delivery_host_backlog,
            max_pending=self.delivery_max_pending,
            retry_schedule=tuple(self.retry_schedule),
            inline_retry_max_seconds=self.delivery_inline_retry_max_seconds,
            retry_after_max_seconds=self.delivery_retry_after_max_seconds,
            breaker_failures=self.delivery_breaker_failures,
            breaker_cooldown_seconds=self.delivery_breaker_cooldown_seconds,
            history_retention_hours=self.delivery_history_retention_hours,
            disable_after_hours=self.delivery_disable_after_hours,
            signature_rotation_grace_seconds=self.signature_rotation_grace_seconds,
            shutdown_timeout_seconds=self.shutdown_timeout_seconds,
            metrics_per_instance=self.metrics_per_instance,
        )

    @field_validator("retry_schedule", "secret_key_previous", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("callback_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        # Parsed here rather than by pydantic, whose IPv4-or-IPv6 union reports each item twice, in its
        # own internal terms.
        items = _split_commas(value)
        if not isinstance(items, list):
            return items
        return [_network(item) if isinstance(item, str) else item for item in items]

    @field_validator("kubernetes_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("retry_schedule")
    @classmethod
    def _delays(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(delay) or delay < 0 for delay in value):
            raise ValueError("delays must be finite and not negative")
        return value

    @model_validator(mode="after")
    def _departure(self) -> Settings:
        policy = self.leave_group_on_shutdown
        if policy == "never":
            return self
        if self.group_instance_id is None:
            raise _Conflict(
                "leave_group_on_shutdown",
                f"{policy} needs GATEWAY_GROUP_INSTANCE_ID: only a static member stays in its groups "
                "when it stops, any other leaves them by itself",
            )
        if policy == "if-scaled-down":
            if self.kubernetes_statefulset is None:
                raise _Conflict(
                    "kubernetes_statefulset",
                    "must name the replica's StatefulSet when GATEWAY_LEAVE_GROUP_ON_SHUTDOWN is "
                    "if-scaled-down",
                )
            ordinal = self.group_instance_id.removeprefix(f"{self.kubernetes_statefulset}-")
            if ordinal == self.group_instance_id or not ordinal.isdigit():
                raise _Conflict(
                    "group_instance_id",
                    "must be the pod name, <GATEWAY_KUBERNETES_STATEFULSET>-<ordinal>, when "
                    "GATEWAY_LEAVE_GROUP_ON_SHUTDOWN is if-scaled-down",
                )
        return self

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"must be at least {_MIN_SECRET_KEY_LENGTH} characters")
        return value

    @field_validator("secret_key_previous")
    @classmethod
    def _each_long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, key in enumerate(value, start=1):
            if len(key.get_secret_value()) < _MIN_SECRET_KEY_LENGTH:
                raise ValueError(f"item {number} must be at least {_MIN_SECRET_KEY_LENGTH} characters")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    """What the deliverer reads of the settings; each field is the `Settings` one of the same name,
    with `delivery_` dropped where it had it."""

    kafka_bootstrap_servers: str
    group_instance_id: str | None
    topic_partitions: int
    metadata_max_age_ms: int
    callback_allowed_networks: tuple[IPNetwork, ...]
    timeout_seconds: float
    concurrency: int
    host_concurrency: int
    host_backlog: int
    max_pending: int
    retry_schedule: tuple[float, ...]
    inline_retry_max_seconds: float
    retry_after_max_seconds: float
    breaker_failures: int
    breaker_cooldown_seconds: float
    history_retention_hours: float
    disable_after_hours: float
    signature_rotation_grace_seconds: float
    shutdown_timeout_seconds: float
    metrics_per_instance: bool


class _Conflict(ConfigError, ValueError):
    """Settings that do not fit together, raised by a model validator. Pydantic locates its errors
    nowhere (an empty `loc`), so the error names the variable to report: the one to change."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field_name = field_name
        super().__init__(message)


def _network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a network in CIDR form, such as 10.0.0.0/8 or fd00::/8") from None


def load_settings() -> Settings:
    """The settings from the environment. Every bad value is reported at once, by its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False, include_input=False)]
        # `from None`: pydantic's own error repeats each value given, and a value may be a secret.
        raise SettingsError(problems) from None


def variable(field_name: str) -> str:
    return f"GATEWAY_{field_name.upper()}"


def allowed_values(field_name: str) -> str:
    """What a setting accepts, in words, from its type and bounds (or its `allowed` note)."""
    field = Settings.model_fields[field_name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("allowed"), str):
        return str(extra["allowed"])
    kind: Any = field.annotation  # a type, or a typing form such as `X | None`
    if typing.get_origin(kind) is Literal:
        return _either(str(arg) for arg in typing.get_args(kind))
    if isinstance(kind, types.UnionType):  # `X | None`
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number" + _bounds(field)
    if kind is float:
        return "a number" + _bounds(field)
    if kind is Path:
        return "a file path"
    return "text"


def _either(words: typing.Iterable[str]) -> str:
    listed = list(words)
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1]


def _bounds(field: FieldInfo) -> str:
    low = next((m for m in field.metadata if isinstance(m, Ge | Gt)), None)
    high = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    if isinstance(low, Ge) and high is not None:
        return f" from {low.ge:g} to {high:g}"
    if isinstance(low, Ge):
        return f", at least {low.ge:g}"
    if isinstance(low, Gt):
        return f" above {low.gt:g}"
    return ""


_ITEM_REASONS = {
    "float_parsing": "is not a number",
    "int_parsing": "is not a whole number",
}


def _problem(error: ErrorDetails) -> Problem:
    location = error["loc"]
    if not location:  # only a model validator's `_Conflict` has none
        conflict = error["ctx"]["error"]
        return Problem(variable(conflict.field_name), str(conflict))
    field_name = str(location[0])
    if error["type"] == "value_error":
        reason = str(error.get("ctx", {}).get("error", error["msg"]))
    elif len(location) > 1 and isinstance(location[1], int):
        reason = f"item {location[1] + 1} " + _ITEM_REASONS.get(error["type"], "is not valid")
    elif field_name in Settings.model_fields:
        reason = "must be " + allowed_values(field_name)
    else:
        reason = error["msg"]
    return Problem(variable(field_name), reason)
