"""Instance secrets: encrypted at rest with a key derived from GATEWAY_SECRET_KEY, masked in logs.

Log instance bodies only through `mask_body`.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from gateway.errors import ConfigError

SECRET_KEYS = (
    "user.password",
    "oauth.api.secret",
    "event.notification.signature.key",
    "event.notification.signature.previous.key",
    "event.notification.basic.password",
)
MASK = "********"
_ENCRYPTED = "$encrypted"

_MIN_KEY_LENGTH = 32
_HKDF_INFO = b"event-gateway/instance-secrets/v1"


class SecretKeyMismatch(ConfigError):
    """A stored secret was encrypted with another GATEWAY_SECRET_KEY (or the token is damaged)."""


class SecretBox:
    """Encrypts the secret values of an instance body's `configuration` with Fernet."""

    __slots__ = ("_fernet",)

    def __init__(self, key: SecretStr | str) -> None:
        secret = key.get_secret_value() if isinstance(key, SecretStr) else key
        if len(secret) < _MIN_KEY_LENGTH:
            raise ConfigError(f"GATEWAY_SECRET_KEY must be at least {_MIN_KEY_LENGTH} characters")
        derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `body` whose plaintext secrets are replaced by `{"$encrypted": "<Fernet token>"}`."""
        result = copy.deepcopy(dict(body))
        configuration = result.get("configuration")
        if isinstance(configuration, dict):
            for key in SECRET_KEYS:
                value = configuration.get(key)
                if isinstance(value, str):
                    configuration[key] = {_ENCRYPTED: self._fernet.encrypt(value.encode()).decode("ascii")}
        return result

    def decrypt_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `body` with its encrypted secrets in plaintext; SecretKeyMismatch if the key differs."""
        result = copy.deepcopy(dict(body))
        configuration = result.get("configuration")
        if isinstance(configuration, dict):
            for key in SECRET_KEYS:
                token = _token(configuration.get(key))
                if token is not None:
                    configuration[key] = self._decrypt(key, token)
        return result

    def _decrypt(self, key: str, token: str) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except (InvalidToken, ValueError) as exc:  # ValueError: a token that is not even ASCII
            raise SecretKeyMismatch(
                f"cannot decrypt {key}: GATEWAY_SECRET_KEY does not match the key it was encrypted with"
                " (or the stored token is damaged)"
            ) from exc


def mask_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `body` with the value of every secret key replaced by a mask, at any depth.

    Any depth, so that a secret put in the wrong place of a rejected body is masked too.
    """
    return {key: MASK if key in SECRET_KEYS else _mask(value) for key, value in body.items()}


def _mask(value: object) -> object:
    if isinstance(value, Mapping):
        return mask_body(value)
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def _token(value: object) -> str | None:
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(token := value.get(_ENCRYPTED), str):
        return token
    return None
