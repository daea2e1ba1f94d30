"""Faults and bad input: clear errors, nothing forwarded half-formed, nothing leaked."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from router.api_keys import digest
from router.app import RouterApp
from tests.conftest import SM_KEY, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.metrics import requests
from tests.support.polling import wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _raw(url: str, request: bytes) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        return s.recv(65536)


# -- hot reload ----------------------------------------------------------------


def test_config_file_change_takes_effect_without_restart(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path, client: httpx.Client
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: before\n")
    app, url = start_router(config=cfg)
    assert client.get(f"{url}/memory-routing/info").json()["user_id"] == "before"
    old_digest = app.router.rules.digest

    write_rules(cfg, "default_user_id: after\n")
    wait_for(lambda: client.get(f"{url}/memory-routing/info").json()["user_id"] == "after")
    client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "after"

    info = client.get(f"{url}/memory-routing/info").json()["config"]
    assert info["sha256"] == app.router.rules.digest != old_digest
    assert info["last_reload"]["ok"] is True and info["last_reload"]["trigger"] == "file"
    registry = app.metrics.registry
    assert registry.get_sample_value("memory_router_config_info", {"sha256": info["sha256"]}) == 1
    assert registry.get_sample_value("memory_router_config_info", {"sha256": old_digest}) is None
    assert registry.get_sample_value("memory_router_config_last_reload_success") == 1


def test_invalid_config_is_refused_and_old_rules_keep_serving(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: stable\n")
    app, url = start_router(config=cfg)
    with caplog.at_level("ERROR", logger="memory_router"):
        cfg.write_text("user_id_mappings:\n  default_user_id: 'not valid'\n")
        wait_for(
            lambda: app.metrics.registry.get_sample_value(
                "memory_router_config_reloads_total", {"trigger": "file", "outcome": "failure"}
            )
        )
    assert any(
        "refused" in r.getMessage() and "default_user_id" in r.getMessage() for r in caplog.records
    )
    client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "stable"
    info = client.get(f"{url}/memory-routing/info").json()
    assert info["user_id"] == "stable"
    assert info["config"]["last_reload"]["ok"] is False
    assert "default_user_id" in info["config"]["last_reload"]["error"]
    assert app.metrics.registry.get_sample_value("memory_router_config_last_reload_success") == 0


def test_in_flight_request_keeps_its_decision_across_a_reload(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: old-rules\n")
    app, url = start_router(config=cfg, watch_config=False)
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "3", "x-test-step": "reload"},
        ) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)  # upstream sends no more until allowed: the request is in flight
        write_rules(cfg, "default_user_id: new-rules\n")
        assert app.reloader.reload("sighup")
        upstream.allow("reload", 10)
        rest = b"".join(chunks)
    assert rest.endswith(b"data: [DONE]\n\n")
    assert upstream.last().header("x-sm-user-id") == "old-rules"
    httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "new-rules"


# -- trust policy for the custom header ----------------------------------------------


def test_custom_header_can_be_turned_off(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(
        tmp_path / "rules.yaml",
        """
        custom_header_policy: {enabled: false}
        header_patterns:
          - {header: user-agent, pattern: "^OpenAIClientImpl/Java", user_id: pycharm-ai-chat}
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"x-memory-user-id": "someone-else", "User-Agent": "OpenAIClientImpl/Java x"},
    )
    got = upstream.last()
    assert got.header("x-sm-user-id") == "pycharm-ai-chat"
    assert got.header("x-memory-user-id") is None


def test_custom_header_allow_list_and_pattern(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(
        tmp_path / "rules.yaml",
        """
        custom_header_policy:
          allowed_ids: [mobile-app]
          allowed_pattern: "proj-[a-z]+"
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    for allowed in ("mobile-app", "proj-alpha"):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": allowed}
        )
        assert r.status_code == 200
        assert upstream.last().header("x-sm-user-id") == allowed
    count = len(upstream.requests)
    for refused in ("desktop-app", "proj-alpha2", "xproj-alpha"):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": refused}
        )
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "user_id_not_allowed"
        r = httpx.post(f"{url}/v1/messages", json=CHAT, headers={"x-memory-user-id": refused})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert len(upstream.requests) == count


def test_custom_header_requires_an_api_key(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEAM_KEY", "sk-team-secret")
    cfg = write_rules(
        tmp_path / "rules.yaml",
        f"""
        custom_header_policy:
          api_keys: ["env:TEAM_KEY", "sha256:{digest("sk-other")}"]
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    for headers in (
        {"Authorization": "Bearer sk-team-secret"},
        {"x-api-key": "sk-other"},
        {"api-key": "sk-team-secret"},
    ):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={**headers, "x-memory-user-id": "team"}
        )
        assert r.status_code == 200, headers
        assert upstream.last().header("x-sm-user-id") == "team"
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={**headers, "x-memory-user-id": "team"}
        )
        assert r.status_code == 403
        assert "authorized API key" in r.json()["error"]["message"]
    # without the custom header, no key is needed
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200


def test_plaintext_api_key_in_config_is_refused(tmp_path: Path) -> None:
    from router.exceptions import ConfigError
    from router.rules import load_rules

    cfg = write_rules(
        tmp_path / "rules.yaml",
        "custom_header_policy: {api_keys: [sk-plain]}\ndefault_user_id: d\n",
    )
    with pytest.raises(ConfigError, match="never in plain text"):
        load_rules(cfg)


@pytest.mark.parametrize("mode", ["loopback", "token"])
def test_control_endpoints_can_be_protected(
    start_router: RouterFactory, upstream: FakeUpstream, mode: str
) -> None:
    _, url = start_router(control_access=mode, control_token="ctl-token-123")
    good = {"Authorization": "Bearer ctl-token-123"}
    bad = {"Authorization": "Bearer nope"}
    for path in ("/metrics", "/memory-routing/info"):
        # the tests call from 127.0.0.1: loopback passes, token mode needs the token
        assert httpx.get(url + path).status_code == (200 if mode == "loopback" else 403)
        assert httpx.get(url + path, headers=good).status_code == 200
        if mode == "token":
            r = httpx.get(url + path, headers=bad)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.parametrize("path", ["/metrics/", "/metrics/x", "/metrics/litellm?name=a"])
def test_paths_under_metrics_never_reach_litellm(
    start_router: RouterFactory, upstream: FakeUpstream, path: str
) -> None:
    # LiteLLM serves its own metrics under /metrics/ without a key on the stack's
    # network; through the router they would bypass MEMORY_ROUTER_CONTROL_ACCESS.
    _, url = start_router(control_access="token", control_token="ctl-token-123")
    r = httpx.get(url + path)
    # The router's own answer: a redirect to its /metrics, or not found.
    assert r.status_code in (307, 404), r.text
    assert upstream.requests == []
    # A neighbouring path still goes to LiteLLM.
    assert httpx.get(f"{url}/metricsz").status_code == 200
    assert [req.path for req in upstream.requests] == ["/metricsz"]


def test_loopback_guard_refuses_other_addresses() -> None:
    from starlette.requests import Request

    from router.control import access_guard
    from router.exceptions import Forbidden
    from router.settings import Settings

    guard = access_guard(Settings(_env_file=None, control_access="loopback"))  # type: ignore[call-arg]

    def request(host: str) -> Request:
        return Request({"type": "http", "headers": [], "client": (host, 1234)})

    guard(request("127.0.0.1"))
    guard(request("::1"))
    for host in ("10.0.0.5", "192.168.1.2", "203.0.113.9", "not-an-ip"):
        with pytest.raises(Forbidden):
            guard(request(host))


# -- bad input ------------------------------------------------------------------


def test_oversized_headers_are_431(start_router: RouterFactory, upstream: FakeUpstream) -> None:
    _, url = start_router(max_header_bytes=4096)
    r = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-big": "a" * 5000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    r = httpx.post(f"{url}/v1/messages", json=CHAT, headers={"x-big": "a" * 5000})
    assert r.status_code == 431 and r.json()["type"] == "error"
    assert upstream.requests == []


@pytest.mark.parametrize("value", [b"\xff\xfe", b"caf\xc3\xa9", b"a\x01b", b"a\x7fb", b"tab\there"])
def test_non_utf8_or_control_characters_in_custom_header_are_400(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, value: bytes
) -> None:
    _, url = router_app
    body = json.dumps(CHAT).encode()
    reply = _raw(
        url,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-memory-user-id: "
        + value
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert b"invalid_user_id" in reply or b"Invalid HTTP request" in reply
    assert upstream.requests == []


def test_a_request_id_with_odd_bytes_is_replaced_not_forwarded(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    """Bytes a header value may legally carry (space, ';', obs-text) but an id may not."""
    _, url = router_app
    reply = _raw(url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: a b;\xff\r\n\r\n")
    head = reply.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200")
    echoed = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]
    assert len(echoed) == 1 and re.fullmatch(rb"x-request-id: [0-9a-f]{16}", echoed[0].lower())
    forwarded = upstream.last().header("x-request-id")
    assert forwarded is not None and re.fullmatch(r"[0-9a-f]{16}", forwarded)
    assert forwarded.encode() == echoed[0].split(b": ", 1)[1]


def test_control_characters_in_a_header_are_refused_before_the_router(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    """uvicorn refuses a header value with a control character (CR and LF end the line
    anyway), so such bytes can never reach a header the router writes."""
    _, url = router_app
    reply = _raw(url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: a\x0bb\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert upstream.requests == []


# -- upstream faults ---------------------------------------------------------------


def test_upstream_reset_mid_stream_raises_in_the_sdks(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    import anthropic
    import openai

    _, url = router_app
    oa = openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="k",
        max_retries=0,
        default_headers={"x-test-break-after": "2"},
    )
    stream = oa.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    an = anthropic.Anthropic(
        base_url=url, api_key="k", max_retries=0, default_headers={"x-test-break-after": "3"}
    )
    with (
        pytest.raises(anthropic.APIError),
        an.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as s,
    ):
        for _ in s.text_stream:
            pass


# -- client faults ---------------------------------------------------------------


def test_slow_uploader_does_not_block_others(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    port = int(url.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    try:
        with httpx.Client(timeout=5) as c:  # each would time out if the slow body blocked it
            for _ in range(20):
                assert c.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
        assert len(upstream.requests) == 20
    finally:
        slow.close()


def test_thousand_aborted_streams_leave_nothing_open(
    start_router: RouterFactory, upstream: FakeUpstream
) -> None:
    """Every aborted stream gives its upstream connection back: with a pool of 10,
    a leak would leave later requests waiting for a connection and failing."""
    pool = 10
    app, url = start_router(max_connections=pool, pool_timeout=5)
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({**CHAT, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-test-hold: 1\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )

    async def open_stream() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"data:")  # the stream has started: it holds a connection
        return writer

    async def abort_one(sem: asyncio.Semaphore) -> None:
        async with sem:
            writer = await asyncio.wait_for(open_stream(), 10)
            writer.transport.abort()

    async def aborts() -> None:
        sem = asyncio.Semaphore(pool)
        await asyncio.gather(*(abort_one(sem) for _ in range(1000)))

    async def whole_pool_at_once() -> None:
        writers = await asyncio.wait_for(asyncio.gather(*(open_stream() for _ in range(pool))), 10)
        for writer in writers:
            writer.transport.abort()

    asyncio.run(aborts())
    registry = app.metrics.registry
    wait_for(
        lambda: requests(app, "default-dev", "/v1/chat/completions", "499") == 1000,
        timeout=30,
    )
    assert (
        registry.get_sample_value("memory_router_requests_in_flight", {"user_id": "default-dev"})
        == 0
    )
    wait_for(lambda: len(upstream.disconnects) == 1000, timeout=30)
    # every connection of the pool is free again: as many streams as it holds open at once
    asyncio.run(whole_pool_at_once())
    wait_for(lambda: len(upstream.disconnects) == 1000 + pool, timeout=30)
    # and the router still serves
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200


def test_key_not_in_error_replies(start_router: RouterFactory) -> None:
    _, url = start_router(litellm_url="http://127.0.0.1:9")
    for path in ("/v1/chat/completions", "/v1/messages"):
        r = httpx.post(url + path, json=CHAT)
        assert r.status_code == 502
        assert SM_KEY not in r.text and SM_KEY not in str(r.headers)
