"""What responses and log lines show of an instance body: secrets masked, callback hosts visible.

Show instance bodies only through `mask_body`. A client that sends a body it read back in a PATCH
gets its masks replaced by the stored values (`unmasked_patch`), so reading and writing round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from yarl import URL

from gateway.instances.secrets import CALLBACK_HEADERS, SECRET_KEYS, SECRET_URL_KEYS

MASK = "********"


def mask_url(url: str) -> str:
    """`scheme://host[:port]/********`: the host an operator needs, without the user info, path, query
    or fragment, any of which may carry a token. Read with yarl, as deliveries are, so the host shown is
    the one connected to. What is not an http(s) URL with a host is masked whole."""
    try:
        parsed = URL(url)
        host, port = parsed.host, parsed.explicit_port
    except (ValueError, TypeError):
        return MASK
    if parsed.scheme not in ("http", "https") or not host:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    return f"{parsed.scheme}://{netloc}{'' if port is None else f':{port}'}/{MASK}"


def _mask_headers(headers: object) -> object:
    """The header names, each value masked; in the form given, an object or a string of JSON."""
    if isinstance(headers, Mapping):
        return {str(name): MASK for name in headers}
    if isinstance(headers, str):
        try:
            decoded = json.loads(headers)
        except (ValueError, RecursionError):
            return MASK
        if isinstance(decoded, Mapping):
            return json.dumps(_mask_headers(decoded))
    return MASK


def mask_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `body` with every secret masked, at any depth.

    Any depth, so that a secret put in the wrong place of a rejected body is masked too.
    """
    return {str(key): _mask_value(str(key), value) for key, value in body.items()}


def unmasked_patch(patch: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` without the masks `mask_body` put in place of the stored secrets, so that a merge patch
    keeps those secrets; any other value, a new secret included, stays in the patch."""
    configuration, kept = patch.get("configuration"), stored.get("configuration")
    if not isinstance(configuration, Mapping):
        return dict(patch)
    if not isinstance(kept, Mapping):
        kept = {}
    result = {key: value for key, value in configuration.items() if not _is_echoed_mask(key, value, kept)}
    if CALLBACK_HEADERS in result and CALLBACK_HEADERS in kept:
        result[CALLBACK_HEADERS] = _unmasked_headers(result[CALLBACK_HEADERS], kept[CALLBACK_HEADERS])
    return {**patch, "configuration": result}


def _is_echoed_mask(key: str, value: object, stored: Mapping[str, Any]) -> bool:
    if key in SECRET_KEYS:
        return value == MASK
    if key in SECRET_URL_KEYS and key in stored:
        return value == _mask_value(key, stored[key])
    return False


def _mask_value(key: str, value: object) -> object:
    if key in SECRET_KEYS:
        return MASK
    if key in SECRET_URL_KEYS:
        return mask_url(value) if isinstance(value, str) else MASK
    if key == CALLBACK_HEADERS:
        return _mask_headers(value)
    if isinstance(value, Mapping):
        return mask_body(value)
    if isinstance(value, list):
        return [_mask_value("", item) for item in value]
    return value


def _unmasked_headers(patched: object, stored: object) -> object:
    """Masked header values replaced by the stored values of the same names."""
    if patched == _mask_headers(stored):
        return stored  # sent back as read: kept exactly, in the form it was stored in
    stored_headers = _decoded(stored)
    if isinstance(patched, Mapping):
        # A merge patch: leaving a masked header out keeps the stored one.
        return {name: v for name, v in patched.items() if not (v == MASK and name in stored_headers)}
    patched_headers = _decoded(patched)
    if isinstance(patched, str) and patched_headers:
        restored = {
            name: stored_headers[name] if value == MASK and name in stored_headers else value
            for name, value in patched_headers.items()
        }
        return json.dumps(restored)
    return patched


def _decoded(headers: object) -> dict[str, Any]:
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except (ValueError, RecursionError):
            return {}
    return dict(headers) if isinstance(headers, Mapping) else {}
