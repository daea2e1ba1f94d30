"""Table-driven tests of the pure header rewriting."""

from __future__ import annotations

import pytest

from router.headers import (
    downstream_headers,
    inject_memory_headers,
    memory_header_names,
    memory_headers,
    request_id_from,
    upstream_headers,
)

H = list[tuple[bytes, bytes]]
INJECT = [(b"x-sm-user-id", b"decided"), (b"x-supermemory-api-key", b"sm_key")]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        # ordinary headers pass in order
        (
            [(b"authorization", b"Bearer sk"), (b"user-agent", b"ua"), (b"x-other", b"1")],
            [(b"authorization", b"Bearer sk"), (b"user-agent", b"ua"), (b"x-other", b"1")],
        ),
        # hop-by-hop, host, length and expect are dropped
        (
            [
                (b"host", b"router:8765"),
                (b"connection", b"keep-alive"),
                (b"keep-alive", b"timeout=5"),
                (b"transfer-encoding", b"chunked"),
                (b"content-length", b"10"),
                (b"te", b"trailers"),
                (b"upgrade", b"h2c"),
                (b"proxy-authorization", b"Basic x"),
                (b"expect", b"100-continue"),
                (b"accept", b"*/*"),
            ],
            [(b"accept", b"*/*")],
        ),
        # headers named by Connection are hop-by-hop too
        (
            [(b"connection", b"close, x-private"), (b"x-private", b"1"), (b"x-public", b"2")],
            [(b"x-public", b"2")],
        ),
        # spoofed memory headers and the custom header never go upstream
        (
            [
                (b"x-sm-user-id", b"someone-else"),
                (b"x-supermemory-api-key", b"stolen"),
                (b"x-supermemory-anything", b"1"),
                (b"x-memory-user-id", b"me"),
                (b"x-sm-conversation-id", b"thread-1"),
            ],
            [(b"x-sm-conversation-id", b"thread-1")],
        ),
    ],
)
def test_upstream_headers(given: H, kept: H) -> None:
    before = list(given)
    out = upstream_headers(given, custom_header=b"x-memory-user-id", inject=INJECT)
    assert out == kept + INJECT
    assert given == before, "input must not be mutated"


def test_upstream_headers_carry_exactly_one_user_id() -> None:
    out = upstream_headers(
        [(b"x-sm-user-id", b"a"), (b"x-sm-user-id", b"b")],
        custom_header=b"x-memory-user-id",
        inject=INJECT,
    )
    assert [v for k, v in out if k == b"x-sm-user-id"] == [b"decided"]


@pytest.mark.parametrize(
    ("key", "end_user", "expected"),
    [
        (None, False, [(b"x-sm-user-id", b"u1")]),
        ("sm_k", False, [(b"x-sm-user-id", b"u1"), (b"x-supermemory-api-key", b"sm_k")]),
        (
            "sm_k",
            True,
            [
                (b"x-sm-user-id", b"u1"),
                (b"x-supermemory-api-key", b"sm_k"),
                (b"x-litellm-end-user-id", b"u1"),
            ],
        ),
    ],
)
def test_memory_headers(key: str | None, end_user: bool, expected: H) -> None:
    assert memory_headers("u1", key, litellm_end_user=end_user) == expected


@pytest.mark.parametrize(
    ("end_user", "expected"),
    [(False, []), (True, [(b"x-litellm-end-user-id", b"u1")])],
)
def test_without_supermemorys_proxy_neither_the_id_nor_the_key_is_sent(
    end_user: bool, expected: H
) -> None:
    assert memory_headers("u1", "sm_k", litellm_end_user=end_user, supermemory=False) == expected
    names = memory_header_names("sm_k", litellm_end_user=end_user, supermemory=False)
    assert names == [n.decode() for n, _ in expected]


def test_downstream_headers() -> None:
    given = [
        (b"content-type", b"text/event-stream"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"),
        (b"x-request-id", b"upstream-id"),
        (b"x-supermemory-api-key", b"echoed"),
        (b"llm_provider-x-supermemory-api-key", b"echoed"),
        (b"x-supermemory-conversation-id", b"c1"),
        (b"content-length", b"12"),
    ]
    assert downstream_headers(given, request_id=b"rid") == [
        (b"content-type", b"text/event-stream"),
        (b"x-supermemory-conversation-id", b"c1"),
        (b"content-length", b"12"),
        (b"x-request-id", b"rid"),
    ]


@pytest.mark.parametrize(
    ("connection", "dropped"),
    [
        ([b"keep-alive"], set()),
        ([b"close"], set()),
        ([b"Keep-Alive, X-Internal"], {b"x-internal"}),
        ([b"keep-alive, x-internal , X-Other"], {b"x-internal", b"x-other"}),
        ([b"x-internal", b"x-other"], {b"x-internal", b"x-other"}),
    ],
)
def test_downstream_drops_what_connection_names(
    connection: list[bytes], dropped: set[bytes]
) -> None:
    names = [b"x-internal", b"x-other", b"x-public"]
    given = [(b"connection", c) for c in connection] + [(n, b"v") for n in names]
    out = downstream_headers(given, request_id=b"rid")
    assert [n for n, _ in out] == [n for n in names if n not in dropped] + [b"x-request-id"]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (b"abc-123", True),
        (b"req_01:AB.cd", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"has space", False),
        (b"crlf\r\ninjected: 1", False),
        (None, False),
    ],
)
def test_request_id(incoming: bytes | None, kept: bool) -> None:
    rid = request_id_from(incoming)
    if kept:
        assert rid == incoming
    else:
        assert rid != incoming and len(rid) == 16 and rid.isalnum()


def test_inject_memory_headers_api_returns_new_dict() -> None:
    given = {"User-Agent": "ua", "X-SM-User-Id": "spoof", "X-Memory-User-Id": "me", "Host": "h"}
    out = inject_memory_headers(
        given, user_id="me", supermemory_key="sm_k", custom_header="X-Memory-User-Id"
    )
    assert out == {"user-agent": "ua", "x-sm-user-id": "me", "x-supermemory-api-key": "sm_k"}
    assert given["X-SM-User-Id"] == "spoof"


def test_generated_request_ids_are_unique_and_well_formed() -> None:
    from router.headers import RequestIds

    make = RequestIds()
    ids = [request_id_from(None, make) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)
