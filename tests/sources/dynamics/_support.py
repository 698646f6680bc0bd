"""Constants and helpers of the Dynamics adapter's tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from yarl import URL

from gateway.formats.dates import compile_date_format
from gateway.formats.templates import compile_template
from gateway.instances.model import DatesConfiguration, ResourceConfig
from gateway.sources.base import FetchRequest, SourcePage
from gateway.sources.dynamics.client import DynamicsSource
from gateway.sources.dynamics.transport import RetryPolicy

USER, PASSWORD = "ops@contoso.example", "correct-horse-battery"
CLIENT_ID, CLIENT_SECRET = "event-gateway", "client-secret-value"
SECRETS = (PASSWORD, CLIENT_SECRET)
# Retries without waiting: only an honoured Retry-After takes real time.
FAST_RETRIES = RetryPolicy(base_delay=0.001, max_delay=0.001)

_UTC = ZoneInfo("UTC")
_MILLIS = compile_date_format("milliseconds")


MakeSource = Callable[..., DynamicsSource]


@dataclasses.dataclass(frozen=True, slots=True)
class SentRequest:
    method: str
    url: URL
    headers: dict[str, str]


def fetch(
    hub_url: str,
    *,
    cursor: str | None = None,
    page_size: int = 5000,
    primary_key: str | None = None,
    select: tuple[str, ...] | None = None,
    formatted_values: bool = False,
) -> FetchRequest:
    """The request a poller makes for `hub_url`, already rendered."""
    resource = hub_url.split("?")[0].rsplit("/", 1)[-1]
    config = ResourceConfig(
        name=resource,
        url=compile_template(hub_url),
        hub="crm",
        object_type=resource,
        id_field="id",
        dates=DatesConfiguration(
            "attributes.modifiedon", _MILLIS, _UTC, "attributes.createdon", _MILLIS, _UTC
        ),
        page_size=page_size,
        primary_key=primary_key,
        select=select,
        formatted_values=formatted_values,
    )
    return FetchRequest(resource=config, url=hub_url, cursor=cursor)


async def collect(source: DynamicsSource, request: FetchRequest) -> list[SourcePage]:
    return [page async for page in source.pages(request)]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {"element": "dynamicscrmadfs", **labels})
    return 0.0 if value is None else value
