"""Reading the configuration keys that say how to reach Dynamics and where to deliver webhooks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from gateway.instances._read import (
    Report,
    child,
    decode_object,
    get_number,
    get_string,
    has_scheme,
    http_url_problem,
    json_type,
    length_problem,
)
from gateway.instances.model import Notification, SourceConnection
from gateway.instances.secrets import ENCRYPTED

SOURCE_KEYS = (
    "user.username",
    "user.password",
    "dynamics.tenant",
    "dynamics.base.url",
    "dynamics.api.version",
    "oauth.token.url",
    "oauth.api.key",
    "oauth.api.secret",
    "oauth.scope",
)
SIGNATURE_KEY = "event.notification.signature.key"
# Set by the gateway when a PATCH replaces the signature key: receivers get both signatures for a while.
PREVIOUS_SIGNATURE_KEY = "event.notification.signature.previous.key"
SIGNATURE_ROTATED_AT = "event.notification.signature.rotated.at"
NOTIFICATION_KEYS = (
    "event.notification.enabled",
    "event.notification.callback.url",
    "event.notification.signature.key",
    PREVIOUS_SIGNATURE_KEY,
    SIGNATURE_ROTATED_AT,
    "event.notification.callback.headers",
    "event.notification.basic.username",
    "event.notification.basic.password",
    "event.notification.format",
)

_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?"
)
_API_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED_HEADERS = ("content-type", "content-length", "host")
_RESERVED_HEADER_PREFIXES = ("webhook-", "elements-webhook-")
_FORMATS: tuple[Literal["elements", "cloudevents"], ...] = ("elements", "cloudevents")


def read_source(report: Report, config: Mapping[str, Any], path: str) -> SourceConnection | None:
    username = get_string(report, config, "user.username", path)
    password = get_string(report, config, "user.password", path)
    client_id = get_string(report, config, "oauth.api.key", path)
    client_secret = get_string(report, config, "oauth.api.secret", path)
    user_pair = _check_pair(report, config, path, "user.username", "user.password")
    oauth_pair = _check_pair(report, config, path, "oauth.api.key", "oauth.api.secret")
    if user_pair is None and oauth_pair is None:
        pairs = "user.username and user.password, or oauth.api.key and oauth.api.secret"
        report.error(path, f"credentials are required: {pairs}")
    base_url = _read_base_url(report, config, path)
    api_version = get_string(report, config, "dynamics.api.version", path) or "v9.2"
    if not _API_VERSION.fullmatch(api_version):
        report.error(child(path, "dynamics.api.version"), "must be a version such as v9.2")
    token_url = _get_http_url(report, config, "oauth.token.url", path)
    scope = get_string(report, config, "oauth.scope", path)
    if base_url is None:
        return None
    return SourceConnection(
        base_url=base_url,
        api_version=api_version,
        username=username,
        password=password,
        oauth_token_url=token_url,
        oauth_client_id=client_id,
        oauth_client_secret=client_secret,
        oauth_scope=scope,
    )


def read_notification(report: Report, config: Mapping[str, Any], path: str, *, enabled: bool) -> Notification:
    callback_url = _read_callback_url(report, config, path, enabled=enabled)
    signature_key = get_string(report, config, "event.notification.signature.key", path)
    previous_key = get_string(report, config, PREVIOUS_SIGNATURE_KEY, path)
    rotated_at = None
    if SIGNATURE_ROTATED_AT in config:
        rotated_at = get_number(
            report,
            config,
            SIGNATURE_ROTATED_AT,
            path,
            default=0.0,
            minimum=0.0,
            message="must be epoch seconds",
        )
    basic_username = get_string(report, config, "event.notification.basic.username", path)
    basic_password = get_string(report, config, "event.notification.basic.password", path)
    _check_pair(
        report, config, path, "event.notification.basic.username", "event.notification.basic.password"
    )
    headers = _read_headers(report, config, path, basic_auth="event.notification.basic.username" in config)
    notification_format = get_string(report, config, "event.notification.format", path) or "elements"
    if notification_format not in _FORMATS:
        report.error(child(path, "event.notification.format"), "must be elements or cloudevents")
    return Notification(
        enabled=enabled and callback_url is not None,
        callback_url=callback_url,
        signature_key=signature_key,
        previous_signature_key=previous_key,
        signature_rotated_at=rotated_at,
        callback_headers=headers,
        basic_username=basic_username,
        basic_password=basic_password,
        format="cloudevents" if notification_format == "cloudevents" else "elements",
    )


def _check_pair(report: Report, config: Mapping[str, Any], path: str, first: str, second: str) -> bool | None:
    """Whether both keys of a pair are given (None when neither is); one without the other is an error."""
    if first in config and second in config:
        return True
    if first in config:
        report.error(child(path, second), f"is required with {first}")
    elif second in config:
        report.error(child(path, first), f"is required with {second}")
    else:
        return None
    return False


def _read_base_url(report: Report, config: Mapping[str, Any], path: str) -> str | None:
    if "dynamics.base.url" in config:
        if "dynamics.tenant" in config:
            get_string(report, config, "dynamics.tenant", path)  # unused then, but not of any type
        base_url = _get_http_url(report, config, "dynamics.base.url", path)
        if base_url is not None and ("?" in base_url or "#" in base_url):
            report.error(child(path, "dynamics.base.url"), "must not have a query or fragment")
        return None if base_url is None else base_url.rstrip("/")
    if "dynamics.tenant" not in config:
        report.error(child(path, "dynamics.tenant"), "is required unless dynamics.base.url is set")
        return None
    tenant = get_string(report, config, "dynamics.tenant", path)
    if tenant is not None and not _HOST_NAME.fullmatch(tenant):
        report.error(
            child(path, "dynamics.tenant"), "must be a host name such as yourcompanyname.crm.dynamics.com"
        )
    return None if tenant is None else f"https://{tenant}"


def _get_http_url(report: Report, config: Mapping[str, Any], key: str, path: str) -> str | None:
    url = get_string(report, config, key, path)
    problem = None if url is None else http_url_problem(url)
    if problem is not None:
        report.error(child(path, key), problem)
        return None
    return url


def _read_callback_url(report: Report, config: Mapping[str, Any], path: str, *, enabled: bool) -> str | None:
    """The callback URL; a value that does not even try to be a URL (a placeholder) is only a warning."""
    key = "event.notification.callback.url"
    url = get_string(report, config, key, path)
    problem = None if url is None else http_url_problem(url)
    if url is None or problem is None:
        return url
    if has_scheme(url) or "@" in url or url.startswith("//"):
        report.error(child(path, key), problem)
    elif enabled:
        message = "is not an absolute http(s) URL; webhooks will not be delivered until it is set"
        report.warn(child(path, key), message)
    return None


def _read_headers(
    report: Report, config: Mapping[str, Any], path: str, *, basic_auth: bool
) -> dict[str, str]:
    key = "event.notification.callback.headers"
    if key not in config:
        return {}
    path = child(path, key)
    headers = decode_object(report, config[key], path)
    if headers is None:
        return {}
    result: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            report.error(child(path, name), "is not a valid header name")
        elif lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_HEADER_PREFIXES):
            report.error(child(path, name), "is set by the gateway and cannot be configured")
        elif name == ENCRYPTED:
            report.error(child(path, name), "is reserved for the encrypted form of a stored value")
        elif basic_auth and lowered == "authorization":
            report.error(child(path, name), "conflicts with event.notification.basic.username")
        elif not isinstance(value, str):
            report.error(child(path, name), f"must be a string, got {json_type(value)}")
        elif any(char in value for char in "\r\n\0"):
            report.error(child(path, name), "must not contain line breaks or NUL characters")
        elif (problem := length_problem(value)) is not None:
            report.error(child(path, name), problem)
        else:
            result[name] = value
    return result
