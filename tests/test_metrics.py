"""Metrics move exactly as documented, after real requests through the proxy."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from router.app import RouterApp
from router.metrics import OVERFLOW, LabelBudget, Metrics, route_label
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.metrics import requests, settle, value
from tests.support.polling import wait_for

CHAT = {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}]}


def test_plain_openai_request(router_app: tuple[RouterApp, str], upstream: FakeUpstream) -> None:
    app, url = router_app
    httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "alice"})
    settle(app, 1)
    assert requests(app, "alice", "/v1/chat/completions", "200") == 1
    labels = {"user_id": "alice", "route": "/v1/chat/completions"}
    assert value(app, "memory_router_request_duration_seconds_count", **labels) == 1
    assert value(app, "memory_router_time_to_first_byte_seconds_count", **labels) == 1
    assert value(app, "memory_router_overhead_seconds_count") == 1
    assert (
        value(app, "memory_router_routing_decisions_total", user_id="alice", source="custom_header")
        == 1
    )
    tokens = {"user_id": "alice", "model": "claude-sonnet-4.5"}
    assert value(app, "memory_router_tokens_total", **tokens, kind="prompt") == 11
    assert value(app, "memory_router_tokens_total", **tokens, kind="completion") == 7
    assert value(app, "memory_router_requests_in_flight", user_id="alice") == 0


def test_streams_count_tokens_from_usage(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    with httpx.Client() as c:
        c.post(
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "4"},
        )
        c.post(
            f"{url}/v1/messages",
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "2", "User-Agent": "claude-cli/2.0.14 (external, cli)"},
        )
        c.post(
            f"{url}/v1/messages",
            json=CHAT,
            headers={"User-Agent": "claude-cli/2.0.14 (external, cli)"},
        )
    settle(app, 3)
    oa = {"user_id": "default-dev", "model": "claude-sonnet-4.5"}
    assert value(app, "memory_router_tokens_total", **oa, kind="prompt") == 21
    assert value(app, "memory_router_tokens_total", **oa, kind="completion") == 4
    cc = {"user_id": "claude-code-cli", "model": "claude-sonnet-4.5"}
    # stream: 17 in, 3+2 out; plain message: 13 in, 5 out
    assert value(app, "memory_router_tokens_total", **cc, kind="prompt") == 17 + 13
    assert value(app, "memory_router_tokens_total", **cc, kind="completion") == 5 + 5
    assert requests(app, "claude-code-cli", "/v1/messages", "200") == 2
    assert (
        value(
            app,
            "memory_router_routing_decisions_total",
            user_id="claude-code-cli",
            source="pattern",
        )
        == 2
    )


def test_upstream_error_status_and_no_tokens(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-test-status": "500"})
    settle(app, 1)
    assert requests(app, "default-dev", "/v1/chat/completions", "500") == 1
    assert (
        value(
            app,
            "memory_router_tokens_total",
            user_id="default-dev",
            model="claude-sonnet-4.5",
            kind="prompt",
        )
        is None
    )


def test_router_errors_are_counted(start_router: RouterFactory, upstream: FakeUpstream) -> None:
    app, url = start_router(max_body_bytes=10)
    httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    httpx.post(f"{url}/v1/chat/completions", content=b"{}", headers={"x-memory-user-id": "bad id"})
    settle(app, 2)
    assert requests(app, "default-dev", "/v1/chat/completions", "413") == 1
    assert requests(app, "__invalid__", "/v1/chat/completions", "400") == 1
    assert value(app, "memory_router_rejected_requests_total", reason="body_too_large") == 1
    assert value(app, "memory_router_rejected_requests_total", reason="invalid_user_id") == 1


def test_in_flight_and_client_abort(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    with (
        httpx.Client() as c,
        c.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-test-hold": "1", "x-memory-user-id": "bob"},
        ) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)
        assert value(app, "memory_router_requests_in_flight", user_id="bob") == 1
        assert requests(app, "bob", "/v1/chat/completions", "200") == 0, "counted only at the end"
    wait_for(lambda: requests(app, "bob", "/v1/chat/completions", "499") == 1)
    assert value(app, "memory_router_requests_in_flight", user_id="bob") == 0
    assert requests(app, "bob", "/v1/chat/completions", "200") == 0
    assert (
        value(
            app,
            "memory_router_request_duration_seconds_count",
            user_id="bob",
            route="/v1/chat/completions",
        )
        == 1
    )


def test_control_endpoints_are_not_client_traffic(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    for path in ("/metrics", "/health", "/health/readiness", "/memory-routing/info"):
        httpx.get(url + path)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}
    assert [
        s for s in families["memory_router_requests"].samples if s.name.endswith("_total")
    ] == []
    assert value(app, "memory_router_overhead_seconds_count") == 0


def test_metrics_endpoint_parses(router_app: tuple[RouterApp, str], upstream: FakeUpstream) -> None:
    app, url = router_app
    httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"User-Agent": "OpenAIClientImpl/Java unknown"},
    )
    settle(app, 1)
    r = httpx.get(f"{url}/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    expected = {
        "memory_router_requests": "counter",
        "memory_router_request_duration_seconds": "histogram",
        "memory_router_time_to_first_byte_seconds": "histogram",
        "memory_router_overhead_seconds": "histogram",
        "memory_router_requests_in_flight": "gauge",
        "memory_router_upstream_errors": "counter",
        "memory_router_routing_decisions": "counter",
        "memory_router_tokens": "counter",
        "memory_router_user_id_overflow": "counter",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    total = [
        s
        for s in families["memory_router_requests"].samples
        if s.name == "memory_router_requests_total"
    ]
    assert [(s.labels, s.value) for s in total] == [
        (
            {
                "user_id": "pycharm-ai-chat",
                "route": "/v1/chat/completions",
                "method": "POST",
                "status": "200",
            },
            1.0,
        )
    ]
    buckets = [
        s
        for s in families["memory_router_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    uppers = sorted({float(s.labels["le"]) for s in buckets})
    assert uppers[0] <= 0.005 and uppers[-2] >= 300


def test_unknown_paths_are_one_route_label(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    with httpx.Client() as c:
        for i in range(50):
            c.get(f"{url}/random/{i}")
    settle(app, 50)
    assert requests(app, "default-dev", "other", "200", method="GET") == 50


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/messages", "/v1/messages"),
        ("/v1/models/claude-x", "/v1/models/{model}"),
        ("/v1/responses/resp_1", "/v1/responses/{id}"),
        ("/v1/models/", "other"),
        ("/admin/secret/123", "other"),
    ],
)
def test_route_label(path: str, label: str) -> None:
    assert route_label(path) == label


def test_cardinality_cap_under_thousands_of_ids(
    start_router: RouterFactory, upstream: FakeUpstream
) -> None:
    app, url = start_router(max_user_id_labels=100)

    async def flood() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as c:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    r = await c.get(f"{url}/v1/models", headers={"x-memory-user-id": f"rand-{i}"})
                    assert r.status_code == 200

            await asyncio.gather(*(one(i) for i in range(2000)))

    asyncio.run(flood())
    settle(app, 2000)
    families = list(text_string_to_metric_families(httpx.get(f"{url}/metrics").text))
    users = {s.labels["user_id"] for f in families for s in f.samples if "user_id" in s.labels}
    assert len(users) <= 100 + 1 + 4  # cap + overflow + the config's own ids
    assert OVERFLOW in users
    assert value(app, "memory_router_user_id_overflow_total") == 1900
    assert requests(app, OVERFLOW, "/v1/models", "200", method="GET") == 1900
    assert len({u for u in users if u.startswith("rand-")}) == 100  # the cap, all used
    # the config's ids are always their own series, however full the cap
    httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"User-Agent": "OpenAIClientImpl/Java unknown"},
    )
    settle(app, 2001)
    assert requests(app, "pycharm-ai-chat", "/v1/chat/completions", "200") == 1


def test_label_budget() -> None:
    budget = LabelBudget(2, always=["known"])
    assert [budget.admit(v) for v in ["a", "known", "b", "c", "a", "known"]] == [
        "a",
        "known",
        "b",
        OVERFLOW,
        "a",
        "known",
    ]


def test_apps_have_isolated_registries() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    Metrics(one).requests.labels("a", "r", "GET", "200").inc()
    Metrics(two)
    assert (
        one.get_sample_value(
            "memory_router_requests_total",
            {"user_id": "a", "route": "r", "method": "GET", "status": "200"},
        )
        == 1
    )
    assert (
        two.get_sample_value(
            "memory_router_requests_total",
            {"user_id": "a", "route": "r", "method": "GET", "status": "200"},
        )
        is None
    )
