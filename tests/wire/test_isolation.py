"""One client's answer never reaches another, and a request is never sent twice:
what an upstream or a client does on the wire cannot make the router mix them."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable

import pytest

from tests.support.polling import wait_for
from tests.wire.conftest import Router
from tests.wire.peer import (
    Received,
    Script,
    ScriptedUpstream,
    UpstreamConn,
    exchange,
    request,
    response,
    serve_forever,
)

Start = Callable[[Script], ScriptedUpstream]
StartRouter = Callable[..., Router]


def _id_of(raw: bytes) -> bytes:
    """The x-sm-user-id the router sent upstream."""
    for line in raw.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"x-sm-user-id":
            return value.strip()
    raise AssertionError(f"no x-sm-user-id in {raw[:300]!r}")


def test_an_interim_103_is_not_an_answer_and_shifts_nothing(
    upstream: Start, router: StartRouter
) -> None:
    b_answered = threading.Event()

    def script(conn: UpstreamConn) -> None:
        while (raw := conn.read_request()) is not None:
            if _id_of(raw) == b"client-a":
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                assert b_answered.wait(10)
                conn.send(response(body=b"final-answer-for-A"))
            else:
                conn.send(response(body=b"answer-for-B"))
                b_answered.set()

    up = upstream(script)
    r = router(up)
    got: dict[str, Received] = {}
    a = threading.Thread(
        target=lambda: got.__setitem__(
            "a", exchange(r.port, request(headers=[(b"x-memory-user-id", b"client-a")]))
        )
    )
    a.start()
    up.wait_requests(1)  # A's request is upstream and its 103 on the way
    got["b"] = exchange(r.port, request(headers=[(b"x-memory-user-id", b"client-b")]))
    a.join(15)

    assert (got["a"].status, got["a"].body) == (200, b"final-answer-for-A")
    assert (got["b"].status, got["b"].body) == (200, b"answer-for-B")
    assert b"answer-for-B" not in got["a"].raw and b"for-A" not in got["b"].raw
    assert all(100 <= s < 200 for s in got["a"].interim)  # never relayed as final


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!", id="whole-response"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n", id="partial-head"),
        pytest.param(b"smuggled!", id="junk"),
    ],
)
def test_bytes_after_a_complete_answer_in_the_same_write_reach_no_one(
    upstream: Start, router: StartRouter, extra: bytes
) -> None:
    sent_extra = threading.Event()

    def script(conn: UpstreamConn) -> None:
        while (raw := conn.read_request()) is not None:
            answer = response(body=b"answer-for-" + _id_of(raw))
            conn.send(answer if sent_extra.is_set() else answer + extra)
            sent_extra.set()

    up = upstream(script)
    r = router(up)
    first = exchange(r.port, request(headers=[(b"x-memory-user-id", b"alice")]))
    # Her answer, or a 502 where the junk makes the whole read invalid: never the junk.
    assert (first.status, first.body) == (200, b"answer-for-alice") or first.status == 502
    assert b"smuggled" not in first.raw
    for user in (b"bob", b"carol", b"alice"):
        got = exchange(r.port, request(headers=[(b"x-memory-user-id", user)]))
        assert (got.status, got.body) == (200, b"answer-for-" + user)
        assert b"smuggled" not in got.raw


def test_bytes_sent_on_an_idle_pooled_connection_close_it(
    upstream: Start, router: StartRouter
) -> None:
    answered = threading.Event()
    extra_sent = threading.Event()

    def script(conn: UpstreamConn) -> None:
        while (raw := conn.read_request()) is not None:
            conn.send(response(body=b"answer-for-" + _id_of(raw)))
            if conn.index == 0 and not extra_sent.is_set():
                assert answered.wait(10)
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!")
                extra_sent.set()

    up = upstream(script)
    r = router(up)
    got = exchange(r.port, request(headers=[(b"x-memory-user-id", b"alice")]))
    assert got.body == b"answer-for-alice"
    answered.set()  # the connection now sits idle in the router's pool
    assert extra_sent.wait(5)
    first = up.connections[0]
    assert first.wait_eof(), "the router kept a connection that sent unrequested bytes"
    for user in (b"bob", b"carol"):
        got = exchange(r.port, request(headers=[(b"x-memory-user-id", user)]))
        assert (got.status, got.body) == (200, b"answer-for-" + user)
    assert [_id_of(raw) for raw in first.requests] == [b"alice"]


@pytest.mark.parametrize(
    ("method", "path", "error_key"),
    [
        (b"POST", b"/v1/chat/completions", "error"),
        (b"PATCH", b"/v1/chat/completions", "error"),
        (b"POST", b"/v1/messages", "type"),
    ],
)
def test_a_request_the_upstream_read_is_never_sent_twice(
    upstream: Start, router: StartRouter, method: bytes, path: bytes, error_key: str
) -> None:
    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(response(body=b"first"))
        conn.read_request()  # the second request, read in full: then hang up unanswered

    up = upstream(script)
    r = router(up)
    assert exchange(r.port, request(path, method=method, body=b'{"n": 1}')).body == b"first"
    got = exchange(r.port, request(path, method=method, body=b'{"n": 2}'))

    assert got.status == 502
    assert error_key in json.loads(got.body)
    assert len(up.connections[0].requests) == 2, "the second request reused the connection"
    assert sum(raw.endswith(b'{"n": 2}') for raw in up.requests) == 1


def _router_sockets_to(port: int) -> list[str]:
    """States of client sockets whose far end is ``port`` (the router's, to the upstream)."""
    states = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port:
                states.append(fields[3])
    return states


def test_a_connection_the_upstream_closed_while_idle_is_not_a_502(
    upstream: Start, router: StartRouter
) -> None:
    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is not None:
            keep_alive = [(b"Connection", b"keep-alive")]
            conn.send(response(body=b"answer-%d" % conn.index, headers=keep_alive))
        # then close the idle connection, as uvicorn does after its keep-alive timeout

    up = upstream(script)
    r = router(up)
    assert exchange(r.port, request()).body == b"answer-0"
    # ESTABLISHED (01) or CLOSE_WAIT (08) until the router has seen the close and let go.
    wait_for(lambda: not {"01", "08"} & set(_router_sockets_to(up.port)), what="router let go")
    got = exchange(r.port, request(body=b'{"n": 2}'))
    assert (got.status, got.body) == (200, b"answer-1")
    assert sum(raw.endswith(b'{"n": 2}') for raw in up.requests) == 1


def _in_flight(r: Router) -> float:
    with socket.create_connection(("127.0.0.1", r.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    return sum(
        float(line.rsplit(b" ", 1)[1])
        for line in text.split(b"\n")
        if line.startswith(b"memory_router_requests_in_flight{")
    )


def test_a_waiter_that_hangs_up_does_not_strand_the_only_connection(
    upstream: Start, router: StartRouter
) -> None:
    release = threading.Event()

    def script(conn: UpstreamConn) -> None:
        while (raw := conn.read_request()) is not None:
            if _id_of(raw) == b"holder":
                assert release.wait(15)
            conn.send(response(body=b"answer-for-" + _id_of(raw)))

    up = upstream(script)
    r = router(up, MEMORY_ROUTER_MAX_CONNECTIONS="1", MEMORY_ROUTER_POOL_TIMEOUT="5")
    got: dict[str, Received] = {}
    holder = threading.Thread(
        target=lambda: got.__setitem__(
            "a", exchange(r.port, request(headers=[(b"x-memory-user-id", b"holder")]))
        )
    )
    holder.start()
    up.wait_requests(1)
    waiter = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    waiter.sendall(request(headers=[(b"x-memory-user-id", b"waiter")]))
    wait_for(lambda: _in_flight(r) == 2, what="the waiter queued for the connection")
    waiter.close()  # hangs up while waiting for the only connection
    wait_for(lambda: _in_flight(r) == 1, what="the waiter's request ended")
    release.set()
    holder.join(15)
    got_c = exchange(r.port, request(headers=[(b"x-memory-user-id", b"third")]))

    assert got["a"].body == b"answer-for-holder"
    assert (got_c.status, got_c.body) == (200, b"answer-for-third")
    assert [_id_of(raw) for raw in up.requests] == [b"holder", b"third"]


def test_the_default_script_answers(upstream: Start, router: StartRouter) -> None:
    """The helpers themselves: a plain exchange through the router, byte for byte."""
    up = upstream(serve_forever(response(body=b"hello")))
    r = router(up)
    got = exchange(r.port, request(body=b'{"a": 1}'))
    assert (got.status, got.body, got.complete) == (200, b"hello", True)
    assert up.requests[0].endswith(b'\r\n\r\n{"a": 1}')


def test_an_idempotent_request_is_retried_at_most_once(
    upstream: Start, router: StartRouter
) -> None:
    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(response(body=b"first-%d" % conn.index))
        if conn.index == 0:
            conn.read_request()  # the GET on the reused connection: read, then hang up

    up = upstream(script)
    r = router(up)
    ask = request(b"/v1/models", method=b"GET", body=b"")
    assert exchange(r.port, ask, method=b"GET").body == b"first-0"
    got = exchange(r.port, request(b"/v1/models?n=2", method=b"GET", body=b""), method=b"GET")
    assert (got.status, got.body) == (200, b"first-1")  # RFC 9112 9.3.1: safe to retry
    assert sum(raw.startswith(b"GET /v1/models?n=2 ") for raw in up.requests) == 2
