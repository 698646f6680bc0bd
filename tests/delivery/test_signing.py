from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.delivery import elements_signature, sign_headers, signing_keys, standard_signature
from gateway.errors import InvalidSigningKey
from gateway.instances.model import Notification

WHSEC_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"message": {"eventId": "0123456789abcdef0123456789abcdef"}}'


def test_elements_signature_matches_the_cloud_elements_vector() -> None:
    signature = elements_signature("MySecretEventSignatureKey", b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>")
    assert signature == "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="


def test_standard_signature_matches_the_standard_webhooks_vector() -> None:
    signature = standard_signature(
        WHSEC_KEY, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_plain_key_signs_with_its_utf8_bytes() -> None:
    key = "MySecretEventSignatureKey"
    digest = hmac.new(key.encode(), b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert standard_signature(key, "msg_1", 1700000000, BODY) == "v1," + base64.b64encode(digest).decode()


def _headers(keys: list[str], body: bytes = BODY, msg_id: str = "msg_1") -> dict[str, str]:
    return sign_headers(keys=keys, msg_id=msg_id, timestamp=int(time.time()), body=body)


def test_a_receiver_verifies_a_whsec_key_with_the_key_as_given() -> None:
    Webhook(WHSEC_KEY).verify(BODY, _headers([WHSEC_KEY]))


def test_a_receiver_verifies_a_plain_key_given_as_bytes_or_as_whsec_of_its_base64() -> None:
    key = "MySecretEventSignatureKey"
    headers = _headers([key])
    Webhook(key.encode()).verify(BODY, headers)
    Webhook("whsec_" + base64.b64encode(key.encode()).decode()).verify(BODY, headers)


def test_a_plain_key_passed_to_the_library_as_a_string_does_not_verify() -> None:
    """The trap the module docstring warns of: the library reads the string as base64."""
    with pytest.raises(WebhookVerificationError):
        Webhook("plainkey").verify(BODY, _headers(["plainkey"]))


def test_headers_carry_ids_timestamp_and_one_signature_per_key() -> None:
    headers = sign_headers(keys=["new", "old"], msg_id="msg_1", timestamp=1700000000, body=BODY)
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": " ".join(
            [
                standard_signature("new", "msg_1", 1700000000, BODY),
                standard_signature("old", "msg_1", 1700000000, BODY),
            ]
        ),
        "Elements-Webhook-Id": "msg_1",
        "Elements-Webhook-Signature": elements_signature("new", BODY),
    }


def test_without_keys_only_the_identity_headers_are_set() -> None:
    headers = sign_headers(keys=[], msg_id="msg_1", timestamp=1700000000, body=BODY)
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "Elements-Webhook-Id": "msg_1",
    }


def test_during_rotation_receivers_with_either_key_verify() -> None:
    old, new = "whsec_" + base64.b64encode(b"old secret").decode(), "plain new key"
    headers = _headers([new, old])
    Webhook(old).verify(BODY, headers)
    Webhook(new.encode()).verify(BODY, headers)
    # Cloud Elements receivers compare one value, so only the current key matches there.
    assert headers["Elements-Webhook-Signature"] == elements_signature(new, BODY)


@pytest.mark.parametrize("secret", ["Q0xYZ", "$$$$", ""])
def test_a_whsec_key_that_is_not_base64_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(InvalidSigningKey) as raised:
        standard_signature("whsec_" + secret, "msg_1", 1700000000, BODY)
    assert not raised.value.retriable
    assert not secret or secret not in str(raised.value)


def _notification(
    current: str | None, previous: str | None = None, rotated_at: float | None = None
) -> Notification:
    return Notification(
        enabled=True,
        callback_url="https://example.com/hook",
        signature_key=current,
        previous_signature_key=previous,
        signature_rotated_at=rotated_at,
    )


@pytest.mark.parametrize(
    ("current", "previous", "rotated_at", "expected"),
    [
        (None, None, None, ()),
        (None, "old", 1000.0, ()),
        ("new", None, None, ("new",)),
        ("new", "old", 1000.0, ("new", "old")),  # 100 s into the grace period
        ("new", "old", 1100.0 - 86400 + 1, ("new", "old")),
        ("new", "old", 1100.0 - 86400, ("new",)),  # grace over, to the second
        ("new", "old", None, ("new",)),  # rotation time unknown: no grace
        ("new", "new", 1000.0, ("new",)),
    ],
)
def test_signing_keys(
    current: str | None, previous: str | None, rotated_at: float | None, expected: tuple[str, ...]
) -> None:
    assert signing_keys(_notification(current, previous, rotated_at), now=1100.0) == expected


def test_signing_keys_grace_is_configurable() -> None:
    keys = signing_keys(_notification("new", "old", 1000.0), now=1100.0, grace_seconds=60)
    assert keys == ("new",)


_plain_keys = st.text(st.characters(codec="utf-8"), min_size=1).filter(lambda k: not k.startswith("whsec_"))
_whsec_keys = st.binary(min_size=1, max_size=64).map(lambda b: "whsec_" + base64.b64encode(b).decode())
_keys = st.one_of(_plain_keys, _whsec_keys)
_bodies = st.text(st.characters(codec="utf-8")).map(str.encode)  # the library decodes bodies as UTF-8
_ids = st.text(st.characters(codec="utf-8"), min_size=1)


def _receiver(key: str) -> Webhook:
    return Webhook(key) if key.startswith("whsec_") else Webhook(key.encode())


@given(keys=st.lists(_keys, min_size=1, max_size=3), body=_bodies, msg_id=_ids)
def test_the_standard_webhooks_library_accepts_every_key_we_sign_with(
    keys: list[str], body: bytes, msg_id: str
) -> None:
    headers = _headers(keys, body, msg_id)
    for key in keys:
        _receiver(key).verify(body, headers, json_parse=False)


@given(key=_keys, body=_bodies.filter(bool), msg_id=_ids, data=st.data())
def test_a_single_bit_flip_in_the_body_is_rejected(
    key: str, body: bytes, msg_id: str, data: st.DataObject
) -> None:
    headers = _headers([key], body, msg_id)
    bit = data.draw(st.integers(0, len(body) * 8 - 1))
    tampered = bytearray(body)
    tampered[bit // 8] ^= 1 << (bit % 8)
    # A flip may also break the UTF-8 the library decodes first; that is a rejection as well.
    with pytest.raises((WebhookVerificationError, UnicodeDecodeError)):
        _receiver(key).verify(bytes(tampered), headers, json_parse=False)
    assert elements_signature(key, bytes(tampered)) != headers["Elements-Webhook-Signature"]
