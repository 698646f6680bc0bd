"""The log format, and what the logs never show: an instance's secrets, whatever fails."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import datetime

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.logs import JsonFormatter, TaskContext, configure_logging, task_context
from gateway.runtime import RunningGateway
from gateway.settings import Settings
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for
from tests.delivery._support import change, delivery_settings, produce, receiving, sample
from tests.polling._support import create, only, polls

_log = logging.getLogger("gateway.test")


def _line(record: logging.LogRecord, *, role: str | None = "all") -> dict[str, object]:
    line = JsonFormatter(role=role).format(record)
    assert "\n" not in line
    parsed: dict[str, object] = orjson.loads(line)
    return parsed


def test_a_line_is_one_json_object_with_time_level_role_and_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        _log.warning(
            "dead-lettered after %d attempts",
            3,
            extra={"instance_id": "i-1", "resource": "accounts", "event_id": "e-1", "password": "hunter2"},
        )
    line = _line(caplog.records[-1])
    assert datetime.fromisoformat(str(line.pop("time"))).tzinfo is not None
    assert line == {
        "level": "WARNING",
        "logger": "gateway.test",
        "message": "dead-lettered after 3 attempts",
        "role": "all",
        "instance_id": "i-1",
        "resource": "accounts",
        "event_id": "e-1",
    }  # `password` is no context field: it is not written


async def test_a_task_context_tags_every_line_of_the_task(caplog: pytest.LogCaptureFixture) -> None:
    async def poll() -> None:
        logging.getLogger("gateway.sources.test").warning("429; retrying in 2.00 s as asked")

    caplog.handler.addFilter(TaskContext())
    with caplog.at_level(logging.INFO, logger="gateway"):
        await asyncio.create_task(poll(), context=task_context(instance_id="i-2", resource="contacts"))
        _log.info("outside the task")
    tagged, outside = (_line(record, role=None) for record in caplog.records[-2:])
    assert (tagged["instance_id"], tagged["resource"]) == ("i-2", "contacts")
    assert "instance_id" not in outside


def _boom() -> None:
    raise ValueError("boom")


def test_an_exception_is_part_of_its_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        try:
            _boom()
        except ValueError:
            _log.exception("failed")
    line = _line(caplog.records[-1])
    assert "ValueError: boom" in str(line["exception"])


# Distinctive, so that a leak anywhere shows.
_PASSWORD = "pw-Zebra-7f3a9c"
_SIGNATURE_KEY = "sig-Quokka-91c2e8-key"
_BASIC_PASSWORD = "basic-Narwhal-5d7b10"
_CALLBACK_TOKEN = "cb-Axolotl-4e6f22"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return delivery_settings(settings)


async def _failing(_attempt: int, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=500, text="nope")


async def test_no_secret_reaches_a_log_line_or_the_metrics_when_polls_and_callbacks_fail(
    settings: Settings,
    simulator: Simulator,
    gateway: RunningGateway,
    api: aiohttp.ClientSession,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(TaskContext())
    caplog.set_level(logging.DEBUG)
    for name in ("aiokafka", "aiohttp", "gateway"):
        caplog.set_level(logging.DEBUG, logger=name)
    async with receiving(_failing) as receiver:
        body = only(seed_instance("2016", simulator), "accounts")
        body["configuration"].update(
            {
                "user.password": _PASSWORD,  # not the simulator user's: every token request fails
                "event.notification.callback.url": receiver.url.replace("s3cret", _CALLBACK_TOKEN),
                "event.notification.signature.key": _SIGNATURE_KEY,
                "event.notification.basic.username": "hooks",
                "event.notification.basic.password": _BASIC_PASSWORD,
            }
        )
        instance_id = await create(api, body)
        await wait_for(lambda: polls(registry, "accounts", "failed") >= 2, within=30)
        # Nothing is polled with a wrong password: the instance's events are written directly.
        await produce(settings, [change(instance_id, 1)])
        dead_letters = "gateway_delivery_dead_letters_total"
        await wait_for(lambda: sample(registry, dead_letters, reason="retries-exhausted") >= 1, within=30)
        assert len(receiver.hits) >= 3  # the callback was called, and failed, every time
        assert receiver.hits[0].headers["Authorization"].startswith("Basic ")
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.metrics_url}/metrics") as response:
            exposition = await response.text()

    secrets = (
        _PASSWORD,
        _SIGNATURE_KEY,
        _BASIC_PASSWORD,
        base64.b64encode(f"hooks:{_BASIC_PASSWORD}".encode()).decode(),
    )
    # The simulator runs in this process; its own lines are not the gateway's.
    records = [record for record in caplog.records if not record.name.startswith("gateway.sim")]
    lines = {record: JsonFormatter(role="all").format(record) for record in records}
    assert len(lines) > 50, "DEBUG lines of the gateway, aiohttp and aiokafka"
    assert any(record.name.startswith("aiokafka") for record in records)
    leaks = [line for line in lines.values() for secret in secrets if secret in line]
    assert not leaks, leaks[:3]
    # A callback URL is no secret of the instance (it is stored in clear), but it may carry a token, so
    # the gateway names only its host. aiokafka at DEBUG prints the records it sends, the instances'
    # bodies among them, which is why `configure_logging` keeps aiokafka at WARNING at least.
    own = [line for record, line in lines.items() if not record.name.startswith("aiokafka")]
    assert not [line for line in own if _CALLBACK_TOKEN in line]
    assert not [secret for secret in (*secrets, _CALLBACK_TOKEN) if secret in exposition]

    # The lines that say what failed name the instance, and the resource or the event.
    parsed = [orjson.loads(line) for line in lines.values()]
    (failed_poll, *_) = [p for p in parsed if p["message"].startswith("poll failed")]
    assert (failed_poll["instance_id"], failed_poll["resource"]) == (instance_id, "accounts")
    (dead_letter,) = [p for p in parsed if p["message"].startswith("dead-lettered")]
    assert dead_letter["instance_id"] == instance_id
    assert dead_letter["event_id"]


def test_the_level_is_a_setting_and_aiokafka_never_goes_below_warning(root_logger: logging.Logger) -> None:
    configure_logging("DEBUG", role="deliverer")
    assert root_logger.level == logging.DEBUG
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.WARNING
    assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    (handler,) = root_logger.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    configure_logging("ERROR")
    assert root_logger.level == logging.ERROR
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.ERROR
