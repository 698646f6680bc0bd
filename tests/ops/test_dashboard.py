"""The Grafana dashboard and the alert rules: well-formed, covering what an operator watches, and
naming only metrics the gateway exports. No helm needed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "event-gateway"
DASHBOARD = CHART / "dashboards" / "event-gateway.json"
RULES = CHART / "templates" / "prometheusrule.yaml"

_METRIC = re.compile(r"\bgateway_[a-z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p["targets"]]


def _defined_metrics() -> set[str]:
    """Every metric name literal in the gateway's source, as exposed (counters also with `_total`)."""
    names = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        for name in re.findall(r"""["'](gateway_[a-z0-9_]+)["']""", path.read_text()):
            names.update({name, name if name.endswith("_total") else f"{name}_total"})
    return names


def _series_metric(name: str) -> str:
    for suffix in _HISTOGRAM_SERIES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_the_dashboard_is_importable() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "event-gateway"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job"} <= variables
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], target["expr"]
            assert target["expr"].count("(") == target["expr"].count(")")


def test_the_dashboard_shows_what_issue_6_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    for topic in (
        "throughput",
        "errors",
        "checkpoint age",
        "delivery delay",
        "retries",
        "dead letters",
        "lag",
    ):
        assert topic in titles, topic
    exprs = "\n".join(_exprs())
    delay = "rate(gateway_delivery_end_to_end_seconds_bucket"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) ({delay}" in exprs


def test_the_chart_names_only_metrics_the_gateway_exports() -> None:
    referenced = {_series_metric(m) for m in _METRIC.findall("\n".join(_exprs()) + RULES.read_text())}
    unknown = sorted(referenced - _defined_metrics())
    assert not unknown, (
        f"the dashboard or alert rules name metrics the gateway does not define: {unknown}; "
        "rename them in helm/event-gateway (dashboards/event-gateway.json, templates/prometheusrule.yaml)"
    )
