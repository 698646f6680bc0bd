"""The console's subscriptions page: an instance's endpoints beside its callback, each with what it
receives, and forms to add one, remove one, and recover what one failed to deliver. The same
validation as `/instances/{id}/subscriptions` places each problem beside its field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multidict import MultiDictProxy

from gateway.api.console._form import Field, FormState
from gateway.api.console._html import csrf_input, e, page
from gateway.api.console._pages import field_html, problems_html
from gateway.errors import Problem
from gateway.instances import child
from gateway.instances.model import EVENT_TYPES

_URL = "event.notification.callback.url"
_KEY = "event.notification.signature.key"
_FORMAT = "event.notification.format"
_CONFIG = "$.configuration"
FIELDS = (
    Field(
        "id", "Subscription id", hint="Letters, digits, '.', '_' or '-'. Leave it empty for one to be made."
    ),
    Field("name", "Name"),
    Field(_URL, "Callback URL", "url"),
    Field(_KEY, "Signature key", "secret", "Optional: the receiver checks each webhook's signature with it."),
    Field("objectTypes", "Object types", hint="Resources such as accounts, separated by commas; empty: all."),
    Field(
        "changedColumns",
        "Changed columns",
        hint="UPDATED events only when one of these columns changed, separated by commas; empty: any.",
    ),
    Field("rateLimit", "Rate limit (requests per second)", hint="Empty: no limit."),
)
_PATHS = {
    "$.id": "id",
    "$.name": "name",
    child(_CONFIG, _URL): _URL,
    child(_CONFIG, _KEY): _KEY,
    child(_CONFIG, _FORMAT): _FORMAT,
    "$.objectTypes": "objectTypes",
    "$.eventTypes": "eventTypes",
    "$.changedColumns": "changedColumns",
    "$.rateLimit": "rateLimit",
    "$.alerts": "alerts",
    "$.enabled": "enabled",
}


def new_subscription_form() -> FormState:
    return FormState(
        values={"enabled": "true"}, resources={}, selected=set(), detection="tracking", problems={}
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _number(text: str) -> float | str:
    """A number as JSON has it; text that is none goes on as it is, for the validator to name."""
    try:
        return float(text)
    except ValueError:
        return text


def read_subscription_form(form: MultiDictProxy[Any]) -> tuple[FormState, dict[str, Any]]:
    """What the form shows again, and the subscription body it stands for."""
    state = new_subscription_form()
    values = {field.key: str(form.get(field.key, "")).strip() for field in FIELDS}
    values[_FORMAT] = str(form.get(_FORMAT, "elements"))
    values["alerts"] = "true" if form.get("alerts") else ""
    values["enabled"] = "true" if form.get("enabled") else ""
    state.values = values
    state.selected = {str(value) for value in form.getall("eventTypes", [])}
    body: dict[str, Any] = {"enabled": bool(values["enabled"])}
    for key in ("id", "name"):
        if values[key]:
            body[key] = values[key]
    for key in ("objectTypes", "changedColumns"):
        if values[key]:
            body[key] = _names(values[key])
    if state.selected:
        body["eventTypes"] = [t for t in EVENT_TYPES if t in state.selected]
    if values["rateLimit"]:
        body["rateLimit"] = _number(values["rateLimit"])
    if values["alerts"]:
        body["alerts"] = True
    configuration = {_URL: values[_URL], _FORMAT: values[_FORMAT]}
    if values[_KEY]:
        configuration[_KEY] = values[_KEY]
    body["configuration"] = configuration
    return state, body


def place_subscription_problems(state: FormState, problems: Sequence[Problem]) -> None:
    """Each problem (paths inside the subscription) beside its field, the rest above the form."""
    for problem in problems:
        key = next(
            (
                key
                for path, key in _PATHS.items()
                if problem.path == path or problem.path.startswith((f"{path}[", f"{path}."))
            ),
            "",
        )
        state.add_problem(key, problem.message, problem.path)


def _receives(subscription: Mapping[str, Any]) -> str:
    if subscription.get("alerts"):
        return "Alerts: events lost after their retries, endpoints disabled"
    parts = []
    for key, label in (
        ("objectTypes", "object types"),
        ("eventTypes", "events"),
        ("changedColumns", "columns"),
    ):
        names = subscription.get(key)
        if isinstance(names, list):
            parts.append(f"{label} {', '.join(str(n) for n in names)}")
    return "; ".join(parts) if parts else "Every change event"


def _when(rfc3339: str) -> str:
    """`2026-12-07T07:01:57.937Z` as `2026-12-07 07:01:57 UTC`."""
    return rfc3339[:19].replace("T", " ") + " UTC"


def _delivery(state: Mapping[str, Any], enable_form: str) -> tuple[str, str]:
    """The tag and the "Delivery" line of an endpoint's state (`GET /instances/{id}/endpoints`)."""
    kind = state.get("state")
    if kind == "failing":
        return "Failing", f"Every attempt since {e(_when(str(state['failingSince'])))} failed."
    if kind == "disabled":
        why = (
            "it answered 410 Gone"
            if state.get("cause") == "gone"
            else f"every attempt failed for too long, the last with {e(state.get('lastStatus') or 'no answer')}"
        )
        line = (
            f"Disabled at {e(_when(str(state['disabledAt'])))}: {why}. Its events wait in the dead "
            f"letters until it is enabled again, which enables every disabled endpoint of this "
            f"instance, as any change of it does; then recover them.{enable_form}"
        )
        return "Disabled", line
    if kind == "off":
        return "Off", "Switched off: it receives nothing."
    return "Delivering", "Delivering."


def _enable_form(instance_id: str, name: str, csrf: str) -> str:
    return (
        f'<form method="post" action="/console/instances/{e(instance_id)}/enable" class="inline-form">'
        f'{csrf_input(csrf)}<button type="submit" aria-label="Enable {e(name)} again">Enable again</button></form>'
    )


def _callback(instance_id: str, url: str, state: Mapping[str, Any], csrf: str) -> str:
    """The instance's own callback, the default subscription, with how delivery to it goes."""
    tag, delivery = _delivery(state, _enable_form(instance_id, "the instance's callback", csrf))
    return f"""<section class="subscription dead-letter callback" aria-labelledby="s-callback">
  <div class="dead-letter-line">
    <h2 id="s-callback">The instance's callback</h2>
    <span class="tag tag-{tag.lower()}">{tag}</span>
  </div>
  <dl class="facts" aria-labelledby="s-callback">
    <dt>Delivery</dt><dd>{delivery}</dd>
    <dt>Receives</dt><dd>Every change event</dd>
    <dt>Callback</dt><dd><code>{e(url or "none")}</code></dd>
  </dl>
</section>"""


def _subscription(
    instance_id: str, subscription: Mapping[str, Any], state: Mapping[str, Any], csrf: str
) -> str:
    sid = str(subscription.get("id", ""))
    name = str(subscription.get("name") or sid)
    configuration = subscription.get("configuration")
    config = configuration if isinstance(configuration, Mapping) else {}
    rate = subscription.get("rateLimit")
    base = f"/console/instances/{e(instance_id)}/subscriptions/{e(sid)}"
    rid = e(f"s-{sid}")
    tag, delivery = _delivery(state, _enable_form(instance_id, name, csrf))
    return f"""<li class="subscription dead-letter" data-subscription="{e(sid)}">
  <div class="dead-letter-line">
    <h2 id="{rid}">{e(name)}</h2>
    <span class="tag tag-{tag.lower()}">{tag}</span>
    <form method="post" action="{base}/remove">{csrf_input(csrf)}<button type="submit" class="secondary" aria-label="Remove {e(name)}">Remove</button></form>
  </div>
  <dl class="facts" aria-labelledby="{rid}">
    <dt>Id</dt><dd><code>{e(sid)}</code></dd>
    <dt>Delivery</dt><dd>{delivery}</dd>
    <dt>Receives</dt><dd>{e(_receives(subscription))}</dd>
    <dt>Callback</dt><dd><code>{e(config.get(_URL, ""))}</code> ({e(config.get(_FORMAT, "elements"))})</dd>
    <dt>Rate limit</dt><dd>{e("none" if rate is None else f"{rate:g} requests/s")}</dd>
  </dl>
  <details>
    <summary>Recover failed deliveries</summary>
    <form method="post" action="{base}/recover" class="actions replay-actions">
      {csrf_input(csrf)}
      <div class="field"><label for="{rid}-since">Failed since (UTC)</label>
      <input type="datetime-local" id="{rid}-since" name="since" step="1" required></div>
      <div class="field"><label for="{rid}-until">Failed until (UTC)</label>
      <input type="datetime-local" id="{rid}-until" name="until" step="1"></div>
      <button type="submit">Recover</button>
      <p class="hint">Sends again each event this subscription dead-lettered in that time; an empty end is now.</p>
    </form>
  </details>
</li>"""


def _form(instance_id: str, state: FormState, csrf: str) -> str:
    general, _ = problems_html(state, "")
    types_error, types_aria = problems_html(state, "eventTypes")
    format_error, format_aria = problems_html(state, _FORMAT)
    alerts_error, _ = problems_html(state, "alerts")
    fmt = state.values.get(_FORMAT, "elements")
    formats = "".join(
        f'<option value="{value}"{" selected" if value == fmt else ""}>{label}</option>'
        for value, label in (("elements", "Cloud Elements"), ("cloudevents", "CloudEvents"))
    )
    types = "".join(
        f'<div class="choice"><input type="checkbox" id="f-type-{t}" name="eventTypes" value="{t}"'
        f'{" checked" if t in state.selected else ""}{types_aria}><label for="f-type-{t}">{t}</label></div>'
        for t in EVENT_TYPES
    )
    alerts = " checked" if state.values.get("alerts") else ""
    enabled = " checked" if state.values.get("enabled") else ""
    summary = ""
    if state.problems:
        count = sum(len(p) for p in state.problems.values())
        summary = f'<p class="error-summary" role="alert">The subscription was not added: {count} problem{"s" if count != 1 else ""}, shown beside {"its field" if count == 1 else "their fields"}.</p>'
    return f"""<form method="post" action="/console/instances/{e(instance_id)}/subscriptions" class="instance-form" novalidate>
{csrf_input(csrf)}
<fieldset><legend>Add a subscription</legend>
{summary}{general}
{"".join(field_html(state, field) for field in FIELDS)}
<div class="field"><label for="f-format">Body format</label>
<select id="f-format" name="{_FORMAT}"{format_aria}>{formats}</select>{format_error}</div>
<fieldset class="choices" aria-describedby="hint-types"><legend>Event types</legend>{types}
<p class="hint" id="hint-types">None checked: all.</p>{types_error}</fieldset>
<div class="field switch-field"><input type="checkbox" role="switch" id="f-alerts" name="alerts" value="true"{alerts}>
<label for="f-alerts">Receives alerts instead of change events</label>{alerts_error}</div>
<div class="field switch-field"><input type="checkbox" role="switch" id="f-enabled" name="enabled" value="true"{enabled}>
<label for="f-enabled">Enabled</label></div>
</fieldset>
<div class="actions"><button type="submit">Add subscription</button></div>
</form>"""


def subscriptions_page(
    instance_id: str,
    name: str,
    configuration: object,
    subscriptions: Sequence[Mapping[str, Any]],
    states: Mapping[str | None, Mapping[str, Any]],
    form: FormState,
    *,
    csrf: str,
    notice: str | None = None,
) -> str:
    iid = e(instance_id)
    callback_url = str(configuration.get(_URL) or "") if isinstance(configuration, Mapping) else ""
    listed = "".join(
        _subscription(instance_id, s, states.get(str(s.get("id")), {}), csrf) for s in subscriptions
    )
    body = (
        f'<ul class="dead-letters subscriptions">{listed}</ul>'
        if subscriptions
        else '<p class="empty-note">No subscriptions: every change goes to the instance\'s callback only.</p>'
    )
    notice_html = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    main = f"""<div class="heading"><h1>Subscriptions of {e(name)}</h1><div class="heading-actions"><a class="button secondary" href="/console/instances/{iid}">Back to the instance</a></div></div>
<p class="hint">Endpoints beside the instance's callback, each receiving the changes its filter lets through, with its own retries, dead letters and circuit breaker.</p>
{notice_html}
{_callback(instance_id, callback_url, states.get(None, {}), csrf)}
{body}
{_form(instance_id, form, csrf)}"""
    return page(f"Subscriptions of {name}", main, csrf=csrf)
