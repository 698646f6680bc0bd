"""The console in a real Chromium, against a real gateway, Kafka and the Dynamics simulator: used the
way a person would, finding each field by its visible label."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Page, expect
from prometheus_client import CollectorRegistry

from gateway.instances import mask_url
from gateway.runtime import RunningGateway, start_gateway
from gateway.settings import Settings
from gateway.sim import DEMO_USERS, Simulator
from tests.api.console.conftest import screenshot
from tests.conftest import ADMIN_TOKEN, seed_instance, wait_for
from tests.delivery._support import Hit, Receiver, delivery_settings, receiving
from tests.instances.seed_examples import seed_bodies
from tests.polling._support import insert, only

SEVEN = ("accounts", "contacts", "leads", "opportunities", "tasks", "notes", "activities")
USER, PASSWORD = next(iter(DEMO_USERS.items()))


@pytest.fixture
async def receiver() -> AsyncIterator[str]:
    """A webhook receiver on loopback that accepts everything."""

    async def accept(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


@pytest.fixture
async def console(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[RunningGateway]:
    """A gateway whose callbacks may go to loopback, where the test's receiver listens."""
    allowed = settings.model_copy(update={"callback_allowed_networks": [IPv4Network("127.0.0.0/8")]})
    async with start_gateway(allowed, registry=registry) as gateway:
        yield gateway


async def sign_in(page: Page, gateway: RunningGateway) -> None:
    await page.goto(f"{gateway.api_url}/console/")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Instances")).to_be_visible()


async def api_instances(gateway: RunningGateway) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{gateway.api_url}/instances") as response,
    ):
        assert response.status == 200
        instances: list[dict[str, Any]] = await response.json()
        return instances


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    page: Page, gateway: RunningGateway
) -> None:
    await page.goto(f"{gateway.api_url}/console/instances")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(page, "sign-in")
    await page.get_by_label("Admin token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("That is not the admin token.")).to_be_visible()
    assert await page.context.cookies() == []

    await sign_in(page, gateway)
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]
    assert ADMIN_TOKEN not in page.url
    assert await page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0
    assert await page.evaluate("document.cookie") == ""  # not readable by scripts

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(f"{gateway.api_url}/console/instances")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def _fill_seed_instance(page: Page, simulator: Simulator, callback: str) -> None:
    await page.get_by_label("Name", exact=True).fill("seed-console")
    await page.get_by_label("Tags").fill("console, seed")
    await page.get_by_label("Dynamics base URL").fill(simulator.base_url)
    await page.get_by_label("Username").fill(USER)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Events Enabled").check()
    await page.get_by_label("Event Notification Callback URL").fill(callback)
    await page.get_by_label("Event Notification Signature Key").fill("console-signature-key")
    await page.get_by_label("Event poller refresh interval (mins)").fill("0.0167")
    for resource in SEVEN:
        await page.get_by_label(resource, exact=True).check()
    await page.get_by_label("Change tracking").check()


async def test_an_instance_created_through_the_form_polls_its_seven_resources(
    page: Page, console: RunningGateway, simulator: Simulator, receiver: str
) -> None:
    await sign_in(page, console)
    await screenshot(page, "instances-empty")
    await page.get_by_role("link", name="New instance").first.click()
    await expect(page.get_by_role("heading", name="New instance")).to_be_visible()
    await _fill_seed_instance(page, simulator, receiver)
    # The pencil opens a resource's JSON in an editor.
    await page.get_by_title("Edit accounts JSON").press("Enter")  # by keyboard
    editor = page.get_by_label("accounts JSON")
    await expect(editor).to_be_visible()
    assert "fetchChanges='true'" in await editor.input_value()
    await screenshot(page, "instance-form")
    await page.get_by_role("button", name="Create Instance").click()

    await expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="seed-console")
    await expect(row).to_contain_text("dynamicscrmadfs")
    await expect(row).to_contain_text("On")
    await expect(row).to_contain_text("accounts, contacts, leads, opportunities, tasks, notes, activities")
    (created,) = await api_instances(console)
    configuration = created["configuration"]
    assert created["tags"] == ["console", "seed"]
    assert configuration["user.password"] == "********"
    assert configuration["event.notification.callback.url"] == mask_url(receiver)
    resources = configuration["event.poller.configuration"]
    assert list(resources) == list(SEVEN)
    assert all(r["url"].endswith("?where=fetchChanges='true'") for r in resources.values())
    # The health dot turns green once every resource has polled; the page is reloaded to see it.
    for _attempt in range(100):
        await page.reload()
        if "last poll ok" in (await row.inner_text()):
            break
        await page.wait_for_timeout(100)
    await expect(row).to_contain_text("last poll ok")
    await screenshot(page, "instances")

    # The instance's page: each resource's last poll.
    await row.get_by_role("link", name="seed-console").click()
    await expect(page.get_by_role("heading", name="seed-console")).to_be_visible()
    for resource in SEVEN:
        resource_row = page.get_by_role("row").filter(has=page.get_by_text(resource, exact=True))
        for _attempt in range(100):
            if "ok" in await resource_row.locator('td[data-label="Last poll"]').inner_text():
                break
            await page.wait_for_timeout(100)
            await page.reload()
        await expect(resource_row.locator('td[data-label="Last poll"]')).to_contain_text("ok")
        await expect(resource_row.locator('td[data-label="Checkpoint age"]')).not_to_have_text("—")

    # Live events: a record the simulator creates appears as it is published.
    await page.get_by_label("Resource", exact=True).select_option("accounts")
    await expect(page.get_by_role("status")).to_contain_text("Listening")
    record_id = insert(simulator, "accounts")
    live = page.locator("#live-events tr").filter(has_text=record_id)
    await expect(live).to_contain_text("CREATED", timeout=20_000)
    await expect(live).to_contain_text("accounts")
    await screenshot(page, "instance-detail")


async def test_a_bad_field_shows_the_apis_message_beside_it_and_secrets_stay_masked(
    page: Page, console: RunningGateway, simulator: Simulator, receiver: str
) -> None:
    await sign_in(page, console)
    await page.goto(f"{console.api_url}/console/instances/new")
    await _fill_seed_instance(page, simulator, "http://10.0.0.5/hook")
    await page.get_by_title("Edit leads JSON").click()
    await page.get_by_label("leads JSON").fill('{"url": "/hubs/crm/leads"}')
    await page.get_by_role("button", name="Create Instance").click()

    callback = page.get_by_label("Event Notification Callback URL")
    await expect(callback).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{await callback.get_attribute('aria-describedby')}")
    await expect(error).to_contain_text("GATEWAY_CALLBACK_ALLOWED_NETWORKS")
    await expect(error).to_contain_text("$.configuration['event.notification.callback.url']")
    leads = page.get_by_label("leads JSON")
    await expect(leads).to_be_visible()  # its editor opens to show the problem
    leads_error = page.locator(f"#{await leads.get_attribute('aria-describedby')}")
    await expect(leads_error).to_contain_text("$.configuration['event.poller.configuration'].leads.idField")
    await expect(page.get_by_label("Password")).to_have_value("")  # never sent back to the browser
    await screenshot(page, "instance-form-errors")
    assert await api_instances(console) == []

    # Fixed, it saves; edited, the masked secrets are kept.
    await callback.fill(receiver)
    await leads.fill(
        json.dumps(seed_bodies()["2016"]["configuration"]["event.poller.configuration"]["leads"])
    )
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Event Notification Signature Key").fill("console-signature-key")
    # A custom resource, copied from one of the seed's.
    await page.get_by_label("Custom resource name").fill("phonecalls")
    await page.get_by_label("Copy settings from").select_option("tasks")
    await page.get_by_role("button", name="Create Instance").click()
    await expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    (created,) = await api_instances(console)
    resources = created["configuration"]["event.poller.configuration"]
    assert list(resources) == [*SEVEN, "phonecalls"]
    assert resources["phonecalls"]["url"] == "/hubs/crm/phonecalls?where=fetchChanges='true'"
    assert resources["phonecalls"]["datesConfiguration"] == resources["tasks"]["datesConfiguration"]

    await page.get_by_role("link", name="seed-console").click()
    await page.get_by_role("link", name="Edit instance").click()
    await expect(page.get_by_label("Password")).to_have_value("********")
    # The callback URL's path may carry the receiver's token: only its host is shown, and it is kept.
    await expect(page.get_by_label("Event Notification Callback URL")).to_have_value(mask_url(receiver))
    assert receiver not in await page.content()
    assert PASSWORD not in await page.content()
    await expect(page.get_by_label("phonecalls", exact=True)).to_be_checked()
    await page.get_by_label("Tags").fill("edited")
    await page.get_by_label("contacts", exact=True).uncheck()
    await page.get_by_label("The modifiedon filter").check()
    await page.get_by_role("button", name="Save Instance").click()
    await expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    (edited,) = await api_instances(console)
    assert edited["tags"] == ["edited"]
    # The callback URL was kept whole: a test event still reaches the receiver's /hook.
    await page.get_by_role("link", name="seed-console").click()
    await page.get_by_role("button", name="Send test event").click()
    await expect(page.get_by_text("Test event delivered")).to_contain_text("answered 204")
    configuration = edited["configuration"]
    # The masked secrets were kept as they were: no rotation of the signature key began.
    assert configuration["user.password"] == "********"
    assert "event.notification.signature.previous.key" not in configuration
    resources = configuration["event.poller.configuration"]
    assert "contacts" not in resources
    assert (
        resources["accounts"]["url"]
        == "/hubs/crm/accounts?where=modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"
    )


async def test_an_instance_whose_polls_fail_shows_a_red_dot_and_the_error(
    page: Page, gateway: RunningGateway, simulator: Simulator
) -> None:
    body = seed_instance("2016", simulator)
    body["configuration"]["user.password"] = "wrong-password"
    body["name"] = "wrong-password"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{gateway.api_url}/instances", json=only(body, "accounts")) as response,
    ):
        assert response.status == 201
    await sign_in(page, gateway)
    row = page.get_by_role("row").filter(has_text="wrong-password")
    for _attempt in range(100):
        if "failing" in await row.inner_text():
            break
        await page.wait_for_timeout(100)
        await page.reload()
    await expect(row).to_contain_text("failing: accounts")
    await expect(row.locator(".dot-failing")).to_have_count(1)
    last_error = row.locator('td[data-label="Last error"]')
    await expect(last_error).to_contain_text("accounts")
    assert "wrong-password" not in await last_error.inner_text()
    await screenshot(page, "instances-failing")


async def accounts_instance(gateway: RunningGateway, simulator: Simulator, callback: str, name: str) -> str:
    """The id of a new instance, made through the API, polling the simulator's accounts."""
    body = only(seed_instance("2016", simulator), "accounts")
    body["configuration"]["event.notification.callback.url"] = callback
    body["name"] = name
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{gateway.api_url}/instances", json=body) as response,
    ):
        assert response.status == 201
        instance_id: str = (await response.json())["id"]
        return instance_id


def delivered(receiver: Receiver, record_id: str) -> list[Hit]:
    return [hit for hit in receiver.hits if record_id in hit.body.decode()]


async def test_a_failing_delivery_is_dead_lettered_with_its_attempts_and_a_replay_delivers_it(
    page: Page, settings: Settings, registry: CollectorRegistry, simulator: Simulator
) -> None:
    receiver_up = False

    async def down_until_fixed(_attempt: int, _request: web.Request) -> web.StreamResponse:
        return web.Response(status=204 if receiver_up else 500)

    async with (
        receiving(down_until_fixed) as receiver,
        start_gateway(delivery_settings(settings), registry=registry) as gateway,
    ):
        instance_id = await accounts_instance(gateway, simulator, receiver.url, "breaking-receiver")
        await sign_in(page, gateway)
        await page.get_by_role("link", name="breaking-receiver").click()
        await page.get_by_role("button", name="Send test event").click()
        await expect(page.get_by_text("Test event not delivered")).to_contain_text("answered 500")
        await expect(page.get_by_text("Listening")).to_be_visible()
        record_id = insert(simulator, "accounts")

        await page.get_by_role("link", name="Dead letters").click()
        letter = page.locator(".dead-letter").filter(has_text=record_id)
        for _attempt in range(200):
            if await letter.count():
                break
            await page.wait_for_timeout(100)
            await page.reload()
        await expect(letter).to_contain_text("retries-exhausted")
        await letter.get_by_text("Attempts (4)").click()
        statuses = letter.locator('td[data-label="HTTP status"]')
        await expect(statuses).to_have_text(["500"] * 4)
        await screenshot(page, "dead-letters")

        # The same failing webhook in the deliveries, with its webhook-id and every attempt.
        await page.get_by_role("link", name="Deliveries").click()
        await page.get_by_label("Status").select_option("failed")
        await page.get_by_role("button", name="Show").click()
        failing = page.locator(".delivery").filter(has_text=record_id)
        await expect(failing.locator(".delivery-status")).to_have_text("Failed")
        await expect(failing).to_contain_text("4 attempts")
        await failing.get_by_text("Attempts (4)").click()
        await expect(failing.locator('td[data-label="HTTP status"]')).to_have_text(["500"] * 4)
        await expect(failing.locator('td[data-label="Duration"]').first).to_contain_text("ms")
        await screenshot(page, "deliveries")
        await page.get_by_role("link", name="Dead letters").click()

        receiver_up = True
        await letter.get_by_role("button", name="Replay").click()
        await expect(page.get_by_role("status")).to_contain_text("Replayed 1 dead letter.")
        await expect(page.locator(".dead-letter").filter(has_text=record_id)).to_have_count(0)
        await page.get_by_role("link", name="Back to the instance").click()
        await page.get_by_role("button", name="Send test event").click()
        await expect(page.get_by_text("Test event delivered")).to_contain_text("answered 204")
        await screenshot(page, "instance-test-event")
        await wait_for(lambda: len(delivered(receiver, record_id)) == 5)  # 4 refused, then this one
        await page.get_by_role("link", name="Deliveries").click()
        replayed = page.locator(".delivery").filter(has_text=record_id)
        for _attempt in range(200):
            if await replayed.locator(".delivery-status").filter(has_text="Delivered").count():
                break
            await page.wait_for_timeout(100)
            await page.reload()
        await replayed.get_by_text("Attempts (5)").click()
        await expect(replayed.locator('td[data-label="HTTP status"]')).to_have_text(["500"] * 4 + ["204"])

        # The overview: the change and the deliveries counted in this hour, and this poller replica.
        await page.get_by_role("link", name="Overview").click()
        changes = page.get_by_role("region", name="Changes per minute")
        await expect(changes.get_by_role("row").filter(has_text="accounts")).to_be_visible()
        deliveries = page.get_by_role("region", name="Deliveries per minute")
        failed = deliveries.get_by_role("row").filter(has_text="failed")
        await expect(failed.get_by_role("cell").first).to_have_text("4")
        await expect(deliveries.get_by_role("row").filter(has_text="delivered")).to_be_visible()
        await expect(page.get_by_role("heading", name="Poller replicas")).to_be_visible()
        await expect(page.locator('td[data-label="Replica"]')).to_have_count(1)
        await screenshot(page, "overview")
        message = delivered(receiver, record_id)[-1].json()["message"]
        assert message["instanceId"] == instance_id
        assert message["events"][0]["objectId"] == record_id
        await page.goto("about:blank")


async def test_the_console_is_usable_by_keyboard_alone(page: Page, gateway: RunningGateway) -> None:
    await page.goto(f"{gateway.api_url}/console/sign-in")
    await page.keyboard.type(ADMIN_TOKEN)  # the token field has the focus
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Instances")).to_be_visible()
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_visible()  # shown when it has the focus
    # Tab on through the navigation to the new-instance form, and open it with Enter.
    for _step in range(10):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent.trim()")
        if focused == "New instance":
            break
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="New instance")).to_be_visible()
    for _step in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "f-name":
            break
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await page.keyboard.type("typed")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("typed")


def at_subscription(receiver: Receiver, record_id: str) -> list[Hit]:
    return [hit for hit in delivered(receiver, record_id) if hit.path == "/hooks/crm-sync"]


async def test_a_subscription_is_added_shown_failing_and_disabled_enabled_again_recovered_and_removed(
    page: Page, settings: Settings, registry: CollectorRegistry, simulator: Simulator
) -> None:
    subscription_answer = 500  # then 410, then 204

    async def subscription_down_until_fixed(_attempt: int, request: web.Request) -> web.StreamResponse:
        return web.Response(status=subscription_answer if request.path == "/hooks/crm-sync" else 204)

    async with (
        receiving(subscription_down_until_fixed) as receiver,
        # A streak then lasts a minute without a failure, however slowly the page comes to show it.
        start_gateway(
            delivery_settings(settings, delivery_retry_after_max_seconds=30.0), registry=registry
        ) as gateway,
    ):
        instance_id = await accounts_instance(gateway, simulator, receiver.url, "with-subscriptions")
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            await sign_in(page, gateway)
            await page.get_by_role("link", name="with-subscriptions").click()
            await page.get_by_role("link", name="Subscriptions").click()
            await expect(page.get_by_text("No subscriptions")).to_be_visible()

            await page.get_by_label("Subscription id").fill("crm-sync")
            await page.get_by_label("Name", exact=True).fill("CRM sync")
            await page.get_by_label("Callback URL").fill("ftp://127.0.0.1/hook")
            await page.get_by_label("Rate limit (requests per second)").fill("fast")
            await page.get_by_role("button", name="Add subscription").click()
            await expect(page.locator(".error-summary")).to_contain_text("2 problems")
            url_error = page.locator("#error-f-event-notification-callback-url")
            await expect(url_error).to_contain_text("$.configuration['event.notification.callback.url']")
            await expect(page.get_by_label("Callback URL")).to_have_attribute("aria-invalid", "true")
            await expect(page.locator("#error-f-rateLimit")).to_contain_text("$.rateLimit")
            await expect(page.get_by_label("Name", exact=True)).to_have_value("CRM sync")  # kept
            await screenshot(page, "subscription-form-errors")

            await page.get_by_label("Callback URL").fill(receiver.url.replace("/hooks/in", "/hooks/crm-sync"))
            await page.get_by_label("Signature key").fill("crm-sync-key")
            await page.get_by_label("Object types").fill("accounts")
            await page.get_by_label("Rate limit (requests per second)").fill("5")
            await page.get_by_label("CREATED").check()
            await page.get_by_role("button", name="Add subscription").click()
            await expect(page.get_by_role("status")).to_have_text("Added the subscription crm-sync.")
            card = page.locator(".subscription").filter(has_text="CRM sync")
            await expect(card).to_contain_text("object types accounts; events CREATED")
            await expect(card).to_contain_text("5 requests/s")
            assert "crm-sync-key" not in await page.content()
            await page.get_by_label("Subscription id").fill("crm-sync")
            await page.get_by_label("Callback URL").fill(receiver.url)
            await page.get_by_role("button", name="Add subscription").click()
            await expect(page.locator("#error-f-id")).to_contain_text(
                "a subscription 'crm-sync' exists already"
            )
            await expect(page.locator("li.subscription")).to_have_count(1)
            async with session.get(f"{gateway.api_url}/instances/{instance_id}/subscriptions") as response:
                (stored,) = (await response.json())["subscriptions"]
            assert stored["objectTypes"] == ["accounts"]
            assert stored["eventTypes"] == ["CREATED"]
            assert stored["rateLimit"] == 5

            # Its endpoint refuses a new account until the event is dead-lettered; the callback has it.
            record_id = insert(simulator, "accounts")
            letters = f"{gateway.api_url}/instances/{instance_id}/deliveries?subscription=crm-sync"

            async def dead_lettered(count: int) -> bool:
                async with session.get(letters) as response:
                    return bool((await response.json())["count"] == count)

            await wait_for(lambda: dead_lettered(1))
            refused = len(at_subscription(receiver, record_id))
            assert refused == 4  # the first attempt and three retries
            assert len(delivered(receiver, record_id)) == refused + 1  # the callback had it at once
            # Opened again, not reloaded: the page last shown answered the refused form's POST.
            subscriptions = f"{gateway.api_url}/console/instances/{instance_id}/subscriptions"
            await page.goto(subscriptions)
            await expect(card.locator(".tag")).to_have_text("Failing")
            await expect(card).to_contain_text("Every attempt since")
            callback = page.get_by_role("region", name="The instance's callback")
            await expect(callback.locator(".tag")).to_have_text("Delivering")
            await expect(callback).to_contain_text(receiver.url.split("/hooks/")[0])
            assert "s3cret" not in await callback.inner_text()  # its token is masked, as everywhere

            # A 410 disables it: its next event waits in the dead letters until it is enabled again.
            subscription_answer = 410
            gone_id = insert(simulator, "accounts")
            await wait_for(lambda: dead_lettered(2))
            await page.goto(subscriptions)
            await expect(card.locator(".tag")).to_have_text("Disabled")
            await expect(card).to_contain_text("it answered 410 Gone")
            await screenshot(page, "subscription-disabled")
            subscription_answer = 204
            await card.get_by_role("button", name="Enable CRM sync again").click()
            await expect(page.get_by_role("status")).to_contain_text(
                "Enabled the instance's disabled endpoints again"
            )
            await expect(card.locator(".tag")).to_have_text("Delivering")
            await card.get_by_text("Recover failed deliveries").click()
            since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
            await card.get_by_label("Failed since (UTC)").fill(since)
            await screenshot(page, "subscriptions")
            await card.get_by_role("button", name="Recover").click()
            await expect(page.get_by_role("status")).to_have_text("Recovered 2 dead letters of crm-sync.")
            await wait_for(lambda: len(at_subscription(receiver, record_id)) == refused + 1)
            await wait_for(lambda: len(at_subscription(receiver, gone_id)) == 2)  # the 410, then this
            assert await dead_lettered(0)

            await page.get_by_role("button", name="Remove CRM sync").click()
            await expect(page.get_by_role("status")).to_have_text("Removed the subscription crm-sync.")
            await expect(page.get_by_text("No subscriptions")).to_be_visible()
            async with session.get(f"{gateway.api_url}/instances/{instance_id}/subscriptions") as response:
                assert (await response.json())["subscriptions"] == []
        await page.goto("about:blank")
