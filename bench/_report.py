"""What a benchmark reports: its figure, the baseline measured beside it, and the targets it is held to."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

Op = Literal[">=", "<="]


@dataclass(frozen=True, slots=True)
class Check:
    """One target: `value op limit`, e.g. 23,000 events/s >= 20,000."""

    label: str
    value: float
    op: Op
    limit: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "pass": self.passed}


@dataclass(slots=True)
class Result:
    """One benchmark's outcome. `rate` is its throughput (events/s, webhooks/s, polls/s), always positive
    when the benchmark ran; `baseline` the same figure for the baseline run in the same process tree."""

    name: str
    rate: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    measured_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0:
            return None
        return self.rate / self.baseline

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": round(self.rate, 3),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "baseline_label": self.baseline_label,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "checks": [check.as_json() for check in self.checks],
            "pass": self.passed,
            "details": self.details,
            "config": self.config,
            "notes": self.notes,
            "measured_at": self.measured_at,
        }


def _figure(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def table(results: Iterable[Result]) -> str:
    """The results as a Markdown table: one row per target."""
    rows = [("benchmark", "measure", "figure", "baseline", "ratio", "target", "result")]
    for result in results:
        baseline = "" if result.baseline is None else _figure(result.baseline, result.unit)
        ratio = "" if result.ratio is None else f"{result.ratio:.2f}"
        if not result.checks:  # no target: the rate it ran at
            rows.append((result.name, "rate", _figure(result.rate, result.unit), baseline, ratio, "", ""))
        for index, check in enumerate(result.checks):
            first = index == 0
            rows.append(
                (
                    result.name if first else "",
                    check.label,
                    _figure(check.value, check.unit),
                    baseline if first else "",
                    ratio if first else "",
                    f"{check.op} {_figure(check.limit, check.unit)}",
                    "pass" if check.passed else "MISS",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def host() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
    }


def write(results: Iterable[Result], directory: Path, *, quick: bool) -> Path:
    """Merge the results into `<directory>/<UTC date>.json` (a benchmark run again replaces its entry);
    written through a `.tmp` file, so that an interrupted run leaves the previous file whole."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dt.datetime.now(dt.UTC).date().isoformat()}.json"
    document: dict[str, Any] = {"benchmarks": {}}
    if path.exists():
        document = orjson.loads(path.read_bytes())
    document["host"] = host()
    for result in results:
        document["benchmarks"][result.name] = {**result.as_json(), "quick": quick}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    tmp.replace(path)
    return path
