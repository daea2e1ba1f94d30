"""HTTP/1.1 framing through the router, both directions (RFC 9112, RFC 9110): what
each peer actually received, byte for byte."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable

import pytest

from tests.wire.conftest import Router
from tests.wire.peer import (
    Script,
    ScriptedUpstream,
    UpstreamConn,
    exchange,
    exchanges,
    parse_response,
    request,
    response,
    serve_forever,
)

Start = Callable[[Script], ScriptedUpstream]
StartRouter = Callable[..., Router]
MiB = 1024 * 1024


def _once(answer: bytes, *, then_close: bool = False) -> Script:
    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is not None:
            conn.send(answer)
            if not then_close:
                conn.read_request()

    return script


def _header_names(raw: bytes) -> set[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")[1:]}


# -- trailers ------------------------------------------------------------------------


def _send_with_trailers(port: int, head: bytes, body: bytes, trailer: bytes, later: bool) -> bytes:
    """A chunked request whose trailer section comes in the same write as the head, or
    ``later``: only once the router has read the head and asked for the body (its
    ``100 Continue``), so that the decision has been made before the trailer arrives."""
    chunked = b"%x\r\n%s\r\n0\r\n" % (len(body), body) + trailer + b"\r\n"
    head += b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if later:
            sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
            raw = sock.recv(65536)
            assert raw.startswith(b"HTTP/1.1 100 Continue\r\n"), raw
        else:
            sock.sendall(head + b"\r\n")
            raw = b""
        try:
            sock.sendall(chunked)
            while chunk := sock.recv(65536):
                raw += chunk
        except OSError:
            pass  # refused and closed while the trailer was still being sent
    return raw


@pytest.mark.parametrize("later", [False, True], ids=["one-write", "after-the-head"])
def test_request_trailers_change_neither_identity_nor_what_is_forwarded(
    upstream: Start, router: StartRouter, later: bool
) -> None:
    up = upstream(serve_forever(response(body=b"ok")))
    r = router(up)
    body = b'{"model": "m"}'
    raw = _send_with_trailers(
        r.port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nx-memory-user-id: alice\r\n"
        b"Trailer: Authorization, x-memory-user-id, X-Sm-User-Id\r\n",
        body,
        b"Authorization: Bearer team-key\r\nx-memory-user-id: victim\r\nX-Sm-User-Id: victim\r\n",
        later,
    )

    assert parse_response(raw).status == 200
    (forwarded,) = up.requests
    head, _, sent_body = forwarded.partition(b"\r\n\r\n")
    assert sent_body == body
    assert b"victim" not in forwarded and b"team-key" not in forwarded
    assert b"\r\nx-sm-user-id: alice\r\n" in head
    assert b"authorization" not in _header_names(forwarded)


@pytest.mark.parametrize("later", [False, True], ids=["one-write", "after-the-head"])
def test_a_flood_of_request_trailers_is_refused_and_nothing_forwarded(
    upstream: Start, router: StartRouter, later: bool
) -> None:
    up = upstream(serve_forever(response(body=b"ok")))
    r = router(up)
    before = r.rss_kib()
    trailer = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 1000) for i in range(200))  # 200 KB
    raw = _send_with_trailers(
        r.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n", b"{}", trailer, later
    )
    assert parse_response(raw).status == 431
    assert up.requests == []
    assert r.rss_kib() - before < 30 * 1024


def test_response_trailers_never_become_headers(upstream: Start, router: StartRouter) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer, Set-Cookie\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Trailer: injected\r\nSet-Cookie: trailer=1\r\n\r\n"
    )
    up = upstream(_once(answer))
    r = router(up)
    got = exchange(r.port, request())
    assert (got.status, got.body, got.complete) == (200, b"hello", True)
    assert got.trailers == []
    assert not {b"x-trailer", b"set-cookie", b"trailer"} & {n for n, _ in got.headers}
    assert b"injected" not in got.raw and b"trailer=1" not in got.raw


# -- bounds on heads -----------------------------------------------------------------


def test_a_huge_response_head_is_a_502_with_memory_bounded(
    upstream: Start, router: StartRouter
) -> None:
    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(b"HTTP/1.1 200 OK\r\n")
        field = b"v" * 8000
        for i in range(7500):  # 60 MB of head
            conn.send(b"X-H%d: %s\r\n" % (i, field))
        conn.send(b"Content-Length: 2\r\n\r\nok")

    up = upstream(script)
    r = router(up)
    before = r.rss_kib()
    got = exchange(r.port, request())
    assert got.status == 502 and json.loads(got.body)["error"]["code"] == "upstream_unreachable"
    assert r.rss_kib() - before < 40 * 1024


def test_a_response_head_under_the_bound_passes(upstream: Start, router: StartRouter) -> None:
    headers = [(b"X-H%d" % i, b"v" * 1000) for i in range(20)]  # 20 KB
    up = upstream(serve_forever(response(body=b"ok", headers=headers)))
    r = router(up)
    got = exchange(r.port, request())
    assert got.status == 200 and len(got.header(b"x-h19")) == 1


def test_a_request_head_over_the_limit_is_431_in_the_callers_format(
    upstream: Start, router: StartRouter
) -> None:
    up = upstream(serve_forever(response()))
    r = router(up)
    big = [(b"X-Big", b"a" * 40_000)]
    got = exchange(r.port, request(headers=big))
    assert got.status == 431 and json.loads(got.body)["error"]["code"] == "headers_too_large"
    got = exchange(r.port, request(b"/v1/messages", headers=big))
    assert got.status == 431 and json.loads(got.body)["type"] == "error"
    assert up.requests == []


@pytest.mark.parametrize("shape", ["many fields", "one field"])
def test_an_endless_request_head_is_cut_off_with_memory_bounded(
    upstream: Start, router: StartRouter, shape: str
) -> None:
    up = upstream(serve_forever(response()))
    r = router(up)
    before = r.rss_kib()
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n")
        if shape == "one field":
            sock.sendall(b"X-Big: ")
        sent = 0
        try:
            while sent < 96 * MiB:
                piece = (
                    b"c" * 1024 if shape == "one field" else b"X-F%d: %s\r\n" % (sent, b"f" * 1000)
                )
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass  # the router stopped reading and closed
        raw = b""
        try:
            while chunk := sock.recv(65536):
                raw += chunk
        except OSError:
            pass
    assert sent < 96 * MiB, "the router kept reading"
    assert parse_response(raw).status == 431
    assert up.requests == []
    assert r.rss_kib() - before < 40 * 1024


# -- statuses and hop-by-hop fields --------------------------------------------------


@pytest.mark.parametrize(
    "status_line", [b"HTTP/1.1 999 Weird", b"HTTP/1.1 600 Nope", b"HTTP/1.1 099 Low"]
)
def test_an_out_of_range_status_is_a_502(
    upstream: Start, router: StartRouter, status_line: bytes
) -> None:
    up = upstream(_once(status_line + b"\r\nContent-Length: 2\r\n\r\nok", then_close=True))
    r = router(up)
    got = exchange(r.port, request())
    assert got.status == 502 and got.complete


def test_fields_named_in_connection_are_dropped_both_ways(
    upstream: Start, router: StartRouter
) -> None:
    answer = response(
        body=b"ok",
        headers=[
            (b"Connection", b"keep-alive, X-Internal"),
            (b"X-Internal", b"secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Public", b"yes"),
        ],
    )
    up = upstream(serve_forever(answer))
    r = router(up)
    got = exchange(
        r.port,
        request(
            headers=[
                (b"Connection", b"close, X-Client-Hop"),
                (b"X-Client-Hop", b"1"),
                (b"Keep-Alive", b"timeout=9"),
                (b"Proxy-Connection", b"keep-alive"),
                (b"TE", b"trailers"),
                (b"Upgrade", b"h2c"),
                (b"X-Kept", b"1"),
            ],
            close=False,
        ),
    )
    assert got.status == 200 and got.header(b"x-public") == [b"yes"]
    assert not {b"x-internal", b"keep-alive"} & {n for n, _ in got.headers}
    sent = _header_names(up.requests[0])
    assert b"x-kept" in sent
    assert (
        not {
            b"x-client-hop",
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"upgrade",
            b"trailer",
            b"transfer-encoding",
        }
        & sent
    )


# -- RFC 9112 / 9110 message framing -------------------------------------------------


def test_head_relays_no_body_and_keeps_the_length(upstream: Start, router: StartRouter) -> None:
    up = upstream(
        _once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n")
    )
    r = router(up)
    got = exchange(r.port, request(b"/v1/models", method=b"HEAD", body=b""), method=b"HEAD")
    assert got.status == 200 and got.header(b"content-length") == [b"5"]
    assert got.body == b"" and got.raw.endswith(b"\r\n\r\n")
    assert up.requests[0].startswith(b"HEAD /v1/models HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", id="204"),
        pytest.param(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', id="304"),
        pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n", id="304-length"),
    ],
)
def test_bodyless_statuses_stay_bodyless(
    upstream: Start, router: StartRouter, answer: bytes
) -> None:
    status = int(answer[9:12])

    def script(conn: UpstreamConn) -> None:
        while conn.read_request() is not None:
            conn.send(answer)

    up = upstream(script)
    r = router(up)
    # Both connections stay usable: no body was expected or sent on either side.
    ask = request(b"/v1/models", method=b"GET", body=b"", close=False)
    got = exchanges(r.port, [ask, ask, ask], method=b"GET")
    assert [(g.status, g.body) for g in got] == [(status, b"")] * 3
    assert all(g.header(b"content-length") in ([], [b"0"]) for g in got)
    assert len(up.connections) == 1


def test_a_body_delimited_by_the_upstream_closing_arrives_whole(
    upstream: Start, router: StartRouter
) -> None:
    body = b"".join(b"line %d\n" % i for i in range(5000))
    up = upstream(_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body, then_close=True))
    r = router(up)
    got = exchange(r.port, request())
    assert (got.status, got.body, got.complete) == (200, body, True)


def test_connection_close_from_the_upstream_means_a_new_connection_next(
    upstream: Start, router: StartRouter
) -> None:
    up = upstream(
        _once(response(body=b"bye", headers=[(b"Connection", b"close")]), then_close=True)
    )
    r = router(up)
    for _ in range(2):
        assert exchange(r.port, request()).body == b"bye"
    assert len(up.connections) == 2


def test_a_chunked_request_is_forwarded_with_its_exact_body(
    upstream: Start, router: StartRouter
) -> None:
    up = upstream(serve_forever(response()))
    r = router(up)
    pieces = [b'{"model": "m", ', b'"messages": [', b"]}"]
    data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nTransfer-Encoding: chunked\r\n"
    data += b"Connection: close\r\n\r\n"
    data += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    assert exchange(r.port, data).status == 200
    head, _, body = up.requests[0].partition(b"\r\n\r\n")
    assert body == b"".join(pieces)
    assert b"\r\ncontent-length: %d" % len(body) in head.lower()


def test_expect_100_continue(upstream: Start, router: StartRouter) -> None:
    up = upstream(serve_forever(response(body=b"done")))
    r = router(up)
    body = b'{"model": "m"}'
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        raw = interim
        while chunk := sock.recv(65536):
            raw += chunk
    got = parse_response(raw)
    assert (got.interim, got.status, got.body) == ([100], 200, b"done")
    assert b"expect" not in _header_names(up.requests[0])
    assert up.requests[0].endswith(body)


def test_gzip_passes_byte_for_byte(upstream: Start, router: StartRouter) -> None:
    packed = gzip.compress(b'{"answer": "' + b"z" * 5000 + b'"}')
    answer = response(
        body=packed,
        headers=[(b"Content-Encoding", b"gzip"), (b"Content-Type", b"application/json")],
    )
    up = upstream(serve_forever(answer))
    r = router(up)
    got = exchange(r.port, request(headers=[(b"Accept-Encoding", b"gzip")]))
    assert got.body == packed and got.header(b"content-encoding") == [b"gzip"]
    assert b"\r\naccept-encoding: gzip\r\n" in up.requests[0].lower()


def test_several_set_cookie_fields_stay_separate(upstream: Start, router: StartRouter) -> None:
    cookies = [b"a=1; Path=/", b"b=2, c=3; HttpOnly", b"d=4"]
    up = upstream(serve_forever(response(headers=[(b"Set-Cookie", c) for c in cookies])))
    r = router(up)
    assert exchange(r.port, request()).header(b"set-cookie") == cookies


def test_a_150_mb_answer_streams_through_with_flat_memory(
    upstream: Start, router: StartRouter
) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 150 * MiB // len(piece)

    def script(conn: UpstreamConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (count * len(piece)))
        for _ in range(count):
            conn.send(piece)

    up = upstream(script)
    r = router(up)
    before = r.rss_kib()
    done = threading.Event()
    received = 0
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as sock:
        sock.sendall(request())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        received = len(rest)
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        done.set()
    assert head.startswith(b"HTTP/1.1 200")
    assert received == count * len(piece)
    assert r.rss_kib() - before < 64 * 1024


def test_the_router_adds_no_headers_of_its_own(upstream: Start, router: StartRouter) -> None:
    up = upstream(serve_forever(response()))
    r = router(up)
    sent = [(b"User-Agent", b"OpenAI/Python 1.40.0"), (b"Authorization", b"Bearer sk-1")]
    exchange(r.port, request(headers=sent, body=b'{"model": "m"}'))
    names = [
        line.split(b":", 1)[0].lower()
        for line in up.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    ]
    assert sorted(names) == sorted(
        [
            b"host",  # the upstream's own
            b"user-agent",
            b"authorization",
            b"content-length",  # recomputed
            b"x-sm-user-id",
            b"x-supermemory-api-key",
            b"x-litellm-end-user-id",
            b"x-request-id",
        ]
    )
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % up.port in up.requests[0].lower()
