"""The router's per-client request counter, as a real Prometheus scrapes and serves it."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import CLAUDE_CODE_MODEL, PYCHARM_UA, Clients, chat, nonce
from tests.support.polling import until_passes

from .services import Prometheus, Router

pytestmark = pytest.mark.e2e

METRIC = "memory_router_requests_total"
SCRAPE_TIMEOUT = 30.0

SeriesKey = tuple[str, str, str, str]  # user_id, route, method, status


def router_counts(router: Router) -> dict[SeriesKey, float]:
    """memory_router_requests_total as the router exposes it right now."""
    text = httpx.get(f"{router.url}/metrics", timeout=10.0, trust_env=False).text
    counts: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == METRIC:
                labels = sample.labels
                key = (labels["user_id"], labels["route"], labels["method"], labels["status"])
                counts[key] = sample.value
    return counts


def prometheus_counts(prometheus: Prometheus, user_ids: list[str]) -> dict[SeriesKey, float]:
    selector = "|".join(user_ids)
    result = prometheus.query(
        f'sum by (user_id, route, method, status) ({METRIC}{{user_id=~"{selector}"}})'
    )
    return {
        (
            series["metric"]["user_id"],
            series["metric"]["route"],
            series["metric"]["method"],
            series["metric"]["status"],
        ): float(series["value"][1])
        for series in result
    }


def test_prometheus_has_per_client_request_counts(
    router: Router, prometheus: Prometheus, clients: Clients
) -> None:
    prometheus.wait_scraping_router(SCRAPE_TIMEOUT)

    marker = nonce()
    own_id = f"prom-{marker}"
    key = router.litellm.master_key
    chat_route = ("/v1/chat/completions", "POST", "200")
    messages_route = ("/v1/messages", "POST", "200")
    before = router_counts(router)

    named = clients.openai(router.url, key, {"x-memory-user-id": own_id})
    for i in range(3):
        chat(named, f"count me {i} {marker}")
    pycharm = clients.openai(router.url, key, {"User-Agent": PYCHARM_UA})
    for i in range(2):
        chat(pycharm, f"count me {i} {marker}")
    claude_code = clients.claude_code(router.url, key)
    for i in range(2):
        with claude_code.messages.create(
            model=CLAUDE_CODE_MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": f"count me {i} {marker}"}],
            stream=True,
        ) as stream:
            for _ in stream:
                pass

    def expected_after(user_id: str, route: tuple[str, str, str], added: int) -> float:
        return before.get((user_id, *route), 0.0) + added

    expected = {
        (own_id, *chat_route): 3.0,
        ("pycharm-ai-chat", *chat_route): expected_after("pycharm-ai-chat", chat_route, 2),
        ("claude-code-cli", *messages_route): expected_after("claude-code-cli", messages_route, 2),
    }

    def router_counted() -> None:
        now = router_counts(router)
        assert {k: now.get(k) for k in expected} == expected

    def prometheus_shows() -> None:
        seen = prometheus_counts(prometheus, [own_id, "pycharm-ai-chat", "claude-code-cli"])
        assert {k: seen.get(k) for k in expected} == expected
        # The named id has exactly one series: nothing else was counted under it.
        assert [k for k in seen if k[0] == own_id] == [(own_id, *chat_route)]

    until_passes(router_counted, timeout=10.0, what="the router counting the requests")
    try:
        until_passes(prometheus_shows, timeout=SCRAPE_TIMEOUT, what="Prometheus showing the counts")
    except AssertionError as error:
        seen = prometheus_counts(prometheus, [own_id, "pycharm-ai-chat", "claude-code-cli"])
        raise AssertionError(f"{error}\nexpected {expected}\nPrometheus has {seen}") from None
