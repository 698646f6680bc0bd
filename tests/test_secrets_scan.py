"""The secrets scan: a full run with every kind of instance secret, then a search for each of them in
plaintext in every topic the gateway wrote (read_committed and read_uncommitted), its log lines at
DEBUG, `/metrics`, and every response its API and metrics servers gave."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook
from yarl import URL

from gateway.instances.secrets import ENCRYPTED
from gateway.logs import configure_logging
from gateway.runtime import start_gateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, seed_instance, wait_for
from tests.delivery._support import Hit, delivery_settings, receiving
from tests.polling._support import insert, only, polls

USER = "scan@contoso.example"
CLIENT = "scan-client"
BASIC_USER = "scan-receiver"
_INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class _Secrets:
    password: str = field(default_factory=lambda: _secret("password"))
    client_secret: str = field(default_factory=lambda: _secret("client-secret"))
    signature_a: str = field(default_factory=lambda: _secret("signature-a"))
    signature_a_new: str = field(default_factory=lambda: _secret("signature-a-new"))
    signature_b: str = field(default_factory=lambda: _secret("signature-b"))
    callback_query_token: str = field(default_factory=lambda: _secret("query-token"))
    callback_path_token: str = field(default_factory=lambda: _secret("path-token"))
    header_a: str = field(default_factory=lambda: _secret("header-a"))
    header_b: str = field(default_factory=lambda: _secret("header-b"))
    basic_password: str = field(default_factory=lambda: _secret("basic-password"))

    def forms(self) -> dict[str, bytes]:
        """Each secret as it could leak: as given, and the two encodings the gateway makes of them."""
        found = {name: value.encode() for name, value in vars(self).items()}
        basic = base64.b64encode(f"{BASIC_USER}:{self.basic_password}".encode())
        found["basic-auth header"] = basic
        found["GATEWAY_SECRET_KEY"] = SECRET_KEY.encode()
        found["GATEWAY_ADMIN_TOKEN"] = ADMIN_TOKEN.encode()
        return found


@dataclass
class _Responses:
    """Every response body and header the test got from the gateway, to scan afterwards."""

    seen: list[bytes] = field(default_factory=list)

    async def call(self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Any:
        async with session.request(method, path, **kwargs) as response:
            body = await response.read()
            self.seen.append(body)
            self.seen.append("\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode())
            assert response.status < 500, (method, path, body)
            return orjson.loads(body) if response.content_type == "application/json" else body


def _instance_a(sim: Simulator, secrets: _Secrets, receiver_url: str) -> dict[str, Any]:
    """The user-and-password instance, its webhooks signed and sent with basic auth and a header."""
    body = only(seed_instance("2016", sim), "accounts")
    body["configuration"].update(
        {
            "user.username": USER,
            "user.password": secrets.password,
            "event.notification.callback.url": f"{receiver_url}?token={secrets.callback_query_token}",
            "event.notification.signature.key": secrets.signature_a,
            "event.notification.callback.headers": {"X-Api-Key": secrets.header_a},
            "event.notification.basic.username": BASIC_USER,
            "event.notification.basic.password": secrets.basic_password,
        }
    )
    body["name"] = "scan-a"
    return body


def _instance_b(sim: Simulator, secrets: _Secrets, receiver_url: str) -> dict[str, Any]:
    """The OAuth client instance, whose receiver always fails: its changes end as dead letters."""
    body = only(seed_instance("2016", sim), "accounts")
    configuration = body["configuration"]
    del configuration["user.username"], configuration["user.password"]
    configuration.update(
        {
            "oauth.api.key": CLIENT,
            "oauth.api.secret": secrets.client_secret,
            "oauth.token.url": f"{sim.base_url}/adfs/oauth2/token",
            "event.notification.callback.url": f"{receiver_url}/dead/{secrets.callback_path_token}",
            "event.notification.signature.key": secrets.signature_b,
            # As Cloud Elements callers send it: a string of JSON.
            "event.notification.callback.headers": orjson.dumps({"Authorization": secrets.header_b}).decode(),
        }
    )
    body["name"] = "scan-b"
    return body


async def _answer(_attempt: int, request: web.Request) -> web.StreamResponse:
    return web.Response(status=500 if request.path.startswith("/hooks/in/dead") else 200)


@asynccontextmanager
async def _captured_logs() -> AsyncIterator[io.StringIO]:
    """The gateway's own logging set-up at DEBUG, written to a buffer instead of stderr."""
    configure_logging("DEBUG", role="all")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer


async def _topics_written(settings: Settings, unique: str) -> dict[str, int]:
    """The topics of this test's prefixes, and the broker's own two, by their partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if unique in t or t in _INTERNAL_TOPICS]
        described = await admin.describe_topics(names)
        assert all(d["error_code"] == 0 and d["partitions"] for d in described), described
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


async def _read_everything(
    settings: Settings, topic: str, partitions: int, isolation: str
) -> tuple[int, bytes]:
    """Every record of every partition up to its end, as keys, values and headers: (count, bytes)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    chunks: list[bytes] = []
    count = 0
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        await consumer.seek_to_beginning(*assigned)
        pending = {tp for tp in assigned if ends[tp] > 0}
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for record in records:
                    count += 1
                    chunks.extend((record.key or b"", record.value or b""))
                    for name, value in record.headers:
                        chunks.extend((name.encode(), value or b""))
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return count, b"\n".join(chunks)


def _leaks(forms: dict[str, bytes], where: str, text: bytes) -> list[str]:
    return [f"{name} in {where}" for name, form in forms.items() if form in text]


async def test_no_secret_of_a_run_is_found_in_plaintext_anywhere_the_gateway_wrote(
    settings: Settings, unique: str, root_logger: logging.Logger
) -> None:
    secrets = _Secrets()
    settings = delivery_settings(settings, metrics_per_instance=True)
    registry = CollectorRegistry()
    responses = _Responses()
    async with (
        Simulator(users={USER: secrets.password}, clients={CLIENT: secrets.client_secret}, seed=3) as sim,
        receiving(_answer) as receiver,
        _captured_logs() as logs,
    ):
        receiver_url = receiver.url.split("?")[0]  # http://127.0.0.1:<port>/hooks/in
        async with (
            start_gateway(settings, registry=registry) as gateway,
            aiohttp.ClientSession(
                base_url=gateway.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as api,
            aiohttp.ClientSession(base_url=gateway.metrics_url) as metrics,
        ):
            body_a = _instance_a(sim, secrets, receiver_url)
            body_b = _instance_b(sim, secrets, receiver_url)
            refused = {**body_a, "element": {"key": "salesforce"}}  # rejected, with every secret of A in it
            assert "errors" in await responses.call(api, "POST", "/instances", json=refused)
            id_a = (await responses.call(api, "POST", "/instances", json=body_a))["id"]
            id_b = (await responses.call(api, "POST", "/instances", json=body_b))["id"]
            # Both have read their baseline; then a change reaches both callbacks.
            await wait_for(lambda: polls(registry, "accounts") >= 4, within=30)
            account = insert(sim, "accounts", {"name": "scanned"})

            def delivered_to_a() -> list[Hit]:
                return [h for h in receiver.hits if h.path == "/hooks/in" and account in h.body.decode()]

            await wait_for(lambda: len(delivered_to_a()) >= 1, within=30)
            (hit,) = delivered_to_a()
            Webhook(secrets.signature_a.encode()).verify(hit.body, hit.headers)
            assert hit.headers["Authorization"] == "Basic " + secrets.forms()["basic-auth header"].decode()
            assert hit.headers["X-Api-Key"] == secrets.header_a

            async def dead_letters() -> int:
                listed = await responses.call(api, "GET", f"/instances/{id_b}/deliveries")
                return int(listed["count"])

            async def dead_lettered() -> bool:
                return await dead_letters() >= 1

            await wait_for(dead_lettered, within=30)
            assert any(h.headers.get("Authorization") == secrets.header_b for h in receiver.hits)

            # A key rotation keeps the previous key; a replay sends the dead letter again, and it
            # fails again.
            patch = {"configuration": {"event.notification.signature.key": secrets.signature_a_new}}
            await responses.call(api, "PATCH", f"/instances/{id_a}", json=patch)
            replayed = await responses.call(api, "POST", f"/instances/{id_b}/deliveries/replay", json={})
            assert replayed["replayed"] >= 1
            second = insert(sim, "accounts", {"name": "scanned again"})

            def second_to_a() -> list[Hit]:
                return [h for h in receiver.hits if h.path == "/hooks/in" and second in h.body.decode()]

            await wait_for(lambda: len(second_to_a()) >= 1, within=30)
            for key in (secrets.signature_a_new, secrets.signature_a):  # both, while receivers switch
                Webhook(key.encode()).verify(second_to_a()[0].body, second_to_a()[0].headers)

            async def both_dead_lettered() -> bool:  # the replayed change again, and the second one
                return await dead_letters() == 2

            await wait_for(both_dead_lettered, within=30)

            for path in ("/instances", f"/instances/{id_a}", f"/instances/{id_b}", "/cluster"):
                await responses.call(api, "GET", path)
            await responses.call(api, "GET", "/openapi.json")
            for session in (api, metrics):
                for path in ("/healthz", "/readyz", "/metrics"):
                    await responses.call(session, "GET", path)
            shown_a = await responses.call(api, "GET", f"/instances/{id_a}")
            async with aiohttp.ClientSession(base_url=gateway.api_url) as anonymous:
                await responses.call(anonymous, "GET", f"/instances/{id_a}")  # 401
            await responses.call(api, "GET", "/instances/no-such-instance")  # 404
            await responses.call(api, "DELETE", f"/instances/{id_b}")

    forms = secrets.forms()
    log_text = logs.getvalue().encode()
    response_text = b"\n".join(responses.seen)
    leaks = _leaks(forms, "logs", log_text)
    leaks += _leaks(forms, "responses", response_text)
    scanned: dict[str, int] = {}
    instances_text = b""
    topics = sorted((await _topics_written(settings, unique)).items())
    read_bytes = 0
    for topic, partitions in topics:
        for isolation in ("read_uncommitted", "read_committed"):
            count, text = await _read_everything(settings, topic, partitions, isolation)
            scanned[f"{topic} ({isolation})"] = count
            read_bytes += len(text)
            leaks += _leaks(forms, f"{topic} ({isolation})", text)
            if topic.endswith(".instances"):
                instances_text += text
    print(
        f"secrets scan: looked for {len(forms)} secrets ({', '.join(forms)});"
        f" read {len(topics)} topics twice ({len(scanned)} reads, {sum(scanned.values())} records,"
        f" {read_bytes} bytes), {len(responses.seen) // 2} responses ({len(response_text)} bytes),"
        f" {len(log_text.splitlines())} log lines ({len(log_text)} bytes); leaks: {len(leaks)};"
        f" records per read: {scanned}"
    )
    assert leaks == []
    shown_url = shown_a["configuration"]["event.notification.callback.url"]
    assert shown_url == f"{URL(receiver_url).origin()}/********"  # the host stays visible
    # The scan saw what it had to: the instances, the events, the retries and the dead letters.
    for suffix in (".instances", ".crm.accounts", ".dead-letters"):
        assert any(topic.split(" ")[0].endswith(suffix) and n > 0 for topic, n in scanned.items()), suffix
    assert any(".retry" in topic and n > 0 for topic, n in scanned.items())
    # and the secrets were there, encrypted: absent is not the same as hidden.
    assert instances_text.count(f'"{ENCRYPTED}"'.encode()) >= len(vars(secrets)) - 1
