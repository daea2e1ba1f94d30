"""Property-based tests over arbitrary header sets (hypothesis).

Whatever headers a client sends, every forwarded request carries exactly one
x-sm-user-id, equal to the decided id and never a client-supplied one, and the
Supermemory key never comes back in a response or a log line.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router.exceptions import InvalidCustomHeader
from router.headers import memory_headers, request_id_from, upstream_headers
from router.memory_router import MemoryRouter
from router.rules import decide
from router.server import server_config
from router.settings import Settings
from tests.conftest import SM_KEY
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.servers import serve_in_thread

ROUTER = MemoryRouter()
RULES = ROUTER.rules

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
