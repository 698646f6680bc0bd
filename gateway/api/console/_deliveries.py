"""The console's deliveries page: each webhook of an instance with its status, attempts and next
retry, newest first, a page at a time. The figures are those of
GET /instances/{id}/deliveries?status=..., the delivery history (`delivery/history.py`)."""

from __future__ import annotations

from urllib.parse import urlencode

from gateway.api.console._dead_letters import attempts_table
from gateway.api.console._html import e, page
from gateway.delivery.history import STATUSES, DeliveryRecord, Page
from gateway.events import rfc3339

_LABELS = {"delivered": "Delivered", "retrying": "Retrying", "failed": "Failed"}
_DOTS = {"delivered": "ok", "retrying": "never", "failed": "failing"}


def _delivery(record: DeliveryRecord) -> str:
    event_id = e(record.event_id)
    status = record.status
    when = (
        f"next retry {e(rfc3339(record.next_retry_ms))}"
        if record.next_retry_ms is not None
        else e(rfc3339(record.at_ms))
    )
    attempts = f"{record.attempts} attempt{'s' if record.attempts != 1 else ''}"
    return f"""<li class="delivery delivery-{status}">
  <div class="dead-letter-line">
    <span class="dot dot-{_DOTS[status]}" aria-hidden="true"></span>
    <strong class="delivery-status">{_LABELS[status]}</strong>
    <span><code>{e(record.event_type)}</code> {e(record.subject)}</span>
  </div>
  <p class="hint">webhook-id <code>{event_id}</code>: {attempts}, {when}.</p>
  <details>
    <summary>Attempts ({len(record.history)})</summary>
    {attempts_table(record.history)}
  </details>
</li>"""


def deliveries_page(instance_id: str, name: str, shown: Page, *, status: str, csrf: str) -> str:
    iid = e(instance_id)
    options = "".join(
        f'<option value="{value}"{" selected" if value == status else ""}>{label}</option>'
        for value, label in (("all", "All"), *((s, _LABELS[s]) for s in STATUSES))
    )
    items = "".join(_delivery(record) for record in shown.records)
    body = (
        f'<ul class="dead-letters deliveries">{items}</ul>'
        if shown.records
        else '<p class="empty-note">No deliveries with this status yet.</p>'
    )
    older = ""
    if shown.next_cursor is not None:
        query = urlencode({"status": status, "cursor": shown.next_cursor})
        older = f'<p class="actions"><a class="button secondary" href="/console/instances/{iid}/deliveries?{e(query)}">Older deliveries</a></p>'
    main = f"""<div class="heading"><h1>Deliveries of {e(name)}</h1><div class="heading-actions">
<a class="button secondary" href="/console/instances/{iid}/dead-letters">Dead letters</a> <a class="button secondary" href="/console/instances/{iid}">Back to the instance</a></div></div>
<p class="hint">Each webhook's status as last committed, newest first, with every attempt: time, HTTP status, duration and error. Retries made within a second appear once the webhook is parked, delivered or dead-lettered. Reload the page for newer ones.</p>
<form method="get" action="/console/instances/{iid}/deliveries" class="filters">
  <div class="field"><label for="d-status">Status</label>
  <select id="d-status" name="status">{options}</select></div>
  <button type="submit" class="secondary">Show</button>
</form>
{body}
{older}"""
    return page(f"Deliveries of {name}", main, csrf=csrf)
