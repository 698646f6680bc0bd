"""The console's dead-letters page: each undelivered event with its attempts, and replay of one, a
selection, or all since a time. The figures are those of GET /instances/{id}/deliveries."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.api.console._html import csrf_input, e, page
from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.retry import AttemptRecord
from gateway.events import rfc3339


def _attempt_row(attempt: AttemptRecord) -> str:
    duration = "—" if attempt.duration_ms is None else f"{attempt.duration_ms} ms"
    return (
        f'<tr><td data-label="Attempt"><div>{attempt.number}</div></td>'
        f'<td data-label="Time"><div>{e(rfc3339(attempt.at_ms))}</div></td>'
        f'<td data-label="Outcome"><div>{e(attempt.outcome)}</div></td>'
        f'<td data-label="HTTP status"><div>{e(attempt.status if attempt.status is not None else "—")}</div></td>'
        f'<td data-label="Duration"><div>{e(duration)}</div></td>'
        f'<td data-label="Error"><div>{e(attempt.error or "—")}</div></td></tr>'
    )


def attempts_table(history: Sequence[AttemptRecord]) -> str:
    rows = "".join(_attempt_row(attempt) for attempt in history)
    return f"""<div class="table-wrap"><table class="instances attempts">
    <thead><tr><th scope="col">Attempt</th><th scope="col">Time</th><th scope="col">Outcome</th><th scope="col">HTTP status</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
    <tbody>{rows}</tbody>
    </table></div>"""


def _letter(letter: DeadLetter) -> str:
    event_id = e(letter.event_id)
    subject = e(letter.event.get("subject", ""))
    kind = e(letter.event.get("type", ""))
    return f"""<li class="dead-letter">
  <div class="dead-letter-line">
    <input type="checkbox" id="dl-{event_id}" name="selected" value="{event_id}">
    <label for="dl-{event_id}"><code>{kind}</code> {subject}</label>
    <button type="submit" name="one" value="{event_id}" class="secondary" aria-label="Replay {kind} {subject}">Replay</button>
  </div>
  <p class="hint">Event <code>{event_id}</code>: {e(letter.reason)} after {letter.attempts} attempt{"s" if letter.attempts != 1 else ""}, {e(rfc3339(letter.at_ms))}. {e(letter.detail)}</p>
  <details>
    <summary>Attempts ({len(letter.history)})</summary>
    {attempts_table(letter.history)}
  </details>
</li>"""


def dead_letters_page(
    instance_id: str, name: str, letters: Sequence[DeadLetter], *, csrf: str, notice: str | None = None
) -> str:
    iid = e(instance_id)
    shown = "".join(_letter(letter) for letter in letters)
    body = (
        f'<ul class="dead-letters">{shown}</ul>'
        if letters
        else '<p class="empty-note">No dead letters: every event was delivered or is still being retried.</p>'
    )
    notice_html = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    main = f"""<div class="heading"><h1>Dead letters of {e(name)}</h1><div class="heading-actions"><a class="button secondary" href="/console/instances/{iid}/deliveries">Deliveries</a> <a class="button secondary" href="/console/instances/{iid}">Back to the instance</a></div></div>
<p class="hint">Events whose delivery gave up, newest first, with every attempt. A replay sends them again with a fresh count of attempts.</p>
{notice_html}
<form method="post" action="/console/instances/{iid}/dead-letters/replay">
{csrf_input(csrf)}
{body}
<div class="actions replay-actions">
  <button type="submit" name="selection" value="1"{" disabled" if not letters else ""}>Replay selected</button>
</div>
</form>
<form method="post" action="/console/instances/{iid}/dead-letters/replay" class="actions replay-actions">
  {csrf_input(csrf)}
  <div class="field"><label for="f-since">Dead-lettered since (UTC)</label>
  <input type="datetime-local" id="f-since" name="since" step="1"></div>
  <button type="submit" name="all_since" value="1" class="secondary"{" disabled" if not letters else ""}>Replay all since</button>
  <p class="hint">Leave the time empty to replay every dead letter of the instance.</p>
</form>"""
    return page(f"Dead letters of {name}", main, csrf=csrf)
