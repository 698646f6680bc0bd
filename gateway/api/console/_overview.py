"""The overview page: changes and deliveries per minute over the last hour, and the poller replicas.

The charts are SVG drawn here, not by a charting library: two line charts of at most 61 points need
no script, and an SVG in the page is allowed by a policy that forbids inline script and style.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.api.console._html import e, page
from gateway.api.rates import Series

_WIDTH, _HEIGHT, _PAD = 600, 160, 28
_COLOURS = 8  # .series-0 … .series-7 in console.css


def _minute(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


def _chart(title: str, minutes: tuple[float, ...], series: Mapping[str, tuple[int, ...]]) -> str:
    """A line per series, a legend with each series' total, and the totals as a table for readers
    who cannot see the lines."""
    heading_id = f"chart-{title.lower().replace(' ', '-')}"
    if not any(sum(counts) for counts in series.values()):
        return f"""<section class="card chart" aria-labelledby="{heading_id}">
<h2 id="{heading_id}">{e(title)}</h2>
<p class="hint">None in the last hour.</p>
</section>"""
    points = len(minutes)
    top = max(max(counts) for counts in series.values())
    step = (_WIDTH - 2 * _PAD) / max(1, points - 1)

    def xy(i: int, count: int) -> str:
        x = _PAD + i * step
        y = _HEIGHT - _PAD - (count / top) * (_HEIGHT - 2 * _PAD)
        return f"{x:.1f},{y:.1f}"

    lines = []
    rows = []
    for n, (name, counts) in enumerate(sorted(series.items())):
        colour = f"series-{n % _COLOURS}"
        path = " ".join(xy(i, c) for i, c in enumerate(counts))
        lines.append(f'<polyline class="line {colour}" points="{path}"/>')
        # A dot per minute too: a line needs two minutes, and a gateway just started has one.
        lines.extend(
            f'<circle class="point {colour}" cx="{xy(i, c).split(",")[0]}" cy="{xy(i, c).split(",")[1]}" r="3"/>'
            for i, c in enumerate(counts)
            if c
        )
        rows.append(
            f'<tr><th scope="row"><span class="swatch {colour}" aria-hidden="true"></span>{e(name)}</th>'
            f"<td>{sum(counts)}</td><td>{counts[-1]}</td><td>{max(counts)}</td></tr>"
        )
    axis = (
        f'<line class="axis" x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" y2="{_HEIGHT - _PAD}"/>'
        f'<text class="tick" x="{_PAD}" y="{_HEIGHT - 8}">{_minute(minutes[0])}</text>'
        f'<text class="tick end" x="{_WIDTH - _PAD}" y="{_HEIGHT - 8}">now</text>'
        f'<text class="tick" x="2" y="{_PAD - 10}">{top}/min</text>'
    )
    return f"""<section class="card chart" aria-labelledby="{heading_id}">
<h2 id="{heading_id}">{e(title)}</h2>
<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-labelledby="{heading_id}">{axis}{"".join(lines)}</svg>
<table class="totals">
<thead><tr><th scope="col">Series</th><th scope="col">Last hour</th><th scope="col">This minute</th><th scope="col">Busiest minute</th></tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
</section>"""


def _replicas(cluster: Mapping[str, Any] | None, problem: str | None) -> str:
    if cluster is None:
        return f'<p class="error" role="alert">The poller group could not be read: {e(problem or "")}</p>'
    rows = (
        "".join(
            f'<tr><td data-label="Replica"><div>{e(r["replica"])}</div></td>'
            f'<td data-label="Host"><div>{e(r["host"])}</div></td>'
            f'<td data-label="Partitions"><div>{e(", ".join(map(str, r["partitions"])) or "none")}</div></td>'
            f'<td data-label="Instances"><div>{len(r["instances"])}</div></td></tr>'
            for r in cluster["replicas"]
        )
        or '<tr><td colspan="4" class="empty">No poller replica is in the group.</td></tr>'
    )
    unowned = cluster["unownedPartitions"]
    warning = (
        f'<p class="error" role="alert">Partitions no replica owns: {e(", ".join(map(str, unowned)))}; '
        f"{len(cluster['unpolledInstances'])} instances are not polled.</p>"
        if unowned
        else ""
    )
    return f"""<p class="hint">Group <code>{e(cluster["group"])}</code>, {e(cluster["state"])}, as <code>GET /cluster</code> gives it.</p>
{warning}
<div class="table-wrap">
<table class="instances">
<thead><tr><th scope="col">Replica</th><th scope="col">Host</th><th scope="col">Partitions</th><th scope="col">Instances</th></tr></thead>
<tbody>{rows}</tbody>
</table>
</div>"""


def overview_page(
    series: Series, cluster: Mapping[str, Any] | None, *, csrf: str, cluster_problem: str | None = None
) -> str:
    main = f"""<div class="heading"><h1>Overview</h1></div>
<p class="hint">Per minute over the last hour, as this gateway process counted them; reload the page for newer figures.</p>
<div class="charts">
{_chart("Changes per minute", series.minutes, series.changes)}
{_chart("Deliveries per minute", series.minutes, series.deliveries)}
</div>
<h2>Poller replicas</h2>
{_replicas(cluster, cluster_problem)}"""
    return page("Overview", main, csrf=csrf)
