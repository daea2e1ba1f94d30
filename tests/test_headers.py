"""Header rewriting (router/headers.py): table-driven tests of the pure functions, a request
id the server cannot pass on, and properties over arbitrary header sets, pure and through
the proxy."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router.app import RouterApp
from router.exceptions import InvalidCustomHeader
from router.headers import (
    downstream_headers,
    inject_memory_headers,
    memory_header_names,
    memory_headers,
    request_id_from,
    upstream_headers,
)
from router.memory_router import MemoryRouter
from router.rules import decide
from router.server import server_config
from router.settings import Settings
from tests.conftest import SM_KEY
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.fetch import send_raw
from tests.support.servers import serve_in_thread

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


def test_a_request_id_with_odd_bytes_is_replaced_not_forwarded(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    """Bytes a header value may legally carry (space, ';', obs-text) but an id may not."""
    _, url = router_app
    reply = send_raw(url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: a b;\xff\r\n\r\n")
    head = reply.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200")
    echoed = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]
    assert len(echoed) == 1 and re.fullmatch(rb"x-request-id: [0-9a-f]{16}", echoed[0].lower())
    forwarded = upstream.last().header("x-request-id")
    assert forwarded is not None and re.fullmatch(r"[0-9a-f]{16}", forwarded)
    assert forwarded.encode() == echoed[0].split(b": ", 1)[1]


# -- properties over arbitrary header sets (hypothesis) ---------------------------------
#
# Whatever headers a client sends, every forwarded request carries exactly one
# x-sm-user-id, equal to the decided id and never a client-supplied one, and the
# Supermemory key never comes back in a response or a log line.

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
names = st.one_of(
    st.sampled_from(
        [
            "x-sm-user-id",
            "X-SM-User-Id",
            "x-supermemory-api-key",
            "x-supermemory-anything",
            "x-memory-user-id",
            "user-agent",
            "authorization",
            "connection",
            "x-request-id",
        ]
    ),
    _token,
)
values = st.one_of(
    st.sampled_from(
        [
            "someone-else",
            "OpenAIClientImpl/Java unknown",
            "claude-cli/2.0.14 (external, cli)",
            "Anthropic/Python 0.69.0",
            SM_KEY,
            "my-project",
            "",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
# What an HTTP server could ever pass on: values without CR, LF or other controls.
header_sets = st.lists(st.tuples(names, values), max_size=12)
# Anything at all, CR and LF included, for the pure functions.
any_values = st.one_of(
    values,
    st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=40),
    st.sampled_from(["a\r\nx-sm-user-id: evil", "proj\n", "\r", "id\x00", "tab\tid"]),
)
any_header_sets = st.lists(st.tuples(names, any_values), max_size=12)


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        key = k.lower()
        out[key] = f"{out[key]}, {v}" if key in out else v
    return out


ROUTER = MemoryRouter()
RULES = ROUTER.rules


@example([("x-memory-user-id", "a\r\nx-sm-user-id: evil")], b"rid\r\nx-sm-user-id: evil")
@example([("user-agent", "claude-cli/2.0.14\r\n")], b"\n")
@given(any_header_sets, st.one_of(st.none(), st.binary(max_size=40)))
def test_rewritten_headers_carry_exactly_the_decided_id(
    headers: list[tuple[str, str]], request_id: bytes | None
) -> None:
    """Whatever the client sent, CR and LF included: exactly one x-sm-user-id, the
    decided one, and every header the router writes is visible ASCII only."""
    try:
        decision = decide(RULES, _lower(headers))
    except InvalidCustomHeader:
        return
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]
    inject = memory_headers(decision.user_id, SM_KEY, litellm_end_user=True)
    inject.append((b"x-request-id", request_id_from(request_id)))
    out = upstream_headers(raw, custom_header=b"x-memory-user-id", inject=inject)
    ids = [v for k, v in out if k == b"x-sm-user-id"]
    assert ids == [decision.user_id.encode()]
    keys = [v for k, v in out if k == b"x-supermemory-api-key"]
    assert keys == [SM_KEY.encode()]
    assert not any(
        k.startswith(b"x-supermemory-") and k != b"x-supermemory-api-key" for k, _ in out
    )
    assert all(k != b"x-memory-user-id" for k, _ in out)
    written = out[len(out) - len(inject) :]
    assert [k for k, _ in written] == [k for k, _ in inject]
    for name, value in written:
        assert value and all(0x21 <= byte <= 0x7E for byte in name + value), (name, value)


@pytest.fixture(scope="module")
def live(
    upstream_server: tuple[FakeUpstream, str],
) -> Iterator[tuple[FakeUpstream, str, io.StringIO]]:
    """The app on a real server, its log lines written to a buffer the test reads."""
    fake, upstream_url = upstream_server
    from router.app import create_app

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    logger = logging.getLogger("memory_router")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    config = Settings(_env_file=None, litellm_url=upstream_url, supermemory_api_key=SM_KEY)  # type: ignore[call-arg]
    app = create_app(config)
    try:
        with serve_in_thread(app, server_config(app, config, log_level="warning")) as url:
            yield fake, url, lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(headers=header_sets, path=st.sampled_from(["/v1/chat/completions", "/v1/messages"]))
def test_through_the_proxy(
    live: tuple[FakeUpstream, str, io.StringIO],
    headers: list[tuple[str, str]],
    path: str,
) -> None:
    fake, url, lines = live
    fake.reset()
    lines.seek(0)
    lines.truncate()
    # HTTP drops a value's surrounding whitespace; the router sees what the wire carries
    headers = [(k, v.strip(" \t")) for k, v in headers]
    try:
        expected: str | None = ROUTER.decide(_lower(headers)).user_id
    except InvalidCustomHeader:
        expected = None
    sendable = [(k, v) for k, v in headers if k.lower() not in ("connection",)]
    with httpx.Client(timeout=10) as c:
        r = c.post(url + path, json={"model": "m", "stream": False}, headers=sendable)
        info = c.get(f"{url}/memory-routing/info", headers=sendable)
    assert SM_KEY not in info.text and all(SM_KEY not in v for v in info.headers.values())
    if expected is None:
        assert r.status_code == 400
        assert fake.requests == []
    else:
        assert r.status_code == 200
        got = fake.last()
        assert got.header_values("x-sm-user-id") == [expected]
        assert got.header_values("x-supermemory-api-key") == [SM_KEY]
    assert SM_KEY not in r.text
    assert all(SM_KEY not in v for v in r.headers.values())
    logged = lines.getvalue()
    assert " routing " in logged or " rejected: " in logged  # the request was logged
    assert SM_KEY not in logged
