"""The stats endpoint and the dashboard page (router/stats.py, router/dashboard/), on a
real uvicorn server in front of the fake LiteLLM. The page in a real browser is
tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from router.app import RouterApp
from tests.conftest import SM_KEY, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.polling import wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
JAVA_UA = "OpenAIClientImpl/Java unknown"


def stats(url: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{url}/memory-routing/stats", params=params, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def row(snapshot: dict[str, Any], user_id: str) -> dict[str, Any]:
    rows = [c for c in snapshot["clients"] if c["user_id"] == user_id]
    assert len(rows) == 1, snapshot["clients"]
    return rows[0]


def test_each_clients_traffic_is_counted_apart(
    router_app: tuple[RouterApp, str], client: httpx.Client
) -> None:
    _, url = router_app
    for _ in range(3):
        assert (
            client.post(
                url + "/v1/chat/completions", json=CHAT, headers={"user-agent": JAVA_UA}
            ).status_code
            == 200
        )
    r = client.post(
        url + "/v1/chat/completions",
        json=CHAT,
        headers={"x-memory-user-id": "my-app", "x-test-status": "503"},
    )
    assert r.status_code == 503
    r = client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-test-status": "404"})
    assert r.status_code == 404
    with client.stream(
        "POST",
        url + "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"x-memory-user-id": "my-app"},
    ) as s:
        s.read()

    snap = stats(url)
    jet = row(snap, "pycharm-ai-chat")
    assert (jet["requests"], jet["source"], jet["errors_4xx"], jet["errors_5xx"]) == (
        3,
        "pattern",
        0,
        0,
    )
    assert jet["prompt_tokens"] > 0 and jet["completion_tokens"] > 0
    assert jet["latency_p50_ms"] is not None and jet["ttft_p50_ms"] is not None
    app = row(snap, "my-app")
    assert (app["requests"], app["source"], app["errors_5xx"]) == (2, "custom_header", 1)
    default = row(snap, "default-dev")
    assert (default["requests"], default["source"], default["errors_4xx"]) == (1, "default", 1)
    assert sum(jet["series"]["requests"]) == 3 and sum(app["series"]["errors"]) == 1
    assert snap["series"]["points"] == len(jet["series"]["requests"])
    assert {c["in_flight"] for c in snap["clients"]} == {0}


def test_a_stream_in_progress_is_in_flight(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    done = threading.Event()
    checked = threading.Event()

    def stream() -> None:
        with (
            httpx.Client(timeout=10) as c,
            c.stream(
                "POST",
                url + "/v1/chat/completions",
                json={**CHAT, "stream": True},
                headers={"x-memory-user-id": "slow-one", "x-test-step": "flight"},
            ) as r,
        ):
            for _ in r.iter_raw():
                checked.wait(10)  # the stream goes on only once the test has looked
                upstream.allow("flight")
        done.set()

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        busy = wait_for(
            lambda: [c for c in stats(url)["clients"] if c["user_id"] == "slow-one"], timeout=10
        )
        assert (busy[0]["in_flight"], busy[0]["requests"]) == (1, 0)
    finally:
        checked.set()
        thread.join(10)
    assert done.is_set()
    after = row(stats(url), "slow-one")
    assert (after["in_flight"], after["requests"]) == (0, 1)


def test_refused_requests_are_counted_too(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    r = client.post(
        url + "/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "not a valid id"}
    )
    assert r.status_code == 400
    bad = row(stats(url), "__invalid__")
    assert (bad["requests"], bad["errors_4xx"], bad["in_flight"]) == (1, 1, 0)


@pytest.mark.parametrize("window", ["5", "abc", "3601", "-60", "1e3", ""])
def test_a_bad_window_is_refused_in_the_callers_format(
    router_app: tuple[RouterApp, str], client: httpx.Client, window: str
) -> None:
    _, url = router_app
    r = client.get(f"{url}/memory-routing/stats", params={"window": window})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_window"
    r = client.get(
        f"{url}/memory-routing/stats",
        params={"window": window},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": r.json()["error"]["message"]},
    }


def test_the_window_is_reported(router_app: tuple[RouterApp, str]) -> None:
    _, url = router_app
    assert stats(url, window=60)["window_seconds"] == 60
    assert stats(url)["window_seconds"] == 300


def test_the_header_facts_are_there_and_the_key_is_not(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    app, url = router_app
    client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "a"})
    snap = stats(url)
    info = snap["router"]
    assert info["supermemory_key_configured"] is True
    assert info["config"]["sha256"] == app.router.rules.digest
    assert info["config"]["path"] and "loaded_at" in info["config"]
    assert info["litellm"]["status"] == "ok"
    for path in (
        "/memory-routing/stats",
        "/memory-routing/dashboard",
        "/memory-routing/dashboard/dashboard.js",
    ):
        r = client.get(url + path)
        assert r.status_code == 200
        assert SM_KEY not in r.text and SM_KEY not in str(r.headers)


def test_litellm_is_probed_at_most_once_per_few_seconds(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    for _ in range(5):
        stats(url)
    probes = [r for r in upstream.requests if r.path == "/health/liveliness"]
    assert len(probes) == 1


def test_an_unreachable_litellm_shows_in_the_header(start_router: RouterFactory) -> None:
    from tests.support.ports import free_port

    _, url = start_router(litellm_url=f"http://127.0.0.1:{free_port()}")
    assert stats(url)["router"]["litellm"]["status"] == "unreachable"


def test_the_page_and_its_files(router_app: tuple[RouterApp, str], client: httpx.Client) -> None:
    _, url = router_app
    page = client.get(url + "/memory-routing/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="dashboard/dashboard.js"' in page.text
    assert 'href="dashboard/dashboard.css"' in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # no CDN
    js = client.get(url + "/memory-routing/dashboard/dashboard.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text  # values go in as text, never as markup
    css = client.get(url + "/memory-routing/dashboard/dashboard.css")
    assert css.headers["content-type"].startswith("text/css")
    for missing in ("index.html", "..%2Fcontrol.py", "nope.js"):
        r = client.get(f"{url}/memory-routing/dashboard/{missing}")
        assert r.status_code == 404, missing


@pytest.mark.parametrize("mode", ["loopback", "token"])
def test_the_same_access_rule_as_metrics(start_router: RouterFactory, mode: str) -> None:
    _, url = start_router(control_access=mode, control_token="ctl-token-123")
    good = {"Authorization": "Bearer ctl-token-123"}
    stats_url = url + "/memory-routing/stats"
    metrics_url = url + "/metrics"
    for headers in ({}, good, {"Authorization": "Bearer nope"}):
        assert (
            httpx.get(stats_url, headers=headers).status_code
            == httpx.get(metrics_url, headers=headers).status_code
        )
    # The page itself holds no data: with a token set it is served so that it can ask
    # for the token; the data still needs it.
    assert httpx.get(url + "/memory-routing/dashboard").status_code == 200
    if mode == "token":
        r = httpx.get(stats_url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_without_a_token_the_page_follows_the_guard(start_router: RouterFactory) -> None:
    app, url = start_router(control_access="loopback")
    async with httpx.AsyncClient() as local:
        assert (await local.get(url + "/memory-routing/dashboard")).status_code == 200
    # The same app, asked from another address (no streaming here: ASGITransport is fine).
    transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as remote:
        for path in (
            "/memory-routing/dashboard",
            "/memory-routing/dashboard/dashboard.js",
            "/memory-routing/stats",
            "/metrics",
        ):
            r = await remote.get(path)
            assert r.status_code == 403, path
