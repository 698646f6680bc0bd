"""The instance form: its fields, the instance body a posted form stands for, and which field each
of the validator's problems belongs beside."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from multidict import MultiDictProxy

from gateway.api.instances import poller_configuration
from gateway.errors import Problem
from gateway.instances import MASK, SECRET_URL_KEYS, child, mask_url

FieldKind = Literal["text", "secret", "switch", "interval", "url"]
POLLER = "event.poller.configuration"
_CONFIG = "$.configuration"
_POLLER_PATH = child(_CONFIG, POLLER)
ELEMENT_KEY = "dynamicscrmadfs"
SEED_RESOURCES = ("accounts", "contacts", "leads", "opportunities", "tasks", "notes", "activities")
TRACKING = "fetchChanges='true'"
MODIFIEDON = "modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"
ChangeDetection = Literal["tracking", "modifiedon"]


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # the configuration key; `name` and `tags` are the body's own
    label: str
    kind: FieldKind = "text"
    hint: str = ""

    @property
    def path(self) -> str:
        return f"$.{self.key}" if self.key in ("name", "tags") else child(_CONFIG, self.key)


# In the order of the seed's "Configure Polling Through the UI", with its labels.
IDENTITY = (Field("name", "Name"), Field("tags", "Tags", hint="Separate tags with commas."))
CONNECTION = (
    Field("dynamics.tenant", "Dynamics tenant", hint="For example yourcompanyname.crm.dynamics.com"),
    Field("dynamics.base.url", "Dynamics base URL", "url", "Instead of the tenant, e.g. a test server."),
    Field("user.username", "Username"),
    Field("user.password", "Password", "secret"),
    Field("oauth.api.key", "OAuth client id", hint="Instead of a username and password."),
    Field("oauth.api.secret", "OAuth client secret", "secret"),
)
EVENTS = (
    Field("event.notification.enabled", "Events Enabled", "switch"),
    Field("event.notification.callback.url", "Event Notification Callback URL", "url"),
    Field(
        "event.notification.signature.key",
        "Event Notification Signature Key",
        "secret",
        "Optional: receivers check each event's signature with it.",
    ),
    Field("event.poller.refresh_interval", "Event poller refresh interval (mins)", "interval"),
)
FIELDS = (*IDENTITY, *CONNECTION, *EVENTS)


def seed_resource(name: str, detection: ChangeDetection = "tracking") -> dict[str, Any]:
    """A resource as the seed's example configures it."""
    return {
        "url": f"/hubs/crm/{name}?where={TRACKING if detection == 'tracking' else MODIFIEDON}",
        "idField": "id",
        "datesConfiguration": {
            "updatedDateField": "attributes.modifiedon",
            "updatedDateFormat": "milliseconds",
            "createdDateField": "attributes.createdon",
            "createdDateFormat": "milliseconds",
        },
    }


def resource_path(name: str) -> str:
    return child(_POLLER_PATH, name)


@dataclass(slots=True)
class FormState:
    """What the form shows: field values, resources (selected or not) and the problems beside them."""

    values: dict[str, str]
    resources: dict[str, str]  # name -> its JSON text, in the order shown
    selected: set[str]
    detection: ChangeDetection
    # By field key, `resource.<name>`, `resources`, `new_resource` or "" (the form as a whole): the
    # JSON path each is about (empty for the form's own problems) and the validator's message.
    problems: dict[str, list[tuple[str, str]]]
    stored_secrets: frozenset[str] = frozenset()  # secret keys the instance has, shown masked

    def add_problem(self, key: str, message: str, path: str = "") -> None:
        self.problems.setdefault(key, []).append((path, message))


def _dump(resource: Any) -> str:
    return json.dumps(resource, indent=2)


def new_form() -> FormState:
    return FormState(
        values={"event.notification.enabled": "true", "event.poller.refresh_interval": "15"},
        resources={name: _dump(seed_resource(name)) for name in SEED_RESOURCES},
        selected=set(),
        detection="tracking",
        problems={},
    )


def form_of(body: Mapping[str, Any]) -> FormState:
    """The form of a stored instance, its secrets masked."""
    configuration = body.get("configuration")
    config: Mapping[str, Any] = configuration if isinstance(configuration, Mapping) else {}
    values: dict[str, str] = {}
    secrets: set[str] = set()
    for field in FIELDS:
        value = body.get(field.key) if field.key in ("name", "tags") else config.get(field.key)
        if value is None:
            continue
        if field.kind == "secret":
            values[field.key] = MASK
            secrets.add(field.key)
        elif field.key in SECRET_URL_KEYS:
            # Its path and query may carry a receiver's token: the page shows the host only.
            values[field.key] = mask_url(str(value))
        elif isinstance(value, list):
            values[field.key] = ", ".join(str(item) for item in value)
        else:
            values[field.key] = str(value)
    poller = poller_configuration(body)
    resources = {name: _dump(seed_resource(name)) for name in SEED_RESOURCES}
    resources.update({name: _dump(resource) for name, resource in poller.items()})
    urls = [str(r.get("url", "")) for r in poller.values() if isinstance(r, Mapping)]
    tracking = not urls or any(TRACKING in url for url in urls)
    return FormState(
        values=values,
        resources=resources,
        selected=set(poller),
        detection="tracking" if tracking else "modifiedon",
        problems={},
        stored_secrets=frozenset(secrets),
    )


def _with_detection(resource: Any, detection: ChangeDetection) -> Any:
    """The resource with its query switched to the chosen way of finding changes, where its query is
    one of the seed's two; a query a person wrote is theirs."""
    if not isinstance(resource, dict) or not isinstance(resource.get("url"), str):
        return resource
    base, sep, where = resource["url"].partition("?where=")
    if sep and where in (TRACKING, MODIFIEDON):
        resource = {**resource, "url": f"{base}?where={TRACKING if detection == 'tracking' else MODIFIEDON}"}
    return resource


def read_form(form: MultiDictProxy[Any], *, before: Mapping[str, Any] | None) -> tuple[FormState, Any]:
    """The form as posted, and the Cloud Elements instance body it stands for. On edit (`before`),
    configuration keys the form does not show are kept, and a secret left as its mask keeps its
    stored value. A resource whose JSON does not parse is a problem beside it."""
    values = {field.key: str(form.get(field.key, "")).strip() for field in FIELDS}
    values["event.notification.enabled"] = "true" if form.get("event.notification.enabled") else "false"
    names = [str(key).removeprefix("resource.") for key in form if str(key).startswith("resource.")]
    state = FormState(
        values=values,
        resources={name: str(form.get(f"resource.{name}", "")) for name in names},
        selected={str(name) for name in form.getall("resources", [])},
        detection="modifiedon" if form.get("detection") == "modifiedon" else "tracking",
        problems={},
    )
    _add_copied_resource(state, str(form.get("new_resource", "")).strip(), str(form.get("copy_from", "")))
    before_config = before.get("configuration") if before is not None else None
    config: dict[str, Any] = dict(before_config) if isinstance(before_config, Mapping) else {}
    for field in FIELDS[len(IDENTITY) :]:
        value = values[field.key]
        if field.kind == "secret" and value == MASK and field.key in config:
            continue
        if field.key in SECRET_URL_KEYS and field.key in config and value == mask_url(str(config[field.key])):
            continue
        if value:
            config[field.key] = value
        else:
            config.pop(field.key, None)
    config[POLLER] = _selected_resources(state)
    body: dict[str, Any] = {
        "element": copy.deepcopy(before.get("element")) if before is not None else {"key": ELEMENT_KEY},
        "name": values["name"],
        "tags": [tag.strip() for tag in values["tags"].split(",") if tag.strip()],
        "configuration": config,
    }
    if not values["name"]:
        del body["name"]  # so that the validator says it is required
    state.stored_secrets = frozenset(
        f.key for f in FIELDS if f.kind == "secret" and values[f.key] == MASK and f.key in config
    )
    return state, body


def _add_copied_resource(state: FormState, name: str, source: str) -> None:
    if not name:
        return
    if name in state.resources:
        state.add_problem("new_resource", f"there is already a resource named {name!r}")
        return
    if source not in state.resources:
        state.add_problem("new_resource", "choose a resource to copy")
        return
    text = state.resources[source]
    try:
        resource = json.loads(text)
    except ValueError:
        state.add_problem("new_resource", f"the JSON of {source} does not parse, so it cannot be copied")
        return
    if isinstance(resource, dict) and isinstance(resource.get("url"), str):
        resource["url"] = resource["url"].replace(f"/{source}?", f"/{name}?", 1)
    state.resources[name] = _dump(resource)
    state.selected.add(name)


def _selected_resources(state: FormState) -> dict[str, Any]:
    poller: dict[str, Any] = {}
    for name, text in state.resources.items():
        if name not in state.selected:
            continue
        try:
            resource = json.loads(text)
        except ValueError as exc:
            state.add_problem(f"resource.{name}", f"is not valid JSON: {exc}", resource_path(name))
            continue
        poller[name] = _with_detection(resource, state.detection)
        state.resources[name] = _dump(poller[name])
    return poller


def place_problems(state: FormState, problems: tuple[Problem, ...]) -> None:
    """Put each of the validator's problems beside its field, with the path it names."""
    by_path = {field.path: field.key for field in FIELDS}
    resource_paths = {resource_path(name): f"resource.{name}" for name in state.resources}
    for problem in problems:
        state.add_problem(_field_of(problem.path, by_path, resource_paths), problem.message, problem.path)


def _field_of(path: str, by_path: Mapping[str, str], resource_paths: Mapping[str, str]) -> str:
    if path in by_path:
        return by_path[path]
    if path.startswith("$.tags["):
        return "tags"
    for prefix, key in resource_paths.items():
        if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
            return key
    if path == _POLLER_PATH:
        return "resources"
    if path == _CONFIG:  # "credentials are required": beside the first of them
        return "user.username"
    return ""
