"""The proxy on a real uvicorn server against a fake LiteLLM that records what it got."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading

import httpx
import pytest

from router.app import RouterApp
from tests.conftest import SM_KEY, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.metrics import requests
from tests.support.polling import wait_for
from tests.support.ports import closed_port, free_port

JAVA_UA = "OpenAIClientImpl/Java unknown"
CHAT = {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}]}


def test_injects_decided_id_and_key(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    r = client.post(
        f"{url}/v1/chat/completions?trace=1&x=%2F",
        json=CHAT,
        headers={"User-Agent": JAVA_UA, "Authorization": "Bearer sk-litellm"},
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "hello from fake"
    got = upstream.last()
    assert (got.method, got.path, got.query) == ("POST", "/v1/chat/completions", "trace=1&x=%2F")
    assert got.header("x-sm-user-id") == "pycharm-ai-chat"
    assert got.header("x-supermemory-api-key") == SM_KEY
    assert got.header("authorization") == "Bearer sk-litellm"
    assert got.header("user-agent") == JAVA_UA
    assert got.json() == CHAT
    assert got.header("content-length") == str(len(got.body))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-memory-user-id": "my-project"}, "my-project"),
        ({"User-Agent": "curl/7.68.0"}, "default-dev"),
        ({"User-Agent": "claude-cli/2.0.14 (external, cli)"}, "claude-code-cli"),
        ({"User-Agent": "AsyncAnthropic/Python 0.69.0"}, "anthropic-sdk"),
        # what the real programs send (tests/clients/shapes/, and opencode 1.18.33)
        (
            {"User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)"},
            "codex-cli",
        ),
        ({"User-Agent": "codex_cli_rs/0.171.0 (Ubuntu 24.04; x86_64) xterm"}, "codex-cli"),
        (
            {"User-Agent": "GeminiCLI-tui/0.61.0/claude-haiku-4.5 (linux; x64; terminal)"},
            "gemini-cli",
        ),
        ({"User-Agent": "GeminiCLI/0.61.0/gemini-2.5-pro (linux; x64)"}, "gemini-cli"),
        (
            {"User-Agent": "opencode/1.18.33 ai-sdk/provider-utils/4.0.23 runtime/bun/1.3.14"},
            "opencode",
        ),
        ({"User-Agent": "OpenAI/Python 2.20.0"}, "default-dev"),  # aider and llm alike
        ({"User-Agent": "ls/JS 5.23.2"}, "default-dev"),  # Continue's cn 1.5.47
    ],
)
def test_decisions_reach_upstream(
    router_app: tuple[RouterApp, str],
    upstream: FakeUpstream,
    client: httpx.Client,
    headers: dict[str, str],
    expected: str,
) -> None:
    _, url = router_app
    assert client.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    got = upstream.last()
    assert got.header("x-sm-user-id") == expected
    assert got.header("x-memory-user-id") is None


def test_spoofed_memory_headers_are_replaced(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    client.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers=[
            ("x-sm-user-id", "someone-else"),
            ("X-SM-User-Id", "another"),
            ("x-supermemory-api-key", "sm_attacker"),
            ("x-supermemory-extra", "1"),
            ("user-agent", JAVA_UA),
        ],
    )
    got = upstream.last()
    assert got.header_values("x-sm-user-id") == ["pycharm-ai-chat"]
    assert got.header_values("x-supermemory-api-key") == [SM_KEY]
    assert got.header("x-supermemory-extra") is None


def test_no_key_configured_sends_no_key_header(
    start_router: RouterFactory, upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = start_router(supermemory_api_key=None)
    client.post(f"{url}/v1/chat/completions", json=CHAT)
    got = upstream.last()
    assert got.header("x-sm-user-id") == "default-dev"
    assert got.header("x-supermemory-api-key") is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/responses"),
        ("DELETE", "/v1/responses/resp_123"),
        ("GET", "/health/liveliness"),
    ],
)
def test_every_other_path_is_forwarded(
    router_app: tuple[RouterApp, str],
    upstream: FakeUpstream,
    client: httpx.Client,
    method: str,
    path: str,
) -> None:
    _, url = router_app
    body = json.dumps(CHAT).encode() if method == "POST" else None
    r = client.request(method, url + path, content=body)
    assert r.status_code == 200
    got = upstream.last()
    assert (got.method, got.path) == (method, path)
    assert got.header("x-sm-user-id") == "default-dev"


def test_hop_by_hop_and_host_are_not_forwarded(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, upstream_url: str
) -> None:
    _, url = router_app
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps(CHAT).encode()
    raw = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: router.example\r\n"
        b"Connection: keep-alive, x-private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Authorization: Basic abc\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    got = upstream.last()
    names = {k for k, _ in got.headers}
    assert not names & {"x-private", "keep-alive", "proxy-authorization"}
    assert got.header("host") == upstream_url.removeprefix("http://")


def test_upstream_answers_pass_through_unchanged(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    for status in (400, 401, 404, 429, 500, 503):
        r = client.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-test-status": str(status)}
        )
        assert r.status_code == status
        assert r.json() == {
            "error": {"message": f"upstream says {status}", "type": "upstream", "code": status}
        }
        assert r.headers["x-upstream"] == "fake"


def test_invalid_custom_header_is_400_and_not_forwarded(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    for value in ["", "has space", "x" * 101, "ä"]:
        r = client.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"x-memory-user-id": value.encode("utf-8"), "User-Agent": JAVA_UA},
        )
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "invalid_user_id" and error["type"] == "invalid_request_error"
        assert "x-memory-user-id" in error["message"] and "A-Z a-z 0-9 _ : -" in error["message"]
    r = client.post(f"{url}/v1/messages", json=CHAT, headers={"x-memory-user-id": "bad id"})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_oversized_body_is_413_and_not_forwarded(
    start_router: RouterFactory, upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = start_router(max_body_bytes=1000)
    r = client.post(f"{url}/v1/chat/completions", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b"y" * 100

    r = client.post(f"{url}/v1/messages", content=chunks())
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"
    r = client.post(f"{url}/v1/chat/completions", content=b"z" * 1000)
    assert r.status_code == 200
    assert [len(req.body) for req in upstream.requests] == [1000]


def test_body_that_is_not_json_is_forwarded_untouched(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    blob = bytes(range(256)) * 4
    r = client.post(
        f"{url}/v1/audio/transcriptions", content=blob, headers={"content-type": "audio/wav"}
    )
    assert r.status_code == 200
    assert upstream.last().body == blob


def test_unreachable_upstream_is_502(start_router: RouterFactory, client: httpx.Client) -> None:
    with closed_port() as port:
        app, url = start_router(litellm_url=f"http://127.0.0.1:{port}")
        r = client.post(f"{url}/v1/chat/completions", json=CHAT)
        assert r.status_code == 502
        error = r.json()["error"]
        assert error == {
            "message": "The memory router could not reach the LiteLLM proxy.",
            "type": "server_error",
            "param": None,
            "code": "upstream_unreachable",
        }
        assert "127.0.0.1" not in r.text
        r = client.post(f"{url}/v1/messages", json=CHAT)
        assert r.status_code == 502 and r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "api_error"
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_upstream_errors_total", {"user_id": "default-dev", "kind": "connect"}
        )
        == 2
    )


def test_slow_upstream_is_504_and_connection_released(
    start_router: RouterFactory, upstream: FakeUpstream, client: httpx.Client
) -> None:
    app, url = start_router(read_timeout=0.3)
    r = client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-test-hang": "1"})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert upstream.disconnected.wait(5), "the router must drop the upstream request"
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_upstream_errors_total", {"user_id": "default-dev", "kind": "timeout"}
        )
        == 1
    )


def test_request_id_is_kept_or_generated(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    r = client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-request-id": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    assert upstream.last().header("x-request-id") == "req-42"
    r = client.post(f"{url}/v1/chat/completions", json=CHAT)
    generated = r.headers["x-request-id"]
    assert len(generated) == 16
    assert upstream.last().header("x-request-id") == generated
    r = client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-request-id": "bad id!"})
    assert r.headers["x-request-id"] != "bad id!"


def test_an_injected_clients_cookie_jar_never_reaches_another_caller(
    upstream: FakeUpstream, upstream_url: str
) -> None:
    """``create_app(http_client=...)`` with a plain ``httpx.AsyncClient``, whose jar keeps
    the cookies upstream sets: one caller's cookie must not ride on the next request."""
    from router.app import create_app
    from router.server import server_config
    from router.settings import Settings
    from tests.support.servers import serve_in_thread

    loops: list[asyncio.AbstractEventLoop] = []

    async def on_request(_: httpx.Request) -> None:
        loops.append(asyncio.get_running_loop())

    settings = Settings(_env_file=None, litellm_url=upstream_url)  # type: ignore[call-arg]
    injected = httpx.AsyncClient(event_hooks={"request": [on_request]})
    app = create_app(settings, http_client=injected)
    with serve_in_thread(app, server_config(app, settings, log_level="warning")) as url:
        with httpx.Client() as alice:
            r = alice.post(
                f"{url}/v1/chat/completions",
                json=CHAT,
                headers={"x-test-set-cookie": "session=alice; Path=/"},
            )
            assert r.headers["set-cookie"] == "session=alice; Path=/"  # she gets her own
        with httpx.Client() as bob:
            r = bob.post(f"{url}/v1/chat/completions", json=CHAT)
            assert "set-cookie" not in r.headers
        with httpx.Client() as alice_again:  # and it is not sent for her either
            alice_again.post(f"{url}/v1/chat/completions", json=CHAT)
        assert len(loops) == 3  # every call went through the injected client
        # the client is the caller's: it closes it, on the loop that used it
        asyncio.run_coroutine_threadsafe(injected.aclose(), loops[0]).result(5)
    assert [req.header("cookie") for req in upstream.requests] == [None, None, None]


def test_no_default_client_headers_added(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    names = {k for k, _ in upstream.last().headers}
    assert names == {
        "host",
        "x-sm-user-id",
        "x-supermemory-api-key",
        "x-litellm-end-user-id",
        "x-request-id",
    }


# -- streaming ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_stream_arrives_chunk_by_chunk(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, path: str
) -> None:
    """Each upstream event reaches the client on its own, before the next is produced.

    Upstream sends an event only once the client has read the one before, so a
    router that held an event back would stall the stream until the bound ran out.
    """
    _, url = router_app
    step = f"chunks{path}"
    reads: list[bytes] = []
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            url + path,
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "4", "x-test-step": step},
        ) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            reads.append(chunk)
            upstream.allow(step, chunk.count(b"\n\n"))
    assert all(read.count(b"\n\n") == 1 for read in reads), reads  # never merged
    assert len(reads) >= 7
    assert reads[-1].endswith(b"data: [DONE]\n\n" if "chat" in path else b'"message_stop"}\n\n')


def test_client_disconnect_closes_upstream_promptly(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-test-hold": "1"},
        ) as r,
    ):
        chunks = r.iter_raw()
        first = next(chunks)
        assert first.startswith(b"data:")
    # upstream holds the stream open until its client (the router) leaves
    assert upstream.disconnected.wait(5)
    registry = app.metrics.registry
    wait_for(lambda: requests(app, "default-dev", "/v1/chat/completions", "499") == 1)
    assert (
        registry.get_sample_value("memory_router_requests_in_flight", {"user_id": "default-dev"})
        == 0
    )


def test_upstream_reset_mid_stream_ends_client_stream_cleanly(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    app, url = router_app
    for path, marker in (
        ("/v1/chat/completions", b'data: {"error"'),
        ("/v1/messages", b"event: error"),
    ):
        with (
            httpx.Client(timeout=10) as c,
            c.stream(
                "POST",
                url + path,
                json={**CHAT, "stream": True},
                headers={"x-test-break-after": "2", "x-test-chunks": "5"},
            ) as r,
        ):
            body = b"".join(r.iter_raw())
        assert body.count(b"\n\n") == 3, body
        assert marker in body
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_upstream_errors_total", {"user_id": "default-dev", "kind": "protocol"}
        )
        == 2
    )


# -- real SDK clients -------------------------------------------------------


def test_openai_sdk_with_custom_header(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    from openai import OpenAI

    _, url = router_app
    client = OpenAI(
        base_url=f"{url}/v1", api_key="sk-1234", default_headers={"x-memory-user-id": "my-app-v1"}
    )
    response = client.chat.completions.create(
        model="claude-sonnet-4.5", messages=[{"role": "user", "content": "Hello"}]
    )
    assert response.choices[0].message.content == "hello from fake"
    got = upstream.last()
    assert got.header("x-sm-user-id") == "my-app-v1"
    assert got.header("authorization") == "Bearer sk-1234"
    assert got.header("x-memory-user-id") is None

    stream = client.chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        extra_headers={"x-test-chunks": "3"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "part0 part1 part2 "
    assert upstream.last().header("x-sm-user-id") == "my-app-v1"
    client.close()


def test_sdks_read_the_routers_own_errors(start_router: RouterFactory) -> None:
    """A 502 the router answers itself (LiteLLM unreachable), parsed by the real SDKs."""
    import anthropic
    import openai

    _, url = start_router(litellm_url=f"http://127.0.0.1:{free_port()}")
    oa = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unreachable"
    an = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as refused:
        an.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 502
    assert refused.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    oa.close()
    an.close()


def test_openai_sdk_400_on_bad_custom_header(router_app: tuple[RouterApp, str]) -> None:
    import openai

    _, url = router_app
    client = openai.OpenAI(
        base_url=f"{url}/v1", api_key="k", default_headers={"x-memory-user-id": "no spaces"}
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_user_id"
    client.close()


def test_anthropic_sdk_stream(router_app: tuple[RouterApp, str], upstream: FakeUpstream) -> None:
    import anthropic

    _, url = router_app
    client = anthropic.Anthropic(
        base_url=url, api_key="sk-1234", default_headers={"x-test-chunks": "3"}
    )
    with client.messages.stream(
        model="claude-sonnet-4.5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "part0 part1 part2 "
    got = upstream.last()
    assert got.path == "/v1/messages"
    assert got.header("x-sm-user-id") == "anthropic-sdk"  # Anthropic/Python SDK rule
    client.close()


# -- logs ----------------------------------------------------------------------


def test_one_log_line_per_decision_and_key_never_logged(
    router_app: tuple[RouterApp, str],
    upstream: FakeUpstream,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = router_app
    with caplog.at_level(logging.INFO, logger="memory_router"):
        client.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"User-Agent": JAVA_UA, "x-request-id": "rid-7"},
        )
        client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "bad id"})
    lines = [r.getMessage() for r in caplog.records if r.name == "memory_router"]
    routing = [line for line in lines if " routing " in line]
    assert routing == [
        "rid-7 routing model=claude-sonnet-4.5 user_id=pycharm-ai-chat source=pattern "
        f"rule=user-agent={JAVA_UA!r} -> pycharm-ai-chat "
        "injected=x-sm-user-id,x-supermemory-api-key,x-litellm-end-user-id"
    ]
    assert any("rejected" in line and "x-memory-user-id" in line for line in lines)
    assert all(SM_KEY not in line for line in caplog.text.splitlines())


# -- concurrency, the injected client, faults ---------------------------------------


def test_concurrent_requests_keep_their_own_ids(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    errors: list[str] = []

    def call(i: int) -> None:
        with httpx.Client(timeout=10) as c:
            r = c.post(
                f"{url}/v1/chat/completions",
                json=CHAT,
                headers={"x-memory-user-id": f"user-{i}", "x-test-echo-headers": "1"},
            )
            seen = dict((k, v) for k, v in r.json()["received_headers"])
            if seen["x-sm-user-id"] != f"user-{i}":
                errors.append(f"{i}: {seen['x-sm-user-id']}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(upstream.requests) == 20


def test_an_injected_http_client_is_used_for_upstream_calls(
    upstream: FakeUpstream, upstream_url: str
) -> None:
    """create_app(http_client=...) sends through that client (HttpxUpstream)."""
    from router.app import create_app
    from router.server import server_config
    from router.settings import Settings
    from tests.support.servers import serve_in_thread

    seen: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    timeouts: list[dict[str, float]] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)
        loops.append(asyncio.get_running_loop())
        timeouts.append(request.extensions["timeout"])

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, litellm_url=upstream_url, read_timeout=123
    )
    injected = httpx.AsyncClient(event_hooks={"request": [hook]})
    app = create_app(settings, http_client=injected)
    config = server_config(app, settings, log_level="warning")
    with serve_in_thread(app, config) as url, httpx.Client(timeout=10) as c:
        r = c.post(f"{url}/v1/chat/completions", json=CHAT, headers={"User-Agent": JAVA_UA})
        assert r.status_code == 200
        with c.stream(
            "POST",
            f"{url}/v1/messages",
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "2"},
        ) as s:
            body = b"".join(s.iter_raw())
        # the client is the caller's: it closes it, on the loop that used it
        asyncio.run_coroutine_threadsafe(injected.aclose(), loops[0]).result(5)
    assert seen == ["/v1/chat/completions", "/v1/messages"]
    # the router's own timeouts apply; a write may wait as long as a read
    assert timeouts[0] == {"connect": 5.0, "read": 123, "write": 123, "pool": 10.0}
    assert upstream.requests[0].header("x-sm-user-id") == "pycharm-ai-chat"
    assert body.count(b"content_block_delta") >= 2


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
