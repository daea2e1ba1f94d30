"""The upstream client as the proxy uses it: redirects, header encoding, the slot
gate, error kinds, and one record per request whatever its outcome."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from pathlib import Path

import aiohttp
import httpx
import pytest

from router.app import RouterApp, create_app
from router.exceptions import UpstreamError
from router.server import server_config
from router.settings import Settings
from router.upstream import (
    MAX_RESPONSE_HEAD,
    AiohttpUpstream,
    Timeouts,
    _kind_of,
    check_answer,
)
from tests.conftest import SM_KEY, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.metrics import requests, settle, value
from tests.support.polling import wait_for
from tests.support.servers import serve_in_thread

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Recorder:
    """A bare TCP server that only counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorder() -> object:
    r = Recorder()
    yield r
    r.close()


# -- what the proxy relays ---------------------------------------------------------


def test_a_redirect_is_relayed_never_followed(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, recorder: Recorder
) -> None:
    _, url = router_app
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"x-test-status": "307", "x-test-location": f"{recorder.url}/steal"},
    )
    assert r.status_code == 307 and r.headers["location"] == f"{recorder.url}/steal"
    assert len(upstream.requests) == 1
    assert recorder.connections == 0  # the key went to LITELLM_URL only


def test_an_injected_client_that_follows_redirects_does_not_here(
    upstream_url: str, upstream: FakeUpstream, recorder: Recorder
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, litellm_url=upstream_url, supermemory_api_key=SM_KEY
    )
    # No pooled connections: the client is never closed on the server's loop here.
    injected = httpx.AsyncClient(
        follow_redirects=True, limits=httpx.Limits(max_keepalive_connections=0)
    )
    app = create_app(settings, http_client=injected)
    with serve_in_thread(app, server_config(app, settings, log_level="warning")) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"x-test-status": "302", "x-test-location": f"{recorder.url}/steal"},
        )
    assert r.status_code == 302
    assert len(upstream.requests) == 1
    assert recorder.connections == 0


def test_utf8_header_values_pass_byte_for_byte_others_are_400(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    _, url = router_app
    port = int(url.rsplit(":", 1)[1])

    def send(value: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"x-title: " + value + b"\r\nConnection: close\r\n\r\n{}"
            )
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    assert send("Café ☕".encode()).startswith(b"HTTP/1.1 200")
    raw = [v for k, v in upstream.last().headers if k == "x-title"]
    assert [v.encode("latin-1") for v in raw] == ["Café ☕".encode()]

    upstream.reset()
    reply = send(b"caf\xe9")  # Latin-1, not UTF-8
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'"invalid_request_error"' in reply and b"x-title" in reply
    assert upstream.requests == []


# -- every outcome counted once ------------------------------------------------------


def test_every_outcome_is_counted_with_its_duration(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    rules = write_rules(
        tmp_path / "rules.yaml",
        """
        custom_header_policy: {allowed_ids: [alice, limited]}
        default_user_id: dev
        """,
        rate_limits="per_user_id: {limited: {requests_per_minute: 1, burst: 1}}",
    )
    app, url = start_router(config=rules, max_body_bytes=1000, max_header_bytes=2048)
    post = f"{url}/v1/chat/completions"
    outcomes = [
        httpx.post(post, json=CHAT, headers={"x-memory-user-id": "bad id"}),  # 400
        httpx.post(post, json=CHAT, headers={"x-memory-user-id": "mallory"}),  # 403
        httpx.post(post, json=CHAT, headers={"x-memory-user-id": "limited"}),  # 200
        httpx.post(post, json=CHAT, headers={"x-memory-user-id": "limited"}),  # 429
        httpx.post(post, json=CHAT, headers={"x-big": "a" * 3000}),  # 431
        httpx.post(post, content=b"x" * 2000, headers={"x-memory-user-id": "alice"}),  # 413
    ]
    assert [r.status_code for r in outcomes] == [400, 403, 200, 429, 431, 413]
    settle(app, 6)
    counted = {
        ("__invalid__", "400"),
        ("__invalid__", "403"),
        ("limited", "200"),
        ("limited", "429"),
        ("__invalid__", "431"),
        ("alice", "413"),
    }
    for user, status in counted:
        assert requests(app, user, "/v1/chat/completions", status) == 1, (user, status)
    durations = {
        user: value(
            app,
            "memory_router_request_duration_seconds_count",
            user_id=user,
            route="/v1/chat/completions",
        )
        for user in ("__invalid__", "limited", "alice")
    }
    assert durations == {"__invalid__": 3, "limited": 2, "alice": 1}
    for user in ("limited", "alice"):
        assert value(app, "memory_router_requests_in_flight", user_id=user) == 0


# -- the slot gate -------------------------------------------------------------------


async def test_a_woken_waiter_that_is_cancelled_hands_its_slot_on(
    upstream_url: str, upstream: FakeUpstream
) -> None:
    client = AiohttpUpstream(
        upstream_url,
        timeouts=Timeouts(connect=5, read=30, pool=10),
        max_connections=1,
        keepalive_expiry=4,
    )
    try:
        _, _, held = await client("GET", b"/v1/models", [], b"")
        b = asyncio.create_task(client("GET", b"/v1/models", [], b""))
        c = asyncio.create_task(client("GET", b"/v1/models", [], b""))
        await asyncio.sleep(0)  # both run up to the gate, where they wait
        assert client.in_use == 1 and not b.done() and not c.done()
        await held.aclose()  # frees the slot and wakes b ...
        b.cancel()  # ... which is cancelled before it can take it
        status, _, answer = await asyncio.wait_for(c, 5)
        await answer.aclose()
        assert status == 200 and b.cancelled()
        assert client.in_use == 0
    finally:
        await client.aclose()


# -- the rules for answers and errors ------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "refused"),
    [
        (200, [(b"content-type", b"application/json")], False),
        (599, [], False),
        (204, [], False),
        (999, [], True),
        (600, [], True),
        (103, [], True),
        (101, [], True),
        (199, [], True),
        (200, [(b"x-h", b"a" * (MAX_RESPONSE_HEAD - 8))], False),
        (200, [(b"x-h", b"a" * MAX_RESPONSE_HEAD)], True),
        (200, [(b"x-h%d" % i, b"a" * 1000) for i in range(70)], True),
    ],
)
def test_check_answer(status: int, headers: list[tuple[bytes, bytes]], refused: bool) -> None:
    if refused:
        with pytest.raises(UpstreamError) as info:
            check_answer(status, headers)
        assert info.value.kind == "protocol"
    else:
        check_answer(status, headers)


def _connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "refused"))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (aiohttp.ConnectionTimeoutError(), "connect_timeout"),
        (aiohttp.SocketTimeoutError(), "timeout"),
        (TimeoutError(), "timeout"),
        (_connector_error(), "connect"),
        (aiohttp.ServerDisconnectedError(), "reset"),
        (aiohttp.ClientOSError(104, "reset"), "reset"),
        (aiohttp.ClientPayloadError("short"), "protocol"),
        (aiohttp.ClientResponseError(None, (), status=400, message="bad"), "protocol"),  # type: ignore[arg-type]
    ],
)
def test_error_kinds(exc: BaseException, kind: str) -> None:
    assert _kind_of(exc) == kind


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


def test_an_https_upstream_is_verified_against_the_trust_store(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """LITELLM_URL may be https://: the certificate is checked with the system's trust
    store (SSL_CERT_FILE here, as OpenSSL reads it), and refused when it does not verify."""
    import shutil

    import trustme
    import uvicorn

    from tests.support.ports import free_port
    from tests.support.processes import Processes

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = (tmp_path / n for n in ("key.pem", "cert.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    config = uvicorn.Config(
        upstream, log_level="warning", ssl_keyfile=str(key_file), ssl_certfile=str(cert_file)
    )
    exe = shutil.which("memory-router")
    assert exe
    processes = Processes(tmp_path)
    try:
        with serve_in_thread(upstream, config) as http_url:
            https_url = http_url.replace("http://", "https://")
            answers = {}
            for name, trusted in (("trusted", str(ca_file)), ("untrusted", os.devnull)):
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_ROUTER_")}
                env.update(SSL_CERT_FILE=trusted, SUPERMEMORY_API_KEY=SM_KEY)
                process = processes.start(
                    name, [exe, "--port", str(port), "--litellm-url", https_url], env=env
                )
                process.wait_http_ok(f"http://127.0.0.1:{port}/health")
                answers[name] = httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT, timeout=10
                )
    finally:
        processes.stop_all()
    assert answers["trusted"].status_code == 200
    assert upstream.requests[0].header("x-sm-user-id") == "default-dev"
    assert answers["untrusted"].status_code == 502
    assert len(upstream.requests) == 1  # nothing sent over the connection that did not verify
