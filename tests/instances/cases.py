"""Invalid instance bodies, each with the one problem the validator must report.

Each case is the 2016 seed body with a JSON merge patch applied (or a whole body). `schema` says
whether schemas/instance.schema.json can express the rule too; the rules it cannot express
(date formats, time zones, templates, strings of numbers out of range, URL schemes of the
callback, reserved headers, JSON inside strings) are checked by the validator only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.instances import apply_patch

from .seed_examples import seed_bodies

C = "$.configuration"
POLLER = f"{C}['event.poller.configuration']"
ACCOUNTS = f"{POLLER}.accounts"
DATES = f"{ACCOUNTS}.datesConfiguration"
HEADERS = f"{C}['event.notification.callback.headers']"
NOT_HTTP = "must be a URL with scheme http or https"
MINUTES = "must be a number of minutes from 1/60 to 1440"
SECONDS = "must be a number of seconds >= 0"
PAGE_SIZE = "must be an integer from 1 to 5000"
RESERVED = "is set by the gateway and cannot be configured"
_ABSENT = object()
_CALLBACK = {"event.notification.callback.url": "https://hooks.example.com/crm"}


@dataclass(frozen=True)
class Case:
    id: str
    patch: dict[str, Any]
    path: str
    message: str
    schema: bool  # whether the JSON Schema rejects it too
    whole_body: object = field(default=_ABSENT)

    def body(self) -> object:
        if self.whole_body is not _ABSENT:
            return self.whole_body
        return apply_patch(seed_bodies()["2016"], self.patch)


def _set(key: str, value: Any) -> dict[str, Any]:
    return {"configuration": {key: value}}


def _accounts(**values: Any) -> dict[str, Any]:
    return {"configuration": {"event.poller.configuration": {"accounts": values}}}


def _dates(**values: Any) -> dict[str, Any]:
    return _accounts(datesConfiguration=values)


CREDENTIALS = (
    "credentials are required: user.username and user.password, or oauth.api.key and oauth.api.secret"
)
_URL = "/hubs/crm/accounts?where=modifiedon >'${gmtDate:yyyy-MM-dd'"

CASES = (
    Case("array body", {}, "$", "must be an object, got array", True, whole_body=[]),
    Case("null body", {}, "$", "must be an object, got null", True, whole_body=None),
    Case("no element", {"element": None}, "$.element", "is required", True),
    Case(
        "element not object",
        {"element": "dynamicscrmadfs"},
        "$.element",
        "must be an object, got string",
        True,
    ),
    Case("no element key", {"element": {"key": None}}, "$.element.key", "is required", True),
    Case(
        "unknown element key",
        {"element": {"key": "foo"}},
        "$.element.key",
        "unknown element key 'foo'; known: dynamicscrmadfs, dynamicscrm",
        True,
    ),
    Case(
        "element key number", {"element": {"key": 190}}, "$.element.key", "must be a string, got number", True
    ),
    Case("no name", {"name": None}, "$.name", "is required", True),
    Case("empty name", {"name": " "}, "$.name", "must not be empty", True),
    Case("tags not array", {"tags": "crm"}, "$.tags", "must be an array of strings, got string", True),
    Case("tag not string", {"tags": ["a", 1]}, "$.tags[1]", "must be a string, got number", True),
    Case("no configuration", {"configuration": None}, C, "is required", True),
    Case("configuration array", {"configuration": []}, C, "must be an object, got array", True),
    Case(
        "no credentials",
        {"configuration": {"user.username": None, "user.password": None}},
        C,
        CREDENTIALS,
        True,
    ),
    Case(
        "password alone",
        _set("user.username", None),
        f"{C}['user.username']",
        "is required with user.password",
        True,
    ),
    Case(
        "oauth key alone",
        _set("oauth.api.key", "client"),
        f"{C}['oauth.api.secret']",
        "is required with oauth.api.key",
        True,
    ),
    Case(
        "password number",
        _set("user.password", 1234),
        f"{C}['user.password']",
        "must be a string, got number",
        True,
    ),
    Case(
        "no tenant",
        _set("dynamics.tenant", None),
        f"{C}['dynamics.tenant']",
        "is required unless dynamics.base.url is set",
        True,
    ),
    Case(
        "tenant is a URL",
        _set("dynamics.tenant", "https://x.crm.dynamics.com"),
        f"{C}['dynamics.tenant']",
        "must be a host name such as yourcompanyname.crm.dynamics.com",
        True,
    ),
    Case(
        "base url ftp",
        _set("dynamics.base.url", "ftp://crm.example.com"),
        f"{C}['dynamics.base.url']",
        NOT_HTTP,
        True,
    ),
    Case(
        "base url userinfo",
        _set("dynamics.base.url", "https://me:pw@crm.example.com"),
        f"{C}['dynamics.base.url']",
        "must not contain a user name or password",
        True,
    ),
    Case(
        "base url query",
        _set("dynamics.base.url", "https://crm.example.com/org?x=1"),
        f"{C}['dynamics.base.url']",
        "must not have a query or fragment",
        True,
    ),
    Case(
        "base url bad port",
        _set("dynamics.base.url", "https://crm.example.com:99999/"),
        f"{C}['dynamics.base.url']",
        "is not a valid URL: Port out of range 0-65535",
        False,
    ),
    Case(
        "api version",
        _set("dynamics.api.version", "9.2"),
        f"{C}['dynamics.api.version']",
        "must be a version such as v9.2",
        True,
    ),
    Case(
        "token url without scheme",
        _set("oauth.token.url", "login.microsoftonline.com/tenant/oauth2/v2.0/token"),
        f"{C}['oauth.token.url']",
        NOT_HTTP,
        True,
    ),
    Case(
        "enabled yes",
        _set("event.notification.enabled", "yes"),
        f"{C}['event.notification.enabled']",
        "must be true or false",
        True,
    ),
    Case(
        "callback javascript",
        _set("event.notification.callback.url", "javascript:alert(1)"),
        f"{C}['event.notification.callback.url']",
        NOT_HTTP,
        False,
    ),
    Case(
        "callback file",
        _set("event.notification.callback.url", "file:///etc/passwd"),
        f"{C}['event.notification.callback.url']",
        NOT_HTTP,
        False,
    ),
    Case(
        "callback userinfo",
        _set("event.notification.callback.url", "https://me:pw@hooks.example.com/in"),
        f"{C}['event.notification.callback.url']",
        "must not contain a user name or password",
        False,
    ),
    Case(
        "callback no host",
        _set("event.notification.callback.url", "https:///in"),
        f"{C}['event.notification.callback.url']",
        "must be a URL with a host",
        False,
    ),
    Case(
        "empty signature key",
        _set("event.notification.signature.key", ""),
        f"{C}['event.notification.signature.key']",
        "must not be empty",
        True,
    ),
    Case(
        "refresh zero",
        _set("event.poller.refresh_interval", 0),
        f"{C}['event.poller.refresh_interval']",
        MINUTES,
        True,
    ),
    Case(
        "refresh a day and more",
        _set("event.poller.refresh_interval", 1441),
        f"{C}['event.poller.refresh_interval']",
        MINUTES,
        True,
    ),
    Case(
        "refresh boolean",
        _set("event.poller.refresh_interval", True),
        f"{C}['event.poller.refresh_interval']",
        MINUTES,
        True,
    ),
    Case(
        "refresh string too big",
        _set("event.poller.refresh_interval", "2000"),
        f"{C}['event.poller.refresh_interval']",
        MINUTES,
        False,
    ),
    Case(
        "unknown time zone",
        _set("event.poller.timezone", "Mars/Olympus_Mons"),
        f"{C}['event.poller.timezone']",
        "'Mars/Olympus_Mons' is not a known time zone",
        False,
    ),
    Case(
        "format xml",
        _set("event.notification.format", "xml"),
        f"{C}['event.notification.format']",
        "must be elements or cloudevents",
        True,
    ),
    Case(
        "poller not JSON",
        _set("event.poller.configuration", "{accounts: 1}"),
        POLLER,
        "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        False,
    ),
    Case(
        "poller JSON array",
        _set("event.poller.configuration", "[]"),
        POLLER,
        "must be an object, got array",
        False,
    ),
    Case(
        "poller number", _set("event.poller.configuration", 7), POLLER, "must be an object, got number", True
    ),
    Case(
        "resource not object",
        {"configuration": {"event.poller.configuration": {"accounts": "x"}}},
        ACCOUNTS,
        "must be an object, got string",
        True,
    ),
    Case("no url", _accounts(url=None), f"{ACCOUNTS}.url", "is required", True),
    Case(
        "template unterminated",
        _accounts(url=_URL),
        f"{ACCOUNTS}.url",
        "invalid URL template: unterminated quote at position 58",
        False,
    ),
    Case(
        "not a hub URL",
        _accounts(url="/crm/accounts"),
        f"{ACCOUNTS}.url",
        "invalid hub URL: '/crm/accounts' is not of the form /hubs/<hub>/<resource>[?where=...]",
        False,
    ),
    Case(
        "where without OData",
        _accounts(url="/hubs/crm/accounts?where=name like 'x'"),
        f"{ACCOUNTS}.url",
        "invalid where clause: unsupported operator 'LIKE' at position 5",
        False,
    ),
    Case("no idField", _accounts(idField=None), f"{ACCOUNTS}.idField", "is required", True),
    Case(
        "idField empty segment",
        _accounts(idField="a..b"),
        f"{ACCOUNTS}.idField",
        "must be a dotted field path, such as attributes.modifiedon",
        True,
    ),
    Case(
        "no dates", _accounts(datesConfiguration=None), f"{ACCOUNTS}.datesConfiguration", "is required", True
    ),
    Case(
        "dates string",
        _accounts(datesConfiguration="x"),
        f"{ACCOUNTS}.datesConfiguration",
        "must be an object, got string",
        True,
    ),
    Case(
        "no updatedDateField", _dates(updatedDateField=None), f"{DATES}.updatedDateField", "is required", True
    ),
    Case(
        "no updatedDateFormat",
        _dates(updatedDateFormat=None),
        f"{DATES}.updatedDateFormat",
        "is required",
        True,
    ),
    Case(
        "bad date pattern",
        _dates(updatedDateFormat="yyyy-qq"),
        f"{DATES}.updatedDateFormat",
        "unknown date format: unknown pattern letter 'q' at position 5",
        False,
    ),
    Case(
        "bad dates time zone",
        _dates(updatedDateTimezone="Nowhere/Town"),
        f"{DATES}.updatedDateTimezone",
        "'Nowhere/Town' is not a known time zone",
        False,
    ),
    Case(
        "created format alone",
        _dates(createdDateField=None),
        f"{DATES}.createdDateFormat",
        "requires createdDateField",
        True,
    ),
    Case("page size zero", _accounts(pageSize=0), f"{ACCOUNTS}.pageSize", PAGE_SIZE, True),
    Case("page size too big", _accounts(pageSize=5001), f"{ACCOUNTS}.pageSize", PAGE_SIZE, True),
    Case("page size fraction", _accounts(pageSize=10.5), f"{ACCOUNTS}.pageSize", PAGE_SIZE, True),
    Case("page size string zero", _accounts(pageSize="0"), f"{ACCOUNTS}.pageSize", PAGE_SIZE, False),
    Case("poll delay negative", _accounts(pollDelay=-1), f"{ACCOUNTS}.pollDelay", SECONDS, True),
    Case("poll delay negative string", _accounts(pollDelay="-1"), f"{ACCOUNTS}.pollDelay", SECONDS, True),
    Case(
        "tolerance word",
        _accounts(createdCheckTolerance="abc"),
        f"{ACCOUNTS}.createdCheckTolerance",
        SECONDS,
        True,
    ),
    Case(
        "filter maybe",
        _accounts(filterByUpdatedDate="maybe"),
        f"{ACCOUNTS}.filterByUpdatedDate",
        "must be true or false",
        True,
    ),
    Case("snapshot number", _accounts(snapshot=1), f"{ACCOUNTS}.snapshot", "must be true or false", True),
    Case(
        "deletes check negative",
        _accounts(deletesCheckInterval=-1),
        f"{ACCOUNTS}.deletesCheckInterval",
        "must be a number of minutes from 0 (never) to 10080",
        True,
    ),
    Case(
        "deletes check over a week",
        _accounts(deletesCheckInterval=10081),
        f"{ACCOUNTS}.deletesCheckInterval",
        "must be a number of minutes from 0 (never) to 10080",
        True,
    ),
    Case(
        "formatted values number",
        _accounts(formattedValues=1),
        f"{ACCOUNTS}.formattedValues",
        "must be true or false",
        True,
    ),
    Case(
        "primary key spaces",
        _accounts(primaryKey="account id"),
        f"{ACCOUNTS}.primaryKey",
        "must be a column's logical name, such as accountid",
        True,
    ),
    Case(
        "select not a list",
        _accounts(select="name"),
        f"{ACCOUNTS}.select",
        "must be a non-empty array of column names, got string",
        True,
    ),
    Case(
        "select empty",
        _accounts(select=[]),
        f"{ACCOUNTS}.select",
        "must be a non-empty array of column names, got an empty array",
        True,
    ),
    Case(
        "select bad name",
        _accounts(select=["name", "account number"]),
        f"{ACCOUNTS}.select[1]",
        "must be a column's logical name, such as name or _parentaccountid_value",
        True,
    ),
    Case(
        "select number",
        _accounts(select=[7]),
        f"{ACCOUNTS}.select[0]",
        "must be a column's logical name, such as name or _parentaccountid_value",
        True,
    ),
    Case(
        "select repeated", _accounts(select=["name", "name"]), f"{ACCOUNTS}.select[1]", "repeats name", True
    ),
    Case(
        "subscriptions not an array",
        {"subscriptions": {"id": "a"}},
        "$.subscriptions",
        "must be an array of subscriptions, got object",
        True,
    ),
    Case(
        "subscription without a callback",
        {"subscriptions": [{"id": "a", "configuration": {}}]},
        "$.subscriptions[0].configuration['event.notification.callback.url']",
        "is required",
        True,
    ),
    Case(
        "subscription event type",
        {"subscriptions": [{"id": "a", "eventTypes": ["MERGED"], "configuration": _CALLBACK}]},
        "$.subscriptions[0].eventTypes[0]",
        "must be CREATED, UPDATED or DELETED",
        True,
    ),
    Case(
        "subscription ids repeat",
        {"subscriptions": [{"id": "a", "configuration": _CALLBACK}, {"id": "a", "configuration": _CALLBACK}]},
        "$.subscriptions[1].id",
        "repeats the id 'a'",
        False,
    ),
    Case(
        "subscription changed columns empty",
        {"subscriptions": [{"id": "a", "changedColumns": [], "configuration": _CALLBACK}]},
        "$.subscriptions[0].changedColumns",
        "must be a non-empty array of names; leave it out to match every one",
        True,
    ),
    Case(
        "subscription rate limit zero",
        {"subscriptions": [{"id": "a", "rateLimit": 0, "configuration": _CALLBACK}]},
        "$.subscriptions[0].rateLimit",
        "must be a number of requests per second from 0.01 to 10000, or null for no limit",
        True,
    ),
    Case(
        "subscription rate limit text",
        {"subscriptions": [{"id": "a", "rateLimit": "fast", "configuration": _CALLBACK}]},
        "$.subscriptions[0].rateLimit",
        "must be a number of requests per second from 0.01 to 10000, or null for no limit",
        True,
    ),
    Case(
        "alerts subscription with a filter",
        {
            "subscriptions": [
                {"id": "a", "alerts": True, "eventTypes": ["UPDATED"], "configuration": _CALLBACK}
            ]
        },
        "$.subscriptions[0].eventTypes",
        "an alerts subscription receives alerts, not change events: leave it out",
        True,
    ),
    Case(
        "alerts subscription in the elements format",
        {
            "subscriptions": [
                {
                    "id": "a",
                    "alerts": True,
                    "configuration": {**_CALLBACK, "event.notification.format": "elements"},
                }
            ]
        },
        "$.subscriptions[0].configuration['event.notification.format']",
        "alerts are CloudEvents: leave it out or set cloudevents",
        True,
    ),
    Case(
        "headers not JSON",
        _set("event.notification.callback.headers", "{bad"),
        HEADERS,
        "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        False,
    ),
    Case(
        "header content-type",
        _set("event.notification.callback.headers", {"Content-Type": "text/plain"}),
        f"{HEADERS}['Content-Type']",
        RESERVED,
        False,
    ),
    Case(
        "header webhook-id",
        _set("event.notification.callback.headers", {"webhook-id": "1"}),
        f"{HEADERS}['webhook-id']",
        RESERVED,
        False,
    ),
    Case(
        "header elements signature",
        _set("event.notification.callback.headers", '{"Elements-Webhook-Signature": "x"}'),
        f"{HEADERS}['Elements-Webhook-Signature']",
        RESERVED,
        False,
    ),
    Case(
        "header name space",
        _set("event.notification.callback.headers", {"X Team": "a"}),
        f"{HEADERS}['X Team']",
        "is not a valid header name",
        True,
    ),
    Case(
        "header value number",
        _set("event.notification.callback.headers", {"X-Team": 1}),
        f"{HEADERS}['X-Team']",
        "must be a string, got number",
        True,
    ),
    Case(
        "header value newline",
        _set("event.notification.callback.headers", {"X-Team": "a\r\nX-Evil: 1"}),
        f"{HEADERS}['X-Team']",
        "must not contain line breaks or NUL characters",
        True,
    ),
    Case(
        "authorization with basic auth",
        {
            "configuration": {
                "event.notification.basic.username": "hooks",
                "event.notification.basic.password": "pw",
                "event.notification.callback.headers": {"Authorization": "Bearer x"},
            }
        },
        f"{HEADERS}.Authorization",
        "conflicts with event.notification.basic.username",
        False,
    ),
    Case(
        "basic user alone",
        _set("event.notification.basic.username", "hooks"),
        f"{C}['event.notification.basic.password']",
        "is required with event.notification.basic.username",
        True,
    ),
)
