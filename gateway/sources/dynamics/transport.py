"""HTTP exchanges with one Dynamics connection: the concurrency bound, the retry loop, and the one place
where aiohttp's errors become the gateway's."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.errors import (
    SourceError,
    SourceRateLimited,
    SourceRequestError,
    SourceResponseError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.metrics import SourceMetrics

ELEMENT = "dynamicscrmadfs"  # the `element` label of every source metric

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How one request is retried before its error reaches the poller; delays are in seconds.

    `tries` bounds attempts on 5xx answers, timeouts and connection errors, which wait
    `base_delay * 2**n` (jittered, at most `max_delay`) in between. `throttled_tries` bounds attempts on
    429 answers, which wait their Retry-After (`base_delay` when it is missing); one longer than
    `max_retry_after` is not waited for here, because the poller's next interval serves better.
    Tests set `base_delay` near 0 or pass `sleep`.
    """

    tries: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0
    throttled_tries: int = 5
    max_retry_after: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def backoff(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2.0 ** (failures - 1) * random.uniform(0.5, 1.5))


@dataclass(frozen=True, slots=True)
class Response:
    url: URL
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise SourceResponseError(
                f"{self.url} answered {self.status} with a body that is not JSON: {exc}",
                url=str(self.url),
                status=self.status,
            ) from exc


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, given as seconds or as an HTTP-date; None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):  # neither form; the caller falls back to its own delay
            return None
    return seconds if 0.0 <= seconds < math.inf else None


def dataverse_message(response: Response) -> str:
    """The `code: message` of a Dataverse error body `{"error": {"code", "message"}}`, or the body's start."""
    try:
        error = orjson.loads(response.body)["error"]
        return f"{error['code']}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):  # not Dataverse's shape: show what came back
        return response.body[:200].decode("utf-8", "replace") or "(empty body)"


class Transport:
    """Sends requests for one connection, at most `max_concurrency` at a time."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        metrics: SourceMetrics,
        policy: RetryPolicy,
        timeout: float,
        max_concurrency: int,
        user_agent: str,
    ) -> None:
        self._session = session
        self._user_agent = user_agent
        self._metrics = metrics
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._throttled = metrics.throttled.labels(element=ELEMENT)
        self._retry_after = metrics.retry_after_seconds.labels(element=ELEMENT)

    async def send(
        self, method: str, url: URL, *, headers: Mapping[str, str], data: Mapping[str, str] | None = None
    ) -> Response:
        """One exchange, whatever its status. Raises SourceTimeout, SourceUnavailable, or
        SourceResponseError for a body cut short."""
        status_class = "error"
        try:
            async with (
                self._slots,
                self._session.request(
                    method,
                    url,
                    headers={"User-Agent": self._user_agent, **headers},
                    data=data,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response,
            ):
                status_class = f"{response.status // 100}xx"
                body = await response.read()
                return Response(url, response.status, response.headers, body)
        except TimeoutError as exc:
            raise SourceTimeout(
                f"{method} {url}: no complete answer within {self._timeout.total} s", url=str(url)
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise SourceResponseError(f"{method} {url}: body cut short: {exc}", url=str(url)) from exc
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}", url=str(url)) from exc
        finally:
            self._metrics.requests.labels(element=ELEMENT, status_class=status_class).inc()

    def raise_for_status(self, response: Response) -> None:
        """Raise the SourceError an unsuccessful status means; a 429 carries its Retry-After."""
        status = response.status
        if 200 <= status < 300:
            return
        url = str(response.url)
        if status == 429:
            self._throttled.inc()
            delay = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            raise SourceRateLimited(
                f"{url} throttled the request: {dataverse_message(response)}",
                retry_after=self._policy.base_delay if delay is None else delay,
                url=url,
            )
        error = SourceUnavailable if status >= 500 else SourceRequestError
        raise error(f"{url} answered {status}: {dataverse_message(response)}", url=url, status=status)

    async def retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run `attempt` until it succeeds, its error is not retriable, or the policy's tries run out."""
        policy = self._policy
        failures = throttles = 0
        while True:
            try:
                return await attempt()
            except SourceRateLimited as exc:
                throttles += 1
                if throttles >= policy.throttled_tries or exc.retry_after > policy.max_retry_after:
                    raise
                delay = exc.retry_after
                self._retry_after.observe(delay)
                _log.warning("%s; retrying in %.2f s as asked", exc, delay)
            except SourceError as exc:
                failures += 1
                if not exc.retriable or failures >= policy.tries:
                    raise
                delay = policy.backoff(failures)
                _log.warning("%s; retrying in %.2f s", exc, delay)
            await policy.sleep(delay)
