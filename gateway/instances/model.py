"""The validated instance: the internal shape pollers, publishers and deliverers read.

Fields that may hold credentials are left out of `repr()`, so logging a record never leaks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.formats.dates import DateFormat
from gateway.formats.templates import UrlTemplate


@dataclass(frozen=True, slots=True)
class DatesConfiguration:
    updated_field: str  # dotted path, e.g. "attributes.modifiedon"
    updated_format: DateFormat
    updated_timezone: ZoneInfo  # default: the instance's timezone
    created_field: str | None
    created_format: DateFormat | None  # set exactly when created_field is; defaults to updated_format
    created_timezone: ZoneInfo  # default: the instance's timezone


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    name: str  # key under event.poller.configuration, e.g. "accounts"
    url: UrlTemplate
    hub: str  # from the hub URL the template renders to, e.g. "crm"
    object_type: str  # resource name in the hub URL, e.g. "notes"
    id_field: str  # dotted path
    dates: DatesConfiguration
    page_size: int = 5000  # 1..5000
    poll_delay: float = 0.0  # seconds
    created_check_tolerance: float = 0.0  # seconds
    filter_by_updated_date: bool = True
    filter_by_current_date: bool = False
    snapshot: bool = False  # emit existing rows on the first change-tracking call
    primary_key: str | None = None  # override of the table's primary key, for custom tables
    previous_values: bool = False  # UPDATED events carry the changed columns' previous values
    select: tuple[str, ...] | None = None  # the columns to fetch ($select); None: every column
    formatted_values: bool = False  # ask for display texts of option sets, lookups, money and dates
    # Seconds between the filter mode's checks for rows deleted at the source; 0: never.
    deletes_check_interval: float = 3600.0
    change_tracking: bool = False  # the URL's where is fetchChanges='true'; else a modifiedon filter


@dataclass(frozen=True, slots=True)
class SourceConnection:
    base_url: str  # "https://<dynamics.tenant>" or dynamics.base.url, no trailing slash
    api_version: str  # dynamics.api.version, default "v9.2"
    username: str | None
    password: str | None = field(repr=False)
    oauth_token_url: str | None
    oauth_client_id: str | None  # oauth.api.key
    oauth_client_secret: str | None = field(repr=False)  # oauth.api.secret
    oauth_scope: str | None


@dataclass(frozen=True, slots=True)
class Notification:
    """Webhook delivery; `enabled` only when events are enabled and the callback URL is usable."""

    enabled: bool
    callback_url: str | None = field(repr=False)  # its path or query may hold a token
    signature_key: str | None = field(repr=False)
    previous_signature_key: str | None = field(default=None, repr=False)  # kept while keys rotate
    signature_rotated_at: float | None = None  # epoch seconds of the last key change
    callback_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    format: Literal["elements", "cloudevents"] = "elements"


EVENT_TYPES = ("CREATED", "UPDATED", "DELETED")


@dataclass(frozen=True, slots=True)
class Subscription:
    """An endpoint beside the instance's callback, with its own filter and delivery state."""

    id: str
    name: str
    enabled: bool
    object_types: frozenset[str] | None  # None: every object type
    event_types: frozenset[str] | None  # None: every event type
    changed_columns: frozenset[str] | None  # UPDATED events only when one of these changed
    rate_limit: float | None  # requests per second, per deliverer process; None: unlimited
    notification: Notification = field(repr=False)
    alerts: bool = False  # receives the instance's delivery alerts instead of change events

    def wants(self, object_type: str, event_type: str, changed: Sequence[str] | None) -> bool:
        """Whether a change event reaches this subscription. An UPDATED event whose changed columns are
        unknown (a row's first event, or no row state kept) passes a changed-columns filter: it may
        have changed any of them, and a missed change is worse than one more webhook."""
        if not self.enabled or self.alerts:
            return False
        if self.object_types is not None and object_type not in self.object_types:
            return False
        if self.event_types is not None and event_type not in self.event_types:
            return False
        if self.changed_columns is None or event_type != "UPDATED" or changed is None:
            return True
        return not self.changed_columns.isdisjoint(changed)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    name: str
    element_key: str  # canonical "dynamicscrmadfs" ("dynamicscrm" is an alias)
    tags: tuple[str, ...]
    configuration: Mapping[str, Any] = field(repr=False)  # as given, event.poller.configuration decoded
    polling_enabled: bool  # event.notification.enabled
    refresh_interval: float  # seconds (configured in minutes)
    timezone: ZoneInfo  # event.poller.timezone, default UTC
    resources: tuple[ResourceConfig, ...]
    source: SourceConnection
    notification: Notification
    subscriptions: tuple[Subscription, ...] = ()
