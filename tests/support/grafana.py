"""The shipped Grafana dashboard (grafana/dashboards/) as the tests read it: its panels'
queries, Grafana's variables in them replaced by concrete values, and the metrics the
router can export, to hold the queries against.

``substitute`` does what Grafana does before it sends a query to Prometheus: it replaces
``$name``, ``${name}``, ``${name:format}`` and ``[[name]]`` with a value. A variable the
caller gave no value for is an error, so a query can never reach a checker with a ``$``
left in it unnoticed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from router.memory.metrics import MemoryMetrics
from router.metrics import Metrics
from router.reload import ReloadMetrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "memory-router.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "memory-router.yml"

# The per-client variable, and how every per-client selector must use it.
USER_VARIABLE = "user_id"
USER_MATCHER = 'user_id=~"$user_id"'

_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]|\$(?P<bare>\w+)"
)
# A metric name in a PromQL expression: a memory_router_* word not followed by "(",
# which would make it a function (none is named so, but be exact).
_METRIC = re.compile(r"\b(memory_router_[a-z0-9_]+)\b(?!\s*\()")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    panel_id: int
    panel_title: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.panel_title} [{self.ref_id}]"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, rows opened (a collapsed row holds its panels)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> list[Target]:
    return [
        Target(panel["id"], panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables_in(expr: str) -> set[str]:
    """The names of the Grafana variables ``expr`` uses."""
    return {
        match.group("braced") or match.group("bracketed") or match.group("bare")
        for match in _VARIABLE.finditer(expr)
    }


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every Grafana variable replaced by its value in ``values``;
    KeyError names a variable that has none."""
    missing = variables_in(expr) - set(values)
    if missing:
        raise KeyError(f"no value for Grafana variable(s) {sorted(missing)} in {expr!r}")

    def value(match: re.Match[str]) -> str:
        return values[match.group("braced") or match.group("bracketed") or match.group("bare")]

    return _VARIABLE.sub(value, expr)


def rules_document(queries: Mapping[str, str]) -> dict[str, Any]:
    """A Prometheus rules file that records each query under its own name, for
    ``promtool check rules``."""
    return {
        "groups": [
            {
                "name": "grafana-dashboard",
                "rules": [{"record": name, "expr": expr} for name, expr in queries.items()],
            }
        ]
    }


def record_name(target: Target) -> str:
    return f"dashboard:panel{target.panel_id}:{target.ref_id}"


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each ``memory_router_*`` selector in ``expr``: its name and its ``{...}`` matchers
    (empty when it has none)."""
    found = re.finditer(r"\b(memory_router_[a-z0-9_]+)\b(?!\s*\()(\{[^}]*\})?", expr)
    return [(match.group(1), match.group(2) or "") for match in found]


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every series name the router can export (``_total``, ``_bucket``, ... included),
    with the labels it carries (``le`` aside), read from the router's own metric
    definitions: router.metrics, router.reload and router.memory.metrics."""
    registry = CollectorRegistry()
    owners = (Metrics(registry), ReloadMetrics(registry), MemoryMetrics(registry, "local"))
    exported: dict[str, tuple[str, ...]] = {}
    for owner in owners:
        for metric in vars(owner).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            # prometheus-client keeps a metric's name, type and label names on the wrapper.
            name, kind = str(metric._name), str(metric._type)
            labels: tuple[str, ...] = tuple(metric._labelnames)
            for suffix in _SUFFIXES[kind]:
                exported[name + suffix] = labels
    return exported
