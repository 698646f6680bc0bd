"""Instance secrets, encrypted at rest with keys derived from GATEWAY_SECRET_KEY and its predecessors.

Three kinds of field can carry a credential, and each is stored as `{"$encrypted": "<Fernet token>"}`:
- `SECRET_KEYS`, whose whole value is a secret (passwords, signature keys);
- `SECRET_URL_KEYS`, the callback URL, whose path or query may hold a token
  (`https://hooks.example.com/in?token=...`);
- `CALLBACK_HEADERS`, every value of it (`Authorization: Bearer ...`), or the whole of it when it is given
  as a string of JSON.

A body stored before a field was encrypted still loads: plaintext passes decryption unchanged, and
the next save encrypts it. After GATEWAY_SECRET_KEY changes, the former keys still decrypt, and
`SecretBox.is_current` tells which bodies `event-gateway reencrypt` must rewrite.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from gateway.errors import ConfigError, SecretKeyMismatch

SECRET_KEYS = (
    "user.password",
    "oauth.api.secret",
    "event.notification.signature.key",
    "event.notification.signature.previous.key",
    "event.notification.basic.password",
)
# Not oauth.token.url or dynamics.base.url: validation refuses user info in both and a query in the
# latter, and a token endpoint takes credentials in the request body, never the URI (RFC 6749 2.3.1).
SECRET_URL_KEYS = ("event.notification.callback.url",)
CALLBACK_HEADERS = "event.notification.callback.headers"
ENCRYPTED = "$encrypted"

_MIN_KEY_LENGTH = 32
_HKDF_INFO = b"event-gateway/instance-secrets/v1"

# What to do with one stored value: (configuration key, value) -> new value.
_Transform = Callable[[str, object], object]


class SecretBox:
    """Encrypts the secrets of an instance body's `configuration` with the current key; decrypts with
    the current key or any previous one (newest first), so that a key can be rotated."""

    __slots__ = ("_current", "_keyring")

    def __init__(self, key: SecretStr | str, *, previous: Iterable[SecretStr | str] = ()) -> None:
        self._current = _fernet(key)
        self._keyring = MultiFernet([self._current, *(_fernet(old) for old in previous)])

    def encrypt_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `body` whose plaintext secrets are replaced by `{"$encrypted": "<Fernet token>"}`;
        values already encrypted are kept as they are."""
        return _transformed(body, self._encrypt)

    def decrypt_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `body` with its secrets in plaintext; SecretKeyMismatch if no key decrypts one."""
        return _transformed(body, self._decrypt)

    def is_current(self, body: Mapping[str, Any]) -> bool:
        """Whether every secret of `body` is encrypted with the current key: nothing to rewrite."""
        stale: list[str] = []

        def check(key: str, value: object) -> object:
            token = _token(value)
            if token is None:
                if isinstance(value, str):
                    stale.append(key)  # plaintext, stored before this field was encrypted
            elif not _decrypts(self._current, token):
                stale.append(key)
            return value

        _transformed(body, check)
        return not stale

    def _encrypt(self, _key: str, value: object) -> object:
        if isinstance(value, str):
            return {ENCRYPTED: self._current.encrypt(value.encode()).decode("ascii")}
        return value

    def _decrypt(self, key: str, value: object) -> object:
        token = _token(value)
        if token is None:
            return value
        try:
            return self._keyring.decrypt(token).decode()
        except (InvalidToken, ValueError) as exc:  # ValueError: a token that is not even ASCII
            raise SecretKeyMismatch(
                f"cannot decrypt {key}: neither GATEWAY_SECRET_KEY nor GATEWAY_SECRET_KEY_PREVIOUS is the"
                " key it was encrypted with (or the stored token is damaged)"
            ) from exc


def is_encrypted(value: object) -> bool:
    return _token(value) is not None


def _fernet(key: SecretStr | str) -> Fernet:
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    if len(secret) < _MIN_KEY_LENGTH:
        raise ConfigError(f"a secret key must be at least {_MIN_KEY_LENGTH} characters")
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _decrypts(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token)
    except (InvalidToken, ValueError):
        return False
    return True


def _transformed(body: Mapping[str, Any], transform: _Transform) -> dict[str, Any]:
    """A deep copy of `body` with `transform` applied to every value that is, or holds, a secret: in
    the instance's configuration and in each subscription's."""
    result = copy.deepcopy(dict(body))
    _transform_configuration(result.get("configuration"), transform)
    subscriptions = result.get("subscriptions")
    if isinstance(subscriptions, list):
        for subscription in subscriptions:
            if isinstance(subscription, dict):
                _transform_configuration(subscription.get("configuration"), transform)
    return result


def _transform_configuration(configuration: object, transform: _Transform) -> None:
    if not isinstance(configuration, dict):
        return
    for key in (*SECRET_KEYS, *SECRET_URL_KEYS):
        if key in configuration:
            configuration[key] = transform(key, configuration[key])
    headers = configuration.get(CALLBACK_HEADERS)
    if isinstance(headers, dict) and not is_encrypted(headers):
        configuration[CALLBACK_HEADERS] = {
            name: transform(CALLBACK_HEADERS, value) for name, value in headers.items()
        }
    elif headers is not None:  # a string of JSON, encrypted whole
        configuration[CALLBACK_HEADERS] = transform(CALLBACK_HEADERS, headers)


def _token(value: object) -> str | None:
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(token := value.get(ENCRYPTED), str):
        return token
    return None
