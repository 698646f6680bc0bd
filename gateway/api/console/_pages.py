"""The console's pages, rendered from what the gateway holds."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.api.console._form import (
    CONNECTION,
    EVENTS,
    IDENTITY,
    SEED_RESOURCES,
    Field,
    FormState,
)
from gateway.api.console._html import csrf_input, e, page
from gateway.api.instances import poller_configuration
from gateway.polling.status import PollStatus


def sign_in_page(*, problem: str | None = None) -> str:
    error = f'<p class="error" id="token-error" role="alert">{e(problem)}</p>' if problem else ""
    described = ' aria-describedby="token-error" aria-invalid="true"' if problem else ""
    main = f"""<section class="card narrow-card">
<h1>Sign in</h1>
<p>Sign in with the gateway's admin token (<code>GATEWAY_ADMIN_TOKEN</code>).</p>
<form method="post" action="/console/sign-in">
  <label for="token">Admin token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus{described}>
  {error}
  <button type="submit">Sign in</button>
</form>
</section>"""
    return page("Sign in", main)


def error_page(status: int, reason: str, message: str, *, signed_in: bool) -> str:
    """What a refused or missing console page shows: the API's JSON problems are for programs."""
    back = "/console/instances" if signed_in else "/console/sign-in"
    main = f"""<section class="card narrow-card">
<h1>{status} {e(reason)}</h1>
<p role="alert">{e(message)}</p>
<p><a href="{back}">Back to the console</a></p>
</section>"""
    return page(f"{status} {reason}", main)


@dataclass(frozen=True, slots=True)
class _Health:
    state: str  # ok, failing, never, unknown
    text: str


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _health(status: PollStatus | None, instance_id: str, *, enabled: bool) -> _Health:
    if not enabled:
        return _Health("never", "events off")
    if status is None or not status.polls(instance_id):
        return _Health("unknown", "not polled by this process")
    last = status.last(instance_id)
    if not last:
        return _Health("never", "never polled")
    newest = max(report.at for report in last.values())
    failing = sorted(name for name, report in last.items() if not report.ok)
    if failing:
        return _Health("failing", f"failing: {', '.join(failing)}")
    return _Health("ok", f"last poll ok, {_ago(newest)}")


def instances_page(bodies: Sequence[Mapping[str, Any]], status: PollStatus | None, *, csrf: str) -> str:
    if not bodies:
        rows = '<tr><td colspan="7" class="empty">No instances yet. <a href="/console/instances/new">Create one</a>.</td></tr>'
    else:
        rows = "\n".join(_instance_row(body, status) for body in bodies)
    main = f"""<div class="heading"><h1>Instances</h1><a class="button" href="/console/instances/new">New instance</a></div>
<div class="table-wrap">
<table class="instances">
<thead><tr><th scope="col">Health</th><th scope="col">Name</th><th scope="col">Element</th><th scope="col">Tags</th><th scope="col">Events</th><th scope="col">Resources polled</th><th scope="col">Last error</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>"""
    return page("Instances", main, csrf=csrf)


def _instance_row(body: Mapping[str, Any], status: PollStatus | None) -> str:
    instance_id = str(body.get("id", ""))
    configuration = body.get("configuration")
    config: Mapping[str, Any] = configuration if isinstance(configuration, Mapping) else {}
    element = body.get("element")
    element_key = element.get("key", "") if isinstance(element, Mapping) else ""
    tags = body.get("tags")
    tag_list = "".join(f'<span class="tag">{e(t)}</span>' for t in tags) if isinstance(tags, list) else ""
    enabled = str(config.get("event.notification.enabled", "false")).lower() == "true"
    resources = ", ".join(e(name) for name in poller_configuration(body)) or "none"
    health = _health(status, instance_id, enabled=enabled)
    failure = None if status is None else status.last_failure(instance_id)
    last_error = "—"
    if failure is not None:
        resource, report = failure
        last_error = f"<strong>{e(resource)}</strong>, {e(_ago(report.at))}: {e(report.error or '')}"
    name = e(body.get("name", instance_id))
    cells = {
        "Health": f'<span class="dot dot-{health.state}" aria-hidden="true"></span> {e(health.text)}',
        "Name": f'<a href="/console/instances/{e(instance_id)}">{name}</a>',
        "Element": e(element_key),
        "Tags": tag_list or "—",
        "Events": "On" if enabled else "Off",
        "Resources polled": resources,
        "Last error": last_error,
    }
    # One element per cell, so that the narrow layout (a card per instance) puts it beside its label.
    return (
        "<tr>"
        + "".join(f'<td data-label="{label}"><div>{html}</div></td>' for label, html in cells.items())
        + "</tr>"
    )


def problems_html(state: FormState, key: str) -> tuple[str, str]:
    """The problems shown beside a field, and the attributes that tie them to it."""
    problems = state.problems.get(key, [])
    if not problems:
        return "", ""
    element_id = f"error-{_id(key)}"
    items = "".join(
        f"<li>{f'<code>{e(path)}</code> ' if path else ''}{e(message)}</li>" for path, message in problems
    )
    return (
        f'<ul class="error" id="{element_id}" role="alert">{items}</ul>',
        f' aria-invalid="true" aria-describedby="{element_id}"',
    )


def _id(key: str) -> str:
    return "f-" + "".join(c if c.isalnum() else "-" for c in key)


def field_html(state: FormState, field: Field) -> str:
    value = state.values.get(field.key, "")
    error, aria = problems_html(state, field.key)
    hint_id = f"hint-{_id(field.key)}"
    hint = f'<p class="hint" id="{hint_id}">{e(field.hint)}</p>' if field.hint else ""
    if field.hint:
        aria += f' aria-details="{hint_id}"'
    fid = _id(field.key)
    name = e(field.key)
    if field.kind == "switch":
        checked = " checked" if value == "true" else ""
        return f"""<div class="field switch-field">
  <input type="checkbox" role="switch" id="{fid}" name="{name}" value="true"{checked}{aria}>
  <label for="{fid}">{e(field.label)}</label>{hint}{error}
</div>"""
    if field.kind == "interval":
        slider = min(120.0, max(1.0, _number(value)))
        return f"""<div class="field">
  <label for="{fid}">{e(field.label)}</label>
  <div class="interval">
    <input type="range" id="{fid}-slider" min="1" max="120" step="1" value="{slider:g}" aria-label="Refresh interval slider" data-sync="{fid}">
    <input type="number" id="{fid}" name="{name}" value="{e(value)}" min="0.0167" max="1440" step="any" inputmode="decimal" data-sync="{fid}-slider"{aria}>
  </div>{hint}{error}
</div>"""
    if field.kind == "secret":
        kept = field.key in state.stored_secrets
        note = ""
        if kept:
            note = "Stored; shown masked. Leave it as it is to keep it, or type a new one."
        elif state.problems and value:
            note = "Secrets are never sent back to the browser: enter it again."
        note_html = f'<p class="hint">{e(note)}</p>' if note else ""
        shown = e(value) if kept else ""
        return f"""<div class="field">
  <label for="{fid}">{e(field.label)}</label>
  <input type="password" id="{fid}" name="{name}" value="{shown}" autocomplete="new-password"{aria}>{hint}{note_html}{error}
</div>"""
    kind = "url" if field.kind == "url" else "text"
    return f"""<div class="field">
  <label for="{fid}">{e(field.label)}</label>
  <input type="{kind}" id="{fid}" name="{name}" value="{e(value)}" spellcheck="false"{aria}>{hint}{error}
</div>"""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 15.0


def _resource_row(state: FormState, name: str) -> str:
    rid = _id(f"resource.{name}")
    checked = " checked" if name in state.selected else ""
    error, aria = problems_html(state, f"resource.{name}")
    is_open = " open" if error else ""
    return f"""<li class="resource">
  <div class="resource-line">
    <input type="checkbox" id="{rid}-on" name="resources" value="{e(name)}"{checked}>
    <label for="{rid}-on">{e(name)}</label>
  </div>
  <details{is_open}>
    <summary title="Edit {e(name)} JSON"><span aria-hidden="true" class="pencil">✎</span><span class="visually-hidden">Edit {e(name)} JSON</span></summary>
    <label for="{rid}">{e(name)} JSON</label>
    <textarea id="{rid}" name="resource.{e(name)}" rows="11" spellcheck="false"{aria}>{e(state.resources[name])}</textarea>
  </details>{error}
</li>"""


def form_page(state: FormState, *, title: str, action: str, submit: str, csrf: str) -> str:
    general, _aria = problems_html(state, "")
    resources_error, _ = problems_html(state, "resources")
    new_error, new_aria = problems_html(state, "new_resource")
    options = "".join(
        f'<option value="{e(n)}"{" selected" if n == SEED_RESOURCES[0] else ""}>{e(n)}</option>'
        for n in state.resources
    )
    tracking = " checked" if state.detection == "tracking" else ""
    modifiedon = " checked" if state.detection == "modifiedon" else ""
    summary = ""
    if state.problems:
        count = sum(len(p) for p in state.problems.values())
        summary = f'<p class="error-summary" role="alert">The instance was not saved: {count} problem{"s" if count != 1 else ""}, shown beside {"its field" if count == 1 else "their fields"}.</p>'
    main = f"""<h1>{e(title)}</h1>
{summary}{general}
<form method="post" action="{e(action)}" class="instance-form" novalidate>
{csrf_input(csrf)}
<fieldset><legend>Instance</legend>
<p class="hint">Element: Microsoft Dynamics CRM (<code>dynamicscrmadfs</code>)</p>
{"".join(field_html(state, f) for f in IDENTITY)}
</fieldset>
<fieldset><legend>Authenticate with Dynamics</legend>
{"".join(field_html(state, f) for f in CONNECTION)}
</fieldset>
<fieldset><legend>Events</legend>
{"".join(field_html(state, f) for f in EVENTS)}
</fieldset>
<fieldset><legend>Resources to poll</legend>
<p class="hint">Select the resources to poll. The pencil opens a resource's JSON (<code>url</code>, <code>idField</code>, <code>datesConfiguration</code>, …).</p>
<ul class="resources">
{"".join(_resource_row(state, name) for name in state.resources)}
</ul>{resources_error}
<div class="copy-resource">
  <div class="field"><label for="f-new-resource">Custom resource name</label>
  <input type="text" id="f-new-resource" name="new_resource" spellcheck="false"{new_aria}></div>
  <div class="field"><label for="f-copy-from">Copy settings from</label>
  <select id="f-copy-from" name="copy_from">{options}</select></div>
  <p class="hint">A custom resource starts as a copy of another, with its name in the URL; it is added when the form is saved.</p>
  {new_error}
</div>
</fieldset>
<fieldset><legend>How changes are found</legend>
<div class="choice"><input type="radio" id="f-tracking" name="detection" value="tracking"{tracking}>
<label for="f-tracking">Change tracking (<code>fetchChanges='true'</code>), Dynamics 2016 and later</label></div>
<div class="choice"><input type="radio" id="f-modifiedon" name="detection" value="modifiedon"{modifiedon}>
<label for="f-modifiedon">The <code>modifiedon</code> filter, earlier versions of Dynamics</label></div>
</fieldset>
<div class="actions"><button type="submit">{e(submit)}</button> <a href="/console/instances">Cancel</a></div>
</form>"""
    return page(title, main, csrf=csrf)


_OUTCOMES = {
    "ok": ("ok", "ok"),
    "failed": ("failing", "failed"),
    "never": ("never", "never polled"),
    "unknown": ("unknown", "not polled by this process"),
}


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _test_answer(answer: Mapping[str, Any]) -> str:
    if answer["delivered"]:
        text = f"Test event delivered: {answer['host']} answered {answer['status']} in {answer['durationMs']} ms."
        return f'<p class="notice" role="status">{e(text)} <small>webhook-id <code>{e(answer["webhookId"])}</code></small></p>'
    return f'<p class="error-summary" role="status">Test event not delivered: {e(answer["error"])}.</p>'


def instance_page(
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    csrf: str,
    test_answer: Mapping[str, Any] | None = None,
) -> str:
    """An instance's resources, each with the figures of GET /instances/{id}/status."""
    instance_id = str(body.get("id", ""))
    rows = []
    for name, figures in status["resources"].items():
        dot, outcome = _OUTCOMES[figures["outcome"]]
        error = figures.get("lastError")
        last_error = f"{e(error['at'])}: {e(error['message'] or '')}" if error else "—"
        cells = {
            "Resource": f"<strong>{e(name)}</strong>",
            "Last poll": f'<span class="dot dot-{dot}" aria-hidden="true"></span> {e(outcome)}'
            + (f"<br><small>{e(figures['lastPollAt'])}</small>" if "lastPollAt" in figures else ""),
            "Duration": e(_seconds(figures.get("durationSeconds"))),
            "Records fetched": e(figures.get("recordsFetched", "—")),
            "Events published": e(figures.get("eventsPublished", "—")),
            "Checkpoint age": e(_seconds(figures.get("checkpointAgeSeconds"))),
            "Last error": last_error,
        }
        rows.append(
            "<tr>" + "".join(f'<td data-label="{k}"><div>{v}</div></td>' for k, v in cells.items()) + "</tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="7" class="empty">This instance polls no resources.</td></tr>')
    head = "".join(
        f'<th scope="col">{label}</th>'
        for label in (
            "Resource",
            "Last poll",
            "Duration",
            "Records fetched",
            "Events published",
            "Checkpoint age",
            "Last error",
        )
    )
    title = str(body.get("name", instance_id))
    main = f"""<div class="heading"><h1>{e(title)}</h1><div class="heading-actions">
<form method="post" action="/console/instances/{e(instance_id)}/test-event">{csrf_input(csrf)}<button type="submit" class="secondary">Send test event</button></form>
<a class="button secondary" href="/console/instances/{e(instance_id)}/subscriptions">Subscriptions</a> <a class="button secondary" href="/console/instances/{e(instance_id)}/deliveries">Deliveries</a> <a class="button secondary" href="/console/instances/{e(instance_id)}/dead-letters">Dead letters</a> <a class="button" href="/console/instances/{e(instance_id)}/edit">Edit instance</a></div></div>
{"" if test_answer is None else _test_answer(test_answer)}
<p class="hint">Instance <code>{e(instance_id)}</code>. The figures of each resource's last poll, as <code>GET /instances/{e(instance_id)}/status</code> gives them; reload the page for newer ones.</p>
<div class="table-wrap">
<table class="instances">
<thead><tr>{head}</tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
</div>
{_live_events(instance_id, list(status["resources"]))}"""
    return page(title, main, csrf=csrf)


def _live_events(instance_id: str, resources: list[str]) -> str:
    """Filled by console.js from the instance's event stream (Server-Sent Events)."""
    resource_options = "".join(f'<option value="{e(name)}">{e(name)}</option>' for name in resources)
    type_options = "".join(f'<option value="{t}">{t}</option>' for t in ("CREATED", "UPDATED", "DELETED"))
    return f"""<section class="live" aria-labelledby="live-heading">
<h2 id="live-heading">Live events</h2>
<div class="filters">
  <div class="field"><label for="live-resource">Resource</label>
  <select id="live-resource" data-live-filter="resource"><option value="">All resources</option>{resource_options}</select></div>
  <div class="field"><label for="live-type">Event type</label>
  <select id="live-type" data-live-filter="eventType"><option value="">All event types</option>{type_options}</select></div>
</div>
<p id="live-state" class="hint" role="status">Live events need JavaScript.</p>
<div class="table-wrap">
<table class="instances live-events" data-stream="/console/instances/{e(instance_id)}/events">
<thead><tr><th scope="col">Time</th><th scope="col">Resource</th><th scope="col">Event type</th><th scope="col">Object id</th></tr></thead>
<tbody id="live-events"></tbody>
</table>
</div>
</section>"""
