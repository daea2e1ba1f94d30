"""An ``Upgrade`` the router does not support is ignored (RFC 9110 7.8): the request is
served as HTTP/1.1 with its whole body, and requests pipelined behind it are answered in
order, with no stray answer.

The JDK's ``HttpClient``, with its default settings, sends every request to a cleartext
URL as ``Connection: Upgrade, HTTP2-Settings`` / ``Upgrade: h2c``, body included, and
writes the body after the head, often in a second write.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import h11
import pytest

from tests.support.provision import system_tool
from tests.wire.conftest import Router
from tests.wire.peer import Received, Script, ScriptedUpstream, response, serve_forever

Start = Callable[[Script], ScriptedUpstream]
StartRouter = Callable[..., Router]

H2C = (
    b"Connection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\n"
    b"Upgrade: h2c\r\n"
)


def _head(n: int, body: bytes, *, upgrade: bool = True, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n"
        + (H2C if upgrade else b"")
        + b"User-Agent: Java-http-client/17.0.13\r\nx-memory-user-id: caller-%d\r\n" % n
        + b"Content-Type: application/json\r\n"
        + extra
        + b"\r\n"
    )


def _body(n: int) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": f"q{n}"}]}).encode()


def _sized(n: int, *, upgrade: bool = True) -> tuple[bytes, bytes]:
    body = _body(n)
    return _head(n, body, upgrade=upgrade, extra=b"Content-Length: %d\r\n" % len(body)), body


def _chunked(n: int) -> tuple[bytes, bytes]:
    body = _body(n)
    half = len(body) // 2
    framed = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        half,
        body[:half],
        len(body) - half,
        body[half:],
    )
    return _head(n, body, extra=b"Transfer-Encoding: chunked\r\n"), framed


def _echo(request: bytes) -> bytes:
    """Answers with the body it got, so the client sees which request each answer is for."""
    return response(body=request.partition(b"\r\n\r\n")[2])


def _read_answers(sock: socket.socket, count: int) -> tuple[list[Received], bytes]:
    """``count`` answers from one connection; then the client ends its side, and
    whatever else arrives before the router closes it (nothing, when all went well)."""
    conn = h11.Connection(h11.CLIENT)
    got: list[Received] = []
    for _ in range(count):
        conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        received = Received(b"")
        while not received.complete:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(got)} answers: {received.raw!r}"
                conn.receive_data(chunk)
            else:
                received.record(event)
        got.append(received)
        if len(got) < count:
            conn.start_next_cycle()
    sock.shutdown(socket.SHUT_WR)
    rest = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            rest += chunk
    return got, conn.trailing_data[0] + rest


def _forwarded(up: ScriptedUpstream, count: int) -> list[tuple[bytes, bytes]]:
    up.wait_requests(count)
    return [tuple(r.partition(b"\r\n\r\n")[::2]) for r in up.requests]  # type: ignore[misc]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("writes", ["one write", "head then body"])
def test_h2c_upgrade_on_a_post_is_served_as_http11_with_its_body_and_pipelining_holds(
    upstream: Start, router: StartRouter, framing: str, writes: str
) -> None:
    up = upstream(serve_forever(_echo))
    r = router(up)
    first_head, first_body = _sized(1) if framing == "content-length" else _chunked(1)
    second_head, second_body = _sized(2, upgrade=False)
    third_head, third_body = _sized(3)
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if writes == "one write":
            sock.sendall(first_head + first_body + second_head + second_body)
        else:
            sock.sendall(first_head)
            sock.sendall(first_body)
            sock.sendall(second_head)
            sock.sendall(second_body)
        sock.sendall(third_head + third_body)
        answers, stray = _read_answers(sock, 3)

    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.body for a in answers] == [_body(1), _body(2), _body(3)]
    assert stray == b""
    forwarded = _forwarded(up, 3)
    assert [body for _, body in forwarded] == [_body(1), _body(2), _body(3)]
    for head, _ in forwarded:
        lowered = head.lower()
        assert b"upgrade" not in lowered and b"http2-settings" not in lowered, head
    for n, (head, _) in enumerate(forwarded, 1):
        assert b"\r\nx-sm-user-id: caller-%d\r\n" % n in head, head


def test_h2c_upgrade_with_expect_100_continue_waits_for_the_body(
    upstream: Start, router: StartRouter
) -> None:
    """The body is sent only once the router asked for it: it arrives in a later read
    than the head, always."""
    up = upstream(serve_forever(_echo))
    r = router(up)
    body = _body(1)
    head = _head(1, body, extra=b"Content-Length: %d\r\nExpect: 100-continue\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sock.sendall(body)
        answers, stray = _read_answers(sock, 1)
    assert (answers[0].status, answers[0].body, stray) == (200, body, b"")
    assert [b for _, b in _forwarded(up, 1)] == [body]


def test_a_websocket_upgrade_is_ignored_too(upstream: Start, router: StartRouter) -> None:
    """The router serves no WebSocket: such a request is an ordinary HTTP request."""
    up = upstream(serve_forever(response(body=b"plain")))
    r = router(up)
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v1/realtime HTTP/1.1\r\nHost: router\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            b"GET /v1/models HTTP/1.1\r\nHost: router\r\n\r\n"
        )
        answers, stray = _read_answers(sock, 2)
    assert [(a.status, a.body) for a in answers] == [(200, b"plain"), (200, b"plain")]
    assert stray == b""
    paths = [r.split(b" ", 2)[1] for r in up.requests]
    assert paths == [b"/v1/realtime", b"/v1/models"]


def test_a_bad_transfer_encoding_behind_an_upgrade_is_still_refused(
    upstream: Start, router: StartRouter
) -> None:
    """The body's framing is checked as strictly as without the Upgrade."""
    up = upstream(serve_forever(_echo))
    r = router(up)
    head = _head(1, b"", extra=b"Transfer-Encoding: gzip\r\n")
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.sendall(head + b"abc")
        raw = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 "), raw
    assert up.requests == []


# -- the real JDK client -------------------------------------------------------------

JAVA_SOURCE = Path(__file__).parent / "java" / "UpgradingPosts.java"


@pytest.fixture(scope="module")
def java_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``java UpgradingPosts``, compiled once; the JDK comes from scripts/provision.sh."""
    out = tmp_path_factory.mktemp("java")
    javac = system_tool("javac", out)
    subprocess.run([javac, "-d", str(out), str(JAVA_SOURCE)], check=True, timeout=120)
    java = str(Path(javac).with_name("java"))
    return [java, "-cp", str(out), "UpgradingPosts"]


def _run_java(command: list[str], url: str, count: int) -> list[str]:
    done = subprocess.run(
        [*command, url, str(count)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_jdk_client_gets_every_answer_and_every_body_arrives(
    upstream: Start, router: StartRouter, java_client: list[str]
) -> None:
    # The client under test does offer h2c with its body: straight to a recording peer.
    probe = upstream(serve_forever(_echo))
    assert _run_java(java_client, probe.url + "/probe", 1) == ['200 HTTP_1_1 {"n":1}']
    head, _, body = probe.requests[0].partition(b"\r\n\r\n")
    assert b"\r\nUpgrade: h2c\r\n" in head and body == b'{"n":1}', probe.requests[0]

    up = upstream(serve_forever(_echo))
    r = router(up)
    lines = _run_java(java_client, r.url + "/v1/chat/completions", 3)
    assert lines == [f'200 HTTP_1_1 {{"n":{n}}}' for n in (1, 2, 3)]
    assert [b for _, b in _forwarded(up, 3)] == [b'{"n":%d}' % n for n in (1, 2, 3)]
