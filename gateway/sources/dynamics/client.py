"""The Dynamics 365 / Dataverse source: one poll of one resource as pages of normalised records."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from gateway import __version__
from gateway.errors import SourceAuthError, SourceRequestError, SourceResponseError
from gateway.formats.ceql import ChangeTracking, ODataFilter, parse_hub_url, translate_where
from gateway.instances.model import ResourceConfig, SourceConnection
from gateway.metrics import SourceMetrics
from gateway.sources.base import FetchRequest, SourcePage
from gateway.sources.dynamics.auth import OAuthTokens
from gateway.sources.dynamics.entities import EntitySet, entity_set
from gateway.sources.dynamics.metadata import TableColumns, definition_path, read_definition
from gateway.sources.dynamics.normalise import FORMATTED_VALUE, LOOKUP_LOGICAL_NAME, normalise_page
from gateway.sources.dynamics.transport import RetryPolicy, Transport

_log = logging.getLogger(__name__)
_MAX_PAGE_SIZE = 5000  # Dataverse's largest odata.maxpagesize
_MAX_CONCURRENCY = 52  # Dataverse's concurrent-request limit per user
# Dataverse's ExpiredVersionStamp: a delta token older than the organisation's change-tracking retention.
_EXPIRED_VERSION_STAMP = "0x80044352"
_ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
_INCLUDE_ANNOTATIONS = f',odata.include-annotations="{FORMATTED_VALUE},{LOOKUP_LOGICAL_NAME}"'
_NOT_COMMENT_TEXT = re.compile(r"[^\x20-\x7e]|[()\\]")  # what may not appear in a User-Agent comment


def user_agent(replica_id: str | None = None) -> str:
    """`event-gateway/<version> (<replica id>)`: the CRM's request logs show which replica polled."""
    product = f"event-gateway/{__version__}"
    if not replica_id:
        return product
    return f"{product} ({_NOT_COMMENT_TEXT.sub('_', replica_id)})"


class DynamicsSource:
    """Reads one Dynamics connection. Share one per connection: it holds the token cache and bounds
    the connection's concurrent requests. The aiohttp session belongs to the caller. `replica_id` names
    the gateway replica in the User-Agent of every request, so the CRM's logs show who polled."""

    def __init__(
        self,
        connection: SourceConnection,
        *,
        session: aiohttp.ClientSession,
        metrics: SourceMetrics,
        max_concurrency: int = 8,
        request_timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        replica_id: str | None = None,
    ) -> None:
        if not 1 <= max_concurrency <= _MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency must be 1..{_MAX_CONCURRENCY}, not {max_concurrency}")
        self._api = f"{connection.base_url}/api/data/{connection.api_version}/"
        self._origin = URL(connection.base_url).origin()
        self._transport = Transport(
            session=session,
            metrics=metrics,
            policy=retry_policy or RetryPolicy(),
            timeout=request_timeout,
            max_concurrency=max_concurrency,
            user_agent=user_agent(replica_id),
        )
        self._auth = OAuthTokens(connection, transport=self._transport, metrics=metrics, clock=clock)
        self._columns: dict[str, TableColumns | None] = {}

    async def table_columns(self, resource: ResourceConfig) -> TableColumns | None:
        """The columns of the table a resource reads, read from its definition once and kept; None when
        the organisation has no such table."""
        table = entity_set(resource.object_type, resource.primary_key)
        if table.name not in self._columns:
            url = self._api + definition_path(table.name)
            body = await self._get(URL(url, encoded=True), prefer=None)
            self._columns[table.name] = read_definition(body, table.name, url)
        return self._columns[table.name]

    async def pages(self, request: FetchRequest) -> AsyncIterator[SourcePage]:
        """Every page of one poll, in order. With change tracking (`where=fetchChanges='true'`) the first
        poll, without a cursor, yields the baseline, and the last page carries the next poll's cursor.

        A cursor that Dataverse no longer honours (older than the organisation's change-tracking
        retention, 7 days by default) is replaced by a new baseline: without one, the resource would
        fail every poll. The changes made in between are lost, as Dataverse keeps no record of them.
        """
        query = parse_hub_url(request.url)
        table = entity_set(query.resource, request.resource.primary_key)
        mode = translate_where(query.where) if query.where else None
        tracking = isinstance(mode, ChangeTracking)
        page_size = min(request.resource.page_size, _MAX_PAGE_SIZE)
        prefer = f"odata.maxpagesize={page_size}"
        if request.resource.formatted_values:
            prefer += _INCLUDE_ANNOTATIONS
        options = _select_option(request.resource, table.primary_key)
        if isinstance(mode, ODataFilter):
            options.append("$filter=" + quote(mode.expression, safe="'(),:"))
        table_url = f"{self._api}{table.name}" + ("?" + "&".join(options) if options else "")
        page_url: str | None = table_url
        baseline = tracking
        if tracking:
            prefer = "odata.track-changes," + prefer
            if request.cursor is not None and self._is_own_link(request.cursor):
                page_url, baseline = request.cursor, False
        while page_url is not None:
            try:
                body = await self._get(URL(page_url, encoded=True), prefer)
            except SourceRequestError as exc:
                if page_url != request.cursor or _EXPIRED_VERSION_STAMP not in str(exc):
                    raise
                _log.warning("%s; reading a new baseline of %s", exc, table.name)
                page_url, baseline = table_url, True
                continue
            page, page_url = _page(body, page_url, table, tracking=tracking, baseline=baseline)
            yield page

    async def row_ids(self, resource: ResourceConfig) -> AsyncIterator[list[str]]:
        """The ids of every row of the resource's table, `$select` of the primary key alone, 5,000 a
        page: one request per 5,000 rows."""
        table = entity_set(resource.object_type, resource.primary_key)
        page_url: str | None = f"{self._api}{table.name}?$select={table.primary_key}"
        prefer = f"odata.maxpagesize={_MAX_PAGE_SIZE}"
        while page_url is not None:
            body = await self._get(URL(page_url, encoded=True), prefer)
            try:
                ids = [str(row[table.primary_key]) for row in body["value"]]
            except (TypeError, KeyError) as exc:
                raise SourceResponseError(
                    f"{page_url}: a row without its primary key {table.primary_key}", url=page_url
                ) from exc
            yield ids
            page_url = _link(body, "@odata.nextLink", page_url)

    def _is_own_link(self, cursor: str) -> bool:
        """Whether `cursor` is a delta link of this connection's organisation. One of another, left by an
        edited instance, would send this connection's token elsewhere; a new baseline replaces it."""
        if URL(cursor).origin() != self._origin:
            _log.warning("ignoring a change-tracking cursor of another organisation than %s", self._origin)
            return False
        return True

    async def _get(self, url: URL, prefer: str | None) -> dict[str, Any]:
        """One page's body, with its `value` list checked; retried as the policy says."""

        async def attempt() -> dict[str, Any]:
            token = await self._auth.token()
            response = await self._transport.send("GET", url, headers=self._headers(token, prefer))
            if response.status == 401:  # expired or revoked early: one fresh token, one more try
                self._auth.discard(token)
                token = await self._auth.token()
                response = await self._transport.send("GET", url, headers=self._headers(token, prefer))
                if response.status == 401:
                    raise SourceAuthError(f"{url} refused a freshly issued token", url=str(url), status=401)
            self._transport.raise_for_status(response)
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise SourceResponseError(
                    f"{url} answered a body without a `value` list", url=str(url), status=response.status
                )
            return body

        return await self._transport.retrying(attempt)

    @staticmethod
    def _headers(token: str, prefer: str | None) -> dict[str, str]:
        headers = {**_ODATA_HEADERS, "Authorization": f"Bearer {token}"}
        if prefer is not None:
            headers["Prefer"] = prefer
        return headers


def _select_option(resource: ResourceConfig, primary_key: str) -> list[str]:
    """`$select` for a resource that names its columns: those, plus the columns every poll reads (the
    primary key, `createdon`, `modifiedon` and the configured date columns), each once, in order."""
    if resource.select is None:
        return []
    always = [primary_key, "createdon", "modifiedon"]
    for path in (resource.dates.updated_field, resource.dates.created_field):
        if path is not None and path.startswith("attributes.") and path.count(".") == 1:
            always.append(path.removeprefix("attributes."))
    return ["$select=" + ",".join(dict.fromkeys([*resource.select, *always]))]


def _page(
    body: dict[str, Any], url: str, table: EntitySet, *, tracking: bool, baseline: bool
) -> tuple[SourcePage, str | None]:
    """The page a body holds, and the URL of the next one."""
    try:
        records, deleted = normalise_page(body["value"], table.primary_key, track_changes=tracking)
    except ValueError as exc:
        raise SourceResponseError(f"{url}: {exc}", url=url) from exc
    next_url = _link(body, "@odata.nextLink", url)
    cursor = None
    if tracking and next_url is None:
        cursor = _link(body, "@odata.deltaLink", url)
        if cursor is None:
            raise SourceResponseError(
                f"{url}: the last change-tracking page has no @odata.deltaLink; "
                f"is change tracking enabled on table {table.name}?",
                url=url,
            )
    return SourcePage(records, deleted, cursor=cursor, baseline=baseline), next_url


def _link(body: dict[str, Any], key: str, url: str) -> str | None:
    """The `@odata.nextLink` or `@odata.deltaLink` of a page, followed unchanged."""
    link = body.get(key)
    if link is None or isinstance(link, str):
        return link
    raise SourceResponseError(f"{url}: {key} is a JSON {type(link).__name__}, not a string", url=url)
