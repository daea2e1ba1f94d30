"""The Grafana profile: grafana/ (dashboard, datasource and dashboard provisioning) and
the `grafana` service in docker-compose.yml, checked without a Grafana.

Every panel's PromQL goes through the real `promtool check rules`, as a rules file made
from the dashboard with Grafana's variables filled in. That the queries return each
client's series from a real Prometheus is the end-to-end tier's part
(tests/e2e/test_grafana.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.grafana import (
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    REPO,
    USER_MATCHER,
    USER_VARIABLE,
    Target,
    exported_metrics,
    load_dashboard,
    metric_names,
    panels,
    record_name,
    rules_document,
    selectors,
    substitute,
    targets,
    variables_in,
)
from tests.support.provision import ProvisionError, provision

COMPOSE_FILE = REPO / "docker-compose.yml"
LOG_DIR = REPO / "test-logs" / "stack"
PINNED_TAG = re.compile(r"^\d+\.\d+\.\d+$")

# What Grafana would put in at query time; promtool needs concrete PromQL.
GRAFANA_VALUES = {
    USER_VARIABLE: "pycharm-ai-chat|claude-code-cli",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

# The metric each panel the issue asks for is drawn from.
REQUIRED_METRICS = {
    "memory_router_requests_total",  # request rate, error ratio, 429s
    "memory_router_request_duration_seconds_bucket",  # p95 latency
    "memory_router_time_to_first_byte_seconds_bucket",  # p95 time to first token
    "memory_router_tokens_total",
    "memory_router_rate_limited_total",
    "memory_router_overhead_seconds_bucket",
    "memory_router_config_reloads_total",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def all_targets(dashboard: dict[str, Any]) -> list[Target]:
    found = targets(dashboard)
    assert found, f"{DASHBOARD} has no queries"
    return found


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[str, ...]]:
    return exported_metrics()


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    (only,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert isinstance(only, dict)
    return only


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


@pytest.fixture(scope="module")
def grafana_service(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["grafana"]
    return service


def per_client(target: Target, exported: dict[str, tuple[str, ...]]) -> bool:
    """Whether the query reads a metric that is counted per client."""
    return any("user_id" in exported.get(name, ()) for name in metric_names(target.expr))


# -- the dashboard -------------------------------------------------------------------


def test_every_panel_has_a_query_on_the_provisioned_datasource(
    dashboard: dict[str, Any], datasource: dict[str, Any]
) -> None:
    uid = datasource["uid"]
    shown = list(panels(dashboard))
    assert len({panel["id"] for panel in shown}) == len(shown), "panel ids must be unique"
    for panel in shown:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, title
        queries = panel.get("targets") or []
        assert queries, f"{title}: no query"
        assert len({q["refId"] for q in queries}) == len(queries), f"{title}: refIds repeat"
        for query in queries:
            assert query["expr"].strip(), f"{title} [{query['refId']}]: empty expr"
            assert query["datasource"] == {"type": "prometheus", "uid": uid}, title


def test_the_panels_cover_the_metrics_the_issue_asks_for(all_targets: list[Target]) -> None:
    used = set().union(*(metric_names(t.expr) for t in all_targets))
    assert used >= REQUIRED_METRICS, f"no panel shows {sorted(REQUIRED_METRICS - used)}"


def test_queries_use_only_metrics_the_router_exports(
    all_targets: list[Target], exported: dict[str, tuple[str, ...]]
) -> None:
    for target in all_targets:
        unknown = metric_names(target.expr) - set(exported)
        assert not unknown, f"{target.name}: the router exports no {sorted(unknown)}"


def test_user_id_variable(dashboard: dict[str, Any], datasource: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    variable = variables[USER_VARIABLE]
    assert variable["type"] == "query"
    assert variable["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    assert re.fullmatch(r"label_values\(memory_router_requests_total,\s*user_id\)", text), text
    assert variable["definition"] == text
    # Several clients at once, and "All" as a regex that also takes clients seen later.
    assert variable["multi"] is True and variable["includeAll"] is True
    assert variable["allValue"] == ".+"


def test_per_client_queries_filter_and_group_by_user_id(
    all_targets: list[Target], exported: dict[str, tuple[str, ...]]
) -> None:
    for target in all_targets:
        if not per_client(target, exported):
            continue
        for name, matchers in selectors(target.expr):
            if "user_id" in exported[name]:
                assert USER_MATCHER in matchers, f"{target.name}: {name}{matchers}"
        groupings = re.findall(r"\bby\s*\(([^)]*)\)", target.expr)
        assert groupings, f"{target.name}: not aggregated by client"
        for labels in groupings:
            assert "user_id" in [label.strip() for label in labels.split(",")], (
                f"{target.name}: by ({labels}) drops the client"
            )


def test_router_wide_queries_do_not_pretend_to_be_per_client(
    all_targets: list[Target], exported: dict[str, tuple[str, ...]]
) -> None:
    router_wide = [t for t in all_targets if not per_client(t, exported)]
    # The router's overhead and the config reloads carry no user_id.
    assert {t.panel_title for t in router_wide} >= {
        "Router overhead (all clients)",
        "Config reloads (all clients)",
    }
    for target in router_wide:
        assert USER_VARIABLE not in variables_in(target.expr), target.name
        assert "(all clients)" in target.panel_title, target.name


def test_legends_name_the_client(
    dashboard: dict[str, Any], exported: dict[str, tuple[str, ...]]
) -> None:
    for panel in panels(dashboard):
        for query in panel["targets"]:
            target = Target(panel["id"], panel["title"], query["refId"], query["expr"])
            if per_client(target, exported):
                assert "{{user_id}}" in query["legendFormat"], target.name


# -- the PromQL, through promtool ------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool, from Debian's prometheus package (scripts/provision.sh installs it)."""
    found = shutil.which("promtool")
    if found is None:
        try:
            provision("prometheus", LOG_DIR / "provision-prometheus.log")
        except ProvisionError as exc:
            pytest.fail(f"promtool is needed: {exc}", pytrace=False)
        found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is still missing after scripts/provision.sh", pytrace=False)
    return found


def check_rules(
    promtool: str, queries: dict[str, str], path: Path
) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump(rules_document(queries), sort_keys=False))
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def dashboard_queries(all_targets: list[Target]) -> dict[str, str]:
    return {record_name(t): substitute(t.expr, GRAFANA_VALUES) for t in all_targets}


def test_every_panel_query_parses(all_targets: list[Target], promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries(all_targets)
    assert len(queries) == len(all_targets), "two queries share a record name"
    result = check_rules(promtool, queries, tmp_path / "dashboard.rules.yml")
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}\n{result.stderr}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("[$__rate_interval]))", "[$__rate_interval])", id="unbalanced-parenthesis"),
        pytest.param("sum by (user_id)", "sum by user_id", id="grouping-without-parentheses"),
        pytest.param("[$__rate_interval]", "[1 minute]", id="bad-duration"),
        pytest.param("rate(", "rates(", id="unknown-function"),
    ],
)
def test_promtool_rejects_a_broken_panel_query(
    all_targets: list[Target], promtool: str, tmp_path: Path, old: str, new: str
) -> None:
    """The check above would catch a broken query: break the first one that has ``old``."""
    target = next(t for t in all_targets if old in t.expr)
    queries = dashboard_queries(all_targets)
    name = record_name(target)
    queries[name] = substitute(target.expr.replace(old, new, 1), GRAFANA_VALUES)
    result = check_rules(promtool, queries, tmp_path / "broken.rules.yml")
    assert result.returncode != 0, f"promtool accepted {queries[name]!r}"
    assert f'"{name}": could not parse expression' in result.stdout + result.stderr


def test_promtool_rejects_a_query_with_grafana_variables_left_in(
    all_targets: list[Target], promtool: str, tmp_path: Path
) -> None:
    """Why the queries are substituted first: Grafana's variables are not PromQL."""
    target = next(t for t in all_targets if variables_in(t.expr))
    result = check_rules(promtool, {record_name(target): target.expr}, tmp_path / "raw.yml")
    assert result.returncode != 0
    assert "could not parse expression" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "values", "expected"),
    [
        ('x{user_id=~"$user_id"}', {"user_id": "a|b"}, 'x{user_id=~"a|b"}'),
        ('x{user_id=~"${user_id}"}', {"user_id": "a"}, 'x{user_id=~"a"}'),
        ('x{user_id=~"${user_id:regex}"}', {"user_id": "a"}, 'x{user_id=~"a"}'),
        ('x{user_id=~"[[user_id]]"}', {"user_id": "a"}, 'x{user_id=~"a"}'),
        ("rate(x[$__rate_interval])", {"__rate_interval": "1m"}, "rate(x[1m])"),
        ("rate(x[$__interval])", {"__interval": "15s"}, "rate(x[15s])"),
        ("sum(x)", {}, "sum(x)"),
    ],
)
def test_substitute_fills_in_grafana_variables(
    expr: str, values: dict[str, str], expected: str
) -> None:
    assert substitute(expr, values) == expected


def test_substitute_refuses_a_variable_it_has_no_value_for() -> None:
    with pytest.raises(KeyError, match="__range"):
        substitute("increase(x[$__range])", {"__rate_interval": "1m"})


# -- provisioning ----------------------------------------------------------------------


def test_datasource_is_the_compose_prometheus(
    datasource: dict[str, Any], compose: dict[str, Any]
) -> None:
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"  # Grafana's server calls Prometheus, not the browser
    assert datasource["isDefault"] is True
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", datasource["url"])
    assert match, datasource["url"]
    service, port = match.groups()
    assert service == "prometheus" and service in compose["services"]
    (published,) = compose["services"]["prometheus"]["ports"]
    assert int(port) == int(published["target"])


def test_datasource_interval_is_the_scrape_interval(datasource: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    # Grafana sizes $__rate_interval from it (at least four scrapes).
    assert datasource["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v["target"]: v["source"] for v in service["volumes"] if v["type"] == "bind"}


def test_dashboard_provider_reads_the_mounted_dashboards(grafana_service: dict[str, Any]) -> None:
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False, "the file is the source of truth"
    path = provider["options"]["path"]
    assert _mounts(grafana_service)[path] == "./grafana/dashboards"
    home = grafana_service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"


# -- the compose service ---------------------------------------------------------------


def test_grafana_service_only_with_its_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["grafana"]["profiles"] == ["grafana"]
    default = {name for name, svc in services.items() if "profiles" not in svc}
    assert "grafana" not in default
    assert "prometheus" in default


def test_grafana_service(grafana_service: dict[str, Any]) -> None:
    repo, _, tag = grafana_service["image"].rpartition(":")
    assert repo == "grafana/grafana"
    assert PINNED_TAG.match(tag), f"{grafana_service['image']} is not pinned to a version"
    assert grafana_service["depends_on"] == {"prometheus": {"condition": "service_started"}}
    assert _mounts(grafana_service) == {
        "/etc/grafana/provisioning/datasources": "./grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards": "./grafana/provisioning/dashboards",
        "/etc/grafana/dashboards": "./grafana/dashboards",
    }
    for source in _mounts(grafana_service).values():
        assert (REPO / source).is_dir(), source
    (port,) = grafana_service["ports"]
    assert (int(port["target"]), str(port["published"])) == (3000, "3000")
    assert port["host_ip"] == "127.0.0.1", "anonymous viewers: this machine only"
    env = grafana_service["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer", "anonymous visitors may only view"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}"


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed: `docker compose config` cannot be run")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip(f"`docker compose` is not available: {probe.stderr.strip()}")
    return [docker, "compose"]


def _compose_config(tmp_path: Path, *profiles: str) -> dict[str, Any]:
    """``docker compose config`` as compose itself resolves the file (no engine needed),
    with no .env of a developer's and nothing of this environment steering it."""
    empty_env = tmp_path / "empty.env"
    empty_env.touch()
    argv = [
        *_docker_compose(),
        *("--project-directory", str(REPO), "-f", str(COMPOSE_FILE)),
        *("--env-file", str(empty_env)),
        *(arg for profile in profiles for arg in ("--profile", profile)),
        *("config", "--format", "json"),
    ]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stderr}"
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_compose_starts_grafana_only_with_the_profile(tmp_path: Path) -> None:
    without = _compose_config(tmp_path)
    assert set(without["services"]) == {"litellm", "router", "prometheus"}

    with_profile = _compose_config(tmp_path, "grafana")
    assert set(with_profile["services"]) == {"litellm", "router", "prometheus", "grafana"}
    grafana = with_profile["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts == {
        "/etc/grafana/provisioning/datasources": DATASOURCES.parent,
        "/etc/grafana/provisioning/dashboards": DASHBOARD_PROVIDERS.parent,
        "/etc/grafana/dashboards": DASHBOARD.parent,
    }
    assert all(v["read_only"] for v in grafana["volumes"])
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_started"
    # Without GRAFANA_ADMIN_PASSWORD the value is empty, and Grafana keeps its default.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == ""
