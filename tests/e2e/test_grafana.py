"""The Grafana dashboard's queries against a real Prometheus scraping a real router, after
real traffic from two clients through LiteLLM: every panel returns a series for each
client (per-client panels) or for the router (the others), with values that say what
happened: requests, tokens, latencies, no 5xx, 429s for the rate-limited client only,
one config reload.

The router here runs the shipped rules plus a rate limit for Claude Code's id, from a
rules file of its own (edited once, to be hot-reloaded), and has a Prometheus of its own
with the project's config; LiteLLM and the Supermemory double are the tier's."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import yaml
from anthropic import Anthropic

from tests.support.clients import CLAUDE_CODE_MODEL, PYCHARM_UA, Clients, chat, nonce
from tests.support.environment import clean_env
from tests.support.grafana import USER_VARIABLE, load_dashboard, substitute, targets
from tests.support.polling import until_passes
from tests.support.router_process import router_argv

from .services import (
    ROUTER_CONFIG,
    LiteLLM,
    Prometheus,
    Router,
    Secrets,
    running_prometheus,
    serving,
)

pytestmark = pytest.mark.e2e

FREE = "pycharm-ai-chat"  # JetBrains' AI chat, by its User-Agent: no limit
LIMITED = "claude-code-cli"  # Claude Code, by its User-Agent: 2 back to back, then 1 a minute
CLIENTS = (FREE, LIMITED)
LIMIT = {"requests_per_minute": 1, "burst": 2}

# What Grafana puts in: both clients selected; a rate window that holds the whole test.
GRAFANA_VALUES = {USER_VARIABLE: "|".join(CLIENTS), "__rate_interval": "5m"}
SCRAPE_TIMEOUT = 30.0


@dataclass
class RulesRouter(Router):
    """A router started with a rules file of its own."""

    rules: Path


@pytest.fixture(scope="module")
def limited_router(
    litellm: LiteLLM, e2e_secrets: Secrets, session_tmp: Path
) -> Iterator[RulesRouter]:
    workdir = session_tmp / "grafana-router"
    workdir.mkdir()
    rules = workdir / "rules.yaml"
    config = yaml.safe_load(ROUTER_CONFIG.read_text())
    config["rate_limits"] = {"per_user_id": {LIMITED: LIMIT}}
    rules.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(port: int) -> list[str]:
        return router_argv(port, litellm.url, config=rules, log_level="info")

    env = clean_env(SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key)
    with serving("memory-router-grafana", "router", argv, env=env, cwd=workdir) as (proc, url):
        yield RulesRouter(
            url=url,
            supermemory_key=e2e_secrets.supermemory_key,
            litellm=litellm,
            process=proc,
            rules=rules,
        )


@pytest.fixture(scope="module")
def limited_prometheus(
    prometheus_bin: Path, limited_router: RulesRouter, session_tmp: Path
) -> Iterator[Prometheus]:
    workdir = session_tmp / "grafana-prometheus"
    with running_prometheus(
        "prometheus-grafana", prometheus_bin, limited_router.url, workdir
    ) as prometheus:
        yield prometheus


# --------------------------------------------------------------------------- expectations

Series = list[dict[str, Any]]
Check = Callable[[Series], None]


def values_by_client(series: Series) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for one in series:
        found.setdefault(one["metric"]["user_id"], []).append(float(one["value"][1]))
    return found


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def zero(value: float) -> bool:
    return value == 0


def at_least_one(value: float) -> bool:
    return value >= 1


def per_client(tests: Mapping[str, Callable[[float], bool]]) -> Check:
    """Series for exactly the clients in ``tests`` (one or more each), every value of a
    client passing that client's test."""

    def check(series: Series) -> None:
        values = values_by_client(series)
        assert sorted(values) == sorted(tests), f"series for {sorted(values)}"
        for client, found in values.items():
            test = tests[client]
            assert all(test(v) for v in found), f"{client}: {found} fails {test.__name__}"

    return check


def each_client(test: Callable[[float], bool]) -> Check:
    return per_client(dict.fromkeys(CLIENTS, test))


def router_wide(test: Callable[[float], bool], **labels: str) -> Check:
    """At least one series, with ``labels``, every value passing ``test``."""

    def check(series: Series) -> None:
        assert series, "no series"
        for one in series:
            assert labels.items() <= one["metric"].items(), one["metric"]
            assert test(float(one["value"][1])), f"{one} fails {test.__name__}"

    return check


# Every query of the dashboard, by panel title and refId: what it must show now.
EXPECTED: dict[tuple[str, str], Check] = {
    ("Requests per second", "A"): each_client(positive),
    ("Error ratio (5xx)", "A"): each_client(zero),
    ("p95 latency", "A"): each_client(positive),
    ("p95 time to first token", "A"): each_client(positive),
    ("Tokens per minute", "A"): each_client(positive),
    ("429s per second", "A"): per_client({LIMITED: positive, FREE: zero}),
    ("429s per second", "B"): per_client({LIMITED: positive, FREE: zero}),
    ("Router overhead (all clients)", "A"): router_wide(non_negative),
    ("Router overhead (all clients)", "B"): router_wide(non_negative),
    ("Router overhead (all clients)", "C"): router_wide(non_negative),
    ("Config reloads (all clients)", "A"): router_wide(at_least_one, outcome="success"),
    ("Config reloads (all clients)", "B"): router_wide(at_least_one),
}


# --------------------------------------------------------------------------- traffic


def stream_once(client: Anthropic, text: str) -> None:
    with client.messages.create(
        model=CLAUDE_CODE_MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": text}],
        stream=True,
    ) as stream:
        for _ in stream:
            pass


def refused_once(client: Anthropic, text: str) -> None:
    """Send until the router refuses one request with 429 (a few at most: the burst is 2)."""
    for _ in range(LIMIT["burst"] + 2):
        try:
            client.messages.create(
                model=CLAUDE_CODE_MODEL,
                max_tokens=16,
                messages=[{"role": "user", "content": text}],
            )
        except anthropic.RateLimitError as refusal:
            assert refusal.response.headers.get("retry-after"), "a 429 without Retry-After"
            return
    raise AssertionError(f"{LIMITED} was never refused")


def wait_for_series(prometheus: Prometheus, expr: str, count: int, what: str) -> None:
    """Until ``expr`` returns ``count`` series."""

    def seen() -> None:
        result = prometheus.query(expr)
        assert len(result) == count, result

    until_passes(seen, timeout=SCRAPE_TIMEOUT, what=what)


def wait_for_value(
    prometheus: Prometheus, expr: str, test: Callable[[float], bool], what: str
) -> None:
    """Until ``expr`` returns one series whose value passes ``test``."""

    def seen() -> None:
        result = prometheus.query(expr)
        assert len(result) == 1, result
        assert test(float(result[0]["value"][1])), result

    until_passes(seen, timeout=SCRAPE_TIMEOUT, what=what)


def test_every_panel_returns_each_clients_series(
    limited_router: RulesRouter, limited_prometheus: Prometheus, clients: Clients
) -> None:
    dashboard = targets(load_dashboard())
    assert {(t.panel_title, t.ref_id) for t in dashboard} == set(EXPECTED), (
        "every query of the dashboard needs its expectation here, and only those"
    )
    prometheus = limited_prometheus
    clients_regex = "|".join(CLIENTS)

    prometheus.wait_scraping_router(SCRAPE_TIMEOUT)

    marker = nonce()
    key = limited_router.litellm.master_key
    jetbrains = clients.openai(limited_router.url, key, {"User-Agent": PYCHARM_UA})
    claude_code = clients.claude_code(limited_router.url, key)

    # First requests create each client's series; rates need them scraped before more come.
    chat(jetbrains, f"first {marker}")
    stream_once(claude_code, f"first {marker}")
    wait_for_series(
        prometheus,
        f'group by (user_id, __name__) ({{__name__=~"memory_router_(requests|tokens)_total",'
        f' user_id=~"{clients_regex}"}})',
        4,
        "both clients' request and token series in Prometheus",
    )

    chat(jetbrains, f"second {marker}")
    chat(jetbrains, f"third {marker}")
    stream_once(claude_code, f"second {marker}")  # the second of its burst of 2
    refused_once(claude_code, f"over the limit {marker}")
    wait_for_value(
        prometheus,
        f'sum(memory_router_rate_limited_total{{user_id="{LIMITED}"}})',
        lambda count: count == 1,
        "the first 429 in Prometheus",
    )
    refused_once(claude_code, f"still over the limit {marker}")

    # A hot reload: the rules file edited in place, as a user would.
    limited_router.rules.write_text(
        limited_router.rules.read_text() + f"# edited by the test {marker}\n"
    )
    wait_for_value(
        prometheus,
        'sum(memory_router_config_reloads_total{outcome="success"})',
        at_least_one,
        "the reload in Prometheus",
    )
    wait_for_value(
        prometheus,
        f'sum(memory_router_rate_limited_total{{user_id="{LIMITED}"}})',
        lambda count: count == 2,
        "the second 429 in Prometheus",
    )

    # The variable's query: Grafana asks Prometheus for the user_id values it has.
    labels = httpx.get(
        f"{prometheus.url}/api/v1/label/user_id/values",
        params={"match[]": "memory_router_requests_total"},
        timeout=10.0,
        trust_env=False,
    ).json()["data"]
    assert set(CLIENTS) <= set(labels)

    def every_panel_shows_it() -> None:
        failures = []
        for target in dashboard:
            expr = substitute(target.expr, GRAFANA_VALUES)
            series = prometheus.query(expr)
            try:
                EXPECTED[target.panel_title, target.ref_id](series)
            except AssertionError as error:
                failures.append(f"{target.name}: {error}\n    {expr}\n    -> {series}")
        assert not failures, "\n".join(failures)

    until_passes(every_panel_shows_it, timeout=SCRAPE_TIMEOUT, what="every panel's data")
