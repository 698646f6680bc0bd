"""schemas/instance.schema.json and validate_instance agree on what they can both express."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.instances import apply_patch, validate_instance

from .cases import CASES, Case
from .seed_examples import seed_bodies

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "instance.schema.json"


@pytest.fixture(scope="module")
def schema() -> Draft202012Validator:
    document = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


def _valid_bodies() -> dict[str, Any]:
    seed = seed_bodies()
    return {
        "seed 2016": seed["2016"],
        "seed earlier": seed["earlier"],
        "all gateway keys": apply_patch(
            seed["2016"],
            {
                "element": {"key": "dynamicscrm"},
                "tags": [],
                "unknown": {"kept": True},
                "configuration": {
                    "user.username": None,
                    "user.password": None,
                    "dynamics.tenant": None,
                    "dynamics.base.url": "HTTP://localhost:8080/org",
                    "dynamics.api.version": "v9.1",
                    "oauth.token.url": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
                    "oauth.api.key": "client",
                    "oauth.api.secret": "secret",
                    "oauth.scope": "https://org.crm.dynamics.com/.default",
                    "event.notification.enabled": False,
                    "event.notification.callback.url": "https://hooks.example.com/in?x=1",
                    "event.notification.signature.key": "key",
                    "event.notification.callback.headers": {"X-Team": "crm", "Authorization": "Bearer x"},
                    "event.notification.format": "cloudevents",
                    "event.poller.refresh_interval": 1 / 60,
                    "event.poller.timezone": "Europe/Paris",
                    "event.poller.configuration": {
                        "accounts": {
                            "pageSize": "1",
                            "pollDelay": 0,
                            "createdCheckTolerance": "2.5",
                            "filterByUpdatedDate": "false",
                            "filterByCurrentDate": True,
                            "snapshot": "true",
                            "primaryKey": "accountid",
                            "previousValues": True,
                            "select": ["name", "_primarycontactid_value"],
                            "unknown": 1,
                        },
                        "contacts": {
                            "datesConfiguration": {"createdDateField": None, "createdDateFormat": None}
                        },
                    },
                },
            },
        ),
        "strings for everything": apply_patch(
            seed["earlier"],
            {
                "configuration": {
                    "event.notification.enabled": "false",
                    "event.poller.refresh_interval": "1440",
                    "event.poller.configuration": json.dumps(
                        seed["earlier"]["configuration"]["event.poller.configuration"]
                    ),
                    "event.notification.callback.headers": '{"X-Team": "crm"}',
                    "event.notification.basic.username": "hooks",
                    "event.notification.basic.password": "pw",
                }
            },
        ),
        "no resources": apply_patch(seed["2016"], {"configuration": {"event.poller.configuration": None}}),
    }


VALID = _valid_bodies()


def test_the_schema_is_valid_draft_2020_12(schema: Draft202012Validator) -> None:
    assert schema.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", list(VALID))
def test_both_accept_valid_bodies(schema: Draft202012Validator, name: str) -> None:
    validate_instance(VALID[name])
    assert list(schema.iter_errors(VALID[name])) == []


EXPRESSIBLE = [case for case in CASES if case.schema]
VALIDATOR_ONLY = [case for case in CASES if not case.schema]


@pytest.mark.parametrize("case", EXPRESSIBLE, ids=[case.id for case in EXPRESSIBLE])
def test_both_reject_what_the_schema_can_express(schema: Draft202012Validator, case: Case) -> None:
    # test_validate checks the validator's exact problem; here the schema must reject the body too
    assert not schema.is_valid(case.body())


@pytest.mark.parametrize("case", VALIDATOR_ONLY, ids=[case.id for case in VALIDATOR_ONLY])
def test_semantic_rules_are_the_validators_alone(schema: Draft202012Validator, case: Case) -> None:
    assert schema.is_valid(case.body())
