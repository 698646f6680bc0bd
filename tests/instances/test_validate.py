from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.errors import ConfigError, InstanceValidationError, Problem
from gateway.instances import apply_patch, validate_instance

from .cases import ACCOUNTS, CASES, DATES, POLLER, Case
from .seed_examples import SEED_RESOURCES, seed_bodies, with_poller_as_string

CALLBACK_PLACEHOLDER = Problem(
    "$.configuration['event.notification.callback.url']",
    "is not an absolute http(s) URL; webhooks will not be delivered until it is set",
)


def problems_of(body: object) -> tuple[Problem, ...]:
    with pytest.raises(InstanceValidationError) as caught:
        validate_instance(body)
    return caught.value.problems


def patched(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return apply_patch(body, patch)


@pytest.mark.parametrize("name", ["2016", "earlier"])
@pytest.mark.parametrize("as_string", [False, True], ids=["object", "string"])
def test_seed_examples_are_accepted_unchanged(name: str, as_string: bool) -> None:
    body = seed_bodies()[name]
    if as_string:
        body = with_poller_as_string(body)
        assert "\n" not in body["configuration"]["event.poller.configuration"]

    validated = validate_instance(body, instance_id="i-1")

    instance = validated.instance
    assert validated.warnings == (CALLBACK_PLACEHOLDER,)
    assert [r.name for r in instance.resources] == list(SEED_RESOURCES)
    assert [(r.hub, r.object_type) for r in instance.resources] == [("crm", name) for name in SEED_RESOURCES]
    assert instance.id == "i-1"
    assert instance.element_key == "dynamicscrmadfs"
    assert instance.name == "<INSERT_INSTANCE_NAME>"
    assert instance.tags == ("<INSERT_TAGS>",)
    assert instance.polling_enabled is True
    assert instance.refresh_interval == 15 * 60
    assert instance.timezone == ZoneInfo("UTC")
    assert instance.source.base_url == "https://yourcompanyname.crm.dynamics.com"
    assert instance.source.api_version == "v9.2"
    assert instance.source.username == "<INSERT_DYNMAICS_CRM_USERNAME>"
    assert instance.source.password == "<INSERT_DYNMAICS_CRM_PASSWORD>"
    assert instance.notification.callback_url is None
    assert instance.notification.enabled is False  # no usable callback URL yet
    assert (
        instance.configuration["event.poller.configuration"]
        == seed_bodies()[name]["configuration"]["event.poller.configuration"]
    )


def test_seed_resources_are_read_in_full() -> None:
    notes = next(r for r in validate_instance(seed_bodies()["2016"]).instance.resources if r.name == "notes")
    assert notes.object_type == "notes"
    assert notes.url.source == "/hubs/crm/notes?where=fetchChanges='true'"
    assert notes.id_field == "id"
    assert notes.dates.updated_field == "attributes.modifiedon"
    assert notes.dates.updated_format.spec == "milliseconds"
    assert notes.dates.created_field == "attributes.createdon"
    assert notes.dates.created_format is not None
    assert notes.dates.created_format.spec == "milliseconds"
    assert notes.dates.updated_timezone == notes.dates.created_timezone == ZoneInfo("UTC")
    assert (notes.page_size, notes.poll_delay, notes.created_check_tolerance) == (5000, 0.0, 0.0)
    assert (notes.filter_by_updated_date, notes.filter_by_current_date, notes.snapshot) == (
        True,
        False,
        False,
    )
    assert notes.primary_key is None


def test_earlier_seed_renders_its_watermark() -> None:
    accounts = validate_instance(seed_bodies()["earlier"]).instance.resources[0]
    assert accounts.url.has_placeholders


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_body_is_rejected_with_its_path_and_message(case: Case) -> None:
    assert problems_of(case.body()) == (Problem(case.path, case.message),)


def test_every_problem_is_reported_at_once(body: dict[str, Any]) -> None:
    broken = patched(
        body,
        {
            "element": {"key": "salesforce"},
            "name": None,
            "configuration": {
                "user.password": None,
                "event.poller.refresh_interval": "soon",
                "event.poller.configuration": {
                    "accounts": {"idField": None, "pageSize": 0},
                    "notes": {"datesConfiguration": {"updatedDateFormat": "yyyy-qq"}},
                },
            },
        },
    )

    assert problems_of(broken) == (
        Problem("$.element.key", "unknown element key 'salesforce'; known: dynamicscrmadfs, dynamicscrm"),
        Problem("$.name", "is required"),
        Problem(
            "$.configuration['event.poller.refresh_interval']",
            "must be a number of minutes from 1/60 to 1440",
        ),
        Problem(f"{ACCOUNTS}.idField", "is required"),
        Problem(f"{ACCOUNTS}.pageSize", "must be an integer from 1 to 5000"),
        Problem(
            f"{POLLER}.notes.datesConfiguration.updatedDateFormat",
            "unknown date format: unknown pattern letter 'q' at position 5",
        ),
        Problem("$.configuration['user.password']", "is required with user.username"),
    )


def test_the_error_is_a_config_error_listing_its_problems() -> None:
    with pytest.raises(ConfigError, match=r"^\$\.name: is required$"):
        validate_instance(patched(seed_bodies()["2016"], {"name": None}))


def test_unknown_keys_are_warnings(body: dict[str, Any]) -> None:
    extended = patched(
        body,
        {
            "providerData": {"code": "x"},
            "element": {"id": 190},
            "configuration": {
                "event.vendor.type": "polling",
                "it's": True,
                "event.poller.configuration": {
                    "accounts": {"fields": ["name"], "datesConfiguration": {"dateFormat": "x"}},
                },
            },
        },
    )

    warnings = validate_instance(extended).warnings

    assert set(warnings) == {
        Problem("$.providerData", "unknown key; ignored"),
        Problem("$.element.id", "unknown key; ignored"),
        Problem("$.configuration['event.vendor.type']", "unknown key; ignored"),
        Problem("$.configuration['it\\'s']", "unknown key; ignored"),
        Problem(f"{ACCOUNTS}.fields", "unknown key; ignored"),
        Problem(f"{DATES}.dateFormat", "unknown key; ignored"),
        CALLBACK_PLACEHOLDER,
    }


def test_keys_the_gateway_sets_on_stored_bodies_are_not_warned_about(body: dict[str, Any]) -> None:
    stored = {
        **body,
        "id": "i-1",
        "createdDate": "2026-01-01T00:00:00Z",
        "updatedDate": "2026-01-02T00:00:00Z",
    }
    assert validate_instance(stored).warnings == (CALLBACK_PLACEHOLDER,)


def test_snapshot_without_change_tracking_is_a_warning() -> None:
    body = patched(
        seed_bodies()["earlier"],
        {"configuration": {"event.poller.configuration": {"leads": {"snapshot": True}}}},
    )
    assert Problem(
        f"{POLLER}.leads.snapshot", "applies only to change tracking (where=fetchChanges='true'); ignored"
    ) in (validate_instance(body).warnings)


def test_enabled_without_resources_is_a_warning(body: dict[str, Any]) -> None:
    body["configuration"]["event.poller.configuration"] = {}
    assert Problem(POLLER, "names no resources; nothing will be polled") in validate_instance(body).warnings


def test_a_callback_placeholder_is_quiet_when_events_are_disabled(body: dict[str, Any]) -> None:
    body["configuration"]["event.notification.enabled"] = "false"
    validated = validate_instance(body)
    assert validated.warnings == ()
    assert validated.instance.polling_enabled is False


def test_cloud_elements_strings_are_read_as_booleans_and_numbers(body: dict[str, Any]) -> None:
    body = patched(
        body,
        {
            "configuration": {
                "event.notification.callback.url": "https://hooks.example.com/in",
                "event.poller.refresh_interval": "0.5",
                "event.poller.configuration": {
                    "accounts": {
                        "pageSize": "250",
                        "pollDelay": "1.5",
                        "createdCheckTolerance": 2,
                        "filterByUpdatedDate": "false",
                        "filterByCurrentDate": True,
                        "snapshot": "true",
                        "primaryKey": "accountid",
                    }
                },
            }
        },
    )

    instance = validate_instance(body).instance

    accounts = instance.resources[0]
    assert instance.refresh_interval == 30.0
    assert (accounts.page_size, accounts.poll_delay, accounts.created_check_tolerance) == (250, 1.5, 2.0)
    assert (accounts.filter_by_updated_date, accounts.filter_by_current_date, accounts.snapshot) == (
        False,
        True,
        True,
    )
    assert accounts.primary_key == "accountid"
    assert instance.notification.enabled is True
    assert instance.notification.callback_url == "https://hooks.example.com/in"


@pytest.mark.parametrize(
    ("minutes", "seconds"), [(1 / 60, 1.0), (1440, 86400.0), ("1440", 86400.0), (15.0, 900.0)]
)
def test_refresh_interval_bounds_are_inclusive(body: dict[str, Any], minutes: object, seconds: float) -> None:
    body["configuration"]["event.poller.refresh_interval"] = minutes
    assert validate_instance(body).instance.refresh_interval == pytest.approx(seconds)


def test_gateway_keys_shape_the_connection_and_notification(body: dict[str, Any]) -> None:
    configuration = body["configuration"]
    for key in ("user.username", "user.password", "dynamics.tenant"):
        del configuration[key]
    configuration.update(
        {
            "dynamics.base.url": "https://crm.contoso.com/org/",
            "dynamics.api.version": "v9.1",
            "oauth.token.url": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "oauth.api.key": "client",
            "oauth.api.secret": "s3cret",
            "oauth.scope": "https://org.crm.dynamics.com/.default",
            "event.poller.timezone": "America/New_York",
            "event.notification.callback.url": "https://hooks.example.com/in",
            "event.notification.signature.key": "MySecretEventSignatureKey",
            "event.notification.format": "cloudevents",
            "event.notification.callback.headers": '{"X-Team": "crm"}',
            "event.notification.basic.username": "hooks",
            "event.notification.basic.password": "pw",
        }
    )

    validated = validate_instance({**body, "element": {"key": "dynamicscrm"}, "tags": []})

    instance = validated.instance
    assert validated.warnings == ()
    assert instance.element_key == "dynamicscrmadfs"
    assert instance.tags == ()
    assert instance.timezone == ZoneInfo("America/New_York")
    assert instance.resources[0].dates.updated_timezone == ZoneInfo("America/New_York")
    assert instance.resources[0].dates.created_timezone == ZoneInfo("America/New_York")
    source = instance.source
    assert source.base_url == "https://crm.contoso.com/org"
    assert source.api_version == "v9.1"
    assert (source.username, source.password) == (None, None)
    assert source.oauth_token_url == "https://login.microsoftonline.com/t/oauth2/v2.0/token"
    assert (source.oauth_client_id, source.oauth_client_secret) == ("client", "s3cret")
    assert source.oauth_scope == "https://org.crm.dynamics.com/.default"
    notification = instance.notification
    assert notification.enabled is True
    assert notification.signature_key == "MySecretEventSignatureKey"
    assert notification.previous_signature_key is None
    assert notification.format == "cloudevents"
    assert dict(notification.callback_headers) == {"X-Team": "crm"}
    assert (notification.basic_username, notification.basic_password) == ("hooks", "pw")


def test_dates_configuration_defaults_and_overrides(body: dict[str, Any]) -> None:
    dates = body["configuration"]["event.poller.configuration"]["accounts"]["datesConfiguration"]
    del dates["createdDateFormat"]
    dates["updatedDateFormat"] = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    dates["createdDateTimezone"] = "Europe/Paris"
    del body["configuration"]["event.poller.configuration"]["contacts"]["datesConfiguration"][
        "createdDateField"
    ]
    del body["configuration"]["event.poller.configuration"]["contacts"]["datesConfiguration"][
        "createdDateFormat"
    ]

    accounts, contacts = validate_instance(body).instance.resources[:2]

    assert accounts.dates.created_format is accounts.dates.updated_format  # defaults to the updated format
    assert accounts.dates.created_timezone == ZoneInfo("Europe/Paris")
    assert accounts.dates.updated_timezone == ZoneInfo("UTC")
    assert (contacts.dates.created_field, contacts.dates.created_format) == (None, None)


def test_callback_url_is_kept_when_events_are_disabled(body: dict[str, Any]) -> None:
    body["configuration"]["event.notification.enabled"] = False
    body["configuration"]["event.notification.callback.url"] = "http://hooks.internal:8080/in"
    notification = validate_instance(body).instance.notification
    assert (notification.enabled, notification.callback_url) == (False, "http://hooks.internal:8080/in")


def test_configuration_is_kept_with_the_poller_decoded(body: dict[str, Any]) -> None:
    body["configuration"]["x-custom"] = 1
    configuration = validate_instance(with_poller_as_string(body)).instance.configuration
    assert configuration["x-custom"] == 1
    assert configuration["event.poller.configuration"] == body["configuration"]["event.poller.configuration"]
    with pytest.raises(TypeError):
        configuration["x-custom"] = 2  # type: ignore[index]


def test_secrets_stay_out_of_reprs_and_problems(body: dict[str, Any]) -> None:
    body["configuration"].update(
        {
            "user.password": "hunter2-password",
            "event.notification.signature.key": "hunter2-signature",
            "event.notification.callback.headers": {"X-Api-Key": "hunter2-header"},
            "event.notification.callback.url": "https://hooks.example.com/in?token=hunter2-callback",
        }
    )
    assert "hunter2" not in repr(validate_instance(body).instance)
    body["configuration"]["dynamics.tenant"] = "not a host"
    body["configuration"]["event.notification.basic.password"] = "hunter2-basic"
    assert "hunter2" not in str(problems_of(body))


def test_without_an_id_a_new_one_is_made(body: dict[str, Any]) -> None:
    assert validate_instance(body).instance.id != validate_instance(body).instance.id
