"""One webhook request: its body, headers and signatures, and what the receiver's answer means.

This is the adapter boundary for aiohttp: every error of a request leaves `send` as a
`DeliveryError` (`errors.py`) whose `retriable` says what to do next, the original as its cause.
Messages name the callback host, never the URL: a URL may carry a token.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from gateway import __version__
from gateway.delivery.bodies import render_body
from gateway.delivery.signing import sign_headers, signing_keys
from gateway.delivery.ssrf import GuardedConnector, refusal_from
from gateway.errors import (
    CallbackFailed,
    CallbackGone,
    CallbackThrottled,
    CallbackTimeout,
    CallbackUnreachable,
)
from gateway.events import ChangeEvent
from gateway.instances.model import Notification
from gateway.settings import IPNetwork

USER_AGENT = f"event-gateway/{__version__}"
THROTTLING_STATUSES = frozenset({429, 502, 503, 504})
_DRAIN_BYTES = 64 * 1024  # read this much of an answer so the connection can be reused
_NO_SESSION_TIMEOUT = aiohttp.ClientTimeout(total=None)  # `send` bounds the whole attempt itself


@functools.lru_cache(maxsize=4096)  # asked for every attempt, of a handful of callback URLs
def callback_host(url: str) -> str:
    """`host:port` of a callback URL: what logs, limits and circuit breakers name."""
    parsed = URL(url)
    return f"{(parsed.host or '').lower()}:{parsed.port}"


def webhook_session(*, allowed: Sequence[IPNetwork], limit: int) -> aiohttp.ClientSession:
    """The session webhooks go out through: only to addresses the callback policy allows."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(allowed=allowed, limit=limit),
        trust_env=False,
        # A receiver's cookies must not ride along on the next webhook, to it or to another
        # instance's receiver on the same host; nor does a webhook negotiate its answer.
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept", "Accept-Encoding"),
    )


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    url: str = field(repr=False)  # the URL and the headers may hold credentials
    host: str
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)


def build_request(
    event: ChangeEvent, notification: Notification, *, now: float, rotation_grace: float
) -> WebhookRequest:
    """The request of one attempt. `webhook-id` is the event's id, so every attempt of the same
    event, and every redelivery after a crash, carries the same one; the timestamp is the attempt's.

    Raises `EventDecodeError` when the event does not fit the instance's body format, and
    `InvalidSigningKey` for a `whsec_` key that is not base64.
    """
    url = notification.callback_url
    if url is None:
        raise ValueError("the notification has no callback URL")
    body = render_body(event, notification.format)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update(notification.callback_headers)
    if notification.basic_username is not None and notification.basic_password is not None:
        credentials = f"{notification.basic_username}:{notification.basic_password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    keys = signing_keys(notification, now=now, grace_seconds=rotation_grace)
    headers.update(sign_headers(keys=keys, msg_id=event.id, timestamp=int(now), body=body))
    return WebhookRequest(url=url, host=callback_host(url), body=body, headers=headers)


async def send(
    session: aiohttp.ClientSession, request: WebhookRequest, *, time_limit: float, retry_after_max: float
) -> int:
    """POST the request, redirects not followed; the 2xx status, or a `DeliveryError`."""
    host = request.host
    try:
        async with (
            asyncio.timeout(time_limit),
            session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                allow_redirects=False,
                timeout=_NO_SESSION_TIMEOUT,
            ) as response,
        ):
            await response.content.read(_DRAIN_BYTES)
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except TimeoutError as exc:
        raise CallbackTimeout(f"no answer from {host} within {time_limit:g} s", host=host) from exc
    except aiohttp.ClientError as exc:
        refused = refusal_from(exc)
        if refused is not None:
            raise refused from exc
        raise CallbackUnreachable(_describe(exc, host), host=host) from exc
    except OSError as exc:
        raise CallbackUnreachable(
            f"{type(exc).__name__} talking to {host}: {exc.strerror}", host=host
        ) from exc
    if 200 <= status < 300:
        return status
    if status == 410:
        raise CallbackGone(f"{host} answered 410 Gone", host=host, status=status)
    if status in THROTTLING_STATUSES:
        delay = parse_retry_after(retry_after, now=time.time(), most=retry_after_max)
        message = f"{host} answered {status}" + ("" if delay is None else f", Retry-After {delay:g} s")
        raise CallbackThrottled(message, host=host, status=status, retry_after=delay)
    if 300 <= status < 400:
        raise CallbackFailed(
            f"{host} answered {status}; redirects are not followed", host=host, status=status
        )
    raise CallbackFailed(f"{host} answered {status}", host=host, status=status)


def _describe(exc: aiohttp.ClientError, host: str) -> str:
    # Not str(exc): some aiohttp errors quote the whole URL.
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {host}: {reason}"
    return f"{type(exc).__name__} talking to {host}"


def parse_retry_after(value: str | None, *, now: float, most: float) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date, clamped to [0, most]; None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.fromtimestamp(now, tz=UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), most)
